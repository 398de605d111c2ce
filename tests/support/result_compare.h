#pragma once
// Bit-for-bit comparison of backtest results, for the tests of the engines and the worker.

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "btstore/bundle.h"

namespace btstore::testing {

/// Return true when a and b hold the same bits (NaN payloads and signed zeros included).
inline bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

/// Expect two tables to have the same schema and the same cells, bit for bit.
inline void ExpectSameTable(const std::shared_ptr<arrow::Table>& a,
                            const std::shared_ptr<arrow::Table>& b, const std::string& name) {
  ASSERT_TRUE(a && b) << name;
  ASSERT_TRUE(a->schema()->Equals(*b->schema())) << name;
  ASSERT_EQ(a->num_rows(), b->num_rows()) << name;
  for (int c = 0; c < a->num_columns(); ++c) {
    auto left = arrow::Concatenate(a->column(c)->chunks()).ValueOrDie();
    auto right = arrow::Concatenate(b->column(c)->chunks()).ValueOrDie();
    ASSERT_EQ(left->null_count(), right->null_count()) << name;
    if (left->type_id() == arrow::Type::DOUBLE) {
      auto& l = static_cast<const arrow::DoubleArray&>(*left);
      auto& r = static_cast<const arrow::DoubleArray&>(*right);
      for (int64_t i = 0; i < l.length(); ++i) {
        ASSERT_EQ(l.IsNull(i), r.IsNull(i)) << name << " row " << i;
        if (!l.IsNull(i)) {
          ASSERT_TRUE(SameBits(l.Value(i), r.Value(i)))
              << name << " column " << c << " row " << i << ": " << l.Value(i) << " vs "
              << r.Value(i);
        }
      }
    } else {
      ASSERT_TRUE(left->Equals(*right)) << name << " column " << c;
    }
  }
}

/// Expect the tables and metrics of two results to be identical bit for bit (NaN metrics
/// compare as "both missing").
inline void ExpectSameResult(const BacktestResult& a, const BacktestResult& b) {
  ExpectSameTable(a.daily_signals, b.daily_signals, "daily_signals");
  ExpectSameTable(a.daily_weights, b.daily_weights, "daily_weights");
  ExpectSameTable(a.daily_ic, b.daily_ic, "daily_ic");
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    double x = a.metrics.At(i), y = b.metrics.At(i);
    if (std::isnan(x) || std::isnan(y)) {
      EXPECT_TRUE(std::isnan(x) && std::isnan(y)) << Metrics::kNames[i];
    } else {
      EXPECT_TRUE(SameBits(x, y)) << Metrics::kNames[i] << ": " << x << " vs " << y;
    }
  }
  EXPECT_EQ(a.snapshot_id, b.snapshot_id);
  EXPECT_EQ(a.dataset_version_ids, b.dataset_version_ids);
}

}  // namespace btstore::testing
