#include "convert.h"

#include <arrow/table.h>
#include <nanobind/stl/string.h>

#include <string>

#include "btstore/wire.h"

#include "arrow_bridge.h"

namespace nb = nanobind;

namespace btstore::python {
namespace {

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

}  // namespace btstore::python
