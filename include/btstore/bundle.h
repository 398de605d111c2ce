#pragma once
/// The result bundle (contract section 1): three Parquet tables, the platform's optional tables
/// and JSON artifacts, other extra tables, and summary.json with its `artifacts` manifest,
/// written to a staging directory and published by rename, read back with schema and manifest
/// checks.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "btstore/model.h"

namespace arrow {
class RecordBatch;
class Table;
class Schema;
}  // namespace arrow

namespace btstore {

/// File names of the required tables, without ".parquet".
inline constexpr std::string_view kSignalsTable = "daily_signals";
inline constexpr std::string_view kWeightsTable = "daily_weights";
inline constexpr std::string_view kIcTable = "daily_ic";
inline constexpr std::string_view kSummaryFile = "summary.json";

/// File names of the platform's optional tables, without ".parquet" (contract section 1).
inline constexpr std::string_view kPortfolioReturnsTable = "daily_portfolio_returns";
inline constexpr std::string_view kDailyReturnsTable = "daily_returns";
inline constexpr std::string_view kDailyPricesTable = "daily_prices";
inline constexpr std::string_view kNetPortfolioReturnsTable = "net_portfolio_returns";
/// The optional column that daily_returns and daily_prices may have after their required ones.
inline constexpr std::string_view kSymbolColumn = "symbol";

/// Names of the platform's JSON artifacts; their files are "<name>.json".
inline constexpr std::string_view kWalkForwardArtifact = "walk_forward";
inline constexpr std::string_view kParamSearchArtifact = "param_search";
/// The `version` a JSON artifact must have.
inline constexpr std::string_view kJsonArtifactVersion = "1.0";

/// Return the exact schema of a required table (date32/int64/float64 as in the contract).
/// Throws InvalidArgument for a name that is not a required table.
std::shared_ptr<arrow::Schema> RequiredSchema(std::string_view table_name);

/// Return the columns an optional table of the platform must start with, in order and with
/// exactly these types (daily_returns and daily_prices may add `symbol`, a string column, right
/// after them), or nullptr when `table_name` is not one of the four.
std::shared_ptr<arrow::Schema> OptionalTableSchema(std::string_view table_name);

/// Return true for "walk_forward" and "param_search".
bool IsJsonArtifact(std::string_view name);

/// Check the text of a JSON artifact: at most 16 MiB, nested at most kMaxJsonDepth deep, JSON
/// (the tokens NaN, Infinity and -Infinity, which Python writes, read as null) holding an
/// object with "version": "1.0" and a non-empty string `created_at`. Return it as btstore
/// writes it (non-finite numbers as null, doubles in shortest round-trip form). Throws
/// InvalidArgument naming the artifact and the fault.
std::string NormalizeJsonArtifact(std::string_view name, std::string_view text);

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
  /// The platform's optional tables (checked against OptionalTableSchema) and any other table,
  /// by file stem.
  std::map<std::string, std::shared_ptr<arrow::Table>> extra_tables;
  /// The JSON artifacts (kWalkForwardArtifact, kParamSearchArtifact) by name: JSON text of an
  /// object with "version": "1.0" and `created_at`, as NormalizeJsonArtifact returns it. A
  /// non-finite number is null in it; readers take a null number as NaN.
  std::map<std::string, std::string> json_artifacts;
  /// Files of the bundle that a whole read found corrupt and left out (only JSON artifacts can
  /// be: the rest of the result stays readable): file name -> what is wrong with it. Reading
  /// the artifact by name throws InvalidResult instead.
  std::map<std::string, std::string> unavailable;

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
  /// Tables and JSON artifacts to load, by name (a JSON artifact only whole; an error in it is
  /// thrown). Empty: the three required tables, every extra table and every JSON artifact (an
  /// artifact that cannot be read is reported in BacktestResult::unavailable).
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
/// ReadSummaryText says, InvalidArgument for a table or artifact in `options.tables` that the
/// bundle does not have (and its manifest does not list), InvalidResult naming the file and, for
/// schema errors, the column with the expected and found types (a file missing, corrupt,
/// truncated, of the wrong schema or column order (the platform's optional tables), not a
/// regular file (a symbolic link), or differing from its manifest entry; a JSON artifact asked
/// for by name that is not as NormalizeJsonArtifact requires).
/// Null metrics read as NaN; mean_ic/icir absent altogether are recomputed from daily_ic.
BacktestResult ReadBundle(const std::filesystem::path& dir, const ReadOptions& options = {},
                          ReadStats* stats = nullptr);

/// How portfolio returns are measured: `net` is net_portfolio_returns.net_return (after costs),
/// `gross` is daily_portfolio_returns.return.
enum class ReturnsBasis { kNet, kGross };
/// Parse "net" or "gross". Throws InvalidArgument otherwise.
ReturnsBasis ParseReturnsBasis(std::string_view text);
/// Return "net" or "gross".
std::string_view ToString(ReturnsBasis basis);
/// Return what to read for portfolio returns on `basis` between `from` and `to` (inclusive,
/// either may be absent): the basis's table, its date and return columns only.
ReadOptions PortfolioReturnsReadOptions(ReturnsBasis basis, std::optional<Date> from = {},
                                        std::optional<Date> to = {});
/// Return the portfolio returns on `basis` of a result read with (at least)
/// PortfolioReturnsReadOptions(basis): a table (`date` date32, `return` float64) sorted by date,
/// cells bit for bit as stored. Throws InvalidArgument when `result` lacks the basis's table.
std::shared_ptr<arrow::Table> PortfolioReturns(const BacktestResult& result, ReturnsBasis basis);

/// Replace the tokens NaN, Infinity and -Infinity outside string literals with null, so that a
/// strict JSON parser accepts what Python's json module writes (btstore writes null itself).
std::string ReplaceNonFiniteTokens(std::string_view text);

/// Read the text of `<dir>/summary.json` as every reader of a bundle does, without checking its
/// keys (ReadBundle does): a regular file of the bundle, not a symbolic link; at most 16 MiB;
/// JSON arrays and objects nested at most kMaxJsonDepth deep. Throws
/// MissingReproducibilityMetadata (missing, unreadable) or InvalidResult (not a regular file,
/// too large, too deep).
std::string ReadSummaryText(const std::filesystem::path& dir);

/// One table of a bundle read a few row groups at a time (ArtifactStore::OpenTable), so that a
/// reader holds about one step of row groups, decoded, whatever the size of the table.
class TableStream {
 public:
  virtual ~TableStream() = default;
  /// Return the schema of every batch: the table's columns as ReadBundle would load them.
  virtual std::shared_ptr<arrow::Schema> schema() const = 0;
  /// Return the rows of the row groups the read selected: the table's rows, or for a date range
  /// an upper bound of the rows it keeps (known before the first batch).
  virtual int64_t max_rows() const = 0;
  /// Return the next batch of rows (a step of about 1 MB of the compressed file), or nullptr
  /// after the last one. A whole-table read hashes every byte of the file as it goes and checks
  /// the manifest's checksum with its last step: for a table of one step before any batch is
  /// returned, for a larger one after the batches of the steps before. While the caller uses a
  /// batch, the next step is decoded on another thread.
  /// Throws InvalidResult naming the file (corrupt, checksum mismatch),
  /// CatalogUnavailable (an object store that cannot be reached).
  virtual std::shared_ptr<arrow::RecordBatch> Next() = 0;
};

/// Open the table `name` of the bundle directory `dir` for a read batch by batch with `options`'
/// from, to, columns and verify_checksums (its `tables` is ignored). Checks what ReadBundle
/// checks before it decodes a row (summary.json, the manifest's files and the file's size,
/// schema and rows) and throws the same errors; a table the bundle does not have is
/// InvalidArgument, a JSON artifact too.
std::unique_ptr<TableStream> OpenTable(const std::filesystem::path& dir, const std::string& name,
                                       const ReadOptions& options = {});

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
