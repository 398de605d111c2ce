// Fuzz target: summary.json and its `artifacts` manifest as a reader parses them
// (internal::ReadSummary, which runs internal::ReplaceNonFiniteTokens first).
//
// Input: the bytes of a summary.json. Findings: a crash; an error other than InvalidResult or
// MissingReproducibilityMetadata (contract section 4); a summary that reads but, encoded by the
// writer (EncodeSummary, as `bundle rewrite` does), does not read back with the same metadata,
// metrics and manifest.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "artifact/summary_internal.h"
#include "fuzz/fuzz_support.h"

namespace btstore {
namespace {

bool SameBits(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof a) == 0;
}

bool SameManifest(const std::map<std::string, ArtifactInfo>& a,
                  const std::map<std::string, ArtifactInfo>& b) {
  if (a.size() != b.size()) return false;
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    if (ia->first != ib->first || ia->second.rows != ib->second.rows ||
        ia->second.bytes != ib->second.bytes || ia->second.checksum != ib->second.checksum) {
      return false;
    }
  }
  return true;
}

// Return the first field in which two summaries differ, or "" when they agree.
std::string FirstDifference(const internal::ParsedSummary& a, const internal::ParsedSummary& b) {
  const BacktestResult& x = a.meta;
  const BacktestResult& y = b.meta;
  if (x.snapshot_id != y.snapshot_id) return "snapshot_id";
  if (x.dataset_version_ids != y.dataset_version_ids) return "dataset_version_ids";
  if (x.job_id != y.job_id) return "job_id";
  if (x.alpha_name != y.alpha_name) return "alpha_name";
  if (x.weight_method != y.weight_method) return "weight_method";
  if (x.config_hash != y.config_hash) return "config_hash";
  if (x.start_date != y.start_date) return "start_date";
  if (x.end_date != y.end_date) return "end_date";
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    if (!SameBits(x.metrics.At(i), y.metrics.At(i))) return std::string(Metrics::kNames[i]);
  }
  if (x.extra_summary_json != y.extra_summary_json) return "extra keys";
  if (!SameManifest(a.manifest.value_or(std::map<std::string, ArtifactInfo>{}),
                    b.manifest.value_or(std::map<std::string, ArtifactInfo>{}))) {
    return "artifacts";
  }
  return "";
}

}  // namespace
}  // namespace btstore

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using btstore::ErrorCode;
  namespace internal = btstore::internal;
  namespace fuzz = btstore::fuzz;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const std::filesystem::path& dir = fuzz::ScratchDir();
  fuzz::WriteFile(dir / "summary.json", text);
  std::optional<internal::ParsedSummary> parsed;
  if (!fuzz::Expect("ReadSummary",
                    {ErrorCode::kInvalidResult, ErrorCode::kMissingReproducibilityMetadata},
                    [&] { parsed = internal::ReadSummary(dir); })) {
    return 0;
  }

  std::string encoded;
  fuzz::Expect("EncodeSummary of a summary that was read", {}, [&] {
    encoded = internal::EncodeSummary(
        parsed->meta, parsed->manifest.value_or(std::map<std::string, btstore::ArtifactInfo>{}));
  });
  fuzz::WriteFile(dir / "summary.json", encoded);
  std::optional<internal::ParsedSummary> reread;
  fuzz::Expect("ReadSummary of what EncodeSummary wrote", {},
               [&] { reread = internal::ReadSummary(dir); });
  std::string difference = btstore::FirstDifference(*parsed, *reread);
  if (!difference.empty()) {
    fuzz::Finding("summary.json does not survive a rewrite: " + difference + " differs");
  }
  return 0;
}
