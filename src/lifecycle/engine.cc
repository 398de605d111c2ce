// Engine selection, the noop engine, and helpers shared by the built-in engines.

#include "btstore/engine.h"

#include <arrow/api.h>
#include <openssl/sha.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

#include "btstore/errors.h"
#include "lifecycle/engine_internal.h"

namespace btstore {

namespace {

// Slice of the default SleepUnlessStopped: short enough that a stop is seen quickly, long
// enough not to spin.
constexpr std::chrono::milliseconds kStopPollSlice{5};

// Return an empty table with the exact schema of a required table.
std::shared_ptr<arrow::Table> EmptyTable(std::string_view name) {
  std::shared_ptr<arrow::Schema> schema = RequiredSchema(name);
  arrow::Result<std::shared_ptr<arrow::Table>> table =
      arrow::Table::MakeEmpty(schema, arrow::default_memory_pool());
  internal::ThrowIfArrowError(table.status(), "making an empty table");
  return *table;
}

// Returns a valid result with no rows at once: measures the storage path without any engine
// work (throughput benchmarks, tests of the lifecycle).
class NoopEngine : public Engine {
 public:
  BacktestResult Run(const JobRecord& job, EngineContext& context) override {
    context.ThrowIfStopped();
    BacktestResult result;
    result.job_id = job.job_id;
    result.alpha_name = job.alpha_name;
    result.start_date = job.start_date;
    result.end_date = job.end_date;
    result.weight_method = job.weight_method;
    result.config_hash = internal::ConfigHash(job.config_json);
    result.daily_signals = EmptyTable(kSignalsTable);
    result.daily_weights = EmptyTable(kWeightsTable);
    result.daily_ic = EmptyTable(kIcTable);
    result.snapshot_id = "noop";
    result.dataset_version_ids = {{"none", "0"}};
    result.extra_summary_json = R"({"engine":{"name":"noop"}})";
    context.ReportProgress(100);
    return result;
  }
};

}  // namespace

bool EngineContext::SleepUnlessStopped(std::chrono::milliseconds duration) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  while (!StopRequested()) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(deadline - now, kStopPollSlice));
  }
  return true;
}

std::unique_ptr<Engine> MakeEngine(std::string_view config_json) {
  std::string name = internal::EngineName(config_json);
  if (name == "synthetic") return internal::MakeSyntheticEngine();
  if (name == "noop") return std::make_unique<NoopEngine>();
  throw InvalidArgument("unknown engine \"" + name + "\" (known: synthetic, noop)",
                        {{"field", "engine"}, {"value", name}});
}

namespace internal {

nlohmann::json ParseConfigObject(std::string_view config_json) {
  // Also for configs read back from the catalog, which another tool may have written.
  ValidateConfigJson(config_json);
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(config_json);
  } catch (const nlohmann::json::exception& e) {
    // Not only parse_error: a number too large for a double is an out_of_range error.
    throw InvalidArgument(std::string("config is not valid JSON: ") + e.what(),
                          {{"field", "config_json"}});
  }
  if (!config.is_object()) {
    throw InvalidArgument("config must be a JSON object", {{"field", "config_json"}});
  }
  return config;
}

std::string EngineName(std::string_view config_json) {
  nlohmann::json config = ParseConfigObject(config_json);
  auto it = config.find("engine");
  if (it == config.end()) return "synthetic";
  if (!it->is_string()) {
    throw InvalidArgument("config key \"engine\" must be a string", {{"field", "engine"}});
  }
  return it->get<std::string>();
}

void ValidateEngineSpec(const JobSpec& spec) {
  std::unique_ptr<Engine> engine = MakeEngine(spec.config_json);
  if (EngineName(spec.config_json) != "synthetic") return;
  CheckSyntheticJobSize(spec.start_date, spec.end_date,
                        SyntheticConfig::Parse(spec.config_json).symbols);
  if (!IsKnownWeightMethod(spec.weight_method)) {
    throw InvalidArgument("unknown weight method \"" + spec.weight_method +
                              "\" for the synthetic engine (known: equal, signal, rank)",
                          {{"field", "weight_method"}, {"value", spec.weight_method}});
  }
}

std::string ConfigHash(std::string_view config_json) {
  // nlohmann::json keeps object keys sorted and dump() writes no whitespace: a canonical text.
  std::string text = ParseConfigObject(config_json).dump();
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hash = "sha256:";
  for (unsigned char byte : digest) {
    hash += kHex[byte >> 4];
    hash += kHex[byte & 0xf];
  }
  return hash;
}

void ThrowIfArrowError(const arrow::Status& status, std::string_view what) {
  if (status.ok()) return;
  throw InternalError(
      std::string("Arrow error while ") + std::string(what) + ": " + status.ToString(),
      {{"operation", std::string(what)}});
}

}  // namespace internal
}  // namespace btstore
