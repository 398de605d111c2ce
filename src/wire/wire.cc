// The wire layer: JSON shapes of the contract, requests from strings, errors for front ends.

#include "btstore/wire.h"

#include <arrow/table.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <sstream>

namespace btstore::wire {

namespace {

Json OptionalTime(const std::optional<Timestamp>& ts) {
  return ts ? Json(FormatTimestamp(*ts)) : Json(nullptr);
}

Json OptionalText(const std::optional<std::string>& text) {
  return text ? Json(*text) : Json(nullptr);
}

Json OptionalDate(const std::optional<Date>& date) {
  return date ? Json(date->ToString()) : Json(nullptr);
}

// The fields of a list request, and whether each is a number.
const std::set<std::string, std::less<>>& ListFields() {
  static const std::set<std::string, std::less<>> kFields = {
      "user",  "alpha",       "status",   "created_from", "created_to", "from",   "to",
      "after", "min_mean_ic", "min_icir", "min_hit_rate", "limit",      "offset", "engine"};
  return kFields;
}

[[noreturn]] void BadNumber(const std::string& name, const std::string& text) {
  throw InvalidArgument(name + " must be a number, got '" + text + "'",
                        {{"field", name}, {"value", text}});
}

template <typename T>
T ParseNumber(const std::string& text, const std::string& name) {
  T value{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) BadNumber(name, text);
  return value;
}

}  // namespace

// Text that does not parse (written by another tool), or that is nested deeper than JSON code
// may recurse, is shown as it is rather than hidden.
Json JsonColumn(const std::optional<std::string>& text) {
  if (!text) return nullptr;
  if (JsonNestingDepth(*text) > kMaxJsonDepth) return *text;
  Json parsed = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  return parsed.is_discarded() ? Json(*text) : parsed;
}

Json MetricJson(double value) { return std::isfinite(value) ? Json(value) : Json(nullptr); }

Json MetricsJson(const Metrics& metrics) {
  Json out = Json::object();
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    out[std::string(Metrics::kNames[i])] = MetricJson(metrics.At(i));
  }
  return out;
}

Json JobJson(const JobRecord& job) {
  Json doc = {
      {"id", job.id},
      {"job_id", job.job_id},
      {"status", ToString(job.status)},
      {"alpha_name", job.alpha_name},
      {"start_date", job.start_date.ToString()},
      {"end_date", job.end_date.ToString()},
      {"weight_method", job.weight_method},
      {"config_json", JsonColumn(job.config_json)},
      {"created_at", FormatTimestamp(job.created_at)},
      {"started_at", OptionalTime(job.started_at)},
      {"completed_at", OptionalTime(job.completed_at)},
      {"worker_id", OptionalText(job.worker_id)},
      {"progress_pct", job.progress_pct},
      {"job_timeout", job.job_timeout_seconds},
      {"result_path", OptionalText(job.result_path)},
  };
  doc.update(MetricsJson(job.metrics));
  doc["snapshot_id"] = OptionalText(job.snapshot_id);
  doc["dataset_version_ids"] = JsonColumn(job.dataset_version_ids_json);
  doc["error_message"] = OptionalText(job.error_message);
  doc["retry_count"] = job.retry_count;
  doc["created_by"] = job.created_by;
  doc["cost_config"] = JsonColumn(job.cost_config_json);
  doc["cost_summary"] = JsonColumn(job.cost_summary_json);
  doc["priority"] = ToString(job.priority);
  doc["max_retries"] = job.max_retries;
  doc["attempt"] = job.attempt;
  doc["cancel_requested"] = job.cancel_requested;
  doc["heartbeat_at"] = OptionalTime(job.heartbeat_at);
  doc["lease_expires_at"] = OptionalTime(job.lease_expires_at);
  doc["run_after"] = OptionalTime(job.run_after);
  doc["checkpoint_path"] = OptionalText(job.checkpoint_path);
  doc["pinned"] = job.pinned;
  doc["expiring_at"] = OptionalTime(job.expiring_at);
  doc["engine"] = job.engine;
  return doc;
}

const std::vector<std::string>& JobFieldOrder() {
  // The catalog's columns in their order, with the job_id first: it names the job for people.
  static const std::vector<std::string> kOrder = [] {
    std::vector<std::string> order = {"job_id"};
    for (std::string_view column : kJobColumns) {
      if (column != "job_id") order.emplace_back(column);
    }
    return order;
  }();
  return kOrder;
}

Json PageJson(const JobPage& page) {
  Json jobs = Json::array();
  for (const JobRecord& job : page.jobs) jobs.push_back(JobJson(job));
  return {{"jobs", jobs}, {"next", page.next ? Json(*page.next) : Json(nullptr)}};
}

Json SubmitJson(const SubmitResult& submitted) {
  return {{"job_id", submitted.job.job_id},
          {"created", submitted.created},
          {"status", ToString(submitted.job.status)}};
}

Json ImportJson(const SubmitResult& imported) {
  Json doc = SubmitJson(imported);
  doc["result_path"] = OptionalText(imported.job.result_path);
  return doc;
}

Json ShowJson(JobService& jobs, const JobRecord& job) {
  Json doc = JobJson(job);
  if (job.status != JobStatus::kCompleted) return doc;
  // A broken bundle is reported instead of failing: the catalog fields are still useful, and
  // `result` / `verify` give the error with its exit status.
  try {
    const std::string text = jobs.ReadSummaryText(job);
    try {
      doc["summary"] = ParseLenientJson(text, "summary.json");
    } catch (const InvalidArgument&) {
      throw MissingReproducibilityMetadata("summary.json is not valid JSON",
                                           {{"path", job.result_path.value_or("")}});
    }
  } catch (const Error& e) {
    doc["summary"] = nullptr;
    doc["summary_error"] = {{"code", ErrorCodeName(e.code())}, {"message", e.what()}};
  }
  return doc;
}

Json TableJson(const std::shared_ptr<arrow::Table>& table) {
  Json columns = Json::array();
  if (table) {
    for (const auto& field : table->schema()->fields()) columns.push_back(field->name());
  }
  return {{"rows", table ? table->num_rows() : int64_t{0}}, {"columns", columns}};
}

Json ResultJson(std::string_view job_id, const BacktestResult& result, const ReadOptions& options,
                const ReadStats& stats) {
  Json tables = Json::object();
  if (result.daily_signals) tables[std::string(kSignalsTable)] = TableJson(result.daily_signals);
  if (result.daily_weights) tables[std::string(kWeightsTable)] = TableJson(result.daily_weights);
  if (result.daily_ic) tables[std::string(kIcTable)] = TableJson(result.daily_ic);
  for (const auto& [name, table] : result.extra_tables) tables[name] = TableJson(table);
  Json doc = {{"job_id", job_id}};
  doc.update(MetricsJson(result.metrics));
  doc["snapshot_id"] = result.snapshot_id;
  doc["dataset_version_ids"] = result.dataset_version_ids;
  doc["tables"] = tables;
  Json artifacts = Json::object();
  for (const auto& [name, text] : result.json_artifacts) {
    Json entry = {{"available", true}};
    if (std::find(options.tables.begin(), options.tables.end(), name) != options.tables.end()) {
      entry["document"] = Json::parse(text);
    }
    artifacts[name] = entry;
  }
  for (const auto& [file, message] : result.unavailable) {
    const std::string name = file.substr(0, file.rfind('.'));
    artifacts[name] = {
        {"available", false},
        {"error", {{"code", ErrorCodeName(ErrorCode::kInvalidResult)}, {"message", message}}}};
  }
  doc["artifacts"] = artifacts;
  doc["from"] = OptionalDate(options.from);
  doc["to"] = OptionalDate(options.to);
  doc["bytes_read"] = stats.bytes_read;
  doc["row_groups_read"] = stats.row_groups_read;
  doc["row_groups_skipped"] = stats.row_groups_skipped;
  return doc;
}

Json SummaryJson(const BacktestResult& r) {
  return {{"job_id", r.job_id},
          {"alpha_name", r.alpha_name},
          {"start_date", OptionalDate(r.start_date)},
          {"end_date", OptionalDate(r.end_date)},
          {"weight_method", r.weight_method},
          {"config_hash", r.config_hash},
          {"snapshot_id", r.snapshot_id},
          {"dataset_version_ids", r.dataset_version_ids},
          {"metrics", MetricsJson(r.metrics)},
          {"extra", Json::parse(r.extra_summary_json)}};
}

Json ManifestJson(const std::map<std::string, ArtifactInfo>& manifest) {
  Json files = Json::object();
  for (const auto& [file, info] : manifest) {
    files[file] = {{"rows", info.rows}, {"bytes", info.bytes}, {"checksum", info.checksum}};
  }
  return files;
}

Json RetentionJson(const RetentionReport& report, int retention_days) {
  return {{"removed", report.removed},
          {"job_ids", report.job_ids},
          {"dry_run", report.dry_run},
          {"retention_days", retention_days}};
}

std::string_view ProblemKindName(VerifyProblem::Kind kind) {
  switch (kind) {
    case VerifyProblem::Kind::kInvalidBundle:
      return "invalid_bundle";
    case VerifyProblem::Kind::kMissingBundle:
      return "missing_bundle";
    case VerifyProblem::Kind::kOrphanBundle:
      return "orphan_bundle";
  }
  return "unknown";
}

Json VerifyJson(const VerifyReport& report) {
  Json problems = Json::array();
  for (const VerifyProblem& problem : report.problems) {
    problems.push_back(
        {{"kind", ProblemKindName(problem.kind)},
         {"job_id", problem.job_id.empty() ? Json(nullptr) : Json(problem.job_id)},
         {"path", problem.path},
         {"error_code", problem.error_code.empty() ? Json(nullptr) : Json(problem.error_code)},
         {"message", problem.message}});
  }
  return {{"checked", report.checked}, {"ok", report.problems.empty()}, {"problems", problems}};
}

// Every error a front end reports passes here: passwords of connection strings are hidden
// whichever layer put them in the message or the details.
Failure MakeFailure(ErrorCode code, std::string message, ErrorDetails details) {
  for (auto& [key, value] : details) value = RedactCredentials(value);
  return {code, RedactCredentials(message), std::move(details), ExitStatus(code),
          HttpStatus(code)};
}

Failure Classify(const std::exception& error) {
  if (const auto* known = dynamic_cast<const Error*>(&error)) {
    return MakeFailure(known->code(), known->what(), known->details());
  }
  return MakeFailure(ErrorCode::kInternal, error.what());
}

Json ErrorJson(const Failure& failure) {
  Json details = Json::object();
  for (const auto& [key, value] : failure.details) details[key] = value;
  return {{"error",
           {{"code", ErrorCodeName(failure.code)},
            {"message", failure.message},
            {"details", details}}}};
}

Json ParseLenientJson(const std::string& text, const std::string& what) {
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    throw InvalidArgument(
        what + " is nested more than " + std::to_string(kMaxJsonDepth) + " levels deep",
        {{"what", what}});
  }
  Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_discarded()) return doc;
  // Python's json module writes NaN/Infinity/-Infinity as bare tokens; outside strings they
  // become null, which is what btstore itself writes for a non-finite metric.
  doc = Json::parse(ReplaceNonFiniteTokens(text), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) throw InvalidArgument(what + " is not valid JSON", {{"what", what}});
  return doc;
}

std::string ParseConfigText(const std::string& text, const std::string& what) {
  // Size, encoding and depth are checked before the text is parsed and written out again.
  ValidateConfigJson(text);
  Json config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    throw InvalidArgument(what + " must be a JSON object", {{"flag", what}, {"value", text}});
  }
  return config.dump();
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

std::string FlagName(std::string_view field) {
  std::string flag = "--" + std::string(field);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

ListRequest ParseListRequest(const std::map<std::string, std::string>& fields,
                             const FieldNamer& name_of) {
  ListRequest request;
  JobFilter& filter = request.filter;
  PageRequest& page = request.page;
  for (const auto& [field, value] : fields) {
    if (!ListFields().contains(field)) {
      throw InvalidArgument("unknown list parameter " + name_of(field), {{"field", field}});
    }
    if (value.empty()) continue;
    const std::string name = name_of(field);
    if (field == "user") {
      filter.created_by = value;
    } else if (field == "alpha") {
      filter.alpha_name = value;
    } else if (field == "status") {
      for (const std::string& status : SplitList(value)) {
        filter.statuses.push_back(ParseJobStatus(status));
      }
    } else if (field == "created_from") {
      filter.created_from = ParseTimestamp(value, name);
    } else if (field == "created_to") {
      filter.created_to = ParseTimestampUpperBound(value, name);
    } else if (field == "from") {
      filter.range_from = Date::Parse(value, name);
    } else if (field == "to") {
      filter.range_to = Date::Parse(value, name);
    } else if (field == "min_mean_ic") {
      filter.min_mean_ic = ParseNumber<double>(value, name);
    } else if (field == "min_icir") {
      filter.min_icir = ParseNumber<double>(value, name);
    } else if (field == "min_hit_rate") {
      filter.min_hit_rate = ParseNumber<double>(value, name);
    } else if (field == "limit") {
      page.limit = ParseNumber<int>(value, name);
    } else if (field == "offset") {
      page.offset = ParseNumber<int64_t>(value, name);
    } else if (field == "after") {
      page.after = value;
    } else if (field == "engine") {
      filter.engines = SplitList(value);
    }
  }
  ValidateListRequest(filter, page);
  return request;
}

ReadOptions ParseReadRequest(const std::string& from, const std::string& to,
                             const std::string& columns, const std::string& tables,
                             const FieldNamer& name_of) {
  ReadOptions options;
  if (!from.empty()) options.from = Date::Parse(from, name_of("from"));
  if (!to.empty()) options.to = Date::Parse(to, name_of("to"));
  if (options.from && options.to && *options.from > *options.to) {
    throw InvalidArgument(name_of("from") + " is after " + name_of("to"),
                          {{"from", from}, {"to", to}});
  }
  options.columns = SplitList(columns);
  options.tables = SplitList(tables);
  return options;
}

}  // namespace btstore::wire
