// The synthetic engine: a deterministic momentum backtest on simulated prices.
//
// Prices follow a random walk whose daily log return for (date, symbol) is drawn from a
// counter-based generator keyed by (seed, date, symbol): any day can be computed without
// replaying the days before it, so a resumed attempt gives bit-identical rows. Each symbol has a
// slowly changing drift (redrawn every kDriftBlockDays calendar days), which makes trailing
// returns mildly predictive: the signal has a small positive IC, as a real momentum signal would.

#include <arrow/api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

#include "btstore/engine.h"
#include "btstore/errors.h"
#include "engine/engine_internal.h"

namespace btstore {

namespace {

constexpr int64_t kFirstPermno = 10001;
constexpr int kLookbackDays = 20;    // the signal: trailing 20-business-day log return
constexpr int kMaxDecayLag = 10;     // IC horizons (business days) used for decay_half_life
constexpr int kDriftBlockDays = 28;  // calendar days over which a symbol's drift is constant
constexpr double kDriftScale = 0.002;
constexpr double kNoiseScale = 0.02;
constexpr int kMaxSymbols = 100000;
// (business day, symbol) cells of one run: its state keeps two doubles per cell and its tables
// about 40 bytes more, copied once while they are built, so about 2.5 GiB at the limit (e.g.
// ten years of 10,000 symbols). Larger runs would die of std::bad_alloc.
constexpr int64_t kMaxSyntheticCells = 25'000'000;
constexpr int kMaxDelayMsPerDay = 60000;
constexpr int kMaxSnapshotIdLength = 255;
constexpr char kCheckpointMagic[8] = {'B', 'T', 'S', 'Y', 'N', 'C', 'K', '1'};

// Streams of the generator, so the drift and noise draws are independent.
constexpr uint64_t kNoiseStream = 1;
constexpr uint64_t kDriftStream = 2;

uint64_t HashKey(uint64_t seed, uint64_t stream, int64_t a, int64_t b, uint64_t draw) {
  uint64_t h = SplitMix64(seed ^ SplitMix64(stream));
  h = SplitMix64(h ^ static_cast<uint64_t>(a));
  h = SplitMix64(h ^ static_cast<uint64_t>(b));
  return SplitMix64(h ^ draw);
}

// A uniform draw in the open interval (0, 1).
double Uniform(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }

// A standard normal draw (Box-Muller) for one key.
double Normal(uint64_t seed, uint64_t stream, int64_t a, int64_t b) {
  double u1 = Uniform(HashKey(seed, stream, a, b, 0));
  double u2 = Uniform(HashKey(seed, stream, a, b, 1));
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// Floor division, so that drift blocks are aligned for dates before 1970 too.
int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// The log return of `symbol` on `date` (close of the previous business day to close of `date`).
double LogReturn(uint64_t seed, Date date, int symbol) {
  double drift = Normal(seed, kDriftStream, FloorDiv(date.days, kDriftBlockDays), symbol);
  double noise = Normal(seed, kNoiseStream, date.days, symbol);
  return kDriftScale * drift + kNoiseScale * noise;
}

// Business days from `start` to `end` inclusive, followed by `extra` business days after `end`
// (the future returns that the last days' ICs are measured against).
std::vector<Date> BusinessDays(Date start, Date end, int extra, size_t* in_range) {
  std::vector<Date> days;
  for (Date d = start; d <= end; d.days++) {
    if (IsBusinessDay(d)) days.push_back(d);
  }
  *in_range = days.size();
  for (Date d{end.days + 1}; extra > 0; d.days++) {
    if (IsBusinessDay(d)) {
      days.push_back(d);
      --extra;
    }
  }
  return days;
}

double Nan() { return std::numeric_limits<double>::quiet_NaN(); }

// Pearson correlation of x and y at the indices `idx`; NaN with fewer than 3 points or no
// variance.
double Pearson(const std::vector<double>& x, const std::vector<double>& y,
               const std::vector<int>& idx) {
  if (idx.size() < 3) return Nan();
  double mx = 0, my = 0;
  for (int i : idx) {
    mx += x[i];
    my += y[i];
  }
  mx /= idx.size();
  my /= idx.size();
  double sxx = 0, syy = 0, sxy = 0;
  for (int i : idx) {
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
    sxy += (x[i] - mx) * (y[i] - my);
  }
  if (sxx == 0 || syy == 0) return Nan();
  return sxy / std::sqrt(sxx * syy);
}

// Ranks (1-based, ties averaged) of x at `idx`, stored at the same indices of the result.
std::vector<double> Ranks(const std::vector<double>& x, const std::vector<int>& idx) {
  std::vector<int> order = idx;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return x[a] < x[b]; });
  std::vector<double> ranks(x.size(), Nan());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && x[order[j + 1]] == x[order[i]]) ++j;
    double rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) ranks[order[k]] = rank;
    i = j + 1;
  }
  return ranks;
}

double Mean(const std::vector<double>& values) {
  double sum = 0;
  int64_t n = 0;
  for (double v : values) {
    if (std::isfinite(v)) {
      sum += v;
      ++n;
    }
  }
  return n == 0 ? Nan() : sum / static_cast<double>(n);
}

// FNV-1a: a stable hash of the settings a checkpoint belongs to.
uint64_t Fnv1a(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Everything computed so far, per business day; what a checkpoint holds.
struct SyntheticState {
  int64_t symbols = 0;
  int64_t days_done = 0;
  std::vector<double> signals;   // days x symbols; NaN while the lookback is incomplete
  std::vector<double> weights;   // days x symbols; NaN = the symbol is not in the portfolio
  std::vector<double> ic;        // per day: Pearson IC against the next day's return
  std::vector<double> rank_ic;   // per day: Spearman IC
  std::vector<double> spread;    // per day: top minus bottom quintile next-day return
  std::vector<double> turnover;  // per day: one-way turnover from the previous day
  std::vector<double> lag_ic;    // days x kMaxDecayLag: IC against the return h days ahead

  void Resize(int64_t days) {
    signals.resize(days * symbols, Nan());
    weights.resize(days * symbols, Nan());
    ic.resize(days, Nan());
    rank_ic.resize(days, Nan());
    spread.resize(days, Nan());
    turnover.resize(days, Nan());
    lag_ic.resize(days * kMaxDecayLag, Nan());
  }
};

void AppendBytes(std::string* out, const void* data, size_t size) {
  out->append(static_cast<const char*>(data), size);
}

void AppendDoubles(std::string* out, const std::vector<double>& v, size_t count) {
  AppendBytes(out, v.data(), count * sizeof(double));
}

// Checkpoint layout (native byte order; a checkpoint is read back on the same platform):
// magic, fingerprint, days_done, symbols, then each array's first days_done rows.
std::string Serialize(const SyntheticState& s, uint64_t fingerprint) {
  std::string out;
  AppendBytes(&out, kCheckpointMagic, sizeof(kCheckpointMagic));
  AppendBytes(&out, &fingerprint, sizeof(fingerprint));
  AppendBytes(&out, &s.days_done, sizeof(s.days_done));
  AppendBytes(&out, &s.symbols, sizeof(s.symbols));
  size_t cells = static_cast<size_t>(s.days_done * s.symbols);
  size_t days = static_cast<size_t>(s.days_done);
  AppendDoubles(&out, s.signals, cells);
  AppendDoubles(&out, s.weights, cells);
  AppendDoubles(&out, s.ic, days);
  AppendDoubles(&out, s.rank_ic, days);
  AppendDoubles(&out, s.spread, days);
  AppendDoubles(&out, s.turnover, days);
  AppendDoubles(&out, s.lag_ic, days * kMaxDecayLag);
  return out;
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  bool Read(void* out, size_t size) {
    if (bytes_.size() - pos_ < size) return false;
    std::memcpy(out, bytes_.data() + pos_, size);
    pos_ += size;
    return true;
  }
  bool ReadDoubles(std::vector<double>* v, size_t count) {
    return Read(v->data(), count * sizeof(double));
  }
  bool AtEnd() const { return pos_ == bytes_.size(); }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

// Restore a checkpoint into `s` (already sized for the whole run). Returns false when the
// checkpoint belongs to other settings or is malformed: the run then starts from day 0, which
// gives the same result, only later.
bool Restore(std::string_view bytes, uint64_t fingerprint, int64_t total_days, SyntheticState* s) {
  Reader reader(bytes);
  char magic[sizeof(kCheckpointMagic)];
  uint64_t found_fingerprint = 0;
  int64_t days_done = 0, symbols = 0;
  if (!reader.Read(magic, sizeof(magic)) ||
      std::memcmp(magic, kCheckpointMagic, sizeof(magic)) != 0 ||
      !reader.Read(&found_fingerprint, sizeof(found_fingerprint)) ||
      found_fingerprint != fingerprint || !reader.Read(&days_done, sizeof(days_done)) ||
      !reader.Read(&symbols, sizeof(symbols)) || symbols != s->symbols || days_done < 0 ||
      days_done > total_days) {
    return false;
  }
  size_t cells = static_cast<size_t>(days_done * symbols);
  size_t days = static_cast<size_t>(days_done);
  bool ok = reader.ReadDoubles(&s->signals, cells) && reader.ReadDoubles(&s->weights, cells) &&
            reader.ReadDoubles(&s->ic, days) && reader.ReadDoubles(&s->rank_ic, days) &&
            reader.ReadDoubles(&s->spread, days) && reader.ReadDoubles(&s->turnover, days) &&
            reader.ReadDoubles(&s->lag_ic, days * kMaxDecayLag) && reader.AtEnd();
  if (!ok) {
    int64_t keep_symbols = s->symbols;
    *s = SyntheticState{};
    s->symbols = keep_symbols;
    s->Resize(total_days);
    return false;
  }
  s->days_done = days_done;
  return true;
}

// Fill `weights` (indices `valid`) from the signal by the job's weight method.
void ComputeWeights(const std::string& method, const std::vector<double>& signal,
                    const std::vector<int>& valid, double* weights) {
  const size_t n = valid.size();
  if (n < 2) return;
  if (method == "equal") {
    // +1/q on the top quintile, -1/q on the bottom quintile, 0 elsewhere.
    std::vector<int> order = valid;
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return signal[a] < signal[b]; });
    size_t q = std::max<size_t>(1, n / 5);
    for (int i : valid) weights[i] = 0.0;
    for (size_t k = 0; k < q; ++k) {
      weights[order[k]] = -1.0 / static_cast<double>(q);
      weights[order[n - 1 - k]] = 1.0 / static_cast<double>(q);
    }
    return;
  }
  // "signal" and "rank": proportional to the demeaned score, scaled to gross exposure 1.
  std::vector<double> score = method == "rank" ? Ranks(signal, valid) : signal;
  double mean = 0;
  for (int i : valid) mean += score[i];
  mean /= static_cast<double>(n);
  double gross = 0;
  for (int i : valid) gross += std::abs(score[i] - mean);
  for (int i : valid) weights[i] = gross == 0 ? 0.0 : (score[i] - mean) / gross;
}

// Compute business day `k`: the signal of every symbol, the weights, the ICs, the spread and
// the turnover.
void ComputeDay(int64_t k, const std::vector<Date>& dates, uint64_t seed, const std::string& method,
                SyntheticState* s) {
  const int symbols = static_cast<int>(s->symbols);
  double* signal_row = &s->signals[k * symbols];
  double* weight_row = &s->weights[k * symbols];
  std::vector<double> signal(symbols, Nan());
  std::vector<int> valid;
  if (k >= kLookbackDays - 1) {
    valid.reserve(symbols);
    for (int sym = 0; sym < symbols; ++sym) {
      double sum = 0;
      for (int64_t j = k - kLookbackDays + 1; j <= k; ++j) sum += LogReturn(seed, dates[j], sym);
      signal[sym] = sum;
      valid.push_back(sym);
    }
  }
  std::copy(signal.begin(), signal.end(), signal_row);
  ComputeWeights(method, signal, valid, weight_row);

  std::vector<double> future(symbols);
  for (int h = 1; h <= kMaxDecayLag; ++h) {
    for (int sym : valid) future[sym] = std::expm1(LogReturn(seed, dates[k + h], sym));
    double ic = Pearson(signal, future, valid);
    s->lag_ic[k * kMaxDecayLag + (h - 1)] = ic;
    if (h != 1) continue;
    s->ic[k] = ic;
    s->rank_ic[k] = Pearson(Ranks(signal, valid), Ranks(future, valid), valid);
    if (valid.size() >= 2) {
      std::vector<int> order = valid;
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return signal[a] < signal[b]; });
      size_t q = std::max<size_t>(1, valid.size() / 5);
      double top = 0, bottom = 0;
      for (size_t i = 0; i < q; ++i) {
        bottom += future[order[i]];
        top += future[order[order.size() - 1 - i]];
      }
      s->spread[k] = (top - bottom) / static_cast<double>(q);
    }
  }

  if (k > 0 && !valid.empty()) {
    const double* previous = &s->weights[(k - 1) * symbols];
    bool had_portfolio = false;
    double traded = 0;
    for (int sym = 0; sym < symbols; ++sym) {
      if (!std::isnan(previous[sym])) had_portfolio = true;
      double before = std::isnan(previous[sym]) ? 0.0 : previous[sym];
      double after = std::isnan(weight_row[sym]) ? 0.0 : weight_row[sym];
      traded += std::abs(after - before);
    }
    if (had_portfolio) s->turnover[k] = traded / 2.0;
  }
}

// The seven metrics of a finished run:
// - mean_ic: mean of the finite daily Pearson ICs (signal vs next-day simple return).
// - icir: mean_ic / sample standard deviation of those ICs (0 when it is 0; not annualised),
//   the same definition a reader uses to recompute it.
// - hit_rate: share of days with a finite IC on which the IC is > 0.
// - coverage: share of (day, symbol) cells with a finite signal.
// - long_short_spread: mean daily next-day return of the top signal quintile minus the bottom.
// - average_turnover: mean one-way turnover, sum |w_t - w_{t-1}| / 2, over days that had a
//   portfolio the day before.
// - decay_half_life: the horizon h (business days, interpolated) at which the mean IC against
//   the return h days ahead falls to half the 1-day mean IC; null when the 1-day mean IC is not
//   positive or the IC does not halve within kMaxDecayLag days.
Metrics ComputeMetrics(const SyntheticState& s, int64_t days) {
  Metrics m;
  std::vector<double> finite_ic;
  for (double v : s.ic) {
    if (std::isfinite(v)) finite_ic.push_back(v);
  }
  const IcStats ic_stats = ComputeIcStats(finite_ic);
  m.mean_ic = ic_stats.mean_ic;
  m.icir = ic_stats.icir;
  if (!finite_ic.empty()) {
    auto hits = std::count_if(finite_ic.begin(), finite_ic.end(), [](double v) { return v > 0; });
    m.hit_rate = static_cast<double>(hits) / static_cast<double>(finite_ic.size());
  }
  if (days > 0 && s.symbols > 0) {
    auto finite = std::count_if(s.signals.begin(), s.signals.end(),
                                [](double v) { return std::isfinite(v); });
    m.coverage = static_cast<double>(finite) / static_cast<double>(days * s.symbols);
  }
  m.long_short_spread = Mean(s.spread);
  m.average_turnover = Mean(s.turnover);

  std::vector<double> lag_mean(kMaxDecayLag);
  for (int h = 0; h < kMaxDecayLag; ++h) {
    std::vector<double> at_lag;
    for (int64_t k = 0; k < days; ++k) at_lag.push_back(s.lag_ic[k * kMaxDecayLag + h]);
    lag_mean[h] = Mean(at_lag);
  }
  if (std::isfinite(lag_mean[0]) && lag_mean[0] > 0) {
    double half = lag_mean[0] / 2;
    for (int h = 1; h < kMaxDecayLag; ++h) {
      if (std::isfinite(lag_mean[h]) && lag_mean[h] <= half) {
        // Horizons are 1-based: lag_mean[h] is the IC h+1 days ahead.
        double above = lag_mean[h - 1];
        m.decay_half_life = h + (above - half) / (above - lag_mean[h]);
        break;
      }
    }
  }
  return m;
}

template <typename Builder, typename Value>
std::shared_ptr<arrow::Array> BuildArray(const std::vector<Value>& values) {
  Builder builder;
  internal::ThrowIfArrowError(builder.AppendValues(values), "building a result column");
  std::shared_ptr<arrow::Array> array;
  internal::ThrowIfArrowError(builder.Finish(&array), "building a result column");
  return array;
}

std::shared_ptr<arrow::Table> MakeTable(std::string_view name,
                                        std::vector<std::shared_ptr<arrow::Array>> columns) {
  return arrow::Table::Make(RequiredSchema(name), std::move(columns));
}

// Build the result tables from the state: signals for every (day, symbol), weights where the
// symbol is in the portfolio, one IC row per day; all sorted by (date, permno).
void BuildTables(const SyntheticState& s, const std::vector<Date>& dates, int64_t days,
                 BacktestResult* result) {
  std::vector<int32_t> signal_dates, weight_dates;
  std::vector<int64_t> signal_permnos, weight_permnos;
  std::vector<double> signal_values, weight_values;
  signal_dates.reserve(days * s.symbols);
  signal_permnos.reserve(days * s.symbols);
  signal_values.reserve(days * s.symbols);
  for (int64_t k = 0; k < days; ++k) {
    for (int64_t sym = 0; sym < s.symbols; ++sym) {
      signal_dates.push_back(dates[k].days);
      signal_permnos.push_back(kFirstPermno + sym);
      signal_values.push_back(s.signals[k * s.symbols + sym]);
      double w = s.weights[k * s.symbols + sym];
      if (!std::isnan(w)) {
        weight_dates.push_back(dates[k].days);
        weight_permnos.push_back(kFirstPermno + sym);
        weight_values.push_back(w);
      }
    }
  }
  std::vector<int32_t> ic_dates;
  for (int64_t k = 0; k < days; ++k) ic_dates.push_back(dates[k].days);
  std::vector<double> ic(s.ic.begin(), s.ic.begin() + days);
  std::vector<double> rank_ic(s.rank_ic.begin(), s.rank_ic.begin() + days);

  result->daily_signals =
      MakeTable(kSignalsTable, {BuildArray<arrow::Date32Builder>(signal_dates),
                                BuildArray<arrow::Int64Builder>(signal_permnos),
                                BuildArray<arrow::DoubleBuilder>(signal_values)});
  result->daily_weights =
      MakeTable(kWeightsTable, {BuildArray<arrow::Date32Builder>(weight_dates),
                                BuildArray<arrow::Int64Builder>(weight_permnos),
                                BuildArray<arrow::DoubleBuilder>(weight_values)});
  result->daily_ic = MakeTable(
      kIcTable, {BuildArray<arrow::Date32Builder>(ic_dates), BuildArray<arrow::DoubleBuilder>(ic),
                 BuildArray<arrow::DoubleBuilder>(rank_ic)});
}

bool IsKnownWeightMethod(std::string_view method) {
  return method == "equal" || method == "signal" || method == "rank";
}

class SyntheticEngine : public Engine {
 public:
  BacktestResult Run(const JobRecord& job, EngineContext& context) override {
    const SyntheticConfig config = SyntheticConfig::Parse(job.config_json);
    if (!IsKnownWeightMethod(job.weight_method)) {
      throw InvalidArgument("unknown weight method \"" + job.weight_method + "\"",
                            {{"field", "weight_method"}, {"value", job.weight_method}});
    }
    internal::CheckSyntheticJobSize(job.start_date, job.end_date, config.symbols);
    size_t total = 0;
    const std::vector<Date> dates =
        BusinessDays(job.start_date, job.end_date, kMaxDecayLag, &total);
    const int64_t days = static_cast<int64_t>(total);
    const uint64_t fingerprint =
        Fnv1a(std::to_string(config.seed) + "|" + std::to_string(config.symbols) + "|" +
              job.start_date.ToString() + "|" + job.end_date.ToString() + "|" + job.weight_method);

    SyntheticState state;
    state.symbols = config.symbols;
    state.Resize(days);
    if (std::optional<std::string> checkpoint = context.LoadCheckpoint()) {
      Restore(*checkpoint, fingerprint, days, &state);
    }
    const int64_t resumed_at = state.days_done;

    for (int64_t k = state.days_done; k < days; ++k) {
      context.ThrowIfStopped();
      // Simulates a crash of the engine's first attempt; the checkpoint saved just before lets
      // the retry continue from here.
      if (config.fail_at_day && *config.fail_at_day == k && job.attempt == 1) {
        if (k > 0) context.SaveCheckpoint(Serialize(state, fingerprint));
        throw std::runtime_error("synthetic engine: injected failure at day " + std::to_string(k) +
                                 " (fail_at_day)");
      }
      ComputeDay(k, dates, config.seed, job.weight_method, &state);
      state.days_done = k + 1;
      if (config.delay_ms_per_day > 0) {
        context.SleepUnlessStopped(std::chrono::milliseconds(config.delay_ms_per_day));
      }
      context.ThrowIfStopped();
      if (config.checkpoint_every_days > 0 && state.days_done % config.checkpoint_every_days == 0 &&
          state.days_done < days) {
        context.SaveCheckpoint(Serialize(state, fingerprint));
      }
      context.ReportProgress(static_cast<int>(state.days_done * 100 / days));
    }

    BacktestResult result = ResultFor(job);
    BuildTables(state, dates, days, &result);
    result.metrics = ComputeMetrics(state, days);
    result.snapshot_id = config.snapshot_id;
    result.dataset_version_ids = {{"prices", "synthetic-" + std::to_string(config.seed)},
                                  {"universe", "synthetic-" + std::to_string(config.symbols)}};
    // How much of the run this attempt did: users see that a resume did not start over.
    result.extra_summary_json = EngineReportJson({.name = "synthetic",
                                                  .business_days = days,
                                                  .resumed_at_day = resumed_at,
                                                  .computed_days = days - resumed_at});
    return result;
  }
};

// Runs the engine outside a worker: nothing to stop, no checkpoints.
class StandaloneContext : public EngineContext {
 public:
  void ReportProgress(int) override {}
  void SaveCheckpoint(std::string_view) override {}
  std::optional<std::string> LoadCheckpoint() override { return std::nullopt; }
  bool StopRequested() override { return false; }
};

// Refuses at submission what the engine would refuse when it runs.
class SyntheticFactory : public EngineFactory {
 public:
  void Validate(const JobSpec& spec) const override {
    internal::CheckSyntheticJobSize(spec.start_date, spec.end_date,
                                    SyntheticConfig::Parse(spec.config_json).symbols);
    if (!IsKnownWeightMethod(spec.weight_method)) {
      throw InvalidArgument("unknown weight method \"" + spec.weight_method +
                                "\" for the synthetic engine (known: equal, signal, rank)",
                            {{"field", "weight_method"}, {"value", spec.weight_method}});
    }
  }
  std::unique_ptr<Engine> Make() const override { return std::make_unique<SyntheticEngine>(); }
};

int ReadInt(const nlohmann::json& config, const char* key, int min, int max, int fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) {
    throw InvalidArgument(std::string("config key \"") + key + "\" must be an integer",
                          {{"field", key}});
  }
  int64_t value = it->get<int64_t>();
  if (value < min || value > max) {
    throw InvalidArgument(std::string("config key \"") + key + "\" must be between " +
                              std::to_string(min) + " and " + std::to_string(max),
                          {{"field", key}, {"value", std::to_string(value)}});
  }
  return static_cast<int>(value);
}

}  // namespace

SyntheticConfig SyntheticConfig::Parse(std::string_view config_json) {
  const nlohmann::json config = internal::ParseConfigObject(config_json);
  SyntheticConfig parsed;
  if (auto it = config.find("seed"); it != config.end() && !it->is_null()) {
    if (it->is_number_unsigned()) {
      parsed.seed = it->get<uint64_t>();
    } else if (it->is_number_integer() && it->get<int64_t>() >= 0) {
      parsed.seed = static_cast<uint64_t>(it->get<int64_t>());
    } else {
      throw InvalidArgument("config key \"seed\" must be a non-negative integer",
                            {{"field", "seed"}});
    }
  }
  parsed.symbols = ReadInt(config, "symbols", 1, kMaxSymbols, parsed.symbols);
  parsed.delay_ms_per_day =
      ReadInt(config, "delay_ms_per_day", 0, kMaxDelayMsPerDay, parsed.delay_ms_per_day);
  parsed.checkpoint_every_days =
      ReadInt(config, "checkpoint_every_days", 0, std::numeric_limits<int>::max(),
              parsed.checkpoint_every_days);
  if (auto it = config.find("fail_at_day"); it != config.end() && !it->is_null()) {
    parsed.fail_at_day = ReadInt(config, "fail_at_day", 0, std::numeric_limits<int>::max(), 0);
  }
  if (auto it = config.find("snapshot_id"); it != config.end() && !it->is_null()) {
    // It is shown to people (show, bundle inspect): no terminal control characters either.
    if (!it->is_string() || it->get<std::string>().empty() ||
        it->get<std::string>().size() > kMaxSnapshotIdLength ||
        HasControlCharacter(it->get<std::string>())) {
      throw InvalidArgument(
          "config key \"snapshot_id\" must be a string of 1 to 255 characters without control "
          "characters",
          {{"field", "snapshot_id"}});
    }
    parsed.snapshot_id = it->get<std::string>();
  }
  return parsed;
}

BacktestResult GenerateSyntheticResult(const JobSpec& spec) {
  if (spec.start_date > spec.end_date) {
    throw InvalidArgument("start date " + spec.start_date.ToString() + " is after end date " +
                              spec.end_date.ToString(),
                          {{"field", "start_date"}});
  }
  JobRecord job;
  job.job_id = spec.job_id;
  job.alpha_name = spec.alpha_name;
  job.start_date = spec.start_date;
  job.end_date = spec.end_date;
  job.weight_method = spec.weight_method;
  job.config_json = spec.config_json;
  job.created_by = spec.created_by;
  // Attempt 0: not a worker's attempt, so fail_at_day (first worker attempt only) never fires.
  job.attempt = 0;
  StandaloneContext context;
  return SyntheticEngine().Run(job, context);
}

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

namespace internal {

void CheckSyntheticJobSize(Date start, Date end, int symbols) {
  if (end < start) return;  // an empty range holds nothing; the dates are checked elsewhere
  // Whole weeks have five business days each; count the rest day by day.
  const int64_t span = static_cast<int64_t>(end.days) - start.days + 1;
  int64_t days = span / 7 * 5;
  for (Date d{static_cast<int32_t>(start.days + span / 7 * 7)}; d <= end; d.days++) {
    if (IsBusinessDay(d)) ++days;
  }
  if (days * symbols > kMaxSyntheticCells) {
    throw InvalidArgument(
        "the synthetic engine holds at most " + std::to_string(kMaxSyntheticCells) +
            " (business day, symbol) cells; this job has " + std::to_string(days) +
            " business days x " + std::to_string(symbols) + " symbols = " +
            std::to_string(days * symbols) + ": shorten the date range or use fewer symbols",
        {{"field", "symbols"},
         {"limit", std::to_string(kMaxSyntheticCells)},
         {"value", std::to_string(days * symbols)}});
  }
}

std::unique_ptr<EngineFactory> MakeSyntheticFactory() {
  return std::make_unique<SyntheticFactory>();
}

}  // namespace internal
}  // namespace btstore
