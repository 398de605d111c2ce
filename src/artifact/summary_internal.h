#pragma once
// summary.json: encoding with the manifest, and tolerant decoding with the contract's errors.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "btstore/bundle.h"

namespace btstore::internal {

namespace fs = std::filesystem;

/// summary.json as read: the metadata (tables left empty), the manifest when present, and
/// whether mean_ic / icir were present at all (absent ones are recomputed from daily_ic).
struct ParsedSummary {
  BacktestResult meta;
  std::optional<std::map<std::string, ArtifactInfo>> manifest;
  bool has_mean_ic = false;
  bool has_icir = false;
  std::string text;
};

/// Read the text of the JSON file `name` of the bundle `dir` with the checks every reader of a
/// bundle's JSON applies: a regular file of the bundle (not a symbolic link), at most
/// kMaxJsonFileBytes, nested at most kMaxJsonDepth deep. Returns nullopt when nothing has that
/// name. Calls `unreadable` with a message when reading fails (it may throw its own error;
/// otherwise InvalidResult follows). Throws InvalidResult naming the file otherwise.
std::optional<std::string> ReadJsonFile(const std::filesystem::path& dir, const std::string& name,
                                        const std::function<void(const std::string&)>& unreadable);

/// Read the text of `<dir>/summary.json` with ReadJsonFile's checks (the one reader behind
/// ReadSummary and btstore::ReadSummaryText). Throws
/// MissingReproducibilityMetadata (missing, unreadable) or InvalidResult (a symbolic link or
/// other non-regular file, too large, too deep).
std::string ReadSummaryText(const std::filesystem::path& dir);

/// Read and check `<dir>/summary.json`. Throws MissingReproducibilityMetadata (missing,
/// unreadable, not JSON, not an object, snapshot_id / dataset_version_ids absent or of the
/// wrong type) or InvalidResult (as ReadSummaryText, a metric or the manifest of the wrong type,
/// a manifest entry that is not a plain file name).
ParsedSummary ReadSummary(const std::filesystem::path& dir);

class BundleSource;
/// ReadSummaryText and ReadSummary over any source (source_internal.h), with their errors.
std::string ReadSummaryText(BundleSource& source);
ParsedSummary ReadSummary(BundleSource& source);

/// Encode the summary of `result` with its manifest, as the writer stores it: indented, or
/// compact when indented it would be larger than kMaxJsonFileBytes. Throws InvalidArgument when
/// even the compact form is larger than that (no reader would accept it).
std::string EncodeSummary(const BacktestResult& result,
                          const std::map<std::string, ArtifactInfo>& manifest);

}  // namespace btstore::internal
