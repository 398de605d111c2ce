// The service object as a front end uses it, with no command line involved: a worker driven by
// a test clock runs an engine the test registered itself, and the lifecycle's times, checkpoints,
// rescue and reads all go through the service.

#include "btstore/service.h"

#include <arrow/table.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>

#include "btstore/errors.h"
#include "lifecycle/retention_fixture.h"
#include "lifecycle/worker_test_util.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

// An engine of the test's own: checks that no checkpoint exists yet, saves one, reports progress
// and returns a small result whose snapshot names the attempt.
class ScriptedEngine : public Engine {
 public:
  explicit ScriptedEngine(std::atomic<int>* runs) : runs_(runs) {}

  BacktestResult Run(const JobRecord& job, EngineContext& context) override {
    ++*runs_;
    const std::optional<std::string> previous = context.LoadCheckpoint();
    context.SaveCheckpoint("attempt " + std::to_string(job.attempt));
    context.ReportProgress(50);
    context.ThrowIfStopped();
    BacktestResult result = SmallResult(job.job_id, job.start_date, 5, 3);
    result.snapshot_id = "scripted-" + std::to_string(job.attempt);
    result.extra_summary_json =
        EngineReportJson({.name = "scripted", .resumed_at_day = previous ? 1 : 0});
    return result;
  }

 private:
  std::atomic<int>* runs_;
};

class ServiceTest : public ::testing::TestWithParam<Backend> {
 protected:
  ServiceTest() : clock_(TestNow()) {}

  void SetUp() override {
    if (auto why = SkipReason(GetParam())) GTEST_SKIP() << *why;
    engines_.Register("scripted", [this] { return std::make_unique<ScriptedEngine>(&runs_); });
    ServiceOptions options;
    options.clock = &clock_;
    options.engines = &engines_;
    service_ = Service::Open(NewCatalogUrl(GetParam(), dir_.path()),
                             (dir_.path() / "results").string(), options);
  }

  JobSpec Spec(const std::string& job_id, const std::string& engine) {
    JobSpec spec;
    spec.job_id = job_id;
    spec.alpha_name = "momentum";
    spec.start_date = Date::FromYmd(2024, 1, 2);
    spec.end_date = Date::FromYmd(2024, 1, 8);
    spec.weight_method = "whatever";  // the scripted engine accepts every method
    spec.config_json = R"({"engine":")" + engine + R"("})";
    spec.created_by = "alice";
    return spec;
  }

  WorkerOptions UntilIdle(EventLog& log) {
    WorkerOptions options;
    options.until_idle = true;
    options.poll_interval = std::chrono::milliseconds(5);
    options.rescue_interval = std::chrono::milliseconds(5);
    // The test clock does not move by itself: a retry may run at once.
    options.retry_base_delay = std::chrono::milliseconds(0);
    options.on_event = log.Recorder();
    return options;
  }

  TempDir dir_{"btstore-service"};
  ManualClock clock_;
  std::atomic<int> runs_{0};
  EngineRegistry engines_;
  std::unique_ptr<Service> service_;
};

TEST_P(ServiceTest, AWorkerRunsATestEngineOnTheTestClock) {
  JobService& jobs = service_->jobs();
  EXPECT_TRUE(jobs.Submit(Spec("svc-1", "scripted")).created);
  // An engine this registry lacks (here the built-in synthetic) is accepted: the job waits for a
  // worker that has it, and this service's workers leave it alone.
  EXPECT_TRUE(jobs.Submit(Spec("svc-2", "synthetic")).created);

  const Timestamp run_at = TestNow() + std::chrono::minutes(5);
  clock_.Set(run_at);
  EventLog log;
  EXPECT_EQ(service_->NewWorker(UntilIdle(log))->Run(), 1);

  EXPECT_EQ(runs_.load(), 1);
  EXPECT_EQ(jobs.GetJob("svc-2").status, JobStatus::kPending);
  EXPECT_EQ(jobs.GetJob("svc-2").attempt, 0);
  const JobRecord job = jobs.GetJob("svc-1");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.created_at, TestNow());
  EXPECT_EQ(job.started_at, run_at);
  EXPECT_EQ(job.completed_at, run_at);
  EXPECT_EQ(job.heartbeat_at, run_at);
  EXPECT_EQ(job.snapshot_id, "scripted-1");
  ASSERT_TRUE(job.result_path);
  EXPECT_EQ(fs::path(*job.result_path), fs::path(service_->store().root()) / "svc-1");

  const BacktestResult result = jobs.GetResult("svc-1");
  EXPECT_EQ(result.daily_signals->num_rows(), 15);
  EXPECT_EQ(result.snapshot_id, "scripted-1");
  EXPECT_EQ(ReadEngineReport(jobs.ReadSummaryText(job))->name, "scripted");
  // A completed job's checkpoints are removed.
  EXPECT_FALSE(fs::exists(fs::path(service_->store().root()) / ".checkpoints" / "svc-1"));
  ASSERT_EQ(log.Of(WorkerEvent::Kind::kCompleted).size(), 1u);
}

TEST_P(ServiceTest, TheTestClockExpiresALeaseAndTheRescuedJobResumesFromItsCheckpoint) {
  JobService& jobs = service_->jobs();
  jobs.Submit(Spec("svc-dead", "scripted"));
  // A worker that died after saving a checkpoint: its claim and heartbeat, then silence.
  Catalog& catalog = service_->catalog();
  const std::vector<JobRecord> claimed =
      catalog.ClaimJobs("dead-worker", 1, std::chrono::seconds(30), clock_.Now());
  ASSERT_EQ(claimed.size(), 1u);
  const std::string checkpoint = service_->store().SaveCheckpoint("svc-dead", 1, "attempt 1");
  ASSERT_TRUE(
      catalog.Heartbeat("svc-dead", 1, 40, checkpoint, std::chrono::seconds(30), clock_.Now())
          .owned);

  // Within the lease nothing happens; one second past it, the worker rescues and reruns it.
  clock_.Set(TestNow() + std::chrono::seconds(29));
  EventLog early;
  EXPECT_EQ(service_->NewWorker(UntilIdle(early))->Run(), 0);
  EXPECT_EQ(jobs.GetJob("svc-dead").status, JobStatus::kRunning);
  EXPECT_TRUE(early.Of(WorkerEvent::Kind::kRescued).empty());

  clock_.Set(TestNow() + std::chrono::seconds(31));
  EventLog log;
  EXPECT_EQ(service_->NewWorker(UntilIdle(log))->Run(), 1);
  const JobRecord job = jobs.GetJob("svc-dead");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.attempt, 2);
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_EQ(job.snapshot_id, "scripted-2");
  EXPECT_EQ(log.Of(WorkerEvent::Kind::kRescued).size(), 1u);
  // The second attempt found the first attempt's checkpoint.
  EXPECT_EQ(ReadEngineReport(jobs.ReadSummaryText(job))->resumed_at_day, 1);
}

TEST_P(ServiceTest, RetentionAndVerifyRunOnTheServicesClockAndStore) {
  JobService& jobs = service_->jobs();
  jobs.Submit(Spec("svc-old", "scripted"));
  EventLog log;
  service_->NewWorker(UntilIdle(log))->Run();
  ASSERT_EQ(jobs.GetJob("svc-old").status, JobStatus::kCompleted);

  VerifyReport verified = service_->Verify({});
  EXPECT_EQ(verified.checked, 1);
  EXPECT_TRUE(verified.problems.empty());

  RetentionOptions retention;
  retention.retention_days = 90;
  EXPECT_EQ(service_->Cleanup(retention).removed, 0);
  clock_.Set(TestNow() + std::chrono::days(91));
  EXPECT_EQ(service_->Cleanup(retention).removed, 1);
  EXPECT_THROW(jobs.GetJob("svc-old"), JobNotFound);
  EXPECT_FALSE(fs::exists(fs::path(service_->store().root()) / "svc-old"));
}

TEST(ServiceDefaults, FlagsThenEnvironmentThenDefaults) {
  EXPECT_EQ(ResolveCatalogUrl("sqlite:x.db"), "sqlite:x.db");
  EXPECT_EQ(ResolveArtifactRoot("/r"), "/r");
  ::setenv("BTSTORE_CATALOG", "sqlite:env.db", 1);
  ::setenv("BTSTORE_ARTIFACT_ROOT", "", 1);
  EXPECT_EQ(ResolveCatalogUrl(""), "sqlite:env.db");
  EXPECT_EQ(ResolveArtifactRoot(""), kDefaultArtifactRoot);
  ::unsetenv("BTSTORE_CATALOG");
  EXPECT_EQ(ResolveCatalogUrl(""), kDefaultCatalogUrl);
  ::unsetenv("BTSTORE_ARTIFACT_ROOT");
}

INSTANTIATE_TEST_SUITE_P(Backends, ServiceTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
