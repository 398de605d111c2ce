// ListJobs against an independent reference: 160 jobs over users, alphas, statuses and dates;
// every filter alone and in combination, keyset and offset pages, hostile values.

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "btstore/catalog.h"
#include "btstore/errors.h"
#include "catalog/catalog_test_util.h"

namespace btstore::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::vector<std::string> kUsers = {
    "alice", "bob", "o'brien", "100%", "a_b", "back\\slash", "'; DROP TABLE backtest_jobs; --"};
const std::vector<std::string> kAlphas = {
    "mom_20d", "mom%", "mom_", "MOM_20D", "x'; DROP TABLE backtest_jobs; --", "rev\\1", "val\"q"};
constexpr int kJobs = 160;

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
  // A missing metric (NaN) never satisfies a minimum.
  if (filter.min_mean_ic && !(job.metrics.mean_ic >= *filter.min_mean_ic)) return false;
  if (filter.min_icir && !(job.metrics.icir >= *filter.min_icir)) return false;
  if (filter.min_hit_rate && !(job.metrics.hit_rate >= *filter.min_hit_rate)) return false;
  return true;
}

std::vector<std::string> Reference(std::vector<JobRecord> all, const JobFilter& filter) {
  std::sort(all.begin(), all.end(), [](const JobRecord& a, const JobRecord& b) {
    return std::tie(a.created_at, a.id) > std::tie(b.created_at, b.id);
  });
  std::vector<std::string> ids;
  for (const JobRecord& job : all) {
    if (Matches(job, filter)) ids.push_back(job.job_id);
  }
  return ids;
}

std::vector<std::string> Ids(const std::vector<JobRecord>& jobs) {
  std::vector<std::string> ids;
  for (const JobRecord& job : jobs) ids.push_back(job.job_id);
  return ids;
}

class ListingTest : public CatalogTest {
 protected:
  // Create the jobs and return them as stored.
  std::vector<JobRecord> Populate() {
    std::vector<JobRecord> all;
    for (int i = 0; i < kJobs; ++i) {
      std::string id = "job-" + std::to_string(1000 + i);
      JobSpec spec = Spec(id);
      spec.created_by = kUsers[i % kUsers.size()];
      spec.alpha_name = kAlphas[(i / 2) % kAlphas.size()];
      spec.start_date = Date{Date::Parse("2015-01-01").days + (i * 37) % 2000};
      spec.end_date = Date{spec.start_date.days + (i * 13) % 400};
      // Every tenth job shares its creation time with the previous one: id breaks the tie.
      const int64_t created = (i % 10 == 0 && i > 0 ? i - 1 : i) * 3600;
      const int kind = i % 5;
      // Jobs to be claimed are the only high-priority pending job when they are claimed.
      spec.priority = (kind == 1 || kind == 2 || kind == 3) ? Priority::kHigh : Priority::kLow;
      spec.max_retries = 0;
      catalog_->Submit(spec, At(created));
      if (kind == 4) catalog_->RequestCancel(id, At(created + 1));
      if (kind >= 1 && kind <= 3) {
        std::vector<JobRecord> claimed = catalog_->ClaimJobs("w", 1, seconds(60), At(created));
        EXPECT_EQ(Ids(claimed), std::vector<std::string>{id});
      }
      if (kind == 2) {
        CompletionRecord record;
        record.result_path = "/r/" + id;
        record.metrics.mean_ic = i % 4 == 0 ? Metrics::kMissing : (i % 7 - 3) * 0.01;
        record.metrics.icir = (i % 11) * 0.1;
        record.metrics.hit_rate = 0.4 + (i % 9) * 0.02;
        record.snapshot_id = "s";
        record.dataset_version_ids_json = "{}";
        catalog_->Complete(id, 1, record, At(created + 2));
      }
      if (kind == 3) catalog_->Fail(id, 1, "boom", milliseconds(0), At(created + 2));
      all.push_back(catalog_->GetJob(id));
    }
    return all;
  }

  std::vector<std::string> KeysetPages(const JobFilter& filter, int limit) {
    std::vector<std::string> ids;
    PageRequest page;
    page.limit = limit;
    for (int guard = 0; guard <= kJobs; ++guard) {
      JobPage result = catalog_->ListJobs(filter, page);
      EXPECT_LE(result.jobs.size(), static_cast<size_t>(limit));
      for (const std::string& id : Ids(result.jobs)) ids.push_back(id);
      if (!result.next) return ids;
      EXPECT_EQ(result.jobs.size(), static_cast<size_t>(limit));
      page.after = result.next;
    }
    ADD_FAILURE() << "pages never ended";
    return ids;
  }

  std::vector<std::string> OffsetPages(const JobFilter& filter, int limit) {
    std::vector<std::string> ids;
    PageRequest page;
    page.limit = limit;
    for (;; page.offset += limit) {
      JobPage result = catalog_->ListJobs(filter, page);
      for (const std::string& id : Ids(result.jobs)) ids.push_back(id);
      if (result.jobs.size() < static_cast<size_t>(limit) || page.offset > kJobs) return ids;
    }
  }
};

std::vector<std::pair<std::string, JobFilter>> Filters() {
  std::vector<std::pair<std::string, JobFilter>> filters;
  auto add = [&](std::string name, const std::function<void(JobFilter&)>& set) {
    JobFilter filter;
    set(filter);
    filters.emplace_back(std::move(name), filter);
  };
  add("none", [](JobFilter&) {});
  for (const std::string& user : kUsers) {
    add("user " + user, [&](JobFilter& f) { f.created_by = user; });
  }
  for (const std::string& alpha : kAlphas) {
    add("alpha " + alpha, [&](JobFilter& f) { f.alpha_name = alpha; });
  }
  // Exact equality: a prefix, a LIKE pattern or another case matches nothing else.
  add("alpha prefix", [](JobFilter& f) { f.alpha_name = "mom"; });
  add("alpha pattern", [](JobFilter& f) { f.alpha_name = "mom%20d"; });
  add("user pattern", [](JobFilter& f) { f.created_by = "%"; });
  add("user underscore", [](JobFilter& f) { f.created_by = "a_c"; });
  add("running", [](JobFilter& f) { f.statuses = {JobStatus::kRunning}; });
  add("completed or failed", [](JobFilter& f) {
    f.statuses = {JobStatus::kCompleted, JobStatus::kFailed};
  });
  add("three statuses", [](JobFilter& f) {
    f.statuses = {JobStatus::kPending, JobStatus::kCancelled, JobStatus::kRunning};
  });
  add("created from", [](JobFilter& f) { f.created_from = CatalogTest::At(40 * 3600); });
  add("created to", [](JobFilter& f) { f.created_to = CatalogTest::At(99 * 3600); });
  add("created range", [](JobFilter& f) {
    f.created_from = CatalogTest::At(19 * 3600);  // a shared creation time, inclusive
    f.created_to = CatalogTest::At(59 * 3600);
  });
  add("range from", [](JobFilter& f) { f.range_from = Date::Parse("2018-06-01"); });
  add("range to", [](JobFilter& f) { f.range_to = Date::Parse("2016-03-01"); });
  add("range", [](JobFilter& f) {
    f.range_from = Date::Parse("2016-01-01");
    f.range_to = Date::Parse("2016-12-31");
  });
  add("min mean_ic", [](JobFilter& f) { f.min_mean_ic = 0.0; });
  add("min icir", [](JobFilter& f) { f.min_icir = 0.5; });
  add("min hit_rate", [](JobFilter& f) { f.min_hit_rate = 0.5; });
  add("user and status", [](JobFilter& f) {
    f.created_by = "o'brien";
    f.statuses = {JobStatus::kCompleted, JobStatus::kCancelled};
  });
  add("alpha, created and backtest ranges", [](JobFilter& f) {
    f.alpha_name = "mom%";
    f.created_from = CatalogTest::At(10 * 3600);
    f.range_from = Date::Parse("2016-01-01");
    f.range_to = Date::Parse("2019-12-31");
  });
  add("everything", [](JobFilter& f) {
    f.created_by = "alice";
    f.alpha_name = "mom_20d";
    f.statuses = {JobStatus::kCompleted};
    f.min_icir = 0.0;
    f.created_to = CatalogTest::At(200 * 3600);
  });
  return filters;
}

TEST_P(ListingTest, EveryFilterMatchesAnIndependentReferenceInOrder) {
  std::vector<JobRecord> all = Populate();
  size_t non_empty = 0;
  for (const auto& [name, filter] : Filters()) {
    SCOPED_TRACE(name);
    std::vector<std::string> expected = Reference(all, filter);
    if (!expected.empty()) ++non_empty;
    PageRequest one_page;
    one_page.limit = kMaxListLimit;
    JobPage page = catalog_->ListJobs(filter, one_page);
    EXPECT_EQ(Ids(page.jobs), expected);
    EXPECT_EQ(page.next, std::nullopt);
    EXPECT_EQ(KeysetPages(filter, 7), expected);
  }
  // The reference is not trivially empty: most filters select something.
  EXPECT_GT(non_empty, Filters().size() - 5);
  // Rows come back whole.
  JobPage page = catalog_->ListJobs({}, {});
  ASSERT_FALSE(page.jobs.empty());
  for (const JobRecord& listed : page.jobs) {
    auto stored = std::find_if(all.begin(), all.end(),
                               [&](const JobRecord& j) { return j.job_id == listed.job_id; });
    ASSERT_NE(stored, all.end());
    ExpectSameJob(listed, *stored);
  }
}

TEST_P(ListingTest, ACursorFromAnotherListingKeepsTheFiltersTimeBounds) {
  // A cursor taken from the unfiltered listing, at every depth, then used with a created range:
  // the cursor's time falls above, inside and below the range (the catalog states the tighter
  // of created_to and the cursor's time as the upper bound).
  std::vector<JobRecord> all = Populate();
  const std::vector<std::string> unfiltered = Reference(all, {});
  JobFilter range;
  range.created_from = At(19 * 3600);
  range.created_to = At(59 * 3600);
  const std::vector<std::string> in_range = Reference(all, range);
  PageRequest walk;
  walk.limit = 10;
  for (size_t depth = 10;; depth += 10) {
    JobPage page = catalog_->ListJobs({}, walk);
    if (!page.next) break;
    walk.after = page.next;
    std::vector<std::string> expected;
    for (size_t i = depth; i < unfiltered.size(); ++i) {
      if (std::find(in_range.begin(), in_range.end(), unfiltered[i]) != in_range.end()) {
        expected.push_back(unfiltered[i]);
      }
    }
    PageRequest after;
    after.limit = kMaxListLimit;
    after.after = page.next;
    EXPECT_EQ(Ids(catalog_->ListJobs(range, after).jobs), expected) << "after row " << depth;
  }
}

TEST_P(ListingTest, OffsetPagesMatchTheReference) {
  std::vector<JobRecord> all = Populate();
  JobFilter none;
  EXPECT_EQ(OffsetPages(none, 9), Reference(all, none));
  JobFilter completed;
  completed.statuses = {JobStatus::kCompleted, JobStatus::kRunning};
  EXPECT_EQ(OffsetPages(completed, 4), Reference(all, completed));
}

TEST_P(ListingTest, KeysetPagesNeitherSkipNorRepeatWhileJobsAreInserted) {
  std::vector<JobRecord> all = Populate();
  std::vector<std::string> expected = Reference(all, {});
  std::vector<std::string> seen;
  PageRequest page;
  page.limit = 10;
  for (int inserted = 0;; ++inserted) {
    JobPage result = catalog_->ListJobs({}, page);
    for (const std::string& id : Ids(result.jobs)) seen.push_back(id);
    if (!result.next) break;
    page.after = result.next;
    // Newer jobs arrive between pages, as on a live system.
    catalog_->Submit(Spec("new-" + std::to_string(inserted)), At((kJobs + inserted) * 3600));
  }
  EXPECT_EQ(seen, expected);
}

TEST_P(ListingTest, BadRequestsAreInvalidArguments) {
  catalog_->Submit(Spec("job-1"), At(0));
  catalog_->Submit(Spec("job-2"), At(1));
  PageRequest first;
  first.limit = 1;
  std::optional<std::string> cursor = catalog_->ListJobs({}, first).next;
  ASSERT_TRUE(cursor.has_value());

  std::vector<std::pair<std::string, std::pair<JobFilter, PageRequest>>> bad;
  PageRequest page;
  page.limit = 0;
  bad.push_back({"limit 0", {{}, page}});
  page.limit = kMaxListLimit + 1;
  bad.push_back({"limit too big", {{}, page}});
  page = {};
  page.offset = -1;
  bad.push_back({"negative offset", {{}, page}});
  page = {};
  page.after = cursor;
  page.offset = 5;
  bad.push_back({"cursor and offset", {{}, page}});
  for (const char* garbage : {"", "garbage", "c1.zz.nope", "c1.10.'; DROP TABLE backtest_jobs; --",
                              "c2.10.00000000-0000-4000-8000-000000000000"}) {
    page = {};
    page.after = garbage;
    bad.push_back({std::string("cursor ") + garbage, {{}, page}});
  }
  JobFilter inverted;
  inverted.created_from = At(10);
  inverted.created_to = At(5);
  bad.push_back({"inverted created range", {inverted, {}}});
  inverted = {};
  inverted.range_from = Date::Parse("2020-02-01");
  inverted.range_to = Date::Parse("2020-01-01");
  bad.push_back({"inverted backtest range", {inverted, {}}});

  for (const auto& [name, request] : bad) {
    SCOPED_TRACE(name);
    EXPECT_THROW(catalog_->ListJobs(request.first, request.second), InvalidArgument);
  }
  EXPECT_EQ(catalog_->ListJobs({}, {}).jobs.size(), 2u);
  ASSERT_TRUE(catalog_->FindJob("job-1").has_value());
}

INSTANTIATE_TEST_SUITE_P(Conformance, ListingTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
