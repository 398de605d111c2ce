// summary.json: what the writer stores and how a reader checks it (contract section 1).

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "artifact/io_internal.h"
#include "artifact/json_internal.h"
#include "artifact/source_internal.h"
#include "artifact/summary_internal.h"
#include "btstore/errors.h"

namespace btstore::internal {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kSchemaVersion = 1;
constexpr std::string_view kSummary = "summary.json";

// Keys btstore reads into BacktestResult fields or regenerates on every write; every other key
// is kept verbatim in extra_summary_json.
const std::set<std::string, std::less<>>& KnownKeys() {
  static const std::set<std::string, std::less<>> keys = [] {
    std::set<std::string, std::less<>> k = {"schema_version", "job_id",      "alpha_name",
                                            "start_date",     "end_date",    "weight_method",
                                            "config_hash",    "snapshot_id", "dataset_version_ids",
                                            "written_at",     "writer",      "artifacts"};
    for (auto name : Metrics::kNames) k.emplace(name);
    return k;
  }();
  return keys;
}

[[noreturn]] void Missing(const std::string& message, const fs::path& path,
                          const std::string& field = "") {
  ErrorDetails details = {{"file", std::string(kSummary)}, {"path", path.string()}};
  if (!field.empty()) details["field"] = field;
  throw MissingReproducibilityMetadata(message, std::move(details));
}

[[noreturn]] void Invalid(const std::string& message, const fs::path& path,
                          const std::string& field) {
  throw InvalidResult(message,
                      {{"file", std::string(kSummary)}, {"path", path.string()}, {"field", field}});
}

std::string OptionalString(const Json& doc, const char* key, const fs::path& path) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return "";
  if (!it->is_string())
    Invalid(std::string("summary.json: ") + key + " must be a string", path, key);
  return it->get<std::string>();
}

std::optional<Date> OptionalDate(const Json& doc, const char* key, const fs::path& path) {
  std::string text = OptionalString(doc, key, path);
  if (text.empty()) return std::nullopt;
  try {
    return Date::Parse(text, key);
  } catch (const InvalidArgument& e) {
    Invalid(std::string("summary.json: ") + e.what(), path, key);
  }
}

int64_t ManifestInt(const Json& entry, const char* key, const std::string& file,
                    const fs::path& path) {
  auto it = entry.find(key);
  if (it == entry.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    Invalid("summary.json: artifacts." + file + "." + key + " must be a non-negative integer", path,
            "artifacts");
  }
  return it->get<int64_t>();
}

std::map<std::string, ArtifactInfo> ParseManifest(const Json& artifacts, const fs::path& path) {
  if (!artifacts.is_object())
    Invalid("summary.json: artifacts must be an object", path, "artifacts");
  std::map<std::string, ArtifactInfo> manifest;
  for (const auto& [file, entry] : artifacts.items()) {
    // A reader opens and checks what the manifest names: only plain file names of the bundle,
    // never a path that leads elsewhere ("../../etc/passwd", "/etc/shadow").
    if (!IsSafeFileName(file)) {
      throw InvalidResult("summary.json: artifacts entry '" + file +
                              "' is not the plain name of a file inside the bundle",
                          {{"file", std::string(kSummary)},
                           {"path", path.string()},
                           {"field", "artifacts"},
                           {"entry", file}});
    }
    if (!entry.is_object()) {
      Invalid("summary.json: artifacts." + file + " must be an object", path, "artifacts");
    }
    ArtifactInfo info;
    info.rows = ManifestInt(entry, "rows", file, path);
    info.bytes = ManifestInt(entry, "bytes", file, path);
    auto checksum = entry.find("checksum");
    if (checksum != entry.end() && !checksum->is_null()) {
      if (!checksum->is_string()) {
        Invalid("summary.json: artifacts." + file + ".checksum must be a string", path,
                "artifacts");
      }
      info.checksum = checksum->get<std::string>();
    }
    manifest.emplace(file, std::move(info));
  }
  return manifest;
}

}  // namespace
}  // namespace btstore::internal

namespace btstore {

std::string ReplaceNonFiniteTokens(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
    } else if (text.substr(i, 3) == "NaN") {
      out += "null";
      i += 2;
    } else if (text.substr(i, 8) == "Infinity") {
      out += "null";
      i += 7;
    } else if (text.substr(i, 9) == "-Infinity") {
      out += "null";
      i += 8;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace btstore

namespace btstore::internal {

std::optional<std::string> ReadJsonFile(const fs::path& dir, const std::string& name,
                                        const std::function<void(const std::string&)>& unreadable) {
  fs::path path = dir / name;
  std::optional<BundleFile> file = OpenBundleFile(dir, name);
  if (!file) return std::nullopt;
  auto too_large = [&](std::uintmax_t size) {
    throw InvalidResult(name + " is " + std::to_string(size) + " bytes, more than the " +
                            std::to_string(kMaxJsonFileBytes) + " bytes it may have",
                        {{"file", name}, {"path", path.string()}, {"bytes", std::to_string(size)}});
  };
  if (static_cast<std::uintmax_t>(file->size) > kMaxJsonFileBytes) too_large(file->size);
  // Read to the end, not `size` bytes, but never much past the limit: the file may have grown
  // since it was opened.
  std::string text;
  text.reserve(static_cast<size_t>(file->size));
  std::array<char, 64 << 10> chunk;
  while (true) {
    ssize_t n = ::read(file->fd.get(), chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      unreadable(name + " is unreadable: " + std::strerror(errno));
      throw InvalidResult(name + " is unreadable", {{"file", name}, {"path", path.string()}});
    }
    if (n == 0) break;
    text.append(chunk.data(), static_cast<size_t>(n));
    if (text.size() > kMaxJsonFileBytes) too_large(text.size());
  }
  return CheckJsonText(name, path.string(), std::move(text));
}

std::string CheckJsonText(const std::string& name, const std::string& path, std::string text) {
  if (text.size() > kMaxJsonFileBytes) {
    throw InvalidResult(name + " is " + std::to_string(text.size()) + " bytes, more than the " +
                            std::to_string(kMaxJsonFileBytes) + " bytes it may have",
                        {{"file", name}, {"path", path}, {"bytes", std::to_string(text.size())}});
  }
  // Parsers and serializers of JSON recurse once per level: refuse a hostile depth before any
  // of them sees the text.
  if (int depth = JsonNestingDepth(text); depth > kMaxJsonDepth) {
    throw InvalidResult(name + " is nested " + std::to_string(depth) +
                            " levels deep, more than the " + std::to_string(kMaxJsonDepth) +
                            " levels of arrays and objects it may have",
                        {{"file", name}, {"path", path}, {"depth", std::to_string(depth)}});
  }
  return text;
}

std::string ReadSummaryText(const fs::path& dir) { return ReadSummaryText(*LocalSource(dir)); }

ParsedSummary ReadSummary(const fs::path& dir) { return ReadSummary(*LocalSource(dir)); }

std::string ReadSummaryText(BundleSource& source) {
  const fs::path path = source.PathOf(std::string(kSummary));
  std::optional<std::string> text = source.ReadJson(
      std::string(kSummary), [&](const std::string& message) { Missing(message, path); });
  if (!text) {
    Missing("summary.json is missing from " + source.where() +
                ": the bundle has no reproducibility metadata; rewrite it with its snapshot_id "
                "and dataset_version_ids",
            path);
  }
  return *std::move(text);
}

ParsedSummary ReadSummary(BundleSource& source) {
  const fs::path path = source.PathOf(std::string(kSummary));
  ParsedSummary parsed;
  parsed.text = ReadSummaryText(source);
  Json doc;
  try {
    // nlohmann's lexer also rejects ill-formed UTF-8 inside strings.
    doc = Json::parse(ReplaceNonFiniteTokens(parsed.text));
  } catch (const Json::exception& e) {
    Missing(std::string("summary.json is not valid UTF-8 JSON: ") + e.what(), path);
  }
  if (!doc.is_object()) Missing("summary.json is not a JSON object", path);

  auto snapshot = doc.find("snapshot_id");
  if (snapshot == doc.end() || snapshot->is_null()) {
    Missing("summary.json has no snapshot_id: the data snapshot of this result is unknown", path,
            "snapshot_id");
  }
  if (!snapshot->is_string())
    Missing("summary.json: snapshot_id must be a string", path, "snapshot_id");
  auto versions = doc.find("dataset_version_ids");
  if (versions == doc.end() || versions->is_null()) {
    Missing(
        "summary.json has no dataset_version_ids: the dataset versions of this result are "
        "unknown",
        path, "dataset_version_ids");
  }
  if (!versions->is_object()) {
    Missing("summary.json: dataset_version_ids must be an object of strings", path,
            "dataset_version_ids");
  }

  BacktestResult& meta = parsed.meta;
  meta.snapshot_id = snapshot->get<std::string>();
  for (const auto& [name, version] : versions->items()) {
    if (!version.is_string()) {
      Missing("summary.json: dataset_version_ids." + name + " must be a string", path,
              "dataset_version_ids");
    }
    meta.dataset_version_ids[name] = version.get<std::string>();
  }
  meta.job_id = OptionalString(doc, "job_id", path);
  meta.alpha_name = OptionalString(doc, "alpha_name", path);
  meta.weight_method = OptionalString(doc, "weight_method", path);
  meta.config_hash = OptionalString(doc, "config_hash", path);
  meta.start_date = OptionalDate(doc, "start_date", path);
  meta.end_date = OptionalDate(doc, "end_date", path);

  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    std::string key(Metrics::kNames[i]);
    auto it = doc.find(key);
    if (it == doc.end()) continue;
    if (key == "mean_ic") parsed.has_mean_ic = true;
    if (key == "icir") parsed.has_icir = true;
    if (it->is_null()) continue;  // not available: stays NaN
    if (!it->is_number()) Invalid("summary.json: " + key + " must be a number or null", path, key);
    double value = it->get<double>();
    meta.metrics.At(i) = std::isfinite(value) ? value : Metrics::kMissing;
  }

  if (auto artifacts = doc.find("artifacts"); artifacts != doc.end() && !artifacts->is_null()) {
    parsed.manifest = ParseManifest(*artifacts, path);
  }

  Json extra = Json::object();
  for (const auto& [key, value] : doc.items()) {
    if (!KnownKeys().contains(key)) extra[key] = value;
  }
  meta.extra_summary_json = extra.dump();
  return parsed;
}

std::string EncodeSummary(const BacktestResult& result,
                          const std::map<std::string, ArtifactInfo>& manifest) {
  Json doc = Json::object();
  doc["schema_version"] = kSchemaVersion;
  if (!result.job_id.empty()) doc["job_id"] = result.job_id;
  if (!result.alpha_name.empty()) doc["alpha_name"] = result.alpha_name;
  if (result.start_date) doc["start_date"] = result.start_date->ToString();
  if (result.end_date) doc["end_date"] = result.end_date->ToString();
  if (!result.weight_method.empty()) doc["weight_method"] = result.weight_method;
  if (!result.config_hash.empty()) doc["config_hash"] = result.config_hash;
  doc["snapshot_id"] = result.snapshot_id;
  Json versions = Json::object();
  for (const auto& [name, version] : result.dataset_version_ids) versions[name] = version;
  doc["dataset_version_ids"] = versions;
  for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
    double value = result.metrics.At(i);
    // DumpJson writes doubles in shortest round-trip form; non-finite ones are null.
    doc[std::string(Metrics::kNames[i])] = std::isfinite(value) ? Json(value) : Json(nullptr);
  }
  doc["written_at"] = FormatTimestamp(Now());
  doc["writer"] = {{"name", "btstore"}, {"version", BTSTORE_VERSION}};
  Json artifacts = Json::object();
  for (const auto& [file, info] : manifest) {
    artifacts[file] = {{"rows", info.rows}, {"bytes", info.bytes}, {"checksum", info.checksum}};
  }
  doc["artifacts"] = artifacts;

  Json extra = Json::parse(result.extra_summary_json);
  for (const auto& [key, value] : extra.items()) {
    if (!KnownKeys().contains(key)) doc[key] = value;
  }
  // A reader refuses a summary over kMaxJsonFileBytes, and indentation grows with nesting (a
  // 400 KB summary nested 60 deep takes 25 MB indented): write compact JSON when the indented
  // form would be refused, and refuse to write what no reader would read.
  std::string text = DumpJson(doc, 2) + "\n";
  if (text.size() > kMaxJsonFileBytes) text = DumpJson(doc, -1) + "\n";
  if (text.size() > kMaxJsonFileBytes) {
    throw InvalidArgument(
        "summary.json would be " + std::to_string(text.size()) + " bytes, more than the " +
            std::to_string(kMaxJsonFileBytes) +
            " bytes a reader accepts: extra_summary_json is too large",
        {{"field", "extra_summary_json"}, {"bytes", std::to_string(text.size())}});
  }
  return text;
}

}  // namespace btstore::internal
