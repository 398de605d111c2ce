// JobService: submission and the user's moves on jobs (contract section 3). Reading results is
// in result_access.cc.

#include "btstore/errors.h"
#include "btstore/lifecycle.h"

namespace btstore {

JobService::JobService(Catalog& catalog, ArtifactStore& store, Clock& clock,
                       const EngineRegistry& engines)
    : catalog_(catalog), store_(store), clock_(clock), engines_(engines) {}

SubmitResult JobService::Submit(JobSpec spec) {
  if (spec.job_id.empty()) spec.job_id = DeriveJobId(spec);
  ValidateJobSpec(spec);
  // A config the engine cannot run is refused now, not discovered by a worker hours later.
  engines_.Validate(spec);
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
