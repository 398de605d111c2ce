#pragma once
// Pieces of the HTTP front end shared by its files: who is calling, and the table encoders.

#include <httplib.h>

#include <memory>
#include <string>

#include "btstore/model.h"
#include "btstore/service.h"
#include "btstore/wire.h"

namespace arrow {
class Table;
}  // namespace arrow

namespace btstore::http::internal {

/// Who a request acts as.
struct Caller {
  std::string user;
  Role role = Role::kReader;
};

/// How a table is sent.
enum class TableFormat { kArrow, kParquet, kJson };

/// Return the format a request asks for: `format` (arrow, parquet, json) when given, else by its
/// Accept header, else Arrow. Throws InvalidArgument for an unknown format.
TableFormat ChooseTableFormat(const httplib::Request& req);

/// Send `table` as an Arrow IPC stream, batch by batch from a chunked content provider, with
/// the buffers compressed by `compression` ("", "lz4" or "zstd"). Throws InvalidArgument for an
/// unknown compression.
void SendArrowStream(httplib::Response& res, std::shared_ptr<arrow::Table> table,
                     const std::string& compression);
/// Send `table` as one Parquet file (snappy). Throws InternalError when it cannot be written.
void SendParquet(httplib::Response& res, const std::shared_ptr<arrow::Table>& table);
/// Return `table` as `{"columns": [...], "rows": N, "data": {name: [values...]}}` (dates ISO,
/// non-finite floats null). Throws InvalidArgument above kMaxJsonRows rows.
wire::Json TableToJson(const std::shared_ptr<arrow::Table>& table);
/// The most rows a table is sent as JSON (Arrow or Parquet has no bound).
inline constexpr int64_t kMaxJsonRows = 1'000'000;

/// Return a completed job's chart series: dates, ic, rank_ic, cumulative_ic from daily_ic, and
/// per date the number of nonzero weights (weights coverage). Throws as JobService::GetResult.
wire::Json ChartSeries(JobService& jobs, const std::string& job_id, bool with_weights);

}  // namespace btstore::http::internal
