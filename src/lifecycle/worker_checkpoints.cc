// The engine's view of its attempt (progress, checkpoints, stop requests) and the heartbeat that
// renews the lease and records the newest checkpoint, fenced by the attempt.

#include <algorithm>

#include "lifecycle/worker_internal.h"

namespace btstore {

void Worker::Impl::Context::ReportProgress(int pct) {
  pct = std::clamp(pct, 0, 100);
  if (job_.progress.exchange(pct) != pct) {
    impl_.Emit(WorkerEvent::Kind::kProgress, job_.job, "", pct);
  }
}

void Worker::Impl::Context::SaveCheckpoint(std::string_view bytes) {
  std::string location = impl_.store_.SaveCheckpoint(job_.job.job_id, job_.job.attempt, bytes);
  // Recorded in the row by the next heartbeat, fenced by this attempt.
  std::lock_guard lock(job_.mutex);
  job_.saved_checkpoint = std::move(location);
}

std::optional<std::string> Worker::Impl::Context::LoadCheckpoint() {
  if (!job_.job.checkpoint_path) return std::nullopt;
  return impl_.store_.LoadCheckpoint(*job_.job.checkpoint_path);
}

bool Worker::Impl::Context::StopRequested() { return job_.stop.load(); }

bool Worker::Impl::Context::SleepUnlessStopped(std::chrono::milliseconds duration) {
  std::unique_lock lock(job_.mutex);
  return job_.wake.wait_for(lock, duration, [&] { return job_.stop.load(); });
}

Worker::Impl::Context::~Context() {
  if (made_attempt_dir_) impl_.store_.RemoveAttemptDir(job_.job.job_id, job_.job.attempt);
}

std::string Worker::Impl::Context::MakeAttemptDirectory() {
  std::string dir = impl_.store_.MakeAttemptDir(job_.job.job_id, job_.job.attempt);
  made_attempt_dir_ = true;
  return dir;
}

std::string Worker::Impl::Context::LogLocation(LogStream stream) {
  return impl_.store_.LogLocation(job_.job.job_id, job_.job.attempt, stream);
}

void Worker::Impl::Heartbeat(RunningJob& job) {
  std::optional<std::string> checkpoint;
  {
    std::lock_guard lock(job.mutex);
    if (job.saved_checkpoint != job.recorded_checkpoint) checkpoint = job.saved_checkpoint;
  }
  HeartbeatResult result = catalog_.Heartbeat(job.job.job_id, job.job.attempt, job.progress.load(),
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

}  // namespace btstore
