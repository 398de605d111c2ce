// ParallelFor and TaskGroup (src/model/parallel_internal.h): every item once, the workers it
// promises, the first failure rethrown after every thread is done.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "model/parallel_internal.h"

namespace btstore::internal {
namespace {

TEST(ParallelFor, RunsEveryIndexOnceOnAtMostTheThreadsAsked) {
  for (size_t threads : {1u, 2u, 4u, 64u}) {
    std::vector<std::atomic<int>> runs(1000);
    std::mutex mutex;
    std::set<size_t> workers;
    ParallelFor(runs.size(), threads, [&](size_t worker, size_t i) {
      ++runs[i];
      std::lock_guard lock(mutex);
      workers.insert(worker);
    });
    for (const auto& count : runs) EXPECT_EQ(count, 1);
    EXPECT_LE(workers.size(), threads);
    EXPECT_LT(*workers.rbegin(), threads);
  }
  int calls = 0;
  ParallelFor(0, 4, [&](size_t, size_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ParallelFor, TheFirstFailureIsRethrownAndNoNewIndexStartsAfterIt) {
  // Items of a millisecond each: without the stop, the 1,000 would take half a second.
  std::atomic<int> started{0};
  EXPECT_THROW(ParallelFor(1000, 2,
                           [&](size_t, size_t i) {
                             ++started;
                             if (i == 3) throw std::runtime_error("item 3");
                             std::this_thread::sleep_for(std::chrono::milliseconds(1));
                           }),
               std::runtime_error);
  EXPECT_LT(started.load(), 100);
}

TEST(TaskGroup, WaitWaitsForEveryTaskAndRethrowsTheFirstFailure) {
  TaskGroup group;
  std::atomic<int> done{0};
  group.Start([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ++done;
  });
  group.Start([] { throw std::runtime_error("first"); });
  std::thread other([&] { group.Start([&] { ++done; }); });
  other.join();
  EXPECT_THROW(group.Wait(), std::runtime_error);
  EXPECT_EQ(done, 2);             // the slow task ran to its end before Wait returned
  EXPECT_NO_THROW(group.Wait());  // nothing left
  group.Start([] { throw std::logic_error("again"); });
  EXPECT_THROW(group.Wait(), std::logic_error);
}

}  // namespace
}  // namespace btstore::internal
