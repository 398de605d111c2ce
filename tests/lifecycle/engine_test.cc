// Engine selection, the noop engine and the default EngineContext behaviour.

#include "btstore/engine.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "btstore/errors.h"

namespace btstore {
namespace {

// A context outside a worker whose stop flag the test controls.
class FlagContext : public EngineContext {
 public:
  void ReportProgress(int pct) override { progress = pct; }
  void SaveCheckpoint(std::string_view) override {}
  std::optional<std::string> LoadCheckpoint() override { return std::nullopt; }
  bool StopRequested() override { return stop.load(); }

  std::atomic<bool> stop{false};
  std::atomic<int> progress{-1};
};

JobRecord NoopJob() {
  JobRecord job;
  job.job_id = "noop-1";
  job.alpha_name = "momentum";
  job.start_date = Date::Parse("2024-01-01");
  job.end_date = Date::Parse("2024-01-31");
  job.weight_method = "equal";
  job.config_json = R"({"engine":"noop"})";
  job.attempt = 1;
  return job;
}

TEST(MakeEngine, DefaultsToTheSyntheticEngine) {
  EXPECT_NE(MakeEngine("{}"), nullptr);
  EXPECT_NE(MakeEngine(R"({"engine":"synthetic"})"), nullptr);
  EXPECT_NE(MakeEngine(R"({"engine":"noop"})"), nullptr);
}

TEST(MakeEngine, RejectsUnknownEnginesAndBadConfigs) {
  EXPECT_THROW(MakeEngine(R"({"engine":"quantum"})"), InvalidArgument);
  EXPECT_THROW(MakeEngine(R"({"engine":7})"), InvalidArgument);
  EXPECT_THROW(MakeEngine("not json"), InvalidArgument);
  EXPECT_THROW(MakeEngine("[1,2]"), InvalidArgument);
  try {
    MakeEngine(R"({"engine":"quantum"})");
    FAIL() << "no exception";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.details().at("field"), "engine");
    EXPECT_EQ(e.details().at("value"), "quantum");
  }
}

TEST(NoopEngine, ReturnsAnEmptyResultWithTheExactSchemas) {
  FlagContext context;
  BacktestResult result = MakeEngine(R"({"engine":"noop"})")->Run(NoopJob(), context);
  ASSERT_TRUE(result.daily_signals && result.daily_weights && result.daily_ic);
  EXPECT_TRUE(result.daily_signals->schema()->Equals(*RequiredSchema(kSignalsTable)));
  EXPECT_TRUE(result.daily_weights->schema()->Equals(*RequiredSchema(kWeightsTable)));
  EXPECT_TRUE(result.daily_ic->schema()->Equals(*RequiredSchema(kIcTable)));
  EXPECT_EQ(result.daily_signals->num_rows(), 0);
  EXPECT_EQ(result.daily_weights->num_rows(), 0);
  EXPECT_EQ(result.daily_ic->num_rows(), 0);
  EXPECT_EQ(result.snapshot_id, "noop");
  EXPECT_EQ(result.dataset_version_ids, (std::map<std::string, std::string>{{"none", "0"}}));
  EXPECT_EQ(result.job_id, "noop-1");
  EXPECT_EQ(result.config_hash.rfind("sha256:", 0), 0u);
  EXPECT_EQ(context.progress.load(), 100);
}

TEST(NoopEngine, StopsWhenAsked) {
  FlagContext context;
  context.stop = true;
  EXPECT_THROW(MakeEngine(R"({"engine":"noop"})")->Run(NoopJob(), context), JobStopped);
}

TEST(EngineContext, SleepUnlessStoppedReturnsAtOnceWhenStopped) {
  FlagContext context;
  context.stop = true;
  // An hour-long wait must return immediately; the test would time out otherwise.
  EXPECT_TRUE(context.SleepUnlessStopped(std::chrono::hours(1)));
}

TEST(EngineContext, SleepUnlessStoppedWakesWhenAnotherThreadStops) {
  FlagContext context;
  std::thread stopper([&] { context.stop = true; });
  EXPECT_TRUE(context.SleepUnlessStopped(std::chrono::hours(1)));
  stopper.join();
}

TEST(EngineContext, SleepUnlessStoppedWaitsTheFullDurationOtherwise) {
  FlagContext context;
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(context.SleepUnlessStopped(std::chrono::milliseconds(20)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(20));
}

}  // namespace
}  // namespace btstore
