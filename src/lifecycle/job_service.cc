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
  // Stored with the job: workers claim only the jobs of engines they have.
  const std::string engine = engines_.EngineNameOf(spec.config_json);
  if (!spec.engine.empty() && spec.engine != engine) {
    throw InvalidArgument(
        "the job names engine \"" + spec.engine + "\" but its config selects \"" + engine + "\"",
        {{"field", "engine"}, {"value", spec.engine}});
  }
  spec.engine = engine;
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

std::vector<int> JobService::LogAttempts(std::string_view job_id) {
  // The job must exist: a typo says JobNotFound rather than "no logs".
  catalog_.GetJob(job_id);
  return store_.LogAttempts(job_id);
}

std::string JobService::ReadLog(std::string_view job_id, int attempt, LogStream stream,
                                int64_t offset, int64_t max_bytes) {
  if (attempt < 1) {
    throw InvalidArgument("the attempt must be at least 1",
                          {{"field", "attempt"}, {"value", std::to_string(attempt)}});
  }
  catalog_.GetJob(job_id);
  return store_.ReadLog(job_id, attempt, stream, offset, max_bytes);
}

}  // namespace btstore
