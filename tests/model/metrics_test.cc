// The calendar and metric helpers shared by the engines, the reader and the benchmarks.

#include <gtest/gtest.h>

#include <cmath>

#include "btstore/model.h"

namespace btstore {
namespace {

TEST(Weekday, CountsFromMondayBeforeAndAfter1970) {
  EXPECT_EQ(Weekday(Date::Parse("1970-01-01")), 3);  // a Thursday
  EXPECT_EQ(Weekday(Date::Parse("2024-01-01")), 0);  // a Monday
  EXPECT_EQ(Weekday(Date::Parse("2024-01-07")), 6);  // a Sunday
  EXPECT_EQ(Weekday(Date::Parse("1969-12-29")), 0);  // a Monday before the epoch
  EXPECT_TRUE(IsBusinessDay(Date::Parse("2024-01-05")));
  EXPECT_FALSE(IsBusinessDay(Date::Parse("2024-01-06")));
  EXPECT_FALSE(IsBusinessDay(Date::Parse("1969-12-28")));
}

TEST(ComputeIcStats, FollowsTheContractsDefinitions) {
  const IcStats stats = ComputeIcStats({0.1, 0.3, 0.2});
  EXPECT_DOUBLE_EQ(stats.mean_ic, 0.2);
  EXPECT_DOUBLE_EQ(stats.icir, 0.2 / 0.1);          // sample standard deviation 0.1
  EXPECT_EQ(ComputeIcStats({0.5, 0.5}).icir, 0.0);  // no deviation
  const IcStats one = ComputeIcStats({0.5});
  EXPECT_EQ(one.mean_ic, 0.5);
  EXPECT_TRUE(std::isnan(one.icir));  // a sample deviation needs two values
  const IcStats none = ComputeIcStats({});
  EXPECT_TRUE(std::isnan(none.mean_ic));
  EXPECT_TRUE(std::isnan(none.icir));
}

}  // namespace
}  // namespace btstore
