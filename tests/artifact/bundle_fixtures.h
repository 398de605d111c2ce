#pragma once
/// Deterministic bundles for the artifact tests and the kill-test child process.

#include <arrow/api.h>

#include <cstdint>
#include <memory>

#include "btstore/bundle.h"

namespace btstore::testing {

/// Return a valid result: `days` consecutive dates from 2020-01-01 and `symbols` permnos per
/// day, sorted by (date, permno), deterministic in `seed`. The float columns hold NaN, nulls,
/// +Inf and -Inf besides ordinary values; the metrics are finite except decay_half_life (+Inf,
/// which reads back as NaN).
BacktestResult MakeResult(int days, int symbols, uint64_t seed);

/// Compare two tables cell for cell: same schema, same nulls, doubles bit for bit.
/// Returns an empty string when equal, otherwise a description of the first difference.
std::string DescribeDifference(const arrow::Table& expected, const arrow::Table& actual);

}  // namespace btstore::testing
