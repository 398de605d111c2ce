// A page of jobs as JSON text, written straight from the records: the list route's answer.
// PageJson builds the same document as a tree of nlohmann values (about 60 allocations per job,
// a std::map per object) and then prints it; on the HTTP list route that tree was half of the
// server's CPU. The text here is byte for byte what PageJson(page).dump() prints (tested).

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "btstore/wire.h"

namespace btstore::wire {

namespace {

// Strings of printable ASCII are copied as they are; anything else (escapes, UTF-8, bytes that
// are not UTF-8) goes through nlohmann's own printer, so the rules stay its rules.
void AppendString(std::string& out, std::string_view text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f || c == '"' || c == '\\') {
      out += Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
      return;
    }
  }
  out += '"';
  out += text;
  out += '"';
}

void AppendInteger(std::string& out, long long value) {
  std::array<char, 24> digits;
  const auto end = std::to_chars(digits.data(), digits.data() + digits.size(), value).ptr;
  out.append(digits.data(), end);
}

void AppendMetric(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  // nlohmann's shortest round-trip formatting (with ".0" on integral values), as dump() uses.
  std::array<char, 64> digits;
  const char* end = nlohmann::detail::to_chars(digits.data(), digits.data() + digits.size(), value);
  out.append(digits.data(), static_cast<size_t>(end - digits.data()));
}

void AppendText(std::string& out, const std::optional<std::string>& text) {
  if (text) {
    AppendString(out, *text);
  } else {
    out += "null";
  }
}

void AppendTime(std::string& out, const std::optional<Timestamp>& time) {
  if (time) {
    AppendString(out, FormatTimestampText(*time).view());
  } else {
    out += "null";
  }
}

void AppendJsonColumn(std::string& out, const std::optional<std::string>& text) {
  if (!text) {
    out += "null";
  } else if (*text == "{}" || *text == "[]") {
    out += *text;
  } else {
    out += JsonColumn(text).dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

using FieldWriter = std::function<void(std::string&, const JobRecord&)>;

// Every field of JobJson with its writer, in the order of its keys (nlohmann's objects are
// std::maps: keys sorted by byte).
const std::vector<std::pair<std::string, FieldWriter>>& Fields() {
  static const std::vector<std::pair<std::string, FieldWriter>> kFields = [] {
    std::vector<std::pair<std::string, FieldWriter>> fields = {
        {"id", [](std::string& o, const JobRecord& j) { AppendString(o, j.id); }},
        {"job_id", [](std::string& o, const JobRecord& j) { AppendString(o, j.job_id); }},
        {"status", [](std::string& o, const JobRecord& j) { AppendString(o, ToString(j.status)); }},
        {"alpha_name", [](std::string& o, const JobRecord& j) { AppendString(o, j.alpha_name); }},
        {"start_date",
         [](std::string& o, const JobRecord& j) { AppendString(o, j.start_date.ToString()); }},
        {"end_date",
         [](std::string& o, const JobRecord& j) { AppendString(o, j.end_date.ToString()); }},
        {"weight_method",
         [](std::string& o, const JobRecord& j) { AppendString(o, j.weight_method); }},
        {"config_json",
         [](std::string& o, const JobRecord& j) { AppendJsonColumn(o, j.config_json); }},
        {"created_at",
         [](std::string& o, const JobRecord& j) {
           AppendString(o, FormatTimestampText(j.created_at).view());
         }},
        {"started_at", [](std::string& o, const JobRecord& j) { AppendTime(o, j.started_at); }},
        {"completed_at", [](std::string& o, const JobRecord& j) { AppendTime(o, j.completed_at); }},
        {"worker_id", [](std::string& o, const JobRecord& j) { AppendText(o, j.worker_id); }},
        {"progress_pct",
         [](std::string& o, const JobRecord& j) { AppendInteger(o, j.progress_pct); }},
        {"job_timeout",
         [](std::string& o, const JobRecord& j) { AppendInteger(o, j.job_timeout_seconds); }},
        {"result_path", [](std::string& o, const JobRecord& j) { AppendText(o, j.result_path); }},
        {"snapshot_id", [](std::string& o, const JobRecord& j) { AppendText(o, j.snapshot_id); }},
        {"dataset_version_ids",
         [](std::string& o, const JobRecord& j) {
           AppendJsonColumn(o, j.dataset_version_ids_json);
         }},
        {"error_message",
         [](std::string& o, const JobRecord& j) { AppendText(o, j.error_message); }},
        {"retry_count",
         [](std::string& o, const JobRecord& j) { AppendInteger(o, j.retry_count); }},
        {"created_by", [](std::string& o, const JobRecord& j) { AppendString(o, j.created_by); }},
        {"cost_config",
         [](std::string& o, const JobRecord& j) { AppendJsonColumn(o, j.cost_config_json); }},
        {"cost_summary",
         [](std::string& o, const JobRecord& j) { AppendJsonColumn(o, j.cost_summary_json); }},
        {"priority",
         [](std::string& o, const JobRecord& j) { AppendString(o, ToString(j.priority)); }},
        {"max_retries",
         [](std::string& o, const JobRecord& j) { AppendInteger(o, j.max_retries); }},
        {"attempt", [](std::string& o, const JobRecord& j) { AppendInteger(o, j.attempt); }},
        {"cancel_requested",
         [](std::string& o, const JobRecord& j) { o += j.cancel_requested ? "true" : "false"; }},
        {"heartbeat_at", [](std::string& o, const JobRecord& j) { AppendTime(o, j.heartbeat_at); }},
        {"lease_expires_at",
         [](std::string& o, const JobRecord& j) { AppendTime(o, j.lease_expires_at); }},
        {"run_after", [](std::string& o, const JobRecord& j) { AppendTime(o, j.run_after); }},
        {"checkpoint_path",
         [](std::string& o, const JobRecord& j) { AppendText(o, j.checkpoint_path); }},
        {"pinned", [](std::string& o, const JobRecord& j) { o += j.pinned ? "true" : "false"; }},
        {"expiring_at", [](std::string& o, const JobRecord& j) { AppendTime(o, j.expiring_at); }},
        {"engine", [](std::string& o, const JobRecord& j) { AppendString(o, j.engine); }},
    };
    for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
      fields.emplace_back(std::string(Metrics::kNames[i]), [i](std::string& o, const JobRecord& j) {
        AppendMetric(o, j.metrics.At(i));
      });
    }
    std::sort(fields.begin(), fields.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    return fields;
  }();
  return kFields;
}

}  // namespace

void AppendJobText(std::string& out, const JobRecord& job) {
  char separator = '{';
  for (const auto& [key, write] : Fields()) {
    out += separator;
    out += '"';
    out += key;
    out += "\":";
    write(out, job);
    separator = ',';
  }
  out += '}';
}

std::string PageText(const JobPage& page) {
  std::string out;
  out.reserve(64 + page.jobs.size() * 1024);
  out += "{\"jobs\":[";
  for (size_t i = 0; i < page.jobs.size(); ++i) {
    if (i > 0) out += ',';
    AppendJobText(out, page.jobs[i]);
  }
  out += "],\"next\":";
  AppendText(out, page.next);
  out += '}';
  return out;
}

}  // namespace btstore::wire
