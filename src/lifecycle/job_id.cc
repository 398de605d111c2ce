// Derivation of a job_id from a submission, identical in every language (see lifecycle.h).

#include <openssl/sha.h>

#include <nlohmann/json.hpp>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"

namespace btstore {

std::string DeriveJobId(const JobSpec& spec) {
  // Bounded before it is parsed: dump() below recurses once per level of nesting, and fails on
  // text that is not UTF-8.
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
  } catch (const nlohmann::json::parse_error& e) {
    throw InvalidArgument(std::string("config is not valid JSON: ") + e.what(),
                          {{"field", "config_json"}});
  }
  // nlohmann::json objects keep their keys sorted, and dump() writes no whitespace and leaves
  // non-ASCII characters unescaped: the same text as Python's
  // json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).
  nlohmann::json canonical = nlohmann::json::array(
      {spec.alpha_name, spec.start_date.ToString(), spec.end_date.ToString(), spec.weight_method,
       config, spec.created_by});
  std::string text = canonical.dump();
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "bt-";
  for (int i = 0; i < 16; ++i) {
    id += kHex[digest[i] >> 4];
    id += kHex[digest[i] & 0xf];
  }
  return id;
}

}  // namespace btstore
