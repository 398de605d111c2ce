#include <gtest/gtest.h>

#include <cmath>

#include "btstore/errors.h"
#include "btstore/model.h"

namespace btstore {
namespace {

JobSpec ValidSpec() {
  JobSpec spec;
  spec.job_id = "job-1";
  spec.alpha_name = "momentum";
  spec.start_date = Date::Parse("2020-01-01");
  spec.end_date = Date::Parse("2020-12-31");
  spec.created_by = "alice";
  return spec;
}

TEST(JobStatus, NamesRoundTripAndUnknownNamesAreInvalidArguments) {
  for (JobStatus s : {JobStatus::kPending, JobStatus::kRunning, JobStatus::kCompleted,
                      JobStatus::kFailed, JobStatus::kCancelled}) {
    EXPECT_EQ(ParseJobStatus(ToString(s)), s);
  }
  EXPECT_THROW(ParseJobStatus("done"), InvalidArgument);
  EXPECT_THROW(ParseJobStatus("Pending"), InvalidArgument);
  EXPECT_TRUE(IsTerminal(JobStatus::kCancelled));
  EXPECT_FALSE(IsTerminal(JobStatus::kRunning));
}

TEST(JobId, AcceptsTheContractsAlphabet) {
  EXPECT_NO_THROW(ValidateJobId("a"));
  EXPECT_NO_THROW(ValidateJobId("Job_1.2-x"));
  EXPECT_NO_THROW(ValidateJobId(std::string(64, 'z')));
}

TEST(JobId, RejectsPathsDotsNulAndLength) {
  for (std::string bad : {std::string(""), std::string("a/b"), std::string(".."), std::string(".hidden"),
                          std::string("a\0b", 3), std::string(65, 'z'), std::string("a b"),
                          std::string("é")}) {
    EXPECT_THROW(ValidateJobId(bad), InvalidArgument);
  }
}

TEST(JobSpec, ValidSpecPasses) { EXPECT_NO_THROW(ValidateJobSpec(ValidSpec())); }

TEST(JobSpec, EachBadFieldIsNamed) {
  auto expect_field = [](JobSpec spec, const std::string& field) {
    try {
      ValidateJobSpec(spec);
      FAIL() << "accepted a bad " << field;
    } catch (const InvalidArgument& e) {
      EXPECT_EQ(e.details().at("field"), field);
    }
  };
  JobSpec s = ValidSpec();
  s.alpha_name = "";
  expect_field(s, "alpha_name");
  s = ValidSpec();
  s.end_date = Date::Parse("2019-01-01");
  expect_field(s, "end_date");
  s = ValidSpec();
  s.config_json = "[1,2]";
  expect_field(s, "config_json");
  s = ValidSpec();
  s.job_timeout_seconds = 10;
  expect_field(s, "job_timeout");
  s = ValidSpec();
  s.created_by = std::string(256, 'u');
  expect_field(s, "created_by");
}

TEST(Metrics, DefaultsAreMissingAndIndexedByName) {
  Metrics m;
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) EXPECT_TRUE(std::isnan(m.At(i)));
  m.At(2) = 0.5;
  EXPECT_EQ(m.hit_rate, 0.5);
  EXPECT_EQ(Metrics::kNames[2], "hit_rate");
}

}  // namespace
}  // namespace btstore
