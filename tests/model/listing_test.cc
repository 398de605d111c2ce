#include <gtest/gtest.h>

#include "btstore/errors.h"
#include "btstore/model.h"

namespace btstore {
namespace {

TEST(Cursor, EncodesAndDecodesTheLastRow) {
  JobRecord row;
  row.id = "0b7e4d7c-3a51-4b8e-9c1d-2f5a6b7c8d9e";
  row.created_at = ParseTimestamp("2026-11-24T10:00:00.000001Z");
  PageRequest page;
  page.after = EncodeCursor(row);
  std::optional<CursorPosition> pos = ValidateListRequest({}, page);
  ASSERT_TRUE(pos);
  EXPECT_EQ(pos->created_at, row.created_at);
  EXPECT_EQ(pos->id, row.id);
}

TEST(Cursor, MalformedCursorsAreInvalidArguments) {
  for (const char* bad : {"", "c1.", "c1.zz.0b7e4d7c-3a51-4b8e-9c1d-2f5a6b7c8d9e", "c2.10.x",
                          "c1.10.not-a-uuid", "c1.10.0b7e4d7c-3a51-4b8e-9c1d-2f5a6b7c8d9e'; DROP"}) {
    PageRequest page;
    page.after = bad;
    EXPECT_THROW(ValidateListRequest({}, page), InvalidArgument) << bad;
  }
}

TEST(ListRequest, RejectsBadLimitsOffsetsAndInvertedRanges) {
  PageRequest page;
  page.limit = 0;
  EXPECT_THROW(ValidateListRequest({}, page), InvalidArgument);
  page.limit = kMaxListLimit + 1;
  EXPECT_THROW(ValidateListRequest({}, page), InvalidArgument);
  page.limit = kMaxListLimit;
  EXPECT_NO_THROW(ValidateListRequest({}, page));
  page.offset = -1;
  EXPECT_THROW(ValidateListRequest({}, page), InvalidArgument);

  JobFilter created;
  created.created_from = ParseTimestamp("2026-02-01");
  created.created_to = ParseTimestamp("2026-01-01");
  EXPECT_THROW(ValidateListRequest(created, {}), InvalidArgument);
  JobFilter range;
  range.range_from = Date::Parse("2026-02-01");
  range.range_to = Date::Parse("2026-01-01");
  EXPECT_THROW(ValidateListRequest(range, {}), InvalidArgument);
}

TEST(ListRequest, CursorAndOffsetTogetherAreRejected) {
  JobRecord row;
  row.id = "0b7e4d7c-3a51-4b8e-9c1d-2f5a6b7c8d9e";
  PageRequest page;
  page.after = EncodeCursor(row);
  page.offset = 10;
  EXPECT_THROW(ValidateListRequest({}, page), InvalidArgument);
}

}  // namespace
}  // namespace btstore
