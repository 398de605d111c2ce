// One attempt's outcome, the protocol that keeps a job in exactly one terminal state per
// attempt: run the engine; on a result stage the bundle, take the job's publish lock, re-check
// ownership with a fenced heartbeat, publish, complete (a compare-and-set fenced by the attempt)
// or unpublish when the completion lost; on an error fail the attempt (retried per policy); on
// a stop acknowledge the cancel or leave the job to its new owner.

#include <algorithm>

#include "lifecycle/completion_internal.h"
#include "lifecycle/worker_internal.h"

namespace btstore {

namespace {

constexpr std::chrono::milliseconds kMaxRetryDelay = std::chrono::minutes(5);

}  // namespace

void Worker::Impl::FailAttempt(RunningJob& job, const std::string& error) {
  const JobRecord& record = job.job;
  // retry_base_delay * 2^retry_count, capped: the shift is bounded so it cannot overflow.
  int doublings = std::clamp(record.retry_count, 0, 20);
  std::chrono::milliseconds delay =
      std::min(options_.retry_base_delay * (int64_t{1} << doublings), kMaxRetryDelay);
  RetryWhileUnavailable(job, "recording the checkpoint", [&] { FlushCheckpoint(job); });
  TransitionResult result = RetryWhileUnavailable(job, "recording the failure", [&] {
    return catalog_.Fail(record.job_id, record.attempt, error, delay, clock_.Now());
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
        return catalog_.AcknowledgeCancel(record.job_id, record.attempt, clock_.Now());
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
  StagedBundle staged;
  try {
    staged = store_.Stage(result, options_.write_options);
  } catch (const InvalidArgument& e) {
    // The engine produced an invalid result (e.g. unsorted rows): a failed attempt.
    FailAttempt(job, std::string("invalid result: ") + e.what());
    return;
  }
  std::string result_path;
  std::string outcome;
  {
    std::unique_ptr<JobLock> lock = store_.LockJob(record.job_id);
    // Re-check ownership inside the critical section: a rescued or cancelled attempt must not
    // publish over the job's current state.
    RetryWhileUnavailable(job, "checking ownership before publishing", [&] { Heartbeat(job); });
    StopReason reason = job.reason.load();
    // A shutdown that arrives now does not discard finished work: only a cancel or a lost lease
    // stops the publication.
    if (reason == StopReason::kCancel || reason == StopReason::kLostLease) {
      store_.Discard(staged);
      // Fall through to the stop path below, outside the lock.
    } else {
      // The store first moves away what an earlier, stale attempt of this job left (the row is
      // running in this attempt, so it is not a completed job's bundle).
      result_path = store_.Publish(staged, record.job_id);
      const CompletionRecord completion = internal::CompletionFor(result, result_path);
      // A Complete that failed with the catalog unavailable may or may not have committed: it
      // is tried again (a CAS fenced by the attempt). If an earlier try had committed, the
      // repeat finds the job completed by this very attempt, which is a win. Should the
      // worker shut down meanwhile, the bundle stays (a completed row must never lose it); a
      // later attempt moves it away if the job was not completed.
      TransitionResult done = RetryWhileUnavailable(job, "completing", [&] {
        return catalog_.Complete(record.job_id, record.attempt, completion, clock_.Now());
      });
      if (done.applied ||
          (done.status == JobStatus::kCompleted && done.attempt == record.attempt)) {
        outcome = "completed";
      } else {
        store_.Unpublish(record.job_id);
        // The CAS loses to a cancel request on this attempt, or to another attempt.
        std::optional<JobRecord> row =
            RetryWhileUnavailable(job, "reading the job after a lost completion",
                                  [&] { return catalog_.FindJob(record.job_id); });
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
  store_.RemoveCheckpoints(record.job_id);
  std::string message = "completed: " + result_path;
  const std::optional<EngineReport> report = ReadEngineReport(result.extra_summary_json);
  if (report && report->computed_days && report->business_days) {
    message += "; computed " + std::to_string(*report->computed_days) + " of " +
               std::to_string(*report->business_days) + " days";
    if (report->resumed_at_day.value_or(0) > 0) {
      message += " (resumed at day " + std::to_string(*report->resumed_at_day) + ")";
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
      std::unique_ptr<Engine> engine = options_.engines->MakeFor(record.config_json);
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

}  // namespace btstore
