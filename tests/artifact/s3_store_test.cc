// The artifact store on object storage, against a real S3-compatible server (moto's, started
// by this binary on loopback): publish without rename, reads, checkpoints, logs, removal and
// the store's faults.

#include <arrow/filesystem/s3fs.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "artifact/bundle_fixtures.h"
#include "btstore/artifact_store.h"
#include "btstore/errors.h"
#include "support/s3_server.h"
#include "support/temp_dir.h"

namespace btstore {
namespace {

using testing::MakeResult;
using testing::S3Server;

constexpr const char* kBucket = "btstore-store-test";

S3Server* server = nullptr;

// One server for the binary; Arrow's S3 library is released after the last test (it cannot be
// released at exit).
class S3Environment : public ::testing::Environment {
 public:
  void TearDown() override {
    delete server;
    server = nullptr;
    FinalizeObjectStores();
  }
};

const ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new S3Environment);

// The bucket, created through Arrow as any client would (btstore never creates buckets).
void CreateBucket() {
  ASSERT_TRUE(arrow::fs::EnsureS3Initialized().ok());
  arrow::fs::S3Options options =
      arrow::fs::S3Options::FromAccessKey(S3Server::kAccessKey, S3Server::kSecretKey);
  options.endpoint_override = "127.0.0.1:" + std::to_string(server->port());
  options.scheme = "http";
  options.region = "us-east-1";
  options.allow_bucket_creation = true;
  auto fs = arrow::fs::S3FileSystem::Make(options);
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  ASSERT_TRUE((*fs)->CreateDir(kBucket).ok());
}

class S3StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = S3Server::SkipReason()) GTEST_SKIP() << *why;
    if (server == nullptr) server = new S3Server();
    server->Start();
    server->ExportEnvironment();
    CreateBucket();
    static std::atomic<int> next{0};
    root_ = std::string("s3://") + kBucket + "/t" + std::to_string(::getpid()) + "-" +
            std::to_string(next++);
    store_ = ArtifactStore::Open(root_);
  }

  BacktestResult Result(const std::string& job_id, int days = 30, uint64_t seed = 1) {
    BacktestResult result = MakeResult(days, 4, seed);
    result.job_id = job_id;
    return result;
  }

  std::string root_;
  std::unique_ptr<ArtifactStore> store_;
};

TEST(S3StoreOpenTest, TheS3ClientStartsOnPrepareOrFirstUseNotWhenTheStoreIsOpened) {
  // In a process of its own (the other tests start the client): a command that only talks to
  // the catalog must not pay for starting the AWS SDK; Prepare (the Python package's Store,
  // `serve`) starts it at once.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
        std::unique_ptr<ArtifactStore> store = ArtifactStore::Open("s3://some-bucket/results");
        if (arrow::fs::IsS3Initialized() || store->root() != "s3://some-bucket/results") {
          std::_Exit(1);
        }
        store->Prepare();
        std::_Exit(arrow::fs::IsS3Initialized() ? 0 : 2);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(S3StoreTest, OpensTheRootAsItsUri) {
  EXPECT_EQ(store_->root(), root_);
  EXPECT_THROW(ArtifactStore::Open("s3://"), InvalidArgument);
}

TEST_F(S3StoreTest, ABundleIsStreamedToTheStoreWithNothingWrittenLocally) {
  // The store keeps its local files (a command engine's run directories and logs) under the
  // temporary directory: a fresh one, empty before and after a bundle is staged.
  testing::TempDir tmp("btstore-s3-local");
  const char* saved = std::getenv("TMPDIR");
  const std::string previous = saved != nullptr ? saved : "";
  ::setenv("TMPDIR", tmp.path().c_str(), 1);
  std::unique_ptr<ArtifactStore> store = ArtifactStore::Open(root_);
  const StagedBundle staged = store->Stage(Result("job-s", 300, 3), {});
  if (saved != nullptr) {
    ::setenv("TMPDIR", previous.c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
  // And the staged objects are the whole bundle, read back with their manifest's checksums.
  const BundleLocation where = store->Resolve(staged.location, true);
  ASSERT_EQ(where.problem, PathProblem::kNone);
  const BacktestResult back = store->Read(where, {}, nullptr);
  const BacktestResult expected = Result("job-s", 300, 3);
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_signals, *back.daily_signals), "");
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_weights, *back.daily_weights), "");
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_ic, *back.daily_ic), "");
}

TEST_F(S3StoreTest, EachAttemptStagesUnderItsOwnPrefixAndPublishNamesIt) {
  const StagedBundle first = store_->Stage(Result("job-a"), {});
  const StagedBundle second = store_->Stage(Result("job-a", 30, 2), {});
  EXPECT_TRUE(first.location.starts_with(root_ + "/job-a/a-")) << first.location;
  EXPECT_NE(first.location, second.location);
  {
    std::unique_ptr<JobLock> lock = store_->LockJob("job-a");
    EXPECT_EQ(store_->Publish(first, "job-a"), first.location);
  }
  // Publishing moves nothing: the other attempt's objects stay where they are, unseen.
  EXPECT_EQ(store_->Resolve(first.location, true).problem, PathProblem::kNone);
  EXPECT_EQ(store_->Resolve(second.location, true).problem, PathProblem::kNone);
  store_->Discard(second);
  EXPECT_EQ(store_->Resolve(second.location, true).problem, PathProblem::kMissingOnDisk);
  // Unpublish removes what this process published for the job, nothing else.
  store_->Unpublish("job-a");
  EXPECT_EQ(store_->Resolve(first.location, true).problem, PathProblem::kMissingOnDisk);
  store_->Unpublish("job-a");  // missing is fine
  // A staged bundle of another job cannot be published as this one.
  const StagedBundle other = store_->Stage(Result("job-b"), {});
  EXPECT_THROW(store_->Publish(other, "job-a"), InternalError);
}

TEST_F(S3StoreTest, ReadsWholeAndByDateRangeVerifyingTheManifest) {
  const BacktestResult expected = Result("job-r", 60);
  const StagedBundle staged = store_->Stage(expected, {});
  const BundleLocation where = store_->Resolve(staged.location, true);
  ASSERT_EQ(where.problem, PathProblem::kNone);
  EXPECT_EQ(where.owner, "job-r");

  ReadStats stats;
  const BacktestResult whole = store_->Read(where, {}, &stats);
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_signals, *whole.daily_signals), "");
  EXPECT_EQ(testing::DescribeDifference(*expected.daily_ic, *whole.daily_ic), "");
  EXPECT_GT(stats.bytes_read, 0);

  ReadOptions range;
  range.from = Date::Parse("2020-01-10");
  range.to = Date::Parse("2020-01-14");
  const BacktestResult part = store_->Read(where, range, nullptr);
  EXPECT_EQ(part.daily_signals->num_rows(), 5 * 4);

  const BundleInfo info = store_->Inspect(where);
  EXPECT_TRUE(info.has_manifest);
  EXPECT_NE(store_->ReadSummaryText(where).find("\"job-r\""), std::string::npos);
}

TEST_F(S3StoreTest, APartialReadFetchesOnlyTheRowGroupsOfItsRange) {
  WriteOptions options;
  options.row_group_rows = 10000;  // 200 days of 50 permnos per row group
  BacktestResult result = MakeResult(4000, 50, 3);
  result.job_id = "job-range";
  const BundleLocation where = store_->Resolve(store_->Stage(result, options).location, true);
  ReadOptions month;
  month.tables = {"daily_signals"};
  month.from = Date::Parse("2020-06-01");
  month.to = Date::Parse("2020-06-30");
  ReadStats part;
  const BacktestResult read = store_->Read(where, month, &part);
  EXPECT_EQ(read.daily_signals->num_rows(), 30 * 50);
  ReadOptions all;
  all.tables = {"daily_signals"};
  ReadStats whole;
  store_->Read(where, all, &whole);
  EXPECT_EQ(part.row_groups_read, 1);
  EXPECT_EQ(part.row_groups_skipped, 19);
  // The footer and one row group of twenty, fetched with range requests.
  EXPECT_LT(part.bytes_read * 5, whole.bytes_read) << part.bytes_read << " of " << whole.bytes_read;
}

TEST_F(S3StoreTest, StreamsATableStepByStepEqualToTheWholeRead) {
  WriteOptions options;
  options.row_group_rows = 20000;
  BacktestResult result = MakeResult(1000, 200, 4);  // 200,000 rows: several steps
  result.job_id = "job-stream";
  const BundleLocation where = store_->Resolve(store_->Stage(result, options).location, true);
  std::unique_ptr<TableStream> stream = store_->OpenTable(where, "daily_signals", {});
  std::vector<std::shared_ptr<arrow::RecordBatch>> batches;
  while (auto batch = stream->Next()) batches.push_back(batch);
  EXPECT_GT(batches.size(), 1u);
  auto table = arrow::Table::FromRecordBatches(stream->schema(), batches).ValueOrDie();
  EXPECT_EQ(testing::DescribeDifference(*result.daily_signals, *table), "");
  ReadOptions month;
  month.from = Date::Parse("2020-06-01");
  month.to = Date::Parse("2020-06-30");
  stream = store_->OpenTable(where, "daily_signals", month);
  int64_t rows = 0;
  while (auto batch = stream->Next()) rows += batch->num_rows();
  EXPECT_EQ(rows, 30 * 200);
}

TEST_F(S3StoreTest, AReplacedObjectFailsTheManifestCheck) {
  const StagedBundle staged = store_->Stage(Result("job-bad", 60, 1), {});
  const StagedBundle other = store_->Stage(Result("job-bad", 60, 9), {});
  arrow::fs::S3Options options =
      arrow::fs::S3Options::FromAccessKey(S3Server::kAccessKey, S3Server::kSecretKey);
  options.endpoint_override = "127.0.0.1:" + std::to_string(server->port());
  options.scheme = "http";
  options.region = "us-east-1";
  auto client = arrow::fs::S3FileSystem::Make(options);
  ASSERT_TRUE(client.ok());
  const std::string from = other.location.substr(5) + "/daily_signals.parquet";
  const std::string to = staged.location.substr(5) + "/daily_signals.parquet";
  ASSERT_TRUE((*client)->CopyFile(from, to).ok());
  EXPECT_THROW(store_->Read(store_->Resolve(staged.location, true), {}, nullptr), InvalidResult);
  EXPECT_THROW(store_->Inspect(store_->Resolve(staged.location, true)), InvalidResult);
}

TEST_F(S3StoreTest, ResolveNamesEachProblem) {
  const StagedBundle staged = store_->Stage(Result("job-p"), {});
  const std::string relative = staged.location.substr(root_.size() + 1);
  EXPECT_EQ(store_->Resolve(relative, true).location, staged.location);
  EXPECT_EQ(store_->Resolve(std::nullopt, true).problem, PathProblem::kNoPath);
  EXPECT_EQ(store_->Resolve(root_, true).problem, PathProblem::kIsRoot);
  EXPECT_EQ(store_->Resolve(root_ + "/", true).problem, PathProblem::kIsRoot);
  EXPECT_EQ(store_->Resolve("s3://other-bucket/x/job-p", true).problem, PathProblem::kOutsideRoot);
  EXPECT_EQ(store_->Resolve(root_ + "/../elsewhere/job-p", true).problem,
            PathProblem::kOutsideRoot);
  EXPECT_EQ(store_->Resolve(root_ + "x/job-p", true).problem, PathProblem::kOutsideRoot);
  EXPECT_EQ(store_->Resolve("/tmp/job-p", true).problem, PathProblem::kOutsideRoot);
  EXPECT_EQ(store_->Resolve(root_ + "/.checkpoints/job-p", true).problem,
            PathProblem::kInternalDir);
  EXPECT_EQ(store_->Resolve(root_ + "/job-p/a-none", true).problem, PathProblem::kMissingOnDisk);
  EXPECT_EQ(store_->Resolve(root_ + "/job-p/a-none", false).problem, PathProblem::kNone);
  EXPECT_EQ(store_->Resolve(staged.location + "/summary.json", true).problem,
            PathProblem::kNotADirectory);
}

TEST_F(S3StoreTest, CheckpointsAreSavedLoadedAndRemoved) {
  const std::string first = store_->SaveCheckpoint("job-c", 1, "state one");
  EXPECT_TRUE(first.starts_with(root_ + "/.checkpoints/job-c/")) << first;
  EXPECT_EQ(store_->LoadCheckpoint(first), "state one");
  EXPECT_EQ(store_->SaveCheckpoint("job-c", 1, "state two"), first);
  EXPECT_EQ(store_->LoadCheckpoint(first), "state two");
  store_->RemoveCheckpoints("job-c");
  EXPECT_EQ(store_->LoadCheckpoint(first), std::nullopt);
  EXPECT_THROW(store_->LoadCheckpoint("s3://other-bucket/x.ckpt"), InternalError);
}

TEST_F(S3StoreTest, LogsAreLocalWhileTheAttemptRunsAndInTheStoreAfterIt) {
  const std::string dir = store_->MakeAttemptDir("job-l", 1);
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  const std::string log = store_->LogLocation("job-l", 1, LogStream::kStdout);
  std::ofstream(log) << "hello from the program\n";
  EXPECT_EQ(store_->ReadLog("job-l", 1, LogStream::kStdout, 6, 4), "from");
  store_->RemoveAttemptDir("job-l", 1);
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(std::filesystem::exists(log));
  // Now read from the store, as any host would.
  std::unique_ptr<ArtifactStore> elsewhere = ArtifactStore::Open(root_);
  EXPECT_EQ(elsewhere->LogAttempts("job-l"), std::vector<int>{1});
  EXPECT_EQ(elsewhere->ReadLog("job-l", 1, LogStream::kStdout, 6, 4), "from");
  EXPECT_EQ(elsewhere->ReadLog("job-l", 1, LogStream::kStdout, 1000, 4), "");
  EXPECT_EQ(elsewhere->ReadLog("job-l", 1, LogStream::kStderr, 0, 4), "");
}

TEST_F(S3StoreTest, ListsAttemptsOlderThanTheGraceAndRemovesJobs) {
  const StagedBundle staged = store_->Stage(Result("job-x"), {});
  store_->SaveCheckpoint("job-x", 1, "state");
  EXPECT_TRUE(store_->ListBundles(std::chrono::hours(1)).empty());  // too young
  const std::vector<StoredBundle> all = store_->ListBundles(std::chrono::seconds(0));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, "job-x");
  EXPECT_EQ(all[0].location, staged.location);

  std::unique_ptr<RemovalBatch> removal = store_->BeginRemoval();
  removal->RemoveBundle(store_->Resolve(staged.location, false), "job-x");
  removal->RemoveJob("job-x");
  removal->Commit();
  EXPECT_TRUE(store_->ListBundles(std::chrono::seconds(0)).empty());
  EXPECT_EQ(store_->LoadCheckpoint(root_ + "/.checkpoints/job-x/attempt-1.ckpt"), std::nullopt);
}

TEST_F(S3StoreTest, AStoppedServerIsCatalogUnavailableNamingTheEndpointNotTheSecret) {
  const StagedBundle staged = store_->Stage(Result("job-f"), {});
  const BundleLocation where = store_->Resolve(staged.location, true);
  server->Stop();
  auto expect_unavailable = [&](const std::function<void()>& call) {
    try {
      call();
      ADD_FAILURE() << "no error";
    } catch (const CatalogUnavailable& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(server->endpoint()), std::string::npos) << message;
      EXPECT_EQ(message.find(S3Server::kSecretKey), std::string::npos) << message;
      for (const auto& [key, value] : e.details()) {
        EXPECT_EQ(value.find(S3Server::kSecretKey), std::string::npos) << key;
      }
    }
  };
  expect_unavailable([&] { store_->Read(where, {}, nullptr); });
  expect_unavailable([&] { store_->Resolve(staged.location, true); });
  expect_unavailable([&] { store_->Stage(Result("job-f", 30, 2), {}); });
  expect_unavailable([&] { store_->SaveCheckpoint("job-f", 1, "state"); });
  // A failed upload leaves nothing behind locally either (bundles are streamed, never staged).
  const std::filesystem::path staging =
      std::filesystem::temp_directory_path() / "btstore-s3" / ".staging";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(staging, ec)) {
    EXPECT_FALSE(entry.path().filename().string().starts_with("job-f")) << entry.path();
  }
  server->Start();
}

}  // namespace
}  // namespace btstore
