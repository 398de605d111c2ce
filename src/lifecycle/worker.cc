// The worker runtime's main loop: claims jobs and runs each attempt on its own thread, sends
// heartbeats, listens for cancels, and rescues jobs of dead workers. One attempt's outcome is in
// worker_attempt.cc, the engine's context and checkpoints in worker_checkpoints.cc.
// See docs/DESIGN.md, "The path of a job", steps 2-7.

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <sstream>

#include "lifecycle/worker_internal.h"

namespace btstore {

namespace {

constexpr std::chrono::milliseconds kMaxHeartbeatInterval{1000};
constexpr std::chrono::milliseconds kMinHeartbeatInterval{50};
// How long one wait on the cancel listener lasts; bounds how late the listener sees Stop().
constexpr std::chrono::milliseconds kListenerWait{200};
// Pause before reopening a cancel listener whose database went away.
constexpr std::chrono::milliseconds kListenerRetryPause{1000};
// Jobs rescued per call of the rescue loop.
constexpr int kRescueBatch = 100;
// Staging directories older than this are debris of a crashed writer.
constexpr std::chrono::seconds kStagingDebrisAge = std::chrono::hours(1);

// A signal handler can reach the worker only through a global (signal dispositions are per
// process, so there is one). The previous dispositions are restored by ~StopOnSignals.
std::atomic<Worker*> g_signalled_worker{nullptr};
struct sigaction g_previous_int {};
struct sigaction g_previous_term {};

void SetDisposition(int signal, void (*handler)(int), struct sigaction* previous) {
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  ::sigaction(signal, &action, previous);
}

// Only sigaction(2), an atomic load and Worker::Stop (an atomic store and a write(2)): all
// async-signal-safe. Back to the default dispositions first, so that a second signal ends the
// process even while the shutdown hangs.
extern "C" void StopWorkerOnSignal(int) {
  SetDisposition(SIGINT, SIG_DFL, nullptr);
  SetDisposition(SIGTERM, SIG_DFL, nullptr);
  Worker* worker = g_signalled_worker.load();
  if (worker != nullptr) worker->Stop();
}

}  // namespace

StopOnSignals::StopOnSignals(Worker& worker) {
  Worker* expected = nullptr;
  if (!g_signalled_worker.compare_exchange_strong(expected, &worker)) {
    throw InvalidArgument("another worker already stops on signals in this process",
                          {{"field", "signals"}});
  }
  SetDisposition(SIGINT, StopWorkerOnSignal, &g_previous_int);
  SetDisposition(SIGTERM, StopWorkerOnSignal, &g_previous_term);
}

StopOnSignals::~StopOnSignals() {
  ::sigaction(SIGINT, &g_previous_int, nullptr);
  ::sigaction(SIGTERM, &g_previous_term, nullptr);
  g_signalled_worker.store(nullptr);
}

std::string DefaultWorkerId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "localhost");
  std::random_device random;
  std::ostringstream id;
  id << host << ":" << getpid() << ":" << std::hex << random();
  return id.str();
}

Worker::Impl::Impl(Catalog& catalog, ArtifactStore& store, Clock& clock, WorkerOptions options)
    : options_(std::move(options)),
      catalog_(catalog),
      store_(store),
      clock_(clock),
      completions_(catalog) {
  if (options_.engines == nullptr) {
    throw InvalidArgument("a worker needs an engine registry (WorkerOptions::engines)",
                          {{"field", "engines"}});
  }
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
  engine_names_ = options_.engines->Names();
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    throw InternalError(std::string("cannot create the worker's eventfd: ") + std::strerror(errno));
  }
}

Worker::Impl::~Impl() {
  Shutdown();
  ::close(wake_fd_);
}

void Worker::Impl::Wake() {
  uint64_t one = 1;
  ssize_t rc = ::write(wake_fd_, &one, sizeof(one));
  (void)rc;  // a full counter already means "wake up"
}

void Worker::Impl::WaitForWake(std::chrono::milliseconds timeout) {
  pollfd pfd{wake_fd_, POLLIN, 0};
  ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(timeout.count(), 0)));
  uint64_t value = 0;
  ssize_t rc = ::read(wake_fd_, &value, sizeof(value));
  (void)rc;  // EAGAIN: nothing to clear
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
      CheckTimeout(*job);
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

void Worker::Impl::CheckOwnership(RunningJob& job) {
  std::optional<JobRecord> row = catalog_.FindJob(job.job.job_id);
  if (!row || row->status != JobStatus::kRunning || row->attempt != job.job.attempt) {
    job.RequestStop(StopReason::kLostLease);
  } else if (row->cancel_requested) {
    job.RequestStop(StopReason::kCancel);
  }
}

// The timeout counts from the claim (started_at, from this worker's clock), so each attempt
// has the whole job_timeout and a retry continues from its checkpoint.
void Worker::Impl::CheckTimeout(RunningJob& job) {
  if (!job.job.started_at) return;
  if (clock_.Now() - *job.job.started_at > std::chrono::seconds(job.job.job_timeout_seconds)) {
    job.RequestStop(StopReason::kTimeout);
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
        listener = catalog_.ListenForCancels();
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
      CheckOwnership(*job);
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

void Worker::Impl::Rescue() {
  std::vector<JobRecord> rescued =
      catalog_.RescueExpired(clock_.Now(), options_.retry_base_delay, kRescueBatch);
  for (const JobRecord& job : rescued) {
    Emit(WorkerEvent::Kind::kRescued, job,
         "rescued; now " + std::string(ToString(job.status)) +
             (job.error_message ? ": " + *job.error_message : std::string()));
  }
}

bool Worker::Impl::CatalogIdle() {
  JobFilter filter;
  filter.statuses = {JobStatus::kPending};
  // Jobs of engines this worker does not have are left to other workers.
  filter.engines = engine_names_;
  PageRequest page;
  page.limit = 1;
  return catalog_.ListJobs(filter, page).jobs.empty();
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
    claimed = catalog_.ClaimJobs(options_.worker_id, options_.concurrency - running, options_.lease,
                                 clock_.Now(), engine_names_);
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
  {
    ShutdownGuard guard(*this);
    store_.RemoveDebris(kStagingDebrisAge);
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
  }
  // Counted once the guard has ended every attempt: one that was ending as Stop() came (a
  // cancel acknowledged, a completion committed) counts.
  return finished_attempts_.load();
}

Worker::Worker(Catalog& catalog, ArtifactStore& store, Clock& clock, WorkerOptions options)
    : impl_(std::make_unique<Impl>(catalog, store, clock, std::move(options))) {}

Worker::~Worker() = default;

int Worker::Run() { return impl_->Run(); }

void Worker::Stop() { impl_->Stop(); }

}  // namespace btstore
