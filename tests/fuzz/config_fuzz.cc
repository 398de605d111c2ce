// Fuzz target: a job submission's fields and config as btstore parses and checks them
// (internal::ParseConfigObject, the built-in registry's EngineNameOf, MakeFor and Validate,
// SyntheticConfig::Parse, ConfigHash, DeriveJobId, ValidateJobSpec), then JobService::Submit
// into a SQLite catalog.
//
// Input: lines 0 alpha, 1 start date, 2 end date, 3 weight method, 4 user, 5 job_id (empty:
// derived), 6 job_timeout seconds; the rest of the input is the config JSON. A date or timeout
// that does not parse keeps its default (2020-01-01, 2020-12-31, 3600).
//
// Findings: a crash; an error other than InvalidArgument; a config hash or derived job_id that
// depends on the config's spelling rather than its value, or a derived job_id that is not a
// valid job_id; parsed settings outside their documented ranges; and a submission that passes
// every check but that the catalog refuses.

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/catalog.h"
#include "btstore/engine.h"
#include "btstore/lifecycle.h"
#include "fuzz/fuzz_support.h"
#include "btstore/service.h"
#include "engine/engine_internal.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;

constexpr size_t kFields = 8;
// The catalog is recreated after this many stored jobs, so that a long run's database stays
// small.
constexpr int kJobsPerCatalog = 4096;

class Submitter {
 public:
  SubmitResult Submit(const JobSpec& spec) {
    if (!service_ || stored_ == kJobsPerCatalog) Reopen();
    SubmitResult result = service_->jobs().Submit(spec);
    if (result.created) ++stored_;
    return result;
  }

 private:
  void Reopen() {
    service_.reset();
    const fs::path dir = fuzz::ScratchDir() / "catalog";
    fs::remove_all(dir);
    service_ = Service::Open("sqlite:" + (dir / "catalog.db").string(), dir / "results");
    stored_ = 0;
  }

  std::unique_ptr<Service> service_;
  int stored_ = 0;
};

// The built-in engines, made once: every check below asks them.
const EngineRegistry& Builtins() {
  static const EngineRegistry registry = EngineRegistry::Builtins();
  return registry;
}

Date DateOr(std::string_view text, Date fallback) {
  std::optional<Date> date;
  fuzz::Expect("Date::Parse", {ErrorCode::kInvalidArgument}, [&] { date = Date::Parse(text); });
  return date.value_or(fallback);
}

void CheckHash(const std::string& hash) {
  bool ok = hash.size() == 7 + 64 && hash.starts_with("sha256:") &&
            hash.find_first_not_of("0123456789abcdef", 7) == std::string::npos;
  if (!ok) fuzz::Finding("malformed config hash " + hash);
}

// Checks that need only the config text.
void CheckConfig(const std::string& config_json) {
  std::optional<nlohmann::json> config;
  if (!fuzz::Expect("ParseConfigObject", {ErrorCode::kInvalidArgument},
                    [&] { config = internal::ParseConfigObject(config_json); })) {
    return;
  }
  // A config that parses has a hash, and the hash depends on the value only.
  std::string hash, canonical_hash;
  fuzz::Expect("ConfigHash of a config that parsed", {},
               [&] { hash = ConfigHash(config_json); });
  CheckHash(hash);
  fuzz::Expect("ConfigHash of a dumped config", {},
               [&] { canonical_hash = ConfigHash(config->dump()); });
  if (hash != canonical_hash) fuzz::Finding("the config hash depends on the config's spelling");

  std::string engine;
  if (!fuzz::Expect("EngineName", {ErrorCode::kInvalidArgument},
                    [&] { engine = Builtins().EngineNameOf(config_json); })) {
    return;
  }
  std::unique_ptr<Engine> made;
  fuzz::Expect("EngineRegistry::MakeFor", {ErrorCode::kInvalidArgument},
               [&] { made = Builtins().MakeFor(config_json); });
  if (made && engine != "synthetic" && engine != "noop") {
    fuzz::Finding("MakeFor made an engine for unknown name " + engine);
  }
  std::optional<SyntheticConfig> synthetic;
  if (fuzz::Expect("SyntheticConfig::Parse", {ErrorCode::kInvalidArgument},
                   [&] { synthetic = SyntheticConfig::Parse(config_json); })) {
    bool in_range = synthetic->symbols >= 1 && synthetic->delay_ms_per_day >= 0 &&
                    synthetic->checkpoint_every_days >= 0 &&
                    (!synthetic->fail_at_day || *synthetic->fail_at_day >= 0) &&
                    !synthetic->snapshot_id.empty();
    if (!in_range) fuzz::Finding("SyntheticConfig::Parse returned settings out of range");
  }
}

}  // namespace
}  // namespace btstore

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace btstore;
  std::vector<std::string_view> fields =
      fuzz::SplitFields(std::string_view(reinterpret_cast<const char*>(data), size), kFields);
  fields.resize(kFields);

  JobSpec spec;
  spec.alpha_name = std::string(fields[0]);
  spec.start_date = DateOr(fields[1], Date::FromYmd(2020, 1, 1));
  spec.end_date = DateOr(fields[2], Date::FromYmd(2020, 12, 31));
  spec.weight_method = std::string(fields[3]);
  spec.created_by = std::string(fields[4]);
  spec.job_id = std::string(fields[5]);
  int timeout = 0;
  std::string_view timeout_text = fields[6];
  auto [end, ec] =
      std::from_chars(timeout_text.data(), timeout_text.data() + timeout_text.size(), timeout);
  if (!timeout_text.empty() && ec == std::errc() &&
      end == timeout_text.data() + timeout_text.size()) {
    spec.job_timeout_seconds = timeout;
  }
  spec.config_json = std::string(fields[7]);

  CheckConfig(spec.config_json);

  if (spec.job_id.empty()) {
    std::string id;
    if (!fuzz::Expect("DeriveJobId", {ErrorCode::kInvalidArgument},
                      [&] { id = DeriveJobId(spec); })) {
      return 0;
    }
    fuzz::Expect("ValidateJobId of a derived job_id", {}, [&] { ValidateJobId(id); });
    JobSpec respelled = spec;
    respelled.config_json = nlohmann::json::parse(spec.config_json).dump(2);
    if (DeriveJobId(respelled) != id) {
      fuzz::Finding("the derived job_id depends on the config's spelling");
    }
    spec.job_id = id;
  }
  if (!fuzz::Expect("ValidateJobSpec", {ErrorCode::kInvalidArgument},
                    [&] { ValidateJobSpec(spec); }) ||
      !fuzz::Expect("ValidateEngineSpec", {ErrorCode::kInvalidArgument},
                    [&] { Builtins().Validate(spec); })) {
    return 0;
  }
  static Submitter submitter;
  fuzz::Expect("JobService::Submit of a spec that passed every check", {},
               [&] { submitter.Submit(spec); });
  return 0;
}
