// The worker runtime: claims jobs, runs their engines on threads with heartbeats, checkpoints
// and cancellation, publishes bundles and completes jobs, and rescues jobs of dead workers.
// See docs/DESIGN.md, "The path of a job", steps 2-7.

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "btstore/engine.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/artifact_root_internal.h"

namespace btstore {

namespace fs = std::filesystem;

namespace {

constexpr std::chrono::milliseconds kMaxHeartbeatInterval{1000};
constexpr std::chrono::milliseconds kMinHeartbeatInterval{50};
constexpr std::chrono::milliseconds kMaxRetryDelay = std::chrono::minutes(5);
// How long one wait on the cancel listener lasts; bounds how late the listener sees Stop().
constexpr std::chrono::milliseconds kListenerWait{200};
// Pause before reopening a cancel listener whose database went away.
constexpr std::chrono::milliseconds kListenerRetryPause{1000};
// Jobs rescued per call of the rescue loop.
constexpr int kRescueBatch = 100;
// Staging directories older than this are debris of a crashed writer.
constexpr std::chrono::seconds kStagingDebrisAge = std::chrono::hours(1);
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

std::string DefaultWorkerId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "localhost");
  std::random_device random;
  std::ostringstream id;
  id << host << ":" << getpid() << ":" << std::hex << random();
  return id.str();
}

[[noreturn]] void ThrowIoError(const std::string& what, const fs::path& path, int err) {
  throw InternalError(what + " " + path.string() + ": " + std::strerror(err),
                      {{"path", path.string()}});
}

void WriteAll(int fd, std::string_view bytes, const fs::path& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowIoError("cannot write", path, errno);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

void FsyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowIoError("cannot open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) ThrowIoError("cannot flush directory", dir, err);
}

// Write `bytes` to `path` atomically and durably: a temporary file, fsync, rename, fsync of the
// directory. A reader (the next attempt) sees the old checkpoint or the new one, never a part.
void WriteFileAtomically(const fs::path& path, std::string_view bytes) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) ThrowIoError("cannot create", tmp, errno);
  try {
    WriteAll(fd, bytes, tmp);
  } catch (const Error&) {
    ::close(fd);
    throw;
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ThrowIoError("cannot flush", tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) ThrowIoError("cannot rename", tmp, errno);
  FsyncDirectory(path.parent_path());
}

// An exclusive flock on `<root>/.locks/<job_id>.lock`, released when the object dies. It makes
// "check ownership, publish, complete or unpublish" one critical section among the workers of
// every process sharing the root.
class JobFileLock {
 public:
  JobFileLock(const fs::path& root, const std::string& job_id) {
    fs::path dir = root / ".locks";
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) ThrowIoError("cannot create", dir, ec.value());
    fs::path path = dir / (job_id + ".lock");
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) ThrowIoError("cannot open lock file", path, errno);
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd_);
      ThrowIoError("cannot lock", path, err);
    }
  }
  ~JobFileLock() { ::close(fd_); }
  JobFileLock(const JobFileLock&) = delete;
  JobFileLock& operator=(const JobFileLock&) = delete;

 private:
  int fd_ = -1;
};

// Why a running attempt was asked to stop.
enum class StopReason { kNone, kCancel, kLostLease, kShutdown };

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

}  // namespace

class Worker::Impl {
 public:
  Impl(std::string catalog_url, fs::path artifact_root, WorkerOptions options,
       CatalogOptions catalog_options)
      : options_(std::move(options)),
        root_(internal::PrepareArtifactRoot(artifact_root)),
        catalog_(Catalog::Open(catalog_url, catalog_options)) {
    if (options_.worker_id.empty()) options_.worker_id = DefaultWorkerId();
    ValidateWorkerId(options_.worker_id);
    if (options_.concurrency < 1) {
      throw InvalidArgument(
          "worker concurrency must be at least 1",
          {{"field", "concurrency"}, {"value", std::to_string(options_.concurrency)}});
    }
    if (options_.lease < std::chrono::seconds(1)) {
      throw InvalidArgument("the lease must be at least 1 second", {{"field", "lease"}});
    }
    if (options_.heartbeat_interval.count() <= 0) {
      options_.heartbeat_interval = std::clamp<std::chrono::milliseconds>(
          std::chrono::duration_cast<std::chrono::milliseconds>(options_.lease) / 6,
          kMinHeartbeatInterval, kMaxHeartbeatInterval);
    }
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) ThrowIoError("cannot create an eventfd for", root_, errno);
  }

  ~Impl() {
    Shutdown();
    ::close(wake_fd_);
  }

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

  void Wake() {
    uint64_t one = 1;
    ssize_t rc = ::write(wake_fd_, &one, sizeof(one));
    (void)rc;  // a full counter already means "wake up"
  }

  // Wait until Wake() or the timeout, then clear the wake-up counter.
  void WaitForWake(std::chrono::milliseconds timeout) {
    pollfd pfd{wake_fd_, POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(timeout.count(), 0)));
    uint64_t value = 0;
    ssize_t rc = ::read(wake_fd_, &value, sizeof(value));
    (void)rc;  // EAGAIN: nothing to clear
  }

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
  void FlushCheckpoint(RunningJob& job);
  void RunJob(RunningJob& job);
  void FinishAfterRun(RunningJob& job, BacktestResult result);
  void FailAttempt(RunningJob& job, const std::string& error);
  void EndStopped(RunningJob& job);
  void Rescue();
  bool CatalogIdle();
  int ReapFinished();
  bool Step(std::chrono::steady_clock::time_point& next_rescue);
  void WaitOutage(std::chrono::milliseconds delay);

  WorkerOptions options_;
  fs::path root_;
  std::unique_ptr<Catalog> catalog_;
  SystemClock clock_;

  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;
  std::atomic<int> finished_attempts_{0};

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

// The engine's view of its attempt.
class Worker::Impl::Context : public EngineContext {
 public:
  Context(Impl& impl, RunningJob& job) : impl_(impl), job_(job) {}

  void ReportProgress(int pct) override {
    pct = std::clamp(pct, 0, 100);
    if (job_.progress.exchange(pct) != pct) {
      impl_.Emit(WorkerEvent::Kind::kProgress, job_.job, "", pct);
    }
  }

  void SaveCheckpoint(std::string_view bytes) override {
    fs::path dir = impl_.root_ / ".checkpoints" / job_.job.job_id;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) ThrowIoError("cannot create", dir, ec.value());
    fs::path path = dir / ("attempt-" + std::to_string(job_.job.attempt) + ".ckpt");
    WriteFileAtomically(path, bytes);
    // Recorded in the row by the next heartbeat, fenced by this attempt.
    std::lock_guard lock(job_.mutex);
    job_.saved_checkpoint = path.string();
  }

  std::optional<std::string> LoadCheckpoint() override {
    if (!job_.job.checkpoint_path) return std::nullopt;
    const fs::path path(*job_.job.checkpoint_path);
    std::ifstream in(path, std::ios::binary);
    // A checkpoint removed meanwhile (retention, an operator) only means starting over.
    if (!in) return std::nullopt;
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (in.bad()) ThrowIoError("cannot read checkpoint", path, EIO);
    return bytes.str();
  }

  bool StopRequested() override { return job_.stop.load(); }

  bool SleepUnlessStopped(std::chrono::milliseconds duration) override {
    std::unique_lock lock(job_.mutex);
    return job_.wake.wait_for(lock, duration, [&] { return job_.stop.load(); });
  }

 private:
  Impl& impl_;
  RunningJob& job_;
};

void Worker::Impl::Heartbeat(RunningJob& job) {
  std::optional<std::string> checkpoint;
  {
    std::lock_guard lock(job.mutex);
    if (job.saved_checkpoint != job.recorded_checkpoint) checkpoint = job.saved_checkpoint;
  }
  HeartbeatResult result = catalog_->Heartbeat(job.job.job_id, job.job.attempt, job.progress.load(),
                                               checkpoint, options_.lease, clock_.Now());
  if (!result.owned) {
    job.RequestStop(StopReason::kLostLease);
    return;
  }
  {
    std::lock_guard lock(job.mutex);
    job.last_owned_heartbeat = std::chrono::steady_clock::now();
    if (checkpoint) job.recorded_checkpoint = checkpoint;
  }
  if (result.cancel_requested) job.RequestStop(StopReason::kCancel);
}

void Worker::Impl::FlushCheckpoint(RunningJob& job) {
  bool pending;
  {
    std::lock_guard lock(job.mutex);
    pending = job.saved_checkpoint != job.recorded_checkpoint;
  }
  if (pending) Heartbeat(job);
}

void Worker::Impl::HeartbeatLoop() {
  std::unique_lock lock(threads_mutex_);
  while (!threads_stop_) {
    threads_wake_.wait_for(lock, options_.heartbeat_interval,
                           [&] { return threads_stop_ || heartbeat_now_; });
    if (threads_stop_) break;
    heartbeat_now_ = false;
    lock.unlock();
    for (const std::shared_ptr<RunningJob>& job : Snapshot()) {
      if (job->done.load()) continue;
      try {
        Heartbeat(*job);
      } catch (const Error&) {
        // The database is unreachable: keep trying. Once a whole lease has passed without a
        // heartbeat, another worker may have rescued the job, so this attempt stops writing.
        bool expired;
        {
          std::lock_guard job_lock(job->mutex);
          expired = std::chrono::steady_clock::now() - job->last_owned_heartbeat > options_.lease;
        }
        if (expired) job->RequestStop(StopReason::kLostLease);
      }
    }
    lock.lock();
  }
}

void Worker::Impl::ListenerLoop() {
  std::unique_ptr<CancelListener> listener;
  while (true) {
    {
      std::lock_guard lock(threads_mutex_);
      if (threads_stop_) return;
    }
    try {
      if (!listener) {
        listener = catalog_->ListenForCancels();
        if (!listener) return;  // the backend has no notifications: heartbeats only
        // Cancels requested while not listening are on the rows: read them now.
        std::lock_guard lock(threads_mutex_);
        heartbeat_now_ = true;
        threads_wake_.notify_all();
      }
      std::optional<std::string> job_id = listener->Wait(kListenerWait);
      if (!job_id) continue;
      if (job_id->empty()) {
        std::lock_guard lock(threads_mutex_);
        heartbeat_now_ = true;
        threads_wake_.notify_all();
        continue;
      }
      std::shared_ptr<RunningJob> job;
      {
        std::lock_guard lock(jobs_mutex_);
        auto it = running_.find(*job_id);
        if (it != running_.end()) job = it->second;
      }
      if (!job) continue;
      // The notification is a hint; the row says whether this attempt must stop (a late
      // notification must not cancel a resumed job's new attempt).
      std::optional<JobRecord> row = catalog_->FindJob(*job_id);
      if (row && row->status == JobStatus::kRunning && row->attempt == job->job.attempt &&
          row->cancel_requested) {
        job->RequestStop(StopReason::kCancel);
      } else if (!row || row->attempt != job->job.attempt || row->status != JobStatus::kRunning) {
        job->RequestStop(StopReason::kLostLease);
      }
    } catch (const Error&) {
      // The listener's connection failed; heartbeats still carry cancels. Retry after a pause.
      listener.reset();
      std::unique_lock lock(threads_mutex_);
      threads_wake_.wait_for(lock, kListenerRetryPause, [&] { return threads_stop_; });
    }
  }
}

void Worker::Impl::StartThreads() {
  {
    std::lock_guard lock(threads_mutex_);
    threads_stop_ = false;
  }
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  listener_thread_ = std::thread([this] { ListenerLoop(); });
}

void Worker::Impl::Shutdown() {
  for (const std::shared_ptr<RunningJob>& job : Snapshot()) {
    job->shutdown.store(true);  // before the notification of RequestStop, which wakes retries
    job->RequestStop(StopReason::kShutdown);
  }
  std::vector<std::shared_ptr<RunningJob>> jobs = Snapshot();
  for (const std::shared_ptr<RunningJob>& job : jobs) {
    if (job->thread.joinable()) job->thread.join();
  }
  {
    std::lock_guard lock(jobs_mutex_);
    running_.clear();
  }
  {
    std::lock_guard lock(threads_mutex_);
    threads_stop_ = true;
    threads_wake_.notify_all();
  }
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  if (listener_thread_.joinable()) listener_thread_.join();
}

void Worker::Impl::FailAttempt(RunningJob& job, const std::string& error) {
  const JobRecord& record = job.job;
  // retry_base_delay * 2^retry_count, capped: the shift is bounded so it cannot overflow.
  int doublings = std::clamp(record.retry_count, 0, 20);
  std::chrono::milliseconds delay =
      std::min(options_.retry_base_delay * (int64_t{1} << doublings), kMaxRetryDelay);
  RetryWhileUnavailable(job, "recording the checkpoint", [&] { FlushCheckpoint(job); });
  TransitionResult result = RetryWhileUnavailable(job, "recording the failure", [&] {
    return catalog_->Fail(record.job_id, record.attempt, error, delay, clock_.Now());
  });
  if (!result.applied) {
    Emit(WorkerEvent::Kind::kLostLease, record,
         "attempt failed (" + error + ") but the job is no longer this attempt's; it is " +
             std::string(ToString(result.status)));
    return;
  }
  finished_attempts_++;
  switch (result.status) {
    case JobStatus::kPending:
      Emit(WorkerEvent::Kind::kRetrying, record,
           error + "; retrying in " + std::to_string(delay.count()) + " ms");
      break;
    case JobStatus::kCancelled:
      Emit(WorkerEvent::Kind::kCancelled, record,
           "cancelled (the attempt had failed: " + error + ")");
      break;
    default:
      Emit(WorkerEvent::Kind::kFailed, record, error);
      break;
  }
}

void Worker::Impl::EndStopped(RunningJob& job) {
  const JobRecord& record = job.job;
  switch (job.reason.load()) {
    case StopReason::kCancel: {
      RetryWhileUnavailable(job, "recording the checkpoint", [&] { FlushCheckpoint(job); });
      TransitionResult result = RetryWhileUnavailable(job, "acknowledging the cancel", [&] {
        return catalog_->AcknowledgeCancel(record.job_id, record.attempt, clock_.Now());
      });
      if (result.applied) {
        finished_attempts_++;
        Emit(WorkerEvent::Kind::kCancelled, record, "cancelled; checkpoint kept for resume");
      } else {
        Emit(WorkerEvent::Kind::kLostLease, record,
             "stopped for a cancel, but the job is " + std::string(ToString(result.status)));
      }
      break;
    }
    case StopReason::kLostLease:
      Emit(WorkerEvent::Kind::kLostLease, record,
           "the attempt lost its lease; another attempt owns the job");
      break;
    case StopReason::kShutdown:
    case StopReason::kNone:
      // Left running: its lease expires and the rescue loop of a live worker retries it.
      break;
  }
}

void Worker::Impl::FinishAfterRun(RunningJob& job, BacktestResult result) {
  const JobRecord& record = job.job;
  fs::path staged;
  try {
    staged = StageBundle(result, root_ / ".staging", options_.write_options);
  } catch (const InvalidArgument& e) {
    // The engine produced an invalid result (e.g. unsorted rows): a failed attempt.
    FailAttempt(job, std::string("invalid result: ") + e.what());
    return;
  }
  const fs::path final_dir = root_ / record.job_id;
  std::string outcome;
  {
    JobFileLock lock(root_, record.job_id);
    // Re-check ownership inside the critical section: a rescued or cancelled attempt must not
    // publish over the job's current state.
    RetryWhileUnavailable(job, "checking ownership before publishing", [&] { Heartbeat(job); });
    StopReason reason = job.reason.load();
    // A shutdown that arrives now does not discard finished work: only a cancel or a lost lease
    // stops the publication.
    if (reason == StopReason::kCancel || reason == StopReason::kLostLease) {
      RemoveBundleDir(staged);
      // Fall through to the stop path below, outside the lock.
    } else {
      // A directory left by an earlier, stale attempt of this job (the row is running in this
      // attempt, so it is not a completed job's bundle): move it away.
      std::error_code ec;
      if (fs::exists(final_dir, ec)) RemoveBundleDir(final_dir);
      PublishBundle(staged, final_dir);
      CompletionRecord completion;
      completion.result_path = final_dir.string();
      completion.metrics = result.metrics;
      completion.snapshot_id = result.snapshot_id;
      completion.dataset_version_ids_json = nlohmann::json(result.dataset_version_ids).dump();
      // A Complete that failed with the catalog unavailable may or may not have committed: it
      // is tried again (a CAS fenced by the attempt). If an earlier try had committed, the
      // repeat finds the job completed by this very attempt, which is a win. Should the
      // worker shut down meanwhile, the bundle stays (a completed row must never lose it); a
      // later attempt moves it away if the job was not completed.
      TransitionResult done = RetryWhileUnavailable(job, "completing", [&] {
        return catalog_->Complete(record.job_id, record.attempt, completion, clock_.Now());
      });
      if (done.applied ||
          (done.status == JobStatus::kCompleted && done.attempt == record.attempt)) {
        outcome = "completed";
      } else {
        RemoveBundleDir(final_dir);
        // The CAS loses to a cancel request on this attempt, or to another attempt.
        std::optional<JobRecord> row =
            RetryWhileUnavailable(job, "reading the job after a lost completion",
                                  [&] { return catalog_->FindJob(record.job_id); });
        bool cancel = row && row->status == JobStatus::kRunning && row->attempt == record.attempt &&
                      row->cancel_requested;
        job.RequestStop(cancel ? StopReason::kCancel : StopReason::kLostLease);
      }
    }
  }
  if (outcome.empty()) {
    EndStopped(job);
    return;
  }
  finished_attempts_++;
  std::error_code ec;
  fs::remove_all(root_ / ".checkpoints" / record.job_id, ec);  // best effort: only space
  std::string message = "completed: " + final_dir.string();
  nlohmann::json extra = nlohmann::json::parse(result.extra_summary_json, nullptr, false);
  if (extra.is_object() && extra.contains("engine") && extra["engine"].is_object()) {
    const nlohmann::json& engine = extra["engine"];
    if (engine.contains("computed_days") && engine.contains("business_days")) {
      message += "; computed " + engine["computed_days"].dump() + " of " +
                 engine["business_days"].dump() + " days";
      if (engine.value("resumed_at_day", 0) > 0) {
        message += " (resumed at day " + engine["resumed_at_day"].dump() + ")";
      }
    }
  }
  Emit(WorkerEvent::Kind::kCompleted, record, message, 100);
}

void Worker::Impl::RunJob(RunningJob& job) {
  const JobRecord& record = job.job;
  Emit(WorkerEvent::Kind::kClaimed, record,
       "attempt " + std::to_string(record.attempt) + " on " + options_.worker_id);
  try {
    std::optional<BacktestResult> result;
    std::string failure;
    try {
      std::unique_ptr<Engine> engine = MakeEngine(record.config_json);
      Context context(*this, job);
      result = engine->Run(record, context);
    } catch (const JobStopped&) {
      // Handled below from the stop reason.
    } catch (const std::exception& e) {
      // Any error of the engine fails the attempt (and is retried while retries remain).
      failure = e.what();
    }
    if (job.stop.load()) {
      EndStopped(job);
    } else if (!failure.empty() || !result) {
      FailAttempt(job, failure.empty() ? "the engine stopped without a result" : failure);
    } else {
      FinishAfterRun(job, *std::move(result));
    }
  } catch (const std::exception& e) {
    // The catalog or the disk failed while ending the attempt: nothing more can be written
    // safely. The lease expires and a rescue retries the job. (Caught here because an
    // exception must not escape the job's thread.)
    Emit(WorkerEvent::Kind::kLostLease, record, std::string("abandoned the attempt: ") + e.what());
  }
  job.done.store(true);
  Wake();
}

void Worker::Impl::Rescue() {
  std::vector<JobRecord> rescued =
      catalog_->RescueExpired(clock_.Now(), options_.retry_base_delay, kRescueBatch);
  for (const JobRecord& job : rescued) {
    Emit(WorkerEvent::Kind::kRescued, job,
         "rescued; now " + std::string(ToString(job.status)) +
             (job.error_message ? ": " + *job.error_message : std::string()));
  }
}

bool Worker::Impl::CatalogIdle() {
  JobFilter filter;
  filter.statuses = {JobStatus::kPending};
  PageRequest page;
  page.limit = 1;
  return catalog_->ListJobs(filter, page).jobs.empty();
}

int Worker::Impl::ReapFinished() {
  std::vector<std::shared_ptr<RunningJob>> finished;
  {
    std::lock_guard lock(jobs_mutex_);
    for (auto it = running_.begin(); it != running_.end();) {
      if (it->second->done.load()) {
        finished.push_back(it->second);
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const std::shared_ptr<RunningJob>& job : finished) job->thread.join();
  std::lock_guard lock(jobs_mutex_);
  return static_cast<int>(running_.size());
}

// One round of the main loop: reap finished jobs, rescue when due, claim. Returns false when
// Run() is done (until_idle and nothing left). Throws CatalogUnavailable during an outage.
bool Worker::Impl::Step(std::chrono::steady_clock::time_point& next_rescue) {
  int running = ReapFinished();
  auto now = std::chrono::steady_clock::now();
  if (now >= next_rescue) {
    Rescue();
    next_rescue = now + options_.rescue_interval;
  }
  std::vector<JobRecord> claimed;
  if (running < options_.concurrency) {
    // Should the commit of a claim be lost in an outage, the claimed jobs run nowhere: their
    // leases expire and the rescue loop makes them pending again.
    claimed = catalog_->ClaimJobs(options_.worker_id, options_.concurrency - running,
                                  options_.lease, clock_.Now());
  }
  for (JobRecord& record : claimed) {
    auto job = std::make_shared<RunningJob>(std::move(record));
    {
      std::lock_guard lock(jobs_mutex_);
      running_[job->job.job_id] = job;
    }
    job->thread = std::thread([this, job] { RunJob(*job); });
  }
  if (!claimed.empty()) return true;
  if (options_.until_idle && running == 0 && CatalogIdle()) return false;
  auto until_rescue = std::chrono::duration_cast<std::chrono::milliseconds>(
      next_rescue - std::chrono::steady_clock::now());
  WaitForWake(std::clamp(until_rescue, std::chrono::milliseconds(0), options_.poll_interval));
  return true;
}

// Pause for `delay` unless Stop() is called (wake-ups by finishing jobs do not shorten it).
void Worker::Impl::WaitOutage(std::chrono::milliseconds delay) {
  const auto deadline = std::chrono::steady_clock::now() + delay;
  while (!stop_.load()) {
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) return;
    WaitForWake(remaining);
  }
}

int Worker::Impl::Run() {
  ShutdownGuard guard(*this);
  RemoveStagingDebris(root_, kStagingDebrisAge);
  StartThreads();
  auto next_rescue = std::chrono::steady_clock::now();
  OutageBackoff backoff;
  while (!stop_.load()) {
    try {
      const bool more = Step(next_rescue);
      if (backoff.failures() > 0) {
        EmitWorkerEvent(WorkerEvent::Kind::kRetrying, "the catalog is available again after " +
                                                          std::to_string(backoff.failures()) +
                                                          " failed tries");
        backoff.Reset();
      }
      if (!more) break;
    } catch (const CatalogUnavailable& e) {
      // A database restart or a network cut must not end a production worker: its running
      // jobs keep their attempts (heartbeats resume when the catalog is back; an attempt whose
      // lease was rescued meanwhile learns it from the fencing). Other errors still end Run().
      std::chrono::milliseconds delay = backoff.Next();
      EmitWorkerEvent(WorkerEvent::Kind::kRetrying, std::string("the catalog is unavailable: ") +
                                                        e.what() + "; retrying in " +
                                                        std::to_string(delay.count()) + " ms");
      WaitOutage(delay);
    }
  }
  return finished_attempts_.load();
}

Worker::Worker(std::string catalog_url, fs::path artifact_root, WorkerOptions options,
               CatalogOptions catalog_options)
    : impl_(std::make_unique<Impl>(std::move(catalog_url), std::move(artifact_root),
                                   std::move(options), catalog_options)) {}

Worker::~Worker() = default;

int Worker::Run() { return impl_->Run(); }

void Worker::Stop() { impl_->Stop(); }

}  // namespace btstore
