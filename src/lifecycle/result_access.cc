// Reading a job's result by job_id: from the catalog row to a validated bundle directory strictly
// inside the artifact root, with a distinct error for each way it can fail (contract section 4).

#include <algorithm>
#include <system_error>
#include <vector>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/bundle_path_internal.h"

namespace btstore {

namespace fs = std::filesystem;

namespace lifecycle_internal {

namespace {

// The non-empty components of a path: "/a/b/" and "/a/b" both give {"/", "a", "b"}, so that a
// trailing separator never decides whether one path lies inside another.
std::vector<std::string> Components(const fs::path& path) {
  std::vector<std::string> parts;
  for (const fs::path& part : path) {
    if (!part.empty()) parts.push_back(part.string());
  }
  return parts;
}

}  // namespace

std::string_view PathProblemReason(PathProblem problem) {
  switch (problem) {
    case PathProblem::kNone:
      return "ok";
    case PathProblem::kNoPath:
      return "no result path";
    case PathProblem::kUnresolvable:
      return "unresolvable";
    case PathProblem::kIsRoot:
      return "the artifact root itself";
    case PathProblem::kOutsideRoot:
      return "outside the artifact root";
    case PathProblem::kInternalDir:
      return "inside an internal directory";
    case PathProblem::kMissingOnDisk:
      return "missing on disk";
    case PathProblem::kNotADirectory:
      return "not a directory";
  }
  return "unknown";
}

fs::path CanonicalRoot(const fs::path& artifact_root) {
  std::error_code ec;
  fs::path root = fs::weakly_canonical(artifact_root, ec);
  if (ec) {
    throw InternalError(
        "cannot resolve the artifact root " + artifact_root.string() + ": " + ec.message(),
        {{"path", artifact_root.string()}});
  }
  return root;
}

ResolvedPath ResolveStoredPath(const fs::path& root, const std::optional<std::string>& stored,
                               bool require_directory) {
  if (!stored || stored->empty()) return {PathProblem::kNoPath, {}, {}};
  fs::path path(*stored);
  if (path.is_relative()) path = root / path;

  // weakly_canonical follows every symlink of the part that exists and folds `..` lexically in
  // the rest, so neither a symlink nor a `..` can carry the path out of the root unnoticed.
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(path, ec);
  if (ec) return {PathProblem::kUnresolvable, path, ec.message()};

  const std::vector<std::string> root_parts = Components(root);
  const std::vector<std::string> parts = Components(resolved);
  if (parts.size() < root_parts.size() ||
      !std::equal(root_parts.begin(), root_parts.end(), parts.begin())) {
    return {PathProblem::kOutsideRoot, resolved, {}};
  }
  if (parts.size() == root_parts.size()) return {PathProblem::kIsRoot, resolved, {}};
  // .staging, .trash, .checkpoints, .locks: btstore's own; no job_id starts with a dot.
  if (parts[root_parts.size()].starts_with('.')) return {PathProblem::kInternalDir, resolved, {}};

  if (require_directory) {
    fs::file_status status = fs::status(resolved, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return {PathProblem::kUnresolvable, resolved, ec.message()};
    }
    if (!fs::exists(status)) return {PathProblem::kMissingOnDisk, resolved, {}};
    if (!fs::is_directory(status)) return {PathProblem::kNotADirectory, resolved, {}};
  }
  return {PathProblem::kNone, resolved, {}};
}

void ThrowResultPathMissing(std::string_view job_id, const std::optional<std::string>& stored,
                            const ResolvedPath& resolved, const fs::path& root) {
  const std::string id(job_id);
  const std::string where = resolved.path.string();
  std::string message;
  switch (resolved.problem) {
    case PathProblem::kNoPath:
      message = "job " + id + " has no result path recorded; re-run it to produce a result";
      break;
    case PathProblem::kUnresolvable:
      message = "the result path of job " + id + " cannot be resolved (" + resolved.detail +
                "); check the path and its permissions";
      break;
    case PathProblem::kIsRoot:
      message = "the result path of job " + id + " is the artifact root " + root.string() +
                " itself, not a bundle inside it; the row is damaged, re-run the job";
      break;
    case PathProblem::kOutsideRoot:
      message = "the result path of job " + id + " resolves to " + where +
                ", outside the artifact root " + root.string() +
                "; pass the right --artifact-root or move the bundle under it";
      break;
    case PathProblem::kInternalDir:
      message = "the result path of job " + id + " resolves to " + where +
                ", inside btstore's internal directories; the row is damaged, re-run the job";
      break;
    case PathProblem::kMissingOnDisk:
      message = "the bundle of job " + id + " is missing on disk at " + where +
                "; restore it or re-run the job";
      break;
    case PathProblem::kNotADirectory:
      message = "the result path of job " + id + " (" + where +
                ") is not a bundle directory; restore the bundle or re-run the job";
      break;
    case PathProblem::kNone:
      message = "the result path of job " + id + " is unusable";
      break;
  }
  ErrorDetails details{{"job_id", id},
                       {"path", stored.value_or("")},
                       {"reason", std::string(PathProblemReason(resolved.problem))},
                       {"artifact_root", root.string()}};
  if (!where.empty()) details.emplace("resolved_path", where);
  throw ResultPathMissing(message, std::move(details));
}

}  // namespace lifecycle_internal

namespace {

namespace li = lifecycle_internal;

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

fs::path JobService::ResolveResultPath(const JobRecord& job) const {
  const fs::path root = li::CanonicalRoot(artifact_root_);
  li::ResolvedPath resolved = li::ResolveStoredPath(root, job.result_path, true);
  if (resolved.problem != li::PathProblem::kNone) {
    li::ThrowResultPathMissing(job.job_id, job.result_path, resolved, root);
  }
  return resolved.path;
}

BacktestResult JobService::GetResult(std::string_view job_id, const ReadOptions& options,
                                     ReadStats* stats) {
  const JobRecord job = catalog_.GetJob(job_id);
  CheckReadable(job);
  const fs::path dir = ResolveResultPath(job);
  try {
    return ReadBundle(dir, options, stats);
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

}  // namespace btstore
