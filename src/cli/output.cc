// Output helpers shared by the command groups.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

nlohmann::json OptionalTime(const std::optional<Timestamp>& ts) {
  return ts ? nlohmann::json(FormatTimestamp(*ts)) : nlohmann::json(nullptr);
}

nlohmann::json OptionalText(const std::optional<std::string>& text) {
  return text ? nlohmann::json(*text) : nlohmann::json(nullptr);
}

// A JSON column is shown parsed; text that does not parse (written by another tool), or that
// is nested deeper than JSON code may recurse, is shown as it is rather than hidden.
nlohmann::json JsonColumn(const std::optional<std::string>& text) {
  if (!text) return nullptr;
  if (JsonNestingDepth(*text) > kMaxJsonDepth) return *text;
  nlohmann::json parsed = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  return parsed.is_discarded() ? nlohmann::json(*text) : parsed;
}

// The length of the UTF-8 sequence at text[i] if it is well formed, else 0.
size_t Utf8Length(std::string_view text, size_t i) {
  constexpr size_t kLongest = 4;
  for (size_t length = 1; length <= kLongest && i + length <= text.size(); ++length) {
    if (IsValidUtf8(text.substr(i, length))) return length;
  }
  return 0;
}

}  // namespace

std::unique_ptr<Catalog> Context::OpenCatalog() const {
  std::unique_ptr<Catalog> catalog = Catalog::Open(catalog_url);
  catalog->Migrate();
  return catalog;
}

void PrintJson(const nlohmann::json& doc) {
  std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

nlohmann::json MetricJson(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

nlohmann::json JobJson(const JobRecord& job) {
  nlohmann::json doc = {
      {"id", job.id},
      {"job_id", job.job_id},
      {"status", ToString(job.status)},
      {"alpha_name", job.alpha_name},
      {"start_date", job.start_date.ToString()},
      {"end_date", job.end_date.ToString()},
      {"weight_method", job.weight_method},
      {"config_json", JsonColumn(job.config_json)},
      {"created_at", FormatTimestamp(job.created_at)},
      {"started_at", OptionalTime(job.started_at)},
      {"completed_at", OptionalTime(job.completed_at)},
      {"worker_id", OptionalText(job.worker_id)},
      {"progress_pct", job.progress_pct},
      {"job_timeout", job.job_timeout_seconds},
      {"result_path", OptionalText(job.result_path)},
  };
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    doc[std::string(Metrics::kNames[i])] = MetricJson(job.metrics.At(i));
  }
  doc["snapshot_id"] = OptionalText(job.snapshot_id);
  doc["dataset_version_ids"] = JsonColumn(job.dataset_version_ids_json);
  doc["error_message"] = OptionalText(job.error_message);
  doc["retry_count"] = job.retry_count;
  doc["created_by"] = job.created_by;
  doc["priority"] = ToString(job.priority);
  doc["max_retries"] = job.max_retries;
  doc["attempt"] = job.attempt;
  doc["cancel_requested"] = job.cancel_requested;
  doc["heartbeat_at"] = OptionalTime(job.heartbeat_at);
  doc["lease_expires_at"] = OptionalTime(job.lease_expires_at);
  doc["run_after"] = OptionalTime(job.run_after);
  doc["checkpoint_path"] = OptionalText(job.checkpoint_path);
  doc["pinned"] = job.pinned;
  doc["expiring_at"] = OptionalTime(job.expiring_at);
  return doc;
}

nlohmann::json ParseLenientJson(const std::string& text, const std::string& what) {
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    throw InvalidArgument(
        what + " is nested more than " + std::to_string(kMaxJsonDepth) + " levels deep",
        {{"what", what}});
  }
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_discarded()) return doc;
  // Python's json module writes NaN/Infinity/-Infinity as bare tokens; outside strings they
  // become null, which is what btstore itself writes for a non-finite metric.
  std::string cleaned;
  cleaned.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      cleaned += c;
      if (c == '\\' && i + 1 < text.size()) {
        cleaned += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      cleaned += c;
      continue;
    }
    bool replaced = false;
    for (std::string_view token : {"-Infinity", "Infinity", "NaN"}) {
      if (text.compare(i, token.size(), token) == 0) {
        cleaned += "null";
        i += token.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) cleaned += c;
  }
  doc = nlohmann::json::parse(cleaned, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) throw InvalidArgument(what + " is not valid JSON", {{"what", what}});
  return doc;
}

nlohmann::json ReadSummaryJson(const std::filesystem::path& bundle_dir) {
  const std::filesystem::path file = bundle_dir / "summary.json";
  // The bundle reader's own reading of the file: same size and depth limits, no symlinks.
  std::string text = ReadSummaryText(bundle_dir);
  try {
    return ParseLenientJson(text, file.string());
  } catch (const InvalidArgument&) {
    throw MissingReproducibilityMetadata("summary.json is not valid JSON",
                                         {{"path", file.string()}});
  }
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
