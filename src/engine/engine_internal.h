#pragma once
// Private helpers of the engine layer: config parsing, hashing and the built-in engines'
// factories.

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "btstore/engine.h"
#include "btstore/model.h"

namespace arrow {
class Status;
}  // namespace arrow

namespace btstore::internal {

/// Parse a job's config, which must be a JSON object. Throws InvalidArgument.
nlohmann::json ParseConfigObject(std::string_view config_json);

/// Return the lowercase hex digits of the SHA-256 digest of `bytes`.
std::string Sha256Hex(std::string_view bytes);

/// Translate a failed Arrow status into InternalError naming `what`; the one place the engine
/// layer converts Arrow errors.
void ThrowIfArrowError(const arrow::Status& status, std::string_view what);

/// Check that the synthetic engine can hold a run of `symbols` symbols over the business days
/// from `start` to `end`: at most kMaxSyntheticCells (day, symbol) cells, the limit its
/// in-memory state and tables fit in. Throws InvalidArgument that states the limit.
void CheckSyntheticJobSize(Date start, Date end, int symbols);

/// Return the factory of the synthetic engine.
std::unique_ptr<EngineFactory> MakeSyntheticFactory();

}  // namespace btstore::internal
