// Reading a job's result by job_id: from the catalog row to a validated bundle directory strictly
// inside the artifact root, with a distinct error for each way it can fail (contract section 4).

#include "btstore/errors.h"
#include "btstore/lifecycle.h"

namespace btstore {

namespace {

// A row that cannot have a readable bundle, whatever its path says.
[[noreturn]] void ThrowNotReadable(const JobRecord& job, const std::string& reason,
                                   const std::string& message) {
  throw ResultPathMissing(message, {{"job_id", job.job_id},
                                    {"path", job.result_path.value_or("")},
                                    {"status", std::string(ToString(job.status))},
                                    {"reason", reason}});
}

void CheckReadable(const JobRecord& job) {
  if (job.status != JobStatus::kCompleted) {
    ThrowNotReadable(job, "not completed",
                     "job " + job.job_id + " is " + std::string(ToString(job.status)) +
                         "; only a completed job has a result (see `btstore show " + job.job_id +
                         "`)");
  }
  if (job.expiring_at) {
    ThrowNotReadable(
        job, "expiring",
        "job " + job.job_id + " is being removed by retention; its result is no longer available");
  }
}

// Add the job_id to an error of the bundle reader, keeping its type.
[[noreturn]] void RethrowWithJobId(const Error& error, std::string_view job_id) {
  ErrorDetails details = error.details();
  details.emplace("job_id", std::string(job_id));
  switch (error.code()) {
    case ErrorCode::kResultPathMissing:
      throw ResultPathMissing(error.what(), std::move(details));
    case ErrorCode::kMissingReproducibilityMetadata:
      throw MissingReproducibilityMetadata(error.what(), std::move(details));
    default:
      throw InvalidResult(error.what(), std::move(details));
  }
}

}  // namespace

BundleLocation JobService::Locate(const JobRecord& job) const {
  BundleLocation where = store_.Resolve(job.result_path, /*require_bundle=*/true);
  if (where.problem != PathProblem::kNone) {
    store_.ThrowResultPathMissing(job.job_id, job.result_path, where);
  }
  return where;
}

std::string JobService::ResolveResultPath(const JobRecord& job) const {
  return Locate(job).location;
}

std::string JobService::ReadSummaryText(const JobRecord& job) {
  return store_.ReadSummaryText(Locate(job));
}

BacktestResult JobService::GetResult(std::string_view job_id, const ReadOptions& options,
                                     ReadStats* stats) {
  return GetResult(catalog_.GetJob(job_id), options, stats);
}

BacktestResult JobService::GetResult(const JobRecord& job, const ReadOptions& options,
                                     ReadStats* stats) {
  const std::string& job_id = job.job_id;
  CheckReadable(job);
  const BundleLocation where = Locate(job);
  try {
    return store_.Read(where, options, stats);
  } catch (const Error& error) {
    if (error.code() != ErrorCode::kResultPathMissing &&
        error.code() != ErrorCode::kInvalidResult &&
        error.code() != ErrorCode::kMissingReproducibilityMetadata) {
      throw;
    }
    // Retention may have marked the job and moved its bundle away while it was being read:
    // that is "no result any more", not a damaged bundle.
    std::optional<JobRecord> now = catalog_.FindJob(job_id);
    if (!now) {
      ThrowNotReadable(job, "removed",
                       "job " + job.job_id + " was removed by retention while it was read");
    }
    CheckReadable(*now);
    RethrowWithJobId(error, job_id);
  }
}

std::shared_ptr<arrow::Table> JobService::GetPortfolioReturns(std::string_view job_id,
                                                              ReturnsBasis basis,
                                                              std::optional<Date> from,
                                                              std::optional<Date> to) {
  return PortfolioReturns(GetResult(job_id, PortfolioReturnsReadOptions(basis, from, to)), basis);
}

}  // namespace btstore
