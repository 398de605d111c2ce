// The wire layer: the contract's JSON shapes, request parsing with the front end's names, and
// the error envelope with exit and HTTP statuses.

#include "btstore/wire.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace btstore::wire {
namespace {

JobRecord SampleJob() {
  JobRecord job;
  job.id = "5b8e7c1a-0000-4000-8000-000000000001";
  job.job_id = "job-1";
  job.status = JobStatus::kCompleted;
  job.alpha_name = "momentum";
  job.start_date = Date::Parse("2024-01-01");
  job.end_date = Date::Parse("2024-03-29");
  job.weight_method = "rank";
  job.config_json = R"({"seed":7})";
  job.created_at = ParseTimestamp("2026-01-02T03:04:05.000006Z");
  job.metrics.mean_ic = 0.25;
  job.metrics.icir = std::nan("");
  job.dataset_version_ids_json = "not json";
  job.created_by = "alice";
  return job;
}

TEST(JobJson, HasEveryCatalogColumnInTheContractsShapes) {
  const Json doc = JobJson(SampleJob());
  std::set<std::string> keys;
  for (const auto& [key, value] : doc.items()) keys.insert(key);
  EXPECT_EQ(keys, std::set<std::string>(kJobColumns.begin(), kJobColumns.end()));
  EXPECT_EQ(doc["start_date"], "2024-01-01");
  EXPECT_EQ(doc["created_at"], "2026-01-02T03:04:05.000006Z");
  EXPECT_EQ(doc["status"], "completed");
  EXPECT_EQ(doc["config_json"]["seed"], 7);           // a JSON column is parsed
  EXPECT_EQ(doc["dataset_version_ids"], "not json");  // unless it does not parse
  EXPECT_EQ(doc["mean_ic"], 0.25);
  EXPECT_TRUE(doc["icir"].is_null());  // not finite: null
  EXPECT_TRUE(doc["started_at"].is_null());
  EXPECT_EQ(doc["job_timeout"], kDefaultJobTimeoutSeconds);
}

TEST(JobJson, FieldOrderForPeopleStartsWithTheJobIdAndNamesEveryField) {
  const std::vector<std::string>& order = JobFieldOrder();
  ASSERT_EQ(order.size(), kJobColumns.size());
  EXPECT_EQ(order[0], "job_id");
  EXPECT_EQ(order[1], "id");
  EXPECT_EQ(std::set<std::string>(order.begin(), order.end()),
            std::set<std::string>(kJobColumns.begin(), kJobColumns.end()));
}

TEST(PageJson, CarriesTheNextCursorOrNull) {
  JobPage page;
  page.jobs = {SampleJob()};
  EXPECT_TRUE(PageJson(page)["next"].is_null());
  page.next = "cursor-1";
  const Json doc = PageJson(page);
  EXPECT_EQ(doc["next"], "cursor-1");
  ASSERT_EQ(doc["jobs"].size(), 1u);
  EXPECT_EQ(doc["jobs"][0]["job_id"], "job-1");
}

TEST(SubmitJson, SaysWhetherTheJobWasCreated) {
  const Json doc = SubmitJson({SampleJob(), false});
  EXPECT_EQ(doc, Json({{"job_id", "job-1"}, {"created", false}, {"status", "completed"}}));
}

TEST(ResultJson, NamesTablesMetricsAndWhatTheReadCost) {
  BacktestResult result;
  result.metrics.mean_ic = 0.5;
  result.snapshot_id = "snap";
  result.dataset_version_ids = {{"prices", "v1"}};
  ReadOptions options;
  options.from = Date::Parse("2024-02-01");
  ReadStats stats{100, 2, 3};
  const Json doc = ResultJson("job-1", result, options, stats);
  EXPECT_EQ(doc["job_id"], "job-1");
  EXPECT_EQ(doc["mean_ic"], 0.5);
  EXPECT_TRUE(doc["icir"].is_null());
  EXPECT_EQ(doc["dataset_version_ids"]["prices"], "v1");
  EXPECT_TRUE(doc["tables"].empty());
  EXPECT_EQ(doc["from"], "2024-02-01");
  EXPECT_TRUE(doc["to"].is_null());
  EXPECT_EQ(doc["bytes_read"], 100);
  EXPECT_EQ(doc["row_groups_skipped"], 3);
}

TEST(VerifyJson, ReportsProblemsByKind) {
  VerifyReport report;
  report.checked = 2;
  report.problems.push_back(
      {VerifyProblem::Kind::kOrphanBundle, "", "/r/x", "", "no job row has the name x"});
  const Json doc = VerifyJson(report);
  EXPECT_EQ(doc["checked"], 2);
  EXPECT_EQ(doc["ok"], false);
  EXPECT_EQ(doc["problems"][0]["kind"], "orphan_bundle");
  EXPECT_TRUE(doc["problems"][0]["job_id"].is_null());
  EXPECT_TRUE(doc["problems"][0]["error_code"].is_null());
}

TEST(Errors, EveryErrorBecomesTheEnvelopeWithItsStatuses) {
  const Failure not_found = Classify(JobNotFound("job-9"));
  EXPECT_EQ(not_found.code, ErrorCode::kJobNotFound);
  EXPECT_EQ(not_found.exit_status, 3);
  EXPECT_EQ(not_found.http_status, 404);
  const Json doc = ErrorJson(not_found);
  EXPECT_EQ(doc["error"]["code"], "JobNotFound");
  EXPECT_EQ(doc["error"]["details"]["job_id"], "job-9");
  EXPECT_FALSE(doc["error"]["message"].get<std::string>().empty());

  const Failure unavailable = Classify(CatalogUnavailable("down"));
  EXPECT_EQ(unavailable.exit_status, 5);
  EXPECT_EQ(unavailable.http_status, 503);
  // Anything that is not a btstore::Error is Internal.
  const Failure other = Classify(std::runtime_error("boom"));
  EXPECT_EQ(other.code, ErrorCode::kInternal);
  EXPECT_EQ(other.exit_status, 1);
  EXPECT_EQ(other.http_status, 500);
  EXPECT_EQ(ErrorJson(other)["error"]["details"], Json::object());
}

std::string ErrorMessage(const std::function<void()>& call) {
  try {
    call();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

TEST(ParseListRequest, ParsesEveryFieldFromText) {
  const ListRequest request = ParseListRequest({{"user", "alice"},
                                                {"alpha", "momentum"},
                                                {"status", "completed,failed"},
                                                {"created_from", "2026-01-01"},
                                                {"created_to", "2026-01-31T12:00:00Z"},
                                                {"from", "2020-01-01"},
                                                {"to", "2020-12-31"},
                                                {"min_mean_ic", "0.01"},
                                                {"min_icir", "-1.5"},
                                                {"min_hit_rate", "0.5"},
                                                {"limit", "20"},
                                                {"offset", ""},
                                                {"after", ""}},
                                               FlagName);
  EXPECT_EQ(request.filter.created_by, "alice");
  EXPECT_EQ(request.filter.alpha_name, "momentum");
  EXPECT_EQ(request.filter.statuses,
            (std::vector<JobStatus>{JobStatus::kCompleted, JobStatus::kFailed}));
  EXPECT_EQ(request.filter.created_from, ParseTimestamp("2026-01-01"));
  EXPECT_EQ(request.filter.range_to, Date::Parse("2020-12-31"));
  EXPECT_EQ(request.filter.min_icir, -1.5);
  EXPECT_EQ(request.page.limit, 20);
  EXPECT_EQ(request.page.offset, 0);
  EXPECT_FALSE(request.page.after);
  // Nothing given: the defaults.
  const ListRequest none = ParseListRequest({}, FlagName);
  EXPECT_EQ(none.page.limit, kDefaultListLimit);
  EXPECT_TRUE(none.filter.statuses.empty());
}

TEST(ParseListRequest, NamesTheFieldAsTheFrontEndDoes) {
  auto http = [](std::string_view field) { return std::string(field); };
  EXPECT_NE(ErrorMessage([] {
              ParseListRequest({{"created_from", "yesterday"}}, FlagName);
            }).find("--created-from"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([&] {
              ParseListRequest({{"created_from", "yesterday"}}, http);
            }).find("created_from"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([] {
              ParseListRequest({{"limit", "ten"}}, FlagName);
            }).find("--limit"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([] {
              ParseListRequest({{"min_icir", "1x"}}, FlagName);
            }).find("--min-icir"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([] {
              ParseListRequest({{"colour", "red"}}, FlagName);
            }).find("--colour"),
            std::string::npos);
  // The catalog's own checks run too: a limit out of range, a bad cursor, inverted ranges.
  EXPECT_THROW(ParseListRequest({{"limit", "0"}}, FlagName), InvalidArgument);
  EXPECT_THROW(ParseListRequest({{"after", "garbage"}}, FlagName), InvalidArgument);
  EXPECT_THROW(ParseListRequest({{"from", "2021-01-01"}, {"to", "2020-01-01"}}, FlagName),
               InvalidArgument);
  EXPECT_THROW(ParseListRequest({{"status", "done"}}, FlagName), InvalidArgument);
}

TEST(ParseReadRequest, ParsesDatesAndListsAndRefusesInvertedRanges) {
  const ReadOptions options =
      ParseReadRequest("2020-06-01", "2020-06-30", "signal,,ic", "daily_ic", FlagName);
  EXPECT_EQ(options.from, Date::Parse("2020-06-01"));
  EXPECT_EQ(options.to, Date::Parse("2020-06-30"));
  EXPECT_EQ(options.columns, (std::vector<std::string>{"signal", "ic"}));
  EXPECT_EQ(options.tables, (std::vector<std::string>{"daily_ic"}));
  EXPECT_EQ(ErrorMessage([] { ParseReadRequest("2020-07-01", "2020-06-30", "", "", FlagName); }),
            "--from is after --to");
  EXPECT_FALSE(ParseReadRequest("", "", "", "", FlagName).from);
}

TEST(ParseLenientJson, AcceptsPythonsNonFiniteTokens) {
  const Json doc = ParseLenientJson(R"({"a": NaN, "b": -Infinity, "c": "NaN"})", "doc");
  EXPECT_TRUE(doc["a"].is_null());
  EXPECT_TRUE(doc["b"].is_null());
  EXPECT_EQ(doc["c"], "NaN");  // inside a string it stays
  EXPECT_THROW(ParseLenientJson("{", "doc"), InvalidArgument);
}

TEST(ParseConfigText, RequiresAnObjectAndCompactsIt) {
  EXPECT_EQ(ParseConfigText(R"({ "b": 1, "a": [1, 2] })", "--config"), R"({"a":[1,2],"b":1})");
  EXPECT_NE(ErrorMessage([] { ParseConfigText("[1]", "--config"); }).find("must be a JSON object"),
            std::string::npos);
  EXPECT_THROW(ParseConfigText("{", "--config"), InvalidArgument);
}

}  // namespace
}  // namespace btstore::wire
