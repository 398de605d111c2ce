// The readers of daily_ic for cross-job panels (IcReader): the local store's lean reader returns
// what the bundle reader returns, with its checks and its errors.

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <gtest/gtest.h>
#include <parquet/arrow/writer.h>

#include <filesystem>
#include <fstream>

#include "artifact/bundle_fixtures.h"
#include "btstore/artifact_store.h"
#include "btstore/errors.h"
#include "support/expect_error.h"
#include "support/temp_dir.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;
using testing::DescribeDifference;
using testing::ExpectError;
using testing::MakeResult;

class IcReaderTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = ArtifactStore::Open((tmp_.path() / "results").string()); }

  // Publish MakeResult(days, 2, seed) as `job_id`; return where it is.
  BundleLocation Published(const std::string& job_id, int days, uint64_t seed,
                           const WriteOptions& options = {}) {
    BacktestResult result = MakeResult(days, 2, seed);
    result.job_id = job_id;
    std::unique_ptr<JobLock> lock = store_->LockJob(job_id);
    const std::string path = store_->Publish(store_->Stage(result, options), job_id);
    return store_->Resolve(path, /*require_bundle=*/true);
  }

  // daily_ic as the bundle reader returns it.
  std::shared_ptr<arrow::Table> BundleReaderIc(const BundleLocation& where) {
    ReadOptions options;
    options.tables = {std::string(kIcTable)};
    return store_->Read(where, options, nullptr).daily_ic;
  }

  testing::TempDir tmp_{"btstore-ic-reader"};
  std::unique_ptr<ArtifactStore> store_;
};

TEST_F(IcReaderTest, ReadsWhatTheBundleReaderReadsBundleAfterBundle) {
  WriteOptions small_groups;
  small_groups.row_group_rows = 7;
  // NaN, nulls and infinities in ic and rank_ic (MakeResult), one row group or several.
  const std::vector<BundleLocation> bundles = {
      Published("job-a", 40, 1), Published("job-b", 25, 2, small_groups), Published("job-c", 3, 3)};
  std::unique_ptr<IcReader> reader = store_->NewIcReader();
  for (const BundleLocation& where : bundles) {
    const std::shared_ptr<arrow::Table> ic = reader->Read(where);
    EXPECT_EQ(ic->schema()->ToString(), "date: date32[day]\nic: double\nrank_ic: double");
    EXPECT_EQ(DescribeDifference(*BundleReaderIc(where), *ic), "") << where.location;
  }
}

TEST_F(IcReaderTest, AChangedFileIsAChecksumMismatch) {
  const BundleLocation where = Published("job-a", 40, 1);
  const fs::path file = fs::path(where.location) / "daily_ic.parquet";
  {
    std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(static_cast<std::streamoff>(fs::file_size(file) / 2));
    out.put('\x5a');
  }
  const Error error =
      ExpectError(ErrorCode::kInvalidResult, [&] { store_->NewIcReader()->Read(where); });
  EXPECT_NE(std::string(error.what()).find("checksum mismatch"), std::string::npos) << error.what();
  EXPECT_EQ(error.details().at("file"), "daily_ic.parquet");
}

TEST_F(IcReaderTest, MissingFilesAreTheBundleReadersErrors) {
  const BundleLocation no_ic = Published("job-a", 5, 1);
  fs::remove(fs::path(no_ic.location) / "daily_ic.parquet");
  EXPECT_THROW(store_->NewIcReader()->Read(no_ic), InvalidResult);
  const BundleLocation no_summary = Published("job-b", 5, 1);
  fs::remove(fs::path(no_summary.location) / kSummaryFile);
  EXPECT_THROW(store_->NewIcReader()->Read(no_summary), MissingReproducibilityMetadata);
  const BundleLocation no_signals = Published("job-c", 5, 1);
  fs::remove(fs::path(no_signals.location) / "daily_signals.parquet");
  const Error error =
      ExpectError(ErrorCode::kInvalidResult, [&] { store_->NewIcReader()->Read(no_signals); });
  EXPECT_NE(std::string(error.what()).find("listed in the manifest"), std::string::npos)
      << error.what();
}

TEST_F(IcReaderTest, AFileOfAnotherLayoutGetsTheBundleReadersVerdict) {
  const BundleLocation where = Published("job-a", 5, 1);
  const fs::path dir(where.location);
  // A summary without a manifest, and a daily_ic whose date is not a date: the lean reader leaves
  // it to the bundle reader, which names the column.
  std::ofstream(dir / kSummaryFile, std::ios::trunc)
      << R"({"snapshot_id": "s", "dataset_version_ids": {"prices": "v1"}})";
  arrow::Int64Builder dates;
  arrow::DoubleBuilder values;
  ASSERT_TRUE(dates.AppendValues({18262, 18263}).ok());
  ASSERT_TRUE(values.AppendValues({0.1, 0.2}).ok());
  std::shared_ptr<arrow::Array> date_array = *dates.Finish();
  std::shared_ptr<arrow::Array> value_array = *values.Finish();
  auto table = arrow::Table::Make(
      arrow::schema({arrow::field("date", arrow::int64()), arrow::field("ic", arrow::float64()),
                     arrow::field("rank_ic", arrow::float64())}),
      {date_array, value_array, value_array});
  auto out = *arrow::io::FileOutputStream::Open((dir / "daily_ic.parquet").string());
  ASSERT_TRUE(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), out).ok());
  ASSERT_TRUE(out->Close().ok());
  const Error error =
      ExpectError(ErrorCode::kInvalidResult, [&] { store_->NewIcReader()->Read(where); });
  EXPECT_EQ(error.details().at("column"), "date") << error.what();
  EXPECT_EQ(error.details().at("found"), "int64") << error.what();
}

}  // namespace
}  // namespace btstore
