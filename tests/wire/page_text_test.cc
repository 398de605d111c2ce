// The list route's text writer: byte for byte what PageJson(page).dump() prints, for every kind
// of value a catalog row can hold.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "btstore/wire.h"

namespace btstore::wire {
namespace {

std::string Dumped(const JobPage& page) {
  return PageJson(page).dump(-1, ' ', false, Json::error_handler_t::replace);
}

JobRecord PlainJob() {
  JobRecord job;
  job.id = "5b8e7c1a-0000-4000-8000-000000000001";
  job.job_id = "job-1";
  job.status = JobStatus::kPending;
  job.alpha_name = "momentum";
  job.start_date = Date::Parse("2024-01-01");
  job.end_date = Date::Parse("2024-03-29");
  job.weight_method = "signal";
  job.config_json = "{}";
  job.created_at = ParseTimestamp("2026-01-02T03:04:05.000006Z");
  job.created_by = "alice";
  return job;
}

// Every optional set, metrics of every shape, and strings and JSON columns that need escaping,
// hold UTF-8, or are not UTF-8 at all.
JobRecord FullJob() {
  JobRecord job = PlainJob();
  job.status = JobStatus::kCompleted;
  job.alpha_name = "quote\" backslash\\ tab\t newline\n bell\x07 del\x7f";
  job.weight_method = "élan ✓ 日本";
  job.config_json = R"({"seed": 7, "nested": {"b": [1, 2.5, "x"], "a": null}, "e": 1e-7})";
  job.started_at = ParseTimestamp("2026-01-02T03:04:06Z");
  job.completed_at = ParseTimestamp("9999-12-31T23:59:59.999999Z");
  job.worker_id = "host:123";
  job.progress_pct = 100;
  job.job_timeout_seconds = std::numeric_limits<int>::max();
  job.result_path = "/results/job-1";
  job.metrics.mean_ic = 0.25;
  job.metrics.icir = 1.0;  // integral: printed as 1.0
  job.metrics.hit_rate = 1e-7;
  job.metrics.coverage = -3.0e21;
  job.metrics.long_short_spread = std::numeric_limits<double>::infinity();
  job.metrics.average_turnover = std::nan("");
  job.metrics.decay_half_life = 0.1 + 0.2;
  job.snapshot_id = "snap-\xff\xfe-bad-utf8";
  job.dataset_version_ids_json = "not json";
  job.error_message = "line 1\r\nline 2 \x01";
  job.retry_count = 3;
  job.cost_config_json = "[]";
  job.cost_summary_json = R"({"bps": -12.5})";
  job.priority = Priority::kHigh;
  job.max_retries = 0;
  job.attempt = 7;
  job.cancel_requested = true;
  job.heartbeat_at = ParseTimestamp("2026-01-02T03:04:07.5Z");
  job.lease_expires_at = ParseTimestamp("2026-01-02T03:04:37Z");
  job.run_after = ParseTimestamp("1970-01-01T00:00:00Z");
  job.checkpoint_path = "/results/.checkpoints/job-1";
  job.pinned = true;
  job.expiring_at = ParseTimestamp("2027-01-01T00:00:00Z");
  job.engine = "command:my-engine";
  return job;
}

TEST(PageText, IsPageJsonsDumpForAPlainJob) {
  JobPage page;
  page.jobs = {PlainJob()};
  EXPECT_EQ(PageText(page), Dumped(page));
}

TEST(PageText, IsPageJsonsDumpForEveryKindOfValue) {
  JobPage page;
  page.jobs = {FullJob(), PlainJob(), FullJob()};
  page.next = "eyJjIjoiMjAyNi0wMS0wMiJ9";
  EXPECT_EQ(PageText(page), Dumped(page));
}

TEST(PageText, IsPageJsonsDumpForAnEmptyLastPage) {
  JobPage page;
  EXPECT_EQ(PageText(page), Dumped(page));
  EXPECT_EQ(PageText(page), R"({"jobs":[],"next":null})");
}

TEST(PageText, IsPageJsonsDumpForManyMetricValues) {
  // Doubles across the ranges where the shortest form switches between fixed and exponent.
  JobPage page;
  for (int exponent = -30; exponent <= 30; exponent += 3) {
    JobRecord job = PlainJob();
    job.metrics.mean_ic = std::pow(10.0, exponent);
    job.metrics.icir = -1.0 / 3.0 * std::pow(10.0, exponent);
    job.metrics.hit_rate = std::nextafter(1.0, 2.0);
    job.metrics.coverage = 0.0;
    job.metrics.long_short_spread = -0.0;
    job.metrics.average_turnover = std::numeric_limits<double>::denorm_min();
    job.metrics.decay_half_life = std::numeric_limits<double>::max();
    page.jobs.push_back(job);
  }
  EXPECT_EQ(PageText(page), Dumped(page));
}

}  // namespace
}  // namespace btstore::wire
