// The engine registry, the noop engine, engine reports and the default EngineContext behaviour.

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "btstore/engine.h"
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

// An engine of the test's own: returns an empty result named after its registration.
class CountingEngine : public Engine {
 public:
  explicit CountingEngine(std::atomic<int>* runs) : runs_(runs) {}
  BacktestResult Run(const JobRecord& job, EngineContext&) override {
    ++*runs_;
    BacktestResult result;
    result.job_id = job.job_id;
    result.snapshot_id = "counted";
    return result;
  }

 private:
  std::atomic<int>* runs_;
};

// A factory that refuses every weight method but "ok".
class PickyFactory : public EngineFactory {
 public:
  void Validate(const JobSpec& spec) const override {
    if (spec.weight_method != "ok") {
      throw InvalidArgument("picky refuses " + spec.weight_method, {{"field", "weight_method"}});
    }
  }
  std::unique_ptr<Engine> Make() const override { return nullptr; }
};

JobSpec SpecWith(const std::string& config, const std::string& method) {
  JobSpec spec;
  spec.job_id = "spec-1";
  spec.alpha_name = "momentum";
  spec.start_date = Date::Parse("2024-01-01");
  spec.end_date = Date::Parse("2024-01-31");
  spec.weight_method = method;
  spec.config_json = config;
  spec.created_by = "alice";
  return spec;
}

TEST(EngineRegistry, BuiltinsDefaultToTheSyntheticEngine) {
  const EngineRegistry engines = EngineRegistry::Builtins();
  EXPECT_EQ(engines.Names(), (std::vector<std::string>{"noop", "synthetic"}));
  EXPECT_EQ(engines.EngineNameOf("{}"), "synthetic");
  EXPECT_EQ(engines.EngineNameOf(R"({"engine":"noop"})"), "noop");
  EXPECT_NE(engines.MakeFor("{}"), nullptr);
  EXPECT_NE(engines.MakeFor(R"({"engine":"synthetic"})"), nullptr);
  EXPECT_NE(engines.MakeFor(R"({"engine":"noop"})"), nullptr);
}

TEST(EngineRegistry, RejectsUnknownEnginesAndBadConfigs) {
  const EngineRegistry engines = EngineRegistry::Builtins();
  EXPECT_THROW(engines.MakeFor(R"({"engine":"quantum"})"), InvalidArgument);
  EXPECT_THROW(engines.MakeFor(R"({"engine":7})"), InvalidArgument);
  EXPECT_THROW(engines.MakeFor("not json"), InvalidArgument);
  EXPECT_THROW(engines.MakeFor("[1,2]"), InvalidArgument);
  try {
    engines.MakeFor(R"({"engine":"quantum"})");
    FAIL() << "no exception";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.details().at("field"), "engine");
    EXPECT_EQ(e.details().at("value"), "quantum");
  }
}

TEST(EngineRegistry, RunsEnginesRegisteredByName) {
  std::atomic<int> runs{0};
  EngineRegistry engines;
  engines.Register("counting", [&runs] { return std::make_unique<CountingEngine>(&runs); });
  FlagContext context;
  JobRecord job;
  job.job_id = "j";
  EXPECT_EQ(engines.MakeFor(R"({"engine":"counting"})")->Run(job, context).snapshot_id, "counted");
  EXPECT_EQ(runs.load(), 1);
  // Without a default, a config must name its engine.
  EXPECT_THROW(engines.MakeFor("{}"), InvalidArgument);
  engines.SetDefault("counting");
  engines.MakeFor("{}")->Run(job, context);
  EXPECT_EQ(runs.load(), 2);
}

TEST(EngineRegistry, RefusesBadTakenAndMissingNames) {
  EngineRegistry engines = EngineRegistry::Builtins();
  auto make = [] { return std::unique_ptr<Engine>(); };
  EXPECT_THROW(engines.Register("synthetic", make), InvalidArgument);
  EXPECT_THROW(engines.Register("", make), InvalidArgument);
  EXPECT_THROW(engines.Register("a/b", make), InvalidArgument);
  EXPECT_THROW(engines.Register(std::string(65, 'x'), make), InvalidArgument);
  EXPECT_THROW(engines.Register("empty", std::function<std::unique_ptr<Engine>()>()),
               InvalidArgument);
  EXPECT_THROW(engines.Register("null", std::unique_ptr<EngineFactory>()), InvalidArgument);
  EXPECT_THROW(engines.SetDefault("quantum"), InvalidArgument);
  EXPECT_NO_THROW(engines.Register("my-engine_2.0", make));
}

TEST(EngineRegistry, ValidatesSubmissionsWithTheSelectedEngine) {
  EngineRegistry engines = EngineRegistry::Builtins();
  engines.Register("picky", std::make_unique<PickyFactory>());
  EXPECT_NO_THROW(engines.Validate(SpecWith(R"({"engine":"picky"})", "ok")));
  EXPECT_THROW(engines.Validate(SpecWith(R"({"engine":"picky"})", "rank")), InvalidArgument);
  // The synthetic engine checks its config and weight methods; noop accepts anything.
  EXPECT_NO_THROW(engines.Validate(SpecWith("{}", "rank")));
  EXPECT_THROW(engines.Validate(SpecWith("{}", "custom")), InvalidArgument);
  EXPECT_THROW(engines.Validate(SpecWith(R"({"symbols":0})", "rank")), InvalidArgument);
  EXPECT_NO_THROW(engines.Validate(SpecWith(R"({"engine":"noop"})", "custom")));
  EXPECT_THROW(engines.Validate(SpecWith(R"({"engine":"quantum"})", "rank")), InvalidArgument);
}

TEST(EngineReport, RoundTripsThroughSummaryJson) {
  const EngineReport report{"synthetic", 65, 20, 45};
  const std::optional<EngineReport> read = ReadEngineReport(EngineReportJson(report));
  ASSERT_TRUE(read);
  EXPECT_EQ(read->name, "synthetic");
  EXPECT_EQ(read->business_days, 65);
  EXPECT_EQ(read->resumed_at_day, 20);
  EXPECT_EQ(read->computed_days, 45);
  EXPECT_EQ(EngineReportJson({.name = "noop"}), R"({"engine":{"name":"noop"}})");
  // A whole summary.json, as Python writes it (NaN tokens), with other keys around.
  const std::optional<EngineReport> in_summary = ReadEngineReport(
      R"({"snapshot_id":"s","mean_ic":NaN,"engine":{"name":"x","computed_days":"many"}})");
  ASSERT_TRUE(in_summary);
  EXPECT_EQ(in_summary->name, "x");
  EXPECT_FALSE(in_summary->computed_days);  // the wrong type reads as absent
}

TEST(EngineReport, IsAbsentFromSummariesWithoutOne) {
  EXPECT_FALSE(ReadEngineReport("{}"));
  EXPECT_FALSE(ReadEngineReport("not json"));
  EXPECT_FALSE(ReadEngineReport(R"({"engine":"synthetic"})"));
  EXPECT_FALSE(ReadEngineReport(R"({"engine":{"computed_days":3}})"));
}

TEST(ConfigHash, IsTheSameForTheSameConfigWrittenDifferently) {
  EXPECT_EQ(ConfigHash(R"({"b":1, "a":2})"), ConfigHash(R"({"a":2,"b":1})"));
  EXPECT_NE(ConfigHash(R"({"a":2})"), ConfigHash(R"({"a":3})"));
  EXPECT_EQ(ConfigHash("{}").size(), std::string("sha256:").size() + 64);
  EXPECT_THROW(ConfigHash("[1]"), InvalidArgument);
}

TEST(NoopEngine, ReturnsAnEmptyResultWithTheExactSchemas) {
  FlagContext context;
  BacktestResult result =
      EngineRegistry::Builtins().MakeFor(R"({"engine":"noop"})")->Run(NoopJob(), context);
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
  EXPECT_THROW(EngineRegistry::Builtins().MakeFor(R"({"engine":"noop"})")->Run(NoopJob(), context),
               JobStopped);
}

// A context whose stop flag another thread sets only once the sleep has begun: StopRequested()
// counts its calls, and the stopper waits for the first (the sleep's own first check).
class SleepingContext : public FlagContext {
 public:
  bool StopRequested() override {
    // Counted after reading the flag, so a stop set once a check was counted is seen only by a
    // later check.
    const bool stopped = FlagContext::StopRequested();
    {
      std::lock_guard lock(mutex_);
      ++checks_;
    }
    checked_.notify_all();
    return stopped;
  }
  // Wait until StopRequested() was called at least `count` times.
  void AwaitChecks(int count) {
    std::unique_lock lock(mutex_);
    checked_.wait(lock, [&] { return checks_ >= count; });
  }
  int checks() {
    std::lock_guard lock(mutex_);
    return checks_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable checked_;
  int checks_ = 0;
};

// Long enough that returning before it proves a wake-up, short enough that a broken wake-up
// fails the test instead of running into ctest's timeout.
constexpr std::chrono::seconds kLongSleep{20};

TEST(EngineContext, SleepUnlessStoppedReturnsAtOnceWhenStopped) {
  FlagContext context;
  context.stop = true;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(context.SleepUnlessStopped(kLongSleep));
  EXPECT_LT(std::chrono::steady_clock::now() - start, kLongSleep / 2);
}

TEST(EngineContext, SleepUnlessStoppedWakesWhenAnotherThreadStopsDuringTheSleep) {
  SleepingContext context;
  std::jthread stopper([&] {
    context.AwaitChecks(1);  // the sleep has started and found no stop
    context.stop = true;
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(context.SleepUnlessStopped(kLongSleep));
  EXPECT_LT(std::chrono::steady_clock::now() - start, kLongSleep / 2);
  stopper.join();
  // The stop came after the sleep's first check had found none: it was seen by a later one.
  EXPECT_GE(context.checks(), 2);
}

TEST(EngineContext, SleepUnlessStoppedWaitsTheFullDurationOtherwise) {
  FlagContext context;
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(context.SleepUnlessStopped(std::chrono::milliseconds(20)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(20));
}

}  // namespace
}  // namespace btstore
