#pragma once
// Where a job's bundle is, and whether btstore may touch it: shared by result retrieval
// (result_access.cc), retention (retention.cc) and verify (verify.cc), so that all three agree on
// what "strictly inside the artifact root" means.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace btstore::lifecycle_internal {

/// Why a stored result path cannot be used, or kNone.
enum class PathProblem {
  kNone,
  kNoPath,         ///< result_path is null or empty
  kUnresolvable,   ///< resolving it failed (a symlink loop, no permission)
  kIsRoot,         ///< it resolves to the artifact root itself
  kOutsideRoot,    ///< it resolves outside the artifact root
  kInternalDir,    ///< it resolves into btstore's own dot-directories (.staging, .trash, ...)
  kMissingOnDisk,  ///< nothing is there
  kNotADirectory,  ///< something other than a directory is there
};

/// A stored result path, resolved.
struct ResolvedPath {
  PathProblem problem = PathProblem::kNone;
  std::filesystem::path path;  ///< the resolved path (symlinks and `..` resolved) when known
  std::string detail;          ///< an OS message for kUnresolvable
};

/// Return a short reason for a problem, for error details and messages ("missing on disk").
std::string_view PathProblemReason(PathProblem problem);

/// Resolve the artifact root: canonical where it exists, weakly canonical otherwise. Throws
/// InternalError when it cannot be resolved.
std::filesystem::path CanonicalRoot(const std::filesystem::path& artifact_root);

/// Resolve `stored` (absolute, or relative to the root as older tools registered it) against
/// the canonical root `root`, following symlinks and `..`, and check that it is a directory
/// strictly inside the root and not in one of btstore's dot-directories (job ids never start
/// with a dot, so nothing of a job lives there). With `require_directory` false, a path that is
/// well placed but missing or not a directory is not a problem (retention removes what is
/// there).
ResolvedPath ResolveStoredPath(const std::filesystem::path& root,
                               const std::optional<std::string>& stored, bool require_directory);

/// Throw ResultPathMissing for `resolved` (details: job_id, path, reason, and the resolved path
/// and artifact root where they help).
[[noreturn]] void ThrowResultPathMissing(std::string_view job_id,
                                         const std::optional<std::string>& stored,
                                         const ResolvedPath& resolved,
                                         const std::filesystem::path& root);

}  // namespace btstore::lifecycle_internal
