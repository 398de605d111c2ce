#pragma once
/// Shared by the tests of result access, retention and verify: a catalog of each backend, an
/// artifact root, a clock the test sets, and jobs brought to each status through the catalog's
/// real moves, with real bundles written by WriteBundle.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "btstore/artifact_store.h"
#include "btstore/bundle.h"
#include "btstore/catalog.h"
#include "btstore/engine.h"
#include "btstore/lifecycle.h"
#include "support/backends.h"
#include "support/temp_dir.h"

namespace btstore::testing {

/// A clock that shows what the test sets; safe to read from several threads.
class ManualClock : public Clock {
 public:
  explicit ManualClock(Timestamp start) : micros_(start.time_since_epoch().count()) {}
  Timestamp Now() override { return Timestamp(std::chrono::microseconds(micros_.load())); }
  void Set(Timestamp now) { micros_.store(now.time_since_epoch().count()); }

 private:
  std::atomic<int64_t> micros_;
};

/// Build a small valid result: `days` consecutive dates from `start`, `symbols` permnos, with
/// snapshot_id "snap-1" and dataset_version_ids {"prices": "v1"}.
BacktestResult SmallResult(const std::string& job_id, Date start, int days, int symbols);

/// The fixed "now" of the tests: 2026-06-01T12:00:00Z.
Timestamp TestNow();

/// A catalog of the parameter's backend (migrated), an artifact root and a ManualClock at
/// TestNow(). Jobs are made through Submit / ClaimJobs / Complete / Fail / RequestCancel.
class StoredJobsTest : public ::testing::TestWithParam<Backend> {
 protected:
  StoredJobsTest() : clock_(TestNow()) {}
  void SetUp() override;

  /// Open another connection to the same catalog (one per thread or process).
  std::unique_ptr<Catalog> OpenCatalog() const;

  /// Submit a pending job created at `created_at` (normal priority).
  JobRecord MakePending(const std::string& job_id, Timestamp created_at);
  /// Submit and claim a job: running.
  JobRecord MakeRunning(const std::string& job_id, Timestamp created_at);
  /// Submit, claim, write its bundle to <root>/<job_id> and complete it at `completed_at`,
  /// recording the canonical absolute bundle path.
  JobRecord MakeCompleted(const std::string& job_id, Timestamp created_at, Timestamp completed_at,
                          const WriteOptions& write_options = {});
  /// Submit, claim and fail a job (no retries left) at `failed_at`.
  JobRecord MakeFailed(const std::string& job_id, Timestamp created_at, Timestamp failed_at);
  /// Submit a job and cancel it while pending at `cancelled_at`.
  JobRecord MakeCancelled(const std::string& job_id, Timestamp created_at, Timestamp cancelled_at);

  /// Overwrite a row's result_path (nullopt: NULL) with SQL, as an older tool could have
  /// registered it.
  void SetResultPath(const std::string& job_id, const std::optional<std::string>& path);

  /// Return the bundle directory of a job made by MakeCompleted.
  std::filesystem::path BundleDir(const std::string& job_id) const { return root_ / job_id; }

  TempDir dir_{"btstore-retention"};
  std::string url_;
  std::unique_ptr<Catalog> catalog_;
  std::filesystem::path root_;
  std::unique_ptr<ArtifactStore> store_;  ///< the store at root_
  EngineRegistry engines_ = EngineRegistry::Builtins();
  ManualClock clock_;

 private:
  JobRecord Claim(const std::string& job_id, Timestamp at);
};

/// Name days before TestNow(): DaysAgo(91).
Timestamp DaysAgo(int days);

}  // namespace btstore::testing
