#include "btstore/errors.h"

#include <array>

namespace btstore {
namespace {

struct CodeInfo {
  std::string_view name;
  int exit_status;
  int http_status;
};

// The one table that maps codes to the contract's names, exit statuses and HTTP statuses.
constexpr std::array<CodeInfo, 8> kCodes = {{
    {"InvalidArgument", 2, 400},
    {"JobNotFound", 3, 404},
    {"ResultPathMissing", 4, 409},
    {"InvalidTransition", 4, 409},
    {"MissingReproducibilityMetadata", 6, 422},
    {"InvalidResult", 6, 422},
    {"CatalogUnavailable", 5, 503},
    {"Internal", 1, 500},
}};

const CodeInfo& Info(ErrorCode code) { return kCodes.at(static_cast<size_t>(code)); }

}  // namespace

std::string_view ErrorCodeName(ErrorCode code) { return Info(code).name; }
int ExitStatus(ErrorCode code) { return Info(code).exit_status; }
int HttpStatus(ErrorCode code) { return Info(code).http_status; }

Error::Error(ErrorCode code, const std::string& message, ErrorDetails details)
    : std::runtime_error(message), code_(code), details_(std::move(details)) {}

JobNotFound::JobNotFound(const std::string& job_id)
    : Error(ErrorCode::kJobNotFound,
            "no job with id '" + job_id + "' (check the id with `btstore list`)",
            {{"job_id", job_id}}) {}

}  // namespace btstore
