// The engine registry, the noop engine, the engine's report in summary.json, and helpers shared
// by the built-in engines.

#include <arrow/api.h>
#include <openssl/sha.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

#include "btstore/engine.h"
#include "btstore/errors.h"
#include "engine/engine_internal.h"

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
    BacktestResult result = ResultFor(job);
    result.daily_signals = EmptyTable(kSignalsTable);
    result.daily_weights = EmptyTable(kWeightsTable);
    result.daily_ic = EmptyTable(kIcTable);
    result.snapshot_id = "noop";
    result.dataset_version_ids = {{"none", "0"}};
    result.extra_summary_json = EngineReportJson({.name = "noop"});
    context.ReportProgress(100);
    return result;
  }
};

// Engines made by a function, accepting every submission.
class FunctionFactory : public EngineFactory {
 public:
  explicit FunctionFactory(std::function<std::unique_ptr<Engine>()> make)
      : make_(std::move(make)) {}
  std::unique_ptr<Engine> Make() const override { return make_(); }

 private:
  std::function<std::unique_ptr<Engine>()> make_;
};

std::optional<int64_t> OptionalInt(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

}  // namespace

void EngineFactory::Validate(const JobSpec& /*spec*/) const {}

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

std::string EngineContext::MakeAttemptDirectory() {
  throw InternalError("this engine needs a worker's artifact store for its working directory");
}

std::string EngineContext::LogLocation(LogStream /*stream*/) {
  throw InternalError("this engine needs a worker's artifact store for its logs");
}

EngineRegistry::EngineRegistry() = default;
EngineRegistry::~EngineRegistry() = default;
EngineRegistry::EngineRegistry(EngineRegistry&&) noexcept = default;
EngineRegistry& EngineRegistry::operator=(EngineRegistry&&) noexcept = default;

EngineRegistry EngineRegistry::Builtins() {
  EngineRegistry registry;
  registry.Register("synthetic", internal::MakeSyntheticFactory());
  registry.Register("noop", [] { return std::make_unique<NoopEngine>(); });
  registry.SetDefault("synthetic");
  return registry;
}

void EngineRegistry::Register(std::string name, std::unique_ptr<EngineFactory> factory) {
  ValidateEngineName(name);
  if (!factory) {
    throw InvalidArgument("engine \"" + name + "\" has no factory", {{"field", "engine"}});
  }
  if (factories_.contains(name)) {
    throw InvalidArgument("an engine named \"" + name + "\" is already registered",
                          {{"field", "engine"}, {"value", name}});
  }
  factories_.emplace(std::move(name), std::move(factory));
}

void EngineRegistry::Register(std::string name, std::function<std::unique_ptr<Engine>()> make) {
  if (!make) {
    throw InvalidArgument("engine \"" + name + "\" has no factory", {{"field", "engine"}});
  }
  Register(std::move(name), std::make_unique<FunctionFactory>(std::move(make)));
}

void EngineRegistry::SetDefault(std::string name) {
  Find(name);
  default_name_ = std::move(name);
}

std::vector<std::string> EngineRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, factory] : factories_) names.push_back(name);
  return names;
}

const EngineFactory& EngineRegistry::Find(const std::string& name) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [known_name, factory] : factories_) {
      known += (known.empty() ? "" : ", ") + known_name;
    }
    throw InvalidArgument("unknown engine \"" + name + "\" (known: " + known + ")",
                          {{"field", "engine"}, {"value", name}});
  }
  return *it->second;
}

std::string EngineRegistry::EngineNameOf(std::string_view config_json) const {
  nlohmann::json config = internal::ParseConfigObject(config_json);
  auto it = config.find("engine");
  if (it == config.end()) {
    if (default_name_.empty()) {
      throw InvalidArgument("the config names no engine (key \"engine\") and there is no default",
                            {{"field", "engine"}});
    }
    return default_name_;
  }
  if (!it->is_string()) {
    throw InvalidArgument("config key \"engine\" must be a string", {{"field", "engine"}});
  }
  return it->get<std::string>();
}

void EngineRegistry::Validate(const JobSpec& spec) const {
  const std::string name = EngineNameOf(spec.config_json);
  ValidateEngineName(name);
  // An engine this process does not have may be a command engine of some worker: the job waits
  // for a worker that has it (`list` and `show` say which engine it waits for).
  auto it = factories_.find(name);
  if (it != factories_.end()) it->second->Validate(spec);
}

std::unique_ptr<Engine> EngineRegistry::MakeFor(std::string_view config_json) const {
  return Find(EngineNameOf(config_json)).Make();
}

std::string EngineReportJson(const EngineReport& report) {
  nlohmann::json engine = {{"name", report.name}};
  if (report.business_days) engine["business_days"] = *report.business_days;
  if (report.resumed_at_day) engine["resumed_at_day"] = *report.resumed_at_day;
  if (report.computed_days) engine["computed_days"] = *report.computed_days;
  return nlohmann::json{{"engine", engine}}.dump();
}

std::optional<EngineReport> ReadEngineReport(std::string_view summary_json) {
  // A bundle written by Python may hold the bare tokens NaN/Infinity: clean them first.
  nlohmann::json doc = nlohmann::json::parse(ReplaceNonFiniteTokens(summary_json), nullptr,
                                             /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  auto it = doc.find("engine");
  if (it == doc.end() || !it->is_object()) return std::nullopt;
  const nlohmann::json& engine = *it;
  auto name = engine.find("name");
  if (name == engine.end() || !name->is_string()) return std::nullopt;
  return EngineReport{name->get<std::string>(), OptionalInt(engine, "business_days"),
                      OptionalInt(engine, "resumed_at_day"), OptionalInt(engine, "computed_days")};
}

void SetJobIdentity(BacktestResult& result, std::string_view job_id, std::string_view alpha_name,
                    Date start_date, Date end_date, std::string_view weight_method,
                    std::string_view config_json) {
  result.config_hash = ConfigHash(config_json);  // first: it is the one that can throw
  result.job_id = job_id;
  result.alpha_name = alpha_name;
  result.start_date = start_date;
  result.end_date = end_date;
  result.weight_method = weight_method;
}

BacktestResult ResultFor(const JobRecord& job) {
  BacktestResult result;
  SetJobIdentity(result, job.job_id, job.alpha_name, job.start_date, job.end_date,
                 job.weight_method, job.config_json);
  return result;
}

std::string ConfigHash(std::string_view config_json) {
  // nlohmann::json keeps object keys sorted and dump() writes no whitespace: a canonical text.
  return "sha256:" + internal::Sha256Hex(internal::ParseConfigObject(config_json).dump());
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

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * SHA256_DIGEST_LENGTH);
  for (unsigned char byte : digest) {
    hex += kHex[byte >> 4];
    hex += kHex[byte & 0xf];
  }
  return hex;
}

void ThrowIfArrowError(const arrow::Status& status, std::string_view what) {
  if (status.ok()) return;
  throw InternalError(
      std::string("Arrow error while ") + std::string(what) + ": " + status.ToString(),
      {{"operation", std::string(what)}});
}

}  // namespace internal
}  // namespace btstore
