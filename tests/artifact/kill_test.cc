// A writer killed (SIGKILL) at random points leaves only complete bundles under their final
// names, and staging debris that the artifact store's RemoveDebris removes.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "artifact/kill_test_params.h"
#include "btstore/artifact_store.h"
#include "btstore/bundle.h"
#include "support/temp_dir.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;

constexpr int kTrials = 30;
constexpr uint32_t kSeed = 20261125;

// Start the child writing into `root`; return its pid and the read end of its stdout.
std::pair<pid_t, int> StartWriter(const fs::path& root) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(BTSTORE_WRITER_CHILD, BTSTORE_WRITER_CHILD, root.c_str(), nullptr);
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

void ExpectBundleIsExactly(const fs::path& dir, int index) {
  BacktestResult expected = testing::KillTestResult(index);
  BacktestResult actual = ReadBundle(dir);  // throws if the bundle is partial or corrupt
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_signals, *actual.daily_signals), "");
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_weights, *actual.daily_weights), "");
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_ic, *actual.daily_ic), "");
  EXPECT_EQ(actual.snapshot_id, expected.snapshot_id);
  EXPECT_EQ(actual.metrics.mean_ic, expected.metrics.mean_ic);
}

TEST(KillTest, KilledWriterLeavesCompleteBundlesOrNone) {
  std::mt19937 rng(kSeed);
  int trials_with_debris = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    testing::TempDir root("btstore-kill");
    auto [pid, out] = StartWriter(root.path());
    // Let the child publish a few bundles (an event we wait for by reading its pipe), then kill
    // it at a random moment: the delay picks the kill point, it does not wait for anything.
    int published = static_cast<int>(rng() % 3);
    for (int i = 0; i < published; ++i) {
      char byte;
      ASSERT_EQ(::read(out, &byte, 1), 1) << "the writer died early";
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 15000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(out);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited by itself: " << status;

    int bundles = 0;
    for (const auto& entry : fs::directory_iterator(root.path())) {
      std::string name = entry.path().filename().string();
      if (name.starts_with(".")) continue;
      ASSERT_TRUE(name.starts_with("b-")) << name;
      ExpectBundleIsExactly(entry.path(), std::stoi(name.substr(2)));
      ++bundles;
    }
    EXPECT_GE(bundles, published);

    // WriteBundle stages `b-N` in the hidden `.b-N.staging-XXXXXXXXXX` next to it.
    auto staging_dirs = [&] {
      int count = 0;
      for (const auto& entry : fs::directory_iterator(root.path())) {
        if (entry.path().filename().string().find(".staging-") != std::string::npos) ++count;
      }
      return count;
    };
    bool debris = staging_dirs() > 0;
    trials_with_debris += debris ? 1 : 0;
    int removed = ArtifactStore::Open(root.path().string())->RemoveDebris(std::chrono::seconds(0));
    EXPECT_EQ(removed > 0, debris);
    EXPECT_EQ(staging_dirs(), 0);
  }
  // The kills must have hit writes in progress, or the test proved nothing.
  EXPECT_GT(trials_with_debris, 0);
}

}  // namespace
}  // namespace btstore
