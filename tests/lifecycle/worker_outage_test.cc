// A worker survives a restart of its PostgreSQL catalog: while a job runs (or while the worker's
// completion of a job is executing in the server), the server is stopped and started again; the
// worker backs off and retries instead of ending Run(), the job keeps its attempt and still
// completes with a bundle identical to an uninterrupted run.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "btstore/bundle.h"
#include "btstore/catalog.h"
#include "btstore/engine.h"
#include "btstore/lifecycle.h"
#include "lifecycle/worker_test_util.h"
#include "support/pg_cluster.h"
#include "support/result_compare.h"
#include "support/sql_session.h"
#include "support/temp_dir.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

// Starts the server again if a test ends while it is stopped, so later tests of the binary
// find it running.
class RestartOnExit {
 public:
  explicit RestartOnExit(PgCluster& cluster) : cluster_(cluster) {}
  ~RestartOnExit() {
    if (!cluster_.running()) cluster_.Start();
  }

 private:
  PgCluster& cluster_;
};

// Worker events that are about the worker itself (empty job_id): the outage messages.
int WorkerOutageEvents(EventLog& log, const std::string& containing) {
  int count = 0;
  for (const WorkerEvent& e : log.Of(WorkerEvent::Kind::kRetrying)) {
    if (e.job_id.empty() && e.message.find(containing) != std::string::npos) ++count;
  }
  return count;
}

// A worker's Run() on a thread of its own, keeping what it returned or threw; stopped and joined
// when the test ends, however it ends.
struct RunningWorker {
  explicit RunningWorker(std::unique_ptr<Worker> owned) : worker(std::move(owned)) {
    thread = std::thread([this] {
      try {
        finished = worker->Run();
      } catch (const std::exception& e) {
        error = e.what();
      }
      returned.store(true);
    });
  }
  ~RunningWorker() {
    worker->Stop();
    thread.join();
  }

  std::unique_ptr<Worker> worker;
  std::atomic<bool> returned{false};
  std::optional<int> finished;
  std::string error;
  std::thread thread;
};

TEST(WorkerOutageTest, ARunningJobCompletesAcrossARestartOfPostgres) {
  if (auto why = PgCluster::SkipReason()) GTEST_SKIP() << *why;
  PgCluster& cluster = PgCluster::Get();
  RestartOnExit restart(cluster);
  TempDir dir;
  const std::string url = cluster.NewDatabaseUrl();
  // The worker's service, and a catalog of the test's own to watch the job.
  std::unique_ptr<Service> service = Service::Open(url, (dir.path() / "results").string());
  std::unique_ptr<Catalog> catalog = Catalog::Open(url);

  JobSpec spec;
  spec.job_id = "outage";
  spec.alpha_name = "momentum";
  spec.start_date = Date::Parse("2024-01-01");
  spec.end_date = Date::Parse("2024-03-29");  // 65 business days, ~2 s at 30 ms a day
  spec.weight_method = "equal";
  spec.config_json =
      R"({"engine":"synthetic","symbols":50,"delay_ms_per_day":30,"checkpoint_every_days":10})";
  spec.created_by = "alice";
  service->jobs().Submit(spec);

  EventLog log;
  WorkerOptions options;
  options.poll_interval = std::chrono::milliseconds(5);
  options.rescue_interval = std::chrono::milliseconds(100);
  options.until_idle = true;
  options.on_event = log.Recorder();
  RunningWorker running(service->NewWorker(options));

  // Stop the server in the middle of the job, once a checkpoint was recorded.
  ASSERT_TRUE(PollUntil([&] {
    JobRecord job = catalog->GetJob("outage");
    return job.status == JobStatus::kRunning && job.checkpoint_path.has_value();
  })) << ToString(catalog->GetJob("outage").status);
  cluster.Stop(/*immediate=*/false);
  const auto stopped_at = std::chrono::steady_clock::now();

  // The worker notices (its rescue loop keeps calling the catalog), backs off and keeps going.
  ASSERT_TRUE(PollUntil(
      [&] {
        return WorkerOutageEvents(log, "the catalog is unavailable") >= 3 &&
               std::chrono::steady_clock::now() - stopped_at > std::chrono::seconds(1);
      },
      std::chrono::seconds(20)));
  EXPECT_FALSE(running.returned.load()) << running.error;
  cluster.Start();

  ASSERT_TRUE(PollUntil([&] { return running.returned.load(); }, std::chrono::seconds(40)));
  ASSERT_EQ(running.error, "");
  EXPECT_EQ(running.finished, 1);
  EXPECT_GE(WorkerOutageEvents(log, "the catalog is available again"), 1);

  JobRecord job = catalog->GetJob("outage");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.attempt, 1);  // the running attempt survived the outage: no rescue, no retry
  ASSERT_TRUE(job.result_path);
  ExpectSameResult(ReadBundle(*job.result_path), GenerateSyntheticResult(spec));
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kCompleted).size(), 1u);
  EXPECT_TRUE(log.Of(WorkerEvent::Kind::kLostLease).empty());
  for (const WorkerEvent& e : log.Of(WorkerEvent::Kind::kRetrying)) {
    std::cout << "[outage] " << e.message.substr(0, 160) << "\n";
  }
}

TEST(WorkerOutageTest, ACompletionInFlightWhenPostgresIsKilledIsRetriedAfterTheRestart) {
  if (auto why = PgCluster::SkipReason()) GTEST_SKIP() << *why;
  PgCluster& cluster = PgCluster::Get();
  RestartOnExit restart(cluster);
  TempDir dir;
  const std::string url = cluster.NewDatabaseUrl();
  std::unique_ptr<Service> service = Service::Open(url, (dir.path() / "results").string());

  JobSpec spec;
  spec.job_id = "in-flight";
  spec.alpha_name = "momentum";
  spec.start_date = Date::Parse("2024-01-01");
  spec.end_date = Date::Parse("2024-03-29");
  spec.weight_method = "equal";
  spec.config_json = R"({"engine":"synthetic","symbols":50,"checkpoint_every_days":10})";
  spec.created_by = "alice";
  service->jobs().Submit(spec);

  // Between publishing and completing, a second session locks the job's row: the completion's
  // UPDATE then waits for that lock inside the server, provably in flight.
  SqlSession blocker(url);
  EventLog log;
  WorkerOptions options;
  options.poll_interval = std::chrono::milliseconds(5);
  options.rescue_interval = std::chrono::milliseconds(100);
  options.until_idle = true;
  options.on_event = [&, record = log.Recorder()](const WorkerEvent& event) {
    record(event);
    if (event.kind != WorkerEvent::Kind::kPublished) return;
    blocker.Execute("BEGIN");
    blocker.Query("SELECT 1 FROM backtest_jobs WHERE job_id = 'in-flight' FOR UPDATE");
  };
  RunningWorker running(service->NewWorker(options));

  SqlSession admin(cluster.AdminUrl());
  const std::string database = url.substr(url.rfind('/') + 1);
  ASSERT_TRUE(PollUntil([&] {
    return !admin
                .Query(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = "
                    "'Lock' AND query LIKE 'UPDATE backtest_jobs SET status = ''completed''%'",
                    {database})
                .empty();
  })) << "the completion never waited on the row lock";
  cluster.Stop(/*immediate=*/true);

  // The completion's connection died under it: the worker retries it rather than giving up.
  ASSERT_TRUE(PollUntil(
      [&] { return WorkerOutageEvents(log, "the catalog is unavailable for completing") >= 2; },
      std::chrono::seconds(20)));
  EXPECT_FALSE(running.returned.load()) << running.error;
  cluster.Start();

  ASSERT_TRUE(PollUntil([&] { return running.returned.load(); }, std::chrono::seconds(40)));
  ASSERT_EQ(running.error, "");
  EXPECT_EQ(running.finished, 1);
  std::unique_ptr<Catalog> catalog = Catalog::Open(url);
  JobRecord job = catalog->GetJob("in-flight");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.attempt, 1);  // the attempt survived: no rescue, no retry
  EXPECT_EQ(job.retry_count, 0);
  ASSERT_TRUE(job.result_path);
  ExpectSameResult(ReadBundle(*job.result_path), GenerateSyntheticResult(spec));
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kCompleted).size(), 1u);
  EXPECT_TRUE(log.Of(WorkerEvent::Kind::kLostLease).empty());
}

}  // namespace
}  // namespace btstore::testing
