#pragma once
/// The wire layer shared by every front end (the command line's --json, and next an HTTP server
/// and a Python module): jobs, pages, results, reports and errors to JSON in the contract's
/// shapes (sections 6 and 7), requests parsed from strings (list filters, cursors, read
/// options, configs), and the mapping of errors to codes, exit statuses and HTTP statuses.

#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "btstore/model.h"

namespace btstore::wire {

using Json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Values to JSON

/// Return a metric as JSON: a number, or null when not finite.
Json MetricJson(double value);
/// Return every metric under its name (Metrics::kNames), null when not finite.
Json MetricsJson(const Metrics& metrics);

/// Return a JSON column of the catalog (config_json, dataset_version_ids, cost_config,
/// cost_summary) parsed: null when absent, the text itself when it does not parse as JSON.
Json JsonColumn(const std::optional<std::string>& text);
/// Return the job's catalog fields under their column names (contract section 2, then
/// btstore's columns); dates ISO, times RFC 3339 UTC, metrics null when not finite, JSON columns
/// parsed (shown as text when they do not parse).
Json JobJson(const JobRecord& job);
/// Return the names JobJson writes, in the contract's column order then btstore's: the order in
/// which people read them.
const std::vector<std::string>& JobFieldOrder();
/// Return a page of jobs: `{"jobs": [JobJson...], "next": CURSOR-or-null}`.
Json PageJson(const JobPage& page);
/// Return PageJson(page) as compact JSON text (its dump(), byte for byte), written straight
/// from the records without building the tree: the list route's answer.
std::string PageText(const JobPage& page);
/// Append JobJson(job)'s compact text to `out`, as PageText writes each job.
void AppendJobText(std::string& out, const JobRecord& job);
/// Return a submission's outcome: `{"job_id", "created", "status"}`.
Json SubmitJson(const SubmitResult& submitted);
/// Return an import's outcome: `{"job_id", "created", "status", "result_path"}`.
Json ImportJson(const SubmitResult& imported);
/// Return `show`'s document: JobJson plus, for a completed job, its summary.json as `summary`
/// (or `summary: null` and `summary_error: {"code", "message"}` when it cannot be read: the
/// catalog fields stay useful). Throws what JobService throws for the catalog.
Json ShowJson(JobService& jobs, const JobRecord& job);

/// Return a loaded table's row count and column names: `{"rows", "columns"}`.
Json TableJson(const std::shared_ptr<arrow::Table>& table);
/// Return a loaded result: `{"job_id", <metrics>, "snapshot_id", "dataset_version_ids",
/// "tables": {name: TableJson}, "artifacts": {name: {"available": true[, "document": {...}]} or
/// {"available": false, "error": {"code", "message"}}}, "from", "to", "bytes_read",
/// "row_groups_read", "row_groups_skipped"}`. An artifact's document is included when it was
/// asked for by name (`options.tables`).
Json ResultJson(std::string_view job_id, const BacktestResult& result, const ReadOptions& options,
                const ReadStats& stats);
/// Return a bundle's summary as btstore understood it: identity, reproducibility keys, metrics
/// and the keys it keeps without knowing them (`extra`).
Json SummaryJson(const BacktestResult& result);
/// Return a manifest: `{file: {"rows", "bytes", "checksum"}}`.
Json ManifestJson(const std::map<std::string, ArtifactInfo>& manifest);
/// Return a retention report: `{"removed", "job_ids", "dry_run", "retention_days"}`.
Json RetentionJson(const RetentionReport& report, int retention_days);
/// Return the name of a verify problem: "invalid_bundle", "missing_bundle", "orphan_bundle".
std::string_view ProblemKindName(VerifyProblem::Kind kind);
/// Return a verify report: `{"checked", "ok", "problems": [{"kind", "job_id", "path",
/// "error_code", "message"}]}`.
Json VerifyJson(const VerifyReport& report);

// ---------------------------------------------------------------------------------------------
// Errors

/// An error as every front end reports it.
struct Failure {
  ErrorCode code = ErrorCode::kInternal;  ///< the contract's name (ErrorCodeName)
  std::string message;                    ///< what happened and what to do
  ErrorDetails details;                   ///< structured facts (job_id, path, field, ...)
  int exit_status = 1;                    ///< the command line's exit status (contract section 6)
  int http_status = 500;                  ///< the HTTP status (contract section 6)
};

/// Return the failure of `code` with `message` and `details`.
Failure MakeFailure(ErrorCode code, std::string message, ErrorDetails details = {});
/// Return the failure an exception means: a btstore::Error keeps its code and details; any
/// other exception is Internal. Front ends catch once, at the top, and call this.
Failure Classify(const std::exception& error);
/// Return the contract's error envelope:
/// `{"error": {"code": NAME, "message": ..., "details": {...}}}`.
Json ErrorJson(const Failure& failure);

// ---------------------------------------------------------------------------------------------
// Requests from strings

/// Parse JSON text as written by btstore or by Python's json module (whose bare tokens NaN,
/// Infinity and -Infinity become null). Throws InvalidArgument naming `what`.
Json ParseLenientJson(const std::string& text, const std::string& what);

/// Parse a job's config given as text: it must be a JSON object. Returns it compact.
/// Throws InvalidArgument naming `what`.
std::string ParseConfigText(const std::string& text, const std::string& what);

/// Return the non-empty parts of a comma-separated list ("a,,b" gives {"a", "b"}).
std::vector<std::string> SplitList(const std::string& text);

/// How a front end names a request field in its messages: the command line says "--created-from"
/// for the field "created_from", an HTTP API "created_from".
using FieldNamer = std::function<std::string(std::string_view field)>;
/// Return the command line's flag for a field: "--" and the field with '-' for '_'.
std::string FlagName(std::string_view field);

/// A list request: a filter and a page.
struct ListRequest {
  JobFilter filter;  ///< which jobs
  PageRequest page;  ///< which page of them
};

/// Parse a list request from its fields as text (flags or query parameters): `user`, `alpha`,
/// `status` (comma separated), `created_from`, `created_to` (a date or an RFC 3339 timestamp),
/// `from`, `to` (dates: the backtest range overlaps them), `min_mean_ic`, `min_icir`,
/// `min_hit_rate` (numbers), `limit`, `offset` (integers), `after` (a cursor) and `engine`
/// (engine names, comma separated). An empty
/// value is absent. The request is checked as the catalog would (ValidateListRequest).
/// Throws InvalidArgument naming the field by `name_of`, also for an unknown field.
ListRequest ParseListRequest(const std::map<std::string, std::string>& fields,
                             const FieldNamer& name_of);

/// Parse what to read of a result from text: `from`, `to` (dates, inclusive), `columns` and
/// `tables` (comma separated); empty values are absent. Throws InvalidArgument naming the field
/// by `name_of` (also when from is after to).
ReadOptions ParseReadRequest(const std::string& from, const std::string& to,
                             const std::string& columns, const std::string& tables,
                             const FieldNamer& name_of);

}  // namespace btstore::wire
