// VerifyBundles on every catalog backend: missing and corrupted bundles, orphan directories, and
// what it must leave alone.

#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/retention_fixture.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::seconds kGrace = std::chrono::hours(1);

class VerifyTest : public StoredJobsTest {
 protected:
  VerifyReport Verify(const std::vector<std::string>& job_ids = {}) {
    return VerifyBundles(*catalog_, *store_, {job_ids, kGrace, {}});
  }

  // Make a directory look `age` old.
  static void Age(const fs::path& path, std::chrono::seconds age) {
    fs::last_write_time(path, fs::file_time_type::clock::now() - age);
  }

  // Every path under the root with its size and mtime, to show that nothing was written.
  std::map<std::string, std::string> Snapshot() const {
    std::map<std::string, std::string> files;
    for (const fs::directory_entry& entry : fs::recursive_directory_iterator(root_)) {
      std::string state = std::to_string(entry.last_write_time().time_since_epoch().count());
      if (entry.is_regular_file()) state += ":" + std::to_string(entry.file_size());
      files[entry.path().string()] = state;
    }
    return files;
  }
};

TEST_P(VerifyTest, GoodBundlesHaveNoProblems) {
  MakeCompleted("job-a", DaysAgo(3), DaysAgo(2));
  MakeCompleted("job-b", DaysAgo(3), DaysAgo(2));
  MakeFailed("job-failed", DaysAgo(3), DaysAgo(2));
  MakePending("job-pending", DaysAgo(1));
  Age(BundleDir("job-a"), std::chrono::hours(48));
  std::vector<int64_t> progress;
  const VerifyReport report = VerifyBundles(
      *catalog_, *store_, {{}, kGrace, [&](int64_t done) { progress.push_back(done); }});
  EXPECT_EQ(report.checked, 2);
  EXPECT_TRUE(report.problems.empty());
  EXPECT_EQ(progress, (std::vector<int64_t>{1, 2}));
}

TEST_P(VerifyTest, FindsAMissingBundle) {
  const JobRecord job = MakeCompleted("job-gone", DaysAgo(3), DaysAgo(2));
  MakeCompleted("job-here", DaysAgo(3), DaysAgo(2));
  fs::remove_all(BundleDir("job-gone"));
  const VerifyReport report = Verify();
  EXPECT_EQ(report.checked, 2);
  ASSERT_EQ(report.problems.size(), 1u);
  const VerifyProblem& problem = report.problems.front();
  EXPECT_EQ(problem.kind, VerifyProblem::Kind::kMissingBundle);
  EXPECT_EQ(problem.job_id, "job-gone");
  EXPECT_EQ(problem.path, *job.result_path);
  EXPECT_EQ(problem.error_code, "ResultPathMissing");
  EXPECT_FALSE(problem.message.empty());
}

TEST_P(VerifyTest, FindsACorruptedBundle) {
  MakeCompleted("job-corrupt", DaysAgo(3), DaysAgo(2));
  MakeCompleted("job-nosummary", DaysAgo(3), DaysAgo(2));
  MakeCompleted("job-good", DaysAgo(3), DaysAgo(2));
  // One byte changed, size kept: only the manifest's checksum can tell.
  const fs::path file = BundleDir("job-corrupt") / "daily_weights.parquet";
  {
    std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
    out.seekg(static_cast<std::streamoff>(fs::file_size(file) / 2));
    const char byte = static_cast<char>(out.get());
    out.seekp(static_cast<std::streamoff>(fs::file_size(file) / 2));
    out.put(static_cast<char>(byte ^ 0x01));
  }
  fs::remove(BundleDir("job-nosummary") / kSummaryFile);

  const VerifyReport report = Verify();
  EXPECT_EQ(report.checked, 3);
  std::map<std::string, VerifyProblem> by_job;
  for (const VerifyProblem& problem : report.problems) by_job.emplace(problem.job_id, problem);
  ASSERT_EQ(by_job.size(), 2u);
  EXPECT_EQ(by_job.at("job-corrupt").kind, VerifyProblem::Kind::kInvalidBundle);
  EXPECT_EQ(by_job.at("job-corrupt").error_code, "InvalidResult");
  EXPECT_NE(by_job.at("job-corrupt").message.find("daily_weights"), std::string::npos)
      << by_job.at("job-corrupt").message;
  EXPECT_EQ(by_job.at("job-nosummary").kind, VerifyProblem::Kind::kInvalidBundle);
  EXPECT_EQ(by_job.at("job-nosummary").error_code, "MissingReproducibilityMetadata");
}

TEST_P(VerifyTest, FindsOldOrphansAndIgnoresYoungOnesAndDotDirectories) {
  MakeCompleted("job-known", DaysAgo(3), DaysAgo(2));
  MakePending("job-pending", DaysAgo(1));
  Age(BundleDir("job-known"), std::chrono::hours(48));
  const fs::path old_orphan = root_ / "stray-old";
  const fs::path young_orphan = root_ / "stray-young";
  fs::create_directories(old_orphan);
  fs::create_directories(young_orphan);
  std::ofstream(old_orphan / "daily_ic.parquet") << "x";
  Age(old_orphan, std::chrono::hours(2));
  // A directory named like a job that exists (here a pending one) is that job's.
  fs::create_directories(root_ / "job-pending");
  Age(root_ / "job-pending", std::chrono::hours(2));
  for (const std::string name : {".staging", ".trash", ".checkpoints", ".locks", ".other"}) {
    fs::create_directories(root_ / name / "job-x");
    Age(root_ / name / "job-x", std::chrono::hours(2));
    Age(root_ / name, std::chrono::hours(2));
  }
  std::ofstream(root_ / "notes.txt") << "not a directory";
  Age(root_ / "notes.txt", std::chrono::hours(2));

  const VerifyReport report = Verify();
  EXPECT_EQ(report.checked, 1);
  ASSERT_EQ(report.problems.size(), 1u);
  const VerifyProblem& problem = report.problems.front();
  EXPECT_EQ(problem.kind, VerifyProblem::Kind::kOrphanBundle);
  EXPECT_EQ(problem.job_id, "");
  EXPECT_EQ(fs::path(problem.path).filename(), "stray-old");

  // Once older than the grace, the young one is reported too.
  Age(young_orphan, std::chrono::hours(2));
  EXPECT_EQ(Verify().problems.size(), 2u);
}

TEST_P(VerifyTest, ChecksOnlyTheListedJobs) {
  MakeCompleted("job-good", DaysAgo(3), DaysAgo(2));
  MakeCompleted("job-gone", DaysAgo(3), DaysAgo(2));
  fs::remove_all(BundleDir("job-gone"));
  fs::create_directories(root_ / "stray");
  Age(root_ / "stray", std::chrono::hours(2));

  const VerifyReport good = Verify({"job-good"});
  EXPECT_EQ(good.checked, 1);
  EXPECT_TRUE(good.problems.empty());  // orphans are looked for only when no id is given

  const VerifyReport gone = Verify({"job-good", "job-gone"});
  EXPECT_EQ(gone.checked, 2);
  ASSERT_EQ(gone.problems.size(), 1u);
  EXPECT_EQ(gone.problems.front().job_id, "job-gone");
}

TEST_P(VerifyTest, UnknownListedJobIsJobNotFound) {
  MakeCompleted("job-good", DaysAgo(3), DaysAgo(2));
  EXPECT_THROW(Verify({"job-good", "no-such-job"}), JobNotFound);
}

TEST_P(VerifyTest, IgnoresJobsRetentionIsRemoving) {
  MakeCompleted("job-expiring", DaysAgo(200), DaysAgo(100));
  ASSERT_EQ(catalog_->MarkExpiring(DaysAgo(90), 10, TestNow()).size(), 1u);
  fs::remove_all(BundleDir("job-expiring"));
  const VerifyReport report = Verify();
  EXPECT_EQ(report.checked, 0);
  EXPECT_TRUE(report.problems.empty());
}

TEST_P(VerifyTest, WritesNothing) {
  MakeCompleted("job-good", DaysAgo(3), DaysAgo(2));
  MakeCompleted("job-gone", DaysAgo(3), DaysAgo(2));
  fs::remove_all(BundleDir("job-gone"));
  fs::create_directories(root_ / "stray");
  Age(root_ / "stray", std::chrono::hours(2));
  const std::map<std::string, std::string> before = Snapshot();
  const JobRecord gone_before = catalog_->GetJob("job-gone");

  EXPECT_EQ(Verify().problems.size(), 2u);
  EXPECT_EQ(Snapshot(), before);
  const JobRecord gone_after = catalog_->GetJob("job-gone");
  EXPECT_EQ(gone_after.status, JobStatus::kCompleted);
  EXPECT_EQ(gone_after.result_path, gone_before.result_path);
  EXPECT_FALSE(gone_after.expiring_at.has_value());
}

INSTANTIATE_TEST_SUITE_P(Backends, VerifyTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
