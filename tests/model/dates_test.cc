#include <gtest/gtest.h>

#include "btstore/errors.h"
#include "btstore/model.h"

namespace btstore {
namespace {

TEST(Date, ParsesAndFormatsIsoDates) {
  EXPECT_EQ(Date::Parse("1970-01-01").days, 0);
  EXPECT_EQ(Date::Parse("2024-02-29").ToString(), "2024-02-29");
  EXPECT_EQ(Date::Parse("1969-12-31").days, -1);
  EXPECT_EQ(Date::FromYmd(2000, 3, 1).ToString(), "2000-03-01");
  EXPECT_EQ(Date::Parse("9999-12-31").ToString(), "9999-12-31");
}

TEST(Date, FormatsEveryDayWithFourDigitYearsAndTheRestAsPrintfDoes) {
  // Every day of years 1..9999 by steps that hit every month and day width; outside those years
  // (a Date holds any day count) the year keeps its sign and digits.
  for (int32_t days = Date::Parse("0001-01-01").days; days <= Date::Parse("9999-12-31").days;
       days += 37) {
    const std::string text = Date{days}.ToString();
    EXPECT_EQ(Date::Parse(text).days, days) << text;
  }
  EXPECT_EQ(Date{Date::Parse("0001-01-01").days - 1}.ToString(), "0000-12-31");
  EXPECT_EQ(Date{Date::Parse("0001-01-01").days - 367}.ToString(), "-001-12-31");
  EXPECT_EQ(Date{Date::Parse("9999-12-31").days + 1}.ToString(), "10000-01-01");
}

TEST(Date, RejectsDatesThatDoNotExistOrAreMalformed) {
  for (const char* bad : {"2023-02-29", "2024-13-01", "2024-00-10", "0000-01-01", "24-01-01",
                          "2024-1-01", "2024-01-01x", "", "2024/01/01", "2024-01-32"}) {
    EXPECT_THROW(Date::Parse(bad), InvalidArgument) << bad;
  }
}

TEST(Timestamp, RoundTripsWithMicroseconds) {
  Timestamp ts = ParseTimestamp("2026-11-24T13:05:09.123456Z");
  EXPECT_EQ(FormatTimestamp(ts), "2026-11-24T13:05:09.123456Z");
}

TEST(Timestamp, FormatsEveryFieldWithItsWidthAndRoundTrips) {
  EXPECT_EQ(FormatTimestamp(ParseTimestamp("0001-02-03T04:05:06.000007Z")),
            "0001-02-03T04:05:06.000007Z");
  EXPECT_EQ(FormatTimestamp(ParseTimestamp("1969-12-31T23:59:59.999999Z")),
            "1969-12-31T23:59:59.999999Z");
  // A day's worth of microsecond steps of every size, around the epoch and far from it.
  for (const char* base : {"1970-01-01T00:00:00Z", "2026-12-01T06:00:00Z", "9999-12-30T00:00:00Z"}) {
    const Timestamp start = ParseTimestamp(base);
    for (int64_t step = 1; step < 86'400'000'000LL; step = step * 7 + 3) {
      const Timestamp ts = start + std::chrono::microseconds(step);
      EXPECT_EQ(ParseTimestamp(FormatTimestamp(ts)), ts) << FormatTimestamp(ts);
    }
  }
}

TEST(Timestamp, FormatsTheSameTextIntoAFixedBuffer) {
  for (const char* text : {"0001-01-01T00:00:00.000000Z", "2026-11-24T13:05:09.123456Z",
                           "9999-12-31T23:59:59.999999Z"}) {
    const Timestamp ts = ParseTimestamp(text);
    EXPECT_EQ(FormatTimestampText(ts).view(), text);
    EXPECT_EQ(FormatTimestamp(ts), text);
  }
  // Beyond the years 0..9999 (arithmetic on a stored time can get there) printf's digits.
  const Timestamp far = ParseTimestamp("9999-12-31T23:59:59Z") + std::chrono::hours(24);
  EXPECT_EQ(FormatTimestampText(far).view(), "10000-01-01T23:59:59.000000Z");
  EXPECT_EQ(FormatTimestamp(far), "10000-01-01T23:59:59.000000Z");
}

TEST(Timestamp, AcceptsOffsetsDatesAndPostgresForm) {
  EXPECT_EQ(ParseTimestamp("2026-01-31T09:30:00+02:00"), ParseTimestamp("2026-01-31T07:30:00Z"));
  EXPECT_EQ(ParseTimestamp("2026-01-31T09:30:00-01:30"), ParseTimestamp("2026-01-31T11:00:00Z"));
  EXPECT_EQ(ParseTimestamp("2026-01-31"), ParseTimestamp("2026-01-31T00:00:00Z"));
  EXPECT_EQ(ParseTimestamp("2026-01-31 09:30:00.5+00"), ParseTimestamp("2026-01-31T09:30:00.500Z"));
  EXPECT_EQ(ParseTimestamp("2026-01-31T09:30:00"), ParseTimestamp("2026-01-31T09:30:00Z"));
}

TEST(Timestamp, RejectsGarbage) {
  for (const char* bad : {"yesterday", "2026-01-31T25:00:00Z", "2026-01-31T09:30", "2026-01-31T09:30:00.Z",
                          "2026-01-31T09:30:00+2"}) {
    EXPECT_THROW(ParseTimestamp(bad), InvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace btstore
