// The bundle reader: summary and manifest checks, schema checks naming file and column,
// parallel whole-file reads verified against the manifest, and partial reads that skip row
// groups by their date statistics (contract sections 1 and 4; docs/BUNDLE.md).

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <arrow/io/memory.h>
#include <parquet/arrow/reader.h>
#include <parquet/arrow/schema.h>
#include <parquet/file_reader.h>
#include <parquet/metadata.h>
#include <parquet/properties.h>
#include <parquet/statistics.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <deque>
#include <future>
#include <nlohmann/json.hpp>
#include <set>

#include "artifact/io_internal.h"
#include "artifact/optional_internal.h"
#include "artifact/reader_internal.h"
#include "artifact/source_internal.h"
#include "artifact/summary_internal.h"
#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "model/parallel_internal.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;
using internal::BadFile;
using internal::BundlePlan;
using internal::CheckChecksum;
using internal::CheckRows;
using internal::CheckSize;
using internal::FailureKind;
using internal::PlanRead;

constexpr std::string_view kParquetSuffix = ".parquet";

bool IsRequired(const std::string& name) {
  return name == kSignalsTable || name == kWeightsTable || name == kIcTable;
}

// One file to read and what came of it.
struct FileTask {
  std::string name;  // table name (file stem)
  std::shared_ptr<arrow::Table> table;
  TableInfo info;
  int64_t bytes_read = 0;
  int64_t row_groups_read = 0;
  int64_t row_groups_skipped = 0;
};

struct Plan {
  const ReadOptions* options;
  const std::optional<std::map<std::string, ArtifactInfo>>* manifest;
  bool partial = false;
};

void CheckSchema(const arrow::Schema& schema, const std::string& name, const std::string& file) {
  if (OptionalTableSchema(name)) {
    if (auto fault = internal::FindOptionalSchemaFault(schema, name)) {
      BadFile(file, fault->message,
              {{"column", fault->column}, {"expected", fault->expected}, {"found", fault->found}});
    }
    return;
  }
  if (!IsRequired(name)) return;
  auto required = RequiredSchema(name);
  for (const auto& want : required->fields()) {
    auto got = schema.GetFieldByName(want->name());
    if (!got) {
      BadFile(
          file,
          "column '" + want->name() + "' is missing (expected " + want->type()->ToString() + ")",
          {{"column", want->name()}, {"expected", want->type()->ToString()}, {"found", "missing"}});
    }
    if (!got->type()->Equals(*want->type())) {
      BadFile(file,
              "column '" + want->name() + "' has type " + got->type()->ToString() + ", expected " +
                  want->type()->ToString(),
              {{"column", want->name()},
               {"expected", want->type()->ToString()},
               {"found", got->type()->ToString()}});
    }
  }
}

void CollectLeaves(const parquet::arrow::SchemaField& field, std::vector<int>& out) {
  if (field.is_leaf()) {
    out.push_back(field.column_index);
    return;
  }
  for (const auto& child : field.children) CollectLeaves(child, out);
}

// The top-level fields to load, in output order: for a required table its columns in the
// contract's order then the extra ones; with a column subset, `date` and the requested ones.
std::vector<int> SelectFields(const arrow::Schema& schema, const std::string& name,
                              const std::vector<std::string>& columns) {
  std::vector<int> order;
  std::set<int> seen;
  auto add = [&](int i) {
    if (i >= 0 && seen.insert(i).second) order.push_back(i);
  };
  if (IsRequired(name)) {
    auto required = RequiredSchema(name);
    for (const auto& field : required->fields()) {
      add(schema.GetFieldIndex(field->name()));
    }
  }
  for (int i = 0; i < schema.num_fields(); ++i) add(i);
  if (columns.empty()) return order;
  std::set<std::string> wanted(columns.begin(), columns.end());
  wanted.insert("date");
  std::vector<int> selected;
  for (int i : order) {
    if (wanted.contains(schema.field(i)->name())) selected.push_back(i);
  }
  return selected;
}

// The first index in [i, n) whose date is inside [from, to] when `inside`, outside it when not;
// n when there is none. Blocks of dates are tested with a loop that vectorizes, and only the
// block holding the change is walked one date at a time: a month's read filters whole row
// groups, where most dates are of other months.
int64_t FindFirst(const int32_t* dates, int64_t i, int64_t n, int32_t from, int32_t to,
                  bool inside) {
  constexpr int64_t kBlock = 64;
  auto in_range = [&](int32_t date) { return (date >= from) & (date <= to); };
  for (; i < n; i += kBlock) {
    const int64_t end = std::min(n, i + kBlock);
    bool any = false;
    for (int64_t k = i; k < end; ++k) any |= in_range(dates[k]) == inside;
    if (!any) continue;
    for (int64_t k = i; k < end; ++k) {
      if (in_range(dates[k]) == inside) return k;
    }
  }
  return n;
}

// Keep the rows whose date is inside [from, to]: contiguous runs become zero-copy slices.
std::shared_ptr<arrow::Table> FilterRows(const std::shared_ptr<arrow::Table>& table, int column,
                                         int32_t from, int32_t to, const std::string& file) {
  std::vector<std::shared_ptr<arrow::Table>> runs;
  int64_t row = 0;  // of the chunk's first date
  int64_t run_start = -1;
  auto end_run = [&](int64_t at) {
    runs.push_back(table->Slice(run_start, at - run_start));
    run_start = -1;
  };
  for (const auto& chunk : table->column(column)->chunks()) {
    const auto& dates = static_cast<const arrow::Date32Array&>(*chunk);
    const int64_t n = dates.length();
    if (dates.null_count() == 0) {
      const int32_t* values = dates.raw_values();
      for (int64_t i = 0; i < n;) {
        i = FindFirst(values, i, n, from, to, /*inside=*/run_start < 0);
        if (i == n) break;
        if (run_start < 0) {
          run_start = row + i;
        } else {
          end_run(row + i);
        }
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const bool keep = dates.IsValid(i) && dates.Value(i) >= from && dates.Value(i) <= to;
        if (keep && run_start < 0) run_start = row + i;
        if (!keep && run_start >= 0) end_run(row + i);
      }
    }
    row += n;
  }
  if (run_start >= 0) end_run(row);
  if (runs.size() == 1) return runs.front();
  if (runs.empty()) return table->Slice(0, 0);
  return internal::Unwrap(arrow::ConcatenateTables(runs), FailureKind::kRead, file);
}

std::string DescribeSchema(const arrow::Schema& schema) {
  std::string out;
  for (const auto& field : schema.fields()) {
    if (!out.empty()) out += ", ";
    out += field->name() + ": " + field->type()->ToString();
  }
  return out;
}

// The columns the writer stored REQUIRED although the table declared them nullable, and the
// file's schema metadata without the key that lists them (see internal::kNullableColumnsKey).
struct Nullability {
  std::set<int> restored;
  std::shared_ptr<const arrow::KeyValueMetadata> metadata;
};

Nullability ReadNullability(const arrow::Schema& schema, const std::string& file) {
  Nullability out{{}, schema.metadata()};
  const std::string key(internal::kNullableColumnsKey);
  if (!out.metadata || !out.metadata->Contains(key)) return out;
  const std::string text = out.metadata->Get(key).ValueOr("");
  nlohmann::json list = nlohmann::json::parse(text, nullptr, false);
  if (!list.is_array()) BadFile(file, "its metadata " + key + " is not a JSON array: " + text);
  for (const auto& entry : list) {
    if (!entry.is_number_integer() || entry.get<int64_t>() < 0 ||
        entry.get<int64_t>() >= schema.num_fields()) {
      BadFile(file, "its metadata " + key + " names no column of the file: " + text);
    }
    out.restored.insert(entry.get<int>());
  }
  auto metadata = out.metadata->Copy();
  internal::Check(metadata->Delete(key), FailureKind::kRead, file);
  out.metadata = metadata->size() > 0 ? std::move(metadata) : nullptr;
  return out;
}

// Files up to Parquet's footer read size are read whole by the reader's first read.
constexpr int64_t kSmallFileBytes = parquet::kDefaultFooterReadSize;

// Files from this size up are decoded on Arrow's thread pool, column by column.
constexpr int64_t kThreadedDecodeBytes = 4 << 20;

// Compressed bytes decoded per batch of a file read whole: enough row groups to keep Arrow's
// column threads busy, few enough that the decoded table grows in small steps.
constexpr int64_t kBatchBytes = 16 << 20;

// The bytes [begin, end) of the file that a row group's column chunks occupy, from the footer;
// empty ({0, 0}) when the footer's offsets make no sense (Arrow refuses such a chunk when it
// reads it), so that a corrupt footer cannot overflow the arithmetic here.
std::pair<int64_t, int64_t> RowGroupBytes(const parquet::FileMetaData& metadata, int rg) {
  int64_t begin = std::numeric_limits<int64_t>::max();
  int64_t end = 0;
  auto group = metadata.RowGroup(rg);
  for (int c = 0; c < group->num_columns(); ++c) {
    auto chunk = group->ColumnChunk(c);
    int64_t start = chunk->data_page_offset();
    if (chunk->has_dictionary_page() && chunk->dictionary_page_offset() > 0) {
      start = std::min(start, chunk->dictionary_page_offset());
    }
    int64_t chunk_end = 0;
    if (start < 0 || __builtin_add_overflow(start, chunk->total_compressed_size(), &chunk_end)) {
      continue;
    }
    begin = std::min(begin, start);
    end = std::max(end, chunk_end);
  }
  if (end <= begin) return {0, 0};
  return {begin, end};
}

// Decode `row_groups` of a file read whole in batches, dropping each batch's bytes of the file
// once decoded (the decoded arrays hold copies), so that a whole-file read holds about the
// larger of the file and the decoded table at once, not both.
std::shared_ptr<arrow::Table> ReadWholeInBatches(parquet::arrow::FileReader& reader,
                                                 const parquet::FileMetaData& metadata,
                                                 const std::vector<int>& row_groups,
                                                 const std::vector<int>& leaves,
                                                 const arrow::Buffer& whole,
                                                 const std::string& file) {
  std::vector<std::shared_ptr<arrow::Table>> parts;
  std::vector<int> batch;
  int64_t batch_bytes = 0;
  int64_t begin = std::numeric_limits<int64_t>::max();
  int64_t end = 0;
  auto flush = [&] {
    parts.push_back(
        internal::Unwrap(reader.ReadRowGroups(batch, leaves), FailureKind::kRead, file));
    if (end > begin) internal::ReleasePages(whole, begin, end - begin);
    batch.clear();
    batch_bytes = 0;
    begin = std::numeric_limits<int64_t>::max();
    end = 0;
  };
  for (int rg : row_groups) {
    auto group = metadata.RowGroup(rg);
    const auto [rg_begin, rg_end] = RowGroupBytes(metadata, rg);
    if (rg_end > rg_begin) {
      begin = std::min(begin, rg_begin);
      end = std::max(end, rg_end);
    }
    batch.push_back(rg);
    // The size comes from the footer: clamped, so a corrupt one cannot overflow the sum; any
    // size from kBatchBytes up ends the batch all the same.
    batch_bytes += std::clamp<int64_t>(group->total_compressed_size(), 0, kBatchBytes);
    if (batch_bytes >= kBatchBytes) flush();
  }
  if (!batch.empty()) flush();
  if (parts.size() == 1) return parts.front();
  return internal::Unwrap(arrow::ConcatenateTables(parts), FailureKind::kRead, file);
}

// The manifest's entry for `file`, or nullptr.
const ArtifactInfo* ManifestEntry(const Plan& plan, const std::string& file) {
  if (!plan.manifest->has_value()) return nullptr;
  auto it = (*plan.manifest)->find(file);
  return it == (*plan.manifest)->end() ? nullptr : &it->second;
}

// A Parquet file of a bundle opened and checked (schema, rows against the manifest), with the
// row groups and fields that a read of it selects.
struct CheckedFile {
  std::unique_ptr<parquet::arrow::FileReader> reader;
  std::shared_ptr<parquet::FileMetaData> metadata;
  std::shared_ptr<arrow::Schema> schema;  // the file's
  std::vector<int> row_groups;            // to read, in file order
  int64_t row_groups_skipped = 0;
  int64_t selected_rows = 0;  // rows of `row_groups`
  std::vector<int> leaves;
  std::vector<std::shared_ptr<arrow::Field>> out_fields;  // in output order, nullability restored
  std::shared_ptr<const arrow::KeyValueMetadata> out_metadata;  // without btstore's own key
  bool by_range = false;
  int32_t from = std::numeric_limits<int32_t>::min();
  int32_t to = std::numeric_limits<int32_t>::max();
};

// Open `input` as the Parquet file `file` of the table `name` and check it; `use_threads`:
// decode columns on Arrow's thread pool. Call inside GuardParquet. Throws InvalidResult naming
// the file.
CheckedFile OpenChecked(std::shared_ptr<arrow::io::RandomAccessFile> input, bool pre_buffer,
                        bool use_threads, const std::string& name, const std::string& file,
                        const ArtifactInfo* expected, const ReadOptions& options) {
  CheckedFile out;
  parquet::ArrowReaderProperties arrow_properties;
  arrow_properties.set_use_threads(use_threads);
  arrow_properties.set_pre_buffer(pre_buffer);
  parquet::arrow::FileReaderBuilder builder;
  internal::Check(builder.Open(std::move(input)), FailureKind::kRead, file);
  builder.properties(arrow_properties);
  out.reader = internal::Unwrap(builder.Build(), FailureKind::kRead, file);
  internal::Check(out.reader->GetSchema(&out.schema), FailureKind::kRead, file);
  CheckSchema(*out.schema, name, file);
  out.metadata = out.reader->parquet_reader()->metadata();
  const auto& metadata = *out.metadata;
  CheckRows(file, expected, metadata.num_rows());

  const auto& fields = out.reader->manifest().schema_fields;
  int date_field = out.schema->GetFieldIndex("date");
  bool has_date =
      date_field >= 0 && out.schema->field(date_field)->type()->id() == arrow::Type::DATE32;
  out.by_range = has_date && (options.from || options.to);
  if (options.from) out.from = options.from->days;
  if (options.to) out.to = options.to->days;

  for (int rg = 0; rg < metadata.num_row_groups(); ++rg) {
    if (out.by_range && fields[date_field].is_leaf()) {
      auto stats =
          metadata.RowGroup(rg)->ColumnChunk(fields[date_field].column_index)->statistics();
      if (stats && stats->HasMinMax()) {
        const auto& typed = static_cast<const parquet::Int32Statistics&>(*stats);
        if (typed.max() < out.from || typed.min() > out.to) {
          ++out.row_groups_skipped;
          continue;
        }
      }
    }
    out.row_groups.push_back(rg);
    out.selected_rows += metadata.RowGroup(rg)->num_rows();
  }

  const Nullability nullability = ReadNullability(*out.schema, file);
  out.out_metadata = nullability.metadata;
  for (int i : SelectFields(*out.schema, name, options.columns)) {
    CollectLeaves(fields[i], out.leaves);
    out.out_fields.push_back(nullability.restored.contains(i)
                                 ? out.schema->field(i)->WithNullable(true)
                                 : out.schema->field(i));
  }
  return out;
}

// Put the columns that ReadRowGroups returned (leaves in file order) in the order chosen, and
// keep the rows of the date range.
std::shared_ptr<arrow::Table> Arrange(const CheckedFile& checked,
                                      const std::shared_ptr<arrow::Table>& table,
                                      const std::string& file) {
  std::vector<std::shared_ptr<arrow::ChunkedArray>> columns;
  for (const auto& field : checked.out_fields) {
    auto column = table->GetColumnByName(field->name());
    if (!column) BadFile(file, "column '" + field->name() + "' could not be read");
    columns.push_back(column);
  }
  auto arranged = arrow::Table::Make(arrow::schema(checked.out_fields, checked.out_metadata),
                                     columns, table->num_rows());
  if (!checked.by_range) return arranged;
  return FilterRows(arranged, arranged->schema()->GetFieldIndex("date"), checked.from, checked.to,
                    file);
}

void ReadFile(internal::BundleSource& source, const Plan& plan, FileTask& task) {
  const ReadOptions& options = *plan.options;
  std::string file = task.name + std::string(kParquetSuffix);
  const std::string file_path = source.PathOf(file);
  auto missing = [&] {
    BadFile(file, "is missing from the bundle " + source.where(), {{"path", file_path}});
  };
  const ArtifactInfo* expected = ManifestEntry(plan, file);

  auto counter = std::make_shared<std::atomic<int64_t>>(0);
  std::shared_ptr<arrow::io::RandomAccessFile> input;
  std::shared_ptr<arrow::Buffer> whole;
  int64_t size = 0;
  if (!plan.partial) {
    // A whole-file read copies the file into memory, hashing it on the way, and decodes from
    // that copy: one pass over the file.
    std::optional<internal::WholeFile> read = source.ReadWhole(file);
    if (!read) missing();
    size = read->data->size();
    CheckSize(file, expected, size);
    whole = std::move(read->data);
    task.bytes_read = whole->size();
    if (options.verify_checksums) CheckChecksum(file, expected, read->checksum);
    input = std::make_shared<arrow::io::BufferReader>(whole);
  } else {
    std::optional<internal::SourceFile> opened = source.Open(file);
    if (!opened) missing();
    size = opened->size;
    CheckSize(file, expected, size);
    std::shared_ptr<arrow::io::RandomAccessFile> readable = opened->file;
    if (size <= kSmallFileBytes) {
      // Parquet's first read of the footer would take all of a small file anyway; reading its
      // row groups again would cost (and count) their bytes twice.
      auto buffer = internal::Unwrap(readable->ReadAt(0, size), FailureKind::kRead, file);
      *counter = buffer->size();
      input = std::make_shared<arrow::io::BufferReader>(buffer);
    } else {
      input = std::make_shared<internal::CountingFile>(readable, counter);
    }
  }

  internal::GuardParquet(FailureKind::kRead, file, [&] {
    CheckedFile checked = OpenChecked(input, plan.partial, size > kThreadedDecodeBytes, task.name,
                                      file, expected, options);
    task.row_groups_read = static_cast<int64_t>(checked.row_groups.size());
    task.row_groups_skipped = checked.row_groups_skipped;
    std::shared_ptr<arrow::Table> table;
    if (checked.row_groups.empty()) {
      table = internal::Unwrap(arrow::Table::MakeEmpty(arrow::schema(checked.out_fields)),
                               FailureKind::kRead, file);
    } else if (!whole) {
      table = internal::Unwrap(checked.reader->ReadRowGroups(checked.row_groups, checked.leaves),
                               FailureKind::kRead, file);
    } else {
      table = ReadWholeInBatches(*checked.reader, *checked.metadata, checked.row_groups,
                                 checked.leaves, *whole, file);
    }
    task.table = Arrange(checked, table, file);
    task.info = {task.name, DescribeSchema(*checked.schema), checked.metadata->num_rows(), size,
                 checked.metadata->num_row_groups()};
  });
  if (plan.partial) task.bytes_read = counter->load();
}

// The ic column of daily_ic, complete, for recomputing mean_ic / icir.
std::vector<double> IcValues(const std::shared_ptr<arrow::Table>& table) {
  std::vector<double> values;
  auto column = table ? table->GetColumnByName("ic") : nullptr;
  if (!column) return values;
  for (const auto& chunk : column->chunks()) {
    const auto& ic = static_cast<const arrow::DoubleArray&>(*chunk);
    for (int64_t i = 0; i < ic.length(); ++i) {
      if (ic.IsValid(i)) values.push_back(ic.Value(i));  // nulls are "no value"; NaN counts
    }
  }
  return values;
}

void RecomputeIcMetrics(const std::vector<double>& ic, bool has_mean_ic, bool has_icir,
                        Metrics& metrics) {
  const IcStats stats = ComputeIcStats(ic);
  if (!has_mean_ic) metrics.mean_ic = stats.mean_ic;
  if (!has_icir) metrics.icir = stats.icir;
}

std::vector<std::string> ParquetStems(const std::vector<std::string>& entries) {
  std::vector<std::string> stems;
  for (const std::string& name : entries) {
    if (name.size() <= kParquetSuffix.size() || !name.ends_with(kParquetSuffix)) continue;
    std::string stem = name.substr(0, name.size() - kParquetSuffix.size());
    // Other names (hidden files, odd characters) are not tables of the bundle.
    if (internal::IsSafeFileStem(stem)) stems.push_back(stem);
  }
  std::sort(stems.begin(), stems.end());
  return stems;
}

// Read and check the JSON artifact `name`, and its manifest entry when there is one. Throws
// InvalidResult naming its file.
std::string ReadJsonArtifact(internal::BundleSource& source, const std::string& name,
                             const std::optional<std::map<std::string, ArtifactInfo>>& manifest,
                             bool verify_checksums) {
  const std::string file = internal::JsonArtifactFile(name);
  std::optional<std::string> text = source.ReadJson(file, [](const std::string&) {});
  if (!text) {
    BadFile(file, "is missing from the bundle " + source.where(), {{"path", source.PathOf(file)}});
  }
  if (manifest) {
    if (auto it = manifest->find(file); it != manifest->end()) {
      const ArtifactInfo& expected = it->second;
      const auto size = static_cast<int64_t>(text->size());
      if (expected.bytes != size) {
        BadFile(file,
                "is " + std::to_string(size) + " bytes, the manifest says " +
                    std::to_string(expected.bytes) + " (truncated or replaced)",
                {{"expected_bytes", std::to_string(expected.bytes)},
                 {"found_bytes", std::to_string(size)}});
      }
      const std::string checksum = internal::ChecksumOf(text->data(), text->size());
      if (verify_checksums && !expected.checksum.empty() && checksum != expected.checksum) {
        BadFile(file,
                "checksum mismatch: the manifest says " + expected.checksum + ", the file is " +
                    checksum + " (the file was modified or corrupted)",
                {{"expected", expected.checksum}, {"found", checksum}});
      }
    }
  }
  try {
    return NormalizeJsonArtifact(name, *text);
  } catch (const InvalidArgument& e) {
    // A fault of the file, not of the request.
    ErrorDetails details = e.details();
    details["path"] = source.PathOf(file);
    throw InvalidResult(e.what(), std::move(details));
  }
}

}  // namespace

namespace internal {

void BadFile(const std::string& file, const std::string& message, ErrorDetails details) {
  details["file"] = file;
  throw InvalidResult(file + ": " + message, std::move(details));
}

void CheckSize(const std::string& file, const ArtifactInfo* expected, int64_t size) {
  if (expected && expected->bytes != size) {
    BadFile(file,
            "is " + std::to_string(size) + " bytes, the manifest says " +
                std::to_string(expected->bytes) + " (truncated or replaced)",
            {{"expected_bytes", std::to_string(expected->bytes)},
             {"found_bytes", std::to_string(size)}});
  }
}

void CheckChecksum(const std::string& file, const ArtifactInfo* expected,
                   const std::string& checksum) {
  if (expected && !expected->checksum.empty() && checksum != expected->checksum) {
    BadFile(file,
            "checksum mismatch: the manifest says " + expected->checksum + ", the file is " +
                checksum + " (the file was modified or corrupted)",
            {{"expected", expected->checksum}, {"found", checksum}});
  }
}

void CheckRows(const std::string& file, const ArtifactInfo* expected, int64_t rows) {
  if (expected && rows != expected->rows) {
    BadFile(
        file,
        "has " + std::to_string(rows) + " rows, the manifest says " +
            std::to_string(expected->rows),
        {{"expected_rows", std::to_string(expected->rows)}, {"found_rows", std::to_string(rows)}});
  }
}

BundlePlan PlanRead(BundleSource& source, const ReadOptions& options, bool prefetch_whole) {
  const std::string& dir = source.where();
  if (!source.Exists()) {
    throw ResultPathMissing("bundle directory " + dir + " does not exist", {{"path", dir}});
  }
  if (options.from && options.to && *options.to < *options.from) {
    throw InvalidArgument("the date range is empty: to is before from",
                          {{"from", options.from->ToString()}, {"to", options.to->ToString()}});
  }
  // One listing answers every "is it there" below (a stat per manifest entry cost more than
  // the read of a small table).
  const std::vector<std::string> entries = source.List();
  const std::set<std::string> on_disk_names(entries.begin(), entries.end());
  std::vector<std::string> present = ParquetStems(entries);
  {
    // Everything this read will need is fetched at once where fetching costs a round trip:
    // summary.json, and the Parquet files asked for (whole, or their footers).
    std::vector<std::string> files;
    for (const auto& stem : present) {
      if (options.tables.empty() ||
          std::find(options.tables.begin(), options.tables.end(), stem) != options.tables.end()) {
        files.push_back(stem + std::string(kParquetSuffix));
      }
    }
    source.Prefetch({std::string(kSummaryFile)}, true);
    source.Prefetch(files, prefetch_whole);
  }
  BundlePlan out{ReadSummary(source), {}, {}, {}};
  const internal::ParsedSummary& summary = out.summary;
  std::vector<std::string>& names = out.names;
  std::vector<std::string>& artifacts_by_name = out.artifacts_by_name;
  std::vector<std::string>& artifacts_if_readable = out.artifacts_if_readable;

  std::set<std::string> present_set(present.begin(), present.end());
  auto listed = [&](const std::string& file) {
    return summary.manifest && summary.manifest->contains(file);
  };
  auto on_disk = [&](const std::string& file) { return on_disk_names.contains(file); };
  if (options.tables.empty()) {
    names = {std::string(kSignalsTable), std::string(kWeightsTable), std::string(kIcTable)};
    for (const auto& stem : present) {
      if (!IsRequired(stem)) names.push_back(stem);
    }
    for (std::string_view artifact : {kWalkForwardArtifact, kParamSearchArtifact}) {
      const std::string file = JsonArtifactFile(artifact);
      if (on_disk(file) || listed(file)) artifacts_if_readable.emplace_back(artifact);
    }
  } else {
    for (const auto& name : options.tables) {
      if (!IsSafeFileStem(name)) {
        throw InvalidArgument("'" + name + "' is not a table name", {{"table", name}});
      }
      std::vector<std::string>& list = IsJsonArtifact(name) ? artifacts_by_name : names;
      if (std::find(list.begin(), list.end(), name) == list.end()) list.push_back(name);
    }
  }
  for (const auto& name : artifacts_by_name) {
    const std::string file = JsonArtifactFile(name);
    if (!on_disk(file) && !listed(file)) {
      throw InvalidArgument("the bundle has no " + file, {{"table", name}, {"path", dir}});
    }
  }
  for (const auto& name : names) {
    if (present_set.contains(name)) continue;
    std::string file = name + std::string(kParquetSuffix);
    // A required table, or one the manifest lists, is part of the bundle: its absence is a
    // broken bundle. Any other name is a table this bundle never had: a bad request.
    bool expected = IsRequired(name) || (summary.manifest && summary.manifest->contains(file));
    if (!expected) {
      std::string tables;
      for (const auto& stem : present) tables += (tables.empty() ? "" : ", ") + stem;
      throw InvalidArgument("the bundle has no table '" + name + "' (its tables: " + tables + ")",
                            {{"table", name}, {"path", dir}});
    }
    BadFile(file, "is missing from the bundle " + dir, {{"path", source.PathOf(file)}});
  }
  if (summary.manifest) {
    for (const auto& [file, entry] : *summary.manifest) {
      // A missing JSON artifact makes only that artifact unavailable (checked when read).
      const bool json_artifact =
          file.ends_with(".json") && IsJsonArtifact(file.substr(0, file.size() - 5));
      if (!json_artifact && !on_disk(file)) {
        BadFile(file, "is listed in the manifest but missing from " + dir,
                {{"path", source.PathOf(file)}});
      }
    }
  }
  return out;
}

}  // namespace internal

namespace {

BacktestResult ReadImpl(internal::BundleSource& source, const ReadOptions& options,
                        ReadStats* stats, BundleInfo* info) {
  const bool partial = options.from || options.to || !options.columns.empty();
  BundlePlan planned = PlanRead(source, options, /*prefetch_whole=*/!partial);
  internal::ParsedSummary& summary = planned.summary;
  const std::vector<std::string>& names = planned.names;
  Plan plan{&options, &summary.manifest, partial};
  std::vector<FileTask> tasks(names.size());
  for (size_t i = 0; i < names.size(); ++i) tasks[i].name = names[i];
  internal::ParallelFor(tasks.size(), internal::CoreCount(),
                        [&](size_t, size_t i) { ReadFile(source, plan, tasks[i]); });

  if (!options.columns.empty()) {
    for (const auto& column : options.columns) {
      bool found = std::any_of(tasks.begin(), tasks.end(), [&](const FileTask& t) {
        return t.table->schema()->GetFieldIndex(column) >= 0;
      });
      if (!found) {
        throw InvalidArgument("no table of the bundle has a column '" + column + "'",
                              {{"column", column}});
      }
    }
  }

  BacktestResult result = std::move(summary.meta);
  ReadStats total;
  std::shared_ptr<arrow::Table> ic_table;
  for (auto& task : tasks) {
    total.bytes_read += task.bytes_read;
    total.row_groups_read += task.row_groups_read;
    total.row_groups_skipped += task.row_groups_skipped;
    if (task.name == kSignalsTable) {
      result.daily_signals = task.table;
    } else if (task.name == kWeightsTable) {
      result.daily_weights = task.table;
    } else if (task.name == kIcTable) {
      result.daily_ic = task.table;
    } else {
      result.extra_tables[task.name] = task.table;
    }
    if (info) info->tables.push_back(task.info);
  }

  if (!summary.has_mean_ic || !summary.has_icir) {
    // Old bundles: recompute from the complete ic column, whatever part of it was asked for.
    std::shared_ptr<arrow::Table> ic = result.daily_ic;
    bool complete = ic && !options.from && !options.to && ic->GetColumnByName("ic");
    if (!complete) {
      ReadOptions ic_options;
      ic_options.tables = {std::string(kIcTable)};
      ic_options.columns = {"ic"};
      FileTask ic_task;
      ic_task.name = std::string(kIcTable);
      Plan ic_plan{&ic_options, &summary.manifest, true};
      ReadFile(source, ic_plan, ic_task);
      total.bytes_read += ic_task.bytes_read;
      ic = ic_task.table;
    }
    RecomputeIcMetrics(IcValues(ic), summary.has_mean_ic, summary.has_icir, result.metrics);
  }
  for (const auto& name : planned.artifacts_by_name) {
    result.json_artifacts[name] =
        ReadJsonArtifact(source, name, summary.manifest, options.verify_checksums);
  }
  for (const auto& name : planned.artifacts_if_readable) {
    try {
      result.json_artifacts[name] =
          ReadJsonArtifact(source, name, summary.manifest, options.verify_checksums);
    } catch (const InvalidResult& e) {
      result.unavailable[internal::JsonArtifactFile(name)] = e.what();
    }
  }
  if (stats) *stats = total;
  if (info) {
    info->summary_json = summary.text;
    info->has_manifest = summary.manifest.has_value();
  }
  return result;
}

// Compressed bytes of row groups decoded per step of a streamed read: about two of btstore's
// 64K-row groups, so a step decodes to a few MB while Arrow still decodes its columns in
// parallel. The stream holds two steps (the one being sent and the next, decoded meanwhile).
constexpr int64_t kStreamStepBytes = 1 << 20;

// The file under a streamed whole-table read. The stream reads each step's row groups with one
// request, in file order, hashing them; reads that fall inside that window come from memory,
// any other (the footer) from the file.
class WindowFile : public arrow::io::RandomAccessFile {
 public:
  WindowFile(std::shared_ptr<arrow::io::RandomAccessFile> inner, int64_t size)
      : inner_(std::move(inner)), size_(size) {}

  // Serve [begin, begin + data->size()) from `data` until the next call; nullptr: none.
  void SetWindow(int64_t begin, std::shared_ptr<arrow::Buffer> data) {
    window_begin_ = begin;
    window_ = std::move(data);
  }

  arrow::Status Close() override { return inner_->Close(); }
  arrow::Result<int64_t> Tell() const override { return position_; }
  bool closed() const override { return inner_->closed(); }
  arrow::Status Seek(int64_t position) override {
    position_ = position;
    return arrow::Status::OK();
  }
  arrow::Result<int64_t> GetSize() override { return size_; }
  arrow::Result<int64_t> Read(int64_t nbytes, void* out) override {
    ARROW_ASSIGN_OR_RAISE(int64_t n, ReadAt(position_, nbytes, out));
    position_ += n;
    return n;
  }
  arrow::Result<std::shared_ptr<arrow::Buffer>> Read(int64_t nbytes) override {
    ARROW_ASSIGN_OR_RAISE(auto buffer, ReadAt(position_, nbytes));
    position_ += buffer->size();
    return buffer;
  }
  arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes, void* out) override {
    return ReadAt(position, nbytes, true, out);
  }
  arrow::Result<std::shared_ptr<arrow::Buffer>> ReadAt(int64_t position, int64_t nbytes) override {
    return ReadAt(position, nbytes, true);
  }
  arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes, bool allow_short_read,
                                void* out) override {
    if (InWindow(position, nbytes)) {
      std::memcpy(out, window_->data() + (position - window_begin_), static_cast<size_t>(nbytes));
      return nbytes;
    }
    return inner_->ReadAt(position, nbytes, allow_short_read, out);
  }
  arrow::Result<std::shared_ptr<arrow::Buffer>> ReadAt(int64_t position, int64_t nbytes,
                                                       bool allow_short_read) override {
    if (InWindow(position, nbytes)) {
      return arrow::SliceBuffer(window_, position - window_begin_, nbytes);
    }
    return inner_->ReadAt(position, nbytes, allow_short_read);
  }

 private:
  bool InWindow(int64_t position, int64_t nbytes) const {
    return window_ && position >= window_begin_ && nbytes >= 0 &&
           position - window_begin_ <= window_->size() - nbytes;
  }

  std::shared_ptr<arrow::io::RandomAccessFile> inner_;
  int64_t size_;
  int64_t position_ = 0;
  int64_t window_begin_ = 0;
  std::shared_ptr<arrow::Buffer> window_;
};

// A table read step by step. A whole-table read goes through a WindowFile and hashes the file
// in order as the steps reach further into it; at the end it hashes the rest (the footer) and
// checks the manifest's checksum. A partial read (date range, columns) reads only the row
// groups and columns it needs, as ReadBundle does, and so checks sizes and rows only.
class ParquetTableStream : public TableStream {
 public:
  ParquetTableStream(std::unique_ptr<internal::BundleSource> source, std::string name,
                     std::optional<ArtifactInfo> expected, const ReadOptions& options, bool partial)
      : source_(std::move(source)),
        name_(std::move(name)),
        file_(name_ + std::string(kParquetSuffix)),
        expected_(std::move(expected)),
        verify_(!partial && options.verify_checksums && expected_ && !expected_->checksum.empty()) {
    std::optional<internal::SourceFile> opened = source_->Open(file_);
    if (!opened) {
      BadFile(file_, "is missing from the bundle " + source_->where(),
              {{"path", source_->PathOf(file_)}});
    }
    inner_ = opened->file;
    size_ = opened->size;
    CheckSize(file_, expected_ ? &*expected_ : nullptr, size_);
    std::shared_ptr<arrow::io::RandomAccessFile> input = inner_;
    if (!partial) {
      window_ = std::make_shared<WindowFile>(inner_, size_);
      input = window_;
    }
    internal::GuardParquet(FailureKind::kRead, file_, [&] {
      checked_ = OpenChecked(input, partial, size_ > kThreadedDecodeBytes, name_, file_,
                             expected_ ? &*expected_ : nullptr, options);
    });
    schema_ = arrow::schema(checked_.out_fields, checked_.out_metadata);
  }

  std::shared_ptr<arrow::Schema> schema() const override { return schema_; }
  int64_t max_rows() const override { return checked_.selected_rows; }

  std::shared_ptr<arrow::RecordBatch> Next() override {
    while (pending_.empty()) {
      if (done_) return nullptr;
      if (!ahead_.valid()) ahead_ = DecodeAhead();
      Decoded step = ahead_.get();
      pending_ = std::move(step.batches);
      done_ = step.last;
      // The next step decodes on another thread while the caller uses this one.
      if (!done_) ahead_ = DecodeAhead();
    }
    std::shared_ptr<arrow::RecordBatch> batch = std::move(pending_.front());
    pending_.pop_front();
    return batch;
  }

 private:
  using Batches = std::deque<std::shared_ptr<arrow::RecordBatch>>;
  // What a step gives: its batches, and whether it was the last (the checksum checked).
  struct Decoded {
    Batches batches;
    bool last = false;
  };

  // Start decoding the next step. Only one runs at a time, and only it touches the reading
  // state; its result is handed over by the future.
  std::future<Decoded> DecodeAhead() {
    return std::async(std::launch::async, [this] {
      Decoded decoded;
      internal::GuardParquet(FailureKind::kRead, file_, [&] { decoded = Step(); });
      return decoded;
    });
  }

  // Decode the next step of row groups (none when the read selects no row group).
  Decoded Step() {
    Decoded out;
    if (next_ == checked_.row_groups.size()) {
      Finish();
      out.last = true;
      return out;
    }
    std::vector<int> step;
    int64_t step_bytes = 0;
    int64_t end = 0;
    const auto& metadata = *checked_.metadata;
    while (next_ < checked_.row_groups.size() && step_bytes < kStreamStepBytes) {
      const int rg = checked_.row_groups[next_++];
      step.push_back(rg);
      // The size comes from the footer: clamped, so a corrupt one cannot overflow the sum.
      step_bytes +=
          std::clamp<int64_t>(metadata.RowGroup(rg)->total_compressed_size(), 0, kStreamStepBytes);
      end = std::max(end, RowGroupBytes(metadata, rg).second);
    }
    if (window_) window_->SetWindow(hashed_, HashUpTo(std::min(end, size_)));
    auto table = internal::Unwrap(checked_.reader->ReadRowGroups(step, checked_.leaves),
                                  FailureKind::kRead, file_);
    if (window_) window_->SetWindow(0, nullptr);
    table = Arrange(checked_, table, file_);
    arrow::TableBatchReader batches(*table);
    for (;;) {
      std::shared_ptr<arrow::RecordBatch> batch;
      internal::Check(batches.ReadNext(&batch), FailureKind::kRead, file_);
      if (!batch) break;
      if (batch->num_rows() > 0) out.batches.push_back(std::move(batch));
    }
    // The last step also checks the checksum, so a table of one step is verified whole before
    // its first batch is returned.
    if (next_ == checked_.row_groups.size()) {
      Finish();
      out.last = true;
    }
    return out;
  }

  // Read and hash the file from where hashing stopped up to `end`; return those bytes (nullptr
  // when there are none: the hashing is past `end`).
  std::shared_ptr<arrow::Buffer> HashUpTo(int64_t end) {
    if (!verify_ || end <= hashed_) return nullptr;
    auto bytes =
        internal::Unwrap(inner_->ReadAt(hashed_, end - hashed_), FailureKind::kRead, file_);
    if (bytes->size() != end - hashed_) {
      BadFile(file_, "was truncated while it was read", {{"path", source_->PathOf(file_)}});
    }
    checksum_.Update(bytes->data(), static_cast<size_t>(bytes->size()));
    hashed_ = end;
    return bytes;
  }

  void Finish() {
    if (verify_) {
      // The rest is the footer (and whatever lies after the last row group): small.
      while (hashed_ < size_) HashUpTo(std::min(size_, hashed_ + kStreamStepBytes));
      CheckChecksum(file_, &*expected_, checksum_.Checksum());
    }
  }

  std::unique_ptr<internal::BundleSource> source_;
  std::string name_;
  std::string file_;
  std::optional<ArtifactInfo> expected_;
  bool verify_;
  std::shared_ptr<arrow::io::RandomAccessFile> inner_;
  std::shared_ptr<WindowFile> window_;
  int64_t size_ = 0;
  CheckedFile checked_;
  std::shared_ptr<arrow::Schema> schema_;
  size_t next_ = 0;  // into checked_.row_groups
  Batches pending_;  // decoded, to return
  internal::StreamingChecksum checksum_;
  int64_t hashed_ = 0;  // bytes [0, hashed_) are hashed
  bool done_ = false;   // the last step was handed over (read by Next() only)
  // Last, so that it is destroyed first: its destructor waits for a step still decoding.
  std::future<Decoded> ahead_;
};

}  // namespace

namespace internal {

BacktestResult ReadBundleFrom(BundleSource& source, const ReadOptions& options, ReadStats* stats) {
  return ReadImpl(source, options, stats, nullptr);
}

std::unique_ptr<TableStream> OpenTableFrom(std::unique_ptr<BundleSource> source,
                                           const std::string& name, const ReadOptions& options) {
  if (IsJsonArtifact(name)) {
    throw InvalidArgument(name + " is a JSON artifact, not a table", {{"table", name}});
  }
  ReadOptions one = options;
  one.tables = {name};
  // Streamed: only the footer is fetched ahead, so memory stays bounded on every store.
  BundlePlan planned = PlanRead(*source, one, /*prefetch_whole=*/false);
  std::optional<ArtifactInfo> expected;
  if (planned.summary.manifest) {
    auto it = planned.summary.manifest->find(name + std::string(kParquetSuffix));
    if (it != planned.summary.manifest->end()) expected = it->second;
  }
  const bool partial = options.from || options.to || !options.columns.empty();
  auto stream = std::make_unique<ParquetTableStream>(std::move(source), name, std::move(expected),
                                                     options, partial);
  if (!options.columns.empty()) {
    for (const auto& column : options.columns) {
      if (stream->schema()->GetFieldIndex(column) < 0) {
        throw InvalidArgument("the table " + name + " has no column '" + column + "'",
                              {{"column", column}, {"table", name}});
      }
    }
  }
  return stream;
}

BundleInfo InspectBundleFrom(BundleSource& source) {
  BundleInfo info;
  BacktestResult result = ReadImpl(source, ReadOptions{}, nullptr, &info);
  // Inspecting validates everything: a corrupt JSON artifact is an error here.
  if (!result.unavailable.empty()) {
    const auto& [file, message] = *result.unavailable.begin();
    throw InvalidResult(message, {{"file", file}, {"path", source.PathOf(file)}});
  }
  result.daily_signals = nullptr;
  result.daily_weights = nullptr;
  result.daily_ic = nullptr;
  result.extra_tables.clear();
  info.summary_only = std::move(result);
  return info;
}

}  // namespace internal

BacktestResult ReadBundle(const fs::path& dir, const ReadOptions& options, ReadStats* stats) {
  return internal::ReadBundleFrom(*internal::LocalSource(dir), options, stats);
}

std::string ReadSummaryText(const fs::path& dir) { return internal::ReadSummaryText(dir); }

std::unique_ptr<TableStream> OpenTable(const fs::path& dir, const std::string& name,
                                       const ReadOptions& options) {
  return internal::OpenTableFrom(internal::LocalSource(dir), name, options);
}

BundleInfo InspectBundle(const fs::path& dir) {
  return internal::InspectBundleFrom(*internal::LocalSource(dir));
}

}  // namespace btstore
