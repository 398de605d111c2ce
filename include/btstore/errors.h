#pragma once
/// Errors of btstore: one base class with a closed code and structured details, and one flat
/// leaf type per name of the contract (section 6). Front ends map the code through
/// ExitStatus()/HttpStatus(); nothing below them catches everything.

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace btstore {

/// The closed set of error names of the contract. The order is not part of the contract.
enum class ErrorCode {
  kInvalidArgument,
  kJobNotFound,
  kResultPathMissing,
  kInvalidTransition,
  kMissingReproducibilityMetadata,
  kInvalidResult,
  kCatalogUnavailable,
  kUnauthenticated,
  kPermissionDenied,
  kInternal,
};

/// Return the contract's name of a code, e.g. "JobNotFound".
std::string_view ErrorCodeName(ErrorCode code);
/// Return the command line's exit status for a code (contract section 6).
int ExitStatus(ErrorCode code);
/// Return the HTTP status for a code (contract section 6).
int HttpStatus(ErrorCode code);

/// Return `text` with the passwords of connection strings replaced by "***": the password of
/// URL userinfo (`scheme://user:PASSWORD@host`) and the value of any `password=VALUE` key,
/// whatever its case, quoted or not. Every message, detail and log line that can hold a catalog
/// URL or a database client's error goes through it before it is shown or stored.
std::string RedactCredentials(std::string_view text);

/// Structured facts about an error (job_id, path, file, column, from/to status, ...).
using ErrorDetails = std::map<std::string, std::string>;

/// The base of every error btstore throws on purpose.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, ErrorDetails details = {});
  ErrorCode code() const { return code_; }
  const ErrorDetails& details() const { return details_; }

 private:
  ErrorCode code_;
  ErrorDetails details_;
};

/// A bad flag, date, id, filter, cursor or configuration.
class InvalidArgument : public Error {
 public:
  explicit InvalidArgument(const std::string& message, ErrorDetails details = {})
      : Error(ErrorCode::kInvalidArgument, message, std::move(details)) {}
};

/// No job with that id.
class JobNotFound : public Error {
 public:
  explicit JobNotFound(const std::string& job_id);
};

/// The job has no usable bundle: null path, missing on disk, or outside the artifact root.
class ResultPathMissing : public Error {
 public:
  explicit ResultPathMissing(const std::string& message, ErrorDetails details = {})
      : Error(ErrorCode::kResultPathMissing, message, std::move(details)) {}
};

/// The job's status does not allow the request. Details carry job_id, status and request.
class InvalidTransition : public Error {
 public:
  explicit InvalidTransition(const std::string& message, ErrorDetails details = {})
      : Error(ErrorCode::kInvalidTransition, message, std::move(details)) {}
};

/// A bundle is invalid: a Parquet file missing, corrupt or of the wrong schema, a checksum
/// mismatch. Details name the file (and the column where one is at fault).
class InvalidResult : public Error {
 public:
  explicit InvalidResult(const std::string& message, ErrorDetails details = {})
      : Error(ErrorCode::kInvalidResult, message, std::move(details)) {}

 protected:
  InvalidResult(ErrorCode code, const std::string& message, ErrorDetails details)
      : Error(code, message, std::move(details)) {}
};

/// summary.json is missing, unreadable, or lacks snapshot_id / dataset_version_ids.
class MissingReproducibilityMetadata : public InvalidResult {
 public:
  explicit MissingReproducibilityMetadata(const std::string& message, ErrorDetails details = {})
      : InvalidResult(ErrorCode::kMissingReproducibilityMetadata, message, std::move(details)) {}
};

/// The catalog database cannot be reached.
class CatalogUnavailable : public Error {
 public:
  explicit CatalogUnavailable(const std::string& message, ErrorDetails details = {})
      : Error(ErrorCode::kCatalogUnavailable, message, std::move(details)) {}
};

/// No credentials, or bad ones (the HTTP server only).
class Unauthenticated : public Error {
 public:
  explicit Unauthenticated(const std::string& message, ErrorDetails details = {})
      : Error(ErrorCode::kUnauthenticated, message, std::move(details)) {}
};

/// The credentials do not allow the request (the HTTP server only). Details carry the user,
/// the role and what was asked.
class PermissionDenied : public Error {
 public:
  explicit PermissionDenied(const std::string& message, ErrorDetails details = {})
      : Error(ErrorCode::kPermissionDenied, message, std::move(details)) {}
};

/// Anything else: a bug, or an environment failure no other name covers (e.g. a full disk).
class InternalError : public Error {
 public:
  explicit InternalError(const std::string& message, ErrorDetails details = {})
      : Error(ErrorCode::kInternal, message, std::move(details)) {}
};

}  // namespace btstore
