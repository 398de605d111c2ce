// A worker process killed (SIGKILL) or frozen (SIGSTOP) in the middle of a job: another worker's
// rescue loop retries the job within the lease, no partial bundle is ever visible, and the
// retry continues from the last recorded checkpoint to a result bit-identical to an
// uninterrupted run. Both backends.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "btstore/bundle.h"
#include "btstore/engine.h"
#include "lifecycle/worker_test_util.h"
#include "support/result_compare.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kLeaseSeconds = 2;

// A btstore_test_worker process with its output in a file.
class ChildWorker {
 public:
  ChildWorker(const std::string& url, const fs::path& root, const fs::path& log,
              const std::string& worker_id, int concurrency = 1)
      : log_(log) {
    const std::string concurrency_arg = "concurrency=" + std::to_string(concurrency);
    pid_ = fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      std::string lease = std::to_string(kLeaseSeconds);
      execl(BTSTORE_TEST_WORKER, BTSTORE_TEST_WORKER, url.c_str(), root.c_str(), lease.c_str(),
            worker_id.c_str(), concurrency_arg.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~ChildWorker() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }
  void Signal(int signal) { ASSERT_EQ(kill(pid_, signal), 0); }
  /// Wait for the process to end; return its wait status.
  int Wait() {
    int status = 0;
    if (pid_ > 0) {
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    return status;
  }
  std::string Output() const {
    std::ifstream in(log_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  pid_t pid_ = -1;
  fs::path log_;
};

class WorkerKillTest : public LifecycleTest {
 protected:
  // About 130 business days at 25 ms each (over 3 s of work), checkpointed every 10 days.
  JobSpec SlowSpec(const std::string& job_id) {
    JobSpec spec = Spec(job_id, R"({"seed":77,"symbols":40,"delay_ms_per_day":25,
                                    "checkpoint_every_days":10})",
                        "signal");
    spec.end_date = Date::Parse("2024-06-28");
    return spec;
  }

  WorkerOptions RescuerOptions(EventLog* log) {
    WorkerOptions options = FastOptions(log);
    options.lease = std::chrono::seconds(kLeaseSeconds);
    options.worker_id = "rescuer";
    return options;
  }
};

TEST_P(WorkerKillTest, AKilledWorkersJobIsRescuedAndResumedToAnIdenticalResult) {
  JobSpec spec = SlowSpec("killed-job");
  service_->Submit(spec);
  ChildWorker child(url_, root_, dir_.path() / "child.log", "doomed-worker");
  ASSERT_TRUE(PollUntil([&] {
    JobRecord job = Job("killed-job");
    return job.status == JobStatus::kRunning && job.checkpoint_path.has_value();
  })) << child.Output();
  child.Signal(SIGKILL);
  child.Wait();
  const auto killed_at = std::chrono::steady_clock::now();
  JobRecord at_kill = Job("killed-job");
  EXPECT_EQ(at_kill.status, JobStatus::kRunning);
  EXPECT_EQ(at_kill.worker_id, "doomed-worker");
  EXPECT_FALSE(fs::exists(root_ / "killed-job"));  // no partial bundle

  EventLog log;
  BackgroundWorker rescuer(url_, root_, RescuerOptions(&log));
  ASSERT_TRUE(PollUntil([&] { return Job("killed-job").attempt >= 2; }));
  auto rescue_delay = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - killed_at);
  std::cout << "rescued " << rescue_delay.count() << " ms after the kill (lease " << kLeaseSeconds
            << " s, " << BackendName(GetParam()) << ")" << std::endl;
  // The dead worker's last heartbeat was at most one lease before expiry; allow for the rescue
  // interval and a loaded machine.
  EXPECT_LE(rescue_delay, std::chrono::seconds(kLeaseSeconds + 2));
  ASSERT_TRUE(PollUntil([&] { return Job("killed-job").status == JobStatus::kCompleted; }));
  EXPECT_EQ(rescuer.Join(), 1);

  std::vector<WorkerEvent> rescued = log.Of(WorkerEvent::Kind::kRescued);
  ASSERT_EQ(rescued.size(), 1u);
  EXPECT_EQ(rescued[0].job_id, "killed-job");
  JobRecord job = Job("killed-job");
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_EQ(job.worker_id, "rescuer");
  BacktestResult result = ReadBundle(*job.result_path);
  nlohmann::json engine = nlohmann::json::parse(result.extra_summary_json).at("engine");
  int resumed_at = engine.at("resumed_at_day");
  int days = engine.at("business_days");
  EXPECT_GE(resumed_at, 10);
  EXPECT_EQ(engine.at("computed_days"), days - resumed_at);
  std::cout << "resumed at day " << resumed_at << " of " << days << std::endl;
  ExpectSameResult(result, GenerateSyntheticResult(spec));
  EXPECT_TRUE(SameBits(job.metrics.mean_ic, result.metrics.mean_ic));
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
}

TEST_P(WorkerKillTest, AFrozenWorkerLearnsItLostTheJobAndWritesNothing) {
  JobSpec spec = SlowSpec("frozen-job");
  service_->Submit(spec);
  ChildWorker child(url_, root_, dir_.path() / "frozen.log", "frozen-worker");
  ASSERT_TRUE(PollUntil([&] {
    JobRecord job = Job("frozen-job");
    return job.status == JobStatus::kRunning && job.progress_pct > 0;
  })) << child.Output();
  child.Signal(SIGSTOP);
  {
    EventLog log;
    BackgroundWorker rescuer(url_, root_, RescuerOptions(&log));
    ASSERT_TRUE(PollUntil([&] { return Job("frozen-job").status == JobStatus::kCompleted; }));
  }
  JobRecord completed = Job("frozen-job");
  EXPECT_EQ(completed.attempt, 2);
  // The frozen attempt wakes up, finds it no longer owns the job, and stops.
  child.Signal(SIGCONT);
  ASSERT_TRUE(PollUntil([&] {
    return child.Output().find("event 6 frozen-job attempt=1") != std::string::npos;
  })) << child.Output();
  child.Signal(SIGTERM);
  int status = child.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << child.Output();
  EXPECT_NE(child.Output().find("finished 0"), std::string::npos) << child.Output();
  JobRecord job = Job("frozen-job");
  EXPECT_EQ(job.status, JobStatus::kCompleted);
  EXPECT_EQ(job.attempt, 2);
  EXPECT_EQ(job.completed_at, completed.completed_at);
  ExpectSameResult(ReadBundle(*job.result_path), GenerateSyntheticResult(spec));
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
}

TEST_P(WorkerKillTest, AWorkerKilledWithABatchClaimedHasEveryJobOfTheBatchRescued) {
  constexpr int kJobs = 3;
  std::vector<JobSpec> specs;
  for (int i = 0; i < kJobs; ++i) {
    // About 64 business days at 25 ms each: long enough to be killed while running.
    specs.push_back(Spec("batch-" + std::to_string(i),
                         R"({"seed":77,"symbols":40,"delay_ms_per_day":25})", "signal"));
    service_->Submit(specs.back());
  }
  ChildWorker child(url_, root_, dir_.path() / "batch.log", "doomed-worker", kJobs);
  ASSERT_TRUE(PollUntil([&] {
    for (const JobSpec& spec : specs) {
      JobRecord job = Job(spec.job_id);
      if (job.status != JobStatus::kRunning || job.progress_pct == 0) return false;
    }
    return true;
  })) << child.Output();
  child.Signal(SIGKILL);
  child.Wait();
  // One claim took the whole batch: one transaction, one start time, a lease per job.
  const JobRecord first = Job(specs[0].job_id);
  for (const JobSpec& spec : specs) {
    JobRecord job = Job(spec.job_id);
    EXPECT_EQ(job.worker_id, "doomed-worker");
    EXPECT_EQ(job.started_at, first.started_at);
    EXPECT_EQ(job.attempt, 1);
  }

  EventLog log;
  WorkerOptions options = RescuerOptions(&log);
  options.concurrency = kJobs;
  BackgroundWorker rescuer(url_, root_, options);
  ASSERT_TRUE(PollUntil([&] {
    for (const JobSpec& spec : specs) {
      if (Job(spec.job_id).status != JobStatus::kCompleted) return false;
    }
    return true;
  }));
  EXPECT_EQ(rescuer.Join(), kJobs);
  std::set<std::string> rescued;
  for (const WorkerEvent& event : log.Of(WorkerEvent::Kind::kRescued)) rescued.insert(event.job_id);
  EXPECT_EQ(rescued.size(), static_cast<size_t>(kJobs));
  for (const JobSpec& spec : specs) {
    JobRecord job = Job(spec.job_id);
    EXPECT_TRUE(rescued.count(spec.job_id)) << spec.job_id;
    EXPECT_EQ(job.retry_count, 1);
    EXPECT_EQ(job.attempt, 2);
    EXPECT_EQ(job.worker_id, "rescuer");
    ExpectSameResult(ReadBundle(*job.result_path), GenerateSyntheticResult(spec));
  }
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, WorkerKillTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
