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

void CheckText(std::string_view value, std::string_view field, size_t max_length) {
  if (value.empty() || value.size() > max_length) {
    throw InvalidArgument(std::string(field) + " must be 1 to " + std::to_string(max_length) +
                              " bytes long",
                          {{"field", std::string(field)}});
  }
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      throw InvalidArgument(std::string(field) + " must not contain control characters",
                            {{"field", std::string(field)}});
    }
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
  throw InvalidArgument("unknown priority '" + std::string(text) + "': expected high, normal or low",
                        {{"field", "priority"}, {"value", std::string(text)}});
}

double& Metrics::At(size_t i) {
  std::array<double*, 7> fields = {&mean_ic,           &icir,
                                   &hit_rate,          &coverage,
                                   &long_short_spread, &average_turnover,
                                   &decay_half_life};
  return *fields.at(i);
}

double Metrics::At(size_t i) const { return const_cast<Metrics*>(this)->At(i); }

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
  if (!LooksLikeJsonObject(spec.config_json)) {
    throw InvalidArgument("config must be a JSON object", {{"field", "config_json"}});
  }
  if (spec.job_timeout_seconds < kMinJobTimeoutSeconds ||
      spec.job_timeout_seconds > kMaxJobTimeoutSeconds) {
    throw InvalidArgument("job_timeout must be between 300 and 14400 seconds",
                          {{"field", "job_timeout"}});
  }
  if (spec.max_retries < 0 || spec.max_retries > 100) {
    throw InvalidArgument("max_retries must be between 0 and 100", {{"field", "max_retries"}});
  }
}

}  // namespace btstore
