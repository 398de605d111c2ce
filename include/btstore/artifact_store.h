#pragma once
/// The artifact store: the one owner of the artifact root and of everything under it. It knows
/// where a job's bundle, its staging, checkpoints, trash and publish lock live, how a bundle is
/// published and unpublished atomically, how a stored `result_path` resolves (and the rule that
/// it must lie strictly inside the root), how files are removed and how bundles are listed.
/// The lifecycle layer asks it for all of this and never builds a path itself.
///
/// Locations are opaque strings: an absolute path for the local store, a URI for an object
/// store. Two implementations exist, chosen by ArtifactStore::Open: the local directory and an
/// S3-compatible object store over Arrow's S3 filesystem.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/bundle.h"

namespace btstore {

/// Why a stored result path cannot be used, or kNone.
enum class PathProblem {
  kNone,
  kNoPath,         ///< result_path is null or empty
  kUnresolvable,   ///< resolving it failed (a symlink loop, no permission)
  kIsRoot,         ///< it resolves to the artifact root itself
  kOutsideRoot,    ///< it resolves outside the artifact root
  kInternalDir,    ///< it resolves into the store's own areas (staging, trash, checkpoints)
  kMissingOnDisk,  ///< nothing is there
  kNotADirectory,  ///< something other than a bundle is there
};

/// Return a short reason for a problem, for error details and messages ("missing on disk").
std::string_view PathProblemReason(PathProblem problem);

/// A stored result path, resolved by the store.
struct BundleLocation {
  PathProblem problem = PathProblem::kNone;
  std::string location;  ///< where it resolves to (symlinks and `..` resolved), when known
  std::string owner;     ///< the name directly under the root that holds it (a job_id), if any
  std::string detail;    ///< the system's message, for kUnresolvable
};

/// A bundle written to the store's staging area and flushed, not yet visible to any reader.
struct StagedBundle {
  std::string location;  ///< the staging location, for Publish or Discard
};

/// One output stream of a command engine's program.
enum class LogStream { kStdout, kStderr };

/// Return "stdout" or "stderr".
std::string_view ToString(LogStream stream);

/// A bundle found under the root by ListBundles.
struct StoredBundle {
  std::string name;      ///< its name under the root (a job_id for btstore's own bundles)
  std::string location;  ///< where it is
};

/// Held while an attempt checks that it still owns its job, publishes, and completes or
/// unpublishes: one critical section among the workers of every process that shares the root.
/// Released when destroyed.
class JobLock {
 public:
  virtual ~JobLock() = default;
};

/// Removes the files of many jobs; the removals are durable once Commit() returns.
class RemovalBatch {
 public:
  virtual ~RemovalBatch() = default;
  /// Remove what `where` (resolved by Resolve with require_bundle false and no problem) holds,
  /// without following a symlink there. Missing is fine. Throws InternalError naming `job_id`.
  virtual void RemoveBundle(const BundleLocation& where, std::string_view job_id) = 0;
  /// Remove everything else the store keeps for `job_id`: its bundle's default place, its
  /// checkpoints, its logs, its attempt directories and its publish lock. Missing is fine.
  /// Throws InternalError naming `job_id`.
  virtual void RemoveJob(std::string_view job_id) = 0;
  /// Make every removal of this batch durable (one flush per directory touched).
  /// Throws InternalError.
  virtual void Commit() = 0;
};

/// Reads the daily_ic tables of bundles one after another, keeping its buffers from one bundle to
/// the next: one per thread of a read across many jobs (ArtifactStore::NewIcReader).
class IcReader {
 public:
  virtual ~IcReader() = default;
  /// Read the daily_ic table of the bundle at `where` (resolved by Resolve, without a problem)
  /// with every check of Read(where, {tables: {"daily_ic"}}): summary.json, the manifest's
  /// files, the file's size, rows and checksum. Return its columns date (date32), ic and rank_ic
  /// (float64), all nullable, in that order; other columns of the file are not read. Throws as
  /// Read.
  virtual std::shared_ptr<arrow::Table> Read(const BundleLocation& where) = 0;
  /// Start fetching, in the background, the files that a Read of the bundle at `result_path`
  /// (as the catalog stores it, unresolved) will read: a hint, which a store that gains nothing
  /// from it ignores. Nothing is read from the files, and a later Read reports every problem.
  virtual void WillNeed(const std::string& /*result_path*/) {}
};

/// Where bundles, staging, checkpoints and publish locks live.
class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;

  /// Open the store rooted at `root`: for "s3://bucket/prefix", the store on S3-compatible
  /// object storage (endpoint from BTSTORE_S3_ENDPOINT, region and credentials from the standard
  /// AWS environment variables and files; the bucket must exist); otherwise the local store
  /// rooted at the directory `root` (created when missing; relative to the working directory).
  /// Throws InvalidArgument for an empty root or an S3 root without a bucket, InternalError when
  /// the directory cannot be created or resolved. An S3 store starts its client on first use
  /// (or Prepare), so that a command that never reaches the store does not pay for it.
  static std::unique_ptr<ArtifactStore> Open(const std::string& root);

  /// Return the root as stored result paths are compared with it (absolute, canonical).
  virtual const std::string& root() const = 0;
  /// Get ready now for the first request rather than on it (the S3 store starts its client):
  /// for long-lived users (the Python package's Store, `serve`). Throws InternalError when the
  /// S3 client cannot be set up.
  virtual void Prepare() {}

  // --- Publishing (one attempt of a worker) ----------------------------------------------------

  /// Write `result` into a fresh staging location and flush it; nothing is visible to readers.
  /// Throws InvalidArgument for an invalid result (nothing is left behind), InternalError for
  /// I/O failures.
  virtual StagedBundle Stage(const BacktestResult& result, const WriteOptions& options) = 0;
  /// Remove a staged bundle that will not be published (also on a full disk). Throws
  /// InternalError.
  virtual void Discard(const StagedBundle& staged) = 0;
  /// Take the publish lock of `job_id`, waiting for its holder. Throws InternalError.
  virtual std::unique_ptr<JobLock> LockJob(std::string_view job_id) = 0;
  /// Publish `staged` as the bundle of `job_id` atomically and durably, first moving away the
  /// bundle an earlier, stale attempt of this job left in its place; return the result_path to
  /// record in the catalog. Call it holding LockJob(job_id). Throws InvalidTransition when
  /// something btstore did not write for this job is in that place (it is left alone),
  /// InternalError for I/O failures; `staged` stays for Discard.
  virtual std::string Publish(const StagedBundle& staged, std::string_view job_id) = 0;
  /// Remove the published bundle of `job_id` (an attempt that lost its completion). Missing is
  /// fine. Throws InternalError.
  virtual void Unpublish(std::string_view job_id) = 0;

  // --- Checkpoints -----------------------------------------------------------------------------

  /// Save `bytes` durably as the checkpoint of `attempt` of `job_id` (readers see the previous
  /// checkpoint or this one, never a part) and return its location. Throws InternalError.
  virtual std::string SaveCheckpoint(std::string_view job_id, int attempt,
                                     std::string_view bytes) = 0;
  /// Return the checkpoint saved at `location`, or nullopt when it is gone (removed by retention
  /// or an operator: the attempt starts over). Throws InternalError when it cannot be read.
  virtual std::optional<std::string> LoadCheckpoint(const std::string& location) = 0;
  /// Remove every checkpoint of `job_id`, best effort (they only cost space).
  virtual void RemoveCheckpoints(std::string_view job_id) = 0;

  // --- Attempt directories and logs (command engines) -------------------------------------------

  /// Create the working directory of `attempt` of `job_id` (for the program of a command engine:
  /// its job file, output directory and checkpoints) and return its local path, empty. What
  /// earlier attempts of the job left there is removed first (their attempts ended or lost their
  /// lease). The caller removes it with RemoveAttemptDir when the attempt ends; retention
  /// removes what a crashed worker left. Throws InternalError.
  virtual std::string MakeAttemptDir(std::string_view job_id, int attempt) = 0;
  /// Remove the working directory of `attempt` of `job_id`, best effort (it only costs space).
  virtual void RemoveAttemptDir(std::string_view job_id, int attempt) = 0;
  /// Return the local path where `stream` of `attempt` of `job_id` is logged, creating its
  /// directory. Throws InternalError.
  virtual std::string LogLocation(std::string_view job_id, int attempt, LogStream stream) = 0;
  /// Return the attempts of `job_id` that have a log, ascending. Throws InternalError.
  virtual std::vector<int> LogAttempts(std::string_view job_id) = 0;
  /// Return up to `max_bytes` of the log of `stream` of `attempt` of `job_id` from byte
  /// `offset`; empty at its end or when there is none. Throws InternalError.
  virtual std::string ReadLog(std::string_view job_id, int attempt, LogStream stream,
                              int64_t offset, int64_t max_bytes) = 0;

  // --- Reading ---------------------------------------------------------------------------------

  /// Resolve a stored result_path (absolute, or relative to the root as older tools wrote it):
  /// it must lie strictly inside the root, outside the store's own areas, and, with
  /// `require_bundle`, hold a bundle directory. Reports the problem instead of throwing.
  /// Throws InternalError only when the root itself cannot be resolved.
  virtual BundleLocation Resolve(const std::optional<std::string>& result_path,
                                 bool require_bundle) const = 0;
  /// Read the bundle at `where` (see ReadBundle for the options and errors).
  virtual BacktestResult Read(const BundleLocation& where, const ReadOptions& options,
                              ReadStats* stats) = 0;
  /// Open the table `name` of the bundle at `where` for a read batch by batch (see OpenTable in
  /// bundle.h for the options and errors).
  virtual std::unique_ptr<TableStream> OpenTable(const BundleLocation& where,
                                                 const std::string& name,
                                                 const ReadOptions& options) = 0;
  /// Return a reader of daily_ic tables for one thread (see IcReader). The base class's reads
  /// each bundle with Read; a store may have a leaner one.
  virtual std::unique_ptr<IcReader> NewIcReader();
  /// Validate and describe the bundle at `where` (see InspectBundle for the errors).
  virtual BundleInfo Inspect(const BundleLocation& where) = 0;
  /// Return the text of the summary.json at `where`, unchecked. Throws
  /// MissingReproducibilityMetadata when it is missing or unreadable.
  virtual std::string ReadSummaryText(const BundleLocation& where) = 0;
  /// Throw ResultPathMissing for the unusable `where` resolved from `stored`, with a message
  /// that says what to do (details: job_id, path, reason, artifact_root, resolved_path).
  [[noreturn]] void ThrowResultPathMissing(std::string_view job_id,
                                           const std::optional<std::string>& stored,
                                           const BundleLocation& where) const;

  // --- Maintenance -----------------------------------------------------------------------------

  /// Start removing the files of a batch of jobs (retention). Throws InternalError.
  virtual std::unique_ptr<RemovalBatch> BeginRemoval() = 0;
  /// List the bundles under the root that were last written more than `min_age` ago (younger
  /// ones may be a publish in progress), for `verify`. Throws InternalError.
  virtual std::vector<StoredBundle> ListBundles(std::chrono::seconds min_age) = 0;
  /// Remove staging and trash debris older than `min_age` (left by crashed writers). Returns
  /// how many entries it removed. Throws InternalError.
  virtual int RemoveDebris(std::chrono::seconds min_age) = 0;
};

/// Release the S3 client library when a store on object storage was opened in this process;
/// otherwise do nothing. Call it once at the end of main, after every store is destroyed: no
/// store on object storage can be opened afterwards. (Arrow's S3 library must be finalised, and
/// finalising it from an exit handler crashes.)
void FinalizeObjectStores();

}  // namespace btstore
