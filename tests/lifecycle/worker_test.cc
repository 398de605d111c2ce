// The Worker runtime on every backend: completion into a valid bundle, cancellation (also
// racing completion), resume from checkpoints, retries, several workers on one catalog, and
// fencing of a stale attempt.

#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "btstore/bundle.h"
#include "btstore/engine.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/worker_test_util.h"
#include "support/pg_cluster.h"
#include "support/result_compare.h"
#include "support/sql_session.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kBusinessDays = 65;  // 2024-01-01 .. 2024-03-29

using WorkerTest = LifecycleTest;

nlohmann::json EngineInfo(const BacktestResult& result) {
  return nlohmann::json::parse(result.extra_summary_json).at("engine");
}

TEST_P(WorkerTest, CompletesAJobIntoABundleIdenticalToAStandaloneRun) {
  JobSpec spec =
      Spec("w-complete", R"({"seed":3,"symbols":40,"checkpoint_every_days":10})", "signal");
  service_->Submit(spec);
  EventLog log;
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions(&log)), 1);

  JobRecord job = Job("w-complete");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.progress_pct, 100);
  ASSERT_TRUE(job.result_path);
  EXPECT_EQ(fs::path(*job.result_path), root_ / "w-complete");  // absolute, canonical
  EXPECT_EQ(job.snapshot_id, "synthetic-v1");
  BacktestResult stored = ReadBundle(*job.result_path);
  BacktestResult expected = GenerateSyntheticResult(spec);
  ExpectSameResult(stored, expected);
  EXPECT_TRUE(SameBits(job.metrics.mean_ic, expected.metrics.mean_ic));
  EXPECT_TRUE(SameBits(job.metrics.icir, expected.metrics.icir));
  // Checkpoints go once the job completed; no staging debris remains.
  EXPECT_FALSE(fs::exists(root_ / ".checkpoints" / "w-complete"));
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
  ASSERT_EQ(log.Of(WorkerEvent::Kind::kCompleted).size(), 1u);
  EXPECT_NE(log.Of(WorkerEvent::Kind::kCompleted)[0].message.find("computed 65 of 65 days"),
            std::string::npos);
  EXPECT_FALSE(log.Of(WorkerEvent::Kind::kProgress).empty());
}

TEST_P(WorkerTest, SameConfigAndSnapshotTwiceGiveIdenticalMetrics) {
  const std::string config = R"({"seed":21,"symbols":60,"snapshot_id":"snap-7"})";
  service_->Submit(Spec("twice-a", config, "rank"));
  service_->Submit(Spec("twice-b", config, "rank"));
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions()), 2);
  JobRecord a = Job("twice-a"), b = Job("twice-b");
  ASSERT_EQ(a.status, JobStatus::kCompleted);
  ASSERT_EQ(b.status, JobStatus::kCompleted);
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    EXPECT_TRUE(SameBits(a.metrics.At(i), b.metrics.At(i))) << Metrics::kNames[i];
  }
  EXPECT_EQ(a.snapshot_id, "snap-7");
  EXPECT_EQ(a.dataset_version_ids_json, b.dataset_version_ids_json);
  ExpectSameResult(ReadBundle(*a.result_path), ReadBundle(*b.result_path));
}

TEST_P(WorkerTest, NoopJobsCompleteWithEmptyValidBundles) {
  service_->Submit(Spec("noop-1", R"({"engine":"noop"})"));
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions()), 1);
  JobRecord job = Job("noop-1");
  ASSERT_EQ(job.status, JobStatus::kCompleted);
  BacktestResult result = ReadBundle(*job.result_path);
  EXPECT_EQ(result.snapshot_id, "noop");
  EXPECT_EQ(result.daily_signals->num_rows(), 0);
}

TEST_P(WorkerTest, CancelStopsARunningJobQuicklyAndLeavesNoBundle) {
  // 65 days at 50 ms: over 3 s of work, far longer than a cancel takes to arrive.
  service_->Submit(
      Spec("w-cancel", R"({"symbols":20,"delay_ms_per_day":50,"checkpoint_every_days":5})"));
  EventLog log;
  BackgroundWorker worker(url_, root_, FastOptions(&log));
  ASSERT_TRUE(PollUntil([&] {
    JobRecord job = Job("w-cancel");
    return job.status == JobStatus::kRunning && job.progress_pct > 0;
  }));
  auto requested = std::chrono::steady_clock::now();
  EXPECT_EQ(service_->Cancel("w-cancel").status, JobStatus::kRunning);
  ASSERT_TRUE(PollUntil([&] { return Job("w-cancel").status == JobStatus::kCancelled; }));
  auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - requested);
  // Measured, not asserted: NOTIFY on PostgreSQL, heartbeat polling on SQLite.
  std::cout << "cancel latency (" << BackendName(GetParam()) << "): " << latency.count() << " ms"
            << std::endl;
  EXPECT_EQ(worker.Join(), 1);
  EXPECT_FALSE(fs::exists(root_ / "w-cancel"));
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kCancelled).size(), 1u);
  EXPECT_THROW(service_->Cancel("w-cancel"), InvalidTransition);
}

TEST_P(WorkerTest, ResumeOfACancelledJobContinuesFromItsCheckpoint) {
  JobSpec spec = Spec("w-resume", R"({"symbols":20,"delay_ms_per_day":30,
                                      "checkpoint_every_days":5})");
  service_->Submit(spec);
  {
    BackgroundWorker worker(url_, root_, FastOptions());
    // A checkpoint counts once a heartbeat recorded it in the row.
    ASSERT_TRUE(PollUntil([&] { return Job("w-resume").checkpoint_path.has_value(); }));
    service_->Cancel("w-resume");
    ASSERT_TRUE(PollUntil([&] { return Job("w-resume").status == JobStatus::kCancelled; }));
  }
  JobRecord cancelled = Job("w-resume");
  ASSERT_TRUE(cancelled.checkpoint_path);
  EXPECT_TRUE(fs::exists(*cancelled.checkpoint_path));  // kept for resume
  EXPECT_THROW(service_->Resume("w-complete-missing"), JobNotFound);

  JobRecord resumed = service_->Resume("w-resume");
  EXPECT_EQ(resumed.status, JobStatus::kPending);
  EXPECT_FALSE(resumed.cancel_requested);
  EventLog log;
  // The cancel request of the first attempt must not stop the second.
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions(&log)), 1);
  JobRecord job = Job("w-resume");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.attempt, 2);
  BacktestResult result = ReadBundle(*job.result_path);
  int resumed_at = EngineInfo(result).at("resumed_at_day");
  EXPECT_GE(resumed_at, 5);
  EXPECT_EQ(EngineInfo(result).at("computed_days"), kBusinessDays - resumed_at);
  ExpectSameResult(result, GenerateSyntheticResult(spec));
  EXPECT_THROW(service_->Resume("w-resume"), InvalidTransition);  // completed
  EXPECT_THROW(service_->Cancel("w-resume"), InvalidTransition);
}

TEST_P(WorkerTest, AFailedAttemptIsRetriedFromItsCheckpoint) {
  JobSpec spec = Spec("w-retry", R"({"symbols":15,"fail_at_day":30,"checkpoint_every_days":0})");
  service_->Submit(spec);
  EventLog log;
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions(&log)), 2);  // the failure and the success
  JobRecord job = Job("w-retry");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_EQ(job.attempt, 2);
  ASSERT_EQ(log.Of(WorkerEvent::Kind::kRetrying).size(), 1u);
  EXPECT_NE(log.Of(WorkerEvent::Kind::kRetrying)[0].message.find("fail_at_day"), std::string::npos);
  BacktestResult result = ReadBundle(*job.result_path);
  EXPECT_EQ(EngineInfo(result).at("computed_days"), kBusinessDays - 30);
  ExpectSameResult(result, GenerateSyntheticResult(spec));
}

TEST_P(WorkerTest, FailsAfterTheLastRetryKeepingTheCheckpointForResume) {
  JobSpec spec = Spec("w-fail", R"({"symbols":15,"fail_at_day":12,"checkpoint_every_days":0})");
  spec.max_retries = 0;
  service_->Submit(spec);
  EventLog log;
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions(&log)), 1);
  JobRecord failed = Job("w-fail");
  ASSERT_EQ(failed.status, JobStatus::kFailed);
  EXPECT_TRUE(failed.completed_at);
  EXPECT_NE(failed.error_message.value_or("").find("injected failure at day 12"),
            std::string::npos);
  ASSERT_TRUE(failed.checkpoint_path);
  EXPECT_FALSE(fs::exists(root_ / "w-fail"));
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kFailed).size(), 1u);

  service_->Resume("w-fail");
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions()), 1);
  JobRecord job = Job("w-fail");
  ASSERT_EQ(job.status, JobStatus::kCompleted);
  BacktestResult result = ReadBundle(*job.result_path);
  EXPECT_EQ(EngineInfo(result).at("computed_days"), kBusinessDays - 12);
  ExpectSameResult(result, GenerateSyntheticResult(spec));
}

TEST_P(WorkerTest, CancelRacingCompletionEndsInExactlyOneStateEveryTime) {
  constexpr int kTrials = 200;
  std::mt19937 random(20261125);
  WorkerOptions options = FastOptions();
  options.poll_interval = std::chrono::milliseconds(1);
  options.concurrency = 2;
  std::vector<std::string> ids;
  int cancel_refused = 0;
  {
    BackgroundWorker worker(url_, root_, options);
    for (int i = 0; i < kTrials; ++i) {
      std::string id = "race-" + std::to_string(i);
      std::string config = i % 2 == 0 ? R"({"engine":"noop"})"
                                      : R"({"symbols":3,"delay_ms_per_day":)" +
                                            std::to_string(random() % 3) +
                                            R"(,"checkpoint_every_days":20})";
      service_->Submit(Spec(id, config));
      ids.push_back(id);
      // Random timing, not a wait for an event: the cancel lands before the claim, while the
      // engine runs, while the bundle is published, or after completion.
      std::this_thread::sleep_for(std::chrono::microseconds(random() % 40000));
      try {
        service_->Cancel(id);
      } catch (const InvalidTransition&) {
        ++cancel_refused;  // already completed: the completion won
      }
    }
    ASSERT_TRUE(PollUntil(
        [&] {
          for (const std::string& id : ids) {
            if (!IsTerminal(Job(id).status)) return false;
          }
          return true;
        },
        std::chrono::seconds(120)));
  }
  std::map<JobStatus, int> outcomes;
  int cancelled_while_running = 0;
  for (const std::string& id : ids) {
    JobRecord job = Job(id);
    outcomes[job.status]++;
    if (job.status == JobStatus::kCancelled && job.attempt > 0) ++cancelled_while_running;
    if (job.status == JobStatus::kCompleted) {
      ASSERT_TRUE(job.result_path) << id;
      EXPECT_NO_THROW(ReadBundle(*job.result_path)) << id;
    } else {
      EXPECT_EQ(job.status, JobStatus::kCancelled) << id;
      EXPECT_FALSE(fs::exists(root_ / id)) << id;
    }
  }
  std::cout << "cancel vs complete (" << BackendName(GetParam())
            << "): completed=" << outcomes[JobStatus::kCompleted]
            << " cancelled=" << outcomes[JobStatus::kCancelled]
            << " (of which while running: " << cancelled_while_running << ")"
            << " cancel-after-completion=" << cancel_refused << std::endl;
  EXPECT_EQ(outcomes[JobStatus::kCompleted] + outcomes[JobStatus::kCancelled], kTrials);
  EXPECT_GT(outcomes[JobStatus::kCancelled], 0);
  // A cancel that was accepted always wins: only jobs whose cancel came too late completed.
  EXPECT_EQ(outcomes[JobStatus::kCompleted], cancel_refused);
  EXPECT_GT(outcomes[JobStatus::kCompleted], 0);
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
  std::set<std::string> bundles;
  for (const std::string& name : Entries(root_)) {
    if (name[0] != '.') bundles.insert(name);
  }
  EXPECT_EQ(static_cast<int>(bundles.size()), outcomes[JobStatus::kCompleted]);
}

TEST_P(WorkerTest, ACancelBetweenPublishAndCompletionWinsAndRemovesTheBundle) {
  // The worker announces kPublished on the job's thread after the bundle is in its final place
  // and before the completion's compare-and-set: a cancel requested right there makes the
  // completion lose every time, so the unpublish path runs deterministically.
  service_->Submit(Spec("w-window", R"({"symbols":5,"checkpoint_every_days":10})"));
  EventLog log;
  WorkerOptions options = FastOptions(&log);
  std::atomic<bool> bundle_was_published{false};
  options.on_event = [&, record = options.on_event](const WorkerEvent& event) {
    record(event);
    if (event.kind != WorkerEvent::Kind::kPublished) return;
    bundle_was_published = fs::exists(root_ / "w-window" / "summary.json");
    EXPECT_EQ(service_->Cancel("w-window").status, JobStatus::kRunning);
  };
  // Bounded well below the lease (30 s), whose expiry would let a rescue cancel the job instead.
  std::atomic<bool> idle{false};
  std::thread worker([&] {
    EXPECT_EQ(RunUntilIdle(url_, root_, options), 1);
    idle = true;
  });
  const bool finished = PollUntil([&] { return idle.load(); }, std::chrono::seconds(20));
  worker.join();
  ASSERT_TRUE(finished);

  EXPECT_TRUE(bundle_was_published.load());
  JobRecord job = Job("w-window");
  EXPECT_EQ(job.status, JobStatus::kCancelled);
  EXPECT_EQ(job.attempt, 1);
  EXPECT_FALSE(job.result_path.has_value());
  EXPECT_FALSE(job.snapshot_id.has_value());
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "w-window")));
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
  EXPECT_EQ(FilesUnder(root_ / ".trash"), 0);
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kPublished).size(), 1u);
  EXPECT_TRUE(log.Of(WorkerEvent::Kind::kCompleted).empty());
  // This worker acknowledged the cancel itself (a rescue after the lease would not say so).
  ASSERT_EQ(log.Of(WorkerEvent::Kind::kCancelled).size(), 1u);
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kCancelled)[0].message,
            "cancelled; checkpoint kept for resume");
}

TEST_P(WorkerTest, TwoWorkersNeverRunTheSameAttempt) {
  constexpr int kJobs = 40;
  for (int i = 0; i < kJobs; ++i) {
    service_->Submit(Spec("multi-" + std::to_string(i),
                          i % 2 == 0 ? R"({"engine":"noop"})" : R"({"symbols":4})"));
  }
  EventLog log;
  WorkerOptions a = FastOptions(&log), b = FastOptions(&log);
  a.worker_id = "worker-a";
  b.worker_id = "worker-b";
  a.concurrency = b.concurrency = 2;
  {
    BackgroundWorker first(url_, root_, a);
    BackgroundWorker second(url_, root_, b);
    ASSERT_TRUE(PollUntil([&] {
      JobFilter filter;
      filter.statuses = {JobStatus::kCompleted};
      PageRequest page;
      page.limit = kJobs;
      return service_->ListJobs(filter, page).jobs.size() == kJobs;
    }));
  }
  std::set<std::pair<std::string, int>> claims;
  for (const WorkerEvent& e : log.Of(WorkerEvent::Kind::kClaimed)) {
    EXPECT_TRUE(claims.insert({e.job_id, e.attempt}).second) << e.job_id << " " << e.attempt;
  }
  EXPECT_EQ(claims.size(), static_cast<size_t>(kJobs));
  std::map<std::string, int> by_worker;
  for (const WorkerEvent& e : log.Of(WorkerEvent::Kind::kClaimed)) {
    by_worker[e.message.substr(e.message.rfind(' ') + 1)]++;
  }
  std::cout << "claims: worker-a=" << by_worker["worker-a"] << " worker-b=" << by_worker["worker-b"]
            << std::endl;
}

TEST_P(WorkerTest, AStaleAttemptCannotWriteOverTheRescuedJob) {
  // Attempt 1 is claimed by a worker that then stalls (it never heartbeats): its lease of 1 s
  // expires, a live worker's rescue loop retries the job and attempt 2 completes.
  service_->Submit(Spec("stale", R"({"symbols":10})"));
  std::vector<JobRecord> claimed =
      catalog_->ClaimJobs("stalled-worker", 1, std::chrono::seconds(1), clock_.Now());
  ASSERT_EQ(claimed.size(), 1u);
  EventLog log;
  WorkerOptions options = FastOptions(&log);
  options.lease = std::chrono::seconds(1);
  {
    BackgroundWorker live(url_, root_, options);
    ASSERT_TRUE(PollUntil([&] { return Job("stale").status == JobStatus::kCompleted; }));
  }
  ASSERT_FALSE(log.Of(WorkerEvent::Kind::kRescued).empty());
  JobRecord job = Job("stale");
  EXPECT_EQ(job.attempt, 2);
  EXPECT_EQ(job.retry_count, 1);
  // The stalled attempt wakes up: every write it tries is fenced off.
  EXPECT_FALSE(catalog_
                   ->Heartbeat("stale", 1, 50, std::string("/nowhere"), std::chrono::seconds(1),
                               clock_.Now())
                   .owned);
  CompletionRecord stale;
  stale.result_path = (root_ / "stale").string();
  stale.snapshot_id = "stale-snapshot";
  stale.dataset_version_ids_json = "{}";
  TransitionResult result = catalog_->Complete("stale", 1, stale, clock_.Now());
  EXPECT_FALSE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kCompleted);
  EXPECT_EQ(result.attempt, 2);
  EXPECT_FALSE(
      catalog_->Fail("stale", 1, "late", std::chrono::milliseconds(0), clock_.Now()).applied);
  job = Job("stale");
  EXPECT_EQ(job.snapshot_id, "synthetic-v1");
  EXPECT_NO_THROW(ReadBundle(*job.result_path));
}

TEST_P(WorkerTest, AStaleAttemptCannotWriteWhileTheRescuedAttemptRuns) {
  // As above, but the stalled attempt 1 wakes up while attempt 2 is still running: the row is
  // `running` either way, so only the attempt fence can refuse attempt 1's writes.
  service_->Submit(Spec("stale-live", R"({"symbols":5,"delay_ms_per_day":60000})"));
  ASSERT_EQ(catalog_->ClaimJobs("stalled-worker", 1, std::chrono::seconds(1), clock_.Now()).size(),
            1u);
  EventLog log;
  WorkerOptions options = FastOptions(&log);
  options.lease = std::chrono::seconds(1);
  BackgroundWorker live(url_, root_, options);
  ASSERT_TRUE(PollUntil([&] {
    for (const WorkerEvent& e : log.Of(WorkerEvent::Kind::kClaimed)) {
      if (e.job_id == "stale-live" && e.attempt == 2) return true;
    }
    return false;
  }));
  const JobRecord before = Job("stale-live");
  ASSERT_EQ(before.status, JobStatus::kRunning);
  ASSERT_EQ(before.attempt, 2);

  // The stalled attempt saves a checkpoint and tries to record it with a heartbeat, then to
  // fail and to complete the job.
  const std::string stale_checkpoint =
      app_->store().SaveCheckpoint("stale-live", 1, "state of the stale attempt");
  HeartbeatResult heartbeat = catalog_->Heartbeat("stale-live", 1, 77, stale_checkpoint,
                                                  std::chrono::seconds(600), clock_.Now());
  EXPECT_FALSE(heartbeat.owned);
  TransitionResult failed =
      catalog_->Fail("stale-live", 1, "late failure", std::chrono::milliseconds(0), clock_.Now());
  EXPECT_FALSE(failed.applied);
  EXPECT_EQ(failed.status, JobStatus::kRunning);
  EXPECT_EQ(failed.attempt, 2);
  CompletionRecord stale;
  stale.result_path = (root_ / "stale-live").string();
  stale.snapshot_id = "stale-snapshot";
  stale.dataset_version_ids_json = "{}";
  TransitionResult completed = catalog_->Complete("stale-live", 1, stale, clock_.Now());
  EXPECT_FALSE(completed.applied);
  EXPECT_EQ(completed.status, JobStatus::kRunning);
  EXPECT_EQ(completed.attempt, 2);

  const JobRecord after = Job("stale-live");
  EXPECT_EQ(after.status, JobStatus::kRunning);
  EXPECT_EQ(after.attempt, 2);
  EXPECT_EQ(after.retry_count, before.retry_count);
  EXPECT_NE(after.progress_pct, 77);
  EXPECT_NE(after.checkpoint_path, std::optional<std::string>(stale_checkpoint));
  EXPECT_FALSE(after.result_path.has_value());
  EXPECT_FALSE(after.snapshot_id.has_value());
  EXPECT_EQ(after.error_message, before.error_message);  // the rescue's, not "late failure"

  // Attempt 2 is untouched: it still answers a cancel and ends it.
  service_->Cancel("stale-live");
  ASSERT_TRUE(PollUntil([&] { return Job("stale-live").status == JobStatus::kCancelled; }));
  EXPECT_EQ(Job("stale-live").attempt, 2);
  EXPECT_EQ(live.Join(), 1);
}

// Contract section 3: a worker that is shut down stops its engines and gives its jobs back at
// once (pending, checkpoint kept, no retry spent), not left running for a rescue.
TEST_P(WorkerTest, StopGivesARunningJobBackAsPendingWithItsCheckpointAndNoRetrySpent) {
  // 65 days at 200 ms: 13 s of work, checkpointed every day.
  service_->Submit(Spec("w-stop", R"({"symbols":5,"delay_ms_per_day":200,
                                      "checkpoint_every_days":1})"));
  EventLog log;
  {
    BackgroundWorker worker(url_, root_, FastOptions(&log));
    ASSERT_TRUE(PollUntil([&] { return Job("w-stop").checkpoint_path.has_value(); }));
    // Join() calls Stop(). A released attempt is not a finished one.
    EXPECT_EQ(worker.Join(), 0);
  }
  JobRecord job = Job("w-stop");
  EXPECT_EQ(job.status, JobStatus::kPending);
  EXPECT_EQ(job.attempt, 1);
  EXPECT_EQ(job.retry_count, 0);
  ASSERT_TRUE(job.checkpoint_path);
  EXPECT_TRUE(fs::exists(*job.checkpoint_path));
  EXPECT_NE(job.error_message.value_or("").find("shut down"), std::string::npos);
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kReleased).size(), 1u);
  EXPECT_FALSE(fs::exists(root_ / "w-stop"));
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
}

// --- Cancels through the listener: PostgreSQL's NOTIFY, SQLite's watched directory --------------

// Workers whose heartbeats are so rare (5 minutes) that only the cancel listener can deliver a
// cancel in time.
class NotifyCancelTest : public LifecycleTest {
 protected:
  static constexpr const char* kJob = "w-notify";

  static WorkerOptions SlowHeartbeats(EventLog* log) {
    WorkerOptions options = FastOptions(log);
    options.lease = std::chrono::seconds(600);
    options.heartbeat_interval = std::chrono::seconds(300);
    return options;
  }

  std::string DatabaseName() const { return url_.substr(url_.rfind('/') + 1); }

  // Server processes of this test's database that run the worker's LISTEN (its cancel listener).
  std::vector<std::string> ListenerPids(SqlSession& admin) {
    std::vector<std::string> pids;
    for (const auto& row : admin.Query(
             "SELECT pid::text FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
             {DatabaseName()})) {
      pids.push_back(row.at(0).value());
    }
    return pids;
  }

  // The SQLite catalog's wake-up directory (beside the database file).
  fs::path WakeupDir() const { return url_.substr(std::string("sqlite:").size()) + "-cancels"; }

  // inotify instances of this process: the in-process worker's listener on SQLite.
  static int InotifyInstances() {
    int count = 0;
    for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
      std::error_code error;
      if (fs::read_symlink(entry.path(), error).string() == "anon_inode:inotify") ++count;
    }
    return count;
  }

  bool Listening(SqlSession* admin) {
    return admin != nullptr ? !ListenerPids(*admin).empty() : InotifyInstances() > 0;
  }

  // Submit a job that runs for minutes and wait until the worker runs it (its engine sleeping)
  // and its listener is listening (`admin` on PostgreSQL, null on SQLite).
  void StartLongJob(EventLog& log, SqlSession* admin) {
    service_->Submit(Spec(kJob, R"({"symbols":5,"delay_ms_per_day":60000})"));
    ASSERT_TRUE(PollUntil([&] { return !log.Of(WorkerEvent::Kind::kClaimed).empty(); }));
    ASSERT_TRUE(PollUntil([&] { return Listening(admin); }));
    ASSERT_EQ(Job(kJob).status, JobStatus::kRunning);
  }

  std::unique_ptr<SqlSession> AdminSession() const {
    if (GetParam() != Backend::kPostgres) return nullptr;
    return std::make_unique<SqlSession>(PgCluster::Get().AdminUrl());
  }

  // Milliseconds until the job is cancelled (bounded by `timeout`), or nullopt.
  std::optional<int64_t> MillisUntilCancelled(std::chrono::steady_clock::time_point since,
                                              std::chrono::milliseconds timeout) {
    if (!PollUntil([&] { return Job(kJob).status == JobStatus::kCancelled; }, timeout)) {
      return std::nullopt;
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 since)
        .count();
  }
};

TEST_P(NotifyCancelTest, DeliversACancelWellUnderASecondWithoutAHeartbeat) {
  std::unique_ptr<SqlSession> admin = AdminSession();
  EventLog log;
  BackgroundWorker worker(url_, root_, SlowHeartbeats(&log));
  StartLongJob(log, admin.get());
  const auto requested = std::chrono::steady_clock::now();
  EXPECT_EQ(service_->Cancel(kJob).status, JobStatus::kRunning);
  std::optional<int64_t> latency = MillisUntilCancelled(requested, std::chrono::seconds(5));
  ASSERT_TRUE(latency) << "the cancel did not arrive within 5 s (heartbeats every 300 s)";
  std::cout << "cancel latency through the listener: " << *latency << " ms" << std::endl;
  EXPECT_LT(*latency, 1000);
  EXPECT_EQ(worker.Join(), 1);
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kCancelled).size(), 1u);
}

using NotifyReconnectTest = NotifyCancelTest;

TEST_P(NotifyReconnectTest, ACancelSentWhileTheListenerIsCutOffArrivesOnceItReconnects) {
  SqlSession admin(PgCluster::Get().AdminUrl());
  EventLog log;
  BackgroundWorker worker(url_, root_, SlowHeartbeats(&log));
  StartLongJob(log, &admin);
  const std::string database = "\"" + DatabaseName() + "\"";
  // Let connections in again however the test ends (the worker and the test still need them).
  struct AllowConnections {
    SqlSession& admin;
    std::string database;
    ~AllowConnections() { admin.Execute("ALTER DATABASE " + database + " ALLOW_CONNECTIONS true"); }
  } allow{admin, database};
  // The server terminates the listener's backend and refuses its reconnection for now, so the
  // cancel's NOTIFY below reaches nobody: only re-reading the row after reconnecting can
  // deliver it. (The worker and this test keep their pooled connections meanwhile.)
  admin.Execute("ALTER DATABASE " + database + " ALLOW_CONNECTIONS false");
  const std::vector<std::string> listeners = ListenerPids(admin);
  ASSERT_FALSE(listeners.empty());
  for (const std::string& pid : listeners) {
    admin.Query("SELECT pg_terminate_backend($1::int)", {pid});
  }
  ASSERT_TRUE(PollUntil([&] { return ListenerPids(admin).empty(); }));
  EXPECT_EQ(service_->Cancel(kJob).status, JobStatus::kRunning);
  EXPECT_EQ(Job(kJob).status, JobStatus::kRunning);

  admin.Execute("ALTER DATABASE " + database + " ALLOW_CONNECTIONS true");
  const auto reopened = std::chrono::steady_clock::now();
  std::optional<int64_t> latency = MillisUntilCancelled(reopened, std::chrono::seconds(10));
  ASSERT_TRUE(latency) << "the cancel did not arrive within 10 s of the listener reconnecting";
  std::cout << "cancel latency after the listener reconnected: " << *latency << " ms" << std::endl;
  EXPECT_LT(*latency, 5000);  // the listener retries within a second; heartbeats take 300 s
  EXPECT_EQ(worker.Join(), 1);
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kCancelled).size(), 1u);
}

// SQLite: the listener watches the wake-up directory; removing it cuts the listener off, and a
// cancel sent then (its wake-up lands in a new directory nobody watches yet) arrives once the
// listener watches again and re-reads its rows.
using WakeupDirectoryTest = NotifyCancelTest;

TEST_P(WakeupDirectoryTest, ACancelSentWhileTheDirectoryIsGoneArrivesOnceItIsWatchedAgain) {
  EventLog log;
  BackgroundWorker worker(url_, root_, SlowHeartbeats(&log));
  StartLongJob(log, nullptr);
  ASSERT_TRUE(fs::is_directory(WakeupDir()));
  fs::remove_all(WakeupDir());
  const auto cut = std::chrono::steady_clock::now();
  EXPECT_EQ(service_->Cancel(kJob).status, JobStatus::kRunning);
  std::optional<int64_t> latency = MillisUntilCancelled(cut, std::chrono::seconds(10));
  ASSERT_TRUE(latency) << "the cancel did not arrive within 10 s of the directory's removal";
  std::cout << "cancel latency with the wake-up directory removed: " << *latency << " ms"
            << std::endl;
  EXPECT_LT(*latency, 5000);  // the listener retries within a second; heartbeats take 300 s
  EXPECT_EQ(worker.Join(), 1);
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kCancelled).size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Backends, NotifyCancelTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         BackendParamName());
INSTANTIATE_TEST_SUITE_P(Postgres, NotifyReconnectTest, ::testing::Values(Backend::kPostgres),
                         BackendParamName());
INSTANTIATE_TEST_SUITE_P(Sqlite, WakeupDirectoryTest, ::testing::Values(Backend::kSqlite),
                         BackendParamName());

TEST(WorkerOptions, RejectsNoEnginesNoConcurrencyAndLeasesUnderASecond) {
  TempDir dir;
  std::unique_ptr<Service> service = Service::Open("sqlite:" + (dir.path() / "catalog.db").string(),
                                                   (dir.path() / "results").string());
  const EngineRegistry engines = EngineRegistry::Builtins();
  WorkerOptions no_engines;
  EXPECT_THROW(Worker(service->catalog(), service->store(), service->clock(), no_engines),
               InvalidArgument);
  WorkerOptions no_threads;
  no_threads.concurrency = 0;
  EXPECT_THROW(service->NewWorker(no_threads), InvalidArgument);
  WorkerOptions short_lease;
  short_lease.lease = std::chrono::seconds(0);
  short_lease.engines = &engines;
  EXPECT_THROW(Worker(service->catalog(), service->store(), service->clock(), short_lease),
               InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, WorkerTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
