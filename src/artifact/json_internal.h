#pragma once
// JSON text as btstore writes it into a bundle (summary.json, walk_forward.json,
// param_search.json), and the checks it applies to JSON it reads from one.

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace btstore::internal {

/// summary.json and the JSON artifacts larger than this are rejected (InvalidResult): they hold
/// metadata, and a bounded size keeps a corrupt or hostile file from exhausting memory.
inline constexpr std::uintmax_t kMaxJsonFileBytes = 16u << 20;

/// Write `doc` as nlohmann's dump(indent) does, except that every finite double is written in
/// its shortest round-trip form (std::to_chars), with ".0" added where that form has neither a
/// fraction nor an exponent (so "-0.0" keeps its sign and stays a float for every reader), and
/// every non-finite double as null. `doc` must be nested at most kMaxJsonDepth deep.
std::string DumpJson(const nlohmann::ordered_json& doc, int indent);

}  // namespace btstore::internal
