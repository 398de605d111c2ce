#pragma once
// A mutex that does not let a waiter starve.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace btstore::internal {

/// The embedded catalog's one connection is shared by every thread of the process (the server's
/// connection threads, a worker's job threads) behind this lock. With std::mutex whichever
/// thread runs first takes it again, so under load a few threads waited for hundreds of
/// milliseconds while others passed many times: the server's p99 followed. Handing the lock to
/// the longest waiter at every unlock bounds that wait but halves the throughput (each hand-over
/// waits for the waiter to be scheduled). So, as Go's sync.Mutex does: a running thread may take
/// a free lock before the waiters, until a waiter has waited `kPatience`; from then on unlock()
/// hands the lock to the waiters in the order they came, until none has waited that long.
/// BasicLockable (std::lock_guard works); not recursive.
class FairMutex {
 public:
  void lock() {
    std::unique_lock guard(mutex_);
    if (!held_ && !handoff_) {
      held_ = true;
      return;
    }
    Waiter waiter{Clock::now()};
    queue_.push_back(&waiter);
    for (;;) {
      waiter.ready.wait(guard, [&waiter] { return waiter.signalled; });
      waiter.signalled = false;
      if (waiter.granted) return;  // handed over: out of the queue, held_ stayed true
      if (!held_ && !handoff_) {
        queue_.erase(std::find(queue_.begin(), queue_.end(), &waiter));
        held_ = true;
        return;
      }
      // A running thread took it first again.
      if (Clock::now() - waiter.since >= kPatience) handoff_ = true;
    }
  }

  /// Return how many threads wait for the lock.
  size_t waiting() {
    std::lock_guard guard(mutex_);
    return queue_.size();
  }

  void unlock() {
    std::lock_guard guard(mutex_);
    if (queue_.empty()) {
      held_ = false;
      handoff_ = false;
      return;
    }
    Waiter* next = queue_.front();
    if (handoff_) {
      queue_.pop_front();
      next->granted = true;  // held_ stays true: the lock passes to `next`
      handoff_ = !queue_.empty() && Clock::now() - queue_.front()->since >= kPatience;
    } else {
      held_ = false;  // `next` competes with running threads for it
    }
    next->signalled = true;
    next->ready.notify_one();
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kPatience{1};

  struct Waiter {
    Clock::time_point since;
    std::condition_variable ready;
    bool signalled = false;
    bool granted = false;
  };

  std::mutex mutex_;
  bool held_ = false;
  bool handoff_ = false;
  std::deque<Waiter*> queue_;
};

}  // namespace btstore::internal
