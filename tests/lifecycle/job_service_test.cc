// JobService: idempotent submission with engine config validation, and the user's moves
// (cancel, resume, pin) with their errors, on every backend.

#include <gtest/gtest.h>

#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "lifecycle/worker_test_util.h"

namespace btstore::testing {
namespace {

using JobServiceTest = LifecycleTest;

TEST_P(JobServiceTest, SubmitDerivesTheJobIdAndIsIdempotent) {
  JobSpec spec = Spec("", R"({"seed":1,"symbols":5})");
  SubmitResult first = service_->Submit(spec);
  EXPECT_TRUE(first.created);
  EXPECT_EQ(first.job.job_id, DeriveJobId(spec));
  EXPECT_EQ(first.job.status, JobStatus::kPending);
  SubmitResult again = service_->Submit(spec);
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.job.id, first.job.id);
  JobPage page = service_->ListJobs({}, {});
  EXPECT_EQ(page.jobs.size(), 1u);
  // An explicit job_id is kept.
  EXPECT_EQ(service_->Submit(Spec("explicit-1", "{}")).job.job_id, "explicit-1");
}

TEST(DeriveJobId, RejectsTextThatIsNotUtf8WithInvalidArgument) {
  const std::pair<std::string, std::string JobSpec::*> fields[] = {
      {"alpha_name", &JobSpec::alpha_name},
      {"weight_method", &JobSpec::weight_method},
      {"created_by", &JobSpec::created_by}};
  for (const auto& [field, member] : fields) {
    JobSpec spec;
    spec.alpha_name = "momentum";
    spec.start_date = Date::FromYmd(2020, 1, 1);
    spec.end_date = Date::FromYmd(2020, 12, 31);
    spec.created_by = "alice";
    spec.*member = "bad\xff\xfe";
    try {
      DeriveJobId(spec);
      ADD_FAILURE() << "derived a job_id from an ill-formed " << field;
    } catch (const InvalidArgument& e) {
      EXPECT_EQ(e.details().at("field"), field) << e.what();
    }
  }
}

TEST(DeriveJobId, RejectsAConfigNumberTooLargeForADoubleWithInvalidArgument) {
  JobSpec spec;
  spec.alpha_name = "momentum";
  spec.created_by = "alice";
  spec.config_json = R"({"seed": 3001e308})";
  EXPECT_THROW(DeriveJobId(spec), InvalidArgument);
}

TEST_P(JobServiceTest, SubmitWithoutJobIdRejectsTextThatIsNotUtf8) {
  JobSpec spec = Spec("", "{}");
  spec.alpha_name = "bad\xff\xfe";
  EXPECT_THROW(service_->Submit(spec), InvalidArgument);
  EXPECT_TRUE(service_->ListJobs({}, {}).jobs.empty());
}

TEST_P(JobServiceTest, SubmitRejectsConfigsTheEngineCannotRun) {
  struct Case {
    std::string config, method, field;
  };
  for (const Case& c : std::vector<Case>{
           {"not json", "equal", "config_json"},
           {"[1]", "equal", "config_json"},
           {R"({"seed": 3001e308})", "equal", "config_json"},
           {R"({"engine":"quantum"})", "equal", "engine"},
           {R"({"symbols":0})", "equal", "symbols"},
           {R"({"seed":"x"})", "equal", "seed"},
           {R"({"delay_ms_per_day":-5})", "equal", "delay_ms_per_day"},
           {"{}", "inverse-vol", "weight_method"},
       }) {
    try {
      service_->Submit(Spec("bad-job", c.config, c.method));
      ADD_FAILURE() << "accepted " << c.config << " / " << c.method;
    } catch (const InvalidArgument& e) {
      EXPECT_EQ(e.details().count("field") ? e.details().at("field") : "", c.field) << e.what();
    }
  }
  EXPECT_FALSE(catalog_->FindJob("bad-job"));
  // The noop engine takes any weight method.
  EXPECT_TRUE(service_->Submit(Spec("noop-job", R"({"engine":"noop"})", "custom")).created);
}

TEST_P(JobServiceTest, CancelOfAPendingJobIsImmediateAndOfATerminalJobInvalid) {
  service_->Submit(Spec("c-1", "{}"));
  JobRecord cancelled = service_->Cancel("c-1");
  EXPECT_EQ(cancelled.status, JobStatus::kCancelled);
  EXPECT_EQ(service_->GetJob("c-1").status, JobStatus::kCancelled);
  EXPECT_THROW(service_->Cancel("c-1"), InvalidTransition);
  EXPECT_THROW(service_->Cancel("no-such-job"), JobNotFound);
}

TEST_P(JobServiceTest, ResumeOnlyFromFailedOrCancelled) {
  service_->Submit(Spec("r-1", "{}"));
  EXPECT_THROW(service_->Resume("r-1"), InvalidTransition);  // pending
  service_->Cancel("r-1");
  JobRecord resumed = service_->Resume("r-1");
  EXPECT_EQ(resumed.status, JobStatus::kPending);
  EXPECT_EQ(resumed.retry_count, 1);
  EXPECT_FALSE(resumed.cancel_requested);
  EXPECT_THROW(service_->Resume("no-such-job"), JobNotFound);
}

TEST_P(JobServiceTest, PinAndGetJob) {
  service_->Submit(Spec("p-1", "{}"));
  service_->Pin("p-1", true);
  EXPECT_TRUE(service_->GetJob("p-1").pinned);
  service_->Pin("p-1", false);
  EXPECT_FALSE(service_->GetJob("p-1").pinned);
  EXPECT_THROW(service_->Pin("no-such-job", true), JobNotFound);
  EXPECT_THROW(service_->GetJob("no-such-job"), JobNotFound);
}

TEST_P(JobServiceTest, HigherPrioritiesAreClaimedFirstThenOldestFirst) {
  for (auto [id, priority] :
       std::vector<std::pair<std::string, Priority>>{{"low-1", Priority::kLow},
                                                     {"normal-1", Priority::kNormal},
                                                     {"high-1", Priority::kHigh},
                                                     {"normal-2", Priority::kNormal},
                                                     {"high-2", Priority::kHigh}}) {
    JobSpec spec = Spec(id, "{}");
    spec.priority = priority;
    service_->Submit(spec);
  }
  std::vector<std::string> order;
  for (int i = 0; i < 5; ++i) {
    for (const JobRecord& job :
         catalog_->ClaimJobs("w", 1, std::chrono::seconds(30), clock_.Now())) {
      order.push_back(job.job_id);
    }
  }
  EXPECT_EQ(order, (std::vector<std::string>{"high-1", "high-2", "normal-1", "normal-2", "low-1"}));
}

TEST_P(JobServiceTest, CreatesTheArtifactRootAndKeepsItCanonical) {
  EXPECT_TRUE(std::filesystem::is_directory(root_));
  EXPECT_EQ(root_, std::filesystem::canonical(root_));
  EXPECT_TRUE(root_.is_absolute());
}

INSTANTIATE_TEST_SUITE_P(Backends, JobServiceTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing
