#pragma once
/// The engine layer: the interface the worker drives, the registry engines are found in by
/// name, and the built-in engines.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/artifact_store.h"
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
  /// Save a checkpoint durably (in the artifact store) before returning; the next attempt of
  /// this job gets it from LoadCheckpoint(). Throws InternalError when it cannot be written.
  virtual void SaveCheckpoint(std::string_view bytes) = 0;
  /// Return the checkpoint a previous attempt saved, if any. Throws InternalError when it exists
  /// but cannot be read.
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
  /// Return a new, empty local working directory for this attempt under the artifact root (for
  /// a program's files); the worker removes it when the attempt ends. Throws InternalError, also
  /// when the context is not a worker's (the default).
  virtual std::string MakeAttemptDirectory();
  /// Return the local path where this attempt's `stream` is to be logged; the log stays with
  /// the job until retention removes it. Throws InternalError, also when the context is not a
  /// worker's (the default).
  virtual std::string LogLocation(LogStream stream);
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

/// Makes the engines of one kind and checks submissions for them. Registered by name in an
/// EngineRegistry; called from several threads at once.
class EngineFactory {
 public:
  virtual ~EngineFactory() = default;
  /// Check a submission (its config and weight method) before it is stored, so that a job the
  /// engine cannot run is refused at once. Throws InvalidArgument naming the field. The
  /// default accepts everything.
  virtual void Validate(const JobSpec& spec) const;
  /// Return a new engine for one attempt.
  virtual std::unique_ptr<Engine> Make() const = 0;
};

/// The engines a process knows, by name. A job names its engine in its config
/// (`{"engine": "NAME", ...}`); a config without that key runs the registry's default engine.
/// New kinds of engines (a command, a Python callable) are added by registering a factory.
/// Registering is not thread-safe; looking up is, once registration is done.
class EngineRegistry {
 public:
  /// An empty registry, without a default engine.
  EngineRegistry();
  ~EngineRegistry();
  EngineRegistry(EngineRegistry&&) noexcept;
  EngineRegistry& operator=(EngineRegistry&&) noexcept;

  /// Return a registry with the built-in engines: "synthetic" (see SyntheticConfig), the
  /// default, and "noop" (an empty valid result at once, for throughput benchmarks).
  static EngineRegistry Builtins();

  /// Register `factory` under `name` (see ValidateEngineName). Throws InvalidArgument for a bad
  /// or taken name, or a null factory.
  void Register(std::string name, std::unique_ptr<EngineFactory> factory);
  /// Register engines made by `make`, accepting every submission. Same errors.
  void Register(std::string name, std::function<std::unique_ptr<Engine>()> make);
  /// Run jobs whose config names no engine with the engine registered as `name`.
  /// Throws InvalidArgument when no engine has that name.
  void SetDefault(std::string name);

  /// Return the names of the registered engines, sorted.
  std::vector<std::string> Names() const;
  /// Return the engine name a job's config selects: its "engine" key, or the default. Throws
  /// InvalidArgument when the config is not a JSON object, the key is not a string, or names no
  /// engine and there is no default.
  std::string EngineNameOf(std::string_view config_json) const;
  /// Check a submission with the engine its config selects, when this registry has it. An
  /// engine it does not have (a command engine registered on workers) is accepted when its name
  /// is valid: the job waits for a worker that has it. Throws InvalidArgument (a malformed
  /// config or engine name, or what the engine's Validate throws).
  void Validate(const JobSpec& spec) const;
  /// Return a new engine for a job's config. Throws InvalidArgument for an unknown engine.
  std::unique_ptr<Engine> MakeFor(std::string_view config_json) const;

 private:
  const EngineFactory& Find(const std::string& name) const;

  std::map<std::string, std::unique_ptr<EngineFactory>, std::less<>> factories_;
  std::string default_name_;
};

/// What an engine reports about its own run, kept in summary.json under "engine":
/// `{"name", "business_days", "resumed_at_day", "computed_days"}` (all but the name optional).
struct EngineReport {
  std::string name;
  /// Days the whole backtest covers.
  std::optional<int64_t> business_days = std::nullopt;
  /// The day this attempt resumed at (0: from the start).
  std::optional<int64_t> resumed_at_day = std::nullopt;
  /// Days this attempt computed.
  std::optional<int64_t> computed_days = std::nullopt;
};

/// Return the JSON object text `{"engine": {...}}` of a report, for
/// BacktestResult::extra_summary_json.
std::string EngineReportJson(const EngineReport& report);

/// Read the engine's report from a summary.json text or an extra_summary_json: the one
/// function through which callers read it. Returns nullopt when there is none or it is not an
/// object with a string name; fields of the wrong type read as absent. Never throws.
std::optional<EngineReport> ReadEngineReport(std::string_view summary_json);

/// Give `result` a job's identity, as every result stored for it carries: job_id, alpha_name,
/// dates, weight method and ConfigHash(config_json). Throws InvalidArgument for a config that is
/// not a JSON object.
void SetJobIdentity(BacktestResult& result, std::string_view job_id, std::string_view alpha_name,
                    Date start_date, Date end_date, std::string_view weight_method,
                    std::string_view config_json);

/// Return a result with no tables yet that carries the job's identity (SetJobIdentity). Throws
/// InvalidArgument for a config that is not a JSON object.
BacktestResult ResultFor(const JobRecord& job);

/// Return "sha256:<64 hex digits>" of the config with sorted keys and no whitespace, so the same
/// configuration always has the same hash (BacktestResult::config_hash). Throws InvalidArgument
/// for a config that is not a JSON object.
std::string ConfigHash(std::string_view config_json);

/// Settings of the synthetic engine, read from the job's config JSON:
/// `{"engine": "synthetic", "seed": 7, "symbols": 500, "delay_ms_per_day": 0,
///   "checkpoint_every_days": 20, "fail_at_day": null, "snapshot_id": "synthetic-v1"}`.
/// Other keys are ignored. `checkpoint_every_days` 0 saves no periodic checkpoint;
/// `fail_at_day` fails only a worker's first attempt (attempt 1), after checkpointing.
/// The result's summary.json carries `"engine": {"name", "business_days", "resumed_at_day",
/// "computed_days"}`: how many days this attempt computed after resuming from a checkpoint.
struct SyntheticConfig {
  uint64_t seed = 7;               ///< the same seed gives the same result, bit for bit
  int symbols = 500;               ///< permnos per day, 1..100000
  int delay_ms_per_day = 0;        ///< a pause per simulated day (to make jobs long), 0..60000
  int checkpoint_every_days = 20;  ///< save a checkpoint every this many days; 0: never
  std::optional<int> fail_at_day;  ///< the first attempt fails at this day index (once)
  std::string snapshot_id = "synthetic-v1";  ///< the result's snapshot_id, 1-255 characters

  /// Parse the config JSON. Throws InvalidArgument for a non-object, wrong types or ranges.
  static SyntheticConfig Parse(std::string_view config_json);
};

/// Compute a synthetic result without a worker (used by `bundle sample`): business days from
/// `start` to `end`, `symbols` permnos, deterministic in `seed`. Throws InvalidArgument for a
/// bad config, weight method or date range.
BacktestResult GenerateSyntheticResult(const JobSpec& spec);

/// The mixing function (SplitMix64) of the synthetic engine's counter-based generator, shared
/// by every generator of deterministic test data.
uint64_t SplitMix64(uint64_t x);

}  // namespace btstore
