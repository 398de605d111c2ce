// JobService: submission and the user's moves on jobs (contract section 3). Reading results is
// in result_access.cc.

#include <system_error>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/artifact_root_internal.h"
#include "lifecycle/engine_internal.h"

namespace btstore {

namespace internal {

std::filesystem::path PrepareArtifactRoot(const std::filesystem::path& root) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) {
    throw InternalError("cannot create the artifact root " + root.string() + ": " + ec.message(),
                        {{"path", root.string()}});
  }
  std::filesystem::path canonical = std::filesystem::canonical(root, ec);
  if (ec) {
    throw InternalError("cannot resolve the artifact root " + root.string() + ": " + ec.message(),
                        {{"path", root.string()}});
  }
  return canonical;
}

}  // namespace internal

JobService::JobService(Catalog& catalog, std::filesystem::path artifact_root, Clock& clock)
    : catalog_(catalog),
      artifact_root_(internal::PrepareArtifactRoot(artifact_root)),
      clock_(clock) {}

SubmitResult JobService::Submit(JobSpec spec) {
  if (spec.job_id.empty()) spec.job_id = DeriveJobId(spec);
  ValidateJobSpec(spec);
  // A config the engine cannot run is refused now, not discovered by a worker hours later.
  internal::ValidateEngineSpec(spec);
  return catalog_.Submit(spec, clock_.Now());
}

JobRecord JobService::Cancel(std::string_view job_id) {
  return catalog_.RequestCancel(job_id, clock_.Now());
}

JobRecord JobService::Resume(std::string_view job_id) {
  return catalog_.Resume(job_id, clock_.Now());
}

void JobService::Pin(std::string_view job_id, bool pinned) { catalog_.SetPinned(job_id, pinned); }

JobRecord JobService::GetJob(std::string_view job_id) { return catalog_.GetJob(job_id); }

JobPage JobService::ListJobs(const JobFilter& filter, const PageRequest& page) {
  return catalog_.ListJobs(filter, page);
}

}  // namespace btstore
