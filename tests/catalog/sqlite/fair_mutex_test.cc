// The embedded catalog's lock: exclusion under contention, waiters served in the order they
// came, and none left waiting while another thread keeps taking the lock.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "catalog/sqlite/fair_mutex_internal.h"

namespace btstore::internal {
namespace {

TEST(FairMutex, ExcludesUnderContention) {
  FairMutex mutex;
  long counter = 0;  // not atomic: only the lock keeps the increments whole
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20'000; ++i) {
        std::lock_guard lock(mutex);
        counter = counter + 1;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter, 8 * 20'000);
}

void WaitUntil(FairMutex& mutex, size_t waiting) {
  while (mutex.waiting() != waiting) std::this_thread::yield();
}

TEST(FairMutex, ServesWaitersInOrderWhileAThreadKeepsRetakingTheLock) {
  FairMutex mutex;
  std::mutex order_mutex;
  std::vector<int> order;
  std::atomic<int> served{0};
  mutex.lock();
  std::vector<std::thread> waiters;
  for (int w = 0; w < 5; ++w) {
    waiters.emplace_back([&, w] {
      std::lock_guard lock(mutex);
      std::lock_guard record(order_mutex);
      order.push_back(w);
      served.fetch_add(1);
    });
    WaitUntil(mutex, static_cast<size_t>(w) + 1);  // queued before the next one starts
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past the waiters' patience
  mutex.unlock();
  // This thread keeps taking the lock back the moment it lets go, as a busy thread does; the
  // waiters still get it, first come first served.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (served.load() < 5 && std::chrono::steady_clock::now() < deadline) {
    std::lock_guard lock(mutex);
  }
  for (auto& waiter : waiters) waiter.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

}  // namespace
}  // namespace btstore::internal
