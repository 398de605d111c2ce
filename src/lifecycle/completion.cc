// The catalog's record of a completed job, taken from its result.

#include <nlohmann/json.hpp>

#include "lifecycle/completion_internal.h"

namespace btstore::internal {

CompletionRecord CompletionFor(const BacktestResult& result, std::string result_path) {
  CompletionRecord record;
  record.result_path = std::move(result_path);
  record.metrics = result.metrics;
  record.snapshot_id = result.snapshot_id;
  record.dataset_version_ids_json = nlohmann::json(result.dataset_version_ids).dump();
  // The writer checks that extra_summary_json is an object before the bundle is published.
  const auto extra = nlohmann::ordered_json::parse(result.extra_summary_json, nullptr, false);
  if (extra.is_object()) {
    if (auto it = extra.find("cost_config"); it != extra.end() && !it->is_null()) {
      record.cost_config_json = it->dump();
    }
    if (auto it = extra.find("cost_summary"); it != extra.end() && !it->is_null()) {
      record.cost_summary_json = it->dump();
    }
  }
  return record;
}

}  // namespace btstore::internal
