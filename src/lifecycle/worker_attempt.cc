// One attempt's outcome, the protocol that keeps a job in exactly one terminal state per
// attempt: run the engine; on a result stage the bundle, take the job's publish lock, re-read
// the row to check ownership, publish, complete (a compare-and-set fenced by the attempt, in a
// group commit with the worker's other attempts that finish meanwhile: CompletionGroup) or
// unpublish when the completion lost; on an error fail the attempt (retried per policy); on a
// stop acknowledge the cancel, give the job back (shutdown), fail it (job_timeout) or leave it
// to its new owner (lost lease).

#include <algorithm>

#include "lifecycle/completion_internal.h"
#include "lifecycle/worker_internal.h"

namespace btstore {

namespace {

constexpr std::chrono::milliseconds kMaxRetryDelay = std::chrono::minutes(5);

// Discards a staged bundle on every way out that does not publish it (a cancel, a lost lease, a
// failed publication, an exception), so that no attempt leaves staging behind.
class StagedGuard {
 public:
  StagedGuard(ArtifactStore& store, const StagedBundle& staged) : store_(store), staged_(staged) {}
  ~StagedGuard() {
    if (published_) return;
    try {
      store_.Discard(staged_);
    } catch (const Error&) {
      // A destructor must not throw: what remains is staging debris, which RemoveDebris removes
      // when a worker starts.
    }
  }
  StagedGuard(const StagedGuard&) = delete;
  StagedGuard& operator=(const StagedGuard&) = delete;
  void Published() { published_ = true; }

 private:
  ArtifactStore& store_;
  const StagedBundle& staged_;
  bool published_ = false;
};

}  // namespace

namespace internal {

TransitionResult CompletionGroup::Complete(const CompletionRequest& request, Timestamp now) {
  Pending mine;
  mine.request = &request;
  std::unique_lock lock(mutex_);
  queue_.push_back(&mine);
  while (!mine.done) {
    if (committing_) {
      committed_.wait(lock);
    } else {
      Lead(lock, now);
    }
  }
  if (mine.error) std::rethrow_exception(mine.error);
  return mine.result;
}

void CompletionGroup::Lead(std::unique_lock<std::mutex>& lock, Timestamp now) {
  std::vector<Pending*> group;
  group.swap(queue_);
  committing_ = true;
  lock.unlock();
  Commit(group, now);
  lock.lock();
  for (Pending* pending : group) pending->done = true;
  committing_ = false;
  committed_.notify_all();
}

void CompletionGroup::Commit(const std::vector<Pending*>& group, Timestamp now) {
  std::vector<CompletionRequest> requests;
  requests.reserve(group.size());
  for (const Pending* pending : group) requests.push_back(*pending->request);
  try {
    std::vector<TransitionResult> results = catalog_.CompleteMany(requests, now);
    for (size_t i = 0; i < group.size(); ++i) group[i]->result = results.at(i);
    return;
  } catch (const CatalogUnavailable&) {
    // Every member may or may not have committed; each repeats its own fenced move.
    for (Pending* pending : group) pending->error = std::current_exception();
    return;
  } catch (const std::exception&) {
    if (group.size() == 1) {
      group.front()->error = std::current_exception();
      return;
    }
    // The group rolled back because of one member (e.g. its row is gone): complete each alone,
    // so that the others still complete and the error reaches only its own attempt.
  }
  for (Pending* pending : group) {
    try {
      pending->result = catalog_.Complete(pending->request->job_id, pending->request->attempt,
                                          pending->request->record, now);
    } catch (const std::exception&) {
      pending->error = std::current_exception();
    }
  }
}

}  // namespace internal

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
    case StopReason::kShutdown: {
      // The job did nothing wrong: it goes back to pending at once for any live worker, from
      // the checkpoint recorded here, without spending a retry (contract section 3).
      RetryWhileUnavailable(job, "recording the checkpoint", [&] { FlushCheckpoint(job); });
      const std::string reason = "worker " + options_.worker_id +
                                 " shut down; the job was given back to run again from its "
                                 "checkpoint (no retry spent)";
      TransitionResult result = RetryWhileUnavailable(job, "giving the job back", [&] {
        return catalog_.Release(record.job_id, record.attempt, reason, clock_.Now());
      });
      if (result.applied) {
        Emit(WorkerEvent::Kind::kReleased, record,
             "given back at shutdown; now " + std::string(ToString(result.status)));
      } else {
        Emit(WorkerEvent::Kind::kLostLease, record,
             "stopped for a shutdown, but the job is " + std::string(ToString(result.status)));
      }
      break;
    }
    case StopReason::kTimeout:
      FailAttempt(job, "the attempt exceeded job_timeout of " +
                           std::to_string(record.job_timeout_seconds) + " s and was stopped");
      break;
    case StopReason::kNone:
      break;  // never: a stop always has a reason
  }
}

std::string Worker::Impl::PublishAndComplete(RunningJob& job, const BacktestResult& result,
                                             const StagedBundle& staged, std::string& result_path) {
  const JobRecord& record = job.job;
  StagedGuard guard(store_, staged);
  std::unique_ptr<JobLock> lock = store_.LockJob(record.job_id);
  // Re-check ownership inside the critical section: a rescued or cancelled attempt must not
  // publish over the job's current state. A read is enough (and costs no commit): a newer
  // attempt publishes and completes only under this same lock, and the completion below is
  // fenced by the attempt anyway.
  RetryWhileUnavailable(job, "checking ownership before publishing", [&] { CheckOwnership(job); });
  const StopReason reason = job.reason.load();
  // A shutdown or a timeout that arrives now does not discard finished work: only a cancel or a
  // lost lease stops the publication.
  if (reason == StopReason::kCancel || reason == StopReason::kLostLease) return "";
  std::string published;
  try {
    // The store first moves away what an earlier, stale attempt of this job left (the row is
    // running in this attempt, so it is not a completed job's bundle), and refuses to touch a
    // directory btstore did not write there.
    published = store_.Publish(staged, record.job_id);
  } catch (const Error& e) {
    return std::string("cannot publish the bundle: ") + e.what();
  }
  guard.Published();
  Emit(WorkerEvent::Kind::kPublished, record, "published: " + published);
  const CompletionRecord completion = internal::CompletionFor(result, published);
  TransitionResult done;
  try {
    // A Complete that failed with the catalog unavailable may or may not have committed: it is
    // tried again (a CAS fenced by the attempt). If an earlier try had committed, the repeat
    // finds the job completed by this very attempt, which is a win.
    // Completed in a group commit with the worker's other attempts that finish meanwhile.
    const CompletionRequest request{record.job_id, record.attempt, completion};
    done = RetryWhileUnavailable(job, "completing",
                                 [&] { return completions_.Complete(request, clock_.Now()); });
  } catch (const CatalogUnavailable&) {
    // Only during a shutdown: the completion may have committed, and a completed row must
    // never lose its bundle, so the bundle stays; a later attempt moves it away if the job
    // was not completed.
    throw;
  } catch (const Error& e) {
    // Any other error rolled the completion back: the bundle must not outlive it.
    store_.Unpublish(record.job_id);
    return std::string("cannot complete the job: ") + e.what();
  }
  if (done.applied || (done.status == JobStatus::kCompleted && done.attempt == record.attempt)) {
    result_path = published;
    return "";
  }
  store_.Unpublish(record.job_id);
  // The CAS loses to a cancel request on this attempt, or to another attempt.
  std::optional<JobRecord> row =
      RetryWhileUnavailable(job, "reading the job after a lost completion",
                            [&] { return catalog_.FindJob(record.job_id); });
  bool cancel = row && row->status == JobStatus::kRunning && row->attempt == record.attempt &&
                row->cancel_requested;
  job.RequestStop(cancel ? StopReason::kCancel : StopReason::kLostLease);
  return "";
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
  } catch (const std::exception& e) {
    // The disk refused the bundle (ENOSPC, EIO) or its summary could not be encoded; Stage left
    // nothing behind. The attempt fails with the real cause and is retried per policy.
    FailAttempt(job, std::string("cannot write the bundle: ") + e.what());
    return;
  }
  std::string result_path;
  const std::string failure = PublishAndComplete(job, result, staged, result_path);
  if (!failure.empty()) {
    FailAttempt(job, failure);
    return;
  }
  if (result_path.empty()) {
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
  // An exception must not escape the job's thread, and none may leave the row running with its
  // cause lost: whatever is thrown while ending the attempt fails it with that message.
  std::string failure;
  try {
    std::optional<BacktestResult> result;
    std::string engine_failure;
    try {
      std::unique_ptr<Engine> engine = options_.engines->MakeFor(record.config_json);
      Context context(*this, job);
      result = engine->Run(record, context);
    } catch (const JobStopped&) {
      // Handled below from the stop reason.
    } catch (const std::exception& e) {
      // Any error of the engine fails the attempt (and is retried while retries remain).
      engine_failure = e.what();
    }
    if (job.stop.load()) {
      EndStopped(job);
    } else if (!engine_failure.empty() || !result) {
      FailAttempt(job,
                  engine_failure.empty() ? "the engine stopped without a result" : engine_failure);
    } else {
      FinishAfterRun(job, *std::move(result));
    }
  } catch (const CatalogUnavailable& e) {
    // The catalog is gone and the worker is shutting down: nothing can be recorded. The lease
    // expires and a rescue retries the job.
    Emit(WorkerEvent::Kind::kLostLease, record, std::string("abandoned the attempt: ") + e.what());
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (!failure.empty()) {
    try {
      FailAttempt(job, failure);
    } catch (const std::exception& e) {
      Emit(WorkerEvent::Kind::kLostLease, record,
           "abandoned the attempt (" + failure + "): its failure cannot be recorded: " + e.what());
    }
  }
  job.done.store(true);
  Wake();
}

}  // namespace btstore
