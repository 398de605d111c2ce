#include "artifact/bundle_fixtures.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace btstore::testing {
namespace {

// Build a float64 array, sprinkling the special values in at fixed positions so that every
// table of a result has them.
void AppendValue(arrow::DoubleBuilder& builder, std::mt19937_64& rng, int64_t row) {
  std::normal_distribution<double> normal(0.0, 1.0);
  double value = normal(rng);
  switch (row % 97) {
    case 3:
      (void)builder.AppendNull();
      return;
    case 5:
      value = std::numeric_limits<double>::quiet_NaN();
      break;
    case 7:
      value = std::numeric_limits<double>::infinity();
      break;
    case 11:
      value = -std::numeric_limits<double>::infinity();
      break;
    case 13:
      value = -0.0;
      break;
    default:
      break;
  }
  (void)builder.Append(value);
}

std::shared_ptr<arrow::Table> Keyed(std::string_view name, int days, int symbols,
                                    std::mt19937_64& rng) {
  arrow::Date32Builder dates;
  arrow::Int64Builder permnos;
  arrow::DoubleBuilder values;
  const int32_t start = Date::FromYmd(2020, 1, 1).days;
  int64_t row = 0;
  for (int d = 0; d < days; ++d) {
    for (int s = 0; s < symbols; ++s, ++row) {
      (void)dates.Append(start + d);
      (void)permnos.Append(10000 + 7 * s);
      AppendValue(values, rng, row);
    }
  }
  return arrow::Table::Make(
      RequiredSchema(name),
      {dates.Finish().ValueOrDie(), permnos.Finish().ValueOrDie(), values.Finish().ValueOrDie()});
}

}  // namespace

BacktestResult MakeResult(int days, int symbols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  BacktestResult result;
  result.job_id = "job-" + std::to_string(seed);
  result.alpha_name = "momentum";
  result.start_date = Date::FromYmd(2020, 1, 1);
  result.end_date = Date{Date::FromYmd(2020, 1, 1).days + std::max(days - 1, 0)};
  result.weight_method = "signal";
  result.config_hash = "cfg-" + std::to_string(seed);
  result.daily_signals = Keyed(kSignalsTable, days, symbols, rng);
  result.daily_weights = Keyed(kWeightsTable, days, symbols, rng);

  arrow::Date32Builder dates;
  arrow::DoubleBuilder ic;
  arrow::DoubleBuilder rank_ic;
  const int32_t start = Date::FromYmd(2020, 1, 1).days;
  for (int d = 0; d < days; ++d) {
    (void)dates.Append(start + d);
    AppendValue(ic, rng, d);
    AppendValue(rank_ic, rng, d + 1);
  }
  result.daily_ic = arrow::Table::Make(
      RequiredSchema(kIcTable),
      {dates.Finish().ValueOrDie(), ic.Finish().ValueOrDie(), rank_ic.Finish().ValueOrDie()});
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  result.metrics.mean_ic = unit(rng) / 3.0;  // not a short decimal: tests shortest round trip
  result.metrics.icir = unit(rng) * 1e-300;
  result.metrics.hit_rate = 0.1;
  result.metrics.coverage = unit(rng);
  result.metrics.long_short_spread = -0.0;
  result.metrics.average_turnover = 1e300;
  result.metrics.decay_half_life = std::numeric_limits<double>::infinity();
  result.snapshot_id = "snap-" + std::to_string(seed);
  result.dataset_version_ids = {{"prices", "v" + std::to_string(seed)}, {"universe", "u1"}};
  result.extra_summary_json = R"({"note":"made by a test","nested":{"k":[1,2.5,null]}})";
  return result;
}

std::string DescribeDifference(const arrow::Table& expected, const arrow::Table& actual) {
  if (!expected.schema()->Equals(*actual.schema(), /*check_metadata=*/false)) {
    return "schema differs: expected {" + expected.schema()->ToString() + "}, found {" +
           actual.schema()->ToString() + "}";
  }
  if (expected.num_rows() != actual.num_rows()) {
    return "row count differs: " + std::to_string(expected.num_rows()) + " vs " +
           std::to_string(actual.num_rows());
  }
  if (expected.num_rows() == 0) return "";
  for (int c = 0; c < expected.num_columns(); ++c) {
    auto a = arrow::Concatenate(expected.column(c)->chunks()).ValueOrDie();
    auto b = arrow::Concatenate(actual.column(c)->chunks()).ValueOrDie();
    std::string column = expected.schema()->field(c)->name();
    if (a->type_id() != arrow::Type::DOUBLE) {
      if (!a->Equals(*b)) return "column " + column + " differs";
      continue;
    }
    const auto& x = static_cast<const arrow::DoubleArray&>(*a);
    const auto& y = static_cast<const arrow::DoubleArray&>(*b);
    for (int64_t i = 0; i < x.length(); ++i) {
      if (x.IsNull(i) != y.IsNull(i))
        return column + " row " + std::to_string(i) + ": null differs";
      if (x.IsNull(i)) continue;
      double u = x.Value(i);
      double v = y.Value(i);
      if (std::memcmp(&u, &v, sizeof u) != 0) {
        return column + " row " + std::to_string(i) + ": " + std::to_string(u) + " vs " +
               std::to_string(v);
      }
    }
  }
  return "";
}

}  // namespace btstore::testing
