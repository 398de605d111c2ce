// CleanupOldResults on every catalog backend: what it removes and keeps, dry runs, batches,
// crashes at each step (injected through the catalog primitives, and real SIGKILLs of a cleanup
// process) and two cleaners at once.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/retention_fixture.h"
#include "support/sql_session.h"

extern char** environ;

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

std::set<std::string> AsSet(const std::vector<std::string>& ids) {
  return std::set<std::string>(ids.begin(), ids.end());
}

class RetentionTest : public StoredJobsTest {
 protected:
  RetentionReport Cleanup(int days = 90, int batch_size = 1000, bool dry_run = false) {
    RetentionOptions options;
    options.retention_days = days;
    options.batch_size = batch_size;
    options.dry_run = dry_run;
    return CleanupOldResults(*catalog_, *store_, clock_, options);
  }

  bool RowExists(const std::string& job_id) { return catalog_->FindJob(job_id).has_value(); }

  // The job is gone entirely: row, bundle and checkpoints.
  void ExpectRemoved(const std::string& job_id) {
    SCOPED_TRACE(job_id);
    EXPECT_FALSE(RowExists(job_id));
    EXPECT_FALSE(fs::exists(fs::symlink_status(BundleDir(job_id))));
    EXPECT_FALSE(fs::exists(root_ / ".checkpoints" / job_id));
  }

  // The job is untouched: row unmarked and, when completed, a readable bundle.
  void ExpectKept(const std::string& job_id) {
    SCOPED_TRACE(job_id);
    const std::optional<JobRecord> job = catalog_->FindJob(job_id);
    ASSERT_TRUE(job.has_value());
    EXPECT_FALSE(job->expiring_at.has_value());
    if (job->status == JobStatus::kCompleted) {
      JobService service(*catalog_, *store_, clock_, engines_);
      EXPECT_NO_THROW(service.GetResult(job_id));
    }
  }

  // The invariants a crash at any moment must keep: a completed row that is not marked has its
  // whole bundle; a marked row reads as ResultPathMissing or is gone (never a half-removed
  // result); every bundle directory under the root belongs to a row.
  void ExpectConsistent() {
    JobService service(*catalog_, *store_, clock_, engines_);
    PageRequest page;
    page.limit = kMaxListLimit;
    while (true) {
      const JobPage jobs = catalog_->ListJobs({}, page);
      for (const JobRecord& job : jobs.jobs) {
        if (job.status != JobStatus::kCompleted) continue;
        SCOPED_TRACE(job.job_id);
        if (job.expiring_at) {
          // A marked row may also be gone by now: the server finishes a killed cleaner's
          // in-flight DELETE after the client died.
          try {
            service.GetResult(job.job_id);
            ADD_FAILURE() << "a job marked expiring still serves its result";
          } catch (const ResultPathMissing&) {
          } catch (const JobNotFound&) {
          }
        } else {
          EXPECT_NO_THROW(service.GetResult(job.job_id));
        }
      }
      if (!jobs.next) break;
      page.after = jobs.next;
    }
    for (const fs::directory_entry& entry : fs::directory_iterator(root_)) {
      const std::string name = entry.path().filename().string();
      if (name.starts_with('.')) continue;
      EXPECT_TRUE(RowExists(name)) << "bundle without a row: " << name;
    }
  }

  // Write a checkpoint where the worker keeps them.
  void WriteCheckpoint(const std::string& job_id) {
    const fs::path dir = root_ / ".checkpoints" / job_id;
    fs::create_directories(dir);
    std::ofstream(dir / "attempt-1.ckpt") << "state";
  }

  // Make `count` completed jobs that expired 100 days ago, named prefix-000...
  std::vector<std::string> MakeExpired(const std::string& prefix, int count) {
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i) {
      char suffix[8];
      std::snprintf(suffix, sizeof suffix, "%03d", i);
      ids.push_back(prefix + "-" + suffix);
      MakeCompleted(ids.back(), DaysAgo(101), DaysAgo(100));
    }
    return ids;
  }
};

TEST_P(RetentionTest, DefaultWindowRemoves91DaysOldAndKeeps89) {
  MakeCompleted("job-89", DaysAgo(90), DaysAgo(89));
  MakeCompleted("job-91", DaysAgo(92), DaysAgo(91));
  const RetentionReport report = CleanupOldResults(*catalog_, *store_, clock_, RetentionOptions{});
  EXPECT_EQ(report.removed, 1);
  EXPECT_EQ(report.job_ids, std::vector<std::string>{"job-91"});
  EXPECT_FALSE(report.dry_run);
  ExpectRemoved("job-91");
  ExpectKept("job-89");
}

TEST_P(RetentionTest, CustomWindow) {
  MakeCompleted("job-9", DaysAgo(10), DaysAgo(9));
  MakeCompleted("job-11", DaysAgo(12), DaysAgo(11));
  const RetentionReport report = Cleanup(10);
  EXPECT_EQ(report.job_ids, std::vector<std::string>{"job-11"});
  ExpectRemoved("job-11");
  ExpectKept("job-9");
  // A zero-day window removes everything that has ended.
  EXPECT_EQ(Cleanup(0).job_ids, std::vector<std::string>{"job-9"});
  ExpectRemoved("job-9");
}

TEST_P(RetentionTest, RemovesOnlyTerminalJobsNeverPendingOrRunning) {
  MakePending("job-pending", DaysAgo(1000));
  MakeRunning("job-running", DaysAgo(1000));
  MakeFailed("job-failed", DaysAgo(1000), DaysAgo(999));
  MakeCancelled("job-cancelled", DaysAgo(1000), DaysAgo(999));
  MakeCompleted("job-completed", DaysAgo(1000), DaysAgo(999));
  const RetentionReport report = Cleanup();
  EXPECT_EQ(AsSet(report.job_ids),
            (std::set<std::string>{"job-failed", "job-cancelled", "job-completed"}));
  EXPECT_EQ(report.removed, 3);
  ExpectKept("job-pending");
  ExpectKept("job-running");
  EXPECT_EQ(catalog_->GetJob("job-pending").status, JobStatus::kPending);
  EXPECT_EQ(catalog_->GetJob("job-running").status, JobStatus::kRunning);
  for (const std::string id : {"job-failed", "job-cancelled", "job-completed"}) ExpectRemoved(id);
}

TEST_P(RetentionTest, PinnedJobsAreKept) {
  MakeCompleted("job-pinned", DaysAgo(300), DaysAgo(300));
  MakeCompleted("job-unpinned", DaysAgo(300), DaysAgo(300));
  catalog_->SetPinned("job-pinned", true);
  EXPECT_EQ(Cleanup().job_ids, std::vector<std::string>{"job-unpinned"});
  ExpectKept("job-pinned");
  catalog_->SetPinned("job-pinned", false);
  EXPECT_EQ(Cleanup().job_ids, std::vector<std::string>{"job-pinned"});
  ExpectRemoved("job-pinned");
}

TEST_P(RetentionTest, RemovesBundleRowAndCheckpoints) {
  MakeCompleted("job-old", DaysAgo(100), DaysAgo(100));
  MakeCancelled("job-old-cancelled", DaysAgo(100), DaysAgo(100));
  WriteCheckpoint("job-old");
  WriteCheckpoint("job-old-cancelled");
  fs::create_directories(root_ / ".locks");
  std::ofstream(root_ / ".locks" / "job-old.lock").flush();
  MakeCancelled("job-new-cancelled", DaysAgo(1), DaysAgo(1));
  WriteCheckpoint("job-new-cancelled");
  ASSERT_TRUE(fs::is_directory(BundleDir("job-old")));
  const RetentionReport report = Cleanup();
  EXPECT_EQ(report.removed, 2);
  ExpectRemoved("job-old");
  ExpectRemoved("job-old-cancelled");
  EXPECT_FALSE(fs::exists(root_ / ".locks" / "job-old.lock"));
  EXPECT_TRUE(fs::exists(root_ / ".checkpoints" / "job-new-cancelled" / "attempt-1.ckpt"));
  ExpectConsistent();
}

TEST_P(RetentionTest, ReturnsCountAndIds) {
  const std::vector<std::string> expired = MakeExpired("old", 5);
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));
  const RetentionReport report = Cleanup();
  EXPECT_EQ(report.removed, 5);
  EXPECT_EQ(AsSet(report.job_ids), AsSet(expired));
  EXPECT_EQ(report.job_ids.size(), 5u);
  EXPECT_EQ(Cleanup().removed, 0);  // nothing left to do
}

TEST_P(RetentionTest, DryRunReportsAndRemovesNothing) {
  const std::vector<std::string> expired = MakeExpired("old", 4);
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));
  const RetentionReport dry = Cleanup(90, 3, true);  // pages of 3 over 4 jobs
  EXPECT_TRUE(dry.dry_run);
  EXPECT_EQ(dry.removed, 4);
  EXPECT_EQ(dry.job_ids, expired);  // in job_id order, each once
  for (const std::string& id : expired) ExpectKept(id);
  ExpectKept("recent");
  // What the dry run announced is what a real run removes.
  const RetentionReport real = Cleanup();
  EXPECT_EQ(AsSet(real.job_ids), AsSet(dry.job_ids));
}

TEST_P(RetentionTest, AgesFromCompletedAtNotCreatedAt) {
  MakeCompleted("old-but-rerun", DaysAgo(200), DaysAgo(1));
  MakeFailed("old-failed-recently", DaysAgo(200), DaysAgo(1));
  EXPECT_EQ(Cleanup().removed, 0);
  ExpectKept("old-but-rerun");
  ExpectKept("old-failed-recently");
}

TEST_P(RetentionTest, ResumedOldJobIsKept) {
  MakeCancelled("job-resumed", DaysAgo(200), DaysAgo(150));
  catalog_->Resume("job-resumed", DaysAgo(1));
  EXPECT_EQ(Cleanup().removed, 0);
  ExpectKept("job-resumed");
  EXPECT_EQ(catalog_->GetJob("job-resumed").status, JobStatus::kPending);
}

TEST_P(RetentionTest, RejectsANegativeWindowAndAnEmptyBatch) {
  MakeCompleted("job-old", DaysAgo(100), DaysAgo(100));
  EXPECT_THROW(Cleanup(-1), InvalidArgument);
  EXPECT_THROW(Cleanup(90, 0), InvalidArgument);
  EXPECT_THROW(Cleanup(-1, 1000, true), InvalidArgument);
  ExpectKept("job-old");
}

TEST_P(RetentionTest, BatchesOfSevenOverFiftyJobs) {
  const std::vector<std::string> expired = MakeExpired("old", 50);
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));
  std::vector<int64_t> progress;
  RetentionOptions options;
  options.batch_size = 7;
  options.on_progress = [&](int64_t done) { progress.push_back(done); };
  const RetentionReport report = CleanupOldResults(*catalog_, *store_, clock_, options);
  EXPECT_EQ(report.removed, 50);
  EXPECT_EQ(AsSet(report.job_ids), AsSet(expired));
  EXPECT_EQ(progress.size(), 8u);  // seven batches of 7, one of 1
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), 50);
  for (const std::string& id : expired) ExpectRemoved(id);
  ExpectKept("recent");
}

TEST_P(RetentionTest, LeavesBundlesOutsideTheRootAlone) {
  MakeCompleted("job-outside", DaysAgo(100), DaysAgo(100));
  const fs::path outside = dir_.path() / "elsewhere" / "job-outside";
  fs::create_directories(outside.parent_path());
  fs::rename(BundleDir("job-outside"), outside);
  SetResultPath("job-outside", outside.string());
  MakeCompleted("job-at-root", DaysAgo(100), DaysAgo(100));
  SetResultPath("job-at-root", root_.string());
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));

  EXPECT_EQ(Cleanup().removed, 2);
  EXPECT_FALSE(RowExists("job-outside"));
  EXPECT_FALSE(RowExists("job-at-root"));
  EXPECT_TRUE(fs::exists(outside / kSummaryFile));     // not ours to delete
  EXPECT_FALSE(fs::exists(BundleDir("job-at-root")));  // its own directory went
  ExpectKept("recent");                                // the root was not emptied
}

TEST_P(RetentionTest, LeavesAnotherJobsBundleAlone) {
  MakeCompleted("job-old", DaysAgo(100), DaysAgo(100));
  MakeCompleted("job-recent", DaysAgo(2), DaysAgo(1));
  // A damaged row: the old job names the recent job's bundle as its own.
  SetResultPath("job-old", BundleDir("job-recent").string());
  EXPECT_EQ(Cleanup().job_ids, std::vector<std::string>{"job-old"});
  ExpectRemoved("job-old");
  ExpectKept("job-recent");
}

// --- Crashes injected by driving the catalog primitives to a step and stopping there --------

TEST_P(RetentionTest, CrashAfterMarkingIsFinishedByTheNextRun) {
  const std::vector<std::string> expired = MakeExpired("old", 6);
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));
  ASSERT_EQ(catalog_->MarkExpiring(DaysAgo(90), 1000, TestNow()).size(), 6u);
  // Bundles whole, rows marked: readers already get ResultPathMissing.
  for (const std::string& id : expired) EXPECT_TRUE(fs::exists(BundleDir(id) / kSummaryFile));
  ExpectConsistent();
  // Resume refuses a job being removed.
  EXPECT_THROW(catalog_->Resume(expired.front(), TestNow()), InvalidTransition);

  const RetentionReport report = Cleanup();
  EXPECT_EQ(AsSet(report.job_ids), AsSet(expired));
  for (const std::string& id : expired) ExpectRemoved(id);
  ExpectKept("recent");
  ExpectConsistent();
}

TEST_P(RetentionTest, CrashAfterRemovingSomeBundlesIsFinishedByTheNextRun) {
  const std::vector<std::string> expired = MakeExpired("old", 6);
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));
  catalog_->MarkExpiring(DaysAgo(90), 1000, TestNow());
  for (size_t i = 0; i < 3; ++i) fs::remove_all(BundleDir(expired[i]));
  ExpectConsistent();

  const RetentionReport report = Cleanup();
  EXPECT_EQ(report.removed, 6);
  for (const std::string& id : expired) ExpectRemoved(id);
  ExpectKept("recent");
  ExpectConsistent();
}

TEST_P(RetentionTest, CrashAfterDeletingSomeRowsIsFinishedByTheNextRun) {
  const std::vector<std::string> expired = MakeExpired("old", 6);
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));
  catalog_->MarkExpiring(DaysAgo(90), 1000, TestNow());
  for (const std::string& id : expired) fs::remove_all(BundleDir(id));
  ASSERT_EQ(catalog_->DeleteExpiring({expired[0], expired[1]}).size(), 2u);
  ExpectConsistent();

  const RetentionReport report = Cleanup();
  EXPECT_EQ(AsSet(report.job_ids),
            AsSet(std::vector<std::string>(expired.begin() + 2, expired.end())));
  for (const std::string& id : expired) ExpectRemoved(id);
  ExpectKept("recent");
  ExpectConsistent();
}

TEST_P(RetentionTest, FailedRemovalKeepsTheRowsMarkedUntilARunSucceeds) {
  const std::vector<std::string> expired = MakeExpired("old", 3);
  // A file where the trash directory belongs makes every bundle removal fail.
  std::ofstream(root_ / ".trash") << "in the way";
  EXPECT_THROW(Cleanup(), InternalError);
  for (const std::string& id : expired) {
    SCOPED_TRACE(id);
    const std::optional<JobRecord> job = catalog_->FindJob(id);
    ASSERT_TRUE(job.has_value());  // a row goes only after its files
    EXPECT_TRUE(job->expiring_at.has_value());
    EXPECT_TRUE(fs::exists(BundleDir(id) / kSummaryFile));
  }
  ExpectConsistent();

  fs::remove(root_ / ".trash");
  EXPECT_EQ(AsSet(Cleanup().job_ids), AsSet(expired));
  for (const std::string& id : expired) ExpectRemoved(id);
}

// --- Real crashes: a cleanup process SIGKILLed at random moments ----------------------------

// A child process running retention_crash_child, with its stdout on a pipe.
class CleanupProcess {
 public:
  CleanupProcess(const std::string& url, const fs::path& root, int batch_size) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    const std::string now = std::to_string(TestNow().time_since_epoch().count());
    const std::string batch = std::to_string(batch_size);
    std::vector<std::string> args = {
        BTSTORE_RETENTION_CRASH_CHILD, url, root.string(), now, "90", batch};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    out_ = fds[0];
    if (rc != 0) {
      close(out_);
      throw std::runtime_error("cannot start " + args[0]);
    }
  }
  ~CleanupProcess() {
    if (pid_ > 0) Kill();
    close(out_);
  }

  // Return the next line the child printed, or "" at its end; fails the test after a minute.
  std::string ReadLine() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (true) {
      const size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw std::runtime_error("the cleanup process printed nothing");
      pollfd fd{out_, POLLIN, 0};
      if (poll(&fd, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
        throw std::runtime_error("poll failed");
      }
      char chunk[256];
      const ssize_t n = read(out_, chunk, sizeof chunk);
      if (n == 0) return "";
      if (n > 0) buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  void Kill() {
    kill(pid_, SIGKILL);
    Wait();
  }

  // Wait for the child to end; return its exit status (-1 when killed by a signal).
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
};

TEST_P(RetentionTest, SigkilledCleanupsLeaveAConsistentStateThatARerunFinishes) {
  const std::vector<std::string> expired = MakeExpired("old", 100);
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));
  MakeRunning("ancient-running", DaysAgo(1000));
  MakeCompleted("ancient-pinned", DaysAgo(1000), DaysAgo(1000));
  catalog_->SetPinned("ancient-pinned", true);

  std::mt19937 random(20261125);
  int killed_mid_run = 0;
  for (int round = 0; round < 10; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    CleanupProcess child(url_, root_, 2);
    // Let the child finish 1..4 batches of two jobs, then kill it a random moment later:
    // somewhere in marking, removing files or deleting rows of the next batch.
    const int batches = std::uniform_int_distribution<int>(1, 4)(random);
    std::string line;
    for (int i = 0; i < batches; ++i) {
      line = child.ReadLine();
      if (line.empty() || line.starts_with("done")) break;
    }
    // The jitter picks the moment of the crash; it does not wait for anything.
    std::this_thread::sleep_for(
        std::chrono::microseconds(std::uniform_int_distribution<int>(0, 40000)(random)));
    child.Kill();
    if (line.starts_with("progress")) ++killed_mid_run;
    ExpectConsistent();
    ExpectKept("recent");
    ExpectKept("ancient-running");
    ExpectKept("ancient-pinned");
  }
  EXPECT_GT(killed_mid_run, 0);

  CleanupProcess last(url_, root_, 3);
  std::string line;
  do {
    line = last.ReadLine();
  } while (!line.empty() && !line.starts_with("done"));
  EXPECT_TRUE(line.starts_with("done")) << "the final cleanup did not finish";
  EXPECT_EQ(last.Wait(), 0);

  for (const std::string& id : expired) ExpectRemoved(id);
  ExpectKept("recent");
  ExpectKept("ancient-running");
  ExpectKept("ancient-pinned");
  ExpectConsistent();
  EXPECT_EQ(Cleanup().removed, 0);
}

// --- Two cleaners at once ---------------------------------------------------------------------

TEST_P(RetentionTest, TwoCleanersAtOnceRemoveEachJobExactlyOnce) {
  // The cleaners are interleaved through their on_marked callbacks, so both really work at
  // once and each loses a batch it marked to the other:
  //   A marks batch 1 and waits;
  //   B marks (batch 1 again: marked rows are handed out until deleted), removes and deletes it,
  //     marks batch 2 and waits;
  //   A sweeps batch 1 (already gone: its DELETE removes nothing), goes on with batch 2 (marked by
  //     B) and the rest, and ends;
  //   B sweeps batch 2 (already gone), finds nothing more and ends.
  const std::vector<std::string> expired = MakeExpired("old", 60);
  MakeCompleted("recent", DaysAgo(2), DaysAgo(1));
  MakePending("ancient-pending", DaysAgo(1000));
  constexpr int kBatch = 5;

  std::mutex mutex;
  std::condition_variable changed;
  bool a_marked = false, b_marked_second = false, a_done = false;
  auto wait_for = [&](const bool& flag) {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(60), [&] { return flag; }));
  };
  auto set = [&](bool& flag) {
    std::lock_guard lock(mutex);
    flag = true;
    changed.notify_all();
  };
  RetentionReport reports[2];
  std::exception_ptr errors[2];
  auto run = [&](int i, std::function<void(const std::vector<std::string>&)> on_marked) {
    try {
      std::unique_ptr<Catalog> catalog = OpenCatalog();
      RetentionOptions options;
      options.batch_size = kBatch;
      options.on_marked = std::move(on_marked);
      reports[i] = CleanupOldResults(*catalog, *store_, clock_, options);
    } catch (const std::exception&) {
      errors[i] = std::current_exception();
    }
  };
  std::vector<std::vector<std::string>> marked_by[2];
  {
    std::jthread a([&] {
      run(0, [&](const std::vector<std::string>& ids) {
        marked_by[0].push_back(ids);
        if (marked_by[0].size() != 1) return;
        set(a_marked);
        wait_for(b_marked_second);
      });
      set(a_done);
    });
    wait_for(a_marked);
    std::jthread b([&] {
      run(1, [&](const std::vector<std::string>& ids) {
        marked_by[1].push_back(ids);
        if (marked_by[1].size() != 2) return;
        set(b_marked_second);
        wait_for(a_done);
      });
    });
  }
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  // Both marked the first batch; B's second batch is the one A went on with.
  ASSERT_GE(marked_by[0].size(), 2u);
  ASSERT_EQ(marked_by[1].size(), 2u);
  EXPECT_EQ(marked_by[0][0], marked_by[1][0]);
  EXPECT_EQ(marked_by[0][1], marked_by[1][1]);
  // Each removed its share, and no job is counted twice.
  EXPECT_EQ(reports[1].job_ids, marked_by[1][0]);
  EXPECT_EQ(reports[1].removed, kBatch);
  EXPECT_EQ(reports[0].removed, 60 - kBatch);
  std::vector<std::string> all = reports[0].job_ids;
  all.insert(all.end(), reports[1].job_ids.begin(), reports[1].job_ids.end());
  EXPECT_EQ(all.size(), 60u);
  EXPECT_EQ(AsSet(all), AsSet(expired));
  for (const std::string& id : expired) ExpectRemoved(id);
  ExpectKept("recent");
  ExpectKept("ancient-pending");
  ExpectConsistent();
}

TEST_P(RetentionTest, FreeRunningCleanersAtOnceRemoveEachJobExactlyOnce) {
  // Without scripted turns: whatever the interleaving, the counts add up exactly.
  const std::vector<std::string> expired = MakeExpired("old", 60);
  RetentionReport reports[2];
  std::exception_ptr errors[2];
  {
    std::vector<std::jthread> cleaners;
    for (int i = 0; i < 2; ++i) {
      cleaners.emplace_back([&, i] {
        try {
          std::unique_ptr<Catalog> catalog = OpenCatalog();
          RetentionOptions options;
          options.batch_size = 5;
          reports[i] = CleanupOldResults(*catalog, *store_, clock_, options);
        } catch (const std::exception&) {
          errors[i] = std::current_exception();
        }
      });
    }
  }
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  EXPECT_EQ(reports[0].removed + reports[1].removed, 60);
  std::vector<std::string> all = reports[0].job_ids;
  all.insert(all.end(), reports[1].job_ids.begin(), reports[1].job_ids.end());
  EXPECT_EQ(all.size(), 60u);
  EXPECT_EQ(AsSet(all), AsSet(expired));
  for (const std::string& id : expired) ExpectRemoved(id);
  ExpectConsistent();
}

// --- A job brought back to life between mark and delete ---------------------------------------

TEST_P(RetentionTest, AJobReactivatedBetweenMarkAndDeleteSurvives) {
  // Resume refuses a job that retention marked, so a marked row can only become active again
  // through a writer outside btstore: the platform's own tools share `backtest_jobs` and re-run
  // a job by setting it back to pending. The final DELETE re-checks the status for that case.
  MakeFailed("old-failed", DaysAgo(200), DaysAgo(100));
  MakeCancelled("old-cancelled", DaysAgo(200), DaysAgo(100));
  MakeCompleted("old-completed", DaysAgo(200), DaysAgo(100));
  SqlSession platform(url_);
  bool checked = false;
  RetentionOptions options;
  options.on_marked = [&](const std::vector<std::string>& ids) {
    ASSERT_EQ(ids, (std::vector<std::string>{"old-cancelled", "old-completed", "old-failed"}));
    // btstore's own resume is refused while the job is being removed...
    EXPECT_THROW(catalog_->Resume("old-cancelled", clock_.Now()), InvalidTransition);
    // ...but another program re-runs the failed job.
    EXPECT_EQ(platform.Execute("UPDATE backtest_jobs SET status = 'pending', completed_at = NULL "
                               "WHERE job_id = 'old-failed'"),
              1);
    checked = true;
  };
  RetentionReport report = CleanupOldResults(*catalog_, *store_, clock_, options);
  ASSERT_TRUE(checked);
  EXPECT_EQ(AsSet(report.job_ids), (std::set<std::string>{"old-cancelled", "old-completed"}));
  EXPECT_EQ(report.removed, 2);
  const std::optional<JobRecord> survivor = catalog_->FindJob("old-failed");
  ASSERT_TRUE(survivor.has_value());
  EXPECT_EQ(survivor->status, JobStatus::kPending);
  ExpectRemoved("old-cancelled");
  ExpectRemoved("old-completed");
  // A later run leaves the active job alone as well.
  EXPECT_EQ(Cleanup().removed, 0);
  EXPECT_TRUE(RowExists("old-failed"));
}

INSTANTIATE_TEST_SUITE_P(Backends, RetentionTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
