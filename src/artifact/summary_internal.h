#pragma once
// summary.json: encoding with the manifest, and tolerant decoding with the contract's errors.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "btstore/bundle.h"

namespace btstore::internal {

namespace fs = std::filesystem;

/// summary.json files larger than this are rejected (InvalidResult): a summary holds metadata,
/// and a bounded size keeps a corrupt or hostile file from exhausting memory.
inline constexpr std::uintmax_t kMaxSummaryBytes = 16u << 20;

/// summary.json as read: the metadata (tables left empty), the manifest when present, and
/// whether mean_ic / icir were present at all (absent ones are recomputed from daily_ic).
struct ParsedSummary {
  BacktestResult meta;
  std::optional<std::map<std::string, ArtifactInfo>> manifest;
  bool has_mean_ic = false;
  bool has_icir = false;
  std::string text;
};

/// Read the text of `<dir>/summary.json` with the checks every reader of it applies (the one
/// reader behind ReadSummary and btstore::ReadSummaryText): a regular file of the bundle, at
/// most kMaxSummaryBytes, nested at most kMaxJsonDepth deep. Throws
/// MissingReproducibilityMetadata (missing, unreadable) or InvalidResult (a symbolic link or
/// other non-regular file, too large, too deep).
std::string ReadSummaryText(const std::filesystem::path& dir);

/// Read and check `<dir>/summary.json`. Throws MissingReproducibilityMetadata (missing,
/// unreadable, not JSON, not an object, snapshot_id / dataset_version_ids absent or of the
/// wrong type) or InvalidResult (as ReadSummaryText, a metric or the manifest of the wrong type,
/// a manifest entry that is not a plain file name).
ParsedSummary ReadSummary(const std::filesystem::path& dir);

/// Encode the summary of `result` with its manifest, as the writer stores it: indented, or
/// compact when indented it would be larger than kMaxSummaryBytes. Throws InvalidArgument when
/// even the compact form is larger than that (no reader would accept it).
std::string EncodeSummary(const BacktestResult& result,
                          const std::map<std::string, ArtifactInfo>& manifest);

}  // namespace btstore::internal
