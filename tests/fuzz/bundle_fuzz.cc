// Fuzz target: the bundle reader (ReadBundle, InspectBundle) on mutated Parquet files, summaries
// and directories.
//
// Input: one option byte, then the entries of a bundle directory, each introduced by a line
// "%%file NAME" and followed by its bytes (up to the next such line; the first entry starts
// right after the option byte). NAME is a plain file name, or a name ending in '/' for an empty
// directory; other names are ignored. tests/fuzz/make_corpus.py writes such inputs from bundle
// directories.
//
// Option bits: 0x01 InspectBundle instead of ReadBundle; 0x02 no checksum verification;
// 0x04 from 2020-01-06; 0x08 to 2020-01-10; 0x10 columns signal, ic and return only;
// 0x20 tables daily_signals and daily_ic only; 0x40 table daily_portfolio_returns (too).
//
// Findings: a crash; an error other than InvalidResult or MissingReproducibilityMetadata
// (InvalidArgument too when columns or daily_portfolio_returns are asked for: the bundle may
// have none of them); a result whose tables are not valid Arrow data, miss a table or a required
// column, or hold rows outside the date range.

#include <arrow/api.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/bundle.h"
#include "fuzz/fuzz_support.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMarker = "%%file ";
constexpr size_t kMaxEntries = 16;
constexpr size_t kMaxNameLength = 64;

enum Option : uint8_t {
  kInspect = 0x01,
  kNoChecksums = 0x02,
  kFrom = 0x04,
  kTo = 0x08,
  kColumns = 0x10,
  kRequiredSubset = 0x20,
  kWithPortfolio = 0x40,
};

constexpr std::string_view kPortfolioTable = "daily_portfolio_returns";

bool IsPlainName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Write the entries of `data` into the empty directory `dir`.
void MaterializeEntries(std::string_view data, const fs::path& dir) {
  std::string_view rest = data;
  if (!rest.starts_with(kMarker)) return;
  size_t entries = 0;
  while (!rest.empty() && entries < kMaxEntries) {
    rest.remove_prefix(kMarker.size());
    size_t next = rest.find(std::string("\n").append(kMarker));
    std::string_view entry = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
    size_t eol = entry.find('\n');
    std::string_view name = entry.substr(0, eol);
    std::string_view bytes = eol == std::string_view::npos ? "" : entry.substr(eol + 1);
    bool is_dir = name.ends_with('/');
    if (is_dir) name.remove_suffix(1);
    if (!IsPlainName(name) || fs::exists(dir / name)) continue;
    ++entries;
    if (is_dir) {
      fs::create_directory(dir / name);
    } else {
      fuzz::WriteFile(dir / name, bytes);
    }
  }
}

void CheckTable(const std::shared_ptr<arrow::Table>& table, const std::string& name,
                const ReadOptions& options) {
  if (!table) fuzz::Finding("ReadBundle returned no table " + name);
  arrow::Status valid = table->ValidateFull();
  if (!valid.ok()) {
    fuzz::Finding("ReadBundle returned an invalid table " + name + ": " + valid.ToString());
  }
  bool required = name == kSignalsTable || name == kWeightsTable || name == kIcTable;
  if (required && options.columns.empty()) {
    auto schema = RequiredSchema(name);
    for (int i = 0; i < schema->num_fields(); ++i) {
      if (i >= table->num_columns() || !table->field(i)->Equals(*schema->field(i))) {
        fuzz::Finding("table " + name + " came back without its required column " +
                      schema->field(i)->ToString() + " in place " + std::to_string(i));
      }
    }
  }
  if (!options.from && !options.to) return;
  auto date = table->GetColumnByName("date");
  if (!date || date->type()->id() != arrow::Type::DATE32) return;  // not filtered by date
  for (const auto& chunk : date->chunks()) {
    const auto& dates = static_cast<const arrow::Date32Array&>(*chunk);
    for (int64_t i = 0; i < dates.length(); ++i) {
      bool inside = dates.IsValid(i) && (!options.from || dates.Value(i) >= options.from->days) &&
                    (!options.to || dates.Value(i) <= options.to->days);
      if (!inside) fuzz::Finding("table " + name + " holds a row outside the date range");
    }
  }
}

void CheckResult(const BacktestResult& result, const ReadOptions& options) {
  std::vector<std::string> wanted = options.tables;
  if (wanted.empty()) {
    wanted = {std::string(kSignalsTable), std::string(kWeightsTable), std::string(kIcTable)};
  }
  for (const std::string& name : wanted) {
    if (name == kSignalsTable) {
      CheckTable(result.daily_signals, name, options);
    } else if (name == kWeightsTable) {
      CheckTable(result.daily_weights, name, options);
    } else if (name == kIcTable) {
      CheckTable(result.daily_ic, name, options);
    } else {
      auto it = result.extra_tables.find(name);
      CheckTable(it == result.extra_tables.end() ? nullptr : it->second, name, options);
    }
  }
  for (const auto& [name, table] : result.extra_tables) CheckTable(table, name, options);
}

}  // namespace
}  // namespace btstore

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace btstore;
  if (size == 0) return 0;
  const uint8_t options_byte = data[0];
  const std::string_view entries(reinterpret_cast<const char*>(data) + 1, size - 1);

  const fs::path dir = fuzz::ScratchDir() / "bundle";
  fs::remove_all(dir);
  fs::create_directory(dir);
  MaterializeEntries(entries, dir);

  ReadOptions options;
  options.verify_checksums = (options_byte & kNoChecksums) == 0;
  if (options_byte & kFrom) options.from = Date::FromYmd(2020, 1, 6);
  if (options_byte & kTo) options.to = Date::FromYmd(2020, 1, 10);
  if (options_byte & kColumns) options.columns = {"signal", "ic", "return"};
  if (options_byte & kRequiredSubset) {
    options.tables = {std::string(kSignalsTable), std::string(kIcTable)};
  }
  if (options_byte & kWithPortfolio) options.tables.emplace_back(kPortfolioTable);

  std::initializer_list<ErrorCode> expected = {ErrorCode::kInvalidResult,
                                               ErrorCode::kMissingReproducibilityMetadata};
  std::initializer_list<ErrorCode> expected_or_bad_request = {
      ErrorCode::kInvalidResult, ErrorCode::kMissingReproducibilityMetadata,
      ErrorCode::kInvalidArgument};
  if (options_byte & kInspect) {
    std::optional<BundleInfo> info;
    if (fuzz::Expect("InspectBundle", expected, [&] { info = InspectBundle(dir); })) {
      if (info->tables.size() < 3) fuzz::Finding("InspectBundle described fewer than 3 tables");
    }
    return 0;
  }
  std::optional<BacktestResult> result;
  if (fuzz::Expect("ReadBundle",
                   options.columns.empty() && (options_byte & kWithPortfolio) == 0
                       ? expected
                       : expected_or_bad_request,
                   [&] { result = ReadBundle(dir, options); })) {
    CheckResult(*result, options);
  }
  return 0;
}
