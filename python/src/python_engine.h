#pragma once
// Python callables as engines: an EngineFactory over a Python function, registered in a worker's
// EngineRegistry like any other engine. The worker's threads (heartbeats, leases, cancel) never
// take the GIL; an attempt's thread takes it only while the function runs.

#include <nanobind/nanobind.h>

#include <memory>
#include <string>

#include "btstore/engine.h"

namespace btstore::python {

/// What a Python engine sees of its worker: progress, checkpoints and stop requests. Valid only
/// while its attempt runs; afterwards every method throws InvalidTransition.
class PythonContext {
 public:
  explicit PythonContext(EngineContext* context) : context_(context) {}
  /// Record progress 0..100 (clamped). Throws InvalidTransition after the attempt.
  void Progress(int pct);
  /// Save a checkpoint durably, without the GIL. Throws InternalError, InvalidTransition.
  void SaveCheckpoint(nanobind::bytes data);
  /// Return the previous attempt's checkpoint as bytes, or None. Throws InternalError,
  /// InvalidTransition.
  nanobind::object LoadCheckpoint();
  /// Return true once the worker asks the engine to stop. Throws InvalidTransition.
  bool StopRequested();
  /// Wait up to `seconds` without the GIL, returning early (true) once asked to stop.
  bool SleepUnlessStopped(double seconds);
  /// End the context's validity (the attempt is over).
  void Invalidate() { context_ = nullptr; }

 private:
  EngineContext& Get();
  EngineContext* context_;
};

/// Return a factory whose engines call `runner(fn, job_json_text, context)` with the GIL held;
/// `runner` (btstore._convert.run_engine) calls `fn(job, ctx)` and returns the result dict that
/// FillResult reads. A `stopped_type` exception (btstore.Stopped) out of it stops the attempt
/// (JobStopped); any other exception fails it with the exception's text.
std::unique_ptr<EngineFactory> MakePythonEngineFactory(std::string name, nanobind::object runner,
                                                       nanobind::object fn,
                                                       nanobind::object stopped_type);

}  // namespace btstore::python
