// btstore_bench: the C++ side of the benchmarks. Each invocation performs one measurement in a
// fresh process and prints one JSON object on stdout; bench/run_bench.py runs it several times
// next to the Python peers (bench/peers.py) and computes medians and ratios.
//
//   btstore_bench gen --out DIR --days N --symbols M [--seed S]
//   btstore_bench write --mode btstore|raw --out DIR --days N --symbols M [--seed S]
//   btstore_bench read --dir DIR [--from D --to D] [--tables a,b] [--no-verify]
//   btstore_bench migrate --catalog URL
//   btstore_bench list --catalog URL --rows N [--iterations K] [--depth D]
//   btstore_bench replicate --src DIR --root DIR --count N --prefix P
//   btstore_bench retention --catalog URL --root DIR [--retention-days D] [--batch-size B]
//   btstore_bench throughput --catalog URL --root DIR --jobs N [--workers W] [--concurrency C]
//                            [--submitters S]
//   btstore_bench ceiling --catalog URL --root DIR --jobs N [--threads T]
//   btstore_bench queue --catalog URL --root DIR --jobs N [--workers W] [--batch B]
//   btstore_bench cancel --catalog URL --root DIR --samples K
//   btstore_bench engine --catalog URL --root DIR --src BUNDLE --repeats K
//
// Memory: the peak resident set of the measured operation alone is read from /proc/self/status
// (VmHWM) after resetting it through /proc/self/clear_refs just before the operation, so that
// setup (generating or loading the input) does not count, while the input tables that the
// operation holds do.

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <arrow/util/byte_size.h>
#include <fcntl.h>
#include <parquet/arrow/writer.h>
#include <parquet/properties.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "artifact/io_internal.h"
#include "btstore/bundle.h"
#include "btstore/catalog.h"
#include "btstore/command_engine.h"
#include "btstore/engine.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "btstore/model.h"
#include "btstore/service.h"

namespace btstore::bench {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Command line: `--key value` pairs and bare `--flag`s after the subcommand.

class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 2; i < argc; ++i) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0) throw InvalidArgument("unexpected argument " + key);
      key = key.substr(2);
      if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        values_[key] = argv[++i];
      } else {
        values_[key] = "";
      }
    }
  }
  std::string Str(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) throw InvalidArgument("missing --" + key);
    return it->second;
  }
  std::string Str(const std::string& key, const std::string& fallback) const {
    return Has(key) ? values_.at(key) : fallback;
  }
  int64_t Int(const std::string& key) const { return std::stoll(Str(key)); }
  int64_t Int(const std::string& key, int64_t fallback) const {
    return Has(key) ? std::stoll(values_.at(key)) : fallback;
  }
  bool Has(const std::string& key) const { return values_.count(key) > 0; }

 private:
  std::map<std::string, std::string> values_;
};

// ---------------------------------------------------------------------------------------------
// Time and memory.

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// Read a "VmXxx:   123 kB" line of /proc/self/status, in MiB.
double StatusMib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      return std::stod(line.substr(key.size() + 1)) / 1024.0;
    }
  }
  return -1;
}

// Reset the peak resident set (VmHWM) to the current one, so the next reading is the peak of
// what follows. Linux >= 4.0.
void ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
}

json MemoryFacts(double rss_before_mib) {
  return {{"rss_before_mb", rss_before_mib}, {"peak_rss_mb", StatusMib("VmHWM")}};
}

// The measured operation, as bench/limiter.py profiles it: when BTSTORE_PERF_CONTROL names perf
// record's control and acknowledgement FIFOs ("CTL,ACK"; perf record --control fifo:CTL,ACK
// -D -1), the profiler records from construction to End() only, so that setup (generating or
// loading the input, process start) stays out of "what limits this case". Without that variable
// it does nothing, which is how every timed run goes.
class ProfiledRegion {
 public:
  ProfiledRegion() {
    const char* control = std::getenv("BTSTORE_PERF_CONTROL");
    if (control == nullptr) return;
    const std::string fifos = control;
    const size_t comma = fifos.find(',');
    if (comma == std::string::npos) throw InvalidArgument("BTSTORE_PERF_CONTROL is CTL,ACK");
    control_fd_ = ::open(fifos.substr(0, comma).c_str(), O_WRONLY | O_CLOEXEC);
    ack_fd_ = ::open(fifos.substr(comma + 1).c_str(), O_RDONLY | O_CLOEXEC);
    if (control_fd_ < 0 || ack_fd_ < 0) {
      Close();
      throw InternalError("cannot open the perf control FIFOs of BTSTORE_PERF_CONTROL");
    }
    if (!Send("enable")) {
      Close();
      throw InternalError("perf did not acknowledge enable");
    }
  }
  ProfiledRegion(const ProfiledRegion&) = delete;
  ProfiledRegion& operator=(const ProfiledRegion&) = delete;
  // Leaving by an exception: stop recording if perf still listens, and go on unwinding.
  ~ProfiledRegion() {
    if (control_fd_ >= 0) Send("disable");
    Close();
  }

  // Stop recording (once).
  void End() {
    if (control_fd_ < 0) return;
    const bool acknowledged = Send("disable");
    Close();
    if (!acknowledged) throw InternalError("perf did not acknowledge disable");
  }

 private:
  // perf acknowledges each command with "ack\n" once it has taken effect.
  bool Send(const std::string& command) {
    const std::string line = command + "\n";
    char ack[16];
    return ::write(control_fd_, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
           ::read(ack_fd_, ack, sizeof(ack)) > 0;
  }

  void Close() {
    if (control_fd_ >= 0) ::close(control_fd_);
    if (ack_fd_ >= 0) ::close(ack_fd_);
    control_fd_ = ack_fd_ = -1;
  }

  int control_fd_ = -1;
  int ack_fd_ = -1;
};

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(std::ceil(p / 100.0 * values.size()));
  index = std::clamp<size_t>(index, 1, values.size());
  return values[index - 1];
}

json LatencySummary(const std::vector<double>& seconds) {
  return {{"samples", seconds.size()},
          {"p50_s", Percentile(seconds, 50)},
          {"p99_s", Percentile(seconds, 99)},
          {"max_s", Percentile(seconds, 100)}};
}

// ---------------------------------------------------------------------------------------------
// Deterministic data: business days from 2010-01-04, permnos 10001, 10004, ..., values from a
// counter-based hash so that any (day, permno) cell is the same in every run.

double Unit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

std::vector<int32_t> BusinessDays(int count) {
  std::vector<int32_t> days;
  int32_t day = Date::FromYmd(2010, 1, 4).days;
  while (static_cast<int>(days.size()) < count) {
    if (IsBusinessDay(Date{day})) days.push_back(day);
    ++day;
  }
  return days;
}

template <typename Builder, typename Value>
std::shared_ptr<arrow::Array> BuildArray(const std::vector<Value>& values,
                                         std::shared_ptr<arrow::DataType> type = nullptr) {
  std::unique_ptr<Builder> builder =
      type ? std::make_unique<Builder>(type, arrow::default_memory_pool())
           : std::make_unique<Builder>();
  if (!builder->AppendValues(values).ok()) throw InternalError("cannot build an array");
  std::shared_ptr<arrow::Array> array;
  if (!builder->Finish(&array).ok()) throw InternalError("cannot build an array");
  return array;
}

// Build a long (date, permno, value) table; `value` gives the cell of day d, symbol s.
std::shared_ptr<arrow::Table> LongTable(std::string_view name, const std::vector<int32_t>& days,
                                        int symbols,
                                        const std::function<double(size_t, int)>& value) {
  const size_t rows = days.size() * static_cast<size_t>(symbols);
  std::vector<int32_t> dates;
  std::vector<int64_t> permnos;
  std::vector<double> values;
  dates.reserve(rows);
  permnos.reserve(rows);
  values.reserve(rows);
  for (size_t d = 0; d < days.size(); ++d) {
    for (int s = 0; s < symbols; ++s) {
      dates.push_back(days[d]);
      permnos.push_back(10001 + 3 * static_cast<int64_t>(s));
      values.push_back(value(d, s));
    }
  }
  auto date_array = BuildArray<arrow::Date32Builder>(dates);
  auto permno_array = BuildArray<arrow::Int64Builder>(permnos);
  auto value_array = BuildArray<arrow::DoubleBuilder>(values);
  return arrow::Table::Make(RequiredSchema(name), {date_array, permno_array, value_array});
}

BacktestResult GenerateResult(int day_count, int symbols, uint64_t seed) {
  const std::vector<int32_t> days = BusinessDays(day_count);
  auto cell = [seed](size_t d, int s, uint64_t salt) {
    return SplitMix64(seed * 0x100000001b3ULL ^ (static_cast<uint64_t>(d) << 24) ^
                      static_cast<uint64_t>(s) ^ (salt << 56));
  };
  BacktestResult result;
  result.job_id = "bench-" + std::to_string(day_count) + "x" + std::to_string(symbols);
  result.alpha_name = "bench_alpha";
  result.start_date = Date{days.front()};
  result.end_date = Date{days.back()};
  result.weight_method = "signal";
  result.config_hash = "bench";
  // A signal is missing (NaN) in about one cell in a thousand, as in real universes.
  result.daily_signals = LongTable(kSignalsTable, days, symbols, [&](size_t d, int s) {
    uint64_t h = cell(d, s, 1);
    return h % 1000 == 0 ? std::nan("") : (Unit(h) - 0.5) * 4.0;
  });
  result.daily_weights = LongTable(kWeightsTable, days, symbols, [&](size_t d, int s) {
    return (Unit(cell(d, s, 2)) - 0.5) * 2.0 / symbols;
  });
  std::vector<double> ic;
  std::vector<double> rank_ic;
  for (size_t d = 0; d < days.size(); ++d) {
    ic.push_back((Unit(cell(d, 0, 3)) - 0.45) * 0.2);
    rank_ic.push_back((Unit(cell(d, 0, 4)) - 0.45) * 0.2);
  }
  result.daily_ic =
      arrow::Table::Make(RequiredSchema(kIcTable), {BuildArray<arrow::Date32Builder>(days),
                                                    BuildArray<arrow::DoubleBuilder>(ic),
                                                    BuildArray<arrow::DoubleBuilder>(rank_ic)});
  const IcStats stats = ComputeIcStats(ic);
  result.metrics.mean_ic = stats.mean_ic;
  result.metrics.icir = stats.icir;
  result.metrics.hit_rate =
      static_cast<double>(std::count_if(ic.begin(), ic.end(), [](double v) { return v > 0; })) /
      static_cast<double>(ic.size());
  result.snapshot_id = "bench-snapshot-1";
  result.dataset_version_ids = {{"crsp_daily", "bench-v1"}};
  return result;
}

int64_t TableBytes(const BacktestResult& result) {
  int64_t total = 0;
  for (const auto& table : {result.daily_signals, result.daily_weights, result.daily_ic}) {
    if (table) total += arrow::util::TotalBufferSize(*table);
  }
  for (const auto& [name, table] : result.extra_tables)
    total += arrow::util::TotalBufferSize(*table);
  return total;
}

int64_t DirectoryBytes(const fs::path& dir) {
  int64_t total = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) total += static_cast<int64_t>(entry.file_size());
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Cases 1-3: bundles.

int CmdGen(const Args& args) {
  BacktestResult result =
      GenerateResult(static_cast<int>(args.Int("days")), static_cast<int>(args.Int("symbols")),
                     args.Int("seed", 7));
  const fs::path out = args.Str("out");
  WriteBundle(result, out);
  std::cout << json{{"dir", out.string()},
                    {"rows", result.daily_signals->num_rows()},
                    {"table_bytes", TableBytes(result)},
                    {"file_bytes", DirectoryBytes(out)}}
            << "\n";
  return 0;
}

// Write a table with Arrow C++ alone: btstore's own Parquet settings and column preparation
// (internal::PrepareParquetWrite), so the files are the same, but no validation, checksum,
// flush or rename.
void RawWriteTable(const std::shared_ptr<arrow::Table>& table, const fs::path& path,
                   const WriteOptions& options) {
  auto opened = arrow::io::FileOutputStream::Open(path.string());
  if (!opened.ok()) throw InternalError(opened.status().ToString());
  std::shared_ptr<arrow::io::FileOutputStream> file = *opened;
  const internal::ParquetWrite prepared =
      internal::PrepareParquetWrite(table, options, path.filename().string());
  arrow::Status status = parquet::arrow::WriteTable(*prepared.table, arrow::default_memory_pool(),
                                                    file, options.row_group_rows,
                                                    prepared.properties, prepared.arrow_properties);
  if (status.ok()) status = file->Close();
  if (!status.ok()) throw InternalError(status.ToString());
}

int CmdWrite(const Args& args) {
  const std::string mode = args.Str("mode");
  BacktestResult result =
      GenerateResult(static_cast<int>(args.Int("days")), static_cast<int>(args.Int("symbols")),
                     args.Int("seed", 7));
  const fs::path out = args.Str("out");
  const WriteOptions options;
  const double rss_before = StatusMib("VmRSS");
  ResetPeakRss();
  ProfiledRegion region;
  const auto start = SteadyClock::now();
  if (mode == "btstore") {
    WriteBundle(result, out, options);
  } else if (mode == "raw") {
    // One thread per file, as btstore's writer uses with WriteOptions::parallel on 2+ cores.
    fs::create_directories(out);
    std::vector<std::thread> threads;
    std::vector<std::string> errors(3);
    const std::vector<std::pair<std::string_view, std::shared_ptr<arrow::Table>>> tables = {
        {kSignalsTable, result.daily_signals},
        {kWeightsTable, result.daily_weights},
        {kIcTable, result.daily_ic}};
    for (size_t i = 0; i < tables.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          RawWriteTable(tables[i].second, out / (std::string(tables[i].first) + ".parquet"),
                        options);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
    for (auto& thread : threads) thread.join();
    for (const auto& error : errors) {
      if (!error.empty()) throw InternalError(error);
    }
  } else {
    throw InvalidArgument("--mode is btstore or raw");
  }
  const double seconds = SecondsSince(start);
  region.End();
  json facts = MemoryFacts(rss_before);
  facts["seconds"] = seconds;
  facts["table_bytes"] = TableBytes(result);
  facts["file_bytes"] = DirectoryBytes(out);
  facts["rows"] = result.daily_signals->num_rows();
  std::cout << facts << "\n";
  return 0;
}

std::vector<std::string> SplitComma(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) parts.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return parts;
}

int CmdRead(const Args& args) {
  ReadOptions options;
  if (args.Has("from")) options.from = Date::Parse(args.Str("from"));
  if (args.Has("to")) options.to = Date::Parse(args.Str("to"));
  if (args.Has("tables")) options.tables = SplitComma(args.Str("tables"));
  options.verify_checksums = !args.Has("no-verify");
  const double rss_before = StatusMib("VmRSS");
  ResetPeakRss();
  ReadStats stats;
  ProfiledRegion region;
  const auto start = SteadyClock::now();
  BacktestResult result = ReadBundle(args.Str("dir"), options, &stats);
  const double seconds = SecondsSince(start);
  region.End();
  json facts = MemoryFacts(rss_before);
  facts["seconds"] = seconds;
  facts["table_bytes"] = TableBytes(result);
  facts["rows"] = result.daily_signals ? result.daily_signals->num_rows() : 0;
  facts["bytes_read"] = stats.bytes_read;
  facts["row_groups_read"] = stats.row_groups_read;
  facts["row_groups_skipped"] = stats.row_groups_skipped;
  std::cout << facts << "\n";
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Case 4: list_jobs. The catalog was bulk-loaded by run_bench.py: row i (1..N) was created at
// 2024-01-01T00:00:00Z + i minutes, by user (i % 50), with alpha and status from a hash of i
// (see bench/run_bench.py, LOAD_*), so the filters below select known fractions.

int CmdMigrate(const Args& args) {
  auto catalog = Catalog::Open(args.Str("catalog"));
  std::cout << json{{"applied", catalog->Migrate()}} << "\n";
  return 0;
}

Timestamp RowCreatedAt(int64_t i) {
  return ParseTimestamp("2024-01-01T00:00:00Z") + std::chrono::minutes(i);
}

std::vector<std::pair<std::string, JobFilter>> BenchFilters(int64_t rows) {
  std::vector<std::pair<std::string, JobFilter>> filters;
  filters.push_back({"none", {}});
  JobFilter user;
  user.created_by = "user7";
  filters.push_back({"user", user});
  JobFilter alpha;
  alpha.alpha_name = "alpha3";
  filters.push_back({"alpha", alpha});
  JobFilter status;
  status.statuses = {JobStatus::kCompleted};
  filters.push_back({"status", status});
  JobFilter statuses;
  statuses.statuses = {JobStatus::kFailed, JobStatus::kCancelled};
  filters.push_back({"statuses", statuses});
  JobFilter created;
  created.created_from = RowCreatedAt(rows * 45 / 100);
  created.created_to = RowCreatedAt(rows * 55 / 100);
  filters.push_back({"created_range", created});
  JobFilter overlap;
  overlap.range_from = Date::FromYmd(2010, 1, 1);
  overlap.range_to = Date::FromYmd(2010, 3, 31);
  filters.push_back({"backtest_overlap", overlap});
  JobFilter ic;
  ic.min_mean_ic = 0.05;
  filters.push_back({"min_mean_ic", ic});
  JobFilter combo;
  combo.created_by = "user7";
  combo.statuses = {JobStatus::kCompleted, JobStatus::kFailed};
  combo.created_from = RowCreatedAt(rows / 4);
  combo.min_mean_ic = 0.0;
  filters.push_back({"combination", combo});
  return filters;
}

int CmdList(const Args& args) {
  auto catalog = Catalog::Open(args.Str("catalog"));
  const int64_t rows = args.Int("rows");
  const int iterations = static_cast<int>(args.Int("iterations", 200));
  // Offset pages are slow by nature; fewer samples of them keep the run short.
  const int offset_iterations = static_cast<int>(args.Int("offset-iterations", iterations / 10));
  const int64_t depth_wanted = args.Int("depth", 10000);
  const int page_size = kDefaultListLimit;
  json out = json::array();
  ProfiledRegion region;
  for (const auto& [name, filter] : BenchFilters(rows)) {
    // Find the cursor `depth_wanted` rows deep by walking the largest pages the API allows. A
    // filter matching fewer rows gets the deepest cursor that still has a full page after it
    // (reported as `depth`).
    std::vector<std::string> cursors;  // cursors[k]: the cursor after the (k+1)-th row
    std::optional<std::string> walk_after;
    while (static_cast<int64_t>(cursors.size()) < depth_wanted + page_size) {
      PageRequest walk;
      walk.limit = kMaxListLimit;
      walk.after = walk_after;
      JobPage page = catalog->ListJobs(filter, walk);
      for (const JobRecord& job : page.jobs) cursors.push_back(EncodeCursor(job));
      if (!page.next || page.jobs.empty()) break;
      walk_after = cursors.back();
    }
    const int64_t depth =
        std::clamp<int64_t>(static_cast<int64_t>(cursors.size()) - page_size, 0, depth_wanted);
    std::optional<std::string> cursor;
    if (depth > 0) cursor = cursors[static_cast<size_t>(depth - 1)];
    std::vector<double> first;
    std::vector<double> deep;
    std::vector<double> offset;
    size_t first_rows = 0;
    size_t deep_rows = 0;
    bool pages_agree = true;
    for (int i = -2; i < iterations; ++i) {  // 2 warm-up rounds, not recorded
      PageRequest first_page;
      first_page.limit = page_size;
      auto start = SteadyClock::now();
      JobPage a = catalog->ListJobs(filter, first_page);
      double t_first = SecondsSince(start);
      PageRequest deep_page;
      deep_page.limit = page_size;
      deep_page.after = cursor;
      start = SteadyClock::now();
      JobPage b = catalog->ListJobs(filter, deep_page);
      double t_deep = SecondsSince(start);
      JobPage c;
      double t_offset = 0;
      if (i < offset_iterations) {
        PageRequest offset_page;
        offset_page.limit = page_size;
        offset_page.offset = depth;
        start = SteadyClock::now();
        c = catalog->ListJobs(filter, offset_page);
        t_offset = SecondsSince(start);
      }
      if (i < 0) {
        first_rows = a.jobs.size();
        deep_rows = b.jobs.size();
        // The deep cursor page and the offset page at the same depth must be the same rows.
        pages_agree =
            b.jobs.size() == c.jobs.size() &&
            std::equal(b.jobs.begin(), b.jobs.end(), c.jobs.begin(),
                       [](const JobRecord& x, const JobRecord& y) { return x.job_id == y.job_id; });
        continue;
      }
      first.push_back(t_first);
      deep.push_back(t_deep);
      if (i < offset_iterations) offset.push_back(t_offset);
    }
    out.push_back({{"filter", name},
                   {"depth", depth},
                   {"first_rows", first_rows},
                   {"deep_rows", deep_rows},
                   {"pages_agree", pages_agree},
                   {"first", LatencySummary(first)},
                   {"deep_cursor", LatencySummary(deep)},
                   {"deep_offset", LatencySummary(offset)}});
  }
  region.End();
  std::cout << json{{"backend", std::string(catalog->Backend())}, {"filters", out}} << "\n";
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Case 5: retention.

// Make `count` bundle directories root/<prefix><i> (i = 1..count) whose files are hard links
// to the files of `src`: a real directory tree to remove per job, without writing gigabytes.
int CmdReplicate(const Args& args) {
  const fs::path src = args.Str("src");
  const fs::path root = args.Str("root");
  const std::string prefix = args.Str("prefix");
  const int64_t count = args.Int("count");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(src)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  const auto start = SteadyClock::now();
  for (int64_t i = 1; i <= count; ++i) {
    const fs::path dir = root / (prefix + std::to_string(i));
    fs::create_directories(dir);
    for (auto& file : files) {
      std::error_code ec;
      fs::create_hard_link(file, dir / file.filename(), ec);
      if (ec == std::errc::too_many_links) {
        // ext4 allows 65,000 links per file: copy it once and link to the copy from now on.
        fs::copy_file(file, dir / file.filename());
        file = dir / file.filename();
      } else if (ec) {
        throw fs::filesystem_error("cannot create hard link", file, dir, ec);
      }
    }
  }
  std::cout << json{{"dirs", count},
                    {"files_per_dir", files.size()},
                    {"seconds", SecondsSince(start)}}
            << "\n";
  return 0;
}

int CmdRetention(const Args& args) {
  auto catalog = Catalog::Open(args.Str("catalog"));
  auto store = ArtifactStore::Open(args.Str("root"));
  SystemClock clock;
  RetentionOptions options;
  options.retention_days = static_cast<int>(args.Int("retention-days", 90));
  options.batch_size = static_cast<int>(args.Int("batch-size", options.batch_size));
  std::vector<double> rss_samples;
  const auto start = SteadyClock::now();
  // One line per batch, so that a run stopped at its time budget still tells how far it got.
  options.on_progress = [&rss_samples, start](int64_t done) {
    rss_samples.push_back(StatusMib("VmRSS"));
    std::cout << json{{"progress", done},
                      {"seconds", SecondsSince(start)},
                      {"rss_mb", rss_samples.back()},
                      {"peak_rss_mb", StatusMib("VmHWM")}}
              << std::endl;
  };
  const double rss_before = StatusMib("VmRSS");
  ResetPeakRss();
  ProfiledRegion region;
  RetentionReport report = CleanupOldResults(*catalog, *store, clock, options);
  const double seconds = SecondsSince(start);
  region.End();
  json facts = MemoryFacts(rss_before);
  facts["seconds"] = seconds;
  facts["removed"] = report.removed;
  facts["jobs_per_s"] = seconds > 0 ? report.removed / seconds : 0;
  facts["progress_calls"] = rss_samples.size();
  if (!rss_samples.empty()) {
    facts["rss_first_progress_mb"] = rss_samples.front();
    facts["rss_last_progress_mb"] = rss_samples.back();
    facts["rss_max_progress_mb"] = *std::max_element(rss_samples.begin(), rss_samples.end());
  }
  std::cout << facts << "\n";
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Case 6: lifecycle.

JobSpec NoopSpec(const std::string& job_id) {
  JobSpec spec;
  spec.job_id = job_id;
  spec.alpha_name = "noop";
  spec.start_date = Date::FromYmd(2020, 1, 1);
  spec.end_date = Date::FromYmd(2020, 12, 31);
  spec.weight_method = "equal";
  spec.config_json = R"({"engine":"noop"})";
  spec.created_by = "bench";
  return spec;
}

std::string RunTag() { return std::to_string(getpid()) + "-" + std::to_string(time(nullptr)); }

// One thread of work per slot, all started together; returns the wall time until all end.
double RunThreads(int threads, const std::function<void(int)>& body) {
  const auto start = SteadyClock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (std::thread& thread : pool) thread.join();
  return SecondsSince(start);
}

// The sizes of the four files of a no-op job's bundle (three empty tables and summary.json, as
// btstore writes them).
constexpr std::array<size_t, 4> kNoopBundleFileSizes = {606, 606, 551, 1076};

void SyncOrThrow(int fd, const fs::path& path) {
  if (::fsync(fd) != 0) throw InternalError("cannot fsync " + path.string());
}

void SyncDir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw InternalError("cannot open " + dir.string());
  SyncOrThrow(fd, dir);
  ::close(fd);
}

// A bundle's durable publication with nothing else: the files of a no-op bundle written and
// flushed in a staging directory, that directory flushed, renamed into `root`, `root` flushed.
void PublishRawBundle(const fs::path& staging_root, const fs::path& root, const std::string& name) {
  const fs::path staged = staging_root / name;
  fs::create_directory(staged);
  const std::string bytes(kNoopBundleFileSizes.back(), 'x');
  for (size_t f = 0; f < kNoopBundleFileSizes.size(); ++f) {
    const fs::path file = staged / ("file" + std::to_string(f));
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw InternalError("cannot create " + file.string());
    if (::write(fd, bytes.data(), kNoopBundleFileSizes[f]) !=
        static_cast<ssize_t>(kNoopBundleFileSizes[f])) {
      throw InternalError("cannot write " + file.string());
    }
    SyncOrThrow(fd, file);
    ::close(fd);
  }
  SyncDir(staged);
  fs::rename(staged, root / name);
  SyncDir(root);
}

// Submit `jobs` no-op jobs named `prefix`-i through the service (not timed).
void SubmitNoops(Service& service, const std::string& prefix, int jobs) {
  for (int i = 0; i < jobs; ++i) service.jobs().Submit(NoopSpec(prefix + std::to_string(i)));
}

CompletionRecord NoopCompletion(const std::string& job_id) {
  CompletionRecord record;
  record.result_path = "/ceiling/" + job_id;
  record.snapshot_id = "ceiling";
  record.dataset_version_ids_json = "{}";
  return record;
}

int CmdThroughput(const Args& args) {
  const std::string url = args.Str("catalog");
  const fs::path root = args.Str("root");
  const int jobs = static_cast<int>(args.Int("jobs"));
  const int workers = static_cast<int>(args.Int("workers", 2));
  const int concurrency = static_cast<int>(args.Int("concurrency", 1));
  const int submitters = static_cast<int>(args.Int("submitters", 1));
  ServiceOptions opened;
  opened.migrate = false;  // `migrate` is its own step of the benchmark
  const std::string tag = RunTag();

  // Each submitter is a client with its own service (its own catalog connections), submitting
  // one job at a time, as separate users or processes do.
  std::vector<std::unique_ptr<Service>> clients;
  for (int s = 0; s < submitters; ++s) clients.push_back(Service::Open(url, root.string(), opened));
  ProfiledRegion region;
  const double submit_s = RunThreads(submitters, [&](int s) {
    for (int i = s; i < jobs; i += submitters) {
      clients[s]->jobs().Submit(NoopSpec("noop-" + tag + "-" + std::to_string(i)));
    }
  });

  std::atomic<int> completed{0};
  std::atomic<int> other{0};
  // Each worker has its own service (its own catalog connections), as worker processes do.
  std::vector<std::unique_ptr<Service>> services;
  std::vector<std::unique_ptr<Worker>> pool;
  for (int w = 0; w < workers; ++w) {
    WorkerOptions options;
    options.worker_id = "bench-" + tag + "-" + std::to_string(w);
    options.concurrency = concurrency;
    options.until_idle = true;
    options.on_event = [&](const WorkerEvent& event) {
      if (event.kind == WorkerEvent::Kind::kCompleted) {
        ++completed;
      } else if (event.kind == WorkerEvent::Kind::kFailed ||
                 event.kind == WorkerEvent::Kind::kCancelled) {
        ++other;
      }
    };
    services.push_back(Service::Open(url, root.string(), opened));
    pool.push_back(services.back()->NewWorker(options));
  }
  const double process_s = RunThreads(workers, [&](int w) { pool[w]->Run(); });
  region.End();
  std::cout << json{{"jobs", jobs},
                    {"workers", workers},
                    {"concurrency", concurrency},
                    {"submitters", submitters},
                    {"completed", completed.load()},
                    {"not_completed", other.load()},
                    {"submit_s", submit_s},
                    {"process_s", process_s},
                    {"submit_jobs_per_s", jobs / submit_s},
                    {"process_jobs_per_s", completed.load() / process_s},
                    {"end_to_end_jobs_per_s", completed.load() / (submit_s + process_s)},
                    {"peak_rss_mb", StatusMib("VmHWM")}}
            << "\n";
  return 0;
}

// The machine's own limit for case 6: what one job needs of the database and the disk, done back
// to back with nothing in between (no engine, no encoding, no worker): the claim's commit (one
// job claimed), the bundle's durable publication (PublishRawBundle) and the completion's commit,
// timed per step. The commits are the catalog's own moves, since a commit's cost is the
// database's log flush whatever the statement. One thread gives the serial ceiling
// 1 / (claim + bundle + completion); `--threads T` runs T such loops at once (T jobs in flight,
// as the workers have), which lets the database and the file system merge concurrent flushes.
int CmdCeiling(const Args& args) {
  const std::string url = args.Str("catalog");
  const fs::path root = args.Str("root");
  const int jobs = static_cast<int>(args.Int("jobs"));
  const int threads = static_cast<int>(args.Int("threads", 1));
  ServiceOptions opened;
  opened.migrate = false;
  auto client = Service::Open(url, root.string(), opened);
  const std::string tag = "ceiling-" + RunTag() + "-";
  SubmitNoops(*client, tag, jobs);
  const fs::path staging_root = root / (".ceiling-staging-" + RunTag());
  fs::create_directories(staging_root);

  struct Steps {
    double claim_s = 0, bundle_s = 0, complete_s = 0;
    int jobs = 0;
  };
  std::vector<Steps> steps(threads);
  ProfiledRegion region;
  const double wall = RunThreads(threads, [&](int t) {
    std::unique_ptr<Catalog> catalog = Catalog::Open(url);
    const std::string worker = tag + std::to_string(t);
    for (;;) {
      auto start = SteadyClock::now();
      std::vector<JobRecord> claimed =
          catalog->ClaimJobs(worker, 1, std::chrono::seconds(30), btstore::Now());
      if (claimed.empty()) return;
      steps[t].claim_s += SecondsSince(start);
      const JobRecord& job = claimed.front();
      start = SteadyClock::now();
      PublishRawBundle(staging_root, root, job.job_id);
      steps[t].bundle_s += SecondsSince(start);
      start = SteadyClock::now();
      catalog->Complete(job.job_id, job.attempt, NoopCompletion(job.job_id), btstore::Now());
      steps[t].complete_s += SecondsSince(start);
      ++steps[t].jobs;
    }
  });
  region.End();
  fs::remove_all(staging_root);
  Steps total;
  for (const Steps& s : steps) {
    total.claim_s += s.claim_s;
    total.bundle_s += s.bundle_s;
    total.complete_s += s.complete_s;
    total.jobs += s.jobs;
  }
  const double per_job_s = (total.claim_s + total.bundle_s + total.complete_s) / total.jobs;
  std::cout << json{{"jobs", total.jobs},
                    {"threads", threads},
                    {"claim_commit_ms", 1e3 * total.claim_s / total.jobs},
                    {"bundle_sync_ms", 1e3 * total.bundle_s / total.jobs},
                    {"complete_commit_ms", 1e3 * total.complete_s / total.jobs},
                    {"serial_jobs_per_s", 1 / per_job_s},
                    {"seconds", wall},
                    {"jobs_per_s", total.jobs / wall}}
            << "\n";
  return 0;
}

// The queue alone: claim and complete no-op jobs with no bundle, `--workers` threads each with
// its own catalog, `--batch` jobs per claim and per completion transaction.
int CmdQueue(const Args& args) {
  const std::string url = args.Str("catalog");
  const fs::path root = args.Str("root");
  const int jobs = static_cast<int>(args.Int("jobs"));
  const int workers = static_cast<int>(args.Int("workers", 2));
  const int batch = static_cast<int>(args.Int("batch", 1));
  ServiceOptions opened;
  opened.migrate = false;
  auto client = Service::Open(url, root.string(), opened);
  const std::string tag = "queue-" + RunTag() + "-";
  SubmitNoops(*client, tag, jobs);
  std::atomic<int> completed{0};
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  ProfiledRegion region;
  const double wall = RunThreads(workers, [&](int w) {
    std::unique_ptr<Catalog> catalog = Catalog::Open(url);
    const std::string worker = tag + std::to_string(w);
    for (;;) {
      std::vector<JobRecord> claimed =
          catalog->ClaimJobs(worker, batch, std::chrono::seconds(30), btstore::Now());
      if (claimed.empty()) return;
      std::vector<CompletionRequest> requests;
      for (const JobRecord& job : claimed) {
        requests.push_back({job.job_id, job.attempt, NoopCompletion(job.job_id)});
      }
      for (const TransitionResult& result : catalog->CompleteMany(requests, btstore::Now())) {
        if (result.applied) ++completed;
      }
    }
  });
  region.End();
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  auto cpu_s = [](const rusage& r) {
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + 1e-6 * (r.ru_utime.tv_usec + r.ru_stime.tv_usec);
  };
  std::cout << json{{"jobs", jobs},
                    {"workers", workers},
                    {"batch", batch},
                    {"completed", completed.load()},
                    {"seconds", wall},
                    {"jobs_per_s", completed.load() / wall},
                    {"client_cpu_s", cpu_s(after) - cpu_s(before)}}
            << "\n";
  return 0;
}

// Poll `job_id` until `done` holds for its row; return false at the deadline.
bool PollJob(Catalog& catalog, const std::string& job_id,
             const std::function<bool(const JobRecord&)>& done, std::chrono::milliseconds every,
             std::chrono::seconds deadline) {
  const auto until = SteadyClock::now() + deadline;
  while (SteadyClock::now() < until) {
    std::optional<JobRecord> job = catalog.FindJob(job_id);
    if (job && done(*job)) return true;
    std::this_thread::sleep_for(every);
  }
  return false;
}

int CmdCancel(const Args& args) {
  const std::string url = args.Str("catalog");
  const fs::path root = args.Str("root");
  const int samples = static_cast<int>(args.Int("samples"));
  ServiceOptions opened;
  opened.migrate = false;  // `migrate` is its own step of the benchmark
  auto client = Service::Open(url, root.string(), opened);
  Catalog& catalog = client->catalog();
  JobService& service = client->jobs();
  WorkerOptions options;
  options.worker_id = "bench-cancel-" + RunTag();
  options.concurrency = 1;
  // Claim new jobs promptly; the cancel path itself does not depend on this.
  options.poll_interval = std::chrono::milliseconds(20);
  // The worker has its own service (its own catalog connections), as a worker process does.
  auto worker_service = Service::Open(url, root.string(), opened);
  std::unique_ptr<Worker> owned_worker = worker_service->NewWorker(options);
  Worker& worker = *owned_worker;
  std::thread runner([&worker] { worker.Run(); });
  std::vector<double> latencies;
  int timeouts = 0;
  const std::string tag = RunTag();
  ProfiledRegion region;
  for (int k = 0; k < samples; ++k) {
    JobSpec spec = NoopSpec("cancel-" + tag + "-" + std::to_string(k));
    spec.alpha_name = "cancel_bench";
    spec.start_date = Date::FromYmd(2010, 1, 4);
    spec.end_date = Date::FromYmd(2019, 12, 31);
    // ~2,500 simulated days at 5 ms each: the job runs ~12 s unless cancelled.
    spec.config_json = R"({"engine":"synthetic","seed":)" + std::to_string(k) +
                       R"(,"symbols":20,"delay_ms_per_day":5})";
    service.Submit(spec);
    const auto poll = std::chrono::milliseconds(1);
    if (!PollJob(
            catalog, spec.job_id,
            [](const JobRecord& job) { return job.status == JobStatus::kRunning; }, poll,
            std::chrono::seconds(30))) {
      ++timeouts;
      continue;
    }
    const auto start = SteadyClock::now();
    service.Cancel(spec.job_id);
    if (PollJob(
            catalog, spec.job_id,
            [](const JobRecord& job) { return job.status == JobStatus::kCancelled; }, poll,
            std::chrono::seconds(30))) {
      latencies.push_back(SecondsSince(start));
    } else {
      ++timeouts;
    }
  }
  region.End();
  worker.Stop();
  runner.join();
  json facts = LatencySummary(latencies);
  facts["backend"] = std::string(catalog.Backend());
  facts["timeouts"] = timeouts;
  facts["all_s"] = latencies;
  std::cout << facts << "\n";
  return 0;
}

// The same result through a worker twice over: an in-process engine that returns the tables it
// holds, and a command engine whose program copies the files of the same bundle into its output
// directory. The difference is the command engine's own cost: starting the program under its
// supervisor, reading and validating the output, and writing it anew (staging, manifest,
// publish are common to both).
class HeldResultEngine : public Engine {
 public:
  explicit HeldResultEngine(const BacktestResult& result) : result_(result) {}
  BacktestResult Run(const JobRecord& job, EngineContext& /*context*/) override {
    BacktestResult result = result_;
    result.job_id = job.job_id;
    return result;
  }

 private:
  const BacktestResult& result_;
};

int CmdEngine(const Args& args) {
  const std::string url = args.Str("catalog");
  const fs::path root = args.Str("root");
  const fs::path src = fs::absolute(args.Str("src"));
  const int repeats = static_cast<int>(args.Int("repeats", 3));
  const BacktestResult held = ReadBundle(src);
  EngineRegistry engines = EngineRegistry::Builtins();
  engines.Register("held", [&held] { return std::make_unique<HeldResultEngine>(held); });
  RegisterCommandEngine(
      engines, ParseEngineFlag("copy=cp '" + src.string() + "'/* \"$BTSTORE_OUTPUT_DIR\"/"));
  ServiceOptions opened;
  opened.engines = &engines;
  auto service = Service::Open(url, root.string(), opened);
  const std::string tag = RunTag();
  json facts = json::object();
  ProfiledRegion region;
  for (const std::string engine : {"held", "copy"}) {
    std::vector<double> seconds;
    for (int k = 0; k < repeats; ++k) {
      JobSpec spec = NoopSpec(engine + "-" + tag + "-" + std::to_string(k));
      spec.config_json = R"({"engine":")" + engine + R"("})";
      service->jobs().Submit(spec);
      WorkerOptions options;
      options.until_idle = true;
      options.poll_interval = std::chrono::milliseconds(1);
      auto start = SteadyClock::now();
      service->NewWorker(options)->Run();
      seconds.push_back(SecondsSince(start));
      if (service->jobs().GetJob(spec.job_id).status != JobStatus::kCompleted) {
        throw InternalError("the " + engine + " job did not complete");
      }
    }
    facts[engine] = LatencySummary(seconds);
    facts[engine]["all_s"] = seconds;
  }
  region.End();
  facts["rows"] = held.daily_signals->num_rows();
  facts["overhead_s"] = facts["copy"]["p50_s"].get<double>() - facts["held"]["p50_s"].get<double>();
  facts["ratio"] = facts["copy"]["p50_s"].get<double>() / facts["held"]["p50_s"].get<double>();
  std::cout << facts << "\n";
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: btstore_bench gen|write|read|migrate|list|replicate|retention|"
                 "throughput|ceiling|queue|cancel|engine [--options]\n";
    return 2;
  }
  const std::string command = argv[1];
  const Args args(argc, argv);
  const std::map<std::string, std::function<int(const Args&)>> commands = {
      {"gen", CmdGen},
      {"write", CmdWrite},
      {"read", CmdRead},
      {"migrate", CmdMigrate},
      {"list", CmdList},
      {"replicate", CmdReplicate},
      {"retention", CmdRetention},
      {"throughput", CmdThroughput},
      {"ceiling", CmdCeiling},
      {"queue", CmdQueue},
      {"cancel", CmdCancel},
      {"engine", CmdEngine}};
  auto it = commands.find(command);
  if (it == commands.end()) {
    std::cerr << "unknown command " << command << "\n";
    return 2;
  }
  return it->second(args);
}

}  // namespace
}  // namespace btstore::bench

int main(int argc, char** argv) {
  // The one place errors leave the process: print them for run_bench.py and exit non-zero.
  try {
    return btstore::bench::Main(argc, argv);
  } catch (const btstore::Error& e) {
    std::cerr << "btstore_bench: " << btstore::ErrorCodeName(e.code()) << ": " << e.what() << "\n";
    return btstore::ExitStatus(e.code());
  } catch (const std::exception& e) {
    std::cerr << "btstore_bench: " << e.what() << "\n";
    return 1;
  }
}
