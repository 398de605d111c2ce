// Output helpers shared by the command groups.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "btstore/errors.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

// The length of the UTF-8 sequence at text[i] if it is well formed, else 0.
size_t Utf8Length(std::string_view text, size_t i) {
  constexpr size_t kLongest = 4;
  for (size_t length = 1; length <= kLongest && i + length <= text.size(); ++length) {
    if (IsValidUtf8(text.substr(i, length))) return length;
  }
  return 0;
}

}  // namespace

std::unique_ptr<Service> Context::OpenService() const {
  return Service::Open(catalog_url, artifact_root.string());
}

void RequireNothingUnavailable(const BacktestResult& result, std::string_view what) {
  if (result.unavailable.empty()) return;
  const auto& [file, message] = *result.unavailable.begin();
  throw InvalidResult("cannot " + std::string(what) + " without " + file + ": " + message,
                      {{"file", file}});
}

void PrintJson(const nlohmann::json& doc) {
  std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

std::string Printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char escape[8];
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t length = Utf8Length(text, i);
    if (length == 0) {
      std::snprintf(escape, sizeof escape, "\\x%02x", c);
      out += escape;
      ++i;
    } else if (c == '\n') {
      out += "\\n";
      ++i;
    } else if (c == '\t') {
      out += "\\t";
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      std::snprintf(escape, sizeof escape, "\\x%02x", c);
      out += escape;
      ++i;
    } else if (length == 2 && HasControlCharacter(text.substr(i, 2))) {
      std::snprintf(escape, sizeof escape, "\\u%04x",
                    static_cast<unsigned>(static_cast<unsigned char>(text[i + 1])));
      out += escape;
      i += 2;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  return out;
}

void RequireNewDirectory(const std::string& dir, const std::string& what) {
  if (dir.empty()) throw InvalidArgument(what + " must name a directory", {{"field", what}});
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::symlink_status(dir, ec))) {
    throw InvalidArgument(what + " " + dir + " already exists: give the path of a new directory",
                          {{"field", what}, {"path", dir}});
  }
}

std::string HumanTime(Timestamp ts) {
  // RFC 3339 "YYYY-MM-DDTHH:MM:SS.ffffffZ" -> "YYYY-MM-DD HH:MM:SS UTC".
  std::string text = FormatTimestamp(ts);
  return text.substr(0, 10) + " " + text.substr(11, 8) + " UTC";
}

std::string HumanMetric(double value) {
  if (!std::isfinite(value)) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.4f", value);
  return buffer;
}

void PrintTable(std::ostream& out, const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& raw_rows) {
  std::vector<std::vector<std::string>> rows;
  rows.reserve(raw_rows.size());
  for (const auto& raw : raw_rows) {
    std::vector<std::string>& row = rows.emplace_back();
    for (const std::string& cell : raw) row.push_back(Printable(cell));
  }
  std::vector<size_t> widths(headers.size());
  for (size_t i = 0; i < headers.size(); ++i) widths[i] = headers[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      line += cell;
      if (i + 1 < widths.size()) line += std::string(widths[i] - cell.size() + 2, ' ');
    }
    out << line << "\n";
  };
  print_row(headers);
  std::vector<std::string> rule;
  for (size_t width : widths) rule.push_back(std::string(width, '-'));
  print_row(rule);
  for (const auto& row : rows) print_row(row);
}

void SetExamples(CLI::App* command, const std::string& examples) {
  command->footer("\nExamples:\n" + examples);
}

ProgressBar::ProgressBar(bool enabled, std::string label, int64_t total)
    : enabled_(enabled), label_(std::move(label)), total_(total) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(int64_t done) {
  if (!enabled_) return;
  if (total_ <= 0) {
    // Unknown total: a running count, redrawn in place.
    last_width_ = 0;
    std::cout << "\r" << label_ << ": " << done << std::flush;
    return;
  }
  constexpr int kWidth = 30;
  int filled = static_cast<int>(kWidth * std::clamp<int64_t>(done, 0, total_) / total_);
  if (filled == last_width_) return;
  last_width_ = filled;
  std::cout << "\r" << label_ << " [" << std::string(filled, '#')
            << std::string(kWidth - filled, '.') << "] " << done << "/" << total_ << std::flush;
}

void ProgressBar::Finish() {
  if (enabled_ && last_width_ >= 0) std::cout << "\n" << std::flush;
  enabled_ = false;
}

}  // namespace btstore::cli
