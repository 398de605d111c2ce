#include <algorithm>
#include <charconv>
#include <cstdio>

#include "btstore/errors.h"
#include "btstore/model.h"

namespace btstore {
namespace {

using std::chrono::days;
using std::chrono::sys_days;

// Parse exactly `width` decimal digits at `pos`; advance `pos`.
bool ReadDigits(std::string_view text, size_t& pos, size_t width, int& out) {
  if (pos + width > text.size()) return false;
  int value = 0;
  for (size_t i = 0; i < width; ++i) {
    char c = text[pos + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  out = value;
  pos += width;
  return true;
}

// Write `value`'s last `width` decimal digits so that the last one lands at out[end].
void PutDigits(char* out, size_t end, long long value, int width) {
  for (int i = 0; i < width; ++i, value /= 10) out[end - i] = static_cast<char>('0' + value % 10);
}

bool ReadChar(std::string_view text, size_t& pos, char expected) {
  if (pos >= text.size() || text[pos] != expected) return false;
  ++pos;
  return true;
}

[[noreturn]] void BadValue(std::string_view text, std::string_view what, std::string_view expected) {
  throw InvalidArgument("invalid " + std::string(what) + " '" + std::string(text) + "': expected " +
                            std::string(expected),
                        {{"value", std::string(text)}, {"field", std::string(what)}});
}

// Parse YYYY-MM-DD at `pos` into a date, or return nullopt.
std::optional<Date> ReadDate(std::string_view text, size_t& pos) {
  int y = 0, m = 0, d = 0;
  if (!ReadDigits(text, pos, 4, y) || !ReadChar(text, pos, '-') || !ReadDigits(text, pos, 2, m) ||
      !ReadChar(text, pos, '-') || !ReadDigits(text, pos, 2, d)) {
    return std::nullopt;
  }
  std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(m)},
                                  std::chrono::day{static_cast<unsigned>(d)}};
  if (y < 1 || !ymd.ok()) return std::nullopt;
  return Date{static_cast<int32_t>(sys_days{ymd}.time_since_epoch().count())};
}

// A time is stored and compared as UTC: an offset can carry a date of year 1 or 9999 out of
// the years every backend orders correctly (a year 10000 would sort as text before 2026).
Timestamp InRange(Timestamp ts, std::string_view text, std::string_view what) {
  const Timestamp first{sys_days{std::chrono::year{1} / 1 / 1}};
  const Timestamp end{sys_days{std::chrono::year{10000} / 1 / 1}};
  if (ts < first || ts >= end) {
    throw InvalidArgument("invalid " + std::string(what) + " '" + std::string(text) +
                              "': it is outside the years 0001..9999 in UTC",
                          {{"value", std::string(text)}, {"field", std::string(what)}});
  }
  return ts;
}

}  // namespace

Date Date::Parse(std::string_view text, std::string_view what) {
  size_t pos = 0;
  std::optional<Date> date = ReadDate(text, pos);
  if (!date || pos != text.size()) BadValue(text, what, "an existing date YYYY-MM-DD");
  return *date;
}

Date Date::FromYmd(int year, int month, int day) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", year, month, day);
  return Parse(buf);
}

std::string Date::ToString() const {
  std::chrono::year_month_day ymd{sys_days{std::chrono::days{this->days}}};
  const int year = static_cast<int>(ymd.year());
  if (year < 0 || year > 9999) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", year, static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()));
    return buf;
  }
  // Digits by hand, as in FormatTimestampText: a listing formats two dates per row.
  std::string out = "0000-00-00";
  PutDigits(out.data(), 3, year, 4);
  PutDigits(out.data(), 6, static_cast<unsigned>(ymd.month()), 2);
  PutDigits(out.data(), 9, static_cast<unsigned>(ymd.day()), 2);
  return out;
}

std::string FormatTimestamp(Timestamp ts) { return std::string(FormatTimestampText(ts).view()); }

TimestampText FormatTimestampText(Timestamp ts) {
  auto day = std::chrono::floor<days>(ts);
  std::chrono::year_month_day ymd{day};
  std::chrono::hh_mm_ss hms{ts - day};
  const int year = static_cast<int>(ymd.year());
  const auto micros = static_cast<long long>(hms.subseconds().count());
  TimestampText text;
  if (year < 0 || year > 9999) {
    const int written = std::snprintf(
        text.chars.data(), text.chars.size(), "%04d-%02u-%02uT%02d:%02d:%02d.%06lldZ", year,
        static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
        static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
        static_cast<int>(hms.seconds().count()), micros);
    text.size = std::min(static_cast<size_t>(written), text.chars.size() - 1);
    return text;
  }
  // Digits by hand: listings format several times per row, and snprintf's format parsing
  // was the largest cost of turning a page of jobs into Python dicts.
  constexpr std::string_view kPattern = "0000-00-00T00:00:00.000000Z";
  std::copy(kPattern.begin(), kPattern.end(), text.chars.begin());
  text.size = kPattern.size();
  char* out = text.chars.data();
  PutDigits(out, 3, year, 4);
  PutDigits(out, 6, static_cast<unsigned>(ymd.month()), 2);
  PutDigits(out, 9, static_cast<unsigned>(ymd.day()), 2);
  PutDigits(out, 12, hms.hours().count(), 2);
  PutDigits(out, 15, hms.minutes().count(), 2);
  PutDigits(out, 18, hms.seconds().count(), 2);
  PutDigits(out, 25, micros, 6);
  return text;
}

Timestamp ParseTimestamp(std::string_view text, std::string_view what) {
  constexpr std::string_view kExpected =
      "a date YYYY-MM-DD or an RFC 3339 timestamp such as 2026-01-31T09:30:00Z";
  size_t pos = 0;
  std::optional<Date> date = ReadDate(text, pos);
  if (!date) BadValue(text, what, kExpected);
  Timestamp ts{sys_days{days{date->days}}};
  if (pos == text.size()) return ts;
  if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ') BadValue(text, what, kExpected);
  ++pos;
  int hh = 0, mm = 0, ss = 0;
  if (!ReadDigits(text, pos, 2, hh) || !ReadChar(text, pos, ':') || !ReadDigits(text, pos, 2, mm) ||
      !ReadChar(text, pos, ':') || !ReadDigits(text, pos, 2, ss) || hh > 23 || mm > 59 || ss > 60) {
    BadValue(text, what, kExpected);
  }
  ts += std::chrono::hours(hh) + std::chrono::minutes(mm) + std::chrono::seconds(ss);
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t micros = 0;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 6) micros = micros * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) BadValue(text, what, kExpected);
    for (int i = digits; i < 6; ++i) micros *= 10;
    ts += std::chrono::microseconds(micros);
  }
  if (pos == text.size()) return InRange(ts, text, what);  // no offset: UTC
  char sign = text[pos];
  if ((sign == 'Z' || sign == 'z') && pos + 1 == text.size()) return InRange(ts, text, what);
  if (sign != '+' && sign != '-') BadValue(text, what, kExpected);
  ++pos;
  int oh = 0, om = 0;
  if (!ReadDigits(text, pos, 2, oh)) BadValue(text, what, kExpected);
  if (pos < text.size()) {
    ReadChar(text, pos, ':');
    if (!ReadDigits(text, pos, 2, om)) BadValue(text, what, kExpected);
  }
  if (pos != text.size() || oh > 23 || om > 59) BadValue(text, what, kExpected);
  auto offset = std::chrono::hours(oh) + std::chrono::minutes(om);
  return InRange(sign == '+' ? ts - offset : ts + offset, text, what);
}

Timestamp ParseTimestampUpperBound(std::string_view text, std::string_view what) {
  Timestamp ts = ParseTimestamp(text, what);
  // ParseTimestamp accepts exactly "YYYY-MM-DD" as a bare date; anything longer has a time.
  constexpr size_t kBareDateLength = 10;
  if (text.size() != kBareDateLength) return ts;
  return ts + days(1) - std::chrono::microseconds(1);
}

Timestamp Now() {
  return std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
}

}  // namespace btstore
