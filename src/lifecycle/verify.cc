// Reconciliation of the catalog with the artifact root: completed jobs whose bundle is missing or
// fails its manifest, and bundle directories that no job row knows. Reads only.

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/verify_internal.h"

namespace btstore {

namespace {

class Verifier {
 public:
  Verifier(Catalog& catalog, ArtifactStore& store, const std::function<void(int64_t)>& on_progress)
      : catalog_(catalog), store_(store), on_progress_(on_progress) {}

  // Check one completed job's bundle. Jobs of other statuses have no bundle to check, and a job
  // that retention is removing has none on purpose.
  void CheckJob(const JobRecord& job) {
    if (job.status != JobStatus::kCompleted || job.expiring_at) return;
    ++report_.checked;
    std::optional<VerifyProblem> problem = FindProblem(job);
    // Retention or a concurrent run may have changed the job since it was read; only a problem
    // that still holds for the current row is reported.
    if (problem) {
      std::optional<JobRecord> now = catalog_.FindJob(job.job_id);
      if (now && now->status == JobStatus::kCompleted && !now->expiring_at &&
          now->result_path == job.result_path) {
        report_.problems.push_back(std::move(*problem));
      }
    }
    if (on_progress_) on_progress_(report_.checked);
  }

  // Report bundles under the root that no job row names and that are older than `grace`
  // (younger ones may be a publish in progress by another tool), and those of attempts that
  // lost to the one that completed their job (on an object store every attempt writes under a
  // prefix of its own; a dead worker's stays until `cleanup` removes it).
  void FindOrphans(std::chrono::seconds grace) {
    for (const StoredBundle& bundle : store_.ListBundles(grace)) {
      if (!HasJobRow(bundle.name)) {
        report_.problems.push_back(
            {VerifyProblem::Kind::kOrphanBundle, "", bundle.location, "",
             "no job row has the name of directory " + bundle.name + "; remove it or register it"});
      } else if (internal::IsStrayAttempt(catalog_, store_, bundle)) {
        report_.problems.push_back(
            {VerifyProblem::Kind::kOrphanBundle, bundle.name, bundle.location, "",
             "an attempt of job " + bundle.name + " that did not complete it left this; " +
                 "cleanup removes it"});
      }
    }
  }

  VerifyReport TakeReport() { return std::move(report_); }

 private:
  std::optional<VerifyProblem> FindProblem(const JobRecord& job) {
    const BundleLocation where = store_.Resolve(job.result_path, /*require_bundle=*/true);
    const std::string path = job.result_path.value_or("");
    try {
      if (where.problem != PathProblem::kNone) {
        store_.ThrowResultPathMissing(job.job_id, job.result_path, where);
      }
      store_.Inspect(where);
      return std::nullopt;
    } catch (const ResultPathMissing& error) {
      return VerifyProblem{VerifyProblem::Kind::kMissingBundle, job.job_id, path,
                           std::string(ErrorCodeName(error.code())), error.what()};
    } catch (const InvalidResult& error) {
      return VerifyProblem{VerifyProblem::Kind::kInvalidBundle, job.job_id, path,
                           std::string(ErrorCodeName(error.code())), error.what()};
    }
  }

  bool HasJobRow(const std::string& name) {
    // A name that is not a valid job_id cannot be any job's.
    try {
      ValidateJobId(name);
    } catch (const InvalidArgument&) {
      return false;
    }
    return catalog_.FindJob(name).has_value();
  }

  Catalog& catalog_;
  ArtifactStore& store_;
  const std::function<void(int64_t)>& on_progress_;
  VerifyReport report_;
};

}  // namespace

namespace internal {

bool IsStrayAttempt(Catalog& catalog, ArtifactStore& store, const StoredBundle& bundle) {
  const std::optional<JobRecord> job = catalog.FindJob(bundle.name);
  if (!job || job->status != JobStatus::kCompleted || job->expiring_at) return false;
  const BundleLocation current = store.Resolve(job->result_path, /*require_bundle=*/false);
  return current.problem == PathProblem::kNone && current.location != bundle.location;
}

}  // namespace internal

VerifyReport VerifyBundles(Catalog& catalog, ArtifactStore& store, const VerifyOptions& options) {
  Verifier verifier(catalog, store, options.on_progress);
  const std::vector<std::string>& job_ids = options.job_ids;
  if (!job_ids.empty()) {
    // Every id is looked up before any bundle is read, so a mistyped id fails at once.
    std::vector<JobRecord> jobs;
    jobs.reserve(job_ids.size());
    for (const std::string& job_id : job_ids) jobs.push_back(catalog.GetJob(job_id));
    for (const JobRecord& job : jobs) verifier.CheckJob(job);
    return verifier.TakeReport();
  }
  // Keyset pages: rows completed while this runs may be missed or seen, never repeated.
  JobFilter filter;
  filter.statuses = {JobStatus::kCompleted};
  PageRequest page;
  page.limit = kMaxListLimit;
  while (true) {
    JobPage jobs = catalog.ListJobs(filter, page);
    for (const JobRecord& job : jobs.jobs) verifier.CheckJob(job);
    if (!jobs.next) break;
    page.after = std::move(jobs.next);
  }
  verifier.FindOrphans(options.orphan_grace);
  return verifier.TakeReport();
}

}  // namespace btstore
