#pragma once
// Private helpers of the built-in engines, shared with JobService and the Worker.

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

/// Check the engine name, the engine's config and the weight method of a submission before
/// it is stored. Throws InvalidArgument naming the field.
void ValidateEngineSpec(const JobSpec& spec);

/// Parse a job's config, which must be a JSON object. Throws InvalidArgument.
nlohmann::json ParseConfigObject(std::string_view config_json);

/// Return the engine name of a config ("synthetic" when absent). Throws InvalidArgument.
std::string EngineName(std::string_view config_json);

/// Return "sha256:<64 hex digits>" of the config with sorted keys and no whitespace, so the same
/// configuration always has the same hash. Throws InvalidArgument for invalid JSON.
std::string ConfigHash(std::string_view config_json);

/// Translate a failed Arrow status into InternalError naming `what`; the one place the
/// lifecycle layer converts Arrow errors.
void ThrowIfArrowError(const arrow::Status& status, std::string_view what);

/// Return the synthetic engine.
std::unique_ptr<Engine> MakeSyntheticEngine();

/// Check that the synthetic engine can hold a run of `symbols` symbols over the business days
/// from `start` to `end`: at most kMaxSyntheticCells (day, symbol) cells, the limit its
/// in-memory state and tables fit in. Throws InvalidArgument that states the limit.
void CheckSyntheticJobSize(Date start, Date end, int symbols);

/// Return true if `method` is a weight method the synthetic engine knows.
bool IsKnownWeightMethod(std::string_view method);

}  // namespace btstore::internal
