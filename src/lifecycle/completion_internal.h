#pragma once
// What the catalog records when a job completes with a result, for the worker and for import.

#include <string>

#include "btstore/bundle.h"
#include "btstore/catalog.h"

namespace btstore::internal {

/// Return the completion of a job whose bundle holds `result` at `result_path`: its metrics,
/// snapshot_id, dataset_version_ids and the cost blocks (summary.json's cost_config and
/// cost_summary, when present and not null).
CompletionRecord CompletionFor(const BacktestResult& result, std::string result_path);

}  // namespace btstore::internal
