// Import: a result computed elsewhere becomes a completed job (contract section 7, `import`).
// The bundle is validated and rewritten by btstore's writer into the store's staging area, then
// published and recorded under the job's publish lock, in the order a worker completes a job
// (bundle durable first, then the row), so a failure leaves neither behind.

#include <arrow/api.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/completion_internal.h"

namespace btstore {

namespace {

// Discards a staged bundle that was not published when it goes out of scope.
class StagedGuard {
 public:
  StagedGuard(ArtifactStore& store, StagedBundle staged) : store_(store), staged_(staged) {}
  ~StagedGuard() {
    if (staged_.location.empty()) return;
    try {
      store_.Discard(staged_);
    } catch (const Error&) {
      // Left as staging debris, which RemoveDebris clears later; the caller's error matters.
    }
  }
  StagedGuard(const StagedGuard&) = delete;
  StagedGuard& operator=(const StagedGuard&) = delete;
  // Hand the staged bundle over (to Publish): no longer discarded here.
  StagedBundle Release() { return std::exchange(staged_, {}); }

 private:
  ArtifactStore& store_;
  StagedBundle staged_;
};

[[noreturn]] void Refuse(const JobRecord& existing, const std::string& why) {
  throw InvalidTransition(
      "cannot import into job " + existing.job_id + ": " + why +
          "; importing the same bundle again changes nothing, another result needs another "
          "--job-id",
      {{"job_id", existing.job_id},
       {"status", std::string(ToString(existing.status))},
       {"request", "import"}});
}

bool SameTable(const std::shared_ptr<arrow::Table>& a, const std::shared_ptr<arrow::Table>& b) {
  if (!a || !b) return !a && !b;
  // NaN equals NaN (it is a value), -0.0 differs from 0.0 (other bits).
  const auto options = arrow::EqualOptions::Defaults().nans_equal(true).signed_zeros_equal(false);
  return a->schema()->Equals(*b->schema(), /*check_metadata=*/false) && a->Equals(*b, options);
}

bool SameMetrics(const Metrics& a, const Metrics& b) {
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    const double x = a.At(i);
    const double y = b.At(i);
    if (std::isnan(x) || std::isnan(y) ? !(std::isnan(x) && std::isnan(y))
                                       : std::memcmp(&x, &y, sizeof x) != 0) {
      return false;
    }
  }
  return true;
}

// Whether two results hold the same data and metadata (identity fields aside: the row holds
// those). Returns what differs first, or "".
std::string Difference(const BacktestResult& stored, const BacktestResult& incoming) {
  if (!SameTable(stored.daily_signals, incoming.daily_signals)) return "daily_signals";
  if (!SameTable(stored.daily_weights, incoming.daily_weights)) return "daily_weights";
  if (!SameTable(stored.daily_ic, incoming.daily_ic)) return "daily_ic";
  if (stored.extra_tables.size() != incoming.extra_tables.size()) return "the set of tables";
  for (const auto& [name, table] : incoming.extra_tables) {
    auto it = stored.extra_tables.find(name);
    if (it == stored.extra_tables.end() || !SameTable(it->second, table)) return name;
  }
  if (!SameMetrics(stored.metrics, incoming.metrics)) return "the metrics";
  if (stored.snapshot_id != incoming.snapshot_id) return "snapshot_id";
  if (stored.dataset_version_ids != incoming.dataset_version_ids) return "dataset_version_ids";
  if (stored.json_artifacts != incoming.json_artifacts) return "the JSON artifacts";
  if (nlohmann::json::parse(stored.extra_summary_json) !=
      nlohmann::json::parse(incoming.extra_summary_json)) {
    return "the other keys of summary.json";
  }
  return "";
}

}  // namespace

SubmitResult JobService::Import(const std::filesystem::path& dir, JobSpec spec) {
  if (spec.job_id.empty()) spec.job_id = DeriveJobId(spec);
  ValidateJobSpec(spec);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw InvalidArgument("nothing to import: " + dir.string() + " is not a bundle directory",
                          {{"path", dir.string()}});
  }
  BacktestResult result = ReadBundle(dir);
  if (!result.unavailable.empty()) {
    const auto& [file, message] = *result.unavailable.begin();
    throw InvalidResult(message, {{"file", file}, {"path", (dir / file).string()}});
  }
  return ImportRead(std::move(result), std::move(spec), &dir);
}

SubmitResult JobService::ImportResult(BacktestResult result, JobSpec spec) {
  if (spec.job_id.empty()) spec.job_id = DeriveJobId(spec);
  ValidateJobSpec(spec);
  // As a bundle's reader gives them, so that the same result imported again compares equal.
  for (auto& [name, text] : result.json_artifacts) text = NormalizeJsonArtifact(name, text);
  return ImportRead(std::move(result), std::move(spec), nullptr);
}

SubmitResult JobService::ImportRead(BacktestResult result, JobSpec spec,
                                    const std::filesystem::path* dir) {
  // btstore's writer owns the identity keys of summary.json: they are the job's.
  SetJobIdentity(result, spec.job_id, spec.alpha_name, spec.start_date, spec.end_date,
                 spec.weight_method, spec.config_json);

  // The same import again: answered without writing anything.
  auto answer_existing = [&](const JobRecord& existing) -> SubmitResult {
    if (existing.status != JobStatus::kCompleted) {
      Refuse(existing, "it already exists and is " + std::string(ToString(existing.status)));
    }
    const bool same_fields =
        existing.alpha_name == spec.alpha_name && existing.start_date == spec.start_date &&
        existing.end_date == spec.end_date && existing.weight_method == spec.weight_method &&
        existing.created_by == spec.created_by &&
        nlohmann::json::parse(existing.config_json, nullptr, false) ==
            nlohmann::json::parse(spec.config_json, nullptr, false);
    if (!same_fields)
      Refuse(existing, "it exists with other fields (alpha, dates, method, user or config)");
    const std::string difference = Difference(GetResult(existing.job_id), result);
    if (!difference.empty())
      Refuse(existing, "it holds another result (" + difference + " differ)");
    return {existing, false};
  };
  if (std::optional<JobRecord> existing = catalog_.FindJob(spec.job_id)) {
    return answer_existing(*existing);
  }

  StagedBundle staged;
  try {
    staged = store_.Stage(result, WriteOptions{});
  } catch (const InvalidArgument& e) {
    if (dir == nullptr) throw;  // the caller's tables are at fault
    // Unsorted or duplicate rows, a date out of range: the bundle is at fault, not the request.
    ErrorDetails details = e.details();
    details["path"] = dir->string();
    throw InvalidResult(std::string("cannot import ") + dir->string() + ": " + e.what(),
                        std::move(details));
  }
  StagedGuard guard(store_, staged);
  const std::unique_ptr<JobLock> lock = store_.LockJob(spec.job_id);
  // Another import of this job_id held the lock before us, or a submission took the id.
  if (std::optional<JobRecord> existing = catalog_.FindJob(spec.job_id)) {
    return answer_existing(*existing);
  }
  const CompletionRecord record =
      internal::CompletionFor(result, store_.Publish(guard.Release(), spec.job_id));
  SubmitResult inserted;
  try {
    inserted = catalog_.InsertCompleted(spec, record, clock_.Now());
  } catch (const Error&) {
    // The insert may have committed before its answer was lost: the row decides. Should the
    // catalog not answer now either, the bundle stays (a completed row must never lose it);
    // `verify` reports it if no row knows it.
    std::optional<JobRecord> row = catalog_.FindJob(spec.job_id);
    if (row && row->status == JobStatus::kCompleted && row->result_path == record.result_path) {
      return {*std::move(row), true};
    }
    store_.Unpublish(spec.job_id);
    throw;
  }
  if (!inserted.created) {
    // A submission took the job_id between the check and the insert; it has no bundle (workers
    // publish under the lock held here), so the one published above is this import's.
    store_.Unpublish(spec.job_id);
    return answer_existing(inserted.job);
  }
  return inserted;
}

}  // namespace btstore
