#pragma once
// Pieces of the HTTP front end shared by its files: who is calling, and the table encoders.

#include <httplib.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "btstore/bundle.h"
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

/// Send `table` as an Arrow IPC stream, batch by batch from a chunked content provider as the
/// stream decodes them, with the buffers compressed by `compression` ("lz4", also when empty:
/// the fastest way into pyarrow and polars measured, see docs/PERFORMANCE.md case 11; "zstd";
/// "none" for a reader without IPC buffer compression). An error once the answer has started
/// ends the connection without the stream's end.
/// Throws InvalidArgument for an unknown compression.
void SendArrowStream(httplib::Response& res, std::unique_ptr<TableStream> table,
                     const std::string& compression);
/// Send `table` as one Parquet file (snappy), written row group by row group as the stream
/// decodes them. An error once the answer has started ends the connection without the footer.
/// Throws InternalError when the writer cannot start.
void SendParquet(httplib::Response& res, std::unique_ptr<TableStream> table);
/// Open the request's table again with only `columns` (besides `date`).
using TableOpener =
    std::function<std::unique_ptr<TableStream>(const std::vector<std::string>& columns)>;
/// Send `table` as `{"columns": [...], "data": {name: [values...]}, "rows": N}` (dates ISO,
/// non-finite floats null), one column at a time: the first from `table`, the others from
/// `open`. An error once the answer has started ends the connection without the closing brace.
/// Throws InvalidArgument when the table may have more than kMaxJsonRows rows.
void SendJsonTable(httplib::Response& res, std::unique_ptr<TableStream> table,
                   const TableOpener& open);
/// The most rows a table is sent as JSON (Arrow or Parquet has no bound); for a date range the
/// rows of the row groups it selects count.
inline constexpr int64_t kMaxJsonRows = 1'000'000;

/// Return a completed job's chart series: dates, ic, rank_ic, cumulative_ic from daily_ic, and
/// per date the number of nonzero weights (weights coverage). Throws as JobService::GetResult.
wire::Json ChartSeries(JobService& jobs, const std::string& job_id, bool with_weights);

}  // namespace btstore::http::internal
