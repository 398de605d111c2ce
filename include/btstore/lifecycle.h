#pragma once
/// The job lifecycle (contract sections 3-5) over a Catalog, an ArtifactStore and an
/// EngineRegistry: submission, user moves, result retrieval, the worker runtime, retention and
/// reconciliation. Front ends usually get these from a Service (service.h).

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "btstore/artifact_store.h"
#include "btstore/bundle.h"
#include "btstore/catalog.h"
#include "btstore/engine.h"
#include "btstore/model.h"

namespace btstore {

/// Where "now" comes from. The system clock in production; tests pass their own.
class Clock {
 public:
  virtual ~Clock() = default;
  /// Return the current time. Called from several threads at once.
  virtual Timestamp Now() = 0;
};

/// The system clock.
class SystemClock : public Clock {
 public:
  Timestamp Now() override { return btstore::Now(); }
};

/// Derive the job_id of a submission that names none: "bt-" followed by the first 32 hex
/// digits of SHA-256 over the canonical JSON array
/// `[alpha_name, start_date, end_date, weight_method, config, created_by]`
/// (dates ISO, config with object keys sorted, no whitespace, UTF-8 unescaped), so any language
/// derives the same id (docs/DESIGN.md shows it in Python). Throws InvalidArgument when the
/// config is not valid JSON or a text field is not valid UTF-8.
std::string DeriveJobId(const JobSpec& spec);

/// The storage API readers and submitters use. Every method that reaches the catalog also
/// throws CatalogUnavailable when the database cannot be reached.
class JobService {
 public:
  /// Use `catalog`, `store`, `clock` and `engines` (which check submissions); all must outlive
  /// this.
  JobService(Catalog& catalog, ArtifactStore& store, Clock& clock, const EngineRegistry& engines);

  /// Submit a job idempotently (job_id derived when empty). The job is stored with the engine
  /// its config selects; one this process does not have (a command engine of some worker) is
  /// accepted and waits for a worker that has it. Throws InvalidArgument (a bad spec, a malformed
  /// engine name, a `spec.engine` other than the config's, a config or weight method the engine
  /// refuses), CatalogUnavailable.
  SubmitResult Submit(JobSpec spec);
  /// Store a result computed elsewhere as a completed job: read and validate the bundle in `dir`
  /// (exact schemas, sorted signals and weights, summary.json with snapshot_id and
  /// dataset_version_ids, every JSON artifact readable, the manifest when it has one), write it
  /// into the store with btstore's writer (identity from `spec`, manifest, checksums, atomic
  /// publish) and insert the job `completed` with its metrics, snapshot, dataset versions and
  /// cost blocks. The job_id is derived as Submit derives it when `spec.job_id` is empty. A
  /// failure leaves no row and no bundle behind. Idempotent: when the job_id exists as a
  /// completed job with the same fields and the same result (tables cell for cell, metrics,
  /// metadata, artifacts), nothing changes and created=false is returned.
  /// Throws InvalidArgument (a bad spec, `dir` not a directory), MissingReproducibilityMetadata
  /// and InvalidResult (the bundle in `dir` is not valid), InvalidTransition (the job_id exists
  /// with another status, other fields or another result), ResultPathMissing (the existing
  /// job's bundle cannot be compared), InternalError (I/O), CatalogUnavailable.
  SubmitResult Import(const std::filesystem::path& dir, JobSpec spec);
  /// Import a result held in memory (a notebook's: the Python package's import_result) exactly
  /// as Import does a bundle directory's, without writing it anywhere first. Throws as Import,
  /// but a fault of the result's tables (schema, order, dates) is InvalidArgument.
  SubmitResult ImportResult(BacktestResult result, JobSpec spec);

  /// Cancel a job (see Catalog::RequestCancel). Throws JobNotFound, InvalidTransition,
  /// CatalogUnavailable.
  JobRecord Cancel(std::string_view job_id);
  /// Resume a failed or cancelled job. Throws JobNotFound, InvalidTransition, CatalogUnavailable.
  JobRecord Resume(std::string_view job_id);
  /// Pin a job (exempt from retention) or lift that. Throws JobNotFound, CatalogUnavailable.
  void Pin(std::string_view job_id, bool pinned);

  /// Return a job. Throws JobNotFound, CatalogUnavailable.
  JobRecord GetJob(std::string_view job_id);
  /// List jobs (see Catalog::ListJobs). Throws InvalidArgument, CatalogUnavailable.
  JobPage ListJobs(const JobFilter& filter, const PageRequest& page);

  /// Load a completed job's result, whole or in part. Throws, distinctly: JobNotFound;
  /// ResultPathMissing (not completed, null/empty path, missing on disk, or resolving outside
  /// the artifact root or to the root itself, or marked for removal by retention);
  /// MissingReproducibilityMetadata; InvalidResult; CatalogUnavailable.
  BacktestResult GetResult(std::string_view job_id, const ReadOptions& options = {},
                           ReadStats* stats = nullptr);
  /// As GetResult, for a job the caller has just fetched or listed (cross-job reads skip one
  /// catalog round trip per job); a job removed or changed since is reported as GetResult
  /// would. Throws as GetResult.
  BacktestResult GetResult(const JobRecord& job, const ReadOptions& options = {},
                           ReadStats* stats = nullptr);

  /// Read the daily_ic table of many completed jobs, `threads` at once (0: one per core), and
  /// stack them in the order given: job_id (utf8_view), date (date32), ic, rank_ic (float64);
  /// one chunk per job. Each bundle is checked as GetResult checks it (summary.json, the
  /// manifest, the file's size, rows and checksum). Throws as GetResult for the first job that
  /// fails (the others are not read further).
  std::shared_ptr<arrow::Table> ReadIcPanel(const std::vector<std::string>& job_ids, int threads);
  /// As ReadIcPanel, for jobs the caller has just listed (no catalog lookup per job); their
  /// files are fetched ahead of the reads where the store gains from it (a cold page cache).
  std::shared_ptr<arrow::Table> ReadIcPanel(const std::vector<JobRecord>& jobs, int threads);

  /// Open the table `name` of a completed job's result for a read batch by batch (see OpenTable
  /// in bundle.h): the server's memory stays bounded whatever the table's size. Throws as
  /// GetResult before the first batch; the stream itself throws InvalidResult (a corrupt file,
  /// a checksum mismatch found at its end) and CatalogUnavailable.
  std::unique_ptr<TableStream> OpenTable(std::string_view job_id, const std::string& name,
                                         const ReadOptions& options = {});

  /// Load a completed job's portfolio returns on `basis` between `from` and `to` (inclusive,
  /// either may be absent), reading only that table's date and return columns: a table (`date`
  /// date32, `return` float64) sorted by date. Throws as GetResult, and InvalidArgument when
  /// the bundle has no table for that basis.
  std::shared_ptr<arrow::Table> GetPortfolioReturns(std::string_view job_id, ReturnsBasis basis,
                                                    std::optional<Date> from = {},
                                                    std::optional<Date> to = {});

  /// Resolve a job's result_path and check it is a bundle strictly inside the artifact root;
  /// return where it is. Throws ResultPathMissing.
  std::string ResolveResultPath(const JobRecord& job) const;

  /// Return the attempts of a job that left logs (command engines), ascending. Throws
  /// JobNotFound, CatalogUnavailable, InternalError when the logs cannot be listed.
  std::vector<int> LogAttempts(std::string_view job_id);
  /// Return up to `max_bytes` of what `stream` of `attempt` of a job printed, from byte
  /// `offset` (empty at the end, or when that attempt left no log). Throws InvalidArgument (an
  /// attempt below 1), JobNotFound, CatalogUnavailable, InternalError when it cannot be read.
  std::string ReadLog(std::string_view job_id, int attempt, LogStream stream, int64_t offset,
                      int64_t max_bytes);

  /// Return the text of a job's summary.json, unchecked (for showing it). Throws
  /// ResultPathMissing (see ResolveResultPath), MissingReproducibilityMetadata (missing or
  /// unreadable).
  std::string ReadSummaryText(const JobRecord& job);

 private:
  // Import and ImportResult after reading: `dir`, when given, is where the result was read
  // from (a fault of its tables is then InvalidResult naming it).
  SubmitResult ImportRead(BacktestResult result, JobSpec spec, const std::filesystem::path* dir);
  // Resolve the job's bundle. Throws ResultPathMissing.
  BundleLocation Locate(const JobRecord& job) const;
  // ReadIcPanel of `count` jobs, the i-th given by `job_at(i)`; with `fetch_ahead`, the store
  // is told which bundles come next (`job_at` must then be cheap: no catalog lookup).
  template <typename JobAt>
  std::shared_ptr<arrow::Table> ReadIcPanelOf(size_t count, JobAt job_at, bool fetch_ahead,
                                              int threads);
  // Run `read` on the bundle of `job`, which must be completed; its errors of a bundle that
  // retention removed meanwhile become ResultPathMissing, the others get the job_id. Throws as
  // GetResult.
  template <typename Read>
  auto ReadCompleted(const JobRecord& job, Read read)
      -> decltype(read(std::declval<const BundleLocation&>()));

  Catalog& catalog_;
  ArtifactStore& store_;
  Clock& clock_;
  const EngineRegistry& engines_;
};

// ---------------------------------------------------------------------------------------------
// Worker

/// What a worker reports as it goes (for progress output); called on worker threads.
struct WorkerEvent {
  /// kPublished: the attempt's bundle is in its final place and durable, and the completion is
  /// about to be recorded; should the completion then lose (to a cancel or another attempt),
  /// the bundle is removed again and kCancelled or kLostLease follows. The event is emitted on
  /// the job's thread before the completion starts, so it can also serve as a precise point in
  /// the protocol for observers (a test that cancels inside the window).
  /// kReleased: the worker shut down and gave the job back (pending, no retry spent).
  enum class Kind {
    kClaimed,
    kProgress,
    kCompleted,
    kFailed,
    kRetrying,
    kCancelled,
    kLostLease,
    kRescued,
    kReleased,
    kPublished
  };
  Kind kind;
  /// Empty for an event of the worker itself rather than of a job: kRetrying while the catalog
  /// is unavailable (the worker backs off and retries), and once it is available again.
  std::string job_id;
  int attempt = 0;       ///< the job's attempt the event is about
  int progress_pct = 0;  ///< for kProgress (and 100 for kCompleted)
  std::string message;   ///< what happened, for people
};

/// How a worker runs. The defaults are the command line's defaults.
struct WorkerOptions {
  std::string worker_id;  ///< name in the catalog; default: "<hostname>:<pid>:<random>"
  int concurrency = 1;    ///< jobs run at once (threads), at least 1
  /// A running job whose worker sends no heartbeat for this long is rescued (at least 1 s).
  std::chrono::seconds lease{30};
  /// Heartbeats are sent this often (default: lease / 6, at most 1 s, at least 50 ms).
  std::chrono::milliseconds heartbeat_interval{0};
  /// Pause between claim attempts when no job is pending.
  std::chrono::milliseconds poll_interval{200};
  /// Return from Run() once none of this worker's jobs runs and the catalog holds no pending
  /// job (a retry waiting for its run_after counts as pending).
  bool until_idle = false;
  /// First retry delay after a failure; doubles with each retry, capped at 5 minutes.
  std::chrono::milliseconds retry_base_delay{1000};
  /// How often this worker looks for jobs whose lease expired.
  std::chrono::milliseconds rescue_interval{1000};
  /// How bundles are written (compression, row groups).
  WriteOptions write_options;
  /// The engines jobs run with, found by the name in their config; must outlive the worker.
  /// Required (Service::NewWorker passes the service's registry when it is null).
  const EngineRegistry* engines = nullptr;
  /// Called for every event (on worker threads, one call at a time); may be empty.
  std::function<void(const WorkerEvent&)> on_event;
};

/// Return a worker name unique among processes: "<hostname>:<pid>:<random hex>".
std::string DefaultWorkerId();

/// Runs jobs: claims, drives the engine with heartbeats, checkpoints and cancellation,
/// publishes the bundle and completes the job; rescues jobs of dead workers. An attempt running
/// longer than its job's job_timeout (measured on the worker's Clock from the claim) is stopped
/// and failed with "exceeded job_timeout of N s" (retried per policy, from its checkpoint); any
/// error while an attempt runs or ends fails it with that error's message.
class Worker {
 public:
  /// Run the jobs of `catalog` (called from the worker's threads at once, as every Catalog
  /// allows), keeping results and checkpoints in `store`, with time from `clock`; all three must
  /// outlive the worker. Throws InvalidArgument for bad options (no engines, concurrency below
  /// 1, a lease under a second), InternalError when its wake-up descriptor cannot be made.
  Worker(Catalog& catalog, ArtifactStore& store, Clock& clock, WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Run until Stop() (or, with until_idle, until nothing is left to do). Returns the number of
  /// attempts this worker finished (completed, failed, cancelled). While the catalog throws
  /// CatalogUnavailable (e.g. PostgreSQL restarting) it backs off (100 ms doubling up to 5 s)
  /// and retries; running jobs keep their attempts. Other errors (InternalError from the disk,
  /// InvalidArgument from a catalog without the schema) end Run() with that exception.
  int Run();
  /// Ask Run() to return: running jobs are stopped and given back at once (pending, checkpoint
  /// recorded, no retry spent; a job whose cancel was requested ends cancelled). A job whose
  /// bundle is already being published completes first. Thread-safe and async-signal-safe.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// While it lives, SIGINT and SIGTERM stop `worker` (Worker::Stop: its jobs are given back at
/// once); a second signal ends the process at once by that signal's default action, for a worker
/// stuck in its shutdown (an engine that does not stop, an unreachable catalog). Destroying it
/// restores the previous handlers. Only one may live at a time in a process (signal handlers
/// are per process); a second one throws InvalidArgument.
class StopOnSignals {
 public:
  explicit StopOnSignals(Worker& worker);
  ~StopOnSignals();
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;
};

// ---------------------------------------------------------------------------------------------
// Retention and reconciliation

/// What retention removes and how. The defaults are the command line's defaults.
struct RetentionOptions {
  int retention_days = 90;  ///< remove jobs that ended more than this many days ago (0..3650000)
  bool dry_run = false;     ///< only report what would be removed
  int batch_size = 1000;    ///< jobs marked, swept and deleted per transaction (at least 1)
  /// Called after each batch with the number of jobs removed so far; may be empty.
  std::function<void(int64_t done)> on_progress;
  /// Called once a batch is marked expiring, before its files and rows are removed, with the
  /// batch's job_ids (to log what is about to go); may be empty. An exception thrown from it
  /// ends the run with the batch marked, which the next run finishes.
  std::function<void(const std::vector<std::string>& job_ids)> on_marked;
};

struct RetentionReport {
  int64_t removed = 0;  ///< jobs removed (or, on a dry run, that would be)
  /// Every job removed (or, on a dry run, that would be), in the order removed. Kept whole for
  /// `cleanup --json`: a million removed jobs is a million ids in memory (tens of MB); all other
  /// state is held one batch at a time.
  std::vector<std::string> job_ids;
  bool dry_run = false;  ///< the report of a dry run: nothing was removed
};

/// Remove terminal, unpinned jobs that ended more than `retention_days` ago: mark the rows
/// expiring, remove their bundles and checkpoints, delete the rows (still marked and terminal).
/// A crash at any step is finished by the next run. Throws InvalidArgument for a window out of
/// range or a batch size below 1, InternalError when files cannot be removed (run it again once
/// the cause is fixed), CatalogUnavailable.
RetentionReport CleanupOldResults(Catalog& catalog, ArtifactStore& store, Clock& clock,
                                  const RetentionOptions& options);

/// One problem `verify` found.
struct VerifyProblem {
  /// A bundle that fails its checks, a completed job without a usable bundle, or a bundle that
  /// no row knows.
  enum class Kind { kInvalidBundle, kMissingBundle, kOrphanBundle };
  Kind kind;
  std::string job_id;      ///< empty for an orphan
  std::string path;        ///< the stored result_path, or the orphan's location
  std::string error_code;  ///< contract name of the error, for kInvalidBundle / kMissingBundle
  std::string message;     ///< what is wrong and what to do
};

/// What verify found.
struct VerifyReport {
  int64_t checked = 0;                  ///< completed jobs whose bundles were checked
  std::vector<VerifyProblem> problems;  ///< in the order found
};

/// What verify checks. The defaults are the command line's defaults.
struct VerifyOptions {
  /// The jobs to check; empty: every completed job, and bundles that no row knows.
  std::vector<std::string> job_ids;
  /// Report a bundle that no row knows only when it is older than this (a younger one may be a
  /// publish in progress).
  std::chrono::seconds orphan_grace{3600};
  /// Called after each job checked with the number checked so far; may be empty.
  std::function<void(int64_t done)> on_progress;
};

/// Check completed jobs' bundles against their manifests (all of them, or just
/// `options.job_ids`), and when no ids are given also report bundles under the root that no row
/// knows. Writes nothing. Throws JobNotFound for an unknown listed id, InternalError when the
/// root cannot be listed, CatalogUnavailable.
VerifyReport VerifyBundles(Catalog& catalog, ArtifactStore& store, const VerifyOptions& options);

}  // namespace btstore
