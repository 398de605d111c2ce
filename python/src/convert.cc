#include "convert.h"

#include <arrow/table.h>
#include <nanobind/stl/string.h>

#include <array>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "btstore/wire.h"

#include "arrow_bridge.h"

namespace nb = nanobind;

namespace btstore::python {
namespace {

nb::object Text(const std::optional<std::string>& text) {
  return text ? nb::object(nb::str(text->data(), text->size())) : nb::none();
}

nb::object Time(const std::optional<Timestamp>& time) {
  return time ? nb::object(nb::str(FormatTimestamp(*time).c_str())) : nb::none();
}

// A parsed JSON value as the Python value json.loads gives for the same text.
nb::object JsonToPython(const wire::Json& value) {
  switch (value.type()) {
    case wire::Json::value_t::null:
      return nb::none();
    case wire::Json::value_t::boolean:
      return nb::bool_(value.get<bool>());
    case wire::Json::value_t::number_integer:
      return nb::int_(value.get<int64_t>());
    case wire::Json::value_t::number_unsigned:
      return nb::steal(PyLong_FromUnsignedLongLong(value.get<uint64_t>()));
    case wire::Json::value_t::number_float:
      return nb::float_(value.get<double>());
    case wire::Json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      return nb::str(text.data(), text.size());
    }
    case wire::Json::value_t::array: {
      nb::list list;
      for (const wire::Json& item : value) list.append(JsonToPython(item));
      return list;
    }
    case wire::Json::value_t::object: {
      nb::dict dict;
      for (const auto& [key, item] : value.items()) {
        dict[nb::str(key.data(), key.size())] = JsonToPython(item);
      }
      return dict;
    }
    default:  // binary and discarded values do not come out of parsing text
      return nb::none();
  }
}

nb::object JsonColumn(const std::optional<std::string>& text) {
  return JsonToPython(wire::JsonColumn(text));
}

// The keys of a job dict, interned once: every page of every listing reuses them, and an
// interned key's hash is computed once.
enum JobKey : size_t {
  kId, kJobId, kStatus, kAlphaName, kStartDate, kEndDate, kWeightMethod, kConfigJson,
  kCreatedAt, kStartedAt, kCompletedAt, kWorkerId, kProgressPct, kJobTimeout, kResultPath,
  kSnapshotId, kDatasetVersionIds, kErrorMessage, kRetryCount, kCreatedBy, kCostConfig,
  kCostSummary, kPriority, kMaxRetries, kAttempt, kCancelRequested, kHeartbeatAt,
  kLeaseExpiresAt, kRunAfter, kCheckpointPath, kPinned, kExpiringAt, kEngine, kJobKeyCount
};
constexpr std::array<const char*, kJobKeyCount> kJobKeyNames = {
    "id", "job_id", "status", "alpha_name", "start_date", "end_date", "weight_method",
    "config_json", "created_at", "started_at", "completed_at", "worker_id", "progress_pct",
    "job_timeout", "result_path", "snapshot_id", "dataset_version_ids", "error_message",
    "retry_count", "created_by", "cost_config", "cost_summary", "priority", "max_retries",
    "attempt", "cancel_requested", "heartbeat_at", "lease_expires_at", "run_after",
    "checkpoint_path", "pinned", "expiring_at", "engine"};

// Interned strings live as long as the interpreter; the references are kept, never released.
PyObject* InternedKey(std::string_view name) {
  return PyUnicode_InternFromString(std::string(name).c_str());
}

const std::array<PyObject*, kJobKeyCount>& JobKeys() {
  static const std::array<PyObject*, kJobKeyCount> keys = [] {
    std::array<PyObject*, kJobKeyCount> made{};
    for (size_t i = 0; i < kJobKeyCount; ++i) made[i] = InternedKey(kJobKeyNames[i]);
    return made;
  }();
  return keys;
}

const std::array<PyObject*, Metrics::kNames.size()>& MetricKeys() {
  static const std::array<PyObject*, Metrics::kNames.size()> keys = [] {
    std::array<PyObject*, Metrics::kNames.size()> made{};
    for (size_t i = 0; i < made.size(); ++i) made[i] = InternedKey(Metrics::kNames[i]);
    return made;
  }();
  return keys;
}

// Return dict[key], or an empty handle when it is absent or None.
nb::object Get(nb::handle dict, const char* key) {
  nb::dict d = nb::borrow<nb::dict>(dict);
  if (!d.contains(key)) return nb::object();
  nb::object value = d[key];
  if (value.is_none()) return nb::object();
  return value;
}

std::string ToText(nb::handle value, const std::string& field) {
  if (!nb::isinstance<nb::str>(value)) {
    throw InvalidArgument(field + " must be a string", {{"field", field}});
  }
  return nb::cast<std::string>(value);
}

double ToMetric(nb::handle value, const std::string& field) {
  if (value.is_none()) return Metrics::kMissing;
  try {
    return nb::cast<double>(value);
  } catch (const nb::cast_error&) {
    throw InvalidArgument(field + " must be a number or None", {{"field", field}});
  }
}

}  // namespace

void FillResult(nb::handle dict, BacktestResult& result) {
  if (!nb::isinstance<nb::dict>(dict)) throw InvalidArgument("a result must be a dict");
  if (nb::object tables = Get(dict, "tables")) {
    for (auto [key, value] : nb::borrow<nb::dict>(tables)) {
      const std::string name = ToText(key, "table name");
      std::shared_ptr<arrow::Table> table = CapsuleToTable(value, name);
      if (name == kSignalsTable) {
        result.daily_signals = std::move(table);
      } else if (name == kWeightsTable) {
        result.daily_weights = std::move(table);
      } else if (name == kIcTable) {
        result.daily_ic = std::move(table);
      } else {
        result.extra_tables[name] = std::move(table);
      }
    }
  }
  if (nb::object metrics = Get(dict, "metrics")) {
    for (auto [key, value] : nb::borrow<nb::dict>(metrics)) {
      const std::string name = ToText(key, "metric name");
      size_t i = 0;
      while (i < Metrics::kNames.size() && Metrics::kNames[i] != name) ++i;
      if (i == Metrics::kNames.size()) {
        throw InvalidArgument("unknown metric '" + name + "'", {{"field", "metrics"}});
      }
      result.metrics.At(i) = ToMetric(value, name);
    }
  }
  if (nb::object snapshot = Get(dict, "snapshot_id")) {
    result.snapshot_id = ToText(snapshot, "snapshot_id");
  }
  if (nb::object ids = Get(dict, "dataset_version_ids")) {
    if (!nb::isinstance<nb::dict>(ids)) {
      throw InvalidArgument("dataset_version_ids must be a dict of str to str",
                            {{"field", "dataset_version_ids"}});
    }
    for (auto [key, value] : nb::borrow<nb::dict>(ids)) {
      result.dataset_version_ids[ToText(key, "dataset_version_ids")] =
          ToText(value, "dataset_version_ids");
    }
  }
  if (nb::object artifacts = Get(dict, "json_artifacts")) {
    for (auto [key, value] : nb::borrow<nb::dict>(artifacts)) {
      const std::string name = ToText(key, "artifact name");
      if (!IsJsonArtifact(name)) {
        throw InvalidArgument("unknown JSON artifact '" + name + "' (walk_forward, param_search)",
                              {{"field", name}});
      }
      result.json_artifacts[name] = NormalizeJsonArtifact(name, ToText(value, name));
    }
  }
  if (nb::object extra = Get(dict, "extra_summary")) {
    result.extra_summary_json = ToText(extra, "extra_summary");
  }
}

nb::dict ResultToDict(const BacktestResult& result) {
  nb::dict out;
  out["job_id"] = result.job_id;
  out["alpha_name"] = result.alpha_name;
  out["start_date"] = result.start_date ? nb::cast(result.start_date->ToString()) : nb::none();
  out["end_date"] = result.end_date ? nb::cast(result.end_date->ToString()) : nb::none();
  out["weight_method"] = result.weight_method;
  out["config_hash"] = result.config_hash;
  nb::dict tables;
  if (result.daily_signals)
    tables[std::string(kSignalsTable).c_str()] = TableToCapsule(result.daily_signals);
  if (result.daily_weights)
    tables[std::string(kWeightsTable).c_str()] = TableToCapsule(result.daily_weights);
  if (result.daily_ic) tables[std::string(kIcTable).c_str()] = TableToCapsule(result.daily_ic);
  for (const auto& [name, table] : result.extra_tables) {
    if (table) tables[name.c_str()] = TableToCapsule(table);
  }
  out["tables"] = tables;
  nb::dict metrics;
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    metrics[std::string(Metrics::kNames[i]).c_str()] = result.metrics.At(i);
  }
  out["metrics"] = metrics;
  out["snapshot_id"] = result.snapshot_id;
  nb::dict ids;
  for (const auto& [name, version] : result.dataset_version_ids) ids[name.c_str()] = version;
  out["dataset_version_ids"] = ids;
  nb::dict artifacts;
  for (const auto& [name, text] : result.json_artifacts) artifacts[name.c_str()] = text;
  out["json_artifacts"] = artifacts;
  nb::dict unavailable;
  for (const auto& [name, why] : result.unavailable) unavailable[name.c_str()] = why;
  out["unavailable"] = unavailable;
  out["extra_summary"] = result.extra_summary_json;
  return out;
}

JobSpec SpecFromDict(nb::handle dict) {
  JobSpec spec;
  auto text = [&](const char* key, std::string& into) {
    if (nb::object v = Get(dict, key)) into = ToText(v, key);
  };
  auto integer = [&](const char* key, int& into) {
    if (nb::object v = Get(dict, key)) {
      try {
        into = nb::cast<int>(v);
      } catch (const nb::cast_error&) {
        throw InvalidArgument(std::string(key) + " must be an integer", {{"field", key}});
      }
    }
  };
  text("job_id", spec.job_id);
  text("alpha_name", spec.alpha_name);
  std::string start, end, priority;
  text("start_date", start);
  text("end_date", end);
  if (start.empty() || end.empty()) {
    throw InvalidArgument("start_date and end_date are required", {{"field", "start_date"}});
  }
  spec.start_date = Date::Parse(start, "start_date");
  spec.end_date = Date::Parse(end, "end_date");
  text("weight_method", spec.weight_method);
  text("config", spec.config_json);
  text("created_by", spec.created_by);
  text("priority", priority);
  if (!priority.empty()) spec.priority = ParsePriority(priority);
  integer("job_timeout", spec.job_timeout_seconds);
  integer("max_retries", spec.max_retries);
  text("engine", spec.engine);
  return spec;
}

void SetPythonError(const Error& error) {
  nb::object errors = nb::module_::import_("btstore._errors");
  const std::string name(ErrorCodeName(error.code()));
  nb::object cls = errors.attr(name.c_str());
  nb::dict details;
  for (const auto& [key, value] : error.details()) details[key.c_str()] = value;
  nb::object instance = cls(std::string(error.what()), name, details);
  PyErr_SetObject(cls.ptr(), instance.ptr());
}

nb::dict JobDict(const JobRecord& job) {
  const auto& keys = JobKeys();
  nb::dict d;
  auto set = [&](JobKey key, const nb::object& value) {
    if (PyDict_SetItem(d.ptr(), keys[key], value.ptr()) != 0) throw nb::python_error();
  };
  set(kId, nb::str(job.id.c_str()));
  set(kJobId, nb::str(job.job_id.c_str()));
  set(kStatus, nb::str(std::string(ToString(job.status)).c_str()));
  set(kAlphaName, nb::str(job.alpha_name.c_str()));
  set(kStartDate, nb::str(job.start_date.ToString().c_str()));
  set(kEndDate, nb::str(job.end_date.ToString().c_str()));
  set(kWeightMethod, nb::str(job.weight_method.c_str()));
  set(kConfigJson, JsonColumn(job.config_json));
  set(kCreatedAt, nb::str(FormatTimestamp(job.created_at).c_str()));
  set(kStartedAt, Time(job.started_at));
  set(kCompletedAt, Time(job.completed_at));
  set(kWorkerId, Text(job.worker_id));
  set(kProgressPct, nb::int_(job.progress_pct));
  set(kJobTimeout, nb::int_(job.job_timeout_seconds));
  set(kResultPath, Text(job.result_path));
  const auto& metric_keys = MetricKeys();
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    const double value = job.metrics.At(i);
    const nb::object metric = std::isfinite(value) ? nb::object(nb::float_(value)) : nb::none();
    if (PyDict_SetItem(d.ptr(), metric_keys[i], metric.ptr()) != 0) throw nb::python_error();
  }
  set(kSnapshotId, Text(job.snapshot_id));
  set(kDatasetVersionIds, JsonColumn(job.dataset_version_ids_json));
  set(kErrorMessage, Text(job.error_message));
  set(kRetryCount, nb::int_(job.retry_count));
  set(kCreatedBy, nb::str(job.created_by.c_str()));
  set(kCostConfig, JsonColumn(job.cost_config_json));
  set(kCostSummary, JsonColumn(job.cost_summary_json));
  set(kPriority, nb::str(std::string(ToString(job.priority)).c_str()));
  set(kMaxRetries, nb::int_(job.max_retries));
  set(kAttempt, nb::int_(job.attempt));
  set(kCancelRequested, nb::bool_(job.cancel_requested));
  set(kHeartbeatAt, Time(job.heartbeat_at));
  set(kLeaseExpiresAt, Time(job.lease_expires_at));
  set(kRunAfter, Time(job.run_after));
  set(kCheckpointPath, Text(job.checkpoint_path));
  set(kPinned, nb::bool_(job.pinned));
  set(kExpiringAt, Time(job.expiring_at));
  set(kEngine, nb::str(job.engine.c_str()));
  return d;
}

}  // namespace btstore::python
