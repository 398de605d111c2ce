// Derivation of a job_id from a submission, identical in every language (see lifecycle.h).

#include <nlohmann/json.hpp>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "engine/engine_internal.h"

namespace btstore {

namespace {

// The first 32 hex digits (128 bits) of the digest: short enough to read, far from collisions.
constexpr size_t kDerivedIdHexDigits = 32;

}  // namespace

std::string DeriveJobId(const JobSpec& spec) {
  // The canonical JSON holds these as strings, and nlohmann refuses to write ill-formed UTF-8.
  for (const auto& [field, value] :
       {std::pair<std::string_view, const std::string&>{"alpha_name", spec.alpha_name},
        {"weight_method", spec.weight_method},
        {"created_by", spec.created_by}}) {
    if (!IsValidUtf8(value)) {
      throw InvalidArgument(std::string(field) + " is not valid UTF-8",
                            {{"field", std::string(field)}});
    }
  }
  // Bounded before it is parsed: dump() below recurses once per level of nesting.
  ValidateConfigJson(spec.config_json);
  for (const auto& [field, value] :
       {std::pair{"alpha_name", &spec.alpha_name}, std::pair{"weight_method", &spec.weight_method},
        std::pair{"created_by", &spec.created_by}}) {
    if (!IsValidUtf8(*value)) {
      throw InvalidArgument(std::string(field) + " is not valid UTF-8", {{"field", field}});
    }
  }
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(spec.config_json);
  } catch (const nlohmann::json::exception& e) {
    // Not only parse_error: a number too large for a double is an out_of_range error.
    throw InvalidArgument(std::string("config is not valid JSON: ") + e.what(),
                          {{"field", "config_json"}});
  }
  // nlohmann::json objects keep their keys sorted, and dump() writes no whitespace and leaves
  // non-ASCII characters unescaped: the same text as Python's
  // json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).
  nlohmann::json canonical = nlohmann::json::array(
      {spec.alpha_name, spec.start_date.ToString(), spec.end_date.ToString(), spec.weight_method,
       config, spec.created_by});
  return "bt-" + internal::Sha256Hex(canonical.dump()).substr(0, kDerivedIdHexDigits);
}

}  // namespace btstore
