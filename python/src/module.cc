// btstore._btstore: the native half of `import btstore`. It opens one Service per Store and calls
// the library; the Python half (btstore/__init__.py) turns its plain values (JSON text of the
// wire layer, dicts, Arrow stream capsules) into the platform's shapes. Every call that reaches
// the catalog or the disk runs without the GIL.

#include <arrow/table.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "arrow_bridge.h"
#include "btstore/artifact_store.h"
#include "btstore/service.h"
#include "btstore/wire.h"
#include "convert.h"
#include "job_dicts.h"
#include "python_engine.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace btstore::python {
namespace {

using Fields = std::map<std::string, std::string>;

// The Python package names request fields as the list request does ("created_from").
std::string SameName(std::string_view field) { return std::string(field); }

ReadOptions MakeReadOptions(const std::optional<std::string>& from,
                            const std::optional<std::string>& to,
                            const std::vector<std::string>& columns,
                            const std::vector<std::string>& tables) {
  ReadOptions options;
  if (from) options.from = Date::Parse(*from, "start");
  if (to) options.to = Date::Parse(*to, "end");
  if (options.from && options.to && *options.from > *options.to) {
    throw InvalidArgument("start is after end", {{"field", "start"}});
  }
  options.columns = columns;
  options.tables = tables;
  return options;
}

class Store {
 public:
  Store(const std::string& catalog, const std::string& artifact_root) {
    const std::string url = ResolveCatalogUrl(catalog);
    const std::string root = ResolveArtifactRoot(artifact_root);
    nb::gil_scoped_release nogil;
    service_ = Service::Open(url, root);
    // A notebook or a service opens its Store once: the S3 client starts here, not in the
    // first read.
    service_->store().Prepare();
  }

  Service& service() { return *service_; }

  nb::dict GetResult(const std::string& job_id, const std::optional<std::string>& from,
                     const std::optional<std::string>& to, const std::vector<std::string>& columns,
                     const std::vector<std::string>& tables) {
    const ReadOptions options = MakeReadOptions(from, to, columns, tables);
    BacktestResult result;
    {
      nb::gil_scoped_release nogil;
      result = service_->jobs().GetResult(job_id, options);
    }
    return ResultToDict(result);
  }

  nb::object PortfolioReturns(const std::string& job_id, const std::string& basis,
                              const std::optional<std::string>& from,
                              const std::optional<std::string>& to) {
    const ReturnsBasis parsed = ParseReturnsBasis(basis);
    const ReadOptions range = MakeReadOptions(from, to, {}, {});
    std::shared_ptr<arrow::Table> table;
    {
      nb::gil_scoped_release nogil;
      table = service_->jobs().GetPortfolioReturns(job_id, parsed, range.from, range.to);
    }
    return TableToCapsule(table);
  }

  std::string ResultLocation(const std::string& job_id) {
    nb::gil_scoped_release nogil;
    JobService& jobs = service_->jobs();
    return jobs.ResolveResultPath(jobs.GetJob(job_id));
  }

  nb::tuple ListJobs(const Fields& fields) {
    const wire::ListRequest request = wire::ParseListRequest(fields, SameName);
    JobPage page;
    {
      nb::gil_scoped_release nogil;
      page = service_->jobs().ListJobs(request.filter, request.page);
    }
    nb::list jobs = JobDicts(page.jobs);
    return nb::make_tuple(jobs, page.next ? nb::object(nb::str(page.next->c_str())) : nb::none());
  }

  std::string GetJob(const std::string& job_id) {
    nb::gil_scoped_release nogil;
    return wire::JobJson(service_->jobs().GetJob(job_id)).dump();
  }

  std::string Show(const std::string& job_id) {
    nb::gil_scoped_release nogil;
    JobService& jobs = service_->jobs();
    return wire::ShowJson(jobs, jobs.GetJob(job_id)).dump();
  }

  std::string Submit(nb::dict spec_dict) {
    JobSpec spec = SpecFromDict(spec_dict);
    nb::gil_scoped_release nogil;
    return wire::SubmitJson(service_->jobs().Submit(std::move(spec))).dump();
  }

  std::string Cancel(const std::string& job_id) {
    nb::gil_scoped_release nogil;
    return wire::JobJson(service_->jobs().Cancel(job_id)).dump();
  }

  std::string Resume(const std::string& job_id) {
    nb::gil_scoped_release nogil;
    return wire::JobJson(service_->jobs().Resume(job_id)).dump();
  }

  void Pin(const std::string& job_id, bool pinned) {
    nb::gil_scoped_release nogil;
    service_->jobs().Pin(job_id, pinned);
  }

  std::string Verify(const std::vector<std::string>& job_ids) {
    VerifyOptions options;
    options.job_ids = job_ids;
    nb::gil_scoped_release nogil;
    return wire::VerifyJson(service_->Verify(options)).dump();
  }

  std::string Cleanup(int retention_days, bool dry_run) {
    RetentionOptions options;
    options.retention_days = retention_days;
    options.dry_run = dry_run;
    nb::gil_scoped_release nogil;
    return wire::RetentionJson(service_->Cleanup(options), retention_days).dump();
  }

  std::string ImportDirectory(const std::string& dir, nb::dict spec_dict) {
    JobSpec spec = SpecFromDict(spec_dict);
    nb::gil_scoped_release nogil;
    return wire::ImportJson(service_->jobs().Import(dir, std::move(spec))).dump();
  }

  // The library imports from a directory (validation, its writer, the idempotency check): an
  // in-memory result is written there first, into a private temporary directory.
  std::string ImportTables(nb::dict spec_dict, nb::dict result_dict) {
    JobSpec spec = SpecFromDict(spec_dict);
    BacktestResult result;
    FillResult(result_dict, result);
    nb::gil_scoped_release nogil;
    return wire::ImportJson(service_->jobs().ImportResult(std::move(result), std::move(spec)))
        .dump();
  }

  // Read daily_ic of many jobs on a thread pool and stack them with their job_id in front.
  nb::object IcPanel(const std::optional<std::vector<std::string>>& job_ids, Fields fields,
                     int threads) {
    std::shared_ptr<arrow::Table> panel;
    if (job_ids) {
      nb::gil_scoped_release nogil;
      panel = service_->jobs().ReadIcPanel(*job_ids, threads);
    } else {
      // Jobs chosen by list filters are read as listed (no second catalog lookup).
      if (fields["status"].empty()) fields["status"] = "completed";
      fields["limit"] = std::to_string(kMaxListLimit);
      wire::ListRequest request = wire::ParseListRequest(fields, SameName);
      nb::gil_scoped_release nogil;
      std::vector<JobRecord> listed;
      for (;;) {
        JobPage page = service_->jobs().ListJobs(request.filter, request.page);
        for (JobRecord& job : page.jobs) listed.push_back(std::move(job));
        if (!page.next) break;
        request.page.after = page.next;
      }
      panel = service_->jobs().ReadIcPanel(listed, threads);
    }
    return TableToCapsule(panel);
  }

 private:
  std::unique_ptr<Service> service_;
};

// A worker over a Store with Python engines. Each run() makes a library Worker; stop() reaches
// the one running (or the next one, when it comes before run()).
class PyWorker {
 public:
  PyWorker(Store& store, nb::dict engines, nb::object runner, nb::object stopped_type,
           int concurrency, double lease_seconds, const std::string& worker_id, double poll_seconds)
      : store_(store) {
    for (auto [name, fn] : engines) {
      const std::string engine = nb::cast<std::string>(name);
      registry_.Register(engine,
                         MakePythonEngineFactory(engine, runner, nb::borrow(fn), stopped_type));
    }
    options_.concurrency = concurrency;
    options_.lease = std::chrono::seconds(static_cast<int64_t>(lease_seconds));
    options_.poll_interval = std::chrono::milliseconds(static_cast<int64_t>(poll_seconds * 1000));
    if (!worker_id.empty()) options_.worker_id = worker_id;
    options_.engines = &registry_;
  }

  int Run(bool until_idle, bool handle_signals) {
    WorkerOptions options = options_;
    options.until_idle = until_idle;
    std::unique_ptr<Worker> worker = store_.service().NewWorker(std::move(options));
    {
      std::lock_guard lock(mutex_);
      if (stop_requested_) {
        stop_requested_ = false;
        return 0;
      }
      running_ = worker.get();
    }
    struct Detach {
      PyWorker& self;
      ~Detach() {
        std::lock_guard lock(self.mutex_);
        self.running_ = nullptr;
        self.stop_requested_ = false;
      }
    } detach{*this};
    nb::gil_scoped_release nogil;
    std::optional<StopOnSignals> signals;
    if (handle_signals) signals.emplace(*worker);
    return worker->Run();
  }

  void Stop() {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
    if (running_ != nullptr) running_->Stop();
  }

 private:
  Store& store_;
  EngineRegistry registry_;
  WorkerOptions options_;
  std::mutex mutex_;
  Worker* running_ = nullptr;
  bool stop_requested_ = false;
};

}  // namespace
}  // namespace btstore::python

NB_MODULE(_btstore, m) {
  using namespace btstore;
  using namespace btstore::python;
  m.doc() = "Native half of the btstore package; use the `btstore` module instead.";
  // A Worker holds its engine functions from C++, where the cycle collector cannot see: a
  // function that reaches the Worker through module globals keeps both alive until exit, which
  // nanobind would report as a leak on every such script.
  nb::set_leak_warnings(false);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const btstore::Error& e) {
      SetPythonError(e);
    } catch (const JobStopped& e) {
      nb::object errors = nb::module_::import_("btstore._errors");
      PyErr_SetString(errors.attr("Stopped").ptr(), e.what());
    }
  });

  m.attr("default_catalog") = std::string(kDefaultCatalogUrl);
  m.attr("default_artifact_root") = std::string(kDefaultArtifactRoot);
  m.def("resolve_catalog_url", [](const std::string& given) { return ResolveCatalogUrl(given); });
  m.def("resolve_artifact_root",
        [](const std::string& given) { return ResolveArtifactRoot(given); });
  m.def("derive_job_id", [](nb::dict spec) { return DeriveJobId(SpecFromDict(spec)); });
  m.def("finalize_object_stores", &FinalizeObjectStores,
        "Release Arrow's S3 client (registered to run at interpreter exit).");

  nb::class_<Store>(m, "Store")
      .def(nb::init<const std::string&, const std::string&>(), "catalog"_a, "artifact_root"_a)
      .def("get_result", &Store::GetResult, "job_id"_a, "start"_a.none(), "end"_a.none(),
           "columns"_a, "tables"_a)
      .def("portfolio_returns", &Store::PortfolioReturns, "job_id"_a, "basis"_a, "start"_a.none(),
           "end"_a.none())
      .def("result_location", &Store::ResultLocation, "job_id"_a)
      .def("list_jobs", &Store::ListJobs, "fields"_a)
      .def("get_job", &Store::GetJob, "job_id"_a)
      .def("show", &Store::Show, "job_id"_a)
      .def("submit", &Store::Submit, "spec"_a)
      .def("cancel", &Store::Cancel, "job_id"_a)
      .def("resume", &Store::Resume, "job_id"_a)
      .def("pin", &Store::Pin, "job_id"_a, "pinned"_a)
      .def("verify", &Store::Verify, "job_ids"_a)
      .def("cleanup", &Store::Cleanup, "retention_days"_a, "dry_run"_a)
      .def("import_directory", &Store::ImportDirectory, "dir"_a, "spec"_a)
      .def("import_tables", &Store::ImportTables, "spec"_a, "result"_a)
      .def("ic_panel", &Store::IcPanel, "job_ids"_a.none(), "fields"_a, "threads"_a);

  nb::class_<PythonContext>(m, "EngineContext")
      .def("progress", &PythonContext::Progress, "pct"_a)
      .def("save_checkpoint", &PythonContext::SaveCheckpoint, "data"_a)
      .def("load_checkpoint", &PythonContext::LoadCheckpoint)
      .def("stop_requested", &PythonContext::StopRequested)
      .def("sleep", &PythonContext::SleepUnlessStopped, "seconds"_a);

  nb::class_<PyWorker>(m, "Worker")
      .def(nb::init<Store&, nb::dict, nb::object, nb::object, int, double, const std::string&,
                    double>(),
           "store"_a, "engines"_a, "runner"_a, "stopped_type"_a, "concurrency"_a, "lease_seconds"_a,
           "worker_id"_a, "poll_seconds"_a, nb::keep_alive<1, 2>())
      .def("run", &PyWorker::Run, "until_idle"_a, "handle_signals"_a)
      .def("stop", &PyWorker::Stop);
}
