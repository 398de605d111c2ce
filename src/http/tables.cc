// Tables over HTTP, streamed from a TableStream into a chunked response as its steps are decoded:
// an Arrow IPC stream, one Parquet file, or JSON; and the chart series the page draws.

#include <arrow/api.h>
#include <arrow/io/interfaces.h>
#include <arrow/ipc/writer.h>
#include <arrow/util/compression.h>
#include <parquet/arrow/writer.h>

#include <cmath>

#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "http/server_internal.h"

namespace btstore::http::internal {
namespace {

// Rows per row group of a Parquet answer at most, as btstore writes its bundles.
constexpr int64_t kRowGroupRows = 64 * 1024;

void Check(const arrow::Status& status, const std::string& what) {
  if (!status.ok()) throw InternalError(what + ": " + status.ToString());
}

template <typename T>
T Check(arrow::Result<T> result, const std::string& what) {
  Check(result.status(), what);
  return std::move(result).ValueUnsafe();
}

// An output stream that passes each write to Append and counts the bytes: the two ways a
// table's bytes leave the server differ only in where the bytes go.
class ForwardingStream : public arrow::io::OutputStream {
 public:
  arrow::Status Close() override {
    closed_ = true;
    return arrow::Status::OK();
  }
  bool closed() const override { return closed_; }
  arrow::Result<int64_t> Tell() const override { return position_; }
  arrow::Status Write(const void* data, int64_t nbytes) override {
    ARROW_RETURN_NOT_OK(Append(static_cast<const char*>(data), static_cast<size_t>(nbytes)));
    position_ += nbytes;
    return arrow::Status::OK();
  }

 private:
  virtual arrow::Status Append(const char* data, size_t size) = 0;

  int64_t position_ = 0;
  bool closed_ = false;
};

// Appends to a string the provider hands to the socket after each batch.
class StringSink : public ForwardingStream {
 public:
  std::string& buffer() { return buffer_; }

 private:
  arrow::Status Append(const char* data, size_t size) override {
    buffer_.append(data, size);
    return arrow::Status::OK();
  }

  std::string buffer_;
};

// Hands each write straight to the response (one chunk per write): the Arrow writer's writes
// are few per batch and large (its buffers), so nothing is copied here.
class ResponseStream : public ForwardingStream {
 public:
  // Write to `sink` from now on (the provider's sink of the current call).
  void Use(httplib::DataSink& sink) { sink_ = &sink; }

 private:
  arrow::Status Append(const char* data, size_t size) override {
    if (!sink_->write(data, size)) return arrow::Status::IOError("the client went away");
    return arrow::Status::OK();
  }

  httplib::DataSink* sink_ = nullptr;
};

// A stream whose first batch is read before the answer starts: errors of the first step (a
// corrupt file, or the checksum of a table that fits in one step) still get their status.
class PrimedStream : public TableStream {
 public:
  explicit PrimedStream(std::unique_ptr<TableStream> table)
      : table_(std::move(table)), first_(table_->Next()) {}
  std::shared_ptr<arrow::Schema> schema() const override { return table_->schema(); }
  int64_t max_rows() const override { return table_->max_rows(); }
  std::shared_ptr<arrow::RecordBatch> Next() override {
    if (primed_) {
      primed_ = false;
      return std::move(first_);
    }
    return table_->Next();
  }

 private:
  std::unique_ptr<TableStream> table_;
  std::shared_ptr<arrow::RecordBatch> first_;
  bool primed_ = true;
};

// Hand what `out` holds to the socket and empty it; false when the client went away.
bool Drain(std::string& out, httplib::DataSink& sink) {
  if (!out.empty() && !sink.write(out.data(), out.size())) return false;
  out.clear();
  return true;
}

// Run one step of a streamed answer. An error once the answer has started cannot change its
// status any more: the provider returns false, and the server ends the connection without the
// chunked encoding's last chunk (nor the format's own end: Arrow's end-of-stream marker,
// Parquet's footer, JSON's closing brace), so that no client takes it for a complete table.
template <typename Work>
bool Guarded(Work work) {
  try {
    return work();
  } catch (const Error&) {
    return false;
  }
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

void SendArrowStream(httplib::Response& res, std::unique_ptr<TableStream> table,
                     const std::string& compression) {
  auto options = arrow::ipc::IpcWriteOptions::Defaults();
  const std::string codec = compression.empty() ? "lz4" : Lower(compression);
  if (codec == "lz4" || codec == "zstd") {
    options.codec = Check(arrow::util::Codec::Create(codec == "lz4" ? arrow::Compression::LZ4_FRAME
                                                                    : arrow::Compression::ZSTD),
                          "make the " + codec + " codec");
  } else if (codec != "none") {
    throw InvalidArgument("compression must be none, lz4 or zstd, got '" + compression + "'",
                          {{"field", "compression"}, {"value", compression}});
  }
  struct State {
    std::unique_ptr<TableStream> table;
    arrow::ipc::IpcWriteOptions options;
    std::shared_ptr<ResponseStream> out = std::make_shared<ResponseStream>();
    std::shared_ptr<arrow::ipc::RecordBatchWriter> writer;
  };
  auto state = std::make_shared<State>();
  state->table = std::make_unique<PrimedStream>(std::move(table));
  state->options = options;
  res.set_chunked_content_provider(
      "application/vnd.apache.arrow.stream", [state](size_t, httplib::DataSink& sink) {
        return Guarded([&] {
          state->out->Use(sink);
          if (!state->writer) {
            state->writer = Check(
                arrow::ipc::MakeStreamWriter(state->out, state->table->schema(), state->options),
                "start the Arrow stream");
          }
          std::shared_ptr<arrow::RecordBatch> batch = state->table->Next();
          if (!batch) {
            Check(state->writer->Close(), "end the Arrow stream");
            sink.done();
            return true;
          }
          Check(state->writer->WriteRecordBatch(*batch), "write a batch");
          return true;
        });
      });
}

void SendParquet(httplib::Response& res, std::unique_ptr<TableStream> table) {
  struct State {
    std::unique_ptr<TableStream> table;
    std::shared_ptr<StringSink> out = std::make_shared<StringSink>();
    std::unique_ptr<parquet::arrow::FileWriter> writer;
  };
  auto state = std::make_shared<State>();
  state->table = std::make_unique<PrimedStream>(std::move(table));
  parquet::WriterProperties::Builder properties;
  properties.compression(parquet::Compression::SNAPPY);
  properties.max_row_group_length(kRowGroupRows);
  state->writer =
      Check(parquet::arrow::FileWriter::Open(*state->table->schema(), arrow::default_memory_pool(),
                                             state->out, properties.build()),
            "start the Parquet file");
  res.set_chunked_content_provider(
      "application/vnd.apache.parquet", [state](size_t, httplib::DataSink& sink) {
        return Guarded([&] {
          std::shared_ptr<arrow::RecordBatch> batch = state->table->Next();
          if (batch) {
            auto part = Check(arrow::Table::FromRecordBatches({batch}), "make a row group");
            Check(state->writer->WriteTable(*part, kRowGroupRows), "write a row group");
          } else {
            Check(state->writer->Close(), "end the Parquet file");
          }
          if (!Drain(state->out->buffer(), sink)) return false;
          if (!batch) sink.done();
          return true;
        });
      });
}

void SendJsonTable(httplib::Response& res, std::unique_ptr<TableStream> table,
                   const TableOpener& open) {
  if (table->max_rows() > kMaxJsonRows) {
    throw InvalidArgument("the table has " + std::to_string(table->max_rows()) +
                              " rows, more than JSON is sent for (" + std::to_string(kMaxJsonRows) +
                              "): ask for format=arrow or parquet, or narrow from/to",
                          {{"rows", std::to_string(table->max_rows())}});
  }
  // Columns are arrays, so the answer is written one column at a time: the first from the
  // stream opened for the request (for a whole table, the one that checks the checksum), each
  // other from a read of that column alone. The server holds one step of one read at a time.
  struct State {
    std::unique_ptr<TableStream> table;
    std::vector<std::string> columns;
    size_t column = 0;
    int column_index = 0;  // of that column in table's schema
    bool started = false;  // its name and '[' are written
    int64_t written = 0;   // its values written
    int64_t rows = 0;
    std::string out;
  };
  auto state = std::make_shared<State>();
  for (const auto& field : table->schema()->fields()) state->columns.push_back(field->name());
  state->table = std::make_unique<PrimedStream>(std::move(table));
  state->out = "{\"columns\":" + wire::Json(state->columns).dump() + ",\"data\":{";
  res.set_chunked_content_provider(
      "application/json", [state, open](size_t, httplib::DataSink& sink) {
        return Guarded([&] {
          State& s = *state;
          if (!s.table) {
            s.table = open({s.columns[s.column]});
          }
          if (!s.started) {
            s.column_index = s.table->schema()->GetFieldIndex(s.columns[s.column]);
            if (s.column_index < 0) {
              throw InvalidResult("column " + s.columns[s.column] + " is no longer in the table");
            }
            s.out += (s.column == 0 ? "" : ",") + wire::Json(s.columns[s.column]).dump() + ":[";
            s.started = true;
            s.written = 0;
          }
          std::shared_ptr<arrow::RecordBatch> batch = s.table->Next();
          if (batch) {
            const arrow::Array& array = *batch->column(s.column_index);
            for (int64_t row = 0; row < array.length(); ++row) {
              if (s.written++ > 0) s.out += ',';
              s.out += CellJson(array, row).dump();
            }
            if (s.column == 0) s.rows += array.length();
            return Drain(s.out, sink);
          }
          s.out += ']';
          s.table = nullptr;
          s.started = false;
          if (++s.column < s.columns.size()) return Drain(s.out, sink);
          s.out += "},\"rows\":" + std::to_string(s.rows) + "}";
          if (!Drain(s.out, sink)) return false;
          sink.done();
          return true;
        });
      });
}

wire::Json ChartSeries(JobService& jobs, const std::string& job_id, bool with_weights) {
  ReadOptions options;
  options.tables = {std::string(kIcTable)};
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
  if (with_weights) {
    // Coverage per date: how many names hold a nonzero weight. Rows are sorted by date; the
    // weights are streamed, since for a large result they are the largest table.
    ReadOptions weights_options;
    weights_options.columns = {"weight"};
    std::unique_ptr<TableStream> weights =
        jobs.OpenTable(job_id, std::string(kWeightsTable), weights_options);
    wire::Json coverage_dates = wire::Json::array(), names = wire::Json::array();
    std::optional<int32_t> day;
    int64_t count = 0;
    while (std::shared_ptr<arrow::RecordBatch> batch = weights->Next()) {
      const auto& wdate = static_cast<const arrow::Date32Array&>(*batch->column(0));
      const auto& weight =
          static_cast<const arrow::DoubleArray&>(*batch->GetColumnByName("weight"));
      for (int64_t row = 0; row < batch->num_rows(); ++row) {
        if (day && wdate.Value(row) != *day) {
          coverage_dates.push_back(Date{*day}.ToString());
          names.push_back(count);
          count = 0;
        }
        day = wdate.Value(row);
        if (!weight.IsNull(row) && weight.Value(row) != 0.0) ++count;
      }
    }
    if (day) {
      coverage_dates.push_back(Date{*day}.ToString());
      names.push_back(count);
    }
    doc["weights_dates"] = coverage_dates;
    doc["weights_names"] = names;
  }
  return doc;
}

}  // namespace btstore::http::internal
