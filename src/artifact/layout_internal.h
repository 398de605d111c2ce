#pragma once
// The layout of a local artifact root and the POSIX directory operations behind the local
// store: the only place that names the store's own directories.
//
//   <root>/<job_id>/                      a published bundle
//   <root>/.staging/<job_id>-XXXXXX/      a bundle being written
//   <root>/.trash/<name>-XXXXXX/<name>/   a directory being removed
//   <root>/.checkpoints/<job_id>/attempt-N.ckpt
//   <root>/.locks/<job_id>.lock           the publish lock of a job
//   <root>/.<name>.staging-XXXXXXXXXX/    WriteBundle's staging of <root>/<name> (e.g. an export)
//   <root>/.runs/<job_id>/attempt-N/      a command engine's working directory for one attempt
//   <root>/.logs/<job_id>/attempt-N.stdout, attempt-N.stderr   what its program printed
//
// Job ids never start with a dot, so nothing of a job's can be taken for one of these.

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "btstore/bundle.h"

namespace btstore::internal {

inline constexpr std::string_view kStagingDir = ".staging";
inline constexpr std::string_view kTrashDir = ".trash";
inline constexpr std::string_view kCheckpointsDir = ".checkpoints";
inline constexpr std::string_view kLocksDir = ".locks";
/// WriteBundle stages `<parent>/<name>` in `<parent>/.<name><kCopyStagingSuffix>-XXXXXXXXXX/`.
inline constexpr std::string_view kCopyStagingSuffix = ".staging";
inline constexpr std::string_view kRunsDir = ".runs";
inline constexpr std::string_view kLogsDir = ".logs";

/// How StageBundle treats the files it writes.
struct StageHooks {
  /// Flush every file and the directory to disk before returning (a local bundle about to be
  /// published); false for a copy that goes elsewhere (an object store's upload).
  bool flush = true;
  /// Called with each file's path once the file is completely written (tables first, then the
  /// JSON files, summary.json last), on the writing thread; may start work on it at once.
  std::function<void(const std::filesystem::path&)> written;
};

/// Write `result` into a fresh staging directory under `staging_root` and flush it, without
/// publishing. Returns the staging directory. Same validation and errors as WriteBundle.
std::filesystem::path StageBundle(const BacktestResult& result,
                                  const std::filesystem::path& staging_root,
                                  const WriteOptions& options = {}, const StageHooks& hooks = {});

/// Publish a staged bundle by renaming it to `final_dir` and flushing the parent directory.
/// Throws InvalidTransition when `final_dir` exists, InternalError for other I/O failures.
void PublishBundle(const std::filesystem::path& staged_dir, const std::filesystem::path& final_dir);

/// Remove a directory tree durably and quietly: rename it into `<parent>/.trash/` first so that
/// a crash never leaves a half-removed directory under its real name. Missing is fine.
/// With `flush_parent` false the rename is not flushed: a caller removing many directories of
/// one parent calls SyncDirectory(parent) once afterwards instead.
void RemoveBundleDir(const std::filesystem::path& dir, bool flush_parent = true);

/// Remove staging and trash debris older than `min_age` under `artifact_root` (entries of
/// `.staging/` and `.trash/`, and WriteBundle's hidden staging directories in the root itself).
/// Returns the number of directories removed.
int RemoveStagingDebris(const std::filesystem::path& artifact_root, std::chrono::seconds min_age);

}  // namespace btstore::internal
