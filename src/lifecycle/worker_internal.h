#pragma once
// The worker's private parts, shared by its three files: worker.cc (the run loop: claims,
// heartbeats, the cancel listener, rescue), worker_attempt.cc (one attempt's outcome: stage,
// lock, re-check, publish, complete or unpublish; fail; stop; the group commit of completions)
// and worker_checkpoints.cc (the engine's context: progress and checkpoints, and the heartbeat
// that records them).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "btstore/catalog.h"
#include "btstore/engine.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"

namespace btstore::internal {

// Pauses between calls to a catalog that is unavailable (e.g. PostgreSQL restarting): short at
// first so a brief outage costs little, doubling up to a bound so a long one is not hammered.
constexpr std::chrono::milliseconds kOutageFirstDelay{100};
constexpr std::chrono::milliseconds kOutageMaxDelay{5000};

// Bounded exponential backoff over an outage of the catalog.
class OutageBackoff {
 public:
  // The pause before the next try; each call doubles the following one, up to the bound.
  std::chrono::milliseconds Next() {
    std::chrono::milliseconds delay = delay_;
    delay_ = std::min(delay_ * 2, kOutageMaxDelay);
    ++failures_;
    return delay;
  }
  // The catalog answered: the next outage starts over with a short pause.
  void Reset() {
    delay_ = kOutageFirstDelay;
    failures_ = 0;
  }
  // Consecutive failed tries since the last success.
  int failures() const { return failures_; }

 private:
  std::chrono::milliseconds delay_ = kOutageFirstDelay;
  int failures_ = 0;
};

// Why a running attempt was asked to stop.
enum class StopReason { kNone, kCancel, kLostLease, kShutdown, kTimeout };

// The shared state of one running attempt: written by the heartbeat and listener threads, read
// by the job thread and its engine.
struct RunningJob {
  explicit RunningJob(JobRecord record) : job(std::move(record)) {}

  const JobRecord job;
  std::atomic<bool> stop{false};
  std::atomic<StopReason> reason{StopReason::kNone};
  // The worker is shutting down: calls to an unavailable catalog are no longer retried.
  std::atomic<bool> shutdown{false};
  std::atomic<int> progress{0};
  std::atomic<bool> done{false};
  std::thread thread;

  std::mutex mutex;
  std::condition_variable wake;
  std::optional<std::string> saved_checkpoint;     // guarded by mutex
  std::optional<std::string> recorded_checkpoint;  // guarded by mutex
  std::chrono::steady_clock::time_point last_owned_heartbeat =
      std::chrono::steady_clock::now();  // guarded by mutex

  // Ask the engine to stop; the first reason wins (a cancel seen before a shutdown still ends
  // the job cancelled).
  void RequestStop(StopReason why) {
    StopReason expected = StopReason::kNone;
    reason.compare_exchange_strong(expected, why);
    stop.store(true);
    std::lock_guard lock(mutex);
    wake.notify_all();
  }
};

// Group commit of completions: attempts of one worker that finish at about the same time are
// completed in one catalog transaction, so they share one durable commit. The first caller to
// arrive while no commit is under way leads: it commits every completion queued by then, its
// own included, while later callers queue for the next commit. Each caller has already made its
// bundle durable, and each completion stays fenced by its own attempt (Catalog::CompleteMany).
class CompletionGroup {
 public:
  explicit CompletionGroup(Catalog& catalog) : catalog_(catalog) {}

  // Complete `request` in the next group commit and return its result. Throws what its commit
  // threw: CatalogUnavailable (the commit may or may not have happened; the move is safe to
  // repeat), or the error of this completion alone (a commit that fails for a group is tried
  // again one completion at a time, so one bad completion does not fail the others).
  TransitionResult Complete(const CompletionRequest& request, Timestamp now);

 private:
  struct Pending {
    const CompletionRequest* request = nullptr;
    TransitionResult result;
    std::exception_ptr error;
    bool done = false;
  };
  // Commit the queued completions; called and returns with `lock` held.
  void Lead(std::unique_lock<std::mutex>& lock, Timestamp now);
  // Commit `group` outside the lock, filling each member's result or error.
  void Commit(const std::vector<Pending*>& group, Timestamp now);

  Catalog& catalog_;
  std::mutex mutex_;
  std::condition_variable committed_;
  std::vector<Pending*> queue_;  // guarded by mutex_
  bool committing_ = false;      // guarded by mutex_
};

}  // namespace btstore::internal

namespace btstore {

using internal::CompletionGroup;
using internal::OutageBackoff;
using internal::RunningJob;
using internal::StopReason;

class Worker::Impl {
 public:
  Impl(Catalog& catalog, ArtifactStore& store, Clock& clock, WorkerOptions options);
  ~Impl();

  int Run();

  void Stop() {
    // Only an atomic store and a write(2): both async-signal-safe.
    stop_.store(true);
    Wake();
  }

 private:
  class Context;
  // Stops and joins every thread when Run() ends, normally or by an exception.
  class ShutdownGuard {
   public:
    explicit ShutdownGuard(Impl& impl) : impl_(impl) {}
    ~ShutdownGuard() { impl_.Shutdown(); }

   private:
    Impl& impl_;
  };

  // Wake the main loop (async-signal-safe).
  void Wake();
  // Wait until Wake() or the timeout, then clear the wake-up counter.
  void WaitForWake(std::chrono::milliseconds timeout);

  void Emit(WorkerEvent::Kind kind, const JobRecord& job, std::string message, int progress = 0) {
    if (!options_.on_event) return;
    WorkerEvent event{kind, job.job_id, job.attempt, progress, std::move(message)};
    std::lock_guard lock(event_mutex_);
    options_.on_event(event);
  }

  // An event about the worker itself rather than a job (an empty job_id): the catalog outage
  // messages.
  void EmitWorkerEvent(WorkerEvent::Kind kind, std::string message) {
    if (!options_.on_event) return;
    WorkerEvent event{kind, "", 0, 0, std::move(message)};
    std::lock_guard lock(event_mutex_);
    options_.on_event(event);
  }

  // Call `call` (a catalog operation of `job`'s attempt) until it does not throw
  // CatalogUnavailable, backing off between tries; rethrow once the worker shuts down. The
  // operations retried this way are fenced by the attempt, so repeating one is safe.
  template <typename Call>
  auto RetryWhileUnavailable(RunningJob& job, std::string_view what, Call&& call)
      -> decltype(call()) {
    OutageBackoff backoff;
    for (;;) {
      try {
        return call();
      } catch (const CatalogUnavailable& e) {
        if (job.shutdown.load()) throw;
        std::chrono::milliseconds delay = backoff.Next();
        EmitWorkerEvent(WorkerEvent::Kind::kRetrying,
                        "the catalog is unavailable for " + std::string(what) + " of job " +
                            job.job.job_id + " (attempt " + std::to_string(job.job.attempt) +
                            "): " + e.what() + "; retrying in " + std::to_string(delay.count()) +
                            " ms");
        std::unique_lock lock(job.mutex);
        job.wake.wait_for(lock, delay, [&] { return job.shutdown.load(); });
      }
    }
  }

  std::vector<std::shared_ptr<RunningJob>> Snapshot() {
    std::lock_guard lock(jobs_mutex_);
    std::vector<std::shared_ptr<RunningJob>> jobs;
    for (auto& [id, job] : running_) jobs.push_back(job);
    return jobs;
  }

  void Shutdown();
  void StartThreads();
  void HeartbeatLoop();
  void ListenerLoop();
  void Heartbeat(RunningJob& job);
  // Read the job's row (a read, so no commit) and ask the attempt to stop when the job is no
  // longer running in it (kLostLease) or its cancel was requested (kCancel).
  void CheckOwnership(RunningJob& job);
  void FlushCheckpoint(RunningJob& job);
  void CheckTimeout(RunningJob& job);
  void RunJob(RunningJob& job);
  void FinishAfterRun(RunningJob& job, BacktestResult result);
  std::string PublishAndComplete(RunningJob& job, const BacktestResult& result,
                                 const StagedBundle& staged, std::string& result_path);
  void FailAttempt(RunningJob& job, const std::string& error);
  void EndStopped(RunningJob& job);
  void Rescue();
  bool CatalogIdle();
  int ReapFinished();
  bool Step(std::chrono::steady_clock::time_point& next_rescue);
  void WaitOutage(std::chrono::milliseconds delay);

  WorkerOptions options_;
  Catalog& catalog_;
  ArtifactStore& store_;
  Clock& clock_;

  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;
  std::atomic<int> finished_attempts_{0};

  CompletionGroup completions_;

  // The engines this worker has: it claims only their jobs.
  std::vector<std::string> engine_names_;

  std::mutex jobs_mutex_;
  std::map<std::string, std::shared_ptr<RunningJob>> running_;  // by job_id

  std::mutex event_mutex_;

  // Background threads (heartbeats, cancel listener) and their stop signal.
  std::mutex threads_mutex_;
  std::condition_variable threads_wake_;
  bool threads_stop_ = false;   // guarded by threads_mutex_
  bool heartbeat_now_ = false;  // guarded by threads_mutex_
  std::thread heartbeat_thread_;
  std::thread listener_thread_;
};

// The engine's view of its attempt (defined in worker_checkpoints.cc).
class Worker::Impl::Context : public EngineContext {
 public:
  Context(Impl& impl, RunningJob& job) : impl_(impl), job_(job) {}
  // Removes the attempt's working directory, if the engine made one.
  ~Context() override;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  void ReportProgress(int pct) override;
  void SaveCheckpoint(std::string_view bytes) override;
  std::optional<std::string> LoadCheckpoint() override;
  bool StopRequested() override;
  bool SleepUnlessStopped(std::chrono::milliseconds duration) override;
  std::string MakeAttemptDirectory() override;
  std::string LogLocation(LogStream stream) override;

 private:
  Impl& impl_;
  RunningJob& job_;
  bool made_attempt_dir_ = false;
};

}  // namespace btstore
