// Readers of the daily_ic tables of many bundles (IcReader): the generic one over any store's
// Read, and the local store's lean one, which reads each file into a buffer it keeps, checks it
// as the bundle reader does and decodes the three columns with Parquet's column readers
// straight into arrays of the file's exact size (no Arrow schema conversion, no record
// readers, no growing buffers, no per-file memory mapping).

#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/util/bit_util.h>
#include <fcntl.h>
#include <parquet/column_reader.h>
#include <parquet/file_reader.h>
#include <parquet/metadata.h>
#include <parquet/schema.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "artifact/io_internal.h"
#include "artifact/reader_internal.h"
#include "artifact/source_internal.h"
#include "btstore/artifact_store.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;
using internal::FailureKind;

const std::string& IcFile() {
  static const std::string file = std::string(kIcTable) + ".parquet";
  return file;
}

// The panel's columns of daily_ic: the contract's, all nullable.
const std::shared_ptr<arrow::Schema>& IcSchema() {
  static const std::shared_ptr<arrow::Schema> schema = RequiredSchema(kIcTable);
  return schema;
}

ReadOptions IcReadOptions() {
  ReadOptions options;
  options.tables = {std::string(kIcTable)};
  return options;
}

// daily_ic as the bundle reader returns it (its columns checked), reduced to the panel's.
std::shared_ptr<arrow::Table> ToIcColumns(const std::shared_ptr<arrow::Table>& table) {
  std::vector<std::shared_ptr<arrow::ChunkedArray>> columns;
  for (const auto& field : IcSchema()->fields()) {
    columns.push_back(table->GetColumnByName(field->name()));
  }
  return arrow::Table::Make(IcSchema(), std::move(columns), table->num_rows());
}

class GenericIcReader : public IcReader {
 public:
  explicit GenericIcReader(ArtifactStore& store) : store_(store) {}

  std::shared_ptr<arrow::Table> Read(const BundleLocation& where) override {
    return ToIcColumns(store_.Read(where, IcReadOptions(), nullptr).daily_ic);
  }

 private:
  ArtifactStore& store_;
};

// The panel's buffers and the Parquet reader's come from the C library's allocator: they are
// small (tens of KB) and freed file after file, and Arrow's default pool (mimalloc) returned
// their pages to the system and faulted them in again as zeroed huge pages over and over (a
// fifth of the panel's time in clear_page, by perf).
arrow::MemoryPool* Pool() { return arrow::system_memory_pool(); }

std::shared_ptr<arrow::Buffer> Allocate(int64_t bytes, const std::string& file) {
  auto buffer = arrow::AllocateBuffer(bytes, Pool());
  if (!buffer.ok()) {
    throw InternalError("cannot allocate " + std::to_string(bytes) + " bytes to decode " + file,
                        {{"file", file}});
  }
  return std::move(*buffer);
}

// One column of daily_ic being decoded: where it is in the file and its output.
struct IcColumn {
  int index = -1;         // leaf column of the file
  bool optional = false;  // definition levels present (nulls possible)
  std::shared_ptr<arrow::Buffer> values;
  std::shared_ptr<arrow::Buffer> validity;  // optional columns only
  int64_t null_count = 0;
};

// The leaf column `name` of the file when it is a plain top-level column of `physical` type
// (dates: with the DATE logical type), or -1.
int PlainColumn(const parquet::SchemaDescriptor& schema, const std::string& name,
                parquet::Type::type physical, bool date) {
  const int index = schema.ColumnIndex(name);
  if (index < 0) return -1;
  const parquet::ColumnDescriptor* column = schema.Column(index);
  const bool top_level = column->path()->ToDotVector().size() == 1;
  const bool logical_ok =
      date ? column->logical_type()->is_date() : column->logical_type()->is_none();
  if (!top_level || column->physical_type() != physical || !logical_ok ||
      column->max_repetition_level() != 0 || column->max_definition_level() > 1) {
    return -1;
  }
  return index;
}

class LocalIcReader : public IcReader {
 public:
  explicit LocalIcReader(fs::path root) : root_(std::move(root)) {}

  std::shared_ptr<arrow::Table> Read(const BundleLocation& where) override {
    const fs::path dir(where.location);
    std::unique_ptr<internal::BundleSource> source = internal::LocalSource(dir);
    const ReadOptions options = IcReadOptions();
    const internal::BundlePlan plan = internal::PlanRead(*source, options, true);
    const std::string& file = IcFile();
    const ArtifactInfo* expected = nullptr;
    if (plan.summary.manifest) {
      auto it = plan.summary.manifest->find(file);
      if (it != plan.summary.manifest->end()) expected = &it->second;
    }
    std::optional<internal::BundleFile> opened = internal::OpenBundleFile(dir, file);
    if (!opened) {
      internal::BadFile(file, "is missing from the bundle " + source->where(),
                        {{"path", source->PathOf(file)}});
    }
    const int64_t size = opened->size;
    internal::CheckSize(file, expected, size);

    if (static_cast<int64_t>(bytes_.size()) < size) bytes_.resize(static_cast<size_t>(size));
    const std::string checksum =
        internal::ReadFileInto(opened->fd.get(), size, bytes_.data(), file);
    opened->fd = internal::UniqueFd();
    if (options.verify_checksums) internal::CheckChecksum(file, expected, checksum);

    std::shared_ptr<arrow::Table> table;
    internal::GuardParquet(FailureKind::kRead, file, [&] { table = Decode(size, expected); });
    // A file of another layout (extra nesting, other types): the bundle reader reads it, or
    // names what is wrong with it.
    if (!table) table = ToIcColumns(internal::ReadBundleFrom(*source, options, nullptr).daily_ic);
    return table;
  }

  // The kernel reads the files ahead (POSIX_FADV_WILLNEED) while the thread decodes others: on
  // a cold page cache the reads no longer wait for the disk one file at a time. (On a warm one
  // the advice costs six system calls a job; telling the two apart with a read that may not
  // wait, RWF_NOWAIT, and advising only when cold, started the advice too late and lost
  // most of the gain on a cold cache.)
  void WillNeed(const std::string& result_path) override {
    fs::path dir(result_path);
    if (dir.is_relative()) dir = root_ / dir;
    for (const std::string& name : {std::string(kSummaryFile), IcFile()}) {
      const std::string path = (dir / name).string();
      // Advice only: whatever fails here, the read reports.
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
      ::close(fd);
    }
  }

 private:
  // Decode the file in bytes_ (checked against the manifest already); nullptr when it is not
  // the plain layout that btstore's writer produces. Call inside GuardParquet.
  std::shared_ptr<arrow::Table> Decode(int64_t size, const ArtifactInfo* expected) {
    const std::string& file = IcFile();
    auto reader =
        parquet::ParquetFileReader::Open(std::make_shared<arrow::io::BufferReader>(
                                             std::make_shared<arrow::Buffer>(bytes_.data(), size)),
                                         parquet::ReaderProperties(Pool()));
    const std::shared_ptr<parquet::FileMetaData> metadata = reader->metadata();
    const int64_t rows = metadata->num_rows();
    internal::CheckRows(file, expected, rows);
    const parquet::SchemaDescriptor& schema = *metadata->schema();
    std::array<IcColumn, 3> columns;
    columns[0].index = PlainColumn(schema, "date", parquet::Type::INT32, true);
    columns[1].index = PlainColumn(schema, "ic", parquet::Type::DOUBLE, false);
    columns[2].index = PlainColumn(schema, "rank_ic", parquet::Type::DOUBLE, false);
    for (IcColumn& column : columns) {
      if (column.index < 0) return nullptr;
      column.optional = schema.Column(column.index)->max_definition_level() == 1;
      const int64_t width = &column == &columns[0] ? sizeof(int32_t) : sizeof(double);
      column.values = Allocate(rows * width, file);
      if (column.optional) {
        column.validity = Allocate(arrow::bit_util::BytesForBits(rows), file);
      }
    }
    int64_t offset = 0;
    for (int rg = 0; rg < metadata->num_row_groups(); ++rg) {
      const int64_t group_rows = metadata->RowGroup(rg)->num_rows();
      if (group_rows < 0 || group_rows > rows - offset) {
        internal::BadFile(file,
                          "its row groups hold more rows than the file's " + std::to_string(rows));
      }
      std::shared_ptr<parquet::RowGroupReader> group = reader->RowGroup(rg);
      DecodeInto<parquet::Int32Reader>(*group, columns[0], offset, group_rows, "date");
      DecodeInto<parquet::DoubleReader>(*group, columns[1], offset, group_rows, "ic");
      DecodeInto<parquet::DoubleReader>(*group, columns[2], offset, group_rows, "rank_ic");
      offset += group_rows;
    }
    if (offset != rows) {
      internal::BadFile(file, "its row groups hold " + std::to_string(offset) +
                                  " rows, its footer says " + std::to_string(rows));
    }
    std::vector<std::shared_ptr<arrow::Array>> arrays;
    for (size_t i = 0; i < columns.size(); ++i) {
      IcColumn& column = columns[i];
      if (column.null_count == 0) column.validity = nullptr;
      arrays.push_back(arrow::MakeArray(
          arrow::ArrayData::Make(IcSchema()->field(static_cast<int>(i))->type(), rows,
                                 {column.validity, column.values}, column.null_count)));
    }
    return arrow::Table::Make(IcSchema(), std::move(arrays), rows);
  }

  // Decode the `rows` values of `column` in `group` to its output from row `offset` on.
  template <typename Reader>
  void DecodeInto(parquet::RowGroupReader& group, IcColumn& column, int64_t offset, int64_t rows,
                  const char* name) {
    using T = typename Reader::T;
    std::shared_ptr<parquet::ColumnReader> base = group.Column(column.index);
    auto& reader = static_cast<Reader&>(*base);
    T* values = reinterpret_cast<T*>(column.values->mutable_data()) + offset;
    int16_t* levels = nullptr;
    if (column.optional) {
      if (static_cast<int64_t>(levels_.size()) < rows) levels_.resize(static_cast<size_t>(rows));
      levels = levels_.data();
    }
    // Dense: the non-null values first, spread over their rows below.
    int64_t levels_read = 0;
    int64_t values_read = 0;
    while (levels_read < rows) {
      int64_t got_values = 0;
      const int64_t got =
          reader.ReadBatch(rows - levels_read, levels ? levels + levels_read : nullptr, nullptr,
                           values + values_read, &got_values);
      if (got <= 0) {
        internal::BadFile(IcFile(), std::string("column '") + name +
                                        "' holds fewer values than its row group's rows");
      }
      levels_read += got;
      values_read += got_values;
    }
    if (!column.optional) return;
    uint8_t* validity = column.validity->mutable_data();
    int64_t next = values_read;
    for (int64_t row = rows - 1; row >= 0; --row) {
      const bool valid = levels[row] > 0;
      arrow::bit_util::SetBitTo(validity, offset + row, valid);
      if (valid) {
        values[row] = values[--next];
      } else {
        values[row] = T{};
        ++column.null_count;
      }
    }
  }

  fs::path root_;
  std::vector<uint8_t> bytes_;   // the file being read, kept for the next one
  std::vector<int16_t> levels_;  // definition levels of a row group's column
};

}  // namespace

std::unique_ptr<IcReader> ArtifactStore::NewIcReader() {
  return std::make_unique<GenericIcReader>(*this);
}

namespace internal {

std::unique_ptr<IcReader> NewLocalIcReader(const fs::path& root) {
  return std::make_unique<LocalIcReader>(root);
}

}  // namespace internal
}  // namespace btstore
