// The local artifact store: publish and unpublish, checkpoints, resolution of stored paths,
// removal in batches, listing, and that no job id can reach outside the root.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "artifact/bundle_fixtures.h"
#include "btstore/artifact_store.h"
#include "btstore/errors.h"
#include "support/temp_dir.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;
using testing::MakeResult;

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = ArtifactStore::Open((tmp_.path() / "results").string());
    root_ = store_->root();
  }

  // Stage and publish a small bundle as `job_id`; return the result path.
  std::string Published(const std::string& job_id, uint64_t seed = 1) {
    BacktestResult result = MakeResult(3, 2, seed);
    result.job_id = job_id;
    std::unique_ptr<JobLock> lock = store_->LockJob(job_id);
    return store_->Publish(store_->Stage(result, {}), job_id);
  }

  int Entries(const fs::path& dir) {
    std::error_code ec;
    int count = 0;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); ++it) {
      ++count;
    }
    return count;
  }

  testing::TempDir tmp_{"btstore-store"};
  std::unique_ptr<ArtifactStore> store_;
  fs::path root_;
};

TEST_F(LocalStoreTest, OpensTheRootCreatedAbsoluteAndCanonical) {
  EXPECT_TRUE(fs::is_directory(root_));
  EXPECT_EQ(root_, fs::canonical(root_));
  EXPECT_THROW(ArtifactStore::Open(""), InvalidArgument);
}

TEST_F(LocalStoreTest, StagedBundlesAreInvisibleUntilPublished) {
  BacktestResult result = MakeResult(3, 2, 1);
  result.job_id = "job-a";
  StagedBundle staged = store_->Stage(result, {});
  EXPECT_FALSE(fs::exists(root_ / "job-a"));
  EXPECT_TRUE(store_->ListBundles(std::chrono::seconds(0)).empty());
  const std::string path = store_->Publish(staged, "job-a");
  EXPECT_EQ(path, (root_ / "job-a").string());
  EXPECT_FALSE(fs::exists(staged.location));
  const BundleLocation where = store_->Resolve(path, true);
  ASSERT_EQ(where.problem, PathProblem::kNone);
  EXPECT_EQ(where.owner, "job-a");
  EXPECT_EQ(store_->Read(where, {}, nullptr).daily_signals->num_rows(), 6);
  EXPECT_TRUE(store_->Inspect(where).has_manifest);
}

TEST_F(LocalStoreTest, PublishMovesAStaleAttemptsBundleAway) {
  Published("job-b", /*seed=*/1);
  const std::string path = Published("job-b", /*seed=*/2);
  const BacktestResult read = store_->Read(store_->Resolve(path, true), {}, nullptr);
  const BacktestResult expected = MakeResult(3, 2, 2);
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_signals, *read.daily_signals), "");
  EXPECT_EQ(Entries(root_ / ".trash"), 0);
}

// Issue 10, item 13: the worker silently deleted a directory it had not written that sat where
// a job's bundle goes. Only a stale attempt's bundle of the same job is moved away; anything
// else is refused and left as it was.
TEST_F(LocalStoreTest, PublishNeverRemovesWhatBtstoreDidNotWriteForTheJob) {
  BacktestResult other = MakeResult(3, 2, 1);
  other.job_id = "other-job";
  WriteBundle(other, root_ / "job-e");  // an export of another job's result
  fs::create_directories(root_ / "job-f");
  std::ofstream(root_ / "job-f" / "notes.txt") << "mine";
  fs::create_symlink(root_ / "job-f", root_ / "job-g");
  for (const std::string job_id : {"job-e", "job-f", "job-g"}) {
    BacktestResult result = MakeResult(3, 2, 2);
    result.job_id = job_id;
    StagedBundle staged = store_->Stage(result, {});
    EXPECT_THROW(store_->Publish(staged, job_id), InvalidTransition) << job_id;
    EXPECT_TRUE(fs::exists(staged.location));
    store_->Discard(staged);
  }
  EXPECT_EQ(ReadBundle(root_ / "job-e").job_id, "other-job");
  EXPECT_TRUE(fs::exists(root_ / "job-f" / "notes.txt"));
  EXPECT_TRUE(fs::is_symlink(root_ / "job-g"));
  EXPECT_EQ(Entries(root_ / ".trash"), 0);
  EXPECT_EQ(Entries(root_ / ".staging"), 0);
}

TEST_F(LocalStoreTest, DiscardAndUnpublishLeaveNothing) {
  BacktestResult result = MakeResult(3, 2, 1);
  StagedBundle staged = store_->Stage(result, {});
  store_->Discard(staged);
  EXPECT_FALSE(fs::exists(staged.location));
  Published("job-c");
  store_->Unpublish("job-c");
  EXPECT_FALSE(fs::exists(root_ / "job-c"));
  EXPECT_NO_THROW(store_->Unpublish("job-c"));
}

TEST_F(LocalStoreTest, InvalidResultsAreRefusedBeforeAnythingIsWritten) {
  BacktestResult result = MakeResult(3, 2, 1);
  result.snapshot_id.clear();
  EXPECT_THROW(store_->Stage(result, {}), InvalidArgument);
  EXPECT_EQ(Entries(root_ / ".staging"), 0);
}

TEST_F(LocalStoreTest, NoJobIdReachesOutsideTheRoot) {
  StagedBundle staged = store_->Stage(MakeResult(3, 2, 1), {});
  for (const std::string bad : {"../escape", "", ".staging", "a/b"}) {
    EXPECT_THROW(store_->Publish(staged, bad), InvalidArgument) << bad;
    EXPECT_THROW(store_->LockJob(bad), InvalidArgument) << bad;
    EXPECT_THROW(store_->SaveCheckpoint(bad, 1, "x"), InvalidArgument) << bad;
  }
  EXPECT_FALSE(fs::exists(tmp_.path() / "escape"));
}

TEST_F(LocalStoreTest, CheckpointsAreSavedPerAttemptLoadedAndRemoved) {
  const std::string first = store_->SaveCheckpoint("job-d", 1, "one");
  const std::string second = store_->SaveCheckpoint("job-d", 2, std::string("t\0o", 3));
  EXPECT_NE(first, second);
  EXPECT_EQ(store_->LoadCheckpoint(first), "one");
  EXPECT_EQ(store_->LoadCheckpoint(second), std::string("t\0o", 3));
  // The previous checkpoint of an attempt is replaced whole.
  EXPECT_EQ(store_->LoadCheckpoint(store_->SaveCheckpoint("job-d", 1, "uno")), "uno");
  store_->RemoveCheckpoints("job-d");
  EXPECT_EQ(store_->LoadCheckpoint(first), std::nullopt);
  EXPECT_NO_THROW(store_->RemoveCheckpoints("job-d"));
}

TEST_F(LocalStoreTest, ResolveNamesEachProblem) {
  Published("job-e");
  fs::create_directories(tmp_.path() / "outside");
  std::ofstream(root_ / "a-file") << "x";
  fs::create_directories(root_ / ".staging" / "x");
  const std::vector<std::pair<std::optional<std::string>, PathProblem>> cases = {
      {std::nullopt, PathProblem::kNoPath},
      {"", PathProblem::kNoPath},
      {root_.string(), PathProblem::kIsRoot},
      {(tmp_.path() / "outside").string(), PathProblem::kOutsideRoot},
      {(root_ / "job-e" / ".." / ".." / "outside").string(), PathProblem::kOutsideRoot},
      {(root_ / ".staging" / "x").string(), PathProblem::kInternalDir},
      {(root_ / "job-gone").string(), PathProblem::kMissingOnDisk},
      {(root_ / "a-file").string(), PathProblem::kNotADirectory},
      {"job-e", PathProblem::kNone},  // relative to the root, as older tools wrote it
  };
  for (const auto& [stored, problem] : cases) {
    EXPECT_EQ(store_->Resolve(stored, true).problem, problem) << stored.value_or("(null)");
  }
  // Without require_bundle, a well-placed path is usable whatever is there.
  EXPECT_EQ(store_->Resolve((root_ / "job-gone").string(), false).problem, PathProblem::kNone);
  EXPECT_EQ(store_->Resolve((root_ / "job-gone").string(), false).owner, "job-gone");
}

TEST_F(LocalStoreTest, ThrowResultPathMissingSaysWhatAndWhere) {
  const std::string stored = (tmp_.path() / "elsewhere").string();
  try {
    store_->ThrowResultPathMissing("job-f", stored, store_->Resolve(stored, true));
    FAIL() << "no exception";
  } catch (const ResultPathMissing& e) {
    EXPECT_EQ(e.details().at("job_id"), "job-f");
    EXPECT_EQ(e.details().at("reason"), "outside the artifact root");
    EXPECT_EQ(e.details().at("artifact_root"), root_.string());
    EXPECT_NE(std::string(e.what()).find("--artifact-root"), std::string::npos);
  }
}

TEST_F(LocalStoreTest, RemovalBatchRemovesBundlesCheckpointsAndLocks) {
  const std::string path = Published("job-g");
  store_->SaveCheckpoint("job-g", 1, "c");
  std::unique_ptr<RemovalBatch> batch = store_->BeginRemoval();
  batch->RemoveBundle(store_->Resolve(path, false), "job-g");
  batch->RemoveJob("job-g");
  batch->RemoveJob("../not-a-job-id");  // names no directory: nothing to do
  batch->Commit();
  EXPECT_FALSE(fs::exists(root_ / "job-g"));
  EXPECT_FALSE(fs::exists(root_ / ".checkpoints" / "job-g"));
  EXPECT_FALSE(fs::exists(root_ / ".locks" / "job-g.lock"));
  EXPECT_EQ(Entries(root_ / ".trash"), 0);
}

TEST_F(LocalStoreTest, RemovingASymlinkLeavesItsTarget) {
  Published("job-h");
  fs::create_symlink(root_ / "job-h", root_ / "alias");
  std::unique_ptr<RemovalBatch> batch = store_->BeginRemoval();
  batch->RemoveJob("alias");
  batch->Commit();
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "alias")));
  EXPECT_TRUE(fs::is_directory(root_ / "job-h"));
}

TEST_F(LocalStoreTest, ListBundlesSkipsTheStoresOwnAreasAndYoungBundles) {
  Published("job-i");
  store_->SaveCheckpoint("job-i", 1, "c");
  std::ofstream(root_ / "a-file") << "x";
  std::vector<StoredBundle> all = store_->ListBundles(std::chrono::seconds(0));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, "job-i");
  EXPECT_EQ(all[0].location, (root_ / "job-i").string());
  EXPECT_TRUE(store_->ListBundles(std::chrono::hours(1)).empty());
}

TEST_F(LocalStoreTest, ReadSummaryTextAndItsAbsence) {
  const std::string path = Published("job-j");
  EXPECT_NE(store_->ReadSummaryText(store_->Resolve(path, true)).find("snapshot_id"),
            std::string::npos);
  fs::remove(fs::path(path) / "summary.json");
  EXPECT_THROW(store_->ReadSummaryText(store_->Resolve(path, true)),
               MissingReproducibilityMetadata);
}

TEST_F(LocalStoreTest, RemoveDebrisRemovesOnlyOldStagingAndTrash) {
  store_->Stage(MakeResult(3, 2, 1), {});
  Published("job-k");
  EXPECT_EQ(store_->RemoveDebris(std::chrono::hours(1)), 0);
  EXPECT_EQ(store_->RemoveDebris(std::chrono::seconds(0)), 1);
  EXPECT_EQ(Entries(root_ / ".staging"), 0);
  EXPECT_TRUE(fs::is_directory(root_ / "job-k"));
}

}  // namespace
}  // namespace btstore
