#pragma once
/// The engine interface the worker drives, and the built-in engines.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "btstore/bundle.h"
#include "btstore/model.h"

namespace btstore {

/// Thrown by an engine (through EngineContext::ThrowIfStopped) when its worker asked it to
/// stop: a cancel was requested, the attempt lost its lease, or the worker is shutting down.
class JobStopped : public std::exception {
 public:
  const char* what() const noexcept override { return "the job was asked to stop"; }
};

/// What a running engine can do with its worker.
class EngineContext {
 public:
  virtual ~EngineContext() = default;
  /// Record progress (0..100); the worker sends it with the next heartbeat.
  virtual void ReportProgress(int pct) = 0;
  /// Save a checkpoint durably (under the artifact root) before returning; the next attempt of
  /// this job gets it from LoadCheckpoint().
  virtual void SaveCheckpoint(std::string_view bytes) = 0;
  /// Return the checkpoint a previous attempt saved, if any.
  virtual std::optional<std::string> LoadCheckpoint() = 0;
  /// Return true once the engine should stop (cancel requested, lease lost, shutdown).
  virtual bool StopRequested() = 0;
  /// Throw JobStopped if StopRequested().
  void ThrowIfStopped() {
    if (StopRequested()) throw JobStopped();
  }
  /// Wait up to `duration` (an engine simulating or pacing work), returning early once
  /// StopRequested(); return StopRequested(). The default polls every few milliseconds; a
  /// worker's context wakes at once.
  virtual bool SleepUnlessStopped(std::chrono::milliseconds duration);
};

/// A backtest engine. Run() is called on a worker thread; it must call ThrowIfStopped() often
/// (at least once per simulated day) and return a complete result.
class Engine {
 public:
  virtual ~Engine() = default;
  /// Run the job's backtest and return its result. Throws JobStopped when asked to stop,
  /// InvalidArgument for a bad configuration, anything else for a failed attempt.
  virtual BacktestResult Run(const JobRecord& job, EngineContext& context) = 0;
};

/// Return the engine named in a job's config (`"engine"`, default "synthetic"):
/// "synthetic" (see SyntheticConfig) or "noop" (an empty valid result at once, for throughput
/// benchmarks). Throws InvalidArgument for an unknown name.
std::unique_ptr<Engine> MakeEngine(std::string_view config_json);

/// Settings of the synthetic engine, read from the job's config JSON:
/// `{"engine": "synthetic", "seed": 7, "symbols": 500, "delay_ms_per_day": 0,
///   "checkpoint_every_days": 20, "fail_at_day": null, "snapshot_id": "synthetic-v1"}`.
/// Other keys are ignored. `checkpoint_every_days` 0 saves no periodic checkpoint;
/// `fail_at_day` fails only a worker's first attempt (attempt 1), after checkpointing.
/// The result's summary.json carries `"engine": {"name", "business_days", "resumed_at_day",
/// "computed_days"}`: how many days this attempt computed after resuming from a checkpoint.
struct SyntheticConfig {
  uint64_t seed = 7;
  int symbols = 500;
  int delay_ms_per_day = 0;
  int checkpoint_every_days = 20;
  std::optional<int> fail_at_day;  ///< the first attempt fails at this day index (once)
  std::string snapshot_id = "synthetic-v1";

  /// Parse the config JSON. Throws InvalidArgument for a non-object, wrong types or ranges.
  static SyntheticConfig Parse(std::string_view config_json);
};

/// Compute a synthetic result without a worker (used by `bundle sample`): business days from
/// `start` to `end`, `symbols` permnos, deterministic in `seed`.
BacktestResult GenerateSyntheticResult(const JobSpec& spec);

}  // namespace btstore
