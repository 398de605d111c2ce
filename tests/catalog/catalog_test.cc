// The catalog conformance suite: every Catalog move, run against every backend.

#include "btstore/catalog.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "btstore/errors.h"
#include "catalog/catalog_test_util.h"
#include "support/sql_session.h"

namespace btstore::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

CompletionRecord Completion(const std::string& job_id) {
  CompletionRecord record;
  record.result_path = "/results/" + job_id;
  record.metrics.mean_ic = 0.1;
  record.metrics.icir = 1.0 / 3.0;
  record.metrics.hit_rate = 5e-324;  // the smallest subnormal survives exactly
  record.metrics.coverage = 1.7976931348623157e308;
  record.metrics.long_short_spread = -2.5e-7;
  record.metrics.average_turnover = Metrics::kMissing;
  record.metrics.decay_half_life = std::numeric_limits<double>::infinity();  // stored as null
  record.snapshot_id = "snap-2026-01-05";
  record.dataset_version_ids_json = R"({"prices": "v7"})";
  return record;
}

TEST_P(CatalogTest, SubmitStoresTheSpecAndIsIdempotent) {
  JobSpec spec = Spec("job-1", Priority::kLow, 5);
  spec.job_timeout_seconds = 600;
  SubmitResult first = catalog_->Submit(spec, At(0));
  EXPECT_TRUE(first.created);
  const JobRecord& job = first.job;
  EXPECT_EQ(job.id.size(), 36u);
  EXPECT_EQ(job.job_id, "job-1");
  EXPECT_EQ(job.status, JobStatus::kPending);
  EXPECT_EQ(job.alpha_name, "momentum_20d");
  EXPECT_EQ(job.start_date, Date::Parse("2020-01-01"));
  EXPECT_EQ(job.end_date, Date::Parse("2020-12-31"));
  EXPECT_EQ(job.created_at, At(0));
  EXPECT_EQ(job.created_by, "alice");
  EXPECT_EQ(job.priority, Priority::kLow);
  EXPECT_EQ(job.max_retries, 5);
  EXPECT_EQ(job.job_timeout_seconds, 600);
  EXPECT_EQ(job.attempt, 0);
  EXPECT_EQ(job.retry_count, 0);
  EXPECT_FALSE(job.cancel_requested);
  EXPECT_FALSE(job.pinned);
  EXPECT_TRUE(std::isnan(job.metrics.mean_ic));

  JobSpec changed = spec;
  changed.alpha_name = "other";
  SubmitResult second = catalog_->Submit(changed, At(10));
  EXPECT_FALSE(second.created);
  ExpectSameJob(second.job, job);
  EXPECT_EQ(catalog_->ListJobs({}, {}).jobs.size(), 1u);
  ExpectSameJob(catalog_->GetJob("job-1"), job);
}

TEST_P(CatalogTest, SubmitRejectsAnInvalidSpecAndWritesNothing) {
  JobSpec spec = Spec("job-1");
  spec.end_date = Date::Parse("2019-01-01");
  EXPECT_THROW(catalog_->Submit(spec, At(0)), InvalidArgument);
  spec = Spec("../escape");
  EXPECT_THROW(catalog_->Submit(spec, At(0)), InvalidArgument);
  spec = Spec("job-2");
  spec.config_json = "{not json}";
  EXPECT_THROW(catalog_->Submit(spec, At(0)), InvalidArgument);
  EXPECT_TRUE(catalog_->ListJobs({}, {}).jobs.empty());
}

TEST_P(CatalogTest, FindReturnsNothingAndGetThrowsForAnUnknownJob) {
  EXPECT_EQ(catalog_->FindJob("missing"), std::nullopt);
  try {
    catalog_->GetJob("missing");
    FAIL() << "GetJob did not throw";
  } catch (const JobNotFound& error) {
    EXPECT_EQ(error.code(), ErrorCode::kJobNotFound);
  }
}

TEST_P(CatalogTest, ClaimTakesHighestPriorityThenOldestAndStartsAnAttempt) {
  catalog_->Submit(Spec("low-old", Priority::kLow), At(0));
  catalog_->Submit(Spec("normal-old", Priority::kNormal), At(1));
  catalog_->Submit(Spec("high-new", Priority::kHigh), At(3));
  catalog_->Submit(Spec("normal-new", Priority::kNormal), At(2));
  std::vector<JobRecord> claimed = catalog_->ClaimJobs("w1", 3, seconds(30), At(10));
  ASSERT_EQ(claimed.size(), 3u);
  EXPECT_EQ(claimed[0].job_id, "high-new");
  EXPECT_EQ(claimed[1].job_id, "normal-old");
  EXPECT_EQ(claimed[2].job_id, "normal-new");
  for (const JobRecord& job : claimed) {
    EXPECT_EQ(job.status, JobStatus::kRunning);
    EXPECT_EQ(job.attempt, 1);
    EXPECT_EQ(job.worker_id, "w1");
    EXPECT_EQ(job.started_at, At(10));
    EXPECT_EQ(job.lease_expires_at, At(40));
  }
  claimed = catalog_->ClaimJobs("w2", 3, seconds(30), At(11));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].job_id, "low-old");
  EXPECT_TRUE(catalog_->ClaimJobs("w2", 3, seconds(30), At(12)).empty());
}

TEST_P(CatalogTest, JobsKeepTheirEngineAndClaimsTakeOnlyTheGivenEngines) {
  JobSpec named = Spec("named");
  named.config_json = R"({"engine":"momentum","lookback":20})";
  JobSpec given = Spec("given");
  given.engine = "r-engine";
  catalog_->Submit(Spec("plain"), At(0));
  catalog_->Submit(named, At(1));
  catalog_->Submit(given, At(2));
  EXPECT_EQ(catalog_->GetJob("plain").engine, "synthetic");
  EXPECT_EQ(catalog_->GetJob("named").engine, "momentum");
  EXPECT_EQ(catalog_->GetJob("given").engine, "r-engine");

  JobFilter filter;
  filter.engines = {"momentum", "synthetic"};
  std::vector<std::string> listed;
  for (const JobRecord& job : catalog_->ListJobs(filter, {}).jobs) listed.push_back(job.job_id);
  EXPECT_EQ(listed, (std::vector<std::string>{"named", "plain"}));

  EXPECT_TRUE(catalog_->ClaimJobs("w1", 5, seconds(30), At(10), {"quantum"}).empty());
  std::vector<JobRecord> claimed =
      catalog_->ClaimJobs("w1", 5, seconds(30), At(10), {"momentum", "r-engine"});
  ASSERT_EQ(claimed.size(), 2u);
  EXPECT_EQ(claimed[0].job_id, "named");
  EXPECT_EQ(claimed[1].job_id, "given");
  EXPECT_EQ(catalog_->GetJob("plain").status, JobStatus::kPending);
  EXPECT_THROW(catalog_->ClaimJobs("w1", 5, seconds(30), At(10), {"bad name"}), InvalidArgument);
  JobSpec bad = Spec("bad-engine");
  bad.config_json = R"({"engine":"no spaces allowed"})";
  EXPECT_THROW(catalog_->Submit(bad, At(11)), InvalidArgument);
  EXPECT_FALSE(catalog_->FindJob("bad-engine"));
}

TEST_P(CatalogTest, ConcurrentClaimersNeverGetTheSameJob) {
  constexpr int kJobs = 60;
  constexpr int kThreads = 6;
  for (int i = 0; i < kJobs; ++i) catalog_->Submit(Spec("job-" + std::to_string(i)), At(i));
  std::vector<std::vector<std::string>> claimed(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each claimer has its own catalog (connection), as separate workers would.
      std::unique_ptr<Catalog> catalog = Catalog::Open(url_);
      const std::string worker = std::to_string(t);
      for (;;) {
        std::vector<JobRecord> jobs = catalog->ClaimJobs(worker, 2, seconds(30), At(100));
        if (jobs.empty()) break;
        for (const JobRecord& job : jobs) {
          if (job.attempt != 1) ++failures;
          claimed[t].push_back(job.job_id);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::map<std::string, int> times;
  for (const auto& ids : claimed) {
    for (const std::string& id : ids) ++times[id];
  }
  EXPECT_EQ(times.size(), static_cast<size_t>(kJobs));
  for (const auto& [id, count] : times) EXPECT_EQ(count, 1) << id;
  EXPECT_EQ(failures.load(), 0);
}

TEST_P(CatalogTest, ClaimersInSeparateProcessesNeverGetTheSameJob) {
  constexpr int kJobs = 40;
  constexpr int kProcesses = 4;
  for (int i = 0; i < kJobs; ++i) catalog_->Submit(Spec("job-" + std::to_string(i)), At(i));
  std::vector<pid_t> children;
  for (int n = 0; n < kProcesses; ++n) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child writes what it claimed to a file and leaves with _exit, so that it runs no
      // destructor of the parent's objects (the PostgreSQL cluster belongs to the parent).
      int status = 0;
      try {
        std::unique_ptr<Catalog> catalog = Catalog::Open(url_);
        std::ofstream out(dir_.path() / ("claims-" + std::to_string(n)));
        for (;;) {
          std::vector<JobRecord> jobs = catalog->ClaimJobs("p", 1, seconds(30), At(100));
          if (jobs.empty()) break;
          out << jobs[0].job_id << "\n";
        }
      } catch (const std::exception& error) {
        std::cerr << "claimer " << n << ": " << error.what() << std::endl;
        status = 1;
      }
      _exit(status);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::map<std::string, int> times;
  for (int n = 0; n < kProcesses; ++n) {
    std::ifstream in(dir_.path() / ("claims-" + std::to_string(n)));
    for (std::string id; std::getline(in, id);) ++times[id];
  }
  EXPECT_EQ(times.size(), static_cast<size_t>(kJobs));
  for (const auto& [id, count] : times) EXPECT_EQ(count, 1) << id;
}

TEST_P(CatalogTest, ThreadsSharingOneCatalogClaimEachJobOnce) {
  constexpr int kJobs = 40;
  for (int i = 0; i < kJobs; ++i) catalog_->Submit(Spec("job-" + std::to_string(i)), At(i));
  std::mutex mutex;
  std::multiset<std::string> claimed;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (;;) {
        std::vector<JobRecord> jobs = catalog_->ClaimJobs("w", 1, seconds(30), At(100));
        if (jobs.empty()) break;
        std::lock_guard lock(mutex);
        claimed.insert(jobs[0].job_id);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(claimed.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(std::set<std::string>(claimed.begin(), claimed.end()).size(),
            static_cast<size_t>(kJobs));
}

TEST_P(CatalogTest, HeartbeatIsFencedByAttemptAndRecordsProgressAndCheckpoint) {
  SubmitAndClaim("job-1", 0);
  HeartbeatResult beat = catalog_->Heartbeat("job-1", 1, 40, "/ck/1", seconds(30), At(5));
  EXPECT_TRUE(beat.owned);
  EXPECT_FALSE(beat.cancel_requested);
  beat = catalog_->Heartbeat("job-1", 1, 50, std::nullopt, seconds(30), At(6));
  JobRecord job = catalog_->GetJob("job-1");
  EXPECT_EQ(job.progress_pct, 50);
  EXPECT_EQ(job.checkpoint_path, "/ck/1");  // kept when the heartbeat has none
  EXPECT_EQ(job.heartbeat_at, At(6));
  EXPECT_EQ(job.lease_expires_at, At(36));

  // The attempt fails and is retried: the old attempt's heartbeat must not touch the new one.
  catalog_->Fail("job-1", 1, "boom", milliseconds(0), At(7));
  ASSERT_EQ(catalog_->ClaimJobs("w2", 1, seconds(30), At(8)).size(), 1u);
  beat = catalog_->Heartbeat("job-1", 1, 99, "/ck/stale", seconds(30), At(9));
  EXPECT_FALSE(beat.owned);
  job = catalog_->GetJob("job-1");
  EXPECT_EQ(job.attempt, 2);
  EXPECT_EQ(job.checkpoint_path, "/ck/1");
  EXPECT_EQ(job.progress_pct, 50);

  catalog_->RequestCancel("job-1", At(10));
  beat = catalog_->Heartbeat("job-1", 2, 60, std::nullopt, seconds(30), At(11));
  EXPECT_TRUE(beat.owned);
  EXPECT_TRUE(beat.cancel_requested);
  EXPECT_THROW(catalog_->Heartbeat("job-1", 2, 101, std::nullopt, seconds(30), At(12)),
               InvalidArgument);
}

TEST_P(CatalogTest, CompleteRecordsTheResultInOneMoveWithExactMetrics) {
  SubmitAndClaim("job-1", 0);
  TransitionResult result = catalog_->Complete("job-1", 1, Completion("job-1"), At(20));
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kCompleted);
  EXPECT_EQ(result.attempt, 1);
  JobRecord job = catalog_->GetJob("job-1");
  EXPECT_EQ(job.status, JobStatus::kCompleted);
  EXPECT_EQ(job.completed_at, At(20));
  EXPECT_EQ(job.progress_pct, 100);
  EXPECT_EQ(job.result_path, "/results/job-1");
  EXPECT_EQ(job.snapshot_id, "snap-2026-01-05");
  ASSERT_TRUE(job.dataset_version_ids_json.has_value());
  EXPECT_NE(job.dataset_version_ids_json->find("\"v7\""), std::string::npos);
  CompletionRecord expected = Completion("job-1");
  EXPECT_EQ(Bits(job.metrics.mean_ic), Bits(0.1));
  EXPECT_EQ(Bits(job.metrics.icir), Bits(expected.metrics.icir));
  EXPECT_EQ(Bits(job.metrics.hit_rate), Bits(5e-324));
  EXPECT_EQ(Bits(job.metrics.coverage), Bits(1.7976931348623157e308));
  EXPECT_EQ(Bits(job.metrics.long_short_spread), Bits(-2.5e-7));
  EXPECT_TRUE(std::isnan(job.metrics.average_turnover));
  EXPECT_TRUE(std::isnan(job.metrics.decay_half_life));

  // A second completion (a duplicate or a stale worker) changes nothing.
  result = catalog_->Complete("job-1", 1, Completion("other"), At(30));
  EXPECT_FALSE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kCompleted);
  EXPECT_EQ(catalog_->GetJob("job-1").result_path, "/results/job-1");
  EXPECT_THROW(catalog_->Complete("missing", 1, Completion("x"), At(30)), JobNotFound);
}

TEST_P(CatalogTest, BatchClaimsRacingEachOtherHandEveryJobToOneClaimerWithItsOwnLease) {
  constexpr int kJobs = 64;
  constexpr int kBatch = 16;
  for (int i = 0; i < kJobs; ++i) catalog_->Submit(Spec("job-" + std::to_string(i)), At(i));
  std::vector<std::vector<JobRecord>> claimed(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      // Two workers, each with its own catalog, claim whole batches at the same moment.
      std::unique_ptr<Catalog> catalog = Catalog::Open(url_);
      for (;;) {
        std::vector<JobRecord> jobs =
            catalog->ClaimJobs("w" + std::to_string(t), kBatch, seconds(30), At(100 + t));
        if (jobs.empty()) break;
        EXPECT_LE(jobs.size(), static_cast<size_t>(kBatch));
        claimed[t].insert(claimed[t].end(), jobs.begin(), jobs.end());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::map<std::string, int> times;
  for (int t = 0; t < 2; ++t) {
    for (const JobRecord& job : claimed[t]) {
      ++times[job.job_id];
      // Each job of a batch is an attempt of its own: fenced by its attempt, leased by its row.
      EXPECT_EQ(job.attempt, 1);
      EXPECT_EQ(job.worker_id, "w" + std::to_string(t));
      EXPECT_EQ(job.lease_expires_at, At(130 + t));
      JobRecord row = catalog_->GetJob(job.job_id);
      EXPECT_EQ(row.worker_id, job.worker_id);
      EXPECT_EQ(row.status, JobStatus::kRunning);
    }
  }
  EXPECT_EQ(times.size(), static_cast<size_t>(kJobs));
  for (const auto& [id, count] : times) EXPECT_EQ(count, 1) << id;
}

TEST_P(CatalogTest, ABatchClaimedByADeadWorkerIsRescuedWhole) {
  for (int i = 0; i < 5; ++i) catalog_->Submit(Spec("job-" + std::to_string(i)), At(i));
  ASSERT_EQ(catalog_->ClaimJobs("dead", 5, seconds(30), At(10)).size(), 5u);
  EXPECT_TRUE(catalog_->RescueExpired(At(39), milliseconds(0), 100).empty());
  std::vector<JobRecord> rescued = catalog_->RescueExpired(At(41), milliseconds(0), 100);
  ASSERT_EQ(rescued.size(), 5u);
  for (const JobRecord& job : rescued) {
    EXPECT_EQ(job.status, JobStatus::kPending) << job.job_id;
    EXPECT_EQ(job.retry_count, 1) << job.job_id;
  }
  EXPECT_EQ(catalog_->ClaimJobs("alive", 5, seconds(30), At(42)).size(), 5u);
}

TEST_P(CatalogTest, AGroupCommitCompletesEveryAttemptThatStillOwnsItsJobAndNoOther) {
  for (int i = 0; i < 4; ++i) catalog_->Submit(Spec("job-" + std::to_string(i)), At(i));
  std::vector<JobRecord> claimed = catalog_->ClaimJobs("w1", 4, seconds(30), At(10));
  ASSERT_EQ(claimed.size(), 4u);
  // The leases expired: every job is rescued.
  ASSERT_EQ(catalog_->RescueExpired(At(41), milliseconds(0), 100).size(), 4u);
  // All four run again in attempt 2; the group below completes attempt 2 of three of them and
  // carries job-1's stale attempt 1.
  std::vector<JobRecord> again = catalog_->ClaimJobs("w1", 4, seconds(30), At(43));
  ASSERT_EQ(again.size(), 4u);
  // job-2 has a cancel requested: it must not complete either.
  catalog_->RequestCancel("job-2", At(44));
  std::vector<CompletionRequest> requests;
  for (int i = 0; i < 4; ++i) {
    const std::string id = "job-" + std::to_string(i);
    requests.push_back({id, i == 1 ? 1 : 2, Completion(id)});
  }
  requests[3].record.cost_config_json = R"({"bps": 5})";
  std::vector<TransitionResult> results = catalog_->CompleteMany(requests, At(45));
  ASSERT_EQ(results.size(), 4u);
  EXPECT_TRUE(results[0].applied);
  EXPECT_FALSE(results[1].applied);  // the stale attempt
  EXPECT_EQ(results[1].status, JobStatus::kRunning);
  EXPECT_EQ(results[1].attempt, 2);
  EXPECT_FALSE(results[2].applied);  // the cancel wins
  EXPECT_TRUE(results[3].applied);
  for (int i : {0, 3}) {
    JobRecord job = catalog_->GetJob("job-" + std::to_string(i));
    EXPECT_EQ(job.status, JobStatus::kCompleted);
    EXPECT_EQ(job.completed_at, At(45));
    EXPECT_EQ(job.progress_pct, 100);
    EXPECT_EQ(job.result_path, "/results/job-" + std::to_string(i));
    EXPECT_EQ(job.snapshot_id, "snap-2026-01-05");
    ASSERT_TRUE(job.dataset_version_ids_json.has_value());
    EXPECT_NE(job.dataset_version_ids_json->find("\"v7\""), std::string::npos);
    // The metrics come through the group's statement bit for bit, non-finite ones as null.
    const Metrics expected = Completion("x").metrics;
    for (size_t m = 0; m < Metrics::kNames.size(); ++m) {
      if (std::isfinite(expected.At(m))) {
        EXPECT_EQ(Bits(job.metrics.At(m)), Bits(expected.At(m))) << Metrics::kNames[m];
      } else {
        EXPECT_TRUE(std::isnan(job.metrics.At(m))) << Metrics::kNames[m];
      }
    }
  }
  EXPECT_EQ(catalog_->GetJob("job-0").cost_config_json, std::nullopt);
  ASSERT_TRUE(catalog_->GetJob("job-3").cost_config_json.has_value());
  EXPECT_NE(catalog_->GetJob("job-3").cost_config_json->find("\"bps\""), std::string::npos);
  for (int i : {1, 2}) {
    JobRecord job = catalog_->GetJob("job-" + std::to_string(i));
    EXPECT_EQ(job.status, JobStatus::kRunning);
    EXPECT_EQ(job.result_path, std::nullopt);
  }
  EXPECT_TRUE(catalog_->CompleteMany({}, At(46)).empty());
}

TEST_P(CatalogTest, AGroupCommitNamingAJobTwiceCompletesItOnce) {
  SubmitAndClaim("job-1", 0);
  CompletionRecord second = Completion("job-1");
  second.result_path = "/results/second";
  std::vector<TransitionResult> results =
      catalog_->CompleteMany({{"job-1", 1, Completion("job-1")}, {"job-1", 1, second}}, At(5));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].applied);
  EXPECT_FALSE(results[1].applied);
  EXPECT_EQ(results[1].status, JobStatus::kCompleted);
  EXPECT_EQ(catalog_->GetJob("job-1").result_path, "/results/job-1");
}

TEST_P(CatalogTest, AGroupCommitWithAMissingJobAppliesNothing) {
  SubmitAndClaim("job-1", 0);
  std::vector<CompletionRequest> requests = {{"job-1", 1, Completion("job-1")},
                                             {"missing", 1, Completion("missing")}};
  EXPECT_THROW(catalog_->CompleteMany(requests, At(5)), JobNotFound);
  EXPECT_EQ(catalog_->GetJob("job-1").status, JobStatus::kRunning);
}

TEST_P(CatalogTest, CostBlocksAreNullUntilACompletionCopiesThem) {
  JobRecord claimed = SubmitAndClaim("job-1", 0);
  EXPECT_EQ(claimed.cost_config_json, std::nullopt);
  EXPECT_EQ(claimed.cost_summary_json, std::nullopt);
  CompletionRecord record = Completion("job-1");
  record.cost_config_json = R"({"commission_bps": 1.5, "model": "linear", "tiers": [1, 2.25]})";
  record.cost_summary_json = R"({"total_cost_drag": -0.000123, "turnover": 0.30000000000000004})";
  ASSERT_TRUE(catalog_->Complete("job-1", 1, record, At(20)).applied);
  JobRecord job = catalog_->GetJob("job-1");
  ASSERT_TRUE(job.cost_config_json && job.cost_summary_json);
  // JSONB normalises the text; the values are kept exactly.
  EXPECT_EQ(nlohmann::json::parse(*job.cost_config_json),
            nlohmann::json::parse(*record.cost_config_json));
  EXPECT_EQ(nlohmann::json::parse(*job.cost_summary_json),
            nlohmann::json::parse(*record.cost_summary_json));
  EXPECT_EQ(Bits(nlohmann::json::parse(*job.cost_summary_json)["turnover"].get<double>()),
            Bits(0.30000000000000004));

  // A completion without them leaves NULL.
  SubmitAndClaim("job-2", 30);
  ASSERT_TRUE(catalog_->Complete("job-2", 1, Completion("job-2"), At(40)).applied);
  EXPECT_EQ(catalog_->GetJob("job-2").cost_config_json, std::nullopt);
  EXPECT_EQ(catalog_->GetJob("job-2").cost_summary_json, std::nullopt);
}

TEST_P(CatalogTest, InsertCompletedCreatesACompletedJobOnceAndReturnsTheExistingOneAfter) {
  CompletionRecord record = Completion("imported");
  record.cost_summary_json = R"({"total_cost_drag": 0.25})";
  SubmitResult first = catalog_->InsertCompleted(Spec("imported"), record, At(5));
  EXPECT_TRUE(first.created);
  const JobRecord& job = first.job;
  EXPECT_EQ(job.status, JobStatus::kCompleted);
  EXPECT_EQ(job.created_at, At(5));
  EXPECT_EQ(job.started_at, At(5));
  EXPECT_EQ(job.completed_at, At(5));
  EXPECT_EQ(job.progress_pct, 100);
  EXPECT_EQ(job.attempt, 0);
  EXPECT_EQ(job.result_path, "/results/imported");
  EXPECT_EQ(job.snapshot_id, "snap-2026-01-05");
  EXPECT_EQ(Bits(job.metrics.hit_rate), Bits(5e-324));
  EXPECT_TRUE(std::isnan(job.metrics.average_turnover));
  EXPECT_EQ(job.cost_config_json, std::nullopt);
  ASSERT_TRUE(job.cost_summary_json.has_value());
  EXPECT_EQ(nlohmann::json::parse(*job.cost_summary_json)["total_cost_drag"], 0.25);
  ExpectSameJob(catalog_->GetJob("imported"), job);
  // Never claimed: it is not pending.
  EXPECT_TRUE(catalog_->ClaimJobs("worker-1", 5, seconds(30), At(6)).empty());

  SubmitResult again = catalog_->InsertCompleted(Spec("imported"), Completion("other"), At(9));
  EXPECT_FALSE(again.created);
  ExpectSameJob(again.job, job);
  // A submitted job's id is taken too.
  catalog_->Submit(Spec("submitted"), At(10));
  SubmitResult taken = catalog_->InsertCompleted(Spec("submitted"), record, At(11));
  EXPECT_FALSE(taken.created);
  EXPECT_EQ(taken.job.status, JobStatus::kPending);
  EXPECT_EQ(taken.job.result_path, std::nullopt);
}

TEST_P(CatalogTest, CancelRequestedBeforeCompletionWins) {
  SubmitAndClaim("job-1", 0);
  JobRecord asked = catalog_->RequestCancel("job-1", At(5));
  EXPECT_EQ(asked.status, JobStatus::kRunning);
  EXPECT_TRUE(asked.cancel_requested);
  EXPECT_TRUE(catalog_->RequestCancel("job-1", At(6)).cancel_requested);  // idempotent

  TransitionResult result = catalog_->Complete("job-1", 1, Completion("job-1"), At(7));
  EXPECT_FALSE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kRunning);
  EXPECT_EQ(catalog_->GetJob("job-1").result_path, std::nullopt);

  result = catalog_->AcknowledgeCancel("job-1", 1, At(8));
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kCancelled);
  JobRecord job = catalog_->GetJob("job-1");
  EXPECT_EQ(job.status, JobStatus::kCancelled);
  EXPECT_EQ(job.completed_at, At(8));

  result = catalog_->Complete("job-1", 1, Completion("job-1"), At(9));
  EXPECT_FALSE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kCancelled);
}

TEST_P(CatalogTest, AcknowledgeCancelNeedsARequestedCancel) {
  SubmitAndClaim("job-1", 0);
  TransitionResult result = catalog_->AcknowledgeCancel("job-1", 1, At(5));
  EXPECT_FALSE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kRunning);
}

TEST_P(CatalogTest, CompletionBeforeCancelWinsAndCancelThenFails) {
  SubmitAndClaim("job-1", 0);
  ASSERT_TRUE(catalog_->Complete("job-1", 1, Completion("job-1"), At(5)).applied);
  try {
    catalog_->RequestCancel("job-1", At(6));
    FAIL() << "cancel of a completed job did not throw";
  } catch (const InvalidTransition& error) {
    EXPECT_EQ(error.details().at("job_id"), "job-1");
    EXPECT_EQ(error.details().at("status"), "completed");
  }
  EXPECT_EQ(catalog_->GetJob("job-1").status, JobStatus::kCompleted);
}

TEST_P(CatalogTest, CancelOfAPendingJobIsImmediate) {
  catalog_->Submit(Spec("job-1"), At(0));
  JobRecord job = catalog_->RequestCancel("job-1", At(3));
  EXPECT_EQ(job.status, JobStatus::kCancelled);
  EXPECT_EQ(job.completed_at, At(3));
  EXPECT_FALSE(job.cancel_requested);
  EXPECT_TRUE(catalog_->ClaimJobs("w", 1, seconds(30), At(4)).empty());
  EXPECT_THROW(catalog_->RequestCancel("job-1", At(5)), InvalidTransition);
  EXPECT_THROW(catalog_->RequestCancel("missing", At(5)), JobNotFound);
}

TEST_P(CatalogTest, FailRetriesAfterTheDelayThenFails) {
  SubmitAndClaim("job-1", 0, /*max_retries=*/1);
  TransitionResult result = catalog_->Fail("job-1", 1, "first error", milliseconds(5000), At(10));
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kPending);
  JobRecord job = catalog_->GetJob("job-1");
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_EQ(job.run_after, At(15));
  EXPECT_EQ(job.error_message, "first error");
  EXPECT_EQ(job.completed_at, std::nullopt);

  EXPECT_TRUE(catalog_->ClaimJobs("w", 1, seconds(30), At(14)).empty());  // backing off
  std::vector<JobRecord> claimed = catalog_->ClaimJobs("w", 1, seconds(30), At(15));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].attempt, 2);

  // A stale attempt cannot fail the new one.
  result = catalog_->Fail("job-1", 1, "stale", milliseconds(0), At(16));
  EXPECT_FALSE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kRunning);
  EXPECT_EQ(result.attempt, 2);

  result = catalog_->Fail("job-1", 2, "second error", milliseconds(5000), At(20));
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kFailed);
  job = catalog_->GetJob("job-1");
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_EQ(job.completed_at, At(20));
  EXPECT_EQ(job.error_message, "second error");
}

TEST_P(CatalogTest, FailOfAJobAskedToCancelCancelsIt) {
  SubmitAndClaim("job-1", 0);
  catalog_->RequestCancel("job-1", At(1));
  TransitionResult result = catalog_->Fail("job-1", 1, "stopped", milliseconds(0), At(2));
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kCancelled);
  JobRecord job = catalog_->GetJob("job-1");
  EXPECT_EQ(job.retry_count, 0);
  EXPECT_EQ(job.completed_at, At(2));
}

TEST_P(CatalogTest, RescueRetriesOrFailsJobsWhoseLeaseExpired) {
  SubmitAndClaim("retry-me", 0, /*max_retries=*/1);
  SubmitAndClaim("fail-me", 1, /*max_retries=*/0);
  SubmitAndClaim("cancel-me", 2, /*max_retries=*/1);
  SubmitAndClaim("alive", 3, /*max_retries=*/1);
  catalog_->RequestCancel("cancel-me", At(4));
  catalog_->Heartbeat("alive", 1, 10, std::nullopt, seconds(300), At(5));

  EXPECT_TRUE(catalog_->RescueExpired(At(29), milliseconds(1000), 10).empty());
  std::vector<JobRecord> rescued = catalog_->RescueExpired(At(40), milliseconds(1000), 10);
  ASSERT_EQ(rescued.size(), 3u);
  std::map<std::string, JobRecord> by_id;
  for (const JobRecord& job : rescued) by_id[job.job_id] = job;
  EXPECT_EQ(by_id.at("retry-me").status, JobStatus::kPending);
  EXPECT_EQ(by_id.at("retry-me").retry_count, 1);
  EXPECT_EQ(by_id.at("retry-me").run_after, At(41));
  const JobRecord& failed = by_id.at("fail-me");
  EXPECT_EQ(failed.status, JobStatus::kFailed);
  EXPECT_EQ(failed.completed_at, At(40));
  ASSERT_TRUE(failed.error_message.has_value());
  EXPECT_NE(failed.error_message->find("worker-1"), std::string::npos) << *failed.error_message;
  EXPECT_NE(failed.error_message->find(FormatTimestamp(At(1))), std::string::npos)
      << *failed.error_message;
  EXPECT_EQ(by_id.at("cancel-me").status, JobStatus::kCancelled);
  EXPECT_EQ(catalog_->GetJob("alive").status, JobStatus::kRunning);

  // The dead worker's late completion loses; the retried job runs as attempt 2.
  EXPECT_FALSE(catalog_->Complete("retry-me", 1, Completion("retry-me"), At(42)).applied);
  std::vector<JobRecord> claimed = catalog_->ClaimJobs("w2", 1, seconds(30), At(42));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].job_id, "retry-me");
  EXPECT_EQ(claimed[0].attempt, 2);
}

TEST_P(CatalogTest, RescueHonoursItsBatchLimit) {
  for (int i = 0; i < 5; ++i) SubmitAndClaim("job-" + std::to_string(i), i);
  EXPECT_EQ(catalog_->RescueExpired(At(100), milliseconds(0), 2).size(), 2u);
  EXPECT_EQ(catalog_->RescueExpired(At(100), milliseconds(0), 10).size(), 3u);
}

TEST_P(CatalogTest, ResumePutsFailedAndCancelledJobsBackKeepingTheCheckpoint) {
  SubmitAndClaim("job-1", 0, /*max_retries=*/0);
  catalog_->Heartbeat("job-1", 1, 70, "/ck/job-1/3", seconds(30), At(1));
  catalog_->RequestCancel("job-1", At(2));
  catalog_->AcknowledgeCancel("job-1", 1, At(3));
  JobRecord job = catalog_->Resume("job-1", At(4));
  EXPECT_EQ(job.status, JobStatus::kPending);
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_FALSE(job.cancel_requested);
  EXPECT_EQ(job.completed_at, std::nullopt);
  EXPECT_EQ(job.error_message, std::nullopt);
  EXPECT_EQ(job.worker_id, std::nullopt);
  EXPECT_EQ(job.started_at, std::nullopt);
  EXPECT_EQ(job.lease_expires_at, std::nullopt);
  EXPECT_EQ(job.checkpoint_path, "/ck/job-1/3");

  std::vector<JobRecord> claimed = catalog_->ClaimJobs("w", 1, seconds(30), At(5));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].attempt, 2);
  EXPECT_FALSE(claimed[0].cancel_requested);  // the old request does not cancel the re-run
  catalog_->Fail("job-1", 2, "broken", milliseconds(0), At(6));
  EXPECT_EQ(catalog_->GetJob("job-1").status, JobStatus::kFailed);
  EXPECT_EQ(catalog_->Resume("job-1", At(7)).retry_count, 2);
}

TEST_P(CatalogTest, ResumeRefusesOtherStatusesWithDetails) {
  catalog_->Submit(Spec("pending"), At(0));
  SubmitAndClaim("done", 1);
  catalog_->Complete("done", 1, Completion("done"), At(2));
  for (const std::string& id : {std::string("pending"), std::string("done")}) {
    try {
      catalog_->Resume(id, At(3));
      FAIL() << "resume of " << id << " did not throw";
    } catch (const InvalidTransition& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidTransition);
      EXPECT_EQ(error.details().at("job_id"), id);
      EXPECT_EQ(error.details().at("status"), id == "done" ? "completed" : "pending");
      EXPECT_EQ(error.details().at("request"), "resume");
    }
  }
  EXPECT_THROW(catalog_->Resume("missing", At(3)), JobNotFound);
}

TEST_P(CatalogTest, ResumeRefusesAJobThatRetentionIsRemoving) {
  SubmitAndClaim("job-1", 0, 0);
  catalog_->Fail("job-1", 1, "x", milliseconds(0), At(1));
  ASSERT_EQ(catalog_->MarkExpiring(At(100), 10, At(100)).size(), 1u);
  try {
    catalog_->Resume("job-1", At(101));
    FAIL() << "resume of an expiring job did not throw";
  } catch (const InvalidTransition& error) {
    EXPECT_EQ(error.details().at("status"), "failed");
    EXPECT_TRUE(error.details().count("expiring_at"));
  }
}

TEST_P(CatalogTest, PinningExemptsFromRetention) {
  catalog_->Submit(Spec("job-1"), At(0));
  catalog_->RequestCancel("job-1", At(1));
  catalog_->SetPinned("job-1", true);
  EXPECT_TRUE(catalog_->GetJob("job-1").pinned);
  EXPECT_TRUE(catalog_->FindExpired(At(1000), 10, std::nullopt).empty());
  catalog_->SetPinned("job-1", false);
  EXPECT_EQ(catalog_->FindExpired(At(1000), 10, std::nullopt).size(), 1u);
  EXPECT_THROW(catalog_->SetPinned("missing", true), JobNotFound);
}

TEST_P(CatalogTest, RetentionFindsMarksAndDeletesOnlyAgedTerminalJobs) {
  // Terminal long ago, by completed_at: removed.
  SubmitAndClaim("old-done", 0);
  catalog_->Complete("old-done", 1, Completion("old-done"), At(10));
  catalog_->Submit(Spec("old-cancelled"), At(1));
  catalog_->RequestCancel("old-cancelled", At(11));
  // Created long ago but failed, resumed and ended recently: its age counts from completed_at.
  SubmitAndClaim("rerun", 2, 0);
  catalog_->Fail("rerun", 1, "x", milliseconds(0), At(12));
  catalog_->Resume("rerun", At(500));
  catalog_->ClaimJobs("w", 1, seconds(30), At(500));
  catalog_->Fail("rerun", 2, "y", milliseconds(0), At(600));
  // Never removed: pending and running jobs, however old.
  catalog_->Submit(Spec("old-pending", Priority::kLow), At(3));
  SubmitAndClaim("old-running", 4);

  const Timestamp cutoff = At(100);
  std::vector<RetentionCandidate> found = catalog_->FindExpired(cutoff, 10, std::nullopt);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].job_id, "old-cancelled");
  EXPECT_EQ(found[0].status, JobStatus::kCancelled);
  EXPECT_EQ(found[0].aged_from, At(11));
  EXPECT_EQ(found[1].job_id, "old-done");
  EXPECT_EQ(found[1].result_path, "/results/old-done");
  // Paging by job_id, and FindExpired writes nothing.
  found = catalog_->FindExpired(cutoff, 1, std::string("old-cancelled"));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].job_id, "old-done");
  EXPECT_EQ(catalog_->GetJob("old-done").expiring_at, std::nullopt);

  std::vector<RetentionCandidate> marked = catalog_->MarkExpiring(cutoff, 1, At(700));
  ASSERT_EQ(marked.size(), 1u);
  EXPECT_EQ(marked[0].job_id, "old-cancelled");
  EXPECT_EQ(catalog_->GetJob("old-cancelled").expiring_at, At(700));
  // A later run returns the earlier mark too (a crashed run's work is finished), keeping it.
  marked = catalog_->MarkExpiring(cutoff, 10, At(800));
  ASSERT_EQ(marked.size(), 2u);
  EXPECT_EQ(catalog_->GetJob("old-cancelled").expiring_at, At(700));
  // Marked jobs stay candidates even with a cutoff they no longer match.
  EXPECT_EQ(catalog_->FindExpired(At(0), 10, std::nullopt).size(), 2u);

  // Delete re-checks: unmarked and non-terminal rows are never deleted.
  std::vector<std::string> deleted = catalog_->DeleteExpiring(
      {"old-done", "old-cancelled", "old-pending", "old-running", "rerun", "missing", "old-done"});
  EXPECT_EQ(deleted, (std::vector<std::string>{"old-cancelled", "old-done"}));
  EXPECT_EQ(catalog_->FindJob("old-done"), std::nullopt);
  EXPECT_EQ(catalog_->FindJob("old-cancelled"), std::nullopt);
  for (const char* kept : {"old-pending", "old-running", "rerun"}) {
    EXPECT_TRUE(catalog_->FindJob(kept).has_value()) << kept;
  }
  EXPECT_TRUE(catalog_->DeleteExpiring({}).empty());
}

TEST_P(CatalogTest, DeleteExpiringHandlesManyJobsInBatches) {
  constexpr int kJobs = 520;  // more than one batch of 500
  for (int i = 0; i < kJobs; ++i) {
    std::string id = "job-" + std::to_string(i);
    catalog_->Submit(Spec(id), At(i));
    catalog_->RequestCancel(id, At(i));
  }
  std::vector<std::string> ids;
  for (const RetentionCandidate& c : catalog_->MarkExpiring(At(kJobs + 1), 2000, At(kJobs + 2))) {
    ids.push_back(c.job_id);
  }
  ASSERT_EQ(ids.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(catalog_->DeleteExpiring(ids).size(), static_cast<size_t>(kJobs));
  EXPECT_TRUE(catalog_->ListJobs({}, {}).jobs.empty());
}

TEST_P(CatalogTest, MigrateTwiceIsANoOp) {
  EXPECT_EQ(catalog_->Migrate(), 0);
  std::unique_ptr<Catalog> other = Catalog::Open(url_);
  EXPECT_EQ(other->Migrate(), 0);
}

TEST_P(CatalogTest, ConcurrentMigrationsOfAFreshDatabaseApplyEachVersionOnce) {
  const std::string url = NewCatalogUrl(GetParam(), dir_.path());
  constexpr int kMigrators = 4;
  std::vector<int> applied(kMigrators, -1);
  std::vector<std::string> errors(kMigrators);
  std::vector<std::thread> threads;
  for (int i = 0; i < kMigrators; ++i) {
    threads.emplace_back([&, i] {
      try {
        applied[i] = Catalog::Open(url)->Migrate();
      } catch (const Error& error) {
        errors[i] = error.what();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  int total = 0;
  for (int i = 0; i < kMigrators; ++i) {
    EXPECT_EQ(errors[i], "");
    total += applied[i];
  }
  EXPECT_EQ(total, MigrationCount(GetParam()));
  std::unique_ptr<Catalog> catalog = Catalog::Open(url);
  EXPECT_EQ(catalog->Migrate(), 0);
  EXPECT_TRUE(catalog->Submit(Spec("job-1"), At(0)).created);
}

TEST_P(CatalogTest, AMigrationThatFailsHalfWayLeavesTheSchemaAsItWasAndTheNextMigrateFinishesIt) {
  std::string url = NewCatalogUrl(GetParam(), dir_.path());
  // On PostgreSQL, a lock the failed migration left behind (its advisory lock) makes the next
  // migrate fail after 10 s instead of waiting for ever.
  if (GetParam() == Backend::kPostgres) url += "?options=-c%20lock_timeout%3D10s";
  std::unique_ptr<Catalog> catalog = Catalog::Open(url);
  SqlSession operator_session(url);
  // A table named like an index that migration 0001 creates near its end: its CREATE TABLE
  // backtest_jobs and the first indexes succeed, then CREATE INDEX backtest_jobs_expiring_idx
  // fails.
  operator_session.Execute("CREATE TABLE backtest_jobs_expiring_idx (x INTEGER)");
  try {
    catalog->Migrate();
    FAIL() << "the migration did not fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backtest_jobs_expiring_idx"), std::string::npos)
        << e.what();
  }
  // Nothing of the failed migration remains, and it is not recorded as applied.
  EXPECT_THROW(operator_session.Query("SELECT count(*) FROM backtest_jobs"), std::runtime_error);
  EXPECT_EQ(operator_session.Query("SELECT count(*) FROM btstore_migrations").at(0).at(0), "0");
  EXPECT_THROW(catalog->FindJob("job-1"), InvalidArgument);  // still asks for a migration

  // Once the cause is gone, the next migrate (same catalog: nothing of the failure is held)
  // applies the whole migration, and the ones after it.
  operator_session.Execute("DROP TABLE backtest_jobs_expiring_idx");
  ASSERT_EQ(catalog->Migrate(), MigrationCount(GetParam()));
  EXPECT_EQ(Catalog::Open(url)->Migrate(), 0);
  EXPECT_TRUE(catalog->Submit(Spec("job-1"), At(0)).created);
  EXPECT_EQ(operator_session.Query("SELECT count(*) FROM btstore_migrations").at(0).at(0),
            std::to_string(MigrationCount(GetParam())));
}

TEST_P(CatalogTest, AnUnmigratedCatalogAsksForAMigration) {
  std::unique_ptr<Catalog> fresh = Catalog::Open(NewCatalogUrl(GetParam(), dir_.path()));
  EXPECT_THROW(fresh->FindJob("job-1"), InvalidArgument);
}

TEST_P(CatalogTest, ReportsItsBackendAndListenerSupport) {
  EXPECT_EQ(catalog_->Backend(), GetParam() == Backend::kSqlite ? "sqlite" : "postgresql");
  EXPECT_NE(catalog_->ListenForCancels(), nullptr);
}

// A cancel requested through another Catalog object of the same database wakes a listener with
// the job's id (PostgreSQL: NOTIFY; SQLite: the watched directory beside the file), once, and
// only for a running job.
TEST_P(CatalogTest, AListenerHearsTheCancelOfARunningJobOnly) {
  std::unique_ptr<CancelListener> listener = catalog_->ListenForCancels();
  ASSERT_NE(listener, nullptr);
  SubmitAndClaim("running-1", 0);
  ASSERT_TRUE(catalog_->Submit(Spec("pending-1"), At(1)).created);
  std::unique_ptr<Catalog> other = Catalog::Open(url_);
  other->RequestCancel("pending-1", At(2));  // cancelled at once: nobody to wake
  other->RequestCancel("running-1", At(3));
  EXPECT_EQ(listener->Wait(std::chrono::seconds(5)), std::optional<std::string>("running-1"));
  EXPECT_EQ(listener->Wait(std::chrono::milliseconds(200)), std::nullopt);
}

TEST(SqliteCatalog, AnInMemoryCatalogHasNoListener) {
  std::unique_ptr<Catalog> catalog = Catalog::Open("sqlite::memory:");
  EXPECT_EQ(catalog->ListenForCancels(), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Conformance, CatalogTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

TEST(CatalogOpen, RejectsUnknownOrMalformedUrls) {
  for (const char* url : {"", "sqlite:", "mysql://localhost/db", "catalog.db", "host='unterminated",
                          "postgresql://host:port:bad/db"}) {
    try {
      Catalog::Open(url);
      ADD_FAILURE() << "no error for " << url;
    } catch (const InvalidArgument& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    } catch (const Error& error) {
      ADD_FAILURE() << url << ": " << error.what();
    }
  }
  CatalogOptions no_pool;
  no_pool.pool_size = 0;
  EXPECT_THROW(Catalog::Open("sqlite:/tmp/never-created/x.db", no_pool), InvalidArgument);
}

TEST(CatalogOpen, SqliteCreatesTheParentDirectory) {
  TempDir dir;
  std::string path = (dir.path() / "a" / "b" / "catalog.db").string();
  std::unique_ptr<Catalog> catalog = Catalog::Open("sqlite:" + path);
  EXPECT_EQ(catalog->Migrate(), MigrationCount(Backend::kSqlite));
  EXPECT_TRUE(std::filesystem::exists(path));
}

// A catalog made before migration 0003 (and without the 0002 that another change numbers
// between): the runner applies the missing versions, and 0003 fills each job's engine from its
// config.
TEST(CatalogMigrations, AnOlderCatalogGetsEachJobsEngineFromItsConfig) {
  TempDir dir;
  const std::string path = (dir.path() / "old.db").string();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto exec = [&](const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
  };
  exec(
      "CREATE TABLE btstore_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
      "applied_at TEXT NOT NULL)");
  exec(std::string(internal::Migrations_sqlite().front().sql));
  exec("INSERT INTO btstore_migrations VALUES (1, 'backtest_jobs', '2026-01-01T00:00:00Z')");
  int n = 0;
  for (const char* config : {R"({"engine":"momentum"})", "{}", R"({"engine":7})"}) {
    const std::string id = "00000000-0000-4000-8000-00000000000" + std::to_string(n);
    exec(
        "INSERT INTO backtest_jobs (id, job_id, alpha_name, start_date, end_date, weight_method, "
        "config_json, created_at, created_by) VALUES ('" +
        id + "', 'old-" + std::to_string(n) + "', 'a', '2020-01-01', '2020-01-31', 'equal', '" +
        config + "', '2026-01-01T00:00:00.000000Z', 'alice')");
    ++n;
  }
  sqlite3_close(db);

  std::unique_ptr<Catalog> catalog = Catalog::Open("sqlite:" + path);
  EXPECT_EQ(catalog->Migrate(), MigrationCount(Backend::kSqlite) - 1);
  EXPECT_EQ(catalog->GetJob("old-0").engine, "momentum");
  EXPECT_EQ(catalog->GetJob("old-1").engine, "synthetic");
  EXPECT_EQ(catalog->GetJob("old-2").engine, "synthetic");
  EXPECT_EQ(catalog->ClaimJobs("w", 5, seconds(30), Now(), {"momentum"}).size(), 1u);
}

TEST(CatalogOpen, SqliteOnADirectoryIsUnavailable) {
  TempDir dir;
  EXPECT_THROW(Catalog::Open("sqlite:" + dir.path().string()), CatalogUnavailable);
}

TEST_P(CatalogTest, TokensAreFoundByHashListedAndRevokedOnce) {
  TokenRecord token;
  token.token_id = "tok-0123456789abcdef";
  token.user = "alice";
  token.role = Role::kSubmitter;
  token.token_hash = std::string(64, 'a');
  token.created_at = At(0);
  catalog_->InsertToken(token);
  TokenRecord other = token;
  other.token_id = "tok-fedcba9876543210";
  EXPECT_THROW(catalog_->InsertToken(other), InvalidArgument);  // the same hash
  other.token_hash = std::string(64, 'b');
  other.role = Role::kAdmin;
  other.created_at = At(5);
  catalog_->InsertToken(other);

  std::optional<TokenRecord> found = catalog_->FindTokenByHash(std::string(64, 'a'));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->token_id, token.token_id);
  EXPECT_EQ(found->user, "alice");
  EXPECT_EQ(found->role, Role::kSubmitter);
  EXPECT_EQ(found->created_at, At(0));
  EXPECT_FALSE(found->revoked_at.has_value());
  EXPECT_FALSE(catalog_->FindTokenByHash(std::string(64, 'c')).has_value());

  EXPECT_TRUE(catalog_->RevokeToken(token.token_id, At(10)));
  EXPECT_TRUE(catalog_->RevokeToken(token.token_id, At(20)));  // keeps the first time
  EXPECT_FALSE(catalog_->RevokeToken("tok-unknown", At(20)));
  std::vector<TokenRecord> tokens = catalog_->ListTokens();
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0].token_id, token.token_id);
  EXPECT_EQ(tokens[0].revoked_at, At(10));
  EXPECT_EQ(tokens[1].role, Role::kAdmin);
  EXPECT_FALSE(tokens[1].revoked_at.has_value());
}

TEST_P(CatalogTest, CountJobsGivesCountsOldestCreationAndStalestHeartbeat) {
  EXPECT_TRUE(catalog_->CountJobs().empty());
  catalog_->Submit(Spec("p1"), At(0));
  catalog_->Submit(Spec("p2"), At(5));
  catalog_->Submit(Spec("r1"), At(10));
  catalog_->Submit(Spec("r2"), At(11));
  // The oldest pending jobs are claimed first: p1 and p2 run, r1 and r2 wait.
  ASSERT_EQ(catalog_->ClaimJobs("w", 2, seconds(30), At(20)).size(), 2u);
  catalog_->Heartbeat("p2", 1, 10, std::nullopt, seconds(30), At(25));
  std::vector<StatusCount> counts = catalog_->CountJobs();
  ASSERT_EQ(counts.size(), 2u);
  for (const StatusCount& count : counts) {
    EXPECT_EQ(count.count, 2);
    if (count.status == JobStatus::kPending) {
      EXPECT_EQ(count.oldest_created_at, At(10));
    } else {
      EXPECT_EQ(count.status, JobStatus::kRunning);
      EXPECT_EQ(count.oldest_created_at, At(0));
      EXPECT_EQ(count.oldest_heartbeat_at, At(20));  // p1's claim; p2 beat at 25
    }
  }
}

}  // namespace
}  // namespace btstore::testing
