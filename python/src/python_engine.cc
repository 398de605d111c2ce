#include "python_engine.h"

#include <nanobind/stl/string.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "btstore/errors.h"
#include "btstore/wire.h"
#include "convert.h"

namespace nb = nanobind;

namespace btstore::python {

EngineContext& PythonContext::Get() {
  if (context_ == nullptr) {
    throw InvalidTransition("the engine's context was used after its attempt ended");
  }
  return *context_;
}

void PythonContext::Progress(int pct) { Get().ReportProgress(std::clamp(pct, 0, 100)); }

void PythonContext::SaveCheckpoint(nb::bytes data) {
  EngineContext& context = Get();
  const std::string bytes(data.c_str(), data.size());
  nb::gil_scoped_release nogil;
  context.SaveCheckpoint(bytes);
}

nb::object PythonContext::LoadCheckpoint() {
  EngineContext& context = Get();
  std::optional<std::string> bytes;
  {
    nb::gil_scoped_release nogil;
    bytes = context.LoadCheckpoint();
  }
  if (!bytes) return nb::none();
  return nb::bytes(bytes->data(), bytes->size());
}

bool PythonContext::StopRequested() { return Get().StopRequested(); }

bool PythonContext::SleepUnlessStopped(double seconds) {
  EngineContext& context = Get();
  const auto duration =
      std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, seconds) * 1000));
  nb::gil_scoped_release nogil;
  return context.SleepUnlessStopped(duration);
}

namespace {

class PythonEngine : public Engine {
 public:
  PythonEngine(const std::string& name, nb::handle runner, nb::handle fn, nb::handle stopped_type)
      : name_(name), runner_(runner), fn_(fn), stopped_type_(stopped_type) {}

  BacktestResult Run(const JobRecord& job, EngineContext& context) override {
    BacktestResult result = ResultFor(job);
    const std::string job_json = wire::JobJson(job).dump();
    nb::gil_scoped_acquire gil;
    nb::object py_context = nb::cast(PythonContext(&context));
    // A context the function kept must not reach the worker after the attempt.
    struct Invalidate {
      PythonContext& context;
      ~Invalidate() { context.Invalidate(); }
    } invalidate{nb::cast<PythonContext&>(py_context)};
    try {
      nb::object out = runner_(fn_, job_json, py_context);
      FillResult(out, result);
    } catch (nb::python_error& e) {
      if (e.matches(stopped_type_)) throw JobStopped();
      throw InternalError("Python engine '" + name_ + "' raised " + e.what(), {{"engine", name_}});
    }
    return result;
  }

 private:
  std::string name_;
  // Borrowed from the factory, which outlives its engines.
  nb::handle runner_;
  nb::handle fn_;
  nb::handle stopped_type_;
};

class PythonEngineFactory : public EngineFactory {
 public:
  PythonEngineFactory(std::string name, nb::object runner, nb::object fn, nb::object stopped_type)
      : name_(std::move(name)),
        runner_(std::move(runner)),
        fn_(std::move(fn)),
        stopped_type_(std::move(stopped_type)) {}

  // The registry may be destroyed on any thread; dropping the references needs the GIL.
  ~PythonEngineFactory() override {
    nb::gil_scoped_acquire gil;
    runner_.reset();
    fn_.reset();
    stopped_type_.reset();
  }

  std::unique_ptr<Engine> Make() const override {
    return std::make_unique<PythonEngine>(name_, runner_, fn_, stopped_type_);
  }

 private:
  std::string name_;
  nb::object runner_;
  nb::object fn_;
  nb::object stopped_type_;
};

}  // namespace

std::unique_ptr<EngineFactory> MakePythonEngineFactory(std::string name, nb::object runner,
                                                       nb::object fn, nb::object stopped_type) {
  return std::make_unique<PythonEngineFactory>(std::move(name), std::move(runner), std::move(fn),
                                               std::move(stopped_type));
}

}  // namespace btstore::python
