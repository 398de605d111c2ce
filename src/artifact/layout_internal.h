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

#include <arrow/io/interfaces.h>
#include <arrow/status.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
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

/// Where StageBundle writes a bundle's files: by default into a fresh local staging directory,
/// each file flushed to disk. With `open`, each file goes to the stream `open` gives for its
/// name instead (an object store's upload) and nothing is written locally.
struct StageHooks {
  /// Open the stream for the bundle file `file`; throws the store's own error when it cannot.
  std::function<std::shared_ptr<arrow::io::OutputStream>(const std::string& file)> open;
  /// Throw the store's own error for `status`, the failure of the stream of `file` (an object
  /// store that cannot be reached is CatalogUnavailable, say). Required with `open`.
  std::function<void(const arrow::Status& status, const std::string& file)> fail;
};

/// Write `result` into a fresh staging directory under `staging_root` and flush it, without
/// publishing; returns the staging directory. With `hooks.open`, write to its streams instead
/// and finish (close) each one; returns an empty path and `staging_root` is not used. Each file
/// is finished on a thread of its own as soon as it is written; a failure leaves no staging
/// directory and aborts the streams not yet finished. Same validation and errors as
/// WriteBundle.
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
