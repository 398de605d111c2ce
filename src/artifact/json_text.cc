// Shortest round-trip doubles in the JSON btstore writes. nlohmann's dump() uses Grisu2, which
// round-trips but is not always shortest (4.1752050594835e+78 comes out as
// 4.1752050594835004e+78); the contract asks for the shortest form, which std::to_chars gives.

#include <charconv>
#include <cmath>

#include "artifact/json_internal.h"

namespace btstore::internal {
namespace {

using Json = nlohmann::ordered_json;

void AppendDouble(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string_view text(buffer, static_cast<size_t>(end - buffer));
  out += text;
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

void AppendNewline(std::string& out, int indent, int depth) {
  if (indent < 0) return;
  out += '\n';
  out.append(static_cast<size_t>(indent) * static_cast<size_t>(depth), ' ');
}

void Append(std::string& out, const Json& value, int indent, int depth) {
  switch (value.type()) {
    case Json::value_t::number_float:
      AppendDouble(out, value.get<double>());
      return;
    case Json::value_t::object: {
      if (value.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        if (!first) out += ',';
        first = false;
        AppendNewline(out, indent, depth + 1);
        out += Json(key).dump();
        out += indent < 0 ? ":" : ": ";
        Append(out, item, indent, depth + 1);
      }
      AppendNewline(out, indent, depth);
      out += '}';
      return;
    }
    case Json::value_t::array: {
      if (value.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const Json& item : value) {
        if (!first) out += ',';
        first = false;
        AppendNewline(out, indent, depth + 1);
        Append(out, item, indent, depth + 1);
      }
      AppendNewline(out, indent, depth);
      out += ']';
      return;
    }
    default:
      // Strings (escaped), integers, booleans and null: nlohmann's text is already exact.
      out += value.dump();
      return;
  }
}

}  // namespace

std::string DumpJson(const Json& doc, int indent) {
  std::string out;
  Append(out, doc, indent, 0);
  return out;
}

}  // namespace btstore::internal
