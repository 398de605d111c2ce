#include <algorithm>
#include <charconv>
#include <cmath>

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

// The longest user or alpha filter: the columns are VARCHAR(255).
constexpr size_t kMaxFilterLength = 255;

void CheckFilterText(const std::optional<std::string>& value, std::string_view field) {
  if (!value) return;
  if (value->size() > kMaxFilterLength || !IsValidUtf8(*value)) {
    throw InvalidArgument(std::string(field) + " filter must be at most " +
                              std::to_string(kMaxFilterLength) + " bytes of valid UTF-8",
                          {{"field", std::string(field)}});
  }
}

void CheckFiniteBound(const std::optional<double>& value, std::string_view field) {
  if (value && !std::isfinite(*value)) {
    throw InvalidArgument(std::string(field) + " must be a finite number",
                          {{"field", std::string(field)}, {"value", std::to_string(*value)}});
  }
}

bool IsLowerHex(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
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
  CheckFilterText(filter.created_by, "user");
  CheckFilterText(filter.alpha_name, "alpha");
  CheckFiniteBound(filter.min_mean_ic, "min_mean_ic");
  CheckFiniteBound(filter.min_icir, "min_icir");
  CheckFiniteBound(filter.min_hit_rate, "min_hit_rate");
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
  // EncodeCursor writes lowercase hex without a sign: rows are created by a clock after 1970.
  // A position past the year 9999 cannot be a row's either.
  if (!IsLowerHex(rest.substr(0, dot))) BadCursor(cursor);
  int64_t micros = 0;
  auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + dot, micros, 16);
  if (ec != std::errc() || ptr != rest.data() + dot) BadCursor(cursor);
  const Timestamp end{std::chrono::sys_days{std::chrono::year{10000} / 1 / 1}};
  if (micros >= end.time_since_epoch().count()) BadCursor(cursor);
  std::string_view id = rest.substr(dot + 1);
  if (!IsUuid(id)) BadCursor(cursor);
  return CursorPosition{Timestamp{std::chrono::microseconds{micros}}, std::string(id)};
}

}  // namespace btstore
