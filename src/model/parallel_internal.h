// Work shared out over threads: the one loop that the writer, the reader and the IC panel use
// (each thread takes the next item until none is left), and a group of tasks started one by one
// as their inputs become ready (the writer finishing each file of a bundle: its flush to disk or
// the completion of its upload).

#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace btstore::internal {

/// The cores of this machine (at least 1): the default number of threads of ParallelFor.
inline size_t CoreCount() { return std::max(1u, std::thread::hardware_concurrency()); }

/// Run `task(worker, i)` for every i in [0, count) on min(threads, count) threads (at least one),
/// the calling thread being worker 0 and the others 1, 2, ...: each worker takes the next index
/// until none is left, so that long items do not hold up short ones. After a task throws, no new
/// index is started; once every worker is done, the first exception is rethrown.
template <typename Task>
void ParallelFor(size_t count, size_t threads, Task&& task) {
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&](size_t worker) {
    for (size_t i = next++; i < count; i = next++) {
      try {
        task(worker, i);
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = count;
      }
    }
  };
  std::vector<std::thread> others;
  const size_t pool = std::clamp<size_t>(threads, 1, std::max<size_t>(count, 1));
  try {
    for (size_t worker = 1; worker < pool; ++worker) others.emplace_back(work, worker);
  } catch (const std::system_error&) {
    // No more threads to be had: the ones started and this one share the work.
  }
  work(0);
  for (std::thread& thread : others) thread.join();
  if (failure) std::rethrow_exception(failure);
}

/// Tasks started one at a time, each on a thread of its own, from any thread; Wait waits for all
/// of them. Destroying the group waits for the ones still running (their inputs must outlive
/// them).
class TaskGroup {
 public:
  TaskGroup() = default;
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  ~TaskGroup() = default;  // each future waits for its task

  /// Start `task` on a thread of its own. Safe to call from several threads.
  void Start(std::function<void()> task) {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::async(std::launch::async, std::move(task)));
  }
  /// Wait for every task started so far, then rethrow the first failure. Not to be called
  /// while tasks are still being started.
  void Wait() {
    std::exception_ptr failure;
    for (auto& task : tasks_) {
      try {
        task.get();
      } catch (...) {
        if (!failure) failure = std::current_exception();
      }
    }
    tasks_.clear();
    if (failure) std::rethrow_exception(failure);
  }

 private:
  std::mutex mutex_;
  std::vector<std::future<void>> tasks_;
};

}  // namespace btstore::internal
