// Calendar and metric helpers shared by the engines, the bundle reader and the benchmarks.

#include <cmath>

#include "btstore/model.h"

namespace btstore {

int Weekday(Date date) {
  // 1970-01-01 was a Thursday (weekday 3).
  return static_cast<int>(((static_cast<int64_t>(date.days) + 3) % 7 + 7) % 7);
}

bool IsBusinessDay(Date date) { return Weekday(date) < 5; }

IcStats ComputeIcStats(const std::vector<double>& ic) {
  IcStats stats;
  if (ic.empty()) return stats;
  const double n = static_cast<double>(ic.size());
  double sum = 0;
  for (double v : ic) sum += v;
  stats.mean_ic = sum / n;
  if (ic.size() < 2) return stats;  // a sample deviation needs two values
  double squares = 0;
  for (double v : ic) squares += (v - stats.mean_ic) * (v - stats.mean_ic);
  const double stddev = std::sqrt(squares / (n - 1));
  stats.icir = stddev == 0 ? 0.0 : stats.mean_ic / stddev;
  return stats;
}

}  // namespace btstore
