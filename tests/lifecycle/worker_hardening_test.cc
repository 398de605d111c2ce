// The worker items of issue 10 (hardening), each reproduced for real on every backend: errors
// while an attempt ends fail it with their message (item 3), a full disk (item 4), SIGTERM and
// a second signal (item 5), job_timeout (item 6), the error_message of a rescue cleared on
// success (item 7), and a directory btstore did not write in a bundle's place (item 13).

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "btstore/bundle.h"
#include "btstore/engine.h"
#include "btstore/errors.h"
#include "lifecycle/retention_fixture.h"
#include "lifecycle/worker_test_util.h"
#include "support/result_compare.h"
#include "support/temp_dir.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

// WorkerEvent::Kind as btstore_test_worker prints it ("event N ...").
constexpr int kReleasedEvent = static_cast<int>(WorkerEvent::Kind::kReleased);

// A child process (argv[0] is the program) with stdout and stderr in a file; killed if still
// running when this object dies.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const fs::path& log) : log_(log) {
    pid_ = fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      std::vector<char*> args;
      for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void Signal(int signal) { ASSERT_EQ(kill(pid_, signal), 0); }
  // Wait up to `timeout` for the process to end; return its wait status, or nullopt.
  std::optional<int> WaitFor(std::chrono::milliseconds timeout) {
    int status = 0;
    bool ended = PollUntil([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
    if (!ended) return std::nullopt;
    pid_ = -1;
    return status;
  }
  std::string Output() const { return ReadText(log_); }

 private:
  pid_t pid_ = -1;
  fs::path log_;
};

std::vector<std::string> TestWorker(const std::string& url, const fs::path& root,
                                    const std::string& worker_id, bool until_idle = false) {
  std::vector<std::string> argv = {BTSTORE_TEST_WORKER, url, root.string(), "30", worker_id};
  if (until_idle) argv.push_back("until-idle");
  return argv;
}

// Whether the process catches `signal` (a handler is installed), from /proc/PID/status.
bool CatchesSignal(pid_t pid, int signal) {
  std::istringstream status(ReadText("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("SigCgt:", 0) == 0) {
      uint64_t mask = std::stoull(line.substr(7), nullptr, 16);
      return (mask >> (signal - 1)) & 1;
    }
  }
  return false;
}

class WorkerHardeningTest : public LifecycleTest {
 protected:
  JobSpec Slow(const std::string& job_id) {
    // 65 days at 40 ms: over 2 s of work, checkpointed every 5 days.
    return Spec(job_id, R"({"seed":5,"symbols":20,"delay_ms_per_day":40,
                            "checkpoint_every_days":5})");
  }
};

// Item 3: an error while ending an attempt (here the publish lock's directory cannot be made)
// was caught as "abandoned the attempt", leaving the row running until a rescue wrote "stopped
// heartbeating". It fails the attempt with its own message, and leaves no staging behind.
TEST_P(WorkerHardeningTest, ItemThreeAnErrorWhileEndingAnAttemptFailsItWithItsMessage) {
  {
    std::ofstream squatter(root_ / ".locks");  // a file where the store wants a directory
  }
  JobSpec spec = Spec("lockless", R"({"engine":"noop"})");
  spec.max_retries = 0;
  service_->Submit(spec);
  EventLog log;
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions(&log)), 1);
  JobRecord job = Job("lockless");
  ASSERT_EQ(job.status, JobStatus::kFailed) << job.error_message.value_or("");
  EXPECT_NE(job.error_message.value_or("").find(".locks"), std::string::npos)
      << job.error_message.value_or("");
  EXPECT_TRUE(log.Of(WorkerEvent::Kind::kLostLease).empty());
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
  EXPECT_FALSE(fs::exists(root_ / "lockless"));
}

// Item 3, the staging side: a bundle that cannot be staged fails the attempt with the cause.
TEST_P(WorkerHardeningTest, ItemThreeABundleThatCannotBeStagedFailsTheAttemptWithTheCause) {
  { std::ofstream squatter(root_ / ".staging"); }
  JobSpec spec = Spec("stageless", R"({"engine":"noop"})");
  spec.max_retries = 1;
  service_->Submit(spec);
  EventLog log;
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions(&log)), 2);  // retried per policy, then failed
  JobRecord job = Job("stageless");
  ASSERT_EQ(job.status, JobStatus::kFailed);
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_NE(job.error_message.value_or("").find("cannot write the bundle"), std::string::npos)
      << job.error_message.value_or("");
  EXPECT_TRUE(log.Of(WorkerEvent::Kind::kLostLease).empty());
}

// Item 4: the artifact root on a 1 MiB tmpfs in a private mount namespace (the catalog outside
// it). A job too large for it fails with the OS error (retried per policy) whether the disk
// fills while checkpointing or while writing the bundle; no staging and no checkpoint temp file
// remain; and the same worker goes on to complete a job that fits.
TEST_P(WorkerHardeningTest, ItemFourAFullDiskFailsTheAttemptWithTheOsErrorAndTheWorkerGoesOn) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs in a private namespace needs root";
  const fs::path small_root = dir_.path() / "small-root";
  fs::create_directories(small_root);
  // Signals, weights and checkpoints of 3000 symbols over 65 days are several MiB.
  JobSpec checkpointing = Spec("big-ckpt", R"({"symbols":3000,"checkpoint_every_days":2})");
  checkpointing.max_retries = 1;
  checkpointing.priority = Priority::kHigh;
  JobSpec bundle_only = Spec("big-bundle", R"({"symbols":3000,"checkpoint_every_days":0})");
  bundle_only.max_retries = 1;
  bundle_only.priority = Priority::kHigh;
  service_->Submit(checkpointing);
  service_->Submit(bundle_only);
  service_->Submit(Spec("small", R"({"symbols":3,"checkpoint_every_days":0})"));

  const fs::path listing = dir_.path() / "listing.txt";
  std::vector<std::string> worker = TestWorker(url_, small_root, "enospc-worker", true);
  std::string command =
      "mount -t tmpfs -o size=1m btstore-enospc \"$1\" || exit 99; shift; "
      "\"$@\"; status=$?; (cd \"$LISTING_ROOT\" && find . -mindepth 1) > "
      "\"$LISTING\"; exit $status";
  std::vector<std::string> argv = {"env",
                                   "LISTING=" + listing.string(),
                                   "LISTING_ROOT=" + small_root.string(),
                                   "unshare",
                                   "-m",
                                   "sh",
                                   "-c",
                                   command,
                                   "sh",
                                   small_root.string()};
  argv.insert(argv.end(), worker.begin(), worker.end());
  Child child(argv, dir_.path() / "enospc.log");
  std::optional<int> status = child.WaitFor(std::chrono::seconds(120));
  ASSERT_TRUE(status) << child.Output();
  ASSERT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << child.Output();

  for (const std::string id : {"big-ckpt", "big-bundle"}) {
    JobRecord job = Job(id);
    EXPECT_EQ(job.status, JobStatus::kFailed) << id << "\n" << child.Output();
    EXPECT_EQ(job.retry_count, 1) << id;
    EXPECT_NE(job.error_message.value_or("").find("No space left on device"), std::string::npos)
        << id << ": " << job.error_message.value_or("");
  }
  EXPECT_NE(Job("big-ckpt").error_message.value_or("").find(".ckpt"), std::string::npos)
      << Job("big-ckpt").error_message.value_or("");
  EXPECT_EQ(Job("small").status, JobStatus::kCompleted) << child.Output();
  EXPECT_EQ(child.Output().find("abandoned"), std::string::npos) << child.Output();
  const std::string entries = ReadText(listing);
  EXPECT_EQ(entries.find(".ckpt.tmp"), std::string::npos) << entries;
  EXPECT_EQ(entries.find("./.staging/"), std::string::npos) << entries;
  EXPECT_EQ(entries.find("./big-"), std::string::npos) << entries;
  EXPECT_NE(entries.find("./small/summary.json"), std::string::npos) << entries;
}

// Item 5: SIGTERM to a worker process gives its job back at once: pending, fenced by the
// attempt, checkpoint kept, no retry spent, error_message saying the worker shut down. The next
// worker continues from the checkpoint to the same result as an uninterrupted run, and the
// shutdown's message goes when it completes.
TEST_P(WorkerHardeningTest, ItemFiveSigtermGivesTheJobBackAtOnceWithItsCheckpoint) {
  JobSpec spec = Slow("terminated");
  service_->Submit(spec);
  Child child(TestWorker(url_, root_, "terminated-worker"), dir_.path() / "term.log");
  ASSERT_TRUE(PollUntil([&] {
    JobRecord job = Job("terminated");
    return job.status == JobStatus::kRunning && job.checkpoint_path.has_value();
  })) << child.Output();
  child.Signal(SIGTERM);
  std::optional<int> status = child.WaitFor(std::chrono::seconds(30));
  ASSERT_TRUE(status) << child.Output();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << child.Output();
  EXPECT_NE(child.Output().find("event " + std::to_string(kReleasedEvent) + " terminated"),
            std::string::npos)
      << child.Output();

  JobRecord released = Job("terminated");
  EXPECT_EQ(released.status, JobStatus::kPending);
  EXPECT_EQ(released.attempt, 1);
  EXPECT_EQ(released.retry_count, 0);
  EXPECT_FALSE(released.completed_at);
  ASSERT_TRUE(released.checkpoint_path);
  EXPECT_TRUE(fs::exists(*released.checkpoint_path));
  EXPECT_NE(released.error_message.value_or("").find("terminated-worker shut down"),
            std::string::npos)
      << released.error_message.value_or("");
  EXPECT_FALSE(fs::exists(root_ / "terminated"));
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
  // The stopped attempt can write nothing more.
  EXPECT_FALSE(catalog_->Release("terminated", 1, "again", clock_.Now()).applied);

  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions()), 1);
  JobRecord job = Job("terminated");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.attempt, 2);
  EXPECT_EQ(job.retry_count, 0);
  EXPECT_FALSE(job.error_message) << *job.error_message;
  BacktestResult result = ReadBundle(*job.result_path);
  EXPECT_GE(nlohmann::json::parse(result.extra_summary_json)["engine"]["resumed_at_day"], 5);
  ExpectSameResult(result, GenerateSyntheticResult(spec));
}

// Item 5: a cancel requested before the shutdown still wins: the released job ends cancelled.
TEST_P(WorkerHardeningTest, ItemFiveAReleaseDoesNotUndoARequestedCancel) {
  service_->Submit(Spec("asked-to-cancel", R"({"engine":"noop"})"));
  std::vector<JobRecord> claimed =
      catalog_->ClaimJobs("some-worker", 1, std::chrono::seconds(30), clock_.Now());
  ASSERT_EQ(claimed.size(), 1u);
  catalog_->RequestCancel("asked-to-cancel", clock_.Now());
  TransitionResult result =
      catalog_->Release("asked-to-cancel", 1, "some-worker shut down", clock_.Now());
  EXPECT_TRUE(result.applied);
  EXPECT_EQ(result.status, JobStatus::kCancelled);
  EXPECT_TRUE(Job("asked-to-cancel").completed_at);
}

// Item 5: a worker stuck in its shutdown (an engine that ignores the stop) ends at once on a
// second signal.
TEST_P(WorkerHardeningTest, ItemFiveASecondSignalEndsAStuckWorkerAtOnce) {
  JobSpec spec = Spec("stuck", R"({"engine":"stubborn"})");
  catalog_->Submit(spec, clock_.Now());  // the test process's registry has no "stubborn"
  Child child(TestWorker(url_, root_, "stuck-worker"), dir_.path() / "stuck.log");
  ASSERT_TRUE(PollUntil([&] { return Job("stuck").progress_pct == 1; })) << child.Output();
  ASSERT_TRUE(CatchesSignal(child.pid(), SIGTERM));
  child.Signal(SIGINT);
  // The first signal is handled once the handlers are gone; the worker then waits for its
  // stubborn engine (a minute).
  ASSERT_TRUE(
      PollUntil([&] { return !CatchesSignal(child.pid(), SIGTERM); }, std::chrono::seconds(10)))
      << child.Output();
  child.Signal(SIGTERM);
  std::optional<int> status = child.WaitFor(std::chrono::seconds(10));
  ASSERT_TRUE(status) << "the second signal did not end the worker\n" << child.Output();
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM) << *status;
}

// Item 6: job_timeout is enforced on the worker's clock. The attempt past its timeout is
// stopped and failed with "exceeded job_timeout of 300 s", retried from its checkpoint, and the
// retry completes (clearing the message: item 7).
TEST_P(WorkerHardeningTest, ItemSixAnAttemptPastItsJobTimeoutIsStoppedFailedAndRetried) {
  ManualClock clock(TestNow());
  ServiceOptions service_options;
  service_options.clock = &clock;
  std::unique_ptr<Service> service = Service::Open(url_, root_.string(), service_options);
  JobSpec spec = Spec("timed", R"({"seed":5,"symbols":20,"delay_ms_per_day":100,
                                   "checkpoint_every_days":2})");
  spec.job_timeout_seconds = 300;
  service->jobs().Submit(spec);

  EventLog log;
  WorkerOptions options = FastOptions(&log);
  // A lease far longer than the clock's jump, so that only the timeout can stop the attempt.
  options.lease = std::chrono::hours(2);
  options.heartbeat_interval = std::chrono::milliseconds(20);
  options.retry_base_delay = std::chrono::milliseconds(0);
  options.until_idle = true;
  std::unique_ptr<Worker> worker = service->NewWorker(options);
  int finished = 0;
  std::thread runner([&] { finished = worker->Run(); });
  ASSERT_TRUE(PollUntil([&] { return Job("timed").checkpoint_path.has_value(); }));
  // 300 s since the claim is not past the timeout; 301 s is.
  clock.Set(TestNow() + std::chrono::seconds(300));
  ASSERT_TRUE(PollUntil([&] { return Job("timed").heartbeat_at == clock.Now(); }));
  EXPECT_EQ(Job("timed").attempt, 1);
  clock.Set(TestNow() + std::chrono::seconds(301));
  runner.join();
  EXPECT_EQ(finished, 2);

  JobRecord job = Job("timed");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  EXPECT_EQ(job.attempt, 2);
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_FALSE(job.error_message) << *job.error_message;
  std::vector<WorkerEvent> retrying = log.Of(WorkerEvent::Kind::kRetrying);
  ASSERT_EQ(retrying.size(), 1u);
  EXPECT_NE(retrying[0].message.find("exceeded job_timeout of 300 s"), std::string::npos)
      << retrying[0].message;
  BacktestResult result = ReadBundle(*job.result_path);
  EXPECT_GE(nlohmann::json::parse(result.extra_summary_json)["engine"]["resumed_at_day"], 2);
  ExpectSameResult(result, GenerateSyntheticResult(spec));
}

// Item 6 with retries exhausted: the job ends failed with the timeout as its error_message.
TEST_P(WorkerHardeningTest, ItemSixATimedOutLastAttemptFailsSayingSo) {
  ManualClock clock(TestNow());
  ServiceOptions service_options;
  service_options.clock = &clock;
  std::unique_ptr<Service> service = Service::Open(url_, root_.string(), service_options);
  JobSpec spec = Spec("timed-out", R"({"symbols":5,"delay_ms_per_day":60000})");
  spec.job_timeout_seconds = 450;
  spec.max_retries = 0;
  service->jobs().Submit(spec);
  WorkerOptions options = FastOptions();
  options.lease = std::chrono::hours(2);
  options.heartbeat_interval = std::chrono::milliseconds(20);
  options.until_idle = true;
  std::unique_ptr<Worker> worker = service->NewWorker(options);
  std::thread runner([&] { worker->Run(); });
  ASSERT_TRUE(PollUntil([&] { return Job("timed-out").status == JobStatus::kRunning; }));
  clock.Set(TestNow() + std::chrono::seconds(451));
  // A minute per simulated day: only the timeout can end the attempt within the wait.
  const bool ended = PollUntil([&] { return Job("timed-out").status == JobStatus::kFailed; },
                               std::chrono::seconds(30));
  worker->Stop();
  runner.join();
  ASSERT_TRUE(ended) << "still " << ToString(Job("timed-out").status);
  JobRecord job = Job("timed-out");
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_NE(job.error_message.value_or("").find("exceeded job_timeout of 450 s"), std::string::npos)
      << job.error_message.value_or("");
}

// Item 7: a job that completes after a rescue does not keep the rescue's "stopped
// heartbeating" message.
TEST_P(WorkerHardeningTest, ItemSevenCompletionAfterARescueClearsTheRescuesMessage) {
  ManualClock clock(TestNow());
  ServiceOptions service_options;
  service_options.clock = &clock;
  std::unique_ptr<Service> service = Service::Open(url_, root_.string(), service_options);
  service->jobs().Submit(Spec("rescued", R"({"symbols":5})"));
  ASSERT_EQ(
      service->catalog().ClaimJobs("dead-worker", 1, std::chrono::seconds(1), clock.Now()).size(),
      1u);
  clock.Set(TestNow() + std::chrono::seconds(10));  // the dead worker's lease has expired
  EventLog log;
  WorkerOptions options = FastOptions(&log);
  options.retry_base_delay = std::chrono::milliseconds(0);
  options.until_idle = true;
  EXPECT_EQ(service->NewWorker(options)->Run(), 1);
  ASSERT_EQ(log.Of(WorkerEvent::Kind::kRescued).size(), 1u);
  EXPECT_NE(log.Of(WorkerEvent::Kind::kRescued)[0].message.find("stopped heartbeating"),
            std::string::npos);
  JobRecord job = Job("rescued");
  ASSERT_EQ(job.status, JobStatus::kCompleted);
  EXPECT_EQ(job.retry_count, 1);
  EXPECT_FALSE(job.error_message) << *job.error_message;
}

// Item 13: a directory btstore did not write for the job (an export of another job's result, a
// user's own directory) sitting where the job's bundle goes is never deleted: the attempt fails
// saying so, and the directory stays as it was.
TEST_P(WorkerHardeningTest, ItemThirteenAStrangerInTheBundlesPlaceIsLeftAloneAndTheAttemptFails) {
  BacktestResult other = GenerateSyntheticResult(Spec("other-job", R"({"symbols":3})"));
  other.job_id = "other-job";
  WriteBundle(other, root_ / "squat");  // as `result other-job --export <root>/squat` does
  fs::create_directories(root_ / "mine");
  {
    std::ofstream notes(root_ / "mine" / "notes.txt");
    notes << "not btstore's";
  }
  for (const std::string id : {"squat", "mine"}) {
    JobSpec spec = Spec(id, R"({"engine":"noop"})");
    spec.max_retries = 0;
    service_->Submit(spec);
  }
  EXPECT_EQ(RunUntilIdle(url_, root_, FastOptions()), 2);
  for (const std::string id : {"squat", "mine"}) {
    JobRecord job = Job(id);
    EXPECT_EQ(job.status, JobStatus::kFailed) << id;
    EXPECT_NE(job.error_message.value_or("").find("was not written by btstore for this job"),
              std::string::npos)
        << job.error_message.value_or("");
  }
  EXPECT_EQ(ReadBundle(root_ / "squat").job_id, "other-job");
  EXPECT_EQ(ReadText(root_ / "mine" / "notes.txt"), "not btstore's");
  EXPECT_EQ(Entries(root_ / "mine").size(), 1u);
  EXPECT_EQ(FilesUnder(root_ / ".staging"), 0);
  EXPECT_EQ(FilesUnder(root_ / ".trash"), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, WorkerHardeningTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
