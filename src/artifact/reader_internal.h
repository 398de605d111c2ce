#pragma once
// The bundle reader's checks that another reader of a bundle's files (the ic panel's) applies
// the same way, with the same errors.

#include <cstdint>
#include <string>
#include <vector>

#include "artifact/source_internal.h"
#include "artifact/summary_internal.h"
#include "btstore/bundle.h"
#include "btstore/errors.h"

namespace btstore::internal {

/// What a read of a bundle loads, after the checks that come before any table is decoded.
struct BundlePlan {
  ParsedSummary summary;
  std::vector<std::string> names;  ///< tables to read
  /// JSON artifacts asked for by name: their errors are thrown. Otherwise every one present is
  /// read, and one that cannot be is reported as unavailable.
  std::vector<std::string> artifacts_by_name;
  std::vector<std::string> artifacts_if_readable;
};

/// Check the bundle for a read of `options.tables` (summary.json, the tables asked for, the
/// manifest's files) and say what to read. The sources that fetch over a network start fetching
/// the tables' files now: whole when `prefetch_whole`, else only their footers (a partial read,
/// or a table streamed step by step). Throws as ReadBundle.
BundlePlan PlanRead(BundleSource& source, const ReadOptions& options, bool prefetch_whole);

/// Throw InvalidResult for the bundle file `file`: "<file>: <message>", details["file"] set.
[[noreturn]] void BadFile(const std::string& file, const std::string& message,
                          ErrorDetails details = {});
/// Throw InvalidResult unless `file` has the manifest's size (nothing to check without entry).
void CheckSize(const std::string& file, const ArtifactInfo* expected, int64_t size);
/// Throw InvalidResult unless `checksum` is the manifest's (nothing to check without one).
void CheckChecksum(const std::string& file, const ArtifactInfo* expected,
                   const std::string& checksum);
/// Throw InvalidResult unless `file` has the manifest's number of rows.
void CheckRows(const std::string& file, const ArtifactInfo* expected, int64_t rows);

}  // namespace btstore::internal
