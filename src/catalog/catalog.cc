#include "btstore/catalog.h"

#include "btstore/errors.h"

namespace btstore {

JobRecord Catalog::GetJob(std::string_view job_id) {
  std::optional<JobRecord> job = FindJob(job_id);
  if (!job) throw JobNotFound(std::string(job_id));
  return *std::move(job);
}

}  // namespace btstore
