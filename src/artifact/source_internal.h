#pragma once
// Where the reader finds a bundle's files: a local directory (descriptors and pread, the fast
// path) or a prefix of an object store (Arrow's filesystem: one request per whole file, range
// requests for the row groups a partial read needs).

#include <arrow/io/interfaces.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "artifact/io_internal.h"
#include "btstore/artifact_store.h"
#include "btstore/bundle.h"

namespace btstore::internal {

/// A file of a bundle, open for partial reads.
struct SourceFile {
  std::shared_ptr<arrow::io::RandomAccessFile> file;
  int64_t size = 0;  ///< when it was opened
};

/// The files of one bundle, for the reader.
class BundleSource {
 public:
  virtual ~BundleSource() = default;
  /// The bundle's place, for messages and error details (a path or a URI).
  virtual const std::string& where() const = 0;
  /// The place of its file `name`, for messages.
  virtual std::string PathOf(const std::string& name) const { return where() + "/" + name; }
  /// Whether the bundle is there at all.
  virtual bool Exists() = 0;
  /// Return the names of its entries (a symbolic link among them: it is refused when opened).
  /// Throws InvalidResult when they cannot be listed.
  virtual std::vector<std::string> List() = 0;
  /// Open `name` for partial reads; nullopt when nothing has that name. Throws InvalidResult
  /// naming the file when it is not a regular file of the bundle or cannot be opened.
  virtual std::optional<SourceFile> Open(const std::string& name) = 0;
  /// Read all of `name` with its checksum; nullopt when nothing has that name. Throws as Open.
  virtual std::optional<WholeFile> ReadWhole(const std::string& name) = 0;
  /// Start fetching the files `names` in the background, whole or (`whole` false) only the
  /// tail where a Parquet file keeps its footer, for the reads of them that follow: a hint, which
  /// a source with cheap reads ignores. A failed fetch fails the read that uses it.
  virtual void Prefetch(const std::vector<std::string>& /*names*/, bool /*whole*/) {}
  /// Read the JSON file `name` with ReadJsonFile's checks (summary_internal.h); nullopt when
  /// nothing has that name. Calls `unreadable` with a message when reading fails.
  virtual std::optional<std::string> ReadJson(
      const std::string& name, const std::function<void(const std::string&)>& unreadable) = 0;
};

/// The local directory `dir` as a source.
std::unique_ptr<BundleSource> LocalSource(const std::filesystem::path& dir);

/// The local store's IcReader (artifact_store.h): bundles in directories under `root`.
std::unique_ptr<IcReader> NewLocalIcReader(const std::filesystem::path& root);

/// ReadBundle and InspectBundle (btstore/bundle.h) over any source, with their errors.
BacktestResult ReadBundleFrom(BundleSource& source, const ReadOptions& options, ReadStats* stats);
BundleInfo InspectBundleFrom(BundleSource& source);
/// OpenTable (btstore/bundle.h) over any source, which the stream keeps, with its errors.
std::unique_ptr<TableStream> OpenTableFrom(std::unique_ptr<BundleSource> source,
                                           const std::string& name, const ReadOptions& options);

/// Check the text of the JSON file `name` (at `path`) as ReadJsonFile does: at most
/// kMaxJsonFileBytes, nested at most kMaxJsonDepth deep. Returns it. Throws InvalidResult.
std::string CheckJsonText(const std::string& name, const std::string& path, std::string text);

}  // namespace btstore::internal
