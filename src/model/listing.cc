#include <charconv>

#include "btstore/errors.h"
#include "btstore/model.h"

namespace btstore {
namespace {

// A cursor is "c1." + hex(created_at microseconds) + "." + id. It is opaque to callers; the
// version prefix lets its form change later without misreading old cursors.
constexpr std::string_view kCursorPrefix = "c1.";

[[noreturn]] void BadCursor(std::string_view cursor) {
  throw InvalidArgument("malformed cursor '" + std::string(cursor) +
                            "': pass the `next` value of the previous page unchanged",
                        {{"field", "after"}});
}

bool IsUuid(std::string_view id) {
  if (id.size() != 36) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string EncodeCursor(const JobRecord& last_row) {
  char buf[32];
  auto micros = last_row.created_at.time_since_epoch().count();
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, micros, 16);
  return std::string(kCursorPrefix) + std::string(buf, end) + "." + last_row.id;
}

std::optional<CursorPosition> ValidateListRequest(const JobFilter& filter, const PageRequest& page) {
  if (page.limit < 1 || page.limit > kMaxListLimit) {
    throw InvalidArgument("limit must be between 1 and " + std::to_string(kMaxListLimit),
                          {{"field", "limit"}, {"value", std::to_string(page.limit)}});
  }
  if (page.offset < 0) {
    throw InvalidArgument("offset must not be negative", {{"field", "offset"}});
  }
  if (filter.created_from && filter.created_to && *filter.created_to < *filter.created_from) {
    throw InvalidArgument("created range is inverted: created_to is before created_from",
                          {{"field", "created_to"}});
  }
  if (filter.range_from && filter.range_to && *filter.range_to < *filter.range_from) {
    throw InvalidArgument("backtest range is inverted: to is before from", {{"field", "to"}});
  }
  if (!page.after) return std::nullopt;
  if (page.offset != 0) {
    throw InvalidArgument("use either a cursor or an offset, not both", {{"field", "after"}});
  }
  std::string_view cursor = *page.after;
  if (cursor.substr(0, kCursorPrefix.size()) != kCursorPrefix) BadCursor(cursor);
  std::string_view rest = cursor.substr(kCursorPrefix.size());
  size_t dot = rest.find('.');
  if (dot == std::string_view::npos || dot == 0) BadCursor(cursor);
  int64_t micros = 0;
  auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + dot, micros, 16);
  if (ec != std::errc() || ptr != rest.data() + dot) BadCursor(cursor);
  std::string_view id = rest.substr(dot + 1);
  if (!IsUuid(id)) BadCursor(cursor);
  return CursorPosition{Timestamp{std::chrono::microseconds{micros}}, std::string(id)};
}

}  // namespace btstore
