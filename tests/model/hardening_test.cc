// Input checks of the model layer found missing by trying to break btstore (issue 10): text that
// is not UTF-8 or too long, configs nested too deep, times and cursors outside the years the
// catalog orders correctly, bounds that are not numbers, and passwords in messages.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "btstore/errors.h"
#include "btstore/model.h"

namespace btstore {
namespace {

constexpr const char* kUuid = "0b7e4d7c-3a51-4b8e-9c1d-2f5a6b7c8d9e";

JobSpec ValidSpec() {
  JobSpec spec;
  spec.job_id = "job-1";
  spec.alpha_name = "momentum";
  spec.start_date = Date::Parse("2020-01-01");
  spec.end_date = Date::Parse("2020-12-31");
  spec.created_by = "alice";
  return spec;
}

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// Item 3 (input side): invalid UTF-8 is refused where it enters, not in the summary writer.
TEST(Utf8, RecognisesWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("momentum"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x88"));
  for (const char* bad : {"bad\xff\xfe", "\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
                          "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\x80"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << bad;
  }
}

TEST(JobSpecInput, InvalidUtf8InTextFieldsIsRejected) {
  for (std::string JobSpec::*field :
       {&JobSpec::alpha_name, &JobSpec::created_by, &JobSpec::weight_method}) {
    JobSpec spec = ValidSpec();
    spec.*field = "bad\xff\xfe";
    EXPECT_THROW(ValidateJobSpec(spec), InvalidArgument);
  }
  JobSpec spec = ValidSpec();
  spec.config_json = "{\"snapshot_id\": \"bad\xff\"}";
  EXPECT_THROW(ValidateJobSpec(spec), InvalidArgument);
}

TEST(JobSpecInput, C1ControlCharactersAreRejectedLikeC0Ones) {
  JobSpec spec = ValidSpec();
  spec.alpha_name =
      "evil\xc2\x9b"
      "31m";
  EXPECT_THROW(ValidateJobSpec(spec), InvalidArgument);
  spec.alpha_name = "caf\xc3\xa9";
  EXPECT_NO_THROW(ValidateJobSpec(spec));
}

// Items 3 and 15: a worker id is bounded, UTF-8 and free of terminal escapes.
TEST(WorkerIdInput, LengthEncodingAndControlCharactersAreChecked) {
  EXPECT_NO_THROW(ValidateWorkerId("host:42:abcdef"));
  EXPECT_NO_THROW(ValidateWorkerId(std::string(kMaxWorkerIdLength, 'w')));
  EXPECT_THROW(ValidateWorkerId(""), InvalidArgument);
  EXPECT_THROW(ValidateWorkerId(std::string(100000, 'w')), InvalidArgument);
  EXPECT_THROW(ValidateWorkerId("evil\n\x1b[31mred"), InvalidArgument);
  EXPECT_THROW(ValidateWorkerId("bad\xff\xfe"), InvalidArgument);
}

// Items 1 and 20: nesting is measured without a parser, and strings do not count.
TEST(JsonDepth, CountsBracketsOutsideStrings) {
  EXPECT_EQ(JsonNestingDepth("1"), 0);
  EXPECT_EQ(JsonNestingDepth("{}"), 1);
  EXPECT_EQ(JsonNestingDepth(R"({"a": [1, {"b": [2]}], "c": {}})"), 4);
  EXPECT_EQ(JsonNestingDepth(R"({"a": "[[[[{{{{"})"), 1);
  EXPECT_EQ(JsonNestingDepth(R"({"a": "\"[[[["})"), 1);
  EXPECT_EQ(JsonNestingDepth(Nested(100000)), 100000);
}

TEST(ConfigInput, DeepOrLargeConfigsAreRejectedSayingTheLimit) {
  JobSpec spec = ValidSpec();
  spec.config_json = "{\"deep\": " + Nested(kMaxJsonDepth - 1) + "}";
  EXPECT_NO_THROW(ValidateJobSpec(spec));

  spec.config_json = "{\"deep\": " + Nested(10000) + "}";
  try {
    ValidateJobSpec(spec);
    FAIL() << "a config nested 10,001 levels deep was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("10001 levels deep"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(kMaxJsonDepth)), std::string::npos);
  }

  spec.config_json = "{\"pad\": \"" + std::string(kMaxConfigBytes, 'x') + "\"}";
  try {
    ValidateJobSpec(spec);
    FAIL() << "a config larger than the limit was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(kMaxConfigBytes)), std::string::npos);
  }
}

// Item 16: a bare date as an upper bound covers that whole day.
TEST(TimestampUpperBound, BareDateCoversTheWholeDay) {
  EXPECT_EQ(FormatTimestamp(ParseTimestampUpperBound("2026-11-01")), "2026-11-01T23:59:59.999999Z");
  EXPECT_EQ(ParseTimestampUpperBound("2026-11-01T10:00:00Z"),
            ParseTimestamp("2026-11-01T10:00:00Z"));
  EXPECT_EQ(FormatTimestamp(ParseTimestampUpperBound("9999-12-31")), "9999-12-31T23:59:59.999999Z");
}

// Item 17: offsets cannot carry a time outside the years 1..9999.
TEST(Timestamp, TimesOutsideYearsOneToNineThousandInUtcAreRejected) {
  for (const char* bad :
       {"9999-12-31T23:00:00-01:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:60Z"}) {
    EXPECT_THROW(ParseTimestamp(bad), InvalidArgument) << bad;
    EXPECT_THROW(ParseTimestampUpperBound(bad), InvalidArgument) << bad;
  }
  EXPECT_EQ(FormatTimestamp(ParseTimestamp("9999-12-31T22:00:00-01:00")),
            "9999-12-31T23:00:00.000000Z");
  EXPECT_EQ(FormatTimestamp(ParseTimestamp("0001-01-01T01:30:00+01:00")),
            "0001-01-01T00:30:00.000000Z");
}

// Item 18: cursors and bounds that would give a silently wrong page.
TEST(ListInput, CursorsWithSignedOrOutOfRangeTimesAreRejected) {
  for (std::string bad :
       {"c1.-1.", "c1.+1.", "c1.7fffffffffffffff.", "c1.-0.", "c1.0x10.", "c1.ABC."}) {
    PageRequest page;
    page.after = bad + kUuid;
    EXPECT_THROW(ValidateListRequest({}, page), InvalidArgument) << bad;
  }
  JobRecord row;
  row.id = kUuid;
  row.created_at = ParseTimestamp("9999-12-31T23:59:59.999999Z");
  PageRequest page;
  page.after = EncodeCursor(row);
  EXPECT_NO_THROW(ValidateListRequest({}, page));
}

TEST(ListInput, MetricBoundsMustBeFinite) {
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity()}) {
    JobFilter filter;
    filter.min_mean_ic = bad;
    EXPECT_THROW(ValidateListRequest(filter, {}), InvalidArgument);
    filter = {};
    filter.min_icir = bad;
    EXPECT_THROW(ValidateListRequest(filter, {}), InvalidArgument);
    filter = {};
    filter.min_hit_rate = bad;
    EXPECT_THROW(ValidateListRequest(filter, {}), InvalidArgument);
  }
  JobFilter filter;
  filter.min_mean_ic = -0.5;
  EXPECT_NO_THROW(ValidateListRequest(filter, {}));
}

TEST(ListInput, UserAndAlphaFiltersMustBeShortUtf8) {
  JobFilter filter;
  filter.created_by = "bad\xff\xfe";
  EXPECT_THROW(ValidateListRequest(filter, {}), InvalidArgument);
  filter = {};
  filter.alpha_name = std::string(256, 'a');
  EXPECT_THROW(ValidateListRequest(filter, {}), InvalidArgument);
  filter.alpha_name = std::string(255, 'a');
  EXPECT_NO_THROW(ValidateListRequest(filter, {}));
}

// Item 12: passwords never reach a message.
TEST(RedactCredentials, HidesUrlPasswordsAndPasswordKeysInAnyCase) {
  EXPECT_EQ(RedactCredentials("unknown catalog URL 'postgresq://user:s3cret@db/x'"),
            "unknown catalog URL 'postgresq://user:***@db/x'");
  EXPECT_EQ(RedactCredentials(R"(in URI: "postgresql://user:s3cret@[::1")"),
            R"(in URI: "postgresql://user:***@[::1")");
  EXPECT_EQ(RedactCredentials("postgresql://u:pa/ss@w@h:5432/db?sslmode=require"),
            "postgresql://u:***@h:5432/db?sslmode=require");
  EXPECT_EQ(RedactCredentials("postgresql://h/db?user=u&password=s3cret&sslmode=require"),
            "postgresql://h/db?user=u&password=***&sslmode=require");
  EXPECT_EQ(RedactCredentials("host=db PASSWORD = s3cret dbname=x"),
            "host=db PASSWORD = *** dbname=x");
  EXPECT_EQ(RedactCredentials("host=db password='s3 c\\'ret' dbname=x"),
            "host=db password=*** dbname=x");
  EXPECT_EQ(RedactCredentials("sslpassword=s3cret"), "sslpassword=***");
  EXPECT_EQ(RedactCredentials("password authentication failed for user \"u\""),
            "password authentication failed for user \"u\"");
  EXPECT_EQ(RedactCredentials("postgresql://user@db/x and s3://bucket/key"),
            "postgresql://user@db/x and s3://bucket/key");
  EXPECT_EQ(RedactCredentials("password="), "password=***");
}

}  // namespace
}  // namespace btstore
