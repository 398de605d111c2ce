#pragma once
/// The catalog of backtest jobs (contract section 2): one interface, two backends
/// (PostgreSQL, the production backend, and embedded SQLite, the default). Every lifecycle move
/// is a compare-and-set in one transaction: a move that changes no row lost a race, and the
/// result says which state won. Times are passed in by the caller (see Clock in lifecycle.h).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/model.h"

namespace btstore {

/// How to connect. The defaults are the command line's.
struct CatalogOptions {
  /// PostgreSQL: connections kept in the pool shared by the threads of a process.
  int pool_size = 4;
  /// Bound on reaching the database before CatalogUnavailable is thrown.
  std::chrono::milliseconds connect_timeout{5000};
};

/// The outcome of an idempotent submission.
struct SubmitResult {
  JobRecord job;
  bool created = false;  ///< false: the job_id existed and nothing was written
};

/// The outcome of a heartbeat.
struct HeartbeatResult {
  bool owned = false;             ///< false: the attempt lost its lease; stop writing
  bool cancel_requested = false;  ///< true: stop, clean up, AcknowledgeCancel
};

/// The outcome of a compare-and-set move by a worker.
struct TransitionResult {
  bool applied = false;
  JobStatus status = JobStatus::kPending;  ///< the job's status after the call (the winner's)
  int attempt = 0;                         ///< the job's attempt after the call
};

/// What completion records, in the same transaction as the status.
struct CompletionRecord {
  std::string result_path;
  Metrics metrics;
  std::string snapshot_id;
  std::string dataset_version_ids_json;  ///< a JSON object
  /// summary.json's cost_config and cost_summary as JSON text, or nullopt (stored as NULL).
  std::optional<std::string> cost_config_json;
  std::optional<std::string> cost_summary_json;
};

/// One attempt's completion in a group commit (Catalog::CompleteMany).
struct CompletionRequest {
  std::string job_id;
  int attempt = 0;
  CompletionRecord record;
};

/// A job that retention removes, or would remove.
struct RetentionCandidate {
  std::string job_id;
  JobStatus status = JobStatus::kCompleted;
  std::optional<std::string> result_path;
  std::optional<std::string> checkpoint_path;
  Timestamp aged_from;  ///< completed_at, or created_at where that is null
};

/// How many jobs have one status, for monitoring.
struct StatusCount {
  JobStatus status = JobStatus::kPending;
  int64_t count = 0;
  Timestamp oldest_created_at;                   ///< the oldest job's created_at
  std::optional<Timestamp> oldest_heartbeat_at;  ///< the stalest heartbeat (running jobs)
};

/// Wakes a worker when a cancel is requested (PostgreSQL: LISTEN/NOTIFY; SQLite: a directory
/// beside the database file, watched with inotify, for the processes of its one host). A hint
/// only: the row is the truth, and workers also read it on every heartbeat.
class CancelListener {
 public:
  virtual ~CancelListener() = default;
  /// Wait up to `timeout` for a cancel notification; return the job_id, or nullopt on timeout.
  /// After a lost connection it reconnects and returns "" so the caller re-reads its rows.
  /// Throws CatalogUnavailable while the database cannot be reached.
  virtual std::optional<std::string> Wait(std::chrono::milliseconds timeout) = 0;
};

class Catalog {
 public:
  virtual ~Catalog() = default;

  /// Open a catalog: "postgresql://..." or "postgres://..." or any libpq connection string
  /// ("host=... dbname=..."), or "sqlite:PATH" (the parent directory is created).
  /// Throws InvalidArgument for an unknown scheme, CatalogUnavailable when unreachable.
  /// Does not migrate.
  static std::unique_ptr<Catalog> Open(std::string_view url, const CatalogOptions& options = {});

  /// "postgresql" or "sqlite".
  virtual std::string_view Backend() const = 0;

  /// Apply the pending numbered migrations in order, each in its own transaction, recorded in
  /// `btstore_migrations`; safe when several processes migrate at once. Returns how many were
  /// applied (0 when up to date). Throws CatalogUnavailable, InternalError (a migration failed:
  /// nothing of it is applied).
  virtual int Migrate() = 0;

  // --- Jobs ------------------------------------------------------------------------------------

  /// Insert the job unless its job_id exists (then return the existing row, created=false).
  /// `spec.job_id` must be set and valid; the job's engine is `spec.engine`, else its config's
  /// "engine" key, else kDefaultEngine. Throws InvalidArgument, CatalogUnavailable.
  virtual SubmitResult Submit(const JobSpec& spec, Timestamp now) = 0;

  /// Insert `spec` as a job that is already completed with `record` (an imported result): status
  /// completed, started_at and completed_at `now`, progress 100, attempt 0, unless its job_id
  /// exists (then return the existing row, created=false, and write nothing). `spec.job_id` must
  /// be set and valid. Throws InvalidArgument, CatalogUnavailable.
  virtual SubmitResult InsertCompleted(const JobSpec& spec, const CompletionRecord& record,
                                       Timestamp now) = 0;

  /// Return the job, or nullopt. Throws CatalogUnavailable.
  virtual std::optional<JobRecord> FindJob(std::string_view job_id) = 0;

  /// Return the job. Throws JobNotFound, CatalogUnavailable.
  JobRecord GetJob(std::string_view job_id);

  /// List jobs newest first (created_at DESC, id DESC), filtered, one page. Every filter value
  /// is a bound parameter. Throws InvalidArgument (see ValidateListRequest), CatalogUnavailable.
  virtual JobPage ListJobs(const JobFilter& filter, const PageRequest& page) = 0;

  /// Count jobs by status (only statuses that have jobs), with the oldest creation and the
  /// stalest heartbeat of each. Throws CatalogUnavailable.
  virtual std::vector<StatusCount> CountJobs() = 0;

  /// Exempt a job from retention, or lift that. Throws JobNotFound, CatalogUnavailable.
  virtual void SetPinned(std::string_view job_id, bool pinned) = 0;

  // --- Worker moves (fenced by attempt) --------------------------------------------------------

  /// Claim up to `max_jobs` pending jobs whose run_after has passed and whose engine is one of
  /// `engines` (any engine when empty), highest priority then oldest first: each becomes
  /// running with attempt+1, worker_id, started_at, a lease until now+lease, cancel_requested
  /// cleared. Concurrent claimers never get the same job. Throws InvalidArgument (max_jobs
  /// below 1, an invalid engine name), CatalogUnavailable.
  virtual std::vector<JobRecord> ClaimJobs(std::string_view worker_id, int max_jobs,
                                           std::chrono::seconds lease, Timestamp now,
                                           const std::vector<std::string>& engines) = 0;
  /// Claim as above, jobs of any engine.
  std::vector<JobRecord> ClaimJobs(std::string_view worker_id, int max_jobs,
                                   std::chrono::seconds lease, Timestamp now) {
    return ClaimJobs(worker_id, max_jobs, lease, now, {});
  }

  /// Renew the lease of a running attempt and record progress (0..100) and, when given, the
  /// attempt's newest checkpoint. Does nothing and returns owned=false when the job is no longer
  /// running in this attempt. Throws CatalogUnavailable.
  virtual HeartbeatResult Heartbeat(std::string_view job_id, int attempt, int progress_pct,
                                    const std::optional<std::string>& checkpoint_path,
                                    std::chrono::seconds lease, Timestamp now) = 0;

  /// Complete a running attempt: status, result_path, metrics, snapshot_id,
  /// dataset_version_ids, the cost blocks, progress 100 and completed_at in one transaction, and
  /// clear the error_message an earlier attempt left, only if the job is running in this attempt
  /// and no cancel was requested. Throws CatalogUnavailable.
  virtual TransitionResult Complete(std::string_view job_id, int attempt,
                                    const CompletionRecord& record, Timestamp now) = 0;

  /// Complete several running attempts in one transaction (a group commit: one durable commit
  /// for all of them). Each is the compare-and-set of Complete, fenced by its own attempt: an
  /// attempt that lost its lease, or whose cancel was requested, is not completed and gets the
  /// winner's state, while the others are completed. Returns one result per request, in order.
  /// Throws JobNotFound when a job does not exist (then nothing of the batch is applied),
  /// CatalogUnavailable (the batch may or may not have committed: each move is safe to repeat).
  virtual std::vector<TransitionResult> CompleteMany(const std::vector<CompletionRequest>& requests,
                                                     Timestamp now) = 0;

  /// Fail a running attempt with `error`: back to pending with retry_count+1 and run_after =
  /// now+retry_delay while retry_count < max_retries, else failed (completed_at set). Only if
  /// the job is running in this attempt. A requested cancel wins: the job becomes cancelled.
  /// Throws CatalogUnavailable.
  virtual TransitionResult Fail(std::string_view job_id, int attempt, std::string_view error,
                                std::chrono::milliseconds retry_delay, Timestamp now) = 0;

  /// End a running attempt whose cancel was requested: cancelled, completed_at set.
  /// Throws CatalogUnavailable.
  virtual TransitionResult AcknowledgeCancel(std::string_view job_id, int attempt,
                                             Timestamp now) = 0;

  /// Give a running attempt's job back without spending a retry (its worker is shutting down):
  /// pending at once, retry_count unchanged, checkpoint kept, lease and worker cleared,
  /// error_message set to `reason`. A requested cancel wins: the job becomes cancelled. Only if
  /// the job is running in this attempt.
  virtual TransitionResult Release(std::string_view job_id, int attempt, std::string_view reason,
                                   Timestamp now) = 0;

  // --- User moves ------------------------------------------------------------------------------

  /// Cancel a job: pending becomes cancelled at once; running gets cancel_requested (and a
  /// wake-up for the listeners: on PostgreSQL a NOTIFY on channel `btstore_cancel` with the
  /// job_id, on SQLite a file created in `<database file>-cancels` once committed). Idempotent
  /// for a running job already asked to cancel. Returns the row after the move.
  /// Throws JobNotFound, InvalidTransition for a terminal job, CatalogUnavailable.
  virtual JobRecord RequestCancel(std::string_view job_id, Timestamp now) = 0;

  /// Resume a failed or cancelled job: pending again, retry_count+1, cancel_requested cleared,
  /// error and completed_at cleared, checkpoint kept. Returns the row after the move.
  /// Throws JobNotFound, InvalidTransition (other statuses, or a job retention is removing),
  /// CatalogUnavailable.
  virtual JobRecord Resume(std::string_view job_id, Timestamp now) = 0;

  /// Rescue running jobs whose lease expired before `now` (their worker died): each is retried
  /// (pending, retry_count+1, run_after = now+retry_delay) while retry_count < max_retries, else
  /// failed with an error_message naming the worker and its last heartbeat; a job whose cancel
  /// was requested becomes cancelled. One rescuer at a time (advisory lock on PostgreSQL).
  /// Returns the rows after the move. Throws CatalogUnavailable.
  virtual std::vector<JobRecord> RescueExpired(Timestamp now, std::chrono::milliseconds retry_delay,
                                               int max_jobs) = 0;

  /// Return a listener for cancel notifications, or nullptr where the backend has none (an
  /// in-memory SQLite catalog).
  /// Throws CatalogUnavailable.
  virtual std::unique_ptr<CancelListener> ListenForCancels() = 0;

  // --- Retention -------------------------------------------------------------------------------

  /// Return up to `limit` jobs that retention would remove: terminal, not pinned, aged before
  /// `cutoff`, plus jobs already marked expiring. Ordered by job_id; starts after
  /// `after_job_id` when given. Writes nothing. Throws CatalogUnavailable.
  virtual std::vector<RetentionCandidate> FindExpired(
      Timestamp cutoff, int limit, const std::optional<std::string>& after_job_id) = 0;

  /// Mark up to `limit` expired jobs (as FindExpired) expiring at `now`, in one transaction, and
  /// return every marked job (including ones a crashed run marked earlier).
  /// Throws CatalogUnavailable.
  virtual std::vector<RetentionCandidate> MarkExpiring(Timestamp cutoff, int limit,
                                                       Timestamp now) = 0;

  /// Delete the rows of these jobs that are still marked expiring and terminal. Returns the
  /// job_ids of the rows this call deleted (a concurrent cleaner may have deleted others).
  /// Throws CatalogUnavailable.
  virtual std::vector<std::string> DeleteExpiring(const std::vector<std::string>& job_ids) = 0;
  // --- API tokens ------------------------------------------------------------------------------

  /// Store a token (its hash, never the token). Throws InvalidArgument when its id or hash is
  /// already stored, CatalogUnavailable.
  virtual void InsertToken(const TokenRecord& token) = 0;
  /// Return the token whose hash is `token_hash` (revoked or not), or nullopt.
  /// Throws CatalogUnavailable.
  virtual std::optional<TokenRecord> FindTokenByHash(std::string_view token_hash) = 0;
  /// Return every token, oldest first. Throws CatalogUnavailable.
  virtual std::vector<TokenRecord> ListTokens() = 0;
  /// Revoke a token at `now`; revoking a revoked token changes nothing. Returns false when no
  /// token has that id. Throws CatalogUnavailable.
  virtual bool RevokeToken(std::string_view token_id, Timestamp now) = 0;
};

}  // namespace btstore
