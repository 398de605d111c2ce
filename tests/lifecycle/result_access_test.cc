// JobService::GetResult, ReadIcPanel and ResolveResultPath: one test per way a read can fail,
// and a partial read, on every catalog backend.

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/retention_fixture.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

class ResultAccessTest : public StoredJobsTest {
 protected:
  void SetUp() override {
    StoredJobsTest::SetUp();
    if (IsSkipped()) return;
    service_ = std::make_unique<JobService>(*catalog_, *store_, clock_, engines_);
  }

  // Run GetResult, expecting an error of type E; return it for its details.
  template <typename E>
  E ExpectError(const std::string& job_id, const ReadOptions& options = {}) {
    try {
      service_->GetResult(job_id, options);
    } catch (const E& error) {
      return error;
    } catch (const Error& error) {
      ADD_FAILURE() << "GetResult(" << job_id << ") threw " << ErrorCodeName(error.code()) << ": "
                    << error.what();
      throw;
    }
    ADD_FAILURE() << "GetResult(" << job_id << ") returned a result";
    throw std::runtime_error("no error");
  }

  // Expect ResultPathMissing for `job_id` with this reason in its details.
  void ExpectPathMissing(const std::string& job_id, const std::string& reason) {
    const ResultPathMissing error = ExpectError<ResultPathMissing>(job_id);
    EXPECT_EQ(error.code(), ErrorCode::kResultPathMissing);
    EXPECT_EQ(error.details().at("job_id"), job_id);
    EXPECT_EQ(error.details().at("reason"), reason) << error.what();
    EXPECT_TRUE(error.details().contains("path"));
  }

  // A valid bundle outside the artifact root.
  fs::path OutsideBundle(const std::string& name) {
    fs::path dir = dir_.path() / "elsewhere" / name;
    fs::create_directories(dir.parent_path());
    WriteBundle(SmallResult(name, Date::FromYmd(2020, 1, 1), 5, 2), dir);
    return dir;
  }

  std::unique_ptr<JobService> service_;
};

TEST_P(ResultAccessTest, ReadsACompletedJobWhole) {
  MakeCompleted("job-good", DaysAgo(2), DaysAgo(1));
  ReadStats stats;
  const BacktestResult result = service_->GetResult("job-good", {}, &stats);
  EXPECT_EQ(result.daily_signals->num_rows(), 30);
  EXPECT_EQ(result.daily_weights->num_rows(), 30);
  EXPECT_EQ(result.daily_ic->num_rows(), 10);
  EXPECT_EQ(result.snapshot_id, "snap-1");
  EXPECT_EQ(result.dataset_version_ids.at("prices"), "v1");
  EXPECT_DOUBLE_EQ(result.metrics.mean_ic, 0.01);
  EXPECT_GT(stats.bytes_read, 0);
}

TEST_P(ResultAccessTest, UnknownJobIsJobNotFound) {
  const JobNotFound error = ExpectError<JobNotFound>("no-such-job");
  EXPECT_EQ(error.code(), ErrorCode::kJobNotFound);
}

TEST_P(ResultAccessTest, JobsThatAreNotCompletedHaveNoResult) {
  MakePending("job-pending", DaysAgo(1));
  MakeRunning("job-running", DaysAgo(1));
  MakeFailed("job-failed", DaysAgo(1), DaysAgo(1));
  MakeCancelled("job-cancelled", DaysAgo(1), DaysAgo(1));
  for (const std::string id : {"job-pending", "job-running", "job-failed", "job-cancelled"}) {
    SCOPED_TRACE(id);
    ExpectPathMissing(id, "not completed");
  }
}

TEST_P(ResultAccessTest, NullResultPathIsResultPathMissing) {
  MakeCompleted("job-null", DaysAgo(2), DaysAgo(1));
  SetResultPath("job-null", std::nullopt);
  ExpectPathMissing("job-null", "no result path");
}

TEST_P(ResultAccessTest, EmptyResultPathIsResultPathMissing) {
  MakeCompleted("job-empty", DaysAgo(2), DaysAgo(1));
  SetResultPath("job-empty", "");
  ExpectPathMissing("job-empty", "no result path");
}

TEST_P(ResultAccessTest, BundleMissingOnDiskIsResultPathMissing) {
  MakeCompleted("job-gone", DaysAgo(2), DaysAgo(1));
  fs::remove_all(BundleDir("job-gone"));
  ExpectPathMissing("job-gone", "missing on disk");
}

TEST_P(ResultAccessTest, DotDotEscapingTheRootIsResultPathMissing) {
  MakeCompleted("job-dotdot", DaysAgo(2), DaysAgo(1));
  OutsideBundle("escaped");
  // <root>/job-dotdot/../../elsewhere/escaped: a real bundle, reached through the root.
  SetResultPath("job-dotdot",
                (BundleDir("job-dotdot") / ".." / ".." / "elsewhere" / "escaped").string());
  ExpectPathMissing("job-dotdot", "outside the artifact root");
  // The same escape written relative to the root.
  SetResultPath("job-dotdot", "../elsewhere/escaped");
  ExpectPathMissing("job-dotdot", "outside the artifact root");
}

TEST_P(ResultAccessTest, AbsolutePathElsewhereIsResultPathMissing) {
  MakeCompleted("job-abs", DaysAgo(2), DaysAgo(1));
  SetResultPath("job-abs", OutsideBundle("abs").string());
  ExpectPathMissing("job-abs", "outside the artifact root");
}

TEST_P(ResultAccessTest, SymlinkOutOfTheRootIsResultPathMissing) {
  MakeCompleted("job-link", DaysAgo(2), DaysAgo(1));
  const fs::path link = root_ / "linked-bundle";
  fs::create_directory_symlink(OutsideBundle("target"), link);
  SetResultPath("job-link", link.string());
  ExpectPathMissing("job-link", "outside the artifact root");
}

TEST_P(ResultAccessTest, TheRootItselfIsResultPathMissing) {
  MakeCompleted("job-root", DaysAgo(2), DaysAgo(1));
  const std::vector<std::string> paths = {root_.string(), root_.string() + "/",
                                          (root_ / "job-root" / "..").string(), "."};
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    SetResultPath("job-root", path);
    ExpectPathMissing("job-root", "the artifact root itself");
  }
}

TEST_P(ResultAccessTest, InternalDirectoriesAreNotBundles) {
  MakeCompleted("job-staged", DaysAgo(2), DaysAgo(1));
  const fs::path staged = root_ / ".staging" / "job-staged";
  fs::create_directories(staged.parent_path());
  fs::rename(BundleDir("job-staged"), staged);
  SetResultPath("job-staged", staged.string());
  ExpectPathMissing("job-staged", "inside an internal directory");
}

TEST_P(ResultAccessTest, RelativePathIsRelativeToTheRoot) {
  MakeCompleted("job-relative", DaysAgo(2), DaysAgo(1));
  SetResultPath("job-relative", "job-relative");
  EXPECT_EQ(service_->GetResult("job-relative").daily_ic->num_rows(), 10);
  EXPECT_EQ(service_->ResolveResultPath(catalog_->GetJob("job-relative")),
            fs::canonical(BundleDir("job-relative")));
}

TEST_P(ResultAccessTest, SymlinkInsideTheRootIsFollowed) {
  MakeCompleted("job-inner", DaysAgo(2), DaysAgo(1));
  const fs::path link = root_ / "alias";
  fs::create_directory_symlink(BundleDir("job-inner"), link);
  SetResultPath("job-inner", link.string());
  EXPECT_EQ(service_->GetResult("job-inner").daily_signals->num_rows(), 30);
}

TEST_P(ResultAccessTest, MissingSummaryIsMissingReproducibilityMetadata) {
  MakeCompleted("job-nosummary", DaysAgo(2), DaysAgo(1));
  fs::remove(BundleDir("job-nosummary") / kSummaryFile);
  const MissingReproducibilityMetadata error =
      ExpectError<MissingReproducibilityMetadata>("job-nosummary");
  EXPECT_EQ(error.code(), ErrorCode::kMissingReproducibilityMetadata);
  EXPECT_EQ(error.details().at("job_id"), "job-nosummary");
}

TEST_P(ResultAccessTest, CorruptParquetIsInvalidResultNamingTheFile) {
  MakeCompleted("job-corrupt", DaysAgo(2), DaysAgo(1));
  const fs::path file = BundleDir("job-corrupt") / "daily_signals.parquet";
  const auto size = fs::file_size(file);
  {
    // Overwrite the middle of the file (its data pages) with garbage of the same length.
    std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(static_cast<std::streamoff>(size / 2) - 16);
    const std::string garbage(32, '\x5a');
    out.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  ASSERT_EQ(fs::file_size(file), size);
  const InvalidResult error = ExpectError<InvalidResult>("job-corrupt");
  EXPECT_EQ(error.code(), ErrorCode::kInvalidResult);
  EXPECT_NE(std::string(error.what()).find("daily_signals"), std::string::npos) << error.what();
  EXPECT_EQ(error.details().at("job_id"), "job-corrupt");
}

TEST_P(ResultAccessTest, TruncatedParquetIsInvalidResult) {
  MakeCompleted("job-truncated", DaysAgo(2), DaysAgo(1));
  const fs::path file = BundleDir("job-truncated") / "daily_ic.parquet";
  fs::resize_file(file, fs::file_size(file) / 2);
  const InvalidResult error = ExpectError<InvalidResult>("job-truncated");
  EXPECT_EQ(error.code(), ErrorCode::kInvalidResult);
  EXPECT_NE(std::string(error.what()).find("daily_ic"), std::string::npos) << error.what();
}

TEST_P(ResultAccessTest, LoadsADateRangeAndSomeColumns) {
  WriteOptions small_groups;
  small_groups.row_group_rows = 6;  // two dates of three symbols per row group
  MakeCompleted("job-part", DaysAgo(2), DaysAgo(1), small_groups);
  ReadOptions options;
  options.from = Date::FromYmd(2020, 1, 3);
  options.to = Date::FromYmd(2020, 1, 6);
  options.tables = {std::string(kSignalsTable)};
  options.columns = {"signal"};
  ReadStats stats;
  const BacktestResult result = service_->GetResult("job-part", options, &stats);

  ASSERT_NE(result.daily_signals, nullptr);
  const arrow::Table& signals = *result.daily_signals;
  EXPECT_EQ(signals.num_rows(), 4 * 3);  // four dates, three symbols
  ASSERT_EQ(signals.num_columns(), 2);
  EXPECT_EQ(signals.schema()->field(0)->name(), "date");
  EXPECT_EQ(signals.schema()->field(1)->name(), "signal");
  for (const auto& chunk : signals.column(0)->chunks()) {
    const auto& dates = static_cast<const arrow::Date32Array&>(*chunk);
    for (int64_t i = 0; i < dates.length(); ++i) {
      EXPECT_GE(dates.Value(i), options.from->days);
      EXPECT_LE(dates.Value(i), options.to->days);
    }
  }
  // The ten dates span five row groups; those outside the range are skipped, not read.
  EXPECT_GT(stats.row_groups_skipped, 0);
  EXPECT_EQ(result.snapshot_id, "snap-1");
}

TEST_P(ResultAccessTest, JobMarkedByRetentionHasNoResult) {
  MakeCompleted("job-expiring", DaysAgo(200), DaysAgo(100));
  ASSERT_EQ(catalog_->MarkExpiring(DaysAgo(90), 10, TestNow()).size(), 1u);
  // The bundle is still on disk, whole; the row says it is going.
  ASSERT_TRUE(fs::exists(BundleDir("job-expiring") / kSummaryFile));
  ExpectPathMissing("job-expiring", "expiring");
}

TEST_P(ResultAccessTest, ResolveResultPathRejectsWhatGetResultRejects) {
  JobRecord job = MakeCompleted("job-resolve", DaysAgo(2), DaysAgo(1));
  EXPECT_EQ(service_->ResolveResultPath(job), fs::canonical(BundleDir("job-resolve")));
  job.result_path = std::nullopt;
  EXPECT_THROW(service_->ResolveResultPath(job), ResultPathMissing);
  job.result_path = "/";
  EXPECT_THROW(service_->ResolveResultPath(job), ResultPathMissing);
  job.result_path = root_.string() + "-sibling/job-resolve";  // shares the root's name prefix
  EXPECT_THROW(service_->ResolveResultPath(job), ResultPathMissing);
}

using Ids = std::vector<std::string>;

// Flip bytes in the middle of `file` (its data pages), keeping its size.
void Corrupt(const fs::path& file) {
  const auto size = fs::file_size(file);
  std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
  out.seekp(static_cast<std::streamoff>(size / 2) - 16);
  const std::string garbage(32, '\x5a');
  out.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
}

TEST_P(ResultAccessTest, IcPanelStacksTheJobsInTheOrderGivenAsGetResultReadsThem) {
  const JobRecord a = MakeCompleted("job-a", DaysAgo(3), DaysAgo(2));
  WriteOptions small_groups;
  small_groups.row_group_rows = 3;  // daily_ic's 10 rows in 4 row groups
  const JobRecord b = MakeCompleted("job-b", DaysAgo(2), DaysAgo(1), small_groups);
  for (int threads : {1, 2, 0}) {
    const std::shared_ptr<arrow::Table> by_id =
        service_->ReadIcPanel(Ids{"job-b", "job-a"}, threads);
    const std::shared_ptr<arrow::Table> listed = service_->ReadIcPanel({b, a}, threads);
    ASSERT_TRUE(by_id->Equals(*listed));
    ASSERT_EQ(by_id->schema()->ToString(),
              "job_id: string_view not null\ndate: date32[day]\nic: double\nrank_ic: double");
    ASSERT_EQ(by_id->num_rows(), 20);
    int64_t offset = 0;
    for (const std::string job_id : {"job-b", "job-a"}) {
      const std::shared_ptr<arrow::Table> ic = service_->GetResult(job_id).daily_ic;
      const std::shared_ptr<arrow::Table> part = by_id->Slice(offset, ic->num_rows());
      for (const std::string column : {"date", "ic", "rank_ic"}) {
        EXPECT_TRUE(part->GetColumnByName(column)->Equals(*ic->GetColumnByName(column)))
            << job_id << " " << column;
      }
      auto ids = part->GetColumnByName("job_id");
      for (int64_t row = 0; row < ids->length(); ++row) {
        EXPECT_EQ((*ids->GetScalar(row))->ToString(), job_id);
      }
      offset += ic->num_rows();
    }
  }
  EXPECT_EQ(service_->ReadIcPanel(Ids{}, 0)->num_rows(), 0);
}

TEST_P(ResultAccessTest, IcPanelFailsAsGetResultForTheFirstJobThatCannotBeRead) {
  const JobRecord good = MakeCompleted("job-good", DaysAgo(3), DaysAgo(2));
  const JobRecord corrupt = MakeCompleted("job-corrupt", DaysAgo(2), DaysAgo(1));
  Corrupt(BundleDir("job-corrupt") / "daily_ic.parquet");
  for (const auto& read : std::vector<std::function<void()>>{
           [&] {
             service_->ReadIcPanel(Ids{"job-good", "job-corrupt"}, 2);
           },
           [&] {
             service_->ReadIcPanel({good, corrupt}, 2);
           }}) {
    try {
      read();
      ADD_FAILURE() << "a corrupt daily_ic was read";
    } catch (const InvalidResult& error) {
      EXPECT_EQ(error.details().at("job_id"), "job-corrupt");
      EXPECT_EQ(error.details().at("file"), "daily_ic.parquet");
      EXPECT_NE(std::string(error.what()).find("checksum mismatch"), std::string::npos)
          << error.what();
    }
  }
  fs::remove_all(BundleDir("job-corrupt"));
  EXPECT_THROW(service_->ReadIcPanel(Ids{"job-good", "job-corrupt"}, 1), ResultPathMissing);
  EXPECT_THROW(service_->ReadIcPanel(Ids{"job-good", "job-none"}, 1), JobNotFound);
  const JobRecord nosummary = MakeCompleted("job-nosummary", DaysAgo(2), DaysAgo(1));
  fs::remove(BundleDir("job-nosummary") / kSummaryFile);
  EXPECT_THROW(service_->ReadIcPanel({good, nosummary}, 2), MissingReproducibilityMetadata);
}

INSTANTIATE_TEST_SUITE_P(Backends, ResultAccessTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
