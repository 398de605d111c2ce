// Fuzz target: the filters and cursors of a job listing, from the text a user types to the rows
// the SQLite catalog returns (ParseTimestamp, ParseTimestampUpperBound, Date::Parse,
// ParseJobStatus, ValidateListRequest, EncodeCursor, Catalog::ListJobs).
//
// Input: lines, each one field as `btstore list` takes it (an empty or absent line leaves the
// field unset): 0 user, 1 alpha, 2 statuses (comma separated), 3 created-from, 4 created-to,
// 5 from, 6 to, 7 min-mean-ic, 8 min-icir, 9 min-hit-rate, 10 limit, 11 offset, 12 the cursor
// (the rest of the input).
//
// Findings: a crash; an error other than InvalidArgument; a timestamp, date, status or cursor
// that parses but does not parse back the same once formatted; and a page from a catalog of 24
// known jobs that differs from the page computed here from the same rows and filter (which
// rows, their order, the presence and value of the next cursor).

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "btstore/catalog.h"
#include "btstore/model.h"
#include "fuzz/fuzz_support.h"

namespace btstore {
namespace {

using std::chrono::hours;

constexpr size_t kFields = 13;
constexpr int kJobs = 24;

// A catalog with kJobs jobs of every status, two users, three alphas, overlapping backtest
// ranges, metrics with gaps, and pairs of jobs created at the same instant (so the order needs
// its id tie-breaker). Built once per process.
struct KnownCatalog {
  std::unique_ptr<Catalog> catalog;
  std::vector<JobRecord> rows;  // every job, as the catalog stores it
};

KnownCatalog MakeKnownCatalog() {
  KnownCatalog known;
  known.catalog = Catalog::Open("sqlite:" + (fuzz::ScratchDir() / "catalog.db").string());
  known.catalog->Migrate();
  const Timestamp base{std::chrono::sys_days{std::chrono::year{2026} / 11 / 1}};
  for (int i = 0; i < kJobs; ++i) {
    JobSpec spec;
    spec.job_id = "job-" + std::to_string(i);
    spec.alpha_name = i % 3 == 0 ? "momentum" : i % 3 == 1 ? "reversal" : "value";
    spec.created_by = i % 2 == 0 ? "alice" : "bob";
    spec.start_date = Date{Date::FromYmd(2020, 1, 1).days + 20 * i};
    spec.end_date = Date{spec.start_date.days + 30 + 7 * (i % 4)};
    spec.max_retries = 0;
    const int status = i % 5;
    // Jobs that stay pending have low priority so that each claim below takes the job just
    // submitted.
    spec.priority = status == 0 ? Priority::kLow : Priority::kHigh;
    const Timestamp now = base + hours(i / 2);
    known.catalog->Submit(spec, now);
    if (status == 4) known.catalog->RequestCancel(spec.job_id, now);
    if (status == 1 || status == 2 || status == 3) {
      std::vector<JobRecord> claimed =
          known.catalog->ClaimJobs("fuzz-worker", 1, std::chrono::seconds(30), now);
      if (claimed.size() != 1 || claimed[0].job_id != spec.job_id) {
        fuzz::Finding("setting up the known catalog: claimed the wrong job");
      }
      if (status == 2) {
        CompletionRecord record;
        record.result_path = "/results/" + spec.job_id;
        record.metrics.mean_ic = i % 4 == 0 ? Metrics::kMissing : (i - 12) / 100.0;
        record.metrics.icir = (i % 7) / 3.0;
        record.metrics.hit_rate = i % 3 == 0 ? Metrics::kMissing : 0.5 + i / 100.0;
        record.snapshot_id = "snap";
        record.dataset_version_ids_json = R"({"prices": "v1"})";
        known.catalog->Complete(spec.job_id, 1, record, now);
      } else if (status == 3) {
        known.catalog->Fail(spec.job_id, 1, "failed on purpose", std::chrono::milliseconds(0), now);
      }
    }
  }
  PageRequest all;
  all.limit = kMaxListLimit;
  known.rows = known.catalog->ListJobs({}, all).jobs;
  if (known.rows.size() != kJobs) fuzz::Finding("setting up the known catalog: rows missing");
  return known;
}

KnownCatalog& Known() {
  static KnownCatalog known = MakeKnownCatalog();
  return known;
}

bool AtLeast(double value, const std::optional<double>& threshold) {
  return !threshold || (!std::isnan(value) && value >= *threshold);
}

bool Matches(const JobRecord& job, const JobFilter& filter) {
  if (filter.created_by && job.created_by != *filter.created_by) return false;
  if (filter.alpha_name && job.alpha_name != *filter.alpha_name) return false;
  if (!filter.statuses.empty() && std::find(filter.statuses.begin(), filter.statuses.end(),
                                            job.status) == filter.statuses.end()) {
    return false;
  }
  if (filter.created_from && job.created_at < *filter.created_from) return false;
  if (filter.created_to && job.created_at > *filter.created_to) return false;
  if (filter.range_from && job.end_date < *filter.range_from) return false;
  if (filter.range_to && job.start_date > *filter.range_to) return false;
  return AtLeast(job.metrics.mean_ic, filter.min_mean_ic) &&
         AtLeast(job.metrics.icir, filter.min_icir) &&
         AtLeast(job.metrics.hit_rate, filter.min_hit_rate);
}

// The page the catalog must return, computed from its rows without SQL.
JobPage ExpectedPage(const std::vector<JobRecord>& rows, const JobFilter& filter,
                     const PageRequest& page, const std::optional<CursorPosition>& cursor) {
  std::vector<JobRecord> kept;
  for (const JobRecord& job : rows) {
    if (!Matches(job, filter)) continue;
    if (cursor && std::tie(job.created_at, job.id) >= std::tie(cursor->created_at, cursor->id)) {
      continue;
    }
    kept.push_back(job);
  }
  std::sort(kept.begin(), kept.end(), [](const JobRecord& a, const JobRecord& b) {
    return std::tie(a.created_at, a.id) > std::tie(b.created_at, b.id);
  });
  JobPage expected;
  const auto skip = static_cast<size_t>(std::min<int64_t>(page.offset, kJobs));
  for (size_t i = skip; i < kept.size() && expected.jobs.size() < size_t(page.limit); ++i) {
    expected.jobs.push_back(kept[i]);
  }
  if (kept.size() > skip + page.limit) expected.next = EncodeCursor(expected.jobs.back());
  return expected;
}

std::string Ids(const JobPage& page) {
  std::string ids;
  for (const JobRecord& job : page.jobs) ids += job.job_id + " ";
  return ids + (page.next ? "next " + *page.next : "last");
}

// Parse a time bound as `btstore list` does: an upper bound takes a bare date as its whole day.
std::optional<Timestamp> ParseTimestampField(std::string_view text, std::string_view what,
                                             bool upper_bound) {
  std::optional<Timestamp> ts;
  if (text.empty() || !fuzz::Expect(what, {ErrorCode::kInvalidArgument}, [&] {
        ts = upper_bound ? ParseTimestampUpperBound(text, what) : ParseTimestamp(text, what);
      })) {
    return std::nullopt;
  }
  const std::string formatted = FormatTimestamp(*ts);
  std::optional<Timestamp> again;
  fuzz::Expect("ParseTimestamp of FormatTimestamp's " + formatted, {},
               [&] { again = ParseTimestamp(formatted, what); });
  if (*again != *ts) fuzz::Finding("timestamp does not round-trip: " + formatted);
  return ts;
}

std::optional<Date> ParseDateField(std::string_view text, std::string_view what) {
  std::optional<Date> date;
  if (text.empty() ||
      !fuzz::Expect(what, {ErrorCode::kInvalidArgument}, [&] { date = Date::Parse(text, what); })) {
    return std::nullopt;
  }
  if (date->ToString() != text) fuzz::Finding("date does not round-trip: " + date->ToString());
  return date;
}

std::vector<JobStatus> ParseStatuses(std::string_view text) {
  std::vector<JobStatus> statuses;
  while (!text.empty()) {
    std::string_view name = text.substr(0, text.find(','));
    text.remove_prefix(std::min(text.size(), name.size() + 1));
    if (name.empty()) continue;
    std::optional<JobStatus> status;
    if (fuzz::Expect("ParseJobStatus", {ErrorCode::kInvalidArgument},
                     [&] { status = ParseJobStatus(name); })) {
      if (ToString(*status) != name) fuzz::Finding("status does not round-trip");
      statuses.push_back(*status);
    }
  }
  return statuses;
}

std::optional<double> ParseDouble(std::string_view text) {
  if (text.empty()) return std::nullopt;
  const std::string copy(text);
  char* end = nullptr;
  double value = std::strtod(copy.c_str(), &end);
  if (end == copy.c_str()) return std::nullopt;
  return value;
}

template <typename Int>
std::optional<Int> ParseInt(std::string_view text) {
  Int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace
}  // namespace btstore

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace btstore;
  std::vector<std::string_view> fields =
      fuzz::SplitFields(std::string_view(reinterpret_cast<const char*>(data), size), kFields);
  fields.resize(kFields);

  JobFilter filter;
  if (!fields[0].empty()) filter.created_by = std::string(fields[0]);
  if (!fields[1].empty()) filter.alpha_name = std::string(fields[1]);
  filter.statuses = ParseStatuses(fields[2]);
  filter.created_from = ParseTimestampField(fields[3], "--created-from", false);
  filter.created_to = ParseTimestampField(fields[4], "--created-to", true);
  filter.range_from = ParseDateField(fields[5], "--from");
  filter.range_to = ParseDateField(fields[6], "--to");
  filter.min_mean_ic = ParseDouble(fields[7]);
  filter.min_icir = ParseDouble(fields[8]);
  filter.min_hit_rate = ParseDouble(fields[9]);
  PageRequest page;
  page.limit = ParseInt<int>(fields[10]).value_or(kDefaultListLimit);
  page.offset = ParseInt<int64_t>(fields[11]).value_or(0);
  if (!fields[12].empty()) page.after = std::string(fields[12]);

  std::optional<CursorPosition> cursor;
  if (!fuzz::Expect("ValidateListRequest", {ErrorCode::kInvalidArgument},
                    [&] { cursor = ValidateListRequest(filter, page); })) {
    return 0;
  }
  if (cursor) {
    JobRecord last;
    last.created_at = cursor->created_at;
    last.id = cursor->id;
    PageRequest again;
    again.after = EncodeCursor(last);
    std::optional<CursorPosition> decoded;
    fuzz::Expect("ValidateListRequest of a cursor EncodeCursor wrote", {},
                 [&] { decoded = ValidateListRequest({}, again); });
    if (!decoded || decoded->created_at != cursor->created_at || decoded->id != cursor->id) {
      fuzz::Finding("cursor does not round-trip: " + *again.after);
    }
  }

  KnownCatalog& known = Known();
  JobPage got;
  fuzz::Expect("ListJobs", {}, [&] { got = known.catalog->ListJobs(filter, page); });
  JobPage want = ExpectedPage(known.rows, filter, page, cursor);
  if (Ids(got) != Ids(want)) {
    fuzz::Finding("ListJobs returned [" + Ids(got) + "], expected [" + Ids(want) + "]");
  }
  return 0;
}
