#pragma once
// Helpers of the catalog conformance tests: a fixture with a fresh, migrated catalog of the
// backend under test, job specs, and a field-by-field comparison of rows.

#include <gtest/gtest.h>

#include <bit>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "btstore/catalog.h"
#include "btstore/model.h"
#include "catalog/migrations_internal.h"
#include "support/backends.h"
#include "support/temp_dir.h"

namespace btstore::testing {

/// The number of migrations of a backend, all applied by a fresh catalog's first Migrate().
inline int MigrationCount(Backend backend) {
  return static_cast<int>(backend == Backend::kPostgres ? internal::Migrations_postgres().size()
                                                        : internal::Migrations_sqlite().size());
}

/// A fresh catalog of the backend under test, migrated.
class CatalogTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (auto why = SkipReason(GetParam())) GTEST_SKIP() << *why;
    url_ = NewCatalogUrl(GetParam(), dir_.path());
    catalog_ = Catalog::Open(url_);
    ASSERT_EQ(catalog_->Migrate(), MigrationCount(GetParam()));
  }

 public:
  /// A valid spec.
  static JobSpec Spec(const std::string& job_id, Priority priority = Priority::kNormal,
                      int max_retries = kDefaultMaxRetries) {
    JobSpec spec;
    spec.job_id = job_id;
    spec.alpha_name = "momentum_20d";
    spec.start_date = Date::Parse("2020-01-01");
    spec.end_date = Date::Parse("2020-12-31");
    spec.weight_method = "equal";
    spec.config_json = R"({"lookback": 20})";
    spec.created_by = "alice";
    spec.priority = priority;
    spec.max_retries = max_retries;
    return spec;
  }

  /// Times in tests are offsets from a fixed instant with a fraction of a second.
  static Timestamp At(int64_t seconds) { return t0_ + std::chrono::seconds(seconds); }

 protected:
  /// Submit a job and claim it (it must be the only claimable one); return the claimed row.
  JobRecord SubmitAndClaim(const std::string& job_id, int64_t at_seconds, int max_retries = 2) {
    catalog_->Submit(Spec(job_id, Priority::kHigh, max_retries), At(at_seconds));
    std::vector<JobRecord> claimed =
        catalog_->ClaimJobs("worker-1", 1, std::chrono::seconds(30), At(at_seconds));
    EXPECT_EQ(claimed.size(), 1u);
    EXPECT_EQ(claimed.empty() ? "" : claimed[0].job_id, job_id);
    return claimed.empty() ? JobRecord{} : claimed[0];
  }

  inline static const Timestamp t0_ = ParseTimestamp("2026-01-05T09:30:00.123456Z");
  TempDir dir_;
  std::string url_;
  std::unique_ptr<Catalog> catalog_;
};

/// Return the bits of a double, so that NaN == NaN and 0.1 is compared exactly.
inline uint64_t Bits(double value) { return std::bit_cast<uint64_t>(value); }

/// Expect every field of two rows to be equal (doubles bit for bit, NaN as NaN).
inline void ExpectSameJob(const JobRecord& a, const JobRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.job_id, b.job_id);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.alpha_name, b.alpha_name);
  EXPECT_EQ(a.start_date, b.start_date);
  EXPECT_EQ(a.end_date, b.end_date);
  EXPECT_EQ(a.weight_method, b.weight_method);
  EXPECT_EQ(a.config_json, b.config_json);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.started_at, b.started_at);
  EXPECT_EQ(a.completed_at, b.completed_at);
  EXPECT_EQ(a.worker_id, b.worker_id);
  EXPECT_EQ(a.progress_pct, b.progress_pct);
  EXPECT_EQ(a.job_timeout_seconds, b.job_timeout_seconds);
  EXPECT_EQ(a.result_path, b.result_path);
  for (size_t m = 0; m < Metrics::kNames.size(); ++m) {
    double x = a.metrics.At(m), y = b.metrics.At(m);
    EXPECT_TRUE((std::isnan(x) && std::isnan(y)) || Bits(x) == Bits(y))
        << Metrics::kNames[m] << ": " << x << " vs " << y;
  }
  EXPECT_EQ(a.snapshot_id, b.snapshot_id);
  EXPECT_EQ(a.dataset_version_ids_json, b.dataset_version_ids_json);
  EXPECT_EQ(a.error_message, b.error_message);
  EXPECT_EQ(a.retry_count, b.retry_count);
  EXPECT_EQ(a.created_by, b.created_by);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.max_retries, b.max_retries);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.cancel_requested, b.cancel_requested);
  EXPECT_EQ(a.heartbeat_at, b.heartbeat_at);
  EXPECT_EQ(a.lease_expires_at, b.lease_expires_at);
  EXPECT_EQ(a.run_after, b.run_after);
  EXPECT_EQ(a.checkpoint_path, b.checkpoint_path);
  EXPECT_EQ(a.pinned, b.pinned);
  EXPECT_EQ(a.expiring_at, b.expiring_at);
  EXPECT_EQ(a.cost_config_json, b.cost_config_json);
  EXPECT_EQ(a.cost_summary_json, b.cost_summary_json);
}

}  // namespace btstore::testing
