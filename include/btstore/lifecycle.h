#pragma once
/// The job lifecycle (contract sections 3-5) over a Catalog and an artifact root: submission,
/// user moves, result retrieval, the worker runtime, retention and reconciliation.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "btstore/bundle.h"
#include "btstore/catalog.h"
#include "btstore/model.h"

namespace btstore {

/// Where "now" comes from. The system clock in production; tests pass their own.
class Clock {
 public:
  virtual ~Clock() = default;
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

/// The storage API readers and submitters use.
class JobService {
 public:
  /// Use `catalog` and `artifact_root` (created if missing). `clock` must outlive this.
  JobService(Catalog& catalog, std::filesystem::path artifact_root, Clock& clock);

  /// Submit a job idempotently (job_id derived when empty). Throws InvalidArgument.
  SubmitResult Submit(JobSpec spec);
  /// Cancel a job (see Catalog::RequestCancel). Throws JobNotFound, InvalidTransition.
  JobRecord Cancel(std::string_view job_id);
  /// Resume a failed or cancelled job. Throws JobNotFound, InvalidTransition.
  JobRecord Resume(std::string_view job_id);
  /// Pin a job (exempt from retention) or lift that. Throws JobNotFound.
  void Pin(std::string_view job_id, bool pinned);

  /// Return a job. Throws JobNotFound.
  JobRecord GetJob(std::string_view job_id);
  /// List jobs (see Catalog::ListJobs).
  JobPage ListJobs(const JobFilter& filter, const PageRequest& page);

  /// Load a completed job's result, whole or in part. Throws, distinctly: JobNotFound;
  /// ResultPathMissing (not completed, null/empty path, missing on disk, or resolving outside
  /// the artifact root or to the root itself, or marked for removal by retention);
  /// MissingReproducibilityMetadata; InvalidResult.
  BacktestResult GetResult(std::string_view job_id, const ReadOptions& options = {},
                           ReadStats* stats = nullptr);

  /// Resolve a job's result_path and check it is a directory strictly inside the artifact root.
  /// Throws ResultPathMissing.
  std::filesystem::path ResolveResultPath(const JobRecord& job) const;

  const std::filesystem::path& artifact_root() const { return artifact_root_; }

 private:
  Catalog& catalog_;
  std::filesystem::path artifact_root_;
  Clock& clock_;
};

// ---------------------------------------------------------------------------------------------
// Worker

/// What a worker reports as it goes (for progress output); called on worker threads.
struct WorkerEvent {
  enum class Kind { kClaimed, kProgress, kCompleted, kFailed, kRetrying, kCancelled, kLostLease,
                    kRescued };
  Kind kind;
  /// Empty for an event of the worker itself rather than of a job: kRetrying while the catalog
  /// is unavailable (the worker backs off and retries), and once it is available again.
  std::string job_id;
  int attempt = 0;
  int progress_pct = 0;
  std::string message;
};

struct WorkerOptions {
  std::string worker_id;  ///< default: "<hostname>:<pid>:<random>"
  int concurrency = 1;    ///< jobs run at once (threads)
  /// A running job whose worker sends no heartbeat for this long is rescued.
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
  WriteOptions write_options;
  std::function<void(const WorkerEvent&)> on_event;
};

/// Runs jobs: claims, drives the engine with heartbeats, checkpoints and cancellation,
/// publishes the bundle and completes the job; rescues jobs of dead workers.
class Worker {
 public:
  /// `catalog_url` is opened by the worker itself (one connection pool for its threads).
  Worker(std::string catalog_url, std::filesystem::path artifact_root, WorkerOptions options,
         CatalogOptions catalog_options = {});
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Run until Stop() (or, with until_idle, until nothing is left to do). Returns the number of
  /// attempts this worker finished (completed, failed, cancelled). While the catalog throws
  /// CatalogUnavailable (e.g. PostgreSQL restarting) it backs off (100 ms doubling up to 5 s)
  /// and retries; running jobs keep their attempts. Other errors end Run() with an exception.
  int Run();
  /// Ask Run() to return: running jobs are stopped (left to be rescued or resumed). Thread-safe
  /// and async-signal-safe.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Retention and reconciliation

struct RetentionOptions {
  int retention_days = 90;
  bool dry_run = false;
  int batch_size = 1000;
  std::function<void(int64_t done)> on_progress;
};

struct RetentionReport {
  int64_t removed = 0;  ///< jobs removed (or, on a dry run, that would be)
  /// Every job removed (or, on a dry run, that would be), in the order removed. Kept whole for
  /// `cleanup --json`: a million removed jobs is a million ids in memory (tens of MB); all other
  /// state is held one batch at a time.
  std::vector<std::string> job_ids;
  bool dry_run = false;
};

/// Remove terminal, unpinned jobs that ended more than `retention_days` ago: mark the rows
/// expiring, remove their bundles and checkpoints, delete the rows (still marked and terminal).
/// A crash at any step is finished by the next run. Throws InvalidArgument for a negative window
/// or a batch size below 1.
RetentionReport CleanupOldResults(Catalog& catalog, const std::filesystem::path& artifact_root,
                                  Clock& clock, const RetentionOptions& options);

/// One problem `verify` found.
struct VerifyProblem {
  enum class Kind { kInvalidBundle, kMissingBundle, kOrphanBundle };
  Kind kind;
  std::string job_id;  ///< empty for an orphan
  std::string path;
  std::string error_code;  ///< contract name of the error, for kInvalidBundle / kMissingBundle
  std::string message;
};

struct VerifyReport {
  int64_t checked = 0;
  std::vector<VerifyProblem> problems;
};

/// Check completed jobs' bundles against their manifests (all of them, or just `job_ids`), and
/// when `job_ids` is empty also report directories under the root that no row knows and that
/// are older than `orphan_grace`. Writes nothing. Throws JobNotFound for an unknown listed id.
VerifyReport VerifyBundles(Catalog& catalog, const std::filesystem::path& artifact_root,
                           const std::vector<std::string>& job_ids,
                           std::chrono::seconds orphan_grace,
                           const std::function<void(int64_t done)>& on_progress = {});

}  // namespace btstore
