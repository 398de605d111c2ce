// Tables over HTTP: an Arrow IPC stream written batch by batch into a chunked response, one
// Parquet file, or JSON; and the chart series the page draws.

#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/writer.h>
#include <arrow/util/compression.h>
#include <parquet/arrow/writer.h>

#include <cmath>

#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "http/server_internal.h"

namespace btstore::http::internal {
namespace {

// Rows per record batch on the wire: large enough that per-batch overhead vanishes, small
// enough that a batch (a few MB for signals) is all the server buffers per connection.
constexpr int64_t kBatchRows = 128 * 1024;

void Check(const arrow::Status& status, const std::string& what) {
  if (!status.ok()) throw InternalError(what + ": " + status.ToString());
}

template <typename T>
T Check(arrow::Result<T> result, const std::string& what) {
  Check(result.status(), what);
  return std::move(result).ValueUnsafe();
}

// An output stream that appends to a string the provider hands to the socket after each batch.
class StringSink : public arrow::io::OutputStream {
 public:
  arrow::Status Close() override {
    closed_ = true;
    return arrow::Status::OK();
  }
  bool closed() const override { return closed_; }
  arrow::Result<int64_t> Tell() const override { return position_; }
  arrow::Status Write(const void* data, int64_t nbytes) override {
    buffer_.append(static_cast<const char*>(data), static_cast<size_t>(nbytes));
    position_ += nbytes;
    return arrow::Status::OK();
  }
  std::string& buffer() { return buffer_; }

 private:
  std::string buffer_;
  int64_t position_ = 0;
  bool closed_ = false;
};

// The state of one streamed table, owned by the content provider.
struct ArrowStreamState {
  std::shared_ptr<arrow::Table> table;
  std::unique_ptr<arrow::TableBatchReader> batches;
  std::shared_ptr<StringSink> sink = std::make_shared<StringSink>();
  std::shared_ptr<arrow::ipc::RecordBatchWriter> writer;
  arrow::ipc::IpcWriteOptions options = arrow::ipc::IpcWriteOptions::Defaults();
};

// Write the next batch (or the end of the stream) into the state's buffer; false at the end.
bool WriteNext(ArrowStreamState& state) {
  if (!state.writer) {
    state.writer =
        Check(arrow::ipc::MakeStreamWriter(state.sink, state.table->schema(), state.options),
              "start the Arrow stream");
  }
  std::shared_ptr<arrow::RecordBatch> batch;
  Check(state.batches->ReadNext(&batch), "read a batch");
  if (!batch) {
    Check(state.writer->Close(), "end the Arrow stream");
    return false;
  }
  Check(state.writer->WriteRecordBatch(*batch), "write a batch");
  return true;
}

wire::Json CellJson(const arrow::Array& array, int64_t row) {
  if (array.IsNull(row)) return nullptr;
  switch (array.type_id()) {
    case arrow::Type::DATE32:
      return Date{static_cast<const arrow::Date32Array&>(array).Value(row)}.ToString();
    case arrow::Type::INT64:
      return static_cast<const arrow::Int64Array&>(array).Value(row);
    case arrow::Type::INT32:
      return static_cast<const arrow::Int32Array&>(array).Value(row);
    case arrow::Type::DOUBLE:
      return wire::MetricJson(static_cast<const arrow::DoubleArray&>(array).Value(row));
    case arrow::Type::STRING:
      return std::string(static_cast<const arrow::StringArray&>(array).GetView(row));
    case arrow::Type::BOOL:
      return static_cast<const arrow::BooleanArray&>(array).Value(row);
    default: {
      auto scalar = array.GetScalar(row);
      return scalar.ok() ? wire::Json((*scalar)->ToString()) : wire::Json(nullptr);
    }
  }
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

TableFormat ChooseTableFormat(const httplib::Request& req) {
  const std::string format = Lower(req.get_param_value("format"));
  if (format == "arrow") return TableFormat::kArrow;
  if (format == "parquet") return TableFormat::kParquet;
  if (format == "json") return TableFormat::kJson;
  if (!format.empty()) {
    throw InvalidArgument("format must be arrow, parquet or json, got '" + format + "'",
                          {{"field", "format"}, {"value", format}});
  }
  const std::string accept = Lower(req.get_header_value("Accept"));
  if (accept.find("application/vnd.apache.arrow.stream") != std::string::npos) {
    return TableFormat::kArrow;
  }
  if (accept.find("parquet") != std::string::npos) return TableFormat::kParquet;
  if (accept.find("application/json") != std::string::npos) return TableFormat::kJson;
  return TableFormat::kArrow;
}

void SendArrowStream(httplib::Response& res, std::shared_ptr<arrow::Table> table,
                     const std::string& compression) {
  auto state = std::make_shared<ArrowStreamState>();
  const std::string codec = Lower(compression);
  if (codec == "lz4" || codec == "zstd") {
    state->options.codec =
        Check(arrow::util::Codec::Create(codec == "lz4" ? arrow::Compression::LZ4_FRAME
                                                        : arrow::Compression::ZSTD),
              "make the " + codec + " codec");
  } else if (!codec.empty() && codec != "none") {
    throw InvalidArgument("compression must be none, lz4 or zstd, got '" + compression + "'",
                          {{"field", "compression"}, {"value", compression}});
  }
  state->table = std::move(table);
  state->batches = std::make_unique<arrow::TableBatchReader>(*state->table);
  state->batches->set_chunksize(kBatchRows);
  res.set_chunked_content_provider("application/vnd.apache.arrow.stream",
                                   [state](size_t, httplib::DataSink& sink) {
                                     // An error mid-stream cannot change the status any more:
                                     // ending the response without the stream's end marker makes
                                     // every Arrow reader report a truncated stream.
                                     try {
                                       const bool more = WriteNext(*state);
                                       std::string& out = state->sink->buffer();
                                       if (!out.empty() && !sink.write(out.data(), out.size()))
                                         return false;
                                       out.clear();
                                       if (!more) sink.done();
                                       return true;
                                     } catch (const Error&) {
                                       return false;
                                     }
                                   });
}

void SendParquet(httplib::Response& res, const std::shared_ptr<arrow::Table>& table) {
  auto out = Check(arrow::io::BufferOutputStream::Create(), "make a buffer");
  parquet::WriterProperties::Builder properties;
  properties.compression(parquet::Compression::SNAPPY);
  Check(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), out, kBatchRows,
                                   properties.build()),
        "write the Parquet file");
  auto buffer = Check(out->Finish(), "finish the Parquet file");
  res.set_content(std::string(reinterpret_cast<const char*>(buffer->data()),
                              static_cast<size_t>(buffer->size())),
                  "application/vnd.apache.parquet");
}

wire::Json TableToJson(const std::shared_ptr<arrow::Table>& table) {
  if (table->num_rows() > kMaxJsonRows) {
    throw InvalidArgument("the table has " + std::to_string(table->num_rows()) +
                              " rows, more than JSON is sent for (" + std::to_string(kMaxJsonRows) +
                              "): ask for format=arrow or parquet, or narrow from/to",
                          {{"rows", std::to_string(table->num_rows())}});
  }
  wire::Json columns = wire::Json::array();
  wire::Json data = wire::Json::object();
  for (int c = 0; c < table->num_columns(); ++c) {
    const std::string name = table->schema()->field(c)->name();
    columns.push_back(name);
    wire::Json values = wire::Json::array();
    for (const auto& chunk : table->column(c)->chunks()) {
      for (int64_t row = 0; row < chunk->length(); ++row) values.push_back(CellJson(*chunk, row));
    }
    data[name] = std::move(values);
  }
  return {{"columns", columns}, {"rows", table->num_rows()}, {"data", data}};
}

wire::Json ChartSeries(JobService& jobs, const std::string& job_id, bool with_weights) {
  ReadOptions options;
  options.tables = {std::string(kIcTable)};
  if (with_weights) options.tables.emplace_back(kWeightsTable);
  BacktestResult result = jobs.GetResult(job_id, options);
  wire::Json dates = wire::Json::array(), ic = wire::Json::array(), rank_ic = wire::Json::array(),
             cumulative = wire::Json::array();
  const auto table = Check(result.daily_ic->CombineChunks(), "combine daily_ic");
  wire::Json doc = {{"job_id", job_id}, {"alpha_name", result.alpha_name}};
  if (table->num_rows() == 0) {
    for (const char* key : {"dates", "ic", "rank_ic", "cumulative_ic"}) doc[key] = dates;
    return doc;
  }
  const auto& date_col = static_cast<const arrow::Date32Array&>(*table->column(0)->chunk(0));
  const auto& ic_col = static_cast<const arrow::DoubleArray&>(*table->column(1)->chunk(0));
  const auto& rank_col = static_cast<const arrow::DoubleArray&>(*table->column(2)->chunk(0));
  double sum = 0;
  for (int64_t row = 0; row < table->num_rows(); ++row) {
    dates.push_back(Date{date_col.Value(row)}.ToString());
    const bool ic_known = !ic_col.IsNull(row) && std::isfinite(ic_col.Value(row));
    ic.push_back(ic_known ? wire::Json(ic_col.Value(row)) : wire::Json(nullptr));
    rank_ic.push_back(CellJson(rank_col, row));
    // Days without an IC add nothing, so the curve continues across them.
    if (ic_known) sum += ic_col.Value(row);
    cumulative.push_back(sum);
  }
  doc["dates"] = dates;
  doc["ic"] = ic;
  doc["rank_ic"] = rank_ic;
  doc["cumulative_ic"] = cumulative;
  if (with_weights && result.daily_weights && result.daily_weights->num_rows() > 0) {
    // Coverage per date: how many names hold a nonzero weight. Rows are sorted by date.
    wire::Json coverage_dates = wire::Json::array(), names = wire::Json::array();
    const auto weights = Check(result.daily_weights->CombineChunks(), "combine daily_weights");
    const auto& wdate = static_cast<const arrow::Date32Array&>(*weights->column(0)->chunk(0));
    const auto& weight =
        static_cast<const arrow::DoubleArray&>(*weights->GetColumnByName("weight")->chunk(0));
    int64_t count = 0;
    for (int64_t row = 0; row < weights->num_rows(); ++row) {
      if (row > 0 && wdate.Value(row) != wdate.Value(row - 1)) {
        coverage_dates.push_back(Date{wdate.Value(row - 1)}.ToString());
        names.push_back(count);
        count = 0;
      }
      if (!weight.IsNull(row) && weight.Value(row) != 0.0) ++count;
    }
    if (weights->num_rows() > 0) {
      coverage_dates.push_back(Date{wdate.Value(weights->num_rows() - 1)}.ToString());
      names.push_back(count);
    }
    doc["weights_dates"] = coverage_dates;
    doc["weights_names"] = names;
  }
  return doc;
}

}  // namespace btstore::http::internal
