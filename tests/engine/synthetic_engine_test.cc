// The synthetic engine: configuration, determinism, the tables and metrics it computes, and
// resuming from its checkpoints.

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "btstore/engine.h"
#include "btstore/errors.h"
#include "support/result_compare.h"

namespace btstore {
namespace {

using testing::ExpectSameResult;

// Records what the engine does with its context; optionally resumes from a given checkpoint
// and stops once `stop_after_progress` progress reports were made.
class RecordingContext : public EngineContext {
 public:
  void ReportProgress(int pct) override {
    progress.push_back(pct);
    if (stop_after_progress && static_cast<int>(progress.size()) >= *stop_after_progress) {
      stop = true;
    }
  }
  void SaveCheckpoint(std::string_view bytes) override { checkpoints.emplace_back(bytes); }
  std::optional<std::string> LoadCheckpoint() override { return resume_from; }
  bool StopRequested() override { return stop.load(); }

  std::vector<int> progress;
  std::vector<std::string> checkpoints;
  std::optional<std::string> resume_from;
  std::optional<int> stop_after_progress;
  std::atomic<bool> stop{false};
};

JobRecord Job(const std::string& config, const std::string& method = "equal",
              const std::string& start = "2024-01-01", const std::string& end = "2024-03-29") {
  JobRecord job;
  job.job_id = "synthetic-job";
  job.alpha_name = "momentum";
  job.start_date = Date::Parse(start);
  job.end_date = Date::Parse(end);
  job.weight_method = method;
  job.config_json = config;
  job.attempt = 1;
  return job;
}

JobSpec Spec(const std::string& config, const std::string& method = "equal") {
  JobSpec spec;
  spec.job_id = "synthetic-job";
  spec.alpha_name = "momentum";
  spec.start_date = Date::Parse("2024-01-01");
  spec.end_date = Date::Parse("2024-03-29");
  spec.weight_method = method;
  spec.config_json = config;
  return spec;
}

std::vector<double> DoubleColumn(const std::shared_ptr<arrow::Table>& table, int column) {
  auto array = arrow::Concatenate(table->column(column)->chunks()).ValueOrDie();
  auto& doubles = static_cast<const arrow::DoubleArray&>(*array);
  return std::vector<double>(doubles.raw_values(), doubles.raw_values() + doubles.length());
}

std::vector<int32_t> DateColumn(const std::shared_ptr<arrow::Table>& table) {
  auto array = arrow::Concatenate(table->column(0)->chunks()).ValueOrDie();
  auto& dates = static_cast<const arrow::Date32Array&>(*array);
  return std::vector<int32_t>(dates.raw_values(), dates.raw_values() + dates.length());
}

nlohmann::json EngineInfo(const BacktestResult& result) {
  return nlohmann::json::parse(result.extra_summary_json).at("engine");
}

// 2024-01-01 .. 2024-03-29 holds 65 business days (Mondays to Fridays).
constexpr int kDays = 65;

TEST(SyntheticConfig, ParsesDefaultsAndValues) {
  SyntheticConfig defaults = SyntheticConfig::Parse("{}");
  EXPECT_EQ(defaults.seed, 7u);
  EXPECT_EQ(defaults.symbols, 500);
  EXPECT_EQ(defaults.delay_ms_per_day, 0);
  EXPECT_EQ(defaults.checkpoint_every_days, 20);
  EXPECT_FALSE(defaults.fail_at_day);
  EXPECT_EQ(defaults.snapshot_id, "synthetic-v1");

  SyntheticConfig c = SyntheticConfig::Parse(
      R"({"engine":"synthetic","seed":18446744073709551615,"symbols":3,"delay_ms_per_day":5,
          "checkpoint_every_days":0,"fail_at_day":4,"snapshot_id":"snap-9","other":[1]})");
  EXPECT_EQ(c.seed, 18446744073709551615ULL);
  EXPECT_EQ(c.symbols, 3);
  EXPECT_EQ(c.delay_ms_per_day, 5);
  EXPECT_EQ(c.checkpoint_every_days, 0);
  EXPECT_EQ(c.fail_at_day, 4);
  EXPECT_EQ(c.snapshot_id, "snap-9");
  EXPECT_FALSE(SyntheticConfig::Parse(R"({"fail_at_day":null})").fail_at_day);
}

TEST(SyntheticConfig, RejectsWrongTypesAndRanges) {
  for (const char* bad :
       {"not json", "[]", "3", R"({"seed":-1})", R"({"seed":"7"})", R"({"seed":1.5})",
        R"({"symbols":0})", R"({"symbols":100001})", R"({"symbols":"5"})",
        R"({"delay_ms_per_day":-1})", R"({"checkpoint_every_days":-2})", R"({"fail_at_day":-1})",
        R"({"fail_at_day":"x"})", R"({"snapshot_id":""})", R"({"snapshot_id":5})"}) {
    EXPECT_THROW(SyntheticConfig::Parse(bad), InvalidArgument) << bad;
  }
  try {
    SyntheticConfig::Parse(R"({"symbols":0})");
    FAIL() << "no exception";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.details().at("field"), "symbols");
  }
}

TEST(SyntheticEngine, WritesEveryBusinessDayAndSymbolSortedByDateAndPermno) {
  BacktestResult r = GenerateSyntheticResult(Spec(R"({"seed":3,"symbols":7})"));
  ASSERT_EQ(r.daily_signals->num_rows(), kDays * 7);
  ASSERT_EQ(r.daily_ic->num_rows(), kDays);
  EXPECT_TRUE(r.daily_signals->schema()->Equals(*RequiredSchema(kSignalsTable)));
  EXPECT_TRUE(r.daily_weights->schema()->Equals(*RequiredSchema(kWeightsTable)));
  EXPECT_TRUE(r.daily_ic->schema()->Equals(*RequiredSchema(kIcTable)));
  std::vector<int32_t> dates = DateColumn(r.daily_ic);
  EXPECT_EQ(dates.front(), Date::Parse("2024-01-01").days);  // a Monday
  EXPECT_EQ(dates.back(), Date::Parse("2024-03-29").days);   // a Friday
  for (size_t i = 1; i < dates.size(); ++i) {
    EXPECT_LT(dates[i - 1], dates[i]);
    int weekday = ((dates[i] + 3) % 7 + 7) % 7;  // 0 = Monday
    EXPECT_LT(weekday, 5) << Date{dates[i]}.ToString();
  }
  auto permnos = std::static_pointer_cast<arrow::Int64Array>(
      arrow::Concatenate(r.daily_signals->column(1)->chunks()).ValueOrDie());
  EXPECT_EQ(permnos->Value(0), 10001);
  EXPECT_EQ(permnos->Value(6), 10007);
  EXPECT_EQ(r.snapshot_id, "synthetic-v1");
  EXPECT_EQ(r.dataset_version_ids.at("prices"), "synthetic-3");
  EXPECT_EQ(r.job_id, "synthetic-job");
  EXPECT_EQ(r.weight_method, "equal");
}

TEST(SyntheticEngine, SignalIsNanUntilTheLookbackIsFull) {
  BacktestResult r = GenerateSyntheticResult(Spec(R"({"symbols":4})"));
  std::vector<double> signal = DoubleColumn(r.daily_signals, 2);
  for (int day = 0; day < kDays; ++day) {
    for (int s = 0; s < 4; ++s) {
      EXPECT_EQ(std::isnan(signal[day * 4 + s]), day < 19) << "day " << day;
    }
  }
  EXPECT_DOUBLE_EQ(r.metrics.coverage, static_cast<double>(kDays - 19) / kDays);
  // No portfolio before there is a signal.
  EXPECT_EQ(r.daily_weights->num_rows(), (kDays - 19) * 4);
}

TEST(SyntheticEngine, SameConfigAndSnapshotGiveIdenticalResults) {
  const std::string config = R"({"seed":11,"symbols":50,"snapshot_id":"snap-a"})";
  BacktestResult a = GenerateSyntheticResult(Spec(config, "signal"));
  BacktestResult b = GenerateSyntheticResult(Spec(config, "signal"));
  ExpectSameResult(a, b);
  BacktestResult other = GenerateSyntheticResult(Spec(R"({"seed":12,"symbols":50})", "signal"));
  EXPECT_NE(a.metrics.mean_ic, other.metrics.mean_ic);
}

TEST(SyntheticEngine, WeightMethodsShapeThePortfolio) {
  const std::string config = R"({"symbols":10})";
  BacktestResult equal = GenerateSyntheticResult(Spec(config, "equal"));
  BacktestResult signal = GenerateSyntheticResult(Spec(config, "signal"));
  BacktestResult rank = GenerateSyntheticResult(Spec(config, "rank"));
  for (const BacktestResult* r : {&equal, &signal, &rank}) {
    std::vector<int32_t> dates = DateColumn(r->daily_weights);
    std::vector<double> weights = DoubleColumn(r->daily_weights, 2);
    std::map<int32_t, std::pair<double, double>> per_day;  // date -> (net, gross)
    for (size_t i = 0; i < weights.size(); ++i) {
      per_day[dates[i]].first += weights[i];
      per_day[dates[i]].second += std::abs(weights[i]);
    }
    ASSERT_EQ(per_day.size(), static_cast<size_t>(kDays - 19));
    for (const auto& [date, sums] : per_day) {
      EXPECT_NEAR(sums.first, 0.0, 1e-12) << r->weight_method;
      // equal: +1 long and -1 short (1/q on each of q names per side); others: gross 1.
      EXPECT_NEAR(sums.second, r->weight_method == "equal" ? 2.0 : 1.0, 1e-12) << r->weight_method;
    }
  }
  // equal: 10 symbols, quintiles of 2 names at +-0.5 and 6 names at 0.
  std::vector<double> w = DoubleColumn(equal.daily_weights, 2);
  EXPECT_EQ(std::count(w.begin(), w.begin() + 10, 0.5), 2);
  EXPECT_EQ(std::count(w.begin(), w.begin() + 10, -0.5), 2);
  EXPECT_EQ(std::count(w.begin(), w.begin() + 10, 0.0), 6);
  JobRecord job = Job(config, "inverse-vol");
  RecordingContext context;
  EXPECT_THROW(EngineRegistry::Builtins().MakeFor(config)->Run(job, context), InvalidArgument);
}

TEST(SyntheticEngine, MetricsFollowTheirDefinitions) {
  BacktestResult r = GenerateSyntheticResult(Spec(R"({"seed":5,"symbols":200})", "rank"));
  std::vector<double> ic = DoubleColumn(r.daily_ic, 1);
  std::vector<double> finite;
  for (double v : ic) {
    if (std::isfinite(v)) finite.push_back(v);
  }
  ASSERT_EQ(finite.size(), static_cast<size_t>(kDays - 19));
  double mean = 0;
  for (double v : finite) mean += v;
  mean /= finite.size();
  double ss = 0;
  for (double v : finite) ss += (v - mean) * (v - mean);
  double sd = std::sqrt(ss / (finite.size() - 1));
  EXPECT_DOUBLE_EQ(r.metrics.mean_ic, mean);
  EXPECT_DOUBLE_EQ(r.metrics.icir, mean / sd);
  double hits = std::count_if(finite.begin(), finite.end(), [](double v) { return v > 0; });
  EXPECT_DOUBLE_EQ(r.metrics.hit_rate, hits / finite.size());
  for (double v : finite) {
    EXPECT_GE(v, -1.0);
    EXPECT_LE(v, 1.0);
  }
  for (double v : DoubleColumn(r.daily_ic, 2)) {
    if (std::isfinite(v)) {
      EXPECT_GE(v, -1.0);
      EXPECT_LE(v, 1.0);
    }
  }
  EXPECT_TRUE(std::isfinite(r.metrics.long_short_spread));
  EXPECT_GT(r.metrics.average_turnover, 0.0);
  EXPECT_LE(r.metrics.average_turnover, 1.0);
  // A momentum signal on drifting prices predicts a little: positive mean IC over 500 symbols.
  BacktestResult wide = GenerateSyntheticResult(Spec(R"({"seed":5,"symbols":500})", "rank"));
  EXPECT_GT(wide.metrics.mean_ic, 0.0);
}

TEST(SyntheticEngine, ResumingFromAnyCheckpointGivesBitIdenticalResults) {
  const std::string config = R"({"seed":9,"symbols":30,"checkpoint_every_days":10})";
  JobRecord job = Job(config, "signal");
  RecordingContext full;
  BacktestResult uninterrupted = EngineRegistry::Builtins().MakeFor(config)->Run(job, full);
  ASSERT_EQ(full.checkpoints.size(), 6u);  // after days 10, 20, ..., 60 of 65
  EXPECT_EQ(EngineInfo(uninterrupted).at("computed_days"), kDays);
  EXPECT_EQ(full.progress.back(), 100);
  for (size_t i = 0; i < full.checkpoints.size(); ++i) {
    RecordingContext resumed;
    resumed.resume_from = full.checkpoints[i];
    BacktestResult r = EngineRegistry::Builtins().MakeFor(config)->Run(job, resumed);
    ExpectSameResult(uninterrupted, r);
    int resumed_at = static_cast<int>(10 * (i + 1));
    EXPECT_EQ(EngineInfo(r).at("resumed_at_day"), resumed_at);
    EXPECT_EQ(EngineInfo(r).at("computed_days"), kDays - resumed_at);
    EXPECT_EQ(resumed.progress.size(), static_cast<size_t>(kDays - resumed_at));
  }
}

TEST(SyntheticEngine, IgnoresACheckpointOfOtherSettings) {
  const std::string config = R"({"seed":9,"symbols":30,"checkpoint_every_days":10})";
  RecordingContext first;
  EngineRegistry::Builtins().MakeFor(config)->Run(Job(config), first);
  ASSERT_FALSE(first.checkpoints.empty());
  const std::string other = R"({"seed":10,"symbols":30,"checkpoint_every_days":10})";
  RecordingContext resumed;
  resumed.resume_from = first.checkpoints[0];
  BacktestResult r = EngineRegistry::Builtins().MakeFor(other)->Run(Job(other), resumed);
  EXPECT_EQ(EngineInfo(r).at("computed_days"), kDays);
  RecordingContext garbage;
  garbage.resume_from = std::string("not a checkpoint");
  r = EngineRegistry::Builtins().MakeFor(config)->Run(Job(config), garbage);
  EXPECT_EQ(EngineInfo(r).at("computed_days"), kDays);
}

TEST(SyntheticEngine, FailAtDayFailsOnlyTheFirstAttemptAfterCheckpointing) {
  const std::string config =
      R"({"seed":4,"symbols":20,"checkpoint_every_days":0,"fail_at_day":30})";
  JobRecord job = Job(config);
  RecordingContext first;
  EXPECT_THROW(EngineRegistry::Builtins().MakeFor(config)->Run(job, first), std::runtime_error);
  ASSERT_EQ(first.checkpoints.size(), 1u);
  EXPECT_EQ(first.progress.size(), 30u);

  job.attempt = 2;
  RecordingContext second;
  second.resume_from = first.checkpoints[0];
  BacktestResult r = EngineRegistry::Builtins().MakeFor(config)->Run(job, second);
  EXPECT_EQ(EngineInfo(r).at("computed_days"), kDays - 30);
  ExpectSameResult(r, GenerateSyntheticResult(Spec(config)));
}

TEST(SyntheticEngine, StopsWithinADayWhenAsked) {
  const std::string config = R"({"symbols":5})";
  RecordingContext context;
  context.stop_after_progress = 3;
  EXPECT_THROW(EngineRegistry::Builtins().MakeFor(config)->Run(Job(config), context), JobStopped);
  EXPECT_EQ(context.progress.size(), 3u);
}

TEST(SyntheticEngine, AStopInterruptsTheDelayBetweenDays) {
  // A minute per day: without an interruptible wait this test would run for over an hour.
  const std::string config = R"({"symbols":5,"delay_ms_per_day":60000})";
  RecordingContext context;
  std::thread stopper([&] { context.stop = true; });
  EXPECT_THROW(EngineRegistry::Builtins().MakeFor(config)->Run(Job(config), context), JobStopped);
  stopper.join();
  EXPECT_LE(context.progress.size(), 1u);
}

TEST(SyntheticEngine, HandlesARangeWithoutBusinessDays) {
  JobSpec spec = Spec(R"({"symbols":5})");
  spec.start_date = Date::Parse("2024-01-06");  // Saturday
  spec.end_date = Date::Parse("2024-01-07");    // Sunday
  BacktestResult r = GenerateSyntheticResult(spec);
  EXPECT_EQ(r.daily_signals->num_rows(), 0);
  EXPECT_EQ(r.daily_ic->num_rows(), 0);
  EXPECT_TRUE(std::isnan(r.metrics.mean_ic));
}

}  // namespace
}  // namespace btstore
