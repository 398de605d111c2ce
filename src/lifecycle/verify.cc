// Reconciliation of the catalog with the artifact root: completed jobs whose bundle is missing or
// fails its manifest, and bundle directories that no job row knows. Reads only.

#include <system_error>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/bundle_path_internal.h"

namespace btstore {

namespace fs = std::filesystem;
namespace li = lifecycle_internal;

namespace {

class Verifier {
 public:
  Verifier(Catalog& catalog, fs::path root, const std::function<void(int64_t)>& on_progress)
      : catalog_(catalog), root_(std::move(root)), on_progress_(on_progress) {}

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

  // Report directories directly under the root that no job row names and that are older than
  // `grace` (younger ones may be a publish in progress by another tool).
  void FindOrphans(std::chrono::seconds grace) {
    std::error_code ec;
    if (!fs::is_directory(root_, ec)) return;
    const fs::file_time_type now = fs::file_time_type::clock::now();
    fs::directory_iterator it(root_, ec);
    if (ec) ThrowIo("list", root_, ec);
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) ThrowIo("list", root_, ec);
      const std::string name = it->path().filename().string();
      // .staging, .trash, .checkpoints, .locks and any other dot-directory are btstore's own.
      if (name.starts_with('.')) continue;
      std::error_code entry_ec;
      if (!it->is_directory(entry_ec)) continue;
      const fs::file_time_type mtime = it->last_write_time(entry_ec);
      if (entry_ec || now - mtime < grace) continue;
      if (HasJobRow(name)) continue;
      report_.problems.push_back(
          {VerifyProblem::Kind::kOrphanBundle, "", it->path().string(), "",
           "no job row has the name of directory " + name + "; remove it or register it"});
    }
  }

  VerifyReport TakeReport() { return std::move(report_); }

 private:
  std::optional<VerifyProblem> FindProblem(const JobRecord& job) {
    const li::ResolvedPath resolved = li::ResolveStoredPath(root_, job.result_path, true);
    const std::string path = job.result_path.value_or("");
    try {
      if (resolved.problem != li::PathProblem::kNone) {
        li::ThrowResultPathMissing(job.job_id, job.result_path, resolved, root_);
      }
      InspectBundle(resolved.path);
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

  [[noreturn]] static void ThrowIo(std::string_view what, const fs::path& path,
                                   const std::error_code& ec) {
    throw InternalError("cannot " + std::string(what) + " " + path.string() + ": " + ec.message(),
                        {{"path", path.string()}});
  }

  Catalog& catalog_;
  fs::path root_;
  const std::function<void(int64_t)>& on_progress_;
  VerifyReport report_;
};

}  // namespace

VerifyReport VerifyBundles(Catalog& catalog, const fs::path& artifact_root,
                           const std::vector<std::string>& job_ids,
                           std::chrono::seconds orphan_grace,
                           const std::function<void(int64_t done)>& on_progress) {
  Verifier verifier(catalog, li::CanonicalRoot(artifact_root), on_progress);
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
  verifier.FindOrphans(orphan_grace);
  return verifier.TakeReport();
}

}  // namespace btstore
