// The platform's optional tables and JSON artifacts (contract section 1): exact schemas checked
// on write and read, bit-for-bit round trips, loads by name, partial reads by date, portfolio
// returns by basis, corrupt JSON artifacts that make only themselves unavailable; and the
// shortest round-trip form of the doubles btstore writes into JSON.

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <gtest/gtest.h>
#include <parquet/arrow/writer.h>

#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

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
using testing::TempDir;
using testing::ReadText;
using testing::WriteText;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

uint64_t Bits(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof v);
  return bits;
}

// A value sequence with the special values at fixed places: NaN, null (nullopt), +/-Inf, -0.0.
std::optional<double> Value(int64_t row, double scale) {
  switch (row % 11) {
    case 2:
      return std::nullopt;
    case 3:
      return kNan;
    case 5:
      return kInf;
    case 7:
      return -kInf;
    case 9:
      return -0.0;
    default:
      return scale * static_cast<double>(row) / 3.0;
  }
}

std::shared_ptr<arrow::Array> Doubles(int64_t rows, double scale) {
  arrow::DoubleBuilder builder;
  for (int64_t i = 0; i < rows; ++i) {
    auto v = Value(i, scale);
    EXPECT_TRUE((v ? builder.Append(*v) : builder.AppendNull()).ok());
  }
  return builder.Finish().ValueOrDie();
}

const int32_t kDay0 = Date::FromYmd(2020, 1, 1).days;

std::shared_ptr<arrow::Array> Days(int days, int per_day = 1) {
  arrow::Date32Builder builder;
  for (int d = 0; d < days; ++d) {
    for (int k = 0; k < per_day; ++k) EXPECT_TRUE(builder.Append(kDay0 + d).ok());
  }
  return builder.Finish().ValueOrDie();
}

std::shared_ptr<arrow::Array> Permnos(int days, int per_day) {
  arrow::Int64Builder builder;
  for (int d = 0; d < days; ++d) {
    for (int k = 0; k < per_day; ++k) EXPECT_TRUE(builder.Append(10000 + k).ok());
  }
  return builder.Finish().ValueOrDie();
}

template <typename Builder>
std::shared_ptr<arrow::Array> Symbols(int64_t rows) {
  Builder builder;
  for (int64_t i = 0; i < rows; ++i) {
    EXPECT_TRUE(
        (i % 13 == 4 ? builder.AppendNull() : builder.Append("S" + std::to_string(i))).ok());
  }
  return builder.Finish().ValueOrDie();
}

std::shared_ptr<arrow::Field> F64(const char* name) { return arrow::field(name, arrow::float64()); }
std::shared_ptr<arrow::Field> DateField() { return arrow::field("date", arrow::date32()); }
std::shared_ptr<arrow::Field> PermnoField() { return arrow::field("permno", arrow::int64()); }

// The four optional tables of the platform, with NaN, nulls, infinities and -0.0 in every float
// column; daily_returns has a `symbol` (string), daily_prices one as polars writes it
// (large_string).
std::map<std::string, std::shared_ptr<arrow::Table>> OptionalTables(int days, int per_day) {
  const int64_t rows = int64_t{days} * per_day;
  std::map<std::string, std::shared_ptr<arrow::Table>> tables;
  tables[std::string(kPortfolioReturnsTable)] = arrow::Table::Make(
      arrow::schema({DateField(), F64("return")}), {Days(days), Doubles(days, 0.01)});
  tables[std::string(kDailyReturnsTable)] =
      arrow::Table::Make(arrow::schema({DateField(), PermnoField(), F64("return"),
                                        arrow::field("symbol", arrow::utf8())}),
                         {Days(days, per_day), Permnos(days, per_day), Doubles(rows, 0.02),
                          Symbols<arrow::StringBuilder>(rows)});
  tables[std::string(kDailyPricesTable)] =
      arrow::Table::Make(arrow::schema({DateField(), PermnoField(), F64("price"),
                                        arrow::field("symbol", arrow::large_utf8())}),
                         {Days(days, per_day), Permnos(days, per_day), Doubles(rows, 7.0),
                          Symbols<arrow::LargeStringBuilder>(rows)});
  tables[std::string(kNetPortfolioReturnsTable)] = arrow::Table::Make(
      arrow::schema({DateField(), F64("gross_return"), F64("cost_drag"), F64("net_return")}),
      {Days(days), Doubles(days, 0.03), Doubles(days + 1, 0.001)->Slice(1), Doubles(days, 0.02)});
  return tables;
}

constexpr std::string_view kWalkForward = R"({
  "version": "1.0", "created_at": "2024-05-01T12:00:00",
  "windows": [{"train_ic": 0.1, "test_ic": NaN, "overfit": Infinity},
              {"train_ic": -Infinity, "test_ic": 4.1752050594835e+78, "note": "NaN stays text"}]
})";
constexpr std::string_view kParamSearch = R"({"version": "1.0", "created_at": "2024-05-01",
  "combinations": [{"lookback": 20, "ic": 0.30000000000000004}], "best": null})";

class OptionalArtifactsTest : public ::testing::Test {
 protected:
  fs::path Dir(const std::string& name) const { return tmp_.path() / name; }

  // A result with every optional table and both JSON artifacts.
  static BacktestResult Complete(int days = 30, int per_day = 4) {
    BacktestResult result = MakeResult(days, 5, 11);
    result.extra_tables = OptionalTables(days, per_day);
    result.json_artifacts[std::string(kWalkForwardArtifact)] = std::string(kWalkForward);
    result.json_artifacts[std::string(kParamSearchArtifact)] = std::string(kParamSearch);
    return result;
  }

  // Replace a table file of a written bundle with `table` (as another tool would write it) and
  // drop the manifest, so that only the schema check can object.
  void Overwrite(const fs::path& dir, const std::string& name, const arrow::Table& table) {
    fs::remove(dir / (name + ".parquet"));
    auto sink =
        arrow::io::FileOutputStream::Open((dir / (name + ".parquet")).string()).ValueOrDie();
    ASSERT_TRUE(parquet::arrow::WriteTable(table, arrow::default_memory_pool(), sink, 1024).ok());
    ASSERT_TRUE(sink->Close().ok());
    DropManifest(dir);
  }

  static void DropManifest(const fs::path& dir) {
    nlohmann::json doc = nlohmann::json::parse(ReadText(dir / "summary.json"));
    doc.erase("artifacts");
    WriteText(dir / "summary.json", doc.dump());
  }

  TempDir tmp_{"btstore-optional"};
};

TEST_F(OptionalArtifactsTest, EachOptionalTableRoundTripsBitForBitWithItsChecksum) {
  BacktestResult result = Complete();
  auto manifest = WriteBundle(result, Dir("b"));
  BacktestResult back = ReadBundle(Dir("b"));
  ASSERT_EQ(back.extra_tables.size(), 4u);
  for (const auto& [name, table] : result.extra_tables) {
    ASSERT_TRUE(manifest.contains(name + ".parquet")) << name;
    EXPECT_EQ(manifest.at(name + ".parquet").rows, table->num_rows()) << name;
    EXPECT_EQ(manifest.at(name + ".parquet").checksum.rfind("xxh3-128:", 0), 0u) << name;
    ASSERT_TRUE(back.extra_tables.contains(name)) << name;
    EXPECT_EQ(DescribeDifference(*table, *back.extra_tables.at(name)), "") << name;
  }
  EXPECT_TRUE(back.unavailable.empty());
}

TEST_F(OptionalArtifactsTest, EachTableAndArtifactLoadsByName) {
  BacktestResult result = Complete();
  WriteBundle(result, Dir("b"));
  for (const auto& [name, table] : result.extra_tables) {
    ReadOptions options;
    options.tables = {name};
    BacktestResult one = ReadBundle(Dir("b"), options);
    EXPECT_EQ(one.daily_signals, nullptr) << name;
    EXPECT_TRUE(one.json_artifacts.empty()) << name;
    ASSERT_EQ(one.extra_tables.size(), 1u) << name;
    EXPECT_EQ(DescribeDifference(*table, *one.extra_tables.at(name)), "") << name;
  }
  for (std::string_view name : {kWalkForwardArtifact, kParamSearchArtifact}) {
    ReadOptions options;
    options.tables = {std::string(name)};
    BacktestResult one = ReadBundle(Dir("b"), options);
    EXPECT_TRUE(one.extra_tables.empty()) << name;
    ASSERT_EQ(one.json_artifacts.size(), 1u) << name;
    EXPECT_EQ(one.json_artifacts.at(std::string(name)),
              NormalizeJsonArtifact(name, result.json_artifacts.at(std::string(name))));
  }
  // Absent ones are a bad request, as any table the bundle never had.
  WriteBundle(MakeResult(5, 3, 1), Dir("plain"));
  for (const char* name : {"daily_prices", "walk_forward"}) {
    ReadOptions options;
    options.tables = {name};
    ExpectError(ErrorCode::kInvalidArgument, [&] { ReadBundle(Dir("plain"), options); });
  }
}

TEST_F(OptionalArtifactsTest, DatedOptionalTablesReadPartiallyByDate) {
  BacktestResult result = Complete(/*days=*/200, /*per_day=*/50);
  WriteOptions write;
  write.row_group_rows = 500;  // ten days per row group of daily_returns
  WriteBundle(result, Dir("b"), write);
  const Date from = Date{kDay0 + 100};
  const Date to = Date{kDay0 + 109};
  for (const auto& [name, table] : result.extra_tables) {
    ReadOptions options;
    options.tables = {name};
    options.from = from;
    options.to = to;
    ReadStats stats;
    BacktestResult part = ReadBundle(Dir("b"), options, &stats);
    const auto& got = *part.extra_tables.at(name);
    const int64_t per_day = table->num_rows() / 200;
    ASSERT_EQ(got.num_rows(), 10 * per_day) << name;
    // The rows of those ten days, cell for cell.
    EXPECT_EQ(DescribeDifference(*table->Slice(100 * per_day, 10 * per_day), got), "") << name;
    if (per_day > 1) {
      EXPECT_GT(stats.row_groups_skipped, 0) << name;
    }
  }
}

TEST_F(OptionalArtifactsTest, WriterRefusesAWrongTypeOrOrderNamingFileColumnExpectedFound) {
  struct Case {
    std::string table;
    std::shared_ptr<arrow::Table> data;
    std::string column, expected, found;
  };
  const int days = 3;
  std::vector<Case> cases = {
      {"daily_portfolio_returns",
       arrow::Table::Make(arrow::schema({DateField(), F64("ret")}), {Days(days), Doubles(days, 1)}),
       "return", "return", "ret"},
      {"daily_portfolio_returns",
       arrow::Table::Make(arrow::schema({F64("return"), DateField()}),
                          {Doubles(days, 1), Days(days)}),
       "date", "date", "return"},
      {"net_portfolio_returns",
       arrow::Table::Make(
           arrow::schema({DateField(), F64("gross_return"), F64("cost_drag"),
                          arrow::field("net_return", arrow::float32())}),
           {Days(days), Doubles(days, 1), Doubles(days, 1),
            arrow::MakeArrayFromScalar(arrow::FloatScalar(0.5f), days).ValueOrDie()}),
       "net_return", "double", "float"},
      {"daily_prices",
       arrow::Table::Make(arrow::schema({DateField(), PermnoField()}),
                          {Days(days), Permnos(days, 1)}),
       "price", "double", "missing"},
      {"daily_returns",
       arrow::Table::Make(arrow::schema({DateField(), PermnoField(), F64("return"),
                                         arrow::field("symbol", arrow::int64())}),
                          {Days(days), Permnos(days, 1), Doubles(days, 1), Permnos(days, 1)}),
       "symbol", "string", "int64"},
      {"daily_returns",
       arrow::Table::Make(arrow::schema({DateField(), PermnoField(), F64("return"), F64("extra"),
                                         arrow::field("symbol", arrow::utf8())}),
                          {Days(days), Permnos(days, 1), Doubles(days, 1), Doubles(days, 1),
                           Symbols<arrow::StringBuilder>(days)}),
       "symbol", "position 4", "position 5"},
  };
  for (const Case& c : cases) {
    BacktestResult result = MakeResult(days, 2, 3);
    result.extra_tables[c.table] = c.data;
    Error e = ExpectError(ErrorCode::kInvalidArgument, [&] { WriteBundle(result, Dir("w")); });
    EXPECT_EQ(e.details().at("file"), c.table + ".parquet") << e.what();
    EXPECT_EQ(e.details().at("column"), c.column) << e.what();
    EXPECT_EQ(e.details().at("expected"), c.expected) << e.what();
    EXPECT_EQ(e.details().at("found"), c.found) << e.what();
    EXPECT_FALSE(fs::exists(Dir("w")));
  }
  // Dates must be dates in range, not null, as in every table of the bundle.
  BacktestResult result = MakeResult(days, 2, 3);
  arrow::Date32Builder dates;
  ASSERT_TRUE(dates.AppendNull().ok());
  result.extra_tables["daily_portfolio_returns"] = arrow::Table::Make(
      arrow::schema({DateField(), F64("return")}), {dates.Finish().ValueOrDie(), Doubles(1, 1)});
  Error e = ExpectError(ErrorCode::kInvalidArgument, [&] { WriteBundle(result, Dir("w")); });
  EXPECT_EQ(e.details().at("column"), "date");
}

TEST_F(OptionalArtifactsTest, ReaderRefusesAWrongTypeOrOrderNamingFileColumnExpectedFound) {
  WriteBundle(Complete(), Dir("b"));
  const int days = 30;
  Overwrite(
      Dir("b"), "net_portfolio_returns",
      *arrow::Table::Make(
          arrow::schema({DateField(), F64("cost_drag"), F64("gross_return"), F64("net_return")}),
          {Days(days), Doubles(days, 1), Doubles(days, 1), Doubles(days, 1)}));
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(Dir("b")); });
  EXPECT_EQ(e.details().at("file"), "net_portfolio_returns.parquet");
  EXPECT_EQ(e.details().at("column"), "gross_return");
  EXPECT_EQ(e.details().at("expected"), "gross_return");
  EXPECT_EQ(e.details().at("found"), "cost_drag");

  Overwrite(Dir("b"), "net_portfolio_returns",
            *arrow::Table::Make(
                arrow::schema({arrow::field("date", arrow::timestamp(arrow::TimeUnit::MICRO)),
                               F64("gross_return"), F64("cost_drag"), F64("net_return")}),
                {arrow::MakeArrayFromScalar(arrow::TimestampScalar(0, arrow::TimeUnit::MICRO), days)
                     .ValueOrDie(),
                 Doubles(days, 1), Doubles(days, 1), Doubles(days, 1)}));
  ReadOptions by_name;
  by_name.tables = {"net_portfolio_returns"};
  e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(Dir("b"), by_name); });
  EXPECT_EQ(e.details().at("file"), "net_portfolio_returns.parquet");
  EXPECT_EQ(e.details().at("column"), "date");
  EXPECT_EQ(e.details().at("expected"), "date32[day]");
  EXPECT_EQ(e.details().at("found"), "timestamp[us]");
}

TEST_F(OptionalArtifactsTest, PortfolioReturnsByBasisAreDateAndReturnSortedByDate) {
  const int days = 12;
  BacktestResult result = MakeResult(days, 2, 4);
  // Written out of date order: the writer keeps the order, the basis view sorts.
  arrow::Date32Builder shuffled;
  for (int d = 0; d < days; ++d) ASSERT_TRUE(shuffled.Append(kDay0 + (d * 5) % days).ok());
  std::shared_ptr<arrow::Array> dates = shuffled.Finish().ValueOrDie();
  std::shared_ptr<arrow::Array> gross = Doubles(days, 0.5);
  std::shared_ptr<arrow::Array> net = Doubles(days, 0.25);
  result.extra_tables["daily_portfolio_returns"] =
      arrow::Table::Make(arrow::schema({DateField(), F64("return")}), {dates, gross});
  result.extra_tables["net_portfolio_returns"] = arrow::Table::Make(
      arrow::schema({DateField(), F64("gross_return"), F64("cost_drag"), F64("net_return")}),
      {dates, gross, Doubles(days, 0.1), net});
  WriteBundle(result, Dir("b"));

  for (ReturnsBasis basis : {ReturnsBasis::kNet, ReturnsBasis::kGross}) {
    ReadStats stats;
    BacktestResult read = ReadBundle(Dir("b"), PortfolioReturnsReadOptions(basis), &stats);
    EXPECT_EQ(read.extra_tables.size(), 1u);
    std::shared_ptr<arrow::Table> returns = PortfolioReturns(read, basis);
    ASSERT_EQ(returns->schema()->ToString(), "date: date32[day]\nreturn: double");
    ASSERT_EQ(returns->num_rows(), days);
    auto got_dates = std::static_pointer_cast<arrow::Date32Array>(returns->column(0)->chunk(0));
    auto got = std::static_pointer_cast<arrow::DoubleArray>(returns->column(1)->chunk(0));
    const auto& source =
        static_cast<const arrow::DoubleArray&>(basis == ReturnsBasis::kNet ? *net : *gross);
    for (int64_t i = 0; i < days; ++i) {
      EXPECT_EQ(got_dates->Value(i), kDay0 + i) << ToString(basis);
      // The row of that date in the file: day (d * 5) % 12 sits at row d.
      int64_t row = 0;
      while ((row * 5) % days != i) ++row;
      ASSERT_EQ(got->IsNull(i), source.IsNull(row)) << ToString(basis) << " " << i;
      if (!got->IsNull(i)) {
        EXPECT_EQ(Bits(got->Value(i)), Bits(source.Value(row)));
      }
    }
  }
  // A date range reads part of it.
  BacktestResult part = ReadBundle(
      Dir("b"), PortfolioReturnsReadOptions(ReturnsBasis::kNet, Date{kDay0 + 3}, Date{kDay0 + 5}));
  EXPECT_EQ(PortfolioReturns(part, ReturnsBasis::kNet)->num_rows(), 3);
  // A result without the table has no returns on that basis.
  EXPECT_THROW(PortfolioReturns(MakeResult(3, 2, 1), ReturnsBasis::kGross), InvalidArgument);
  EXPECT_EQ(ParseReturnsBasis("gross"), ReturnsBasis::kGross);
  EXPECT_THROW(ParseReturnsBasis("after-tax"), InvalidArgument);
}

TEST_F(OptionalArtifactsTest, JsonArtifactsRoundTripWithNonFiniteNumbersAsNull) {
  BacktestResult result = Complete();
  result.extra_summary_json =
      R"({"has_walk_forward": true, "walk_forward_windows": 2, "has_param_search": true})";
  auto manifest = WriteBundle(result, Dir("b"));
  for (const char* file : {"walk_forward.json", "param_search.json"}) {
    ASSERT_TRUE(manifest.contains(file)) << file;
    EXPECT_EQ(manifest.at(file).bytes, static_cast<int64_t>(fs::file_size(Dir("b") / file)));
  }
  const std::string written = ReadText(Dir("b") / "walk_forward.json");
  EXPECT_EQ(written.find("NaN,"), std::string::npos) << written;
  EXPECT_EQ(written.find("Infinity"), std::string::npos) << written;
  nlohmann::json doc = nlohmann::json::parse(written);
  EXPECT_EQ(doc["version"], "1.0");
  EXPECT_TRUE(doc["windows"][0]["test_ic"].is_null());
  EXPECT_TRUE(doc["windows"][0]["overfit"].is_null());
  EXPECT_TRUE(doc["windows"][1]["train_ic"].is_null());
  EXPECT_EQ(doc["windows"][1]["note"], "NaN stays text");
  EXPECT_EQ(doc["windows"][0]["train_ic"].get<double>(), 0.1);
  // Shortest round-trip form, as in summary.json.
  EXPECT_NE(written.find("4.1752050594835e+78"), std::string::npos) << written;

  BacktestResult back = ReadBundle(Dir("b"));
  EXPECT_TRUE(back.unavailable.empty());
  ASSERT_EQ(back.json_artifacts.size(), 2u);
  EXPECT_EQ(back.json_artifacts.at("walk_forward"), written);
  EXPECT_EQ(nlohmann::json::parse(back.json_artifacts.at("param_search")),
            nlohmann::json::parse(kParamSearch));
  EXPECT_EQ(nlohmann::json::parse(back.extra_summary_json),
            nlohmann::json::parse(result.extra_summary_json));
  // Written again (bundle rewrite, result --export), they come out the same.
  WriteBundle(back, Dir("again"));
  EXPECT_EQ(ReadText(Dir("again") / "walk_forward.json"), written);
  EXPECT_EQ(ReadText(Dir("again") / "param_search.json"), ReadText(Dir("b") / "param_search.json"));
}

TEST_F(OptionalArtifactsTest, WriterRefusesJsonArtifactsThatAreNotAsSpecified) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"walk_forward", "[1, 2]"},
      {"walk_forward", R"({"version": "2.0", "created_at": "2024-01-01"})"},
      {"walk_forward", R"({"version": 1.0, "created_at": "2024-01-01"})"},
      {"param_search", R"({"version": "1.0"})"},
      {"param_search", R"({"version": "1.0", "created_at": ""})"},
      {"param_search", "{not json"},
      {"param_search", std::string(100, '[') + std::string(100, ']')},
      {"other_search", R"({"version": "1.0", "created_at": "2024-01-01"})"},
  };
  for (const auto& [name, text] : bad) {
    BacktestResult result = MakeResult(3, 2, 1);
    result.json_artifacts[name] = text;
    ExpectError(ErrorCode::kInvalidArgument, [&] { WriteBundle(result, Dir("w")); });
    EXPECT_FALSE(fs::exists(Dir("w"))) << name << ": " << text;
  }
  BacktestResult clash = MakeResult(3, 2, 1);
  clash.extra_tables["walk_forward"] = clash.daily_ic;
  ExpectError(ErrorCode::kInvalidArgument, [&] { WriteBundle(clash, Dir("w")); });
}

TEST_F(OptionalArtifactsTest, ACorruptJsonArtifactMakesOnlyItselfUnavailable) {
  const std::string valid = R"({"version": "1.0", "created_at": "2024-01-01", "x": [1]})";
  const std::vector<std::pair<std::string, std::function<void(const fs::path&)>>> corruptions = {
      {"not json", [](const fs::path& f) { WriteText(f, "{\"version\": \"1.0\", "); }},
      {"wrong version",
       [](const fs::path& f) { WriteText(f, R"({"version": "0.9", "created_at": "x"})"); }},
      {"no created_at", [](const fs::path& f) { WriteText(f, R"({"version": "1.0"})"); }},
      {"too deep",
       [](const fs::path& f) {
         WriteText(f, R"({"version": "1.0", "created_at": "x", "d": )" + std::string(200, '[') +
                          std::string(200, ']') + "}");
       }},
      {"too large",
       [](const fs::path& f) {
         WriteText(f, R"({"version": "1.0", "created_at": "x", "pad": ")" +
                          std::string(17 << 20, 'a') + "\"}");
       }},
      {"changed bytes",
       [&](const fs::path& f) {
         // Still valid JSON of the same size: only the manifest's checksum can tell.
         std::string text = ReadText(f);
         const size_t at = text.find("2024-01-01");
         ASSERT_NE(at, std::string::npos) << text;
         text.replace(at, 10, "2024-01-02");
         WriteText(f, text);
       }},
      {"missing", [](const fs::path& f) { fs::remove(f); }},
      {"a symbolic link",
       [](const fs::path& f) {
         fs::remove(f);
         fs::create_symlink("/etc/hostname", f);
       }},
  };
  for (const auto& [what, corrupt] : corruptions) {
    SCOPED_TRACE(what);
    fs::remove_all(Dir("b"));
    BacktestResult result = Complete(5, 2);
    result.json_artifacts["walk_forward"] = valid;
    WriteBundle(result, Dir("b"));
    corrupt(Dir("b") / "walk_forward.json");

    // The rest of the result reads as ever.
    BacktestResult back = ReadBundle(Dir("b"));
    EXPECT_EQ(DescribeDifference(*result.daily_signals, *back.daily_signals), "");
    EXPECT_EQ(back.extra_tables.size(), 4u);
    EXPECT_TRUE(back.json_artifacts.contains("param_search"));
    EXPECT_FALSE(back.json_artifacts.contains("walk_forward"));
    ASSERT_TRUE(back.unavailable.contains("walk_forward.json"));
    EXPECT_FALSE(back.unavailable.at("walk_forward.json").empty());

    // Asked for by name: InvalidResult naming the file.
    ReadOptions options;
    options.tables = {"walk_forward"};
    Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(Dir("b"), options); });
    EXPECT_EQ(e.details().at("file"), "walk_forward.json") << e.what();
    // Inspecting validates everything.
    e = ExpectError(ErrorCode::kInvalidResult, [&] { InspectBundle(Dir("b")); });
    EXPECT_EQ(e.details().at("file"), "walk_forward.json") << e.what();
  }
}

TEST_F(OptionalArtifactsTest, PythonWrittenArtifactsWithoutManifestAreRead) {
  WriteBundle(MakeResult(4, 2, 9), Dir("b"));
  DropManifest(Dir("b"));
  WriteText(Dir("b") / "param_search.json", std::string(kParamSearch));
  BacktestResult back = ReadBundle(Dir("b"));
  ASSERT_TRUE(back.json_artifacts.contains("param_search"));
  EXPECT_EQ(nlohmann::json::parse(back.json_artifacts.at("param_search"))["combinations"][0]["ic"]
                .get<double>(),
            0.30000000000000004);
}

TEST(ShortestDoubles, SummaryJsonWritesEachDoubleInItsShortestRoundTripForm) {
  TempDir tmp("btstore-shortest");
  // Values whose Grisu2 form (nlohmann's dump) is longer than the shortest one, and edge cases.
  const std::vector<double> hard = {4.1752050594835e+78,
                                    -2.522923758208279e-228,
                                    3.484060486691407e+210,
                                    5e-324,
                                    1.7976931348623157e308,
                                    0.30000000000000004,
                                    -0.0,
                                    1e23,
                                    692222417365414.0};
  for (size_t start = 0; start < hard.size(); start += Metrics::kNames.size()) {
    BacktestResult result = MakeResult(2, 2, 1);
    std::vector<double> values;
    for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
      const double v = hard[std::min(start + i, hard.size() - 1)];
      result.metrics.At(i) = v;
      values.push_back(v);
    }
    const fs::path dir = tmp.path() / std::to_string(start);
    WriteBundle(result, dir);
    const std::string text = ReadText(dir / "summary.json");
    for (size_t i = 0; i < values.size(); ++i) {
      char buffer[32];
      auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, values[i]);
      std::string shortest(buffer, end);
      if (shortest.find_first_of(".e") == std::string::npos) shortest += ".0";
      const std::string entry = "\"" + std::string(Metrics::kNames[i]) + "\": " + shortest;
      EXPECT_NE(text.find(entry + ",\n"), std::string::npos) << entry << "\n" << text;
    }
    BacktestResult back = ReadBundle(dir);
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_EQ(Bits(back.metrics.At(i)), Bits(values[i])) << Metrics::kNames[i];
    }
  }
}

}  // namespace
}  // namespace btstore
