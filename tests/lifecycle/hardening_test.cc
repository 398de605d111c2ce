// Input limits of the lifecycle layer found missing by trying to break btstore (issue 10): jobs
// larger than the synthetic engine can hold, snapshot ids with terminal escapes, and configs
// nested deeper than JSON code may recurse.

#include <arrow/table.h>
#include <gtest/gtest.h>

#include <string>

#include "btstore/engine.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"

namespace btstore {
namespace {

JobSpec Spec(const std::string& start, const std::string& end, const std::string& config) {
  JobSpec spec;
  spec.job_id = "big";
  spec.alpha_name = "sample";
  spec.start_date = Date::Parse(start);
  spec.end_date = Date::Parse(end);
  spec.weight_method = "signal";
  spec.config_json = config;
  spec.created_by = "btstore";
  return spec;
}

// Item 21: these died of std::bad_alloc; they are refused at once, saying the limit.
TEST(SyntheticEngineLimits, JobsLargerThanTheEngineCanHoldAreInvalidArgumentsStatingTheLimit) {
  for (const JobSpec& spec : {Spec("0001-01-01", "9999-12-31", R"({"symbols": 100000})"),
                              Spec("2020-01-01", "2403-04-30", R"({"symbols": 100000})"),
                              Spec("2020-01-01", "2030-12-31", R"({"symbols": 20000})")}) {
    try {
      GenerateSyntheticResult(spec);
      FAIL() << "accepted " << spec.start_date.ToString() << ".." << spec.end_date.ToString();
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("at most 25000000"), std::string::npos) << e.what();
      EXPECT_EQ(e.details().at("limit"), "25000000");
    }
  }
}

TEST(SyntheticEngineLimits, JobsWithinTheLimitRun) {
  // 26 business days x 1000 symbols.
  BacktestResult result =
      GenerateSyntheticResult(Spec("2020-01-01", "2020-02-05", R"({"symbols": 1000})"));
  EXPECT_EQ(result.daily_ic->num_rows(), 26);
}

// Items 3 and 15: a snapshot id is shown to people; terminal escapes are refused.
TEST(SyntheticEngineLimits, SnapshotIdsWithControlCharactersAreRejected) {
  for (const char* config :
       {R"({"snapshot_id": "evil\u001b[31mred"})", R"({"snapshot_id": "line\nbreak"})",
        R"({"snapshot_id": "c1\u009b"})"}) {
    EXPECT_THROW(SyntheticConfig::Parse(config), InvalidArgument) << config;
  }
  EXPECT_EQ(SyntheticConfig::Parse(R"({"snapshot_id": "caf\u00e9-v1"})").snapshot_id,
            "caf\xc3\xa9-v1");
}

// Items 1 and 20: a job_id is derived from the config; its depth is checked before the config
// is parsed and written out again.
TEST(JobIdDerivation, DeeplyNestedConfigIsInvalidArgument) {
  const int depth = 100000;
  JobSpec spec = Spec("2020-01-01", "2020-12-31",
                      "{\"deep\": " + std::string(depth, '[') + std::string(depth, ']') + "}");
  spec.job_id.clear();
  EXPECT_THROW(DeriveJobId(spec), InvalidArgument);
}

}  // namespace
}  // namespace btstore
