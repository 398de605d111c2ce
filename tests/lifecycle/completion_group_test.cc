// The worker's group commit of completions (CompletionGroup in worker_internal.h): attempts that
// finish together complete in shared transactions, and each completion is still fenced by its
// own attempt and reaches only its own caller's error. Both backends.

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>

#include "btstore/catalog.h"
#include "btstore/errors.h"
#include "lifecycle/worker_internal.h"
#include "lifecycle/worker_test_util.h"
#include "support/backends.h"
#include "support/sql_session.h"
#include "support/temp_dir.h"

namespace btstore::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const Timestamp kT0 = ParseTimestamp("2026-01-05T09:30:00Z");
Timestamp At(int64_t s) { return kT0 + seconds(s); }

JobSpec Spec(const std::string& job_id) {
  JobSpec spec;
  spec.job_id = job_id;
  spec.alpha_name = "momentum";
  spec.start_date = Date::Parse("2020-01-01");
  spec.end_date = Date::Parse("2020-12-31");
  spec.weight_method = "equal";
  spec.config_json = R"({"engine":"noop"})";
  spec.created_by = "alice";
  return spec;
}

CompletionRecord Completion(const std::string& job_id) {
  CompletionRecord record;
  record.result_path = "/results/" + job_id;
  record.snapshot_id = "snap";
  record.dataset_version_ids_json = R"({"prices": "v1"})";
  return record;
}

class CompletionGroupTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (auto why = SkipReason(GetParam())) GTEST_SKIP() << *why;
    url_ = NewCatalogUrl(GetParam(), dir_.path());
    catalog_ = Catalog::Open(url_);
    catalog_->Migrate();
  }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<Catalog> catalog_;
};

// Claim `count` jobs twice, with every lease expiring and the jobs rescued in between: attempt
// 2 owns each job, and attempt 1 is a stale attempt that lost its lease.
void ClaimTwice(Catalog& catalog, int count) {
  for (int i = 0; i < count; ++i) catalog.Submit(Spec("job-" + std::to_string(i)), At(i));
  ASSERT_EQ(catalog.ClaimJobs("w", count, seconds(30), At(20)).size(), size_t(count));
  ASSERT_EQ(catalog.RescueExpired(At(51), milliseconds(0), 100).size(), size_t(count));
  ASSERT_EQ(catalog.ClaimJobs("w", count, seconds(30), At(52)).size(), size_t(count));
}

// Each caller gets its own attempt's outcome, whichever commit it shares: the owned attempts
// complete, the stale one does not.
TEST_P(CompletionGroupTest, CompletesEachOwnedAttemptAndOnlyThose) {
  constexpr int kJobs = 10;
  ClaimTwice(*catalog_, kJobs);
  CompletionGroup group(*catalog_);
  std::vector<TransitionResult> results(kJobs);
  std::latch start(kJobs);
  std::vector<std::thread> threads;
  for (int i = 0; i < kJobs; ++i) {
    threads.emplace_back([&, i] {
      const std::string id = "job-" + std::to_string(i);
      const CompletionRequest request{id, i == 3 ? 1 : 2, Completion(id)};
      start.arrive_and_wait();
      results[i] = group.Complete(request, At(60));
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kJobs; ++i) {
    const std::string id = "job-" + std::to_string(i);
    JobRecord job = catalog_->GetJob(id);
    if (i == 3) {
      EXPECT_FALSE(results[i].applied);
      EXPECT_EQ(results[i].status, JobStatus::kRunning);
      EXPECT_EQ(results[i].attempt, 2);
      EXPECT_EQ(job.status, JobStatus::kRunning);
      EXPECT_EQ(job.result_path, std::nullopt);
    } else {
      EXPECT_TRUE(results[i].applied) << id;
      EXPECT_EQ(job.status, JobStatus::kCompleted) << id;
      EXPECT_EQ(job.result_path, "/results/" + id);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CompletionGroupTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

// Callers that queue while a commit is under way share the next one. Here the first commit is
// held by a row lock that another session takes (PostgreSQL shows who waits for a lock), the
// others queue behind it, and their shared commit holds a stale attempt and a job that does not
// exist: the group falls back to one completion at a time, so the owned attempts still
// complete and only the missing job's caller sees JobNotFound.
TEST(CompletionGroupPostgres, AFailingMemberDoesNotFailTheRestOfItsGroup) {
  if (auto why = SkipReason(Backend::kPostgres)) GTEST_SKIP() << *why;
  TempDir dir;
  const std::string url = NewCatalogUrl(Backend::kPostgres, dir.path());
  std::unique_ptr<Catalog> catalog = Catalog::Open(url);
  catalog->Migrate();
  constexpr int kJobs = 6;
  ClaimTwice(*catalog, kJobs);

  SqlSession blocker(url);
  blocker.Execute("BEGIN");
  blocker.Query("SELECT 1 FROM backtest_jobs WHERE job_id = 'job-0' FOR UPDATE");
  SqlSession observer(url);
  auto waiting_for_locks = [&] {
    return std::stoi(observer.Query("SELECT count(*) FROM pg_locks WHERE NOT granted")
                         .at(0)
                         .at(0)
                         .value_or("0"));
  };

  CompletionGroup group(*catalog);
  std::vector<std::optional<TransitionResult>> results(kJobs + 1);
  std::vector<std::string> errors(kJobs + 1);
  auto complete = [&](size_t slot, CompletionRequest request) {
    try {
      results[slot] = group.Complete(request, At(60));
    } catch (const JobNotFound& e) {
      errors[slot] = e.what();
    }
  };
  std::vector<std::thread> threads;
  // The leader: its commit waits for job-0's row.
  threads.emplace_back(complete, 0, CompletionRequest{"job-0", 2, Completion("job-0")});
  ASSERT_TRUE(PollUntil([&] { return waiting_for_locks() == 1; }));
  std::atomic<int> calling{0};
  for (int i = 1; i <= kJobs; ++i) {
    const std::string id = i == kJobs ? "missing" : "job-" + std::to_string(i);
    const int attempt = i == 3 ? 1 : 2;  // job-3: the stale attempt
    threads.emplace_back([&, i, id, attempt] {
      ++calling;
      complete(i, CompletionRequest{id, attempt, Completion(id)});
    });
  }
  ASSERT_TRUE(PollUntil([&] { return calling.load() == kJobs; }));
  // Nothing commits while the leader waits; release it once every caller has called.
  EXPECT_EQ(catalog->GetJob("job-1").status, JobStatus::kRunning);
  blocker.Execute("ROLLBACK");
  for (std::thread& thread : threads) thread.join();

  for (int i = 0; i < kJobs; ++i) {
    const std::string id = "job-" + std::to_string(i);
    ASSERT_TRUE(results[i].has_value()) << id << ": " << errors[i];
    EXPECT_EQ(results[i]->applied, i != 3) << id;
    EXPECT_EQ(catalog->GetJob(id).status, i == 3 ? JobStatus::kRunning : JobStatus::kCompleted)
        << id;
  }
  EXPECT_FALSE(results[kJobs].has_value());
  EXPECT_NE(errors[kJobs].find("missing"), std::string::npos) << errors[kJobs];
}

}  // namespace
}  // namespace btstore::testing
