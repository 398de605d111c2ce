// Command engines under a real Worker, on both catalogs: job_timeout stops a program that hangs
// (time from a test clock, so the 300 s minimum costs nothing), and the worker removes the
// attempt's working directory while the logs stay.

#include "btstore/command_engine.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <thread>

#include "btstore/errors.h"
#include "lifecycle/retention_fixture.h"
#include "lifecycle/worker_test_util.h"

namespace btstore::testing {
namespace {

// Whether a process is gone (or a zombie: it ran to its end and waits only to be reaped).
bool ProcessGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z';
}

pid_t ReadPid(const std::filesystem::path& file) {
  std::ifstream in(file);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

class CommandEngineTest : public LifecycleTest {
 protected:
  // A worker over its own service with `clock` and `engines`, on a thread until Stop().
  struct ClockedWorker {
    ClockedWorker(const std::string& url, const std::filesystem::path& root, Clock& clock,
                  const EngineRegistry& engines, WorkerOptions options) {
      ServiceOptions service_options;
      service_options.clock = &clock;
      service_options.engines = &engines;
      service = Service::Open(url, root.string(), service_options);
      worker = service->NewWorker(std::move(options));
      thread = std::thread([this] { worker->Run(); });
    }
    ~ClockedWorker() {
      worker->Stop();
      thread.join();
    }
    std::unique_ptr<Service> service;
    std::unique_ptr<Worker> worker;
    std::thread thread;
  };
};

TEST_P(CommandEngineTest, JobTimeoutStopsAHangingProgramAndItsGroup) {
  const std::filesystem::path pids = dir_.path();
  EngineRegistry engines = EngineRegistry::Builtins();
  // The program and a grandchild both hang; neither reports anything.
  RegisterCommandEngine(engines, ParseEngineFlag("hang=echo $$ > " + (pids / "program").string() +
                                                 "; sleep 600 & echo $! > " +
                                                 (pids / "grandchild").string() + "; wait"));
  JobSpec spec = Spec("hangs", R"({"engine":"hang"})");
  spec.job_timeout_seconds = 300;
  spec.max_retries = 0;
  ServiceOptions submit_options;
  submit_options.engines = &engines;
  Service::Open(url_, root_.string(), submit_options)->jobs().Submit(spec);

  ManualClock clock(TestNow());
  WorkerOptions options = FastOptions();
  // A lease longer than the jump of the clock below: only the timeout may end the attempt.
  options.lease = std::chrono::hours(1);
  options.heartbeat_interval = std::chrono::milliseconds(20);
  ClockedWorker worker(url_, root_, clock, engines, options);
  ASSERT_TRUE(PollUntil([&] {
    return std::filesystem::exists(pids / "grandchild") && ReadPid(pids / "grandchild") > 0;
  }));
  const pid_t program = ReadPid(pids / "program");
  const pid_t grandchild = ReadPid(pids / "grandchild");
  EXPECT_EQ(Job("hangs").status, JobStatus::kRunning);
  EXPECT_FALSE(ProcessGone(program));

  clock.Set(TestNow() + std::chrono::seconds(299));
  EXPECT_FALSE(PollUntil([&] { return Job("hangs").status != JobStatus::kRunning; },
                         std::chrono::milliseconds(300)));
  clock.Set(TestNow() + std::chrono::seconds(301));
  ASSERT_TRUE(PollUntil([&] { return Job("hangs").status == JobStatus::kFailed; }));
  const JobRecord job = Job("hangs");
  ASSERT_TRUE(job.error_message);
  EXPECT_NE(job.error_message->find("exceeded job_timeout of 300 s"), std::string::npos)
      << *job.error_message;
  EXPECT_TRUE(ProcessGone(program));
  EXPECT_TRUE(PollUntil([&] { return ProcessGone(grandchild); }));
  EXPECT_FALSE(std::filesystem::exists(root_ / "hangs"));
  EXPECT_FALSE(std::filesystem::exists(root_ / ".runs" / "hangs"));
  EXPECT_TRUE(std::filesystem::exists(root_ / ".logs" / "hangs" / "attempt-1.stderr"));
}

TEST_P(CommandEngineTest, AProgramOutsideAWorkerHasNoPlaceToRun) {
  EngineRegistry engines;
  RegisterCommandEngine(engines, ParseEngineFlag("cmd=true"));
  // A context that is not a worker's: the default has no artifact store.
  class BareContext : public EngineContext {
   public:
    void ReportProgress(int) override {}
    void SaveCheckpoint(std::string_view) override {}
    std::optional<std::string> LoadCheckpoint() override { return std::nullopt; }
    bool StopRequested() override { return false; }
  } context;
  JobRecord job;
  job.job_id = "bare";
  job.config_json = R"({"engine":"cmd"})";
  EXPECT_THROW(engines.MakeFor(job.config_json)->Run(job, context), InternalError);
}

INSTANTIATE_TEST_SUITE_P(Backends, CommandEngineTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
