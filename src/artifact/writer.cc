// The bundle writer: validation, parallel Parquet writing with checksums computed on the way
// out, staging, and atomic publication (contract section 1; docs/BUNDLE.md).

#include <arrow/api.h>
#include <fcntl.h>
#include <parquet/arrow/writer.h>
#include <parquet/properties.h>
#include <stdio.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>

#include "artifact/io_internal.h"
#include "artifact/layout_internal.h"
#include "artifact/optional_internal.h"
#include "artifact/summary_internal.h"
#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "model/parallel_internal.h"

namespace btstore {
namespace {

using internal::Check;
using internal::FailureKind;
namespace fs = std::filesystem;

// The dates a bundle may hold: the years Date::Parse accepts (0001-01-01 .. 9999-12-31).
const int32_t kMinDays = Date::FromYmd(1, 1, 1).days;
const int32_t kMaxDays = Date::FromYmd(9999, 12, 31).days;

[[noreturn]] void Bad(const std::string& message, ErrorDetails details) {
  throw InvalidArgument(message, std::move(details));
}

std::string FileName(std::string_view table) { return std::string(table) + ".parquet"; }

// Check the required columns come first, in order, with exactly the contract's types; extra
// columns may follow.
void ValidateSchema(const arrow::Table& table, std::string_view name) {
  auto expected = RequiredSchema(name);
  std::string file = FileName(name);
  for (int i = 0; i < expected->num_fields(); ++i) {
    const auto& want = expected->field(i);
    if (i >= table.num_columns()) {
      Bad(file + ": column " + std::to_string(i) + " must be '" + want->name() + "' (" +
              want->type()->ToString() + "), the table has only " +
              std::to_string(table.num_columns()) + " columns",
          {{"file", file},
           {"column", want->name()},
           {"expected", want->type()->ToString()},
           {"found", "missing"}});
    }
    const auto& got = table.schema()->field(i);
    if (got->name() != want->name()) {
      Bad(file + ": column " + std::to_string(i) + " must be '" + want->name() + "', found '" +
              got->name() + "'",
          {{"file", file}, {"column", want->name()}, {"found_column", got->name()}});
    }
    if (!got->type()->Equals(*want->type())) {
      Bad(file + ": column '" + want->name() + "' must be " + want->type()->ToString() +
              ", found " + got->type()->ToString(),
          {{"file", file},
           {"column", want->name()},
           {"expected", want->type()->ToString()},
           {"found", got->type()->ToString()}});
    }
  }
}

// Walk (date[, permno]) over the chunks of both columns, which need not be aligned: no nulls,
// dates in range and, for keyed tables, strictly increasing (date, permno) keys.
void ValidateKeys(const arrow::Table& table, std::string_view name, bool keyed) {
  std::string file = FileName(name);
  const auto& dates = *table.column(0);
  std::shared_ptr<arrow::ChunkedArray> permnos = keyed ? table.column(1) : nullptr;
  int pchunk = 0;
  int64_t poffset = 0;
  int64_t row = 0;
  int32_t prev_date = 0;
  int64_t prev_permno = 0;
  for (const auto& chunk : dates.chunks()) {
    const auto& d = static_cast<const arrow::Date32Array&>(*chunk);
    for (int64_t i = 0; i < d.length(); ++i, ++row) {
      if (d.IsNull(i)) {
        Bad(file + ": date is null at row " + std::to_string(row),
            {{"file", file}, {"column", "date"}, {"row", std::to_string(row)}});
      }
      int32_t date = d.Value(i);
      if (date < kMinDays || date > kMaxDays) {
        Bad(file + ": date out of range (years 1..9999) at row " + std::to_string(row),
            {{"file", file},
             {"column", "date"},
             {"row", std::to_string(row)},
             {"value", std::to_string(date)}});
      }
      if (!keyed) continue;
      while (poffset >= permnos->chunk(pchunk)->length()) {
        ++pchunk;
        poffset = 0;
      }
      const auto& p = static_cast<const arrow::Int64Array&>(*permnos->chunk(pchunk));
      if (p.IsNull(poffset)) {
        Bad(file + ": permno is null at row " + std::to_string(row),
            {{"file", file}, {"column", "permno"}, {"row", std::to_string(row)}});
      }
      int64_t permno = p.Value(poffset++);
      if (row > 0) {
        if (date == prev_date && permno == prev_permno) {
          Bad(file + ": duplicate (date, permno) at row " + std::to_string(row) + ": (" +
                  Date{date}.ToString() + ", " + std::to_string(permno) + ")",
              {{"file", file},
               {"row", std::to_string(row)},
               {"date", Date{date}.ToString()},
               {"permno", std::to_string(permno)}});
        }
        if (date < prev_date || (date == prev_date && permno < prev_permno)) {
          Bad(file + ": rows must be sorted by (date, permno); row " + std::to_string(row) +
                  " is out of order (sort the table before writing)",
              {{"file", file},
               {"row", std::to_string(row)},
               {"date", Date{date}.ToString()},
               {"permno", std::to_string(permno)}});
        }
      }
      prev_date = date;
      prev_permno = permno;
    }
  }
}

// Whether any key k in [1, n) of (d, p) is bad given key k - 1: a date out of range, a date
// below the one before, or a permno not above the one before on the same date. Arithmetic on
// sign bits instead of comparisons and branches, so that the loop vectorizes (on AVX2 where the
// machine has it): the check runs over every row of a large result before it is written.
__attribute__((target_clones("avx2", "default"))) bool AnyBadKeyAfterFirst(const int32_t* d,
                                                                           const int64_t* p,
                                                                           int64_t n) {
  uint64_t any = 0;  // sign bit set once a key is bad
  for (int64_t k = 1; k < n; ++k) {
    const int64_t date = d[k];
    const uint64_t date_step = static_cast<uint64_t>(date - d[k - 1]);
    const auto before = static_cast<uint64_t>(p[k - 1]);
    const auto permno = static_cast<uint64_t>(p[k]);
    // Sign bit set iff p[k - 1] < p[k] as signed numbers, overflow included.
    const uint64_t difference = before - permno;
    const uint64_t rises = difference ^ ((before ^ permno) & (difference ^ before));
    any |= static_cast<uint64_t>(date - kMinDays) | static_cast<uint64_t>(kMaxDays - date) |
           date_step | ~(date_step | (0 - date_step) | rises);
  }
  return (any >> 63) != 0;
}

// Which keys a table's rows must have: none (an extra table of the caller's), valid dates (the IC
// table and the platform's optional tables), or valid and strictly increasing (date, permno)
// keys (signals and weights).
enum class Keys { kNone, kDates, kDatePermno };

// The common case of ValidateKeys in one tight pass over the raw values, fed a table's rows in
// order, a slice at a time, just before the slice is written (its keys are then still in the
// cache when the encoder reads them). Valid() returns false at the first slice with a fault;
// ValidateKeys then walks the whole table again to name the first offending row.
class KeyCheck {
 public:
  explicit KeyCheck(Keys keys) : keys_(keys) {}

  bool Valid(const arrow::Table& slice) {
    if (keys_ == Keys::kNone) return true;
    const bool keyed = keys_ == Keys::kDatePermno;
    const auto& dates = *slice.column(0);
    std::shared_ptr<arrow::ChunkedArray> permnos = keyed ? slice.column(1) : nullptr;
    int pchunk = 0;
    int64_t poffset = 0;
    for (const auto& chunk : dates.chunks()) {
      if (chunk->null_count() > 0) return false;
      const int32_t* d = static_cast<const arrow::Date32Array&>(*chunk).raw_values();
      const int64_t length = chunk->length();
      if (!keyed) {
        bool bad = false;
        for (int64_t i = 0; i < length; ++i) bad |= (d[i] < kMinDays) | (d[i] > kMaxDays);
        if (bad) return false;
        continue;
      }
      // The permno chunks need not line up with the date chunks: walk both in segments, each
      // segment's first key checked against the last of the segment before.
      for (int64_t i = 0; i < length;) {
        while (poffset >= permnos->chunk(pchunk)->length()) {
          ++pchunk;
          poffset = 0;
        }
        const auto& permno_chunk = *permnos->chunk(pchunk);
        if (permno_chunk.null_count() > 0) return false;
        const int64_t* p =
            static_cast<const arrow::Int64Array&>(permno_chunk).raw_values() + poffset;
        const int64_t n = std::min(length - i, permno_chunk.length() - poffset);
        const int32_t date = d[i];
        if (date < kMinDays || date > kMaxDays) return false;
        if (!first_ && (date < prev_date_ || (date == prev_date_ && p[0] <= prev_permno_))) {
          return false;
        }
        if (AnyBadKeyAfterFirst(d + i, p, n)) return false;
        first_ = false;
        prev_date_ = d[i + n - 1];
        prev_permno_ = p[n - 1];
        i += n;
        poffset += n;
      }
    }
    return true;
  }

 private:
  Keys keys_;
  bool first_ = true;  // no key seen yet
  int32_t prev_date_ = 0;
  int64_t prev_permno_ = 0;
};

struct TableToWrite {
  std::string name;
  std::shared_ptr<arrow::Table> table;
  Keys keys = Keys::kNone;  // checked as the table is written
};

// What a valid result writes: its tables, and its JSON artifacts as file name -> text.
struct FilesToWrite {
  std::vector<TableToWrite> tables;
  std::map<std::string, std::string> json_files;
};

// Check an optional table of the platform's schema (order and types); its dates are checked as it
// is written.
void ValidateOptionalSchema(const arrow::Table& table, const std::string& name) {
  const std::string file = FileName(name);
  if (auto fault = internal::FindOptionalSchemaFault(*table.schema(), name)) {
    Bad(file + ": " + fault->message, {{"file", file},
                                       {"column", fault->column},
                                       {"expected", fault->expected},
                                       {"found", fault->found}});
  }
}

// Name the first key fault of `tables`, in their order (the result's: required tables first):
// the slow path once a KeyCheck failed while writing. Throws InvalidArgument.
void ThrowFirstKeyFault(const std::vector<TableToWrite>& tables) {
  for (const TableToWrite& t : tables) {
    if (t.keys != Keys::kNone && !KeyCheck(t.keys).Valid(*t.table)) {
      ValidateKeys(*t.table, t.name, t.keys == Keys::kDatePermno);
    }
  }
  throw InternalError("a key check failed on a second pass but not on the first");
}

// Check everything but the tables' keys (checked as they are written, see KeyCheck) before a byte
// is written. Bad input leaves nothing behind either way: a failed write removes its staging.
FilesToWrite ValidateResult(const BacktestResult& result, const WriteOptions& options) {
  if (!result.job_id.empty()) ValidateJobId(result.job_id);
  if (options.row_group_rows <= 0) {
    Bad("row_group_rows must be positive",
        {{"field", "row_group_rows"}, {"value", std::to_string(options.row_group_rows)}});
  }
  if (result.snapshot_id.empty()) {
    Bad("a result needs a snapshot_id (the data snapshot it ran on)", {{"field", "snapshot_id"}});
  }
  // summary.json is encoded as UTF-8 JSON: text that is not UTF-8 would fail deep inside the
  // encoder, after the tables were written.
  auto check_utf8 = [](const std::string& text, const char* field) {
    if (!IsValidUtf8(text)) Bad(std::string(field) + " is not valid UTF-8", {{"field", field}});
  };
  check_utf8(result.alpha_name, "alpha_name");
  check_utf8(result.weight_method, "weight_method");
  check_utf8(result.config_hash, "config_hash");
  check_utf8(result.snapshot_id, "snapshot_id");
  for (const auto& [name, version] : result.dataset_version_ids) {
    check_utf8(name, "dataset_version_ids");
    check_utf8(version, "dataset_version_ids");
  }
  if (JsonNestingDepth(result.extra_summary_json) > kMaxJsonDepth) {
    Bad("extra_summary_json is nested more than " + std::to_string(kMaxJsonDepth) + " levels deep",
        {{"field", "extra_summary_json"}});
  }
  nlohmann::json extra = nlohmann::json::parse(result.extra_summary_json, nullptr, false);
  if (extra.is_discarded() || !extra.is_object()) {
    Bad("extra_summary_json must be a JSON object", {{"field", "extra_summary_json"}});
  }
  if (result.start_date && result.end_date && *result.end_date < *result.start_date) {
    Bad("end_date is before start_date", {{"field", "end_date"}});
  }

  FilesToWrite files;
  std::vector<TableToWrite>& tables = files.tables;
  for (auto [name, table] :
       {std::pair{kSignalsTable, result.daily_signals},
        std::pair{kWeightsTable, result.daily_weights}, std::pair{kIcTable, result.daily_ic}}) {
    // A missing required table is written empty: an engine with nothing to report (the noop
    // engine, a universe without data) still produces a valid bundle.
    if (!table) {
      auto empty = arrow::Table::MakeEmpty(RequiredSchema(name));
      Check(empty.status(), FailureKind::kWrite, FileName(name));
      table = *empty;
    }
    ValidateSchema(*table, name);
    tables.push_back(
        {std::string(name), table, name == kIcTable ? Keys::kDates : Keys::kDatePermno});
  }
  for (const auto& [name, table] : result.extra_tables) {
    if (!internal::IsSafeFileStem(name) || name == kSignalsTable || name == kWeightsTable ||
        name == kIcTable || IsJsonArtifact(name)) {
      Bad("extra table name '" + name +
              "' is not allowed: use 1-128 letters, digits, '-', '_', '.', not starting with "
              "'.', and not the name of a required table or of a JSON artifact",
          {{"field", "extra_tables"}, {"value", name}});
    }
    if (!table)
      Bad("extra table '" + name + "' is null", {{"field", "extra_tables"}, {"value", name}});
    const bool optional = OptionalTableSchema(name) != nullptr;
    if (optional) ValidateOptionalSchema(*table, name);
    tables.push_back({name, table, optional ? Keys::kDates : Keys::kNone});
  }
  for (const auto& [name, text] : result.json_artifacts) {
    files.json_files[internal::JsonArtifactFile(name)] = NormalizeJsonArtifact(name, text);
  }
  return files;
}

// Columns without nulls are stored REQUIRED: no definition levels to encode or decode, which
// was most of a column's cost after its values. The file records which of them the caller
// declared nullable (kNullableColumnsKey), so that the reader gives them back as they came.
std::shared_ptr<arrow::Table> WithRequiredColumns(const std::shared_ptr<arrow::Table>& table,
                                                  const std::string& file) {
  arrow::FieldVector fields = table->schema()->fields();
  nlohmann::json restored = nlohmann::json::array();
  for (size_t i = 0; i < fields.size(); ++i) {
    const auto& field = fields[i];
    const arrow::Type::type id = field->type()->id();
    if (!field->nullable() || id == arrow::Type::NA || arrow::is_nested(id) ||
        table->column(static_cast<int>(i))->null_count() > 0) {
      continue;
    }
    fields[i] = field->WithNullable(false);
    restored.push_back(i);
  }
  if (restored.empty()) return table;
  const auto& original = table->schema()->metadata();
  auto metadata = original ? original->Copy() : std::make_shared<arrow::KeyValueMetadata>();
  Check(metadata->Set(std::string(internal::kNullableColumnsKey), restored.dump()),
        FailureKind::kWrite, file);
  return arrow::Table::Make(arrow::schema(fields, metadata), table->columns(), table->num_rows());
}

// A file of the bundle written out but not yet finished (flushed to disk or its upload
// completed; see StartFinish).
struct WrittenFile {
  ArtifactInfo info;
  std::shared_ptr<internal::HashingFileSink> sink;
};

// Thrown by WriteTableFile when a slice of its table fails its KeyCheck.
struct KeyFault {};

// The sink for the bundle file `file`: a new file in `dir`, or the stream of `hooks.open`.
std::shared_ptr<internal::HashingFileSink> OpenSink(const fs::path& dir, const std::string& file,
                                                    const internal::StageHooks& hooks) {
  if (hooks.open) return internal::HashingFileSink::Over(hooks.open(file), file);
  return internal::HashingFileSink::Create(dir / file);
}

// Run `work`, which writes through `sink`; when it fails because the sink's stream did, the
// store names the failure (hooks.fail: an unreachable object store is CatalogUnavailable).
template <typename Work>
void WithSink(const internal::HashingFileSink& sink, const internal::StageHooks& hooks,
              const std::string& file, Work&& work) {
  try {
    work();
  } catch (const Error&) {
    if (sink.streamed() && !sink.stream_failure().ok()) hooks.fail(sink.stream_failure(), file);
    throw;
  }
}

// Write `table` as the bundle file `file` in `dir`, a row group at a time, each checked for its
// keys just before it is written. Returns nothing if `stop` was set (another file failed) before
// the table was done.
std::optional<WrittenFile> WriteTableFile(const TableToWrite& table, const fs::path& dir,
                                          const std::string& file, const WriteOptions& options,
                                          const internal::StageHooks& hooks,
                                          const std::atomic<bool>& stop) {
  const internal::ParquetWrite prepared = internal::PrepareParquetWrite(table.table, options, file);
  const arrow::Table& rows = *prepared.table;
  auto sink = OpenSink(dir, file, hooks);
  KeyCheck keys(table.keys);
  bool stopped = false;
  WithSink(*sink, hooks, file, [&] {
    internal::GuardParquet(FailureKind::kWrite, file, [&] {
      auto writer = internal::Unwrap(
          parquet::arrow::FileWriter::Open(*rows.schema(), arrow::default_memory_pool(), sink,
                                           prepared.properties, prepared.arrow_properties),
          FailureKind::kWrite, file);
      // Slices of whole row groups give the same file as one WriteTable of the whole table (an
      // empty table is written as it is: one empty row group).
      const int64_t step = options.row_group_rows;
      for (int64_t offset = 0; offset < rows.num_rows(); offset += step) {
        if (stop) {
          stopped = true;
          return;
        }
        std::shared_ptr<arrow::Table> slice = rows.Slice(offset, step);
        if (!keys.Valid(*slice)) throw KeyFault{};
        Check(writer->WriteTable(*slice, step), FailureKind::kWrite, file);
      }
      if (rows.num_rows() == 0) Check(writer->WriteTable(rows, step), FailureKind::kWrite, file);
      Check(writer->Close(), FailureKind::kWrite, file);
    });
    if (!stopped) Check(sink->Close(), FailureKind::kWrite, file);
  });
  if (stopped) return std::nullopt;
  return WrittenFile{{rows.num_rows(), sink->bytes(), sink->Checksum()}, sink};
}

WrittenFile WriteSmallFile(const fs::path& dir, const std::string& file, const std::string& text,
                           const internal::StageHooks& hooks) {
  auto sink = OpenSink(dir, file, hooks);
  WithSink(*sink, hooks, file, [&] {
    Check(sink->Write(text.data(), static_cast<int64_t>(text.size())), FailureKind::kWrite, file);
    Check(sink->Close(), FailureKind::kWrite, file);
  });
  // A JSON file has no rows; its manifest entry counts 0.
  return {{0, sink->bytes(), sink->Checksum()}, sink};
}

// Finishing a bundle's files (a flush to disk, or an upload's completion): each file's finish
// runs on a thread of its own (a TaskGroup), started as soon as the file is written: the disk
// (or the object store) takes the first files while the last ones are still being encoded, and
// the file system commits concurrent flushes together, so a bundle waits for about one round of
// flushes instead of one per file (which dominated small bundles). A local directory's flush
// runs beside the files' (its entries exist once the files are created; the rename waits for
// all).
void StartFinish(internal::TaskGroup& finishes,
                 const std::shared_ptr<internal::HashingFileSink>& sink,
                 const internal::StageHooks& hooks) {
  finishes.Start([sink, fail = hooks.fail] {
    const std::string file = sink->path().filename().string();
    const arrow::Status status = sink->Sync();
    if (!status.ok() && sink->streamed()) fail(status, file);
    Check(status, FailureKind::kWrite, file);
  });
}

// Removes a directory tree when it goes out of scope unless released: a failed write leaves
// no staging directory behind.
class RemoveOnFailure {
 public:
  explicit RemoveOnFailure(fs::path dir) : dir_(std::move(dir)) {}
  ~RemoveOnFailure() {
    if (dir_.empty()) return;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void Release() { dir_.clear(); }

 private:
  fs::path dir_;
};

// Make a new, uniquely named directory `<parent>/<prefix>-<random>`. Its mode is what the
// umask leaves of 0777 (0755 under umask 022), as for any directory a user creates: a staged
// bundle is published by renaming this directory, and readers of other users must be able to
// open it (mkdtemp would make it 0700).
fs::path MakeUniqueDir(const fs::path& parent, const std::string& prefix) {
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) {
    throw InternalError("cannot create " + parent.string() + ": " + ec.message(),
                        {{"path", parent.string()}});
  }
  constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  constexpr int kSuffixLength = 10;
  constexpr int kAttempts = 100;
  thread_local std::mt19937_64 random{std::random_device{}()};
  int err = 0;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::string name = prefix + "-";
    for (int i = 0; i < kSuffixLength; ++i) name += kAlphabet[random() % kAlphabet.size()];
    fs::path dir = parent / name;
    if (::mkdir(dir.c_str(), 0777) == 0) return dir;
    err = errno;
    if (err != EEXIST) break;
  }
  throw InternalError(
      "cannot create a directory under " + parent.string() + ": " + std::strerror(err),
      {{"path", parent.string()}});
}

}  // namespace

std::shared_ptr<arrow::Schema> RequiredSchema(std::string_view table_name) {
  if (table_name == kSignalsTable) {
    return arrow::schema({arrow::field("date", arrow::date32()),
                          arrow::field("permno", arrow::int64()),
                          arrow::field("signal", arrow::float64())});
  }
  if (table_name == kWeightsTable) {
    return arrow::schema({arrow::field("date", arrow::date32()),
                          arrow::field("permno", arrow::int64()),
                          arrow::field("weight", arrow::float64())});
  }
  if (table_name == kIcTable) {
    return arrow::schema({arrow::field("date", arrow::date32()),
                          arrow::field("ic", arrow::float64()),
                          arrow::field("rank_ic", arrow::float64())});
  }
  throw InvalidArgument("'" + std::string(table_name) + "' is not a required table",
                        {{"table", std::string(table_name)}});
}

namespace {

// StageBundle after validation; fills `manifest`.
fs::path StageValidated(const BacktestResult& result, FilesToWrite files,
                        const fs::path& staging_root, const WriteOptions& options,
                        const internal::StageHooks& hooks,
                        std::map<std::string, ArtifactInfo>& manifest) {
  std::vector<TableToWrite>& tables = files.tables;
  const fs::path staged =
      hooks.open ? fs::path()
                 : MakeUniqueDir(staging_root, result.job_id.empty() ? "bundle" : result.job_id);
  RemoveOnFailure guard(staged);

  // Largest first, so the long files start at once and the short ones fill the gaps.
  std::vector<size_t> order(tables.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return tables[a].table->num_rows() > tables[b].table->num_rows();
  });
  const size_t threads = options.parallel ? internal::CoreCount() : 1;
  // Arrow encodes a file's columns on threads of its own only when there are fewer large files
  // than cores: otherwise the files keep every core busy, and fanning each row group's columns
  // out and back costs more than it gains (about 10% of a large result's write).
  const auto large =
      static_cast<size_t>(std::count_if(tables.begin(), tables.end(), [&](const TableToWrite& t) {
        return t.table->num_rows() > options.row_group_rows;
      }));
  WriteOptions file_options = options;
  file_options.parallel = options.parallel && large < threads;

  // After the guard: the files are finished before the directory may be removed.
  internal::TaskGroup finishes;
  std::vector<ArtifactInfo> written(tables.size());
  std::atomic<bool> stop{false};
  try {
    internal::ParallelFor(tables.size(), threads, [&](size_t, size_t k) {
      const TableToWrite& table = tables[order[k]];
      try {
        std::optional<WrittenFile> file =
            WriteTableFile(table, staged, FileName(table.name), file_options, hooks, stop);
        if (!file) return;
        StartFinish(finishes, file->sink, hooks);
        written[order[k]] = file->info;
      } catch (...) {
        stop = true;
        throw;
      }
    });
  } catch (const KeyFault&) {
    ThrowFirstKeyFault(tables);
  }

  for (size_t i = 0; i < tables.size(); ++i) manifest[FileName(tables[i].name)] = written[i];
  auto write_small = [&](const std::string& file, const std::string& text) {
    WrittenFile small = WriteSmallFile(staged, file, text, hooks);
    StartFinish(finishes, small.sink, hooks);
    return small.info;
  };
  for (const auto& [file, text] : files.json_files) manifest[file] = write_small(file, text);
  // The summary holds the manifest; it is not in it.
  write_small(std::string(kSummaryFile), internal::EncodeSummary(result, manifest));
  if (!staged.empty()) finishes.Start([staged] { internal::SyncDirectory(staged); });
  finishes.Wait();
  guard.Release();
  return staged;
}

}  // namespace

namespace internal {

ParquetWrite PrepareParquetWrite(const std::shared_ptr<arrow::Table>& table,
                                 const WriteOptions& options, const std::string& file) {
  ParquetWrite out;
  out.table = WithRequiredColumns(table, file);
  parquet::WriterProperties::Builder builder;
  builder.compression(options.compression == Compression::kZstd ? parquet::Compression::ZSTD
                                                                : parquet::Compression::SNAPPY);
  builder.max_row_group_length(options.row_group_rows);
  for (const auto& field : out.table->schema()->fields()) {
    const std::string& name = field->name();
    const arrow::Type::type id = field->type()->id();
    if (arrow::is_floating(id)) {
      // Float columns hardly ever repeat, so a dictionary only costs time before Parquet falls
      // back to plain encoding.
      builder.disable_dictionary(name);
      // Nor does snappy find anything to gain in their bits (its output was a few bytes larger
      // than its input on signals and weights), while it costs a pass on write and a copy on
      // read. zstd does gain a few percent and stays.
      if (options.compression == Compression::kSnappy) {
        builder.compression(name, parquet::Compression::UNCOMPRESSED);
      }
      // Every row group of a signal or weight spans about the whole range of values, so min/max
      // would skip nothing; the date statistics are the ones partial reads use.
      builder.disable_statistics(name);
    } else if (name == "date" && id == arrow::Type::DATE32) {
      // Plain: a date repeats for a whole day, which the compressor folds into a few bytes per
      // run, at a fraction of the cost of hashing every value into a dictionary.
      builder.disable_dictionary(name);
    } else if (name == "permno" && id == arrow::Type::INT64) {
      // Permnos rise in small steps within a date, so their deltas pack into a few bits:
      // smaller than dictionary indices, and encoded and decoded without a hash table.
      builder.disable_dictionary(name);
      builder.encoding(name, parquet::Encoding::DELTA_BINARY_PACKED);
      // A row group holds whole days of the universe, so its permno min/max span about every
      // permno and would skip nothing.
      builder.disable_statistics(name);
    }
  }
  out.properties = builder.build();
  out.arrow_properties = parquet::ArrowWriterProperties::Builder()
                             .store_schema()
                             ->set_use_threads(options.parallel)
                             ->build();
  return out;
}

fs::path StageBundle(const BacktestResult& result, const fs::path& staging_root,
                     const WriteOptions& options, const StageHooks& hooks) {
  std::map<std::string, ArtifactInfo> manifest;
  return StageValidated(result, ValidateResult(result, options), staging_root, options, hooks,
                        manifest);
}

void PublishBundle(const fs::path& staged_dir, const fs::path& final_dir) {
  // RENAME_NOREPLACE: a plain rename would silently replace an existing empty directory.
  if (::renameat2(AT_FDCWD, staged_dir.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) !=
      0) {
    int err = errno;
    if (err == EEXIST || err == ENOTEMPTY) {
      throw InvalidTransition("bundle directory " + final_dir.string() +
                                  " already exists; a published bundle is never replaced",
                              {{"path", final_dir.string()}});
    }
    throw InternalError("cannot publish " + staged_dir.string() + " as " + final_dir.string() +
                            ": " + std::strerror(err),
                        {{"path", final_dir.string()}, {"staged", staged_dir.string()}});
  }
  SyncDirectory(final_dir.parent_path().empty() ? fs::path(".") : final_dir.parent_path());
}

}  // namespace internal

std::map<std::string, ArtifactInfo> WriteBundle(const BacktestResult& result,
                                                const fs::path& final_dir,
                                                const WriteOptions& options) {
  FilesToWrite files = ValidateResult(result, options);
  fs::path absolute = fs::absolute(final_dir).lexically_normal();
  if (!absolute.has_filename()) absolute = absolute.parent_path();  // "dst/" names "dst"
  if (fs::exists(fs::symlink_status(absolute))) {
    throw InvalidTransition("bundle directory " + absolute.string() +
                                " already exists; a published bundle is never replaced",
                            {{"path", absolute.string()}});
  }
  // Staged in a hidden directory of its own next to the destination (the same file system, so
  // the rename is atomic), which goes afterwards whatever happens: nothing is left in the
  // parent but the bundle, and nothing is written anywhere else.
  const fs::path holder =
      MakeUniqueDir(absolute.parent_path(),
                    "." + absolute.filename().string() + std::string(internal::kCopyStagingSuffix));
  std::map<std::string, ArtifactInfo> manifest;
  {
    RemoveOnFailure remove_holder(holder);
    fs::path staged = StageValidated(result, std::move(files), holder, options, {}, manifest);
    internal::PublishBundle(staged, absolute);
  }
  return manifest;
}

std::map<std::string, ArtifactInfo> WriteBundleCopy(const BacktestResult& result,
                                                    const fs::path& source_dir,
                                                    const fs::path& target_dir,
                                                    const WriteOptions& options) {
  // Both resolved (symlinks and `..`) as far as they exist, so that neither an alias nor a
  // relative spelling hides that the target lies inside the source.
  std::error_code ec;
  const fs::path source = fs::weakly_canonical(fs::absolute(source_dir), ec);
  if (ec) {
    throw InvalidArgument(
        "cannot resolve the source bundle " + source_dir.string() + ": " + ec.message(),
        {{"path", source_dir.string()}});
  }
  const fs::path target = fs::weakly_canonical(fs::absolute(target_dir), ec);
  if (ec) {
    throw InvalidArgument(
        "cannot resolve the destination " + target_dir.string() + ": " + ec.message(),
        {{"path", target_dir.string()}});
  }
  // Compared by non-empty components: a trailing separator does not make a path different.
  auto parts = [](const fs::path& path) {
    std::vector<std::string> names;
    for (const fs::path& part : path) {
      if (!part.empty()) names.push_back(part.string());
    }
    return names;
  };
  const std::vector<std::string> source_parts = parts(source);
  const std::vector<std::string> target_parts = parts(target);
  if (target_parts.size() >= source_parts.size() &&
      std::equal(source_parts.begin(), source_parts.end(), target_parts.begin())) {
    throw InvalidArgument("the destination " + target.string() + " lies inside the source bundle " +
                              source.string() + "; choose a directory outside it",
                          {{"path", target.string()}, {"source", source.string()}});
  }
  return WriteBundle(result, target_dir, options);
}

namespace internal {

void RemoveBundleDir(const fs::path& dir, bool flush_parent) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return;
  fs::path absolute = fs::absolute(dir);
  fs::path parent = absolute.parent_path();
  fs::path holder = MakeUniqueDir(parent / kTrashDir, absolute.filename().string());
  if (::rename(absolute.c_str(), (holder / absolute.filename()).c_str()) != 0) {
    int err = errno;
    fs::remove(holder, ec);
    if (err == ENOENT) return;
    throw InternalError("cannot remove " + absolute.string() + ": " + std::strerror(err),
                        {{"path", absolute.string()}});
  }
  if (flush_parent) SyncDirectory(parent);
  fs::remove_all(holder, ec);
  if (ec) {
    throw InternalError("cannot remove " + holder.string() + ": " + ec.message(),
                        {{"path", holder.string()}});
  }
}

int RemoveStagingDebris(const fs::path& artifact_root, std::chrono::seconds min_age) {
  int removed = 0;
  auto now = fs::file_time_type::clock::now();
  // Remove `entry` when it is older than min_age; count it.
  auto remove_old = [&](const fs::directory_entry& entry) {
    std::error_code entry_ec;
    auto written = entry.last_write_time(entry_ec);
    if (entry_ec) return;  // removed meanwhile by another cleaner
    if (now - written < min_age) return;
    fs::remove_all(entry.path(), entry_ec);
    if (entry_ec) {
      throw InternalError("cannot remove " + entry.path().string() + ": " + entry_ec.message(),
                          {{"path", entry.path().string()}});
    }
    ++removed;
  };
  for (std::string_view sub : {kStagingDir, kTrashDir}) {
    fs::path dir = artifact_root / sub;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& entry : fs::directory_iterator(dir, ec)) remove_old(entry);
  }
  // WriteBundle's hidden staging directories (`.<name>.staging-XXXXXXXXXX`) of bundles written
  // straight into the root, e.g. by `bundle sample` or `result --export`.
  const std::string infix = std::string(kCopyStagingSuffix) + "-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(artifact_root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with('.') && name.find(infix) != std::string::npos && entry.is_directory(ec)) {
      remove_old(entry);
    }
  }
  return removed;
}

}  // namespace internal
}  // namespace btstore
