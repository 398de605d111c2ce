// The bundle writer and reader: round trips, partial reads, every error, staging and publish.

#include "btstore/bundle.h"

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <arrow/io/memory.h>
#include <gtest/gtest.h>
#include <parquet/arrow/writer.h>
#include <parquet/file_reader.h>
#include <parquet/metadata.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "artifact/bundle_fixtures.h"
#include "artifact/layout_internal.h"
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

nlohmann::json ReadSummaryJson(const fs::path& dir) {
  return nlohmann::json::parse(ReadText(dir / "summary.json"));
}

void WriteSummaryJson(const fs::path& dir, const nlohmann::json& doc) {
  WriteText(dir / "summary.json", doc.dump());
}

uint64_t Bits(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof v);
  return bits;
}

void ExpectSameTables(const BacktestResult& expected, const BacktestResult& actual) {
  EXPECT_EQ(DescribeDifference(*expected.daily_signals, *actual.daily_signals), "");
  EXPECT_EQ(DescribeDifference(*expected.daily_weights, *actual.daily_weights), "");
  EXPECT_EQ(DescribeDifference(*expected.daily_ic, *actual.daily_ic), "");
  ASSERT_EQ(expected.extra_tables.size(), actual.extra_tables.size());
  for (const auto& [name, table] : expected.extra_tables) {
    ASSERT_TRUE(actual.extra_tables.contains(name)) << name;
    EXPECT_EQ(DescribeDifference(*table, *actual.extra_tables.at(name)), "") << name;
  }
}

class BundleTest : public ::testing::Test {
 protected:
  fs::path Dir(const std::string& name) const { return tmp_.path() / name; }

  // Write a valid bundle and return its directory.
  fs::path Written(const std::string& name, int days = 20, int symbols = 30) {
    fs::path dir = Dir(name);
    WriteBundle(MakeResult(days, symbols, 42), dir);
    return dir;
  }

  // Write a bundle, then drop its manifest, as a tool without one would have written it.
  fs::path WrittenWithoutManifest(const std::string& name) {
    fs::path dir = Written(name);
    nlohmann::json doc = ReadSummaryJson(dir);
    doc.erase("artifacts");
    WriteSummaryJson(dir, doc);
    return dir;
  }

  TempDir tmp_{"btstore-artifact"};
};

TEST_F(BundleTest, RoundTripIsBitExactIncludingNanNullAndInfinities) {
  BacktestResult result = MakeResult(40, 25, 7);
  auto manifest = WriteBundle(result, Dir("b"));
  EXPECT_EQ(manifest.size(), 3u);
  EXPECT_EQ(manifest.at("daily_signals.parquet").rows, 1000);

  BacktestResult back = ReadBundle(Dir("b"));
  ExpectSameTables(result, back);
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    double want = result.metrics.At(i);
    if (std::isfinite(want)) {
      EXPECT_EQ(Bits(back.metrics.At(i)), Bits(want)) << Metrics::kNames[i];
    } else {
      EXPECT_TRUE(std::isnan(back.metrics.At(i))) << Metrics::kNames[i];
    }
  }
  EXPECT_EQ(back.job_id, result.job_id);
  EXPECT_EQ(back.alpha_name, result.alpha_name);
  EXPECT_EQ(back.start_date, result.start_date);
  EXPECT_EQ(back.end_date, result.end_date);
  EXPECT_EQ(back.weight_method, result.weight_method);
  EXPECT_EQ(back.config_hash, result.config_hash);
  EXPECT_EQ(back.snapshot_id, result.snapshot_id);
  EXPECT_EQ(back.dataset_version_ids, result.dataset_version_ids);
  EXPECT_EQ(nlohmann::json::parse(back.extra_summary_json),
            nlohmann::json::parse(result.extra_summary_json));
}

TEST_F(BundleTest, SummaryHasContractKeysAndManifestWithChecksums) {
  fs::path dir = Written("b");
  nlohmann::json doc = ReadSummaryJson(dir);
  EXPECT_EQ(doc["schema_version"], 1);
  EXPECT_EQ(doc["job_id"], "job-42");
  EXPECT_EQ(doc["start_date"], "2020-01-01");
  EXPECT_TRUE(doc["decay_half_life"].is_null());  // +Inf is written as null
  EXPECT_TRUE(doc["written_at"].is_string());
  EXPECT_EQ(doc["writer"]["name"], "btstore");
  for (const char* file : {"daily_signals.parquet", "daily_weights.parquet", "daily_ic.parquet"}) {
    const auto& entry = doc["artifacts"][file];
    EXPECT_EQ(entry["bytes"].get<int64_t>(), static_cast<int64_t>(fs::file_size(dir / file)));
    std::string checksum = entry["checksum"];
    EXPECT_EQ(checksum.rfind("xxh3-128:", 0), 0u);
    EXPECT_EQ(checksum.size(), 9u + 32u);
  }
  EXPECT_EQ(doc["artifacts"]["daily_signals.parquet"]["rows"], 600);
}

TEST_F(BundleTest, ZstdCompressionRoundTrips) {
  BacktestResult result = MakeResult(10, 10, 3);
  WriteOptions options;
  options.compression = Compression::kZstd;
  options.parallel = false;
  WriteBundle(result, Dir("z"), options);
  ExpectSameTables(result, ReadBundle(Dir("z")));
  // zstd gains a little even on float bits, so every column keeps it.
  auto reader = parquet::ParquetFileReader::OpenFile((Dir("z") / "daily_signals.parquet").string());
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(reader->metadata()->RowGroup(0)->ColumnChunk(c)->compression(),
              arrow::Compression::ZSTD);
  }
}

TEST_F(BundleTest, EmptyTablesRoundTrip) {
  BacktestResult result = MakeResult(0, 0, 1);
  WriteBundle(result, Dir("empty"));
  BacktestResult back = ReadBundle(Dir("empty"));
  EXPECT_EQ(back.daily_signals->num_rows(), 0);
  ExpectSameTables(result, back);
}

TEST_F(BundleTest, NullRequiredTablesAreWrittenEmpty) {
  BacktestResult result = MakeResult(3, 3, 1);
  result.daily_weights = nullptr;
  WriteBundle(result, Dir("b"));
  BacktestResult back = ReadBundle(Dir("b"));
  EXPECT_EQ(back.daily_weights->num_rows(), 0);
  EXPECT_TRUE(back.daily_weights->schema()->Equals(*RequiredSchema(kWeightsTable)));
}

TEST_F(BundleTest, ExtraColumnsAreKept) {
  BacktestResult result = MakeResult(5, 4, 2);
  arrow::StringBuilder notes;
  for (int64_t i = 0; i < result.daily_signals->num_rows(); ++i) {
    ASSERT_TRUE(notes.Append(std::to_string(i)).ok());
  }
  result.daily_signals =
      result.daily_signals
          ->AddColumn(3, arrow::field("note", arrow::utf8()),
                      std::make_shared<arrow::ChunkedArray>(notes.Finish().ValueOrDie()))
          .ValueOrDie();
  WriteBundle(result, Dir("b"));
  BacktestResult back = ReadBundle(Dir("b"));
  EXPECT_EQ(back.daily_signals->schema()->field(3)->name(), "note");
  ExpectSameTables(result, back);
}

TEST_F(BundleTest, ExtraTablesRoundTrip) {
  BacktestResult result = MakeResult(6, 3, 5);
  arrow::Date32Builder dates;
  arrow::DoubleBuilder returns;
  for (int d = 0; d < 6; ++d) {
    ASSERT_TRUE(dates.Append(Date::FromYmd(2020, 1, 1).days + d).ok());
    ASSERT_TRUE(d == 2 ? returns.AppendNull().ok() : returns.Append(0.01 * d).ok());
  }
  // A table of the bundle that is none of the platform's: kept as it is.
  result.extra_tables["turnover_by_day"] = arrow::Table::Make(
      arrow::schema({arrow::field("date", arrow::date32()), arrow::field("ret", arrow::float64())}),
      {dates.Finish().ValueOrDie(), returns.Finish().ValueOrDie()});
  auto manifest = WriteBundle(result, Dir("b"));
  EXPECT_TRUE(manifest.contains("turnover_by_day.parquet"));
  ExpectSameTables(result, ReadBundle(Dir("b")));
}

// The Parquet column of `table_file`'s column `index`: its definition level (0: REQUIRED) and
// encodings and compression in the first row group.
struct StoredColumn {
  int16_t max_definition_level;
  std::vector<parquet::Encoding::type> encodings;
  arrow::Compression::type compression;
};

StoredColumn Stored(const fs::path& table_file, int index) {
  auto reader = parquet::ParquetFileReader::OpenFile(table_file.string());
  auto metadata = reader->metadata();
  auto chunk = metadata->RowGroup(0)->ColumnChunk(index);
  return {metadata->schema()->Column(index)->max_definition_level(), chunk->encodings(),
          chunk->compression()};
}

TEST_F(BundleTest, ColumnsWithoutNullsAreStoredRequiredAndFloatsUncompressed) {
  BacktestResult result = MakeResult(12, 10, 3);
  // The signals as declared by a caller: nullable key columns without nulls, a signal column
  // with nulls, schema metadata of its own.
  auto declared = result.daily_signals->schema()->WithMetadata(
      arrow::key_value_metadata({"origin"}, {"a test"}));
  result.daily_signals = arrow::Table::Make(declared, result.daily_signals->columns());
  ASSERT_GT(result.daily_signals->column(2)->null_count(), 0);
  // An extra table declared without nullable columns stays that way.
  arrow::Date32Builder dates;
  ASSERT_TRUE(dates.Append(Date::FromYmd(2020, 1, 2).days).ok());
  result.extra_tables["strict"] =
      arrow::Table::Make(arrow::schema({arrow::field("date", arrow::date32(), /*nullable=*/false)}),
                         {dates.Finish().ValueOrDie()});
  WriteBundle(result, Dir("b"));

  const fs::path signals = Dir("b") / "daily_signals.parquet";
  EXPECT_EQ(Stored(signals, 0).max_definition_level, 0);  // date: no definition levels
  EXPECT_EQ(Stored(signals, 1).max_definition_level, 0);  // permno
  EXPECT_EQ(Stored(signals, 2).max_definition_level, 1);  // signal has nulls: OPTIONAL
  std::vector<parquet::Encoding::type> permno = Stored(signals, 1).encodings;
  EXPECT_NE(std::find(permno.begin(), permno.end(), parquet::Encoding::DELTA_BINARY_PACKED),
            permno.end());
  // Float columns: no snappy (it gains nothing on their bits); no min/max for them and permno
  // (every row group spans about their whole range); the dates keep theirs for partial reads.
  auto signals_metadata = parquet::ParquetFileReader::OpenFile(signals.string())->metadata();
  auto row_group = signals_metadata->RowGroup(0);
  EXPECT_TRUE(row_group->ColumnChunk(0)->is_stats_set());   // date
  EXPECT_FALSE(row_group->ColumnChunk(1)->is_stats_set());  // permno: every row group spans all
  EXPECT_FALSE(row_group->ColumnChunk(2)->is_stats_set());  // signal
  EXPECT_EQ(Stored(signals, 0).compression, arrow::Compression::SNAPPY);
  EXPECT_EQ(Stored(signals, 2).compression, arrow::Compression::UNCOMPRESSED);

  BacktestResult back = ReadBundle(Dir("b"));
  EXPECT_TRUE(back.daily_signals->schema()->Equals(*declared, /*check_metadata=*/true))
      << back.daily_signals->schema()->ToString(/*show_metadata=*/true);
  EXPECT_TRUE(back.extra_tables.at("strict")->schema()->Equals(
      *result.extra_tables.at("strict")->schema(), /*check_metadata=*/true));
  ExpectSameTables(result, back);

  ReadOptions some;
  some.tables = {std::string(kSignalsTable)};
  some.columns = {"permno"};
  some.from = Date::FromYmd(2020, 1, 6);
  BacktestResult part = ReadBundle(Dir("b"), some);
  for (const auto& field : part.daily_signals->schema()->fields()) {
    EXPECT_TRUE(field->nullable()) << field->name();
  }
}

TEST_F(BundleTest, MalformedNullableColumnsMetadataIsInvalidResultNamingTheFile) {
  fs::path dir = WrittenWithoutManifest("b");
  for (const std::string& value : {std::string("not json"), std::string("[7]")}) {
    auto table = MakeResult(3, 2, 1).daily_weights;
    table = table->ReplaceSchemaMetadata(
        arrow::key_value_metadata({"btstore.nullable_columns"}, {value}));
    auto sink = arrow::io::FileOutputStream::Open((dir / "daily_weights.parquet").string());
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE(parquet::arrow::WriteTable(
                    *table, arrow::default_memory_pool(), *sink, 1024,
                    parquet::default_writer_properties(),
                    parquet::ArrowWriterProperties::Builder().store_schema()->build())
                    .ok());
    ASSERT_TRUE((*sink)->Close().ok());
    Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
    EXPECT_EQ(e.details().at("file"), "daily_weights.parquet") << value;
  }
}

TEST_F(BundleTest, PartialReadSkipsRowGroupsAndEqualsFilteredFullRead) {
  // Files much larger than the reader's speculative footer read (64 KiB).
  BacktestResult result = MakeResult(200, 300, 9);
  WriteOptions options;
  options.row_group_rows = 3000;  // ten days per row group
  WriteBundle(result, Dir("b"), options);

  ReadStats full_stats;
  BacktestResult full = ReadBundle(Dir("b"), {}, &full_stats);
  ReadOptions partial;
  partial.from = Date::FromYmd(2020, 2, 3);
  partial.to = Date::FromYmd(2020, 2, 14);
  partial.columns = {"signal", "ic"};
  ReadStats stats;
  BacktestResult part = ReadBundle(Dir("b"), partial, &stats);

  EXPECT_GT(stats.row_groups_skipped, 0);
  EXPECT_GT(stats.row_groups_read, 0);
  EXPECT_LT(stats.bytes_read, full_stats.bytes_read);
  EXPECT_EQ(full_stats.row_groups_skipped, 0);

  // The expected rows: the full read filtered by date, with the chosen columns.
  auto filter = [&](const std::shared_ptr<arrow::Table>& table, std::vector<std::string> keep) {
    std::vector<int> indices;
    for (const auto& name : keep) indices.push_back(table->schema()->GetFieldIndex(name));
    auto projected = table->SelectColumns(indices).ValueOrDie();
    auto dates = std::static_pointer_cast<arrow::Date32Array>(
        arrow::Concatenate(projected->column(0)->chunks()).ValueOrDie());
    int64_t first = -1, count = 0;
    for (int64_t i = 0; i < dates->length(); ++i) {
      if (dates->Value(i) >= partial.from->days && dates->Value(i) <= partial.to->days) {
        if (first < 0) first = i;
        ++count;
      }
    }
    return projected->Slice(first, count);
  };
  auto want_signals = filter(full.daily_signals, {"date", "signal"});
  EXPECT_EQ(want_signals->num_rows(), 12 * 300);
  EXPECT_EQ(DescribeDifference(*want_signals, *part.daily_signals), "");
  EXPECT_EQ(DescribeDifference(*filter(full.daily_ic, {"date", "ic"}), *part.daily_ic), "");
  EXPECT_EQ(DescribeDifference(*filter(full.daily_weights, {"date"}), *part.daily_weights), "");
}

// A table whose dates are not sorted (the platform's optional tables need only valid dates) is
// filtered row by row: every run of dates in the range, across chunks and row groups, in order.
TEST_F(BundleTest, ADateRangeKeepsEveryRunOfAnUnsortedTable) {
  std::vector<int32_t> dates;
  std::vector<double> returns;
  for (int i = 0; i < 700; ++i) {
    // Runs of 18,262 (2020-01-01) of every length from 1 up, between runs of other dates.
    dates.push_back(i % 97 < i % 13 ? 18262 : 18262 + 1 + i % 5);
    returns.push_back(i);
  }
  dates[699] = 18262;  // a run that ends the table
  arrow::Date32Builder date_builder;
  arrow::DoubleBuilder return_builder;
  ASSERT_TRUE(date_builder.AppendValues(dates).ok());
  ASSERT_TRUE(return_builder.AppendValues(returns).ok());
  auto date_array = date_builder.Finish().ValueOrDie();
  auto return_array = return_builder.Finish().ValueOrDie();
  auto table =
      arrow::Table::Make(arrow::schema({arrow::field("date", arrow::date32()),
                                        arrow::field("return", arrow::float64())}),
                         {std::make_shared<arrow::ChunkedArray>(arrow::ArrayVector{
                              date_array->Slice(0, 300), date_array->Slice(300)}),
                          std::make_shared<arrow::ChunkedArray>(arrow::ArrayVector{return_array})});
  BacktestResult result = MakeResult(2, 2, 1);
  result.extra_tables["daily_portfolio_returns"] = table;
  WriteOptions options;
  options.row_group_rows = 128;
  WriteBundle(result, Dir("b"), options);

  ReadOptions one_day;
  one_day.from = one_day.to = Date{18262};
  one_day.tables = {"daily_portfolio_returns"};
  auto got = ReadBundle(Dir("b"), one_day).extra_tables.at("daily_portfolio_returns");
  std::vector<double> want;
  for (size_t i = 0; i < dates.size(); ++i) {
    if (dates[i] == 18262) want.push_back(returns[i]);
  }
  ASSERT_EQ(got->num_rows(), static_cast<int64_t>(want.size()));
  auto values = std::static_pointer_cast<arrow::DoubleArray>(
      arrow::Concatenate(got->column(1)->chunks()).ValueOrDie());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(values->Value(i), want[i]) << i;
}

TEST_F(BundleTest, PartialReadOfSomeTables) {
  fs::path dir = Written("b");
  ReadOptions options;
  options.tables = {"daily_ic"};
  BacktestResult back = ReadBundle(dir, options);
  EXPECT_EQ(back.daily_signals, nullptr);
  ASSERT_NE(back.daily_ic, nullptr);
  EXPECT_EQ(back.daily_ic->num_rows(), 20);
}

TEST_F(BundleTest, UnknownColumnInSubsetIsInvalidArgument) {
  fs::path dir = Written("b");
  ReadOptions options;
  options.columns = {"no_such_column"};
  ExpectError(ErrorCode::kInvalidArgument, [&] { ReadBundle(dir, options); });
}

TEST_F(BundleTest, MissingDirectoryIsResultPathMissing) {
  Error e = ExpectError(ErrorCode::kResultPathMissing, [&] { ReadBundle(Dir("nope")); });
  EXPECT_EQ(e.details().at("path"), Dir("nope").string());
}

TEST_F(BundleTest, MissingSummaryIsMissingReproducibilityMetadata) {
  fs::path dir = Written("b");
  fs::remove(dir / "summary.json");
  Error e = ExpectError(ErrorCode::kMissingReproducibilityMetadata, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "summary.json");
  // It is also a kind of InvalidResult for callers that catch that.
  EXPECT_THROW(ReadBundle(dir), InvalidResult);
}

TEST_F(BundleTest, SummaryWithoutSnapshotIdIsMissingReproducibilityMetadata) {
  fs::path dir = Written("b");
  nlohmann::json doc = ReadSummaryJson(dir);
  doc.erase("snapshot_id");
  WriteSummaryJson(dir, doc);
  Error e = ExpectError(ErrorCode::kMissingReproducibilityMetadata, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("field"), "snapshot_id");
}

TEST_F(BundleTest, SummaryWithoutDatasetVersionIdsIsMissingReproducibilityMetadata) {
  fs::path dir = Written("b");
  nlohmann::json doc = ReadSummaryJson(dir);
  doc.erase("dataset_version_ids");
  WriteSummaryJson(dir, doc);
  Error e = ExpectError(ErrorCode::kMissingReproducibilityMetadata, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("field"), "dataset_version_ids");
}

TEST_F(BundleTest, SummaryFieldsOfWrongTypeAreMissingReproducibilityMetadata) {
  fs::path dir = Written("b");
  nlohmann::json doc = ReadSummaryJson(dir);
  doc["snapshot_id"] = 17;
  WriteSummaryJson(dir, doc);
  ExpectError(ErrorCode::kMissingReproducibilityMetadata, [&] { ReadBundle(dir); });
  doc["snapshot_id"] = "s";
  doc["dataset_version_ids"] = nlohmann::json::array({"v1"});
  WriteSummaryJson(dir, doc);
  ExpectError(ErrorCode::kMissingReproducibilityMetadata, [&] { ReadBundle(dir); });
  WriteText(dir / "summary.json", "[1, 2]");
  ExpectError(ErrorCode::kMissingReproducibilityMetadata, [&] { ReadBundle(dir); });
  WriteText(dir / "summary.json", "{\"snapshot_id\": ");
  ExpectError(ErrorCode::kMissingReproducibilityMetadata, [&] { ReadBundle(dir); });
}

TEST_F(BundleTest, NonUtf8SummaryIsMissingReproducibilityMetadata) {
  fs::path dir = Written("b");
  WriteText(dir / "summary.json", "{\"snapshot_id\": \"s\xff\xfe\", \"dataset_version_ids\": {}}");
  ExpectError(ErrorCode::kMissingReproducibilityMetadata, [&] { ReadBundle(dir); });
}

TEST_F(BundleTest, HugeSummaryIsInvalidResult) {
  fs::path dir = Written("b");
  std::string text = R"({"snapshot_id": "s", "dataset_version_ids": {}, "pad": ")";
  text += std::string(17u << 20, 'x');
  text += "\"}";
  WriteText(dir / "summary.json", text);
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "summary.json");
}

TEST_F(BundleTest, RewritingASummaryThatWasReadKeepsItReadable) {
  // 400 KB nested 60 deep: accepted by a reader, but 25 MB once indented.
  fs::path dir = Written("b");
  nlohmann::json doc = ReadSummaryJson(dir);
  doc.erase("artifacts");
  std::string text = doc.dump();
  text.pop_back();
  text += ", \"wide\": " + std::string(60, '[') + "0";
  for (int i = 0; i < 200000; ++i) text += ",0";
  text += std::string(60, ']') + "}";
  WriteText(dir / "summary.json", text);
  BacktestResult read = ReadBundle(dir);

  WriteBundle(read, Dir("rewritten"));
  BacktestResult again = ReadBundle(Dir("rewritten"));
  EXPECT_EQ(nlohmann::json::parse(again.extra_summary_json),
            nlohmann::json::parse(read.extra_summary_json));
}

TEST_F(BundleTest, PythonNanAndInfinityTokensAreAccepted) {
  fs::path dir = WrittenWithoutManifest("b");
  WriteText(dir / "summary.json", R"({
    "snapshot_id": "NaN Infinity", "dataset_version_ids": {"prices": "v1"},
    "mean_ic": NaN, "icir": Infinity, "hit_rate": -Infinity, "coverage": 0.5,
    "long_short_spread": null, "note": "say \"NaN\" -Infinity", "values": [NaN, 1]})");
  BacktestResult back = ReadBundle(dir);
  EXPECT_EQ(back.snapshot_id, "NaN Infinity");
  EXPECT_TRUE(std::isnan(back.metrics.mean_ic));
  EXPECT_TRUE(std::isnan(back.metrics.icir));
  EXPECT_TRUE(std::isnan(back.metrics.hit_rate));
  EXPECT_EQ(back.metrics.coverage, 0.5);
  EXPECT_TRUE(std::isnan(back.metrics.long_short_spread));
  auto extra = nlohmann::json::parse(back.extra_summary_json);
  EXPECT_EQ(extra["note"], "say \"NaN\" -Infinity");
  EXPECT_TRUE(extra["values"][0].is_null());
}

TEST_F(BundleTest, AbsentMeanIcAndIcirAreRecomputedFromDailyIc) {
  BacktestResult result = MakeResult(30, 3, 4);
  arrow::Date32Builder dates;
  arrow::DoubleBuilder ic, rank_ic;
  std::vector<double> values = {0.1, 0.3, -0.2, 0.4};
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_TRUE(dates.Append(Date::FromYmd(2020, 1, 1).days + static_cast<int>(i)).ok());
    ASSERT_TRUE(ic.Append(values[i]).ok());
    ASSERT_TRUE(rank_ic.Append(0).ok());
  }
  result.daily_ic = arrow::Table::Make(
      RequiredSchema(kIcTable),
      {dates.Finish().ValueOrDie(), ic.Finish().ValueOrDie(), rank_ic.Finish().ValueOrDie()});
  fs::path dir = Dir("b");
  WriteBundle(result, dir);
  nlohmann::json doc = ReadSummaryJson(dir);
  doc.erase("mean_ic");
  doc.erase("icir");
  WriteSummaryJson(dir, doc);

  double mean = (0.1 + 0.3 - 0.2 + 0.4) / 4;
  double ss = 0;
  for (double v : values) ss += (v - mean) * (v - mean);
  double icir = mean / std::sqrt(ss / 3);
  BacktestResult back = ReadBundle(dir);
  EXPECT_DOUBLE_EQ(back.metrics.mean_ic, mean);
  EXPECT_DOUBLE_EQ(back.metrics.icir, icir);
  EXPECT_EQ(Bits(back.metrics.hit_rate), Bits(result.metrics.hit_rate));
  ReadOptions partial;  // a partial read still recomputes from the whole column
  partial.from = Date::FromYmd(2020, 1, 3);
  partial.tables = {"daily_signals"};
  EXPECT_DOUBLE_EQ(ReadBundle(dir, partial).metrics.icir, icir);

  // A null mean_ic is "not available", not absent: it is not recomputed.
  doc["mean_ic"] = nullptr;
  WriteSummaryJson(dir, doc);
  back = ReadBundle(dir);
  EXPECT_TRUE(std::isnan(back.metrics.mean_ic));
  EXPECT_DOUBLE_EQ(back.metrics.icir, icir);
}

TEST_F(BundleTest, ConstantIcGivesZeroIcir) {
  BacktestResult result = MakeResult(0, 0, 4);
  arrow::Date32Builder dates;
  arrow::DoubleBuilder ic, rank_ic;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(dates.Append(Date::FromYmd(2020, 1, 1).days + i).ok());
    ASSERT_TRUE(ic.Append(0.25).ok());
    ASSERT_TRUE(rank_ic.Append(0).ok());
  }
  result.daily_ic = arrow::Table::Make(
      RequiredSchema(kIcTable),
      {dates.Finish().ValueOrDie(), ic.Finish().ValueOrDie(), rank_ic.Finish().ValueOrDie()});
  fs::path dir = Dir("b");
  WriteBundle(result, dir);
  nlohmann::json doc = ReadSummaryJson(dir);
  doc.erase("icir");
  WriteSummaryJson(dir, doc);
  EXPECT_EQ(ReadBundle(dir).metrics.icir, 0.0);
}

TEST_F(BundleTest, GarbageParquetIsInvalidResultNamingTheFile) {
  fs::path dir = WrittenWithoutManifest("b");
  WriteText(dir / "daily_weights.parquet", std::string(4096, 'g'));
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "daily_weights.parquet");
}

TEST_F(BundleTest, TruncatedParquetIsInvalidResult) {
  fs::path dir = Written("b");
  fs::path file = dir / "daily_signals.parquet";
  fs::resize_file(file, fs::file_size(file) / 2);
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "daily_signals.parquet");
  EXPECT_TRUE(e.details().contains("expected_bytes"));

  // Without a manifest the Parquet reader itself notices.
  fs::path bare = WrittenWithoutManifest("bare");
  fs::resize_file(bare / "daily_signals.parquet",
                  fs::file_size(bare / "daily_signals.parquet") / 2);
  e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(bare); });
  EXPECT_EQ(e.details().at("file"), "daily_signals.parquet");
}

// A value as thrift's compact protocol writes an i64: zigzag, then a little-endian varint.
std::string CompactI64(int64_t value) {
  uint64_t n = (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
  std::string out;
  do {
    auto byte = static_cast<uint8_t>(n & 0x7f);
    n >>= 7;
    out.push_back(static_cast<char>(n != 0 ? byte | 0x80 : byte));
  } while (n != 0);
  return out;
}

TEST_F(BundleTest, FooterOffsetsThatOverflowAreInvalidResult) {
  // The footer of daily_ic.parquet says its first column chunk starts at 2^62 and is 2^62 bytes
  // long. The reader's sum of the two overflowed: undefined behaviour, which the sanitizer build
  // (scripts/sanitize.sh) reports; tests/fuzz/corpus/bundle/regression-footer-offset-overflow
  // holds the same case for the bundle fuzz target.
  fs::path dir = WrittenWithoutManifest("b");
  fs::path file = dir / "daily_ic.parquet";
  std::string bytes = ReadText(file);
  auto metadata = parquet::ReadMetaData(
      std::make_shared<arrow::io::BufferReader>(std::make_shared<arrow::Buffer>(bytes)));
  auto chunk = metadata->RowGroup(0)->ColumnChunk(0);
  uint32_t footer_length = 0;
  std::memcpy(&footer_length, bytes.data() + bytes.size() - 8, sizeof footer_length);
  size_t footer_start = bytes.size() - 8 - footer_length;
  std::string footer = bytes.substr(footer_start, footer_length);
  // ColumnMetaData fields 7 (total_compressed_size) and 9 (data_page_offset), both i64.
  std::string sizes = "\x16" + CompactI64(chunk->total_compressed_size()) + "\x26" +
                      CompactI64(chunk->data_page_offset());
  size_t at = footer.find(sizes);
  ASSERT_NE(at, std::string::npos);
  const int64_t huge = int64_t{1} << 62;
  footer.replace(at, sizes.size(), "\x16" + CompactI64(huge) + "\x26" + CompactI64(huge));
  footer_length = static_cast<uint32_t>(footer.size());
  std::string length(sizeof footer_length, '\0');
  std::memcpy(length.data(), &footer_length, sizeof footer_length);
  WriteText(file, bytes.substr(0, footer_start) + footer + length + "PAR1");

  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "daily_ic.parquet");
}

TEST_F(BundleTest, ChecksumMismatchIsInvalidResult) {
  fs::path dir = Written("b");
  fs::path file = dir / "daily_ic.parquet";
  std::string bytes = ReadText(file);
  bytes[bytes.size() / 2] ^= 0x01;  // same size, one bit flipped
  WriteText(file, bytes);
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "daily_ic.parquet");
  EXPECT_NE(e.details().at("expected"), e.details().at("found"));
  // A reader that opts out of checksums does not compare them.
  ReadOptions options;
  options.verify_checksums = false;
  options.tables = {"daily_signals"};
  EXPECT_NO_THROW(ReadBundle(dir, options));
}

// Write a Parquet file with any schema, as another tool might.
void WriteRawParquet(const fs::path& path, const std::shared_ptr<arrow::Table>& table) {
  auto sink = arrow::io::FileOutputStream::Open(path.string()).ValueOrDie();
  ASSERT_TRUE(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), sink, 1024).ok());
  ASSERT_TRUE(sink->Close().ok());
}

TEST_F(BundleTest, WrongColumnTypeIsInvalidResultNamingColumnAndTypes) {
  fs::path dir = WrittenWithoutManifest("b");
  arrow::Date32Builder dates;
  arrow::Int64Builder permnos;
  arrow::FloatBuilder signal;
  ASSERT_TRUE(dates.Append(18262).ok());
  ASSERT_TRUE(permnos.Append(1).ok());
  ASSERT_TRUE(signal.Append(1.5f).ok());
  WriteRawParquet(dir / "daily_signals.parquet",
                  arrow::Table::Make(arrow::schema({arrow::field("date", arrow::date32()),
                                                    arrow::field("permno", arrow::int64()),
                                                    arrow::field("signal", arrow::float32())}),
                                     {dates.Finish().ValueOrDie(), permnos.Finish().ValueOrDie(),
                                      signal.Finish().ValueOrDie()}));
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "daily_signals.parquet");
  EXPECT_EQ(e.details().at("column"), "signal");
  EXPECT_EQ(e.details().at("expected"), "double");
  EXPECT_EQ(e.details().at("found"), "float");
}

TEST_F(BundleTest, MissingColumnIsInvalidResult) {
  fs::path dir = WrittenWithoutManifest("b");
  arrow::Date32Builder dates;
  arrow::DoubleBuilder ic;
  ASSERT_TRUE(dates.Append(18262).ok());
  ASSERT_TRUE(ic.Append(0.1).ok());
  WriteRawParquet(dir / "daily_ic.parquet",
                  arrow::Table::Make(arrow::schema({arrow::field("date", arrow::date32()),
                                                    arrow::field("ic", arrow::float64())}),
                                     {dates.Finish().ValueOrDie(), ic.Finish().ValueOrDie()}));
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "daily_ic.parquet");
  EXPECT_EQ(e.details().at("column"), "rank_ic");
  EXPECT_EQ(e.details().at("found"), "missing");
}

TEST_F(BundleTest, MissingParquetFileIsInvalidResult) {
  fs::path dir = Written("b");
  fs::remove(dir / "daily_weights.parquet");
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "daily_weights.parquet");
}

// Bad input is rejected before anything is written: no bundle, no staging debris.
class BadInputTest : public BundleTest {
 protected:
  Error ExpectRejected(const BacktestResult& result, const std::string& field_or_file,
                       const WriteOptions& options = {}) {
    fs::path dir = Dir("bad");
    Error e = ExpectError(ErrorCode::kInvalidArgument, [&] { WriteBundle(result, dir, options); });
    std::string details;
    for (const auto& [k, v] : e.details()) details += k + "=" + v + " ";
    EXPECT_NE(details.find(field_or_file), std::string::npos) << details;
    EXPECT_FALSE(fs::exists(dir));
    fs::path staging = tmp_.path() / ".staging";
    EXPECT_TRUE(!fs::exists(staging) || fs::is_empty(staging));
    EXPECT_TRUE(fs::is_empty(tmp_.path())) << "debris of the staging next to the bundle";
    return e;
  }
};

// A table of (date, permno) keys, the dates in one chunk and the permnos in chunks cut at
// `permno_cuts` (so that the two columns' chunks do not line up), with signal 0.
std::shared_ptr<arrow::Table> KeyTable(const std::vector<int32_t>& dates,
                                       const std::vector<int64_t>& permnos,
                                       const std::vector<size_t>& permno_cuts) {
  arrow::Date32Builder date_builder;
  EXPECT_TRUE(date_builder.AppendValues(dates).ok());
  arrow::ArrayVector permno_chunks;
  size_t from = 0;
  std::vector<size_t> cuts = permno_cuts;
  cuts.push_back(permnos.size());
  for (size_t to : cuts) {
    arrow::Int64Builder builder;
    EXPECT_TRUE(builder.AppendValues(permnos.data() + from, static_cast<int64_t>(to - from)).ok());
    permno_chunks.push_back(builder.Finish().ValueOrDie());
    from = to;
  }
  arrow::DoubleBuilder signal;
  EXPECT_TRUE(signal.AppendValues(std::vector<double>(dates.size(), 0.0)).ok());
  return arrow::Table::Make(
      RequiredSchema(kSignalsTable),
      {std::make_shared<arrow::ChunkedArray>(
           arrow::ArrayVector{date_builder.Finish().ValueOrDie()}),
       std::make_shared<arrow::ChunkedArray>(permno_chunks),
       std::make_shared<arrow::ChunkedArray>(arrow::ArrayVector{signal.Finish().ValueOrDie()})});
}

TEST_F(BadInputTest, JobIdsThatAreNotSafeDirectoryNames) {
  for (const std::string& id : std::vector<std::string>{"a/b", "..", std::string("a\0b", 3),
                                                        ".hidden", std::string(65, 'x')}) {
    BacktestResult result = MakeResult(2, 2, 1);
    result.job_id = id;
    ExpectRejected(result, "job_id");
  }
}

TEST_F(BadInputTest, UnsortedRowsAreRejected) {
  BacktestResult result = MakeResult(3, 3, 1);
  std::vector<std::shared_ptr<arrow::Table>> parts = {result.daily_weights->Slice(3),
                                                      result.daily_weights->Slice(0, 3)};
  result.daily_weights = arrow::ConcatenateTables(parts).ValueOrDie();
  ExpectRejected(result, "daily_weights.parquet");
}

TEST_F(BadInputTest, DuplicateKeysAreRejected) {
  BacktestResult result = MakeResult(3, 3, 1);
  std::vector<std::shared_ptr<arrow::Table>> parts = {result.daily_signals->Slice(0, 4),
                                                      result.daily_signals->Slice(3)};
  result.daily_signals = arrow::ConcatenateTables(parts).ValueOrDie();
  ExpectRejected(result, "permno=");
}

TEST_F(BadInputTest, DatesOutOfRangeAreRejected) {
  BacktestResult result = MakeResult(2, 2, 1);
  arrow::Date32Builder dates;
  arrow::DoubleBuilder ic, rank_ic;
  ASSERT_TRUE(dates.Append(Date::FromYmd(9999, 12, 31).days + 1).ok());
  ASSERT_TRUE(ic.Append(0).ok());
  ASSERT_TRUE(rank_ic.Append(0).ok());
  result.daily_ic = arrow::Table::Make(
      RequiredSchema(kIcTable),
      {dates.Finish().ValueOrDie(), ic.Finish().ValueOrDie(), rank_ic.Finish().ValueOrDie()});
  ExpectRejected(result, "daily_ic.parquet");
}

// Keys are checked a row group at a time as the table is written: a fault in a later row group,
// on either side of a row group's edge, still leaves nothing behind and names its row.
TEST_F(BadInputTest, KeyFaultsInALaterRowGroupAreRejectedNamingTheRow) {
  WriteOptions options;
  options.row_group_rows = 4;
  const std::vector<int32_t> dates = {10, 10, 10, 11, 11, 11, 12, 12, 12, 13, 13, 13};
  const std::vector<int64_t> permnos = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3};
  BacktestResult result = MakeResult(2, 2, 1);
  result.daily_signals = KeyTable(dates, permnos, {});
  EXPECT_NO_THROW(WriteBundle(result, Dir("good"), options));
  fs::remove_all(Dir("good"));
  struct Fault {
    size_t row;
    int32_t date;
    int64_t permno;
  };
  // Rows 4 and 8 open a row group; 3 and 7 close one.
  for (const Fault& fault :
       {Fault{4, 10, 3}, Fault{3, 10, 3}, Fault{8, 11, 3}, Fault{7, 10, 9}, Fault{11, 13, 2}}) {
    std::vector<int32_t> bad_dates = dates;
    std::vector<int64_t> bad_permnos = permnos;
    bad_dates[fault.row] = fault.date;
    bad_permnos[fault.row] = fault.permno;
    result.daily_signals = KeyTable(bad_dates, bad_permnos, {});
    Error e = ExpectRejected(result, "daily_signals.parquet", options);
    EXPECT_EQ(e.details().at("row"), std::to_string(fault.row)) << e.what();
  }
}

TEST_F(BadInputTest, KeysAreCheckedAcrossChunksThatDoNotLineUpAndAtTheEndsOfInt64) {
  constexpr int64_t kLow = std::numeric_limits<int64_t>::min();
  constexpr int64_t kHigh = std::numeric_limits<int64_t>::max();
  const std::vector<int32_t> dates = {10, 10, 10, 10, 11, 11, 11, 12};
  const std::vector<int64_t> permnos = {kLow, -1, 0, kHigh, kLow, 5, kHigh, kHigh};
  BacktestResult result = MakeResult(2, 2, 1);
  for (const std::vector<size_t>& cuts : std::vector<std::vector<size_t>>{{}, {1}, {3, 5}, {4}}) {
    result.daily_signals = KeyTable(dates, permnos, cuts);
    WriteOptions options;
    options.row_group_rows = 3;
    ASSERT_NO_THROW(WriteBundle(result, Dir("good"), options));
    EXPECT_EQ(
        testing::DescribeDifference(*result.daily_signals, *ReadBundle(Dir("good")).daily_signals),
        "");
    fs::remove_all(Dir("good"));
    // The largest permno then the smallest on one date: a difference that overflows int64.
    std::vector<int64_t> wrapped = permnos;
    std::swap(wrapped[4], wrapped[6]);
    result.daily_signals = KeyTable(dates, wrapped, cuts);
    Error e = ExpectRejected(result, "daily_signals.parquet", options);
    EXPECT_EQ(e.details().at("row"), "5") << e.what();
    // A repeated key where the permnos' chunks break.
    std::vector<int64_t> repeated = permnos;
    repeated[1] = kLow;
    result.daily_signals = KeyTable(dates, repeated, cuts);
    e = ExpectRejected(result, "daily_signals.parquet", options);
    EXPECT_EQ(e.details().at("row"), "1") << e.what();
  }
}

// Tables are written in parallel, largest first; whichever thread meets a fault first, the fault
// reported is the first in the result's order (signals, weights, IC, then the extra tables).
TEST_F(BadInputTest, TheFirstFaultyTableInTheResultsOrderIsReported) {
  WriteOptions options;
  options.row_group_rows = 16;
  BacktestResult result = MakeResult(40, 20, 1);
  // weights: unsorted in its first row group; signals: a duplicate in its last one.
  std::vector<std::shared_ptr<arrow::Table>> weights = {result.daily_weights->Slice(1, 1),
                                                        result.daily_weights->Slice(0, 1),
                                                        result.daily_weights->Slice(2)};
  result.daily_weights = arrow::ConcatenateTables(weights).ValueOrDie();
  const int64_t rows = result.daily_signals->num_rows();
  std::vector<std::shared_ptr<arrow::Table>> signals = {result.daily_signals->Slice(0, rows - 1),
                                                        result.daily_signals->Slice(rows - 2)};
  result.daily_signals = arrow::ConcatenateTables(signals).ValueOrDie();
  for (int attempt = 0; attempt < 20; ++attempt) {
    Error e = ExpectRejected(result, "daily_signals.parquet", options);
    EXPECT_EQ(e.details().at("row"), std::to_string(rows - 1)) << e.what();
  }
}

TEST_F(BadInputTest, WrongSchemaIsRejected) {
  BacktestResult result = MakeResult(2, 2, 1);
  result.daily_ic = result.daily_ic->RenameColumns({"date", "rank_ic", "ic"}).ValueOrDie();
  ExpectRejected(result, "column=ic");
}

TEST_F(BadInputTest, UnsafeExtraTableNamesAreRejected) {
  BacktestResult result = MakeResult(2, 2, 1);
  result.extra_tables["../evil"] = result.daily_ic;
  ExpectRejected(result, "extra_tables");
}

TEST_F(BadInputTest, ExtraSummaryTooLargeForAnyReaderIsRejected) {
  BacktestResult result = MakeResult(2, 2, 1);
  result.extra_summary_json = R"({"pad": ")" + std::string(17u << 20, 'x') + "\"}";
  ExpectRejected(result, "extra_summary_json");
}

TEST_F(BundleTest, PublishingOntoAnExistingDirectoryIsInvalidTransition) {
  fs::path dir = Written("b");
  std::string before = ReadText(dir / "summary.json");
  ExpectError(ErrorCode::kInvalidTransition, [&] { WriteBundle(MakeResult(2, 2, 8), dir); });
  EXPECT_EQ(ReadText(dir / "summary.json"), before);

  // Even an empty directory is never replaced, and the staged bundle stays where it was.
  fs::create_directories(Dir("empty"));
  fs::path staged = internal::StageBundle(MakeResult(2, 2, 8), tmp_.path() / ".staging");
  ExpectError(ErrorCode::kInvalidTransition,
              [&] { internal::PublishBundle(staged, Dir("empty")); });
  EXPECT_TRUE(fs::is_empty(Dir("empty")));
  EXPECT_TRUE(fs::exists(staged / "summary.json"));
  internal::PublishBundle(staged, Dir("fresh"));
  EXPECT_NO_THROW(ReadBundle(Dir("fresh")));
}

TEST_F(BundleTest, RemoveStagingDebrisCleansOldStagingAndTrash) {
  fs::path staged = internal::StageBundle(MakeResult(2, 2, 8), tmp_.path() / ".staging");
  fs::create_directories(tmp_.path() / ".trash" / "x-123456" / "b");
  fs::path keep = Written("kept");
  EXPECT_EQ(internal::RemoveStagingDebris(tmp_.path(), std::chrono::hours(1)), 0);
  EXPECT_TRUE(fs::exists(staged));
  EXPECT_EQ(internal::RemoveStagingDebris(tmp_.path(), std::chrono::seconds(0)), 2);
  EXPECT_FALSE(fs::exists(staged));
  EXPECT_TRUE(fs::is_empty(tmp_.path() / ".trash"));
  EXPECT_NO_THROW(ReadBundle(keep));
}

TEST_F(BundleTest, RemoveBundleDirRemovesAndToleratesMissing) {
  fs::path dir = Written("b");
  internal::RemoveBundleDir(dir);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_NO_THROW(internal::RemoveBundleDir(dir));
  EXPECT_TRUE(fs::is_empty(tmp_.path() / ".trash"));
}

TEST_F(BundleTest, InspectDescribesTablesAndManifest) {
  fs::path dir = Written("b");
  BundleInfo info = InspectBundle(dir);
  EXPECT_TRUE(info.has_manifest);
  ASSERT_EQ(info.tables.size(), 3u);
  EXPECT_EQ(info.tables[0].name, "daily_signals");
  EXPECT_EQ(info.tables[0].schema, "date: date32[day], permno: int64, signal: double");
  EXPECT_EQ(info.tables[0].rows, 600);
  EXPECT_EQ(info.tables[0].bytes,
            static_cast<int64_t>(fs::file_size(dir / "daily_signals.parquet")));
  EXPECT_EQ(info.summary_only.snapshot_id, "snap-42");
  EXPECT_EQ(info.summary_only.daily_signals, nullptr);
}

TEST(Compression, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(ParseCompression("zstd"), Compression::kZstd);
  EXPECT_EQ(ParseCompression("snappy"), Compression::kSnappy);
  EXPECT_THROW(ParseCompression("gzip"), InvalidArgument);
}

}  // namespace
}  // namespace btstore
