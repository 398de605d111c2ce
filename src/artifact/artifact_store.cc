// What every artifact store shares: the names of path problems and the error for an unusable
// result path, so that every store reports them alike.

#include "btstore/artifact_store.h"

#include "btstore/errors.h"

namespace btstore {

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

void ArtifactStore::ThrowResultPathMissing(std::string_view job_id,
                                           const std::optional<std::string>& stored,
                                           const BundleLocation& resolved) const {
  const std::string id(job_id);
  const std::string& where = resolved.location;
  const std::string& root_text = root();
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
      message = "the result path of job " + id + " is the artifact root " + root_text +
                " itself, not a bundle inside it; the row is damaged, re-run the job";
      break;
    case PathProblem::kOutsideRoot:
      message = "the result path of job " + id + " resolves to " + where +
                ", outside the artifact root " + root_text +
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
                       {"artifact_root", root_text}};
  if (!where.empty()) details.emplace("resolved_path", where);
  throw ResultPathMissing(message, std::move(details));
}

}  // namespace btstore
