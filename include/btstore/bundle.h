#pragma once
/// The result bundle (contract section 1): three Parquet tables, optional extra tables and
/// summary.json with its `artifacts` manifest, written to a staging directory and published by
/// rename, read back with schema and manifest checks.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "btstore/model.h"

namespace arrow {
class Table;
class Schema;
}  // namespace arrow

namespace btstore {

/// File names of the required tables, without ".parquet".
inline constexpr std::string_view kSignalsTable = "daily_signals";
inline constexpr std::string_view kWeightsTable = "daily_weights";
inline constexpr std::string_view kIcTable = "daily_ic";
inline constexpr std::string_view kSummaryFile = "summary.json";

/// Return the exact schema of a required table (date32/int64/float64 as in the contract).
/// Throws InvalidArgument for a name that is not a required table.
std::shared_ptr<arrow::Schema> RequiredSchema(std::string_view table_name);

/// A complete backtest result: what a bundle holds.
struct BacktestResult {
  // Identity, written to summary.json (optional there: a bundle from another tool may lack them).
  std::string job_id;
  std::string alpha_name;
  std::optional<Date> start_date;
  std::optional<Date> end_date;
  std::string weight_method;
  std::string config_hash;

  std::shared_ptr<arrow::Table> daily_signals;  ///< date32 date, int64 permno, float64 signal
  std::shared_ptr<arrow::Table> daily_weights;  ///< date32 date, int64 permno, float64 weight
  std::shared_ptr<arrow::Table> daily_ic;       ///< date32 date, float64 ic, float64 rank_ic
  std::map<std::string, std::shared_ptr<arrow::Table>> extra_tables;  ///< name -> table

  Metrics metrics;
  std::string snapshot_id;
  std::map<std::string, std::string> dataset_version_ids;

  /// summary.json keys this version does not know, kept as a JSON object text ("{}" if none).
  std::string extra_summary_json = "{}";
};

enum class Compression { kSnappy, kZstd };
/// Parse "snappy" or "zstd". Throws InvalidArgument otherwise.
Compression ParseCompression(std::string_view text);
/// Return "snappy" or "zstd".
std::string_view ToString(Compression compression);

/// How a bundle is written.
struct WriteOptions {
  Compression compression = Compression::kSnappy;  ///< the platform's choice; zstd is smaller
  /// Rows per Parquet row group; small enough that a date-range read skips most of a file.
  int64_t row_group_rows = 64 * 1024;
  /// Write the files on several threads (they are independent).
  bool parallel = true;
};

/// Per-file entry of the `artifacts` manifest.
struct ArtifactInfo {
  int64_t rows = 0;
  int64_t bytes = 0;
  std::string checksum;  ///< "xxh3-128:<32 hex digits>" of the file's bytes
};

/// Write `result` as a bundle in the new directory `final_dir` atomically: validate the tables
/// (exact schema and column order, signals and weights sorted by (date, permno) with no
/// duplicate key), write every file into a hidden staging directory next to it
/// (`<parent>/.<name>.staging-XXXXXXXXXX/`, removed afterwards, also on failure), flush files
/// and directories, then rename into place. A reader never sees a partial bundle; a crash leaves
/// only that hidden directory.
/// Throws InvalidArgument for bad input (nothing is written), InvalidTransition when
/// `final_dir` already exists, InternalError for I/O failures.
/// Returns the manifest written.
std::map<std::string, ArtifactInfo> WriteBundle(const BacktestResult& result,
                                                const std::filesystem::path& final_dir,
                                                const WriteOptions& options = {});

/// Write `result`, read from the bundle at `source_dir`, as a new bundle at `target_dir` (as
/// WriteBundle: `result --export`, `bundle rewrite`), refusing a target inside the source, which
/// would write into the bundle being copied. Throws InvalidArgument when `target_dir` is
/// `source_dir` or lies inside it (symlinks and `..` resolved) or a path cannot be resolved,
/// and what WriteBundle throws.
std::map<std::string, ArtifactInfo> WriteBundleCopy(const BacktestResult& result,
                                                    const std::filesystem::path& source_dir,
                                                    const std::filesystem::path& target_dir,
                                                    const WriteOptions& options = {});

/// What to read.
struct ReadOptions {
  std::optional<Date> from;  ///< keep rows with date >= from (inclusive)
  std::optional<Date> to;    ///< keep rows with date <= to (inclusive)
  /// Columns to load from each table besides `date` (always loaded). Empty: all columns.
  std::vector<std::string> columns;
  /// Tables to load; empty: the three required ones and every extra table.
  std::vector<std::string> tables;
  /// Check sizes and checksums against the manifest (only for whole-file reads; a partial read
  /// checks the sizes only, since it does not read every byte).
  bool verify_checksums = true;
};

/// What a read cost.
struct ReadStats {
  int64_t bytes_read = 0;  ///< bytes read from the Parquet files
  int64_t row_groups_read = 0;
  int64_t row_groups_skipped = 0;  ///< skipped by their date statistics
};

/// Read a bundle directory. Errors, in the order they are checked:
/// ResultPathMissing (directory missing), MissingReproducibilityMetadata (summary.json missing,
/// unreadable, without snapshot_id or dataset_version_ids), InvalidResult for summary.json as
/// ReadSummaryText says, InvalidArgument for a table in `options.tables` that the bundle does
/// not have (and its manifest does not list), InvalidResult naming the file and, for schema
/// errors, the column with the expected and found types (a file missing, corrupt, truncated, of
/// the wrong schema, not a regular file (a symbolic link), or differing from its manifest entry).
/// Null metrics read as NaN; mean_ic/icir absent altogether are recomputed from daily_ic.
BacktestResult ReadBundle(const std::filesystem::path& dir, const ReadOptions& options = {},
                          ReadStats* stats = nullptr);

/// Replace the tokens NaN, Infinity and -Infinity outside string literals with null, so that a
/// strict JSON parser accepts what Python's json module writes (btstore writes null itself).
std::string ReplaceNonFiniteTokens(std::string_view text);

/// Read the text of `<dir>/summary.json` as every reader of a bundle does, without checking its
/// keys (ReadBundle does): a regular file of the bundle, not a symbolic link; at most 16 MiB;
/// JSON arrays and objects nested at most kMaxJsonDepth deep. Throws
/// MissingReproducibilityMetadata (missing, unreadable) or InvalidResult (not a regular file,
/// too large, too deep).
std::string ReadSummaryText(const std::filesystem::path& dir);

/// Schema and size of one file of a bundle, for `bundle inspect`.
struct TableInfo {
  std::string name;
  std::string schema;  ///< "date: date32[day], permno: int64, signal: double"
  int64_t rows = 0;
  int64_t bytes = 0;
  int64_t row_groups = 0;
};

/// Everything `bundle inspect` prints.
struct BundleInfo {
  BacktestResult summary_only;  ///< tables left empty
  std::string summary_json;     ///< summary.json as read
  std::vector<TableInfo> tables;
  bool has_manifest = false;
};

/// Validate a whole bundle (like ReadBundle with checksums) and describe it. Same errors.
BundleInfo InspectBundle(const std::filesystem::path& dir);

}  // namespace btstore
