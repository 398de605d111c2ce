// Retention (contract section 5): mark, sweep, delete, one batch at a time.
//
// Marking first is what makes a crash at any step safe: a row marked expiring reads as "no
// result" (GetResult throws ResultPathMissing) whether or not its files are gone yet, Resume
// refuses it, and MarkExpiring hands it to the next run again until its row is deleted. Files
// go before the row, so a bundle never outlives the row that names it past the next run.

#include <chrono>
#include <set>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/verify_internal.h"

namespace btstore {

namespace {

// The widest window accepted: ten thousand years keeps `now - window` far from the range limits
// of Timestamp (microseconds in 64 bits) and beyond any date the model can hold.
constexpr int kMaxRetentionDays = 3'650'000;
// Staging and trash directories younger than this may belong to a writer at work.
constexpr std::chrono::hours kDebrisMinAge{1};

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

// Remove everything of a marked job: its bundle (only when its path resolves strictly inside the
// root; a path elsewhere is not ours to delete), and what the store keeps for the job besides
// (its default place, checkpoints, publish lock). Idempotent: a second cleaner, or the next run
// after a crash, finds less or nothing.
void RemoveJobFiles(Catalog& catalog, ArtifactStore& store, const RetentionCandidate& job,
                    RemovalBatch& batch) {
  const BundleLocation bundle = store.Resolve(job.result_path, /*require_bundle=*/false);
  if (bundle.problem == PathProblem::kNone) {
    // A damaged row could point at another job's bundle (<root>/<other_job_id>/...): that one
    // stays, since removing it would leave the other job completed without its result.
    if (bundle.owner == job.job_id || !catalog.FindJob(bundle.owner)) {
      batch.RemoveBundle(bundle, job.job_id);
    }
  }
  batch.RemoveJob(job.job_id);
}

// Remove what attempts that lost to the completed one left (a dead worker's upload on an object
// store, where every attempt writes under a prefix of its own), once older than kDebrisMinAge
// so that no slow writer is swept mid-write. A local root has none: its attempts share one place.
void RemoveStrayAttempts(Catalog& catalog, ArtifactStore& store) {
  std::unique_ptr<RemovalBatch> removal;
  for (const StoredBundle& bundle : store.ListBundles(kDebrisMinAge)) {
    if (!internal::IsStrayAttempt(catalog, store, bundle)) continue;
    const BundleLocation where = store.Resolve(bundle.location, /*require_bundle=*/false);
    if (where.problem != PathProblem::kNone) continue;
    if (!removal) removal = store.BeginRemoval();
    removal->RemoveBundle(where, bundle.name);
  }
  if (removal) removal->Commit();
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
RetentionReport CleanupOldResults(Catalog& catalog, ArtifactStore& store, Clock& clock,
                                  const RetentionOptions& options) {
  Validate(options);
  const Timestamp cutoff = clock.Now() - std::chrono::days(options.retention_days);
  if (options.dry_run) return DryRun(catalog, cutoff, options);

  RetentionReport report;
  // Jobs of the previous batch whose rows this run did not delete (another cleaner did, or
  // they cannot go): a batch made only of those again means no progress is possible.
  std::set<std::string> undeleted_before;
  while (true) {
    const std::vector<RetentionCandidate> batch =
        catalog.MarkExpiring(cutoff, options.batch_size, clock.Now());
    if (batch.empty()) break;
    std::vector<std::string> ids;
    for (const RetentionCandidate& job : batch) ids.push_back(job.job_id);
    if (options.on_marked) options.on_marked(ids);
    std::unique_ptr<RemovalBatch> removal = store.BeginRemoval();
    for (const RetentionCandidate& job : batch) RemoveJobFiles(catalog, store, job, *removal);
    // Every removal above is durable before any row goes, so a crash never brings back a bundle
    // whose row was deleted.
    removal->Commit();
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
  store.RemoveDebris(kDebrisMinAge);
  RemoveStrayAttempts(catalog, store);
  return report;
}

}  // namespace btstore
