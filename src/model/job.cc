#include <algorithm>
#include <array>

#include "btstore/errors.h"
#include "btstore/model.h"

namespace btstore {
namespace {

constexpr std::array<std::string_view, 5> kStatusNames = {"pending", "running", "completed",
                                                          "failed", "cancelled"};
constexpr std::array<std::string_view, 3> kPriorityNames = {"high", "normal", "low"};

// Limits of the contract's VARCHAR columns.
constexpr size_t kMaxJobIdLength = 64;
constexpr size_t kMaxAlphaLength = 255;
constexpr size_t kMaxWeightMethodLength = 50;
constexpr size_t kMaxUserLength = 255;

// The length of the UTF-8 sequence that starts at text[i], or 0 when it is ill-formed
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;   // overlong
    if (lead == 0xed) high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;   // overlong
    if (lead == 0xf4) high = 0x8f;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  if (byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return length;
}

void CheckText(std::string_view value, std::string_view field, size_t max_length) {
  if (value.empty() || value.size() > max_length) {
    throw InvalidArgument(
        std::string(field) + " must be 1 to " + std::to_string(max_length) + " bytes long",
        {{"field", std::string(field)}});
  }
  if (!IsValidUtf8(value)) {
    throw InvalidArgument(std::string(field) + " is not valid UTF-8",
                          {{"field", std::string(field)}});
  }
  if (HasControlCharacter(value)) {
    throw InvalidArgument(std::string(field) + " must not contain control characters",
                          {{"field", std::string(field)}});
  }
}

// Cheap structural check that config_json is one JSON object; the lifecycle layer parses it
// fully (the model layer has no JSON library).
bool LooksLikeJsonObject(std::string_view text) {
  size_t b = text.find_first_not_of(" \t\r\n");
  size_t e = text.find_last_not_of(" \t\r\n");
  return b != std::string_view::npos && text[b] == '{' && text[e] == '}';
}

}  // namespace

namespace {
constexpr std::array<std::string_view, 3> kRoleNames = {"reader", "submitter", "admin"};
}  // namespace

std::string_view ToString(Role role) { return kRoleNames.at(static_cast<size_t>(role)); }

Role ParseRole(std::string_view text) {
  for (size_t i = 0; i < kRoleNames.size(); ++i) {
    if (kRoleNames[i] == text) return static_cast<Role>(i);
  }
  throw InvalidArgument("unknown role '" + std::string(text) +
                            "': expected reader, submitter or admin",
                        {{"field", "role"}, {"value", std::string(text)}});
}

std::string_view ToString(JobStatus status) { return kStatusNames.at(static_cast<size_t>(status)); }

JobStatus ParseJobStatus(std::string_view text) {
  for (size_t i = 0; i < kStatusNames.size(); ++i) {
    if (kStatusNames[i] == text) return static_cast<JobStatus>(i);
  }
  throw InvalidArgument("unknown status '" + std::string(text) +
                            "': expected pending, running, completed, failed or cancelled",
                        {{"field", "status"}, {"value", std::string(text)}});
}

bool IsTerminal(JobStatus status) {
  return status == JobStatus::kCompleted || status == JobStatus::kFailed ||
         status == JobStatus::kCancelled;
}

std::string_view ToString(Priority priority) {
  return kPriorityNames.at(static_cast<size_t>(priority));
}

Priority ParsePriority(std::string_view text) {
  for (size_t i = 0; i < kPriorityNames.size(); ++i) {
    if (kPriorityNames[i] == text) return static_cast<Priority>(i);
  }
  throw InvalidArgument(
      "unknown priority '" + std::string(text) + "': expected high, normal or low",
      {{"field", "priority"}, {"value", std::string(text)}});
}

double& Metrics::At(size_t i) {
  std::array<double*, 7> fields = {
      &mean_ic,          &icir,           &hit_rate, &coverage, &long_short_spread,
      &average_turnover, &decay_half_life};
  return *fields.at(i);
}

double Metrics::At(size_t i) const { return const_cast<Metrics*>(this)->At(i); }

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t length = Utf8SequenceLength(text, i);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

bool HasControlCharacter(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) return true;
    // U+0080..U+009F are "\xc2\x80".."\xc2\x9f" in UTF-8.
    if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      return true;
    }
  }
  return false;
}

int JsonNestingDepth(std::string_view text) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

void ValidateConfigJson(std::string_view config_json) {
  if (config_json.size() > kMaxConfigBytes) {
    throw InvalidArgument("config is " + std::to_string(config_json.size()) +
                              " bytes long; at most " + std::to_string(kMaxConfigBytes) +
                              " bytes are allowed",
                          {{"field", "config_json"}, {"limit", std::to_string(kMaxConfigBytes)}});
  }
  if (!IsValidUtf8(config_json)) {
    throw InvalidArgument("config is not valid UTF-8", {{"field", "config_json"}});
  }
  if (int depth = JsonNestingDepth(config_json); depth > kMaxJsonDepth) {
    throw InvalidArgument("config is nested " + std::to_string(depth) + " levels deep; at most " +
                              std::to_string(kMaxJsonDepth) +
                              " levels of arrays and objects are allowed",
                          {{"field", "config_json"}, {"limit", std::to_string(kMaxJsonDepth)}});
  }
  if (!LooksLikeJsonObject(config_json)) {
    throw InvalidArgument("config must be a JSON object", {{"field", "config_json"}});
  }
}

void ValidateWorkerId(std::string_view worker_id) {
  CheckText(worker_id, "worker_id", kMaxWorkerIdLength);
}

void ValidateUserName(std::string_view user) { CheckText(user, "user", kMaxUserLength); }

void ValidateJobId(std::string_view job_id) {
  auto fail = [&](const std::string& why) {
    throw InvalidArgument("invalid job_id '" + std::string(job_id) + "': " + why,
                          {{"field", "job_id"}, {"value", std::string(job_id)}});
  };
  if (job_id.empty() || job_id.size() > kMaxJobIdLength) fail("must be 1 to 64 characters long");
  if (job_id.front() == '.') fail("must not start with '.'");
  for (char c : job_id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) fail("only letters, digits, '-', '_' and '.' are allowed");
  }
}

void ValidateEngineName(std::string_view name) {
  bool valid = !name.empty() && name.size() <= kMaxEngineNameLength;
  for (char c : name) {
    valid = valid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.');
  }
  if (!valid) {
    throw InvalidArgument("engine name \"" + std::string(name) +
                              "\" is not valid: use 1-64 letters, digits, '-', '_', '.'",
                          {{"field", "engine"}, {"value", std::string(name)}});
  }
}

void ValidateJobSpec(const JobSpec& spec) {
  ValidateJobId(spec.job_id);
  CheckText(spec.alpha_name, "alpha_name", kMaxAlphaLength);
  CheckText(spec.weight_method, "weight_method", kMaxWeightMethodLength);
  CheckText(spec.created_by, "created_by", kMaxUserLength);
  if (spec.end_date < spec.start_date) {
    throw InvalidArgument("end_date " + spec.end_date.ToString() + " is before start_date " +
                              spec.start_date.ToString(),
                          {{"field", "end_date"}});
  }
  ValidateConfigJson(spec.config_json);
  if (spec.job_timeout_seconds < kMinJobTimeoutSeconds ||
      spec.job_timeout_seconds > kMaxJobTimeoutSeconds) {
    throw InvalidArgument("job_timeout must be between 300 and 14400 seconds",
                          {{"field", "job_timeout"}});
  }
  if (spec.max_retries < 0 || spec.max_retries > 100) {
    throw InvalidArgument("max_retries must be between 0 and 100", {{"field", "max_retries"}});
  }
  if (!spec.engine.empty()) ValidateEngineName(spec.engine);
}

}  // namespace btstore
