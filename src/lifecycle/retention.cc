// Retention (contract section 5): mark, sweep, delete, one batch at a time.
//
// Marking first is what makes a crash at any step safe: a row marked expiring reads as "no
// result" (GetResult throws ResultPathMissing) whether or not its files are gone yet, Resume
// refuses it, and MarkExpiring hands it to the next run again until its row is deleted. Files
// go before the row, so a bundle never outlives the row that names it past the next run.

#include <chrono>
#include <set>
#include <system_error>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/bundle_path_internal.h"

namespace btstore {

namespace fs = std::filesystem;
namespace li = lifecycle_internal;

namespace {

// The widest window accepted: ten thousand years keeps `now - window` far from the range limits
// of Timestamp (microseconds in 64 bits) and beyond any date the model can hold.
constexpr int kMaxRetentionDays = 3'650'000;
// Staging and trash directories younger than this may belong to a writer at work.
constexpr std::chrono::hours kDebrisMinAge{1};
// btstore's directories of per-job checkpoints and publish locks under the artifact root.
constexpr std::string_view kCheckpointsDir = ".checkpoints";
constexpr std::string_view kLocksDir = ".locks";

void Validate(const RetentionOptions& options) {
  if (options.retention_days < 0 || options.retention_days > kMaxRetentionDays) {
    throw InvalidArgument(
        "the retention window must be between 0 and " + std::to_string(kMaxRetentionDays) +
            " days, got " + std::to_string(options.retention_days),
        {{"field", "retention_days"}, {"value", std::to_string(options.retention_days)}});
  }
  if (options.batch_size < 1) {
    throw InvalidArgument(
        "the retention batch size must be at least 1, got " + std::to_string(options.batch_size),
        {{"field", "batch_size"}, {"value", std::to_string(options.batch_size)}});
  }
}

// Remove a directory entry without following it: a symlink goes alone, never its target.
// Directories are moved to the trash unflushed and their parents collected in `dirty`: the
// caller flushes each once per batch.
void RemoveEntry(const fs::path& path, const std::string& job_id, std::set<fs::path>& dirty) {
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(path, ec);
  if (ec == std::errc::no_such_file_or_directory || (!ec && !fs::exists(status))) return;
  if (!ec && fs::is_directory(status)) {
    RemoveBundleDir(path, /*flush_parent=*/false);
    dirty.insert(path.parent_path());
    return;
  }
  if (!ec) fs::remove(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    throw InternalError("cannot remove " + path.string() + " of job " + job_id + ": " +
                            ec.message() + "; fix the cause and run cleanup again",
                        {{"job_id", job_id}, {"path", path.string()}});
  }
}

// Remove everything of a marked job under the root: its bundle (only when its path resolves
// strictly inside the root; a path elsewhere is not ours to delete), the bundle's default place
// <root>/<job_id>, and its checkpoints. Idempotent: a second cleaner, or the next run after a
// crash, finds less or nothing.
void RemoveJobFiles(Catalog& catalog, const fs::path& root, const RetentionCandidate& job,
                    std::set<fs::path>& dirty) {
  const li::ResolvedPath bundle = li::ResolveStoredPath(root, job.result_path, false);
  if (bundle.problem == li::PathProblem::kNone) {
    // A damaged row could point at another job's bundle (<root>/<other_job_id>/...): that one
    // stays, since removing it would leave the other job completed without its result.
    const std::string top = bundle.path.lexically_relative(root).begin()->string();
    if (top == job.job_id || !catalog.FindJob(top)) RemoveEntry(bundle.path, job.job_id, dirty);
  }

  // A row from another tool may carry any text; only a valid job_id names a directory.
  bool valid_id = true;
  try {
    ValidateJobId(job.job_id);
  } catch (const InvalidArgument&) {
    valid_id = false;
  }
  if (!valid_id) return;
  // The bundle's default place (usually just removed above, then this finds nothing).
  RemoveEntry(root / job.job_id, job.job_id, dirty);
  // A half-removed checkpoint directory is harmless: the row stays marked (Resume refuses it)
  // until this has succeeded, so no attempt can load from it.
  const fs::path checkpoints = root / kCheckpointsDir / job.job_id;
  std::error_code ec;
  fs::remove_all(checkpoints, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    throw InternalError("cannot remove the checkpoints of job " + job.job_id + " at " +
                            checkpoints.string() + ": " + ec.message() +
                            "; fix the cause and run cleanup again",
                        {{"job_id", job.job_id}, {"path", checkpoints.string()}});
  }
  // The worker's publish lock would otherwise outlive every job ever run. Unlinking it is safe
  // here: no attempt of a marked, terminal job can publish any more (a stale worker that still
  // takes the lock finds that it lost its attempt), and the job_id can only be submitted anew
  // once its row is deleted, after this.
  RemoveEntry(root / kLocksDir / (job.job_id + ".lock"), job.job_id, dirty);
}

RetentionReport DryRun(Catalog& catalog, Timestamp cutoff, const RetentionOptions& options) {
  RetentionReport report;
  report.dry_run = true;
  std::optional<std::string> after;
  while (true) {
    std::vector<RetentionCandidate> page = catalog.FindExpired(cutoff, options.batch_size, after);
    for (RetentionCandidate& job : page) report.job_ids.push_back(std::move(job.job_id));
    report.removed += static_cast<int64_t>(page.size());
    if (options.on_progress && !page.empty()) options.on_progress(report.removed);
    if (static_cast<int>(page.size()) < options.batch_size) break;
    after = report.job_ids.back();
  }
  return report;
}

}  // namespace

// The report keeps every removed job_id (the command line prints them with --json): for a
// million expired jobs that is a million ids in memory, some tens of megabytes, which is
// acceptable for a maintenance command; everything else is held one batch at a time.
RetentionReport CleanupOldResults(Catalog& catalog, const fs::path& artifact_root, Clock& clock,
                                  const RetentionOptions& options) {
  Validate(options);
  const Timestamp cutoff = clock.Now() - std::chrono::days(options.retention_days);
  if (options.dry_run) return DryRun(catalog, cutoff, options);

  const fs::path root = li::CanonicalRoot(artifact_root);
  RetentionReport report;
  // Jobs of the previous batch whose rows this run did not delete (another cleaner did, or
  // they cannot go): a batch made only of those again means no progress is possible.
  std::set<std::string> undeleted_before;
  while (true) {
    const std::vector<RetentionCandidate> batch =
        catalog.MarkExpiring(cutoff, options.batch_size, clock.Now());
    if (batch.empty()) break;
    std::vector<std::string> ids;
    std::set<fs::path> dirty;
    for (const RetentionCandidate& job : batch) {
      RemoveJobFiles(catalog, root, job, dirty);
      ids.push_back(job.job_id);
    }
    // One flush per directory and batch makes every removal above durable before any row goes,
    // so a crash never brings back a bundle whose row was deleted.
    for (const fs::path& dir : dirty) FlushDirectory(dir);
    const std::vector<std::string> deleted = catalog.DeleteExpiring(ids);
    // The catalog names exactly the rows this call deleted, even when another cleaner sweeps
    // the same batch at the same time.
    const std::set<std::string> deleted_set(deleted.begin(), deleted.end());
    bool progress = !deleted.empty();
    std::set<std::string> undeleted;
    for (const std::string& id : ids) {
      if (deleted_set.contains(id)) continue;
      if (!undeleted_before.contains(id)) progress = true;
      undeleted.insert(id);
    }
    report.removed += static_cast<int64_t>(deleted.size());
    report.job_ids.insert(report.job_ids.end(), deleted.begin(), deleted.end());
    if (!progress) {
      throw InternalError("retention marked job " + batch.front().job_id +
                              " for removal but cannot delete its row; run cleanup again and "
                              "report this if it persists",
                          {{"job_id", batch.front().job_id}});
    }
    undeleted_before = std::move(undeleted);
    if (options.on_progress) options.on_progress(report.removed);
  }
  std::error_code ec;
  if (fs::exists(root, ec)) RemoveStagingDebris(root, kDebrisMinAge);
  return report;
}

}  // namespace btstore
