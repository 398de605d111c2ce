// OpenTable: a table read a step of row groups at a time gives what ReadBundle gives, checks the
// manifest's checksum at its end, and refuses what ReadBundle refuses before the first batch.

#include <arrow/api.h>
#include <gtest/gtest.h>

#include "artifact/bundle_fixtures.h"
#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "support/expect_error.h"
#include "support/temp_dir.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;
using testing::DescribeDifference;
using testing::ExpectError;
using testing::MakeResult;
using testing::ReadText;
using testing::TempDir;
using testing::WriteText;

// Read every batch of `stream` into one table.
std::shared_ptr<arrow::Table> Drain(TableStream& stream, int* batches = nullptr) {
  std::vector<std::shared_ptr<arrow::RecordBatch>> all;
  while (auto batch = stream.Next()) all.push_back(batch);
  if (batches) *batches = static_cast<int>(all.size());
  return arrow::Table::FromRecordBatches(stream.schema(), all).ValueOrDie();
}

constexpr int64_t kRows = 200 * 1500;

class TableStreamTest : public ::testing::Test {
 protected:
  // A bundle of 200 days x 1,500 names (several MB of Parquet, so several steps) in row groups
  // of 15,000 rows (ten days).
  fs::path Written() {
    fs::path dir = tmp_.path() / "b";
    WriteOptions options;
    options.row_group_rows = 15000;
    WriteBundle(MakeResult(200, 1500, 5), dir, options);
    return dir;
  }

  TempDir tmp_{"btstore-table-stream"};
};

TEST_F(TableStreamTest, WholeTableInManyBatchesEqualsTheWholeRead) {
  const fs::path dir = Written();
  const BacktestResult whole = ReadBundle(dir);
  auto stream = OpenTable(dir, "daily_signals");
  EXPECT_EQ(stream->max_rows(), kRows);
  int batches = 0;
  auto table = Drain(*stream, &batches);
  EXPECT_GT(batches, 1);
  EXPECT_EQ(DescribeDifference(*whole.daily_signals, *table), "");
  EXPECT_EQ(stream->Next(), nullptr);  // the end stays the end
}

TEST_F(TableStreamTest, DateRangeAndColumnsEqualThePartialRead) {
  const fs::path dir = Written();
  ReadOptions partial;
  partial.from = Date::FromYmd(2020, 2, 3);
  partial.to = Date::FromYmd(2020, 3, 13);
  partial.columns = {"weight"};
  partial.tables = {"daily_weights"};
  const BacktestResult expected = ReadBundle(dir, partial);
  auto stream = OpenTable(dir, "daily_weights", partial);
  EXPECT_LT(stream->max_rows(), kRows);
  EXPECT_GE(stream->max_rows(), expected.daily_weights->num_rows());
  EXPECT_EQ(DescribeDifference(*expected.daily_weights, *Drain(*stream)), "");
}

TEST_F(TableStreamTest, AChecksumMismatchIsThrownAtTheEndAfterTheBatches) {
  const fs::path dir = Written();
  // One letter of the writer's name in the footer: the file decodes to the same table, but its
  // bytes differ from the manifest's checksum.
  const fs::path file = dir / "daily_signals.parquet";
  std::string bytes = ReadText(file);
  const size_t at = bytes.rfind("parquet-cpp-arrow");
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 'P';
  WriteText(file, bytes);

  auto stream = OpenTable(dir, "daily_signals");
  int batches = 0;
  Error error = ExpectError(ErrorCode::kInvalidResult, [&] {
    while (stream->Next()) ++batches;
  });
  EXPECT_GT(batches, 1);
  EXPECT_NE(std::string(error.what()).find("checksum mismatch"), std::string::npos);
  EXPECT_EQ(error.details().at("file"), "daily_signals.parquet");
  // Without checksums (as for a partial read) the same file streams to its end.
  ReadOptions unchecked;
  unchecked.verify_checksums = false;
  EXPECT_EQ(Drain(*OpenTable(dir, "daily_signals", unchecked))->num_rows(), kRows);
}

TEST_F(TableStreamTest, RefusesBeforeTheFirstBatchWhatReadBundleRefuses) {
  const fs::path dir = Written();
  ExpectError(ErrorCode::kInvalidArgument, [&] { OpenTable(dir, "no_such_table"); });
  ExpectError(ErrorCode::kInvalidArgument, [&] { OpenTable(dir, "walk_forward"); });
  ReadOptions columns;
  columns.columns = {"no_such_column"};
  ExpectError(ErrorCode::kInvalidArgument, [&] { OpenTable(dir, "daily_signals", columns); });
  ExpectError(ErrorCode::kResultPathMissing, [&] { OpenTable(tmp_.path() / "gone", "daily_ic"); });
  // A truncated file differs from the manifest's size: refused when opened.
  fs::resize_file(dir / "daily_weights.parquet", fs::file_size(dir / "daily_weights.parquet") - 1);
  ExpectError(ErrorCode::kInvalidResult, [&] { OpenTable(dir, "daily_weights"); });
}

}  // namespace
}  // namespace btstore
