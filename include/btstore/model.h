#pragma once
/// Value types shared by every layer: dates, timestamps, job statuses, metrics, job specs and
/// catalog rows, list filters and pages. Standard library only.

#include <array>
#include <chrono>
#include <cmath>
#include <compare>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace btstore {

// ---------------------------------------------------------------------------------------------
// Dates and timestamps

/// A calendar date (no time zone), stored as days since 1970-01-01 like Arrow's date32.
struct Date {
  int32_t days = 0;

  /// Parse "YYYY-MM-DD" (years 1..9999). Throws InvalidArgument naming `what` otherwise.
  static Date Parse(std::string_view text, std::string_view what = "date");
  /// Make a date from its parts. Throws InvalidArgument when the date does not exist.
  static Date FromYmd(int year, int month, int day);
  /// Format as "YYYY-MM-DD".
  std::string ToString() const;

  auto operator<=>(const Date&) const = default;
};

/// Return the day of the week, 0 = Monday .. 6 = Sunday.
int Weekday(Date date);
/// Return true from Monday to Friday (holidays are not known).
bool IsBusinessDay(Date date);

/// A point in time, UTC, microsecond precision (PostgreSQL's TIMESTAMPTZ precision).
using Timestamp = std::chrono::sys_time<std::chrono::microseconds>;

/// Format as RFC 3339 UTC with microseconds: "2026-11-24T13:05:09.123456Z".
std::string FormatTimestamp(Timestamp ts);

/// FormatTimestamp's characters in a fixed buffer: for callers that format many timestamps and
/// copy each into their own string type (a heap allocation fewer per timestamp).
struct TimestampText {
  std::array<char, 48> chars{};
  size_t size = 0;
  std::string_view view() const { return {chars.data(), size}; }
};
/// Format as FormatTimestamp does.
TimestampText FormatTimestampText(Timestamp ts);
/// Parse an RFC 3339 timestamp ("...Z" or "...+02:00", fraction optional), a
/// "YYYY-MM-DD HH:MM:SS[.ffffff][+00[:00]]" timestamp as PostgreSQL prints it, or a bare date
/// (midnight UTC). A timestamp without an offset is UTC. Throws InvalidArgument naming `what`,
/// also when the time, converted to UTC, falls outside the years 1..9999.
Timestamp ParseTimestamp(std::string_view text, std::string_view what = "timestamp");
/// Parse the upper bound of a time range as ParseTimestamp does, except that a bare date means
/// that whole day: the result is the last microsecond before the next midnight UTC. A timestamp
/// stays exact. Throws InvalidArgument naming `what`.
Timestamp ParseTimestampUpperBound(std::string_view text, std::string_view what = "timestamp");
/// Return the current time, truncated to microseconds.
Timestamp Now();

// ---------------------------------------------------------------------------------------------
// Jobs

/// The lifecycle statuses of contract section 3.
enum class JobStatus { kPending, kRunning, kCompleted, kFailed, kCancelled };

/// Return "pending", "running", "completed", "failed" or "cancelled".
std::string_view ToString(JobStatus status);
/// Parse a status name. Throws InvalidArgument for an unknown name.
JobStatus ParseJobStatus(std::string_view text);
/// Return true for completed, failed and cancelled.
bool IsTerminal(JobStatus status);

/// Scheduling priority: within a priority, oldest first.
enum class Priority { kHigh = 0, kNormal = 1, kLow = 2 };
/// Return "high", "normal" or "low".
std::string_view ToString(Priority priority);
/// Parse "high", "normal" or "low". Throws InvalidArgument otherwise.
Priority ParsePriority(std::string_view text);

/// The metrics of a result. NaN means "not available" (null in JSON and SQL).
struct Metrics {
  static constexpr double kMissing = std::numeric_limits<double>::quiet_NaN();
  /// Metric names, in the contract's order; At(i) is the metric named kNames[i].
  static constexpr std::array<std::string_view, 7> kNames = {
      "mean_ic",          "icir",           "hit_rate", "coverage", "long_short_spread",
      "average_turnover", "decay_half_life"};

  double mean_ic = kMissing;
  double icir = kMissing;
  double hit_rate = kMissing;
  double coverage = kMissing;
  double long_short_spread = kMissing;
  double average_turnover = kMissing;
  double decay_half_life = kMissing;

  /// Return the metric named kNames[i] (i below kNames.size()).
  double& At(size_t i);
  /// Return the metric named kNames[i] (i below kNames.size()).
  double At(size_t i) const;
};

/// mean_ic and icir of a series of daily ICs, as the contract defines them.
struct IcStats {
  double mean_ic = Metrics::kMissing;  ///< arithmetic mean; NaN for no values
  /// mean_ic / sample standard deviation; 0.0 when that deviation is 0; NaN for fewer than two
  /// values.
  double icir = Metrics::kMissing;
};

/// Compute mean_ic and icir of `ic`, summing in order (so every caller gets the same bits). The
/// caller chooses which values count (e.g. only finite ones).
IcStats ComputeIcStats(const std::vector<double>& ic);

/// Limits of the contract's `backtest_jobs` columns.
inline constexpr int kMinJobTimeoutSeconds = 300;
inline constexpr int kMaxJobTimeoutSeconds = 14400;
inline constexpr int kDefaultJobTimeoutSeconds = 3600;
inline constexpr int kDefaultMaxRetries = 2;

/// The deepest nesting of JSON arrays and objects accepted in JSON that btstore did not write
/// (summary.json and its manifest, job configs). Deeper documents are refused before they are
/// parsed, so that no parser or serializer recurses without bound on hostile input.
inline constexpr int kMaxJsonDepth = 64;
/// The largest job config accepted, in bytes of JSON text.
inline constexpr size_t kMaxConfigBytes = 1 << 20;
/// The longest worker id (the `worker_id` column is VARCHAR(255)).
inline constexpr size_t kMaxWorkerIdLength = 255;

/// Return true if `text` is well-formed UTF-8 (no overlong forms, surrogates, or code points
/// above U+10FFFF).
bool IsValidUtf8(std::string_view text);

/// Return true if `text` holds a control character: C0 (below 0x20), DEL, or, UTF-8 encoded,
/// C1 (U+0080..U+009F), which some terminals obey as they obey ESC.
bool HasControlCharacter(std::string_view text);

/// Return the deepest nesting of arrays and objects in JSON text (0 for a scalar), counting the
/// brackets outside string literals. A cheap scan, not a validation: callers run it before a
/// parser to refuse documents nested deeper than they accept.
int JsonNestingDepth(std::string_view text);

/// Check a job config before anything parses it: valid UTF-8, at most kMaxConfigBytes, nested
/// at most kMaxJsonDepth deep, and shaped as one object ("{...}"). Throws InvalidArgument that
/// says which limit the config exceeds.
void ValidateConfigJson(std::string_view config_json);

/// Check a worker id: 1 to kMaxWorkerIdLength bytes of UTF-8 without control characters.
/// Throws InvalidArgument.
void ValidateWorkerId(std::string_view worker_id);

/// Check a user name (created_by, a token's user): 1 to 255 bytes of UTF-8 without control
/// characters. Throws InvalidArgument.
void ValidateUserName(std::string_view user);

/// Check a job_id: 1-64 of letters, digits, '-', '_', '.', not starting with '.'.
/// Throws InvalidArgument otherwise (so it is always safe as a directory name).
void ValidateJobId(std::string_view job_id);

/// The engine of a job whose config names none.
inline constexpr std::string_view kDefaultEngine = "synthetic";
/// The longest engine name (the `engine` column is VARCHAR(64)).
inline constexpr size_t kMaxEngineNameLength = 64;

/// Check an engine name: 1 to kMaxEngineNameLength of letters, digits, '-', '_', '.'.
/// Throws InvalidArgument (field "engine") otherwise.
void ValidateEngineName(std::string_view name);

/// What a submission asks for. `job_id` may be empty: the lifecycle layer derives it.
struct JobSpec {
  std::string job_id;
  std::string alpha_name;
  Date start_date;
  Date end_date;
  std::string weight_method = "equal";
  std::string config_json = "{}";  ///< a JSON object
  std::string created_by;
  Priority priority = Priority::kNormal;
  int job_timeout_seconds = kDefaultJobTimeoutSeconds;
  int max_retries = kDefaultMaxRetries;  ///< automatic retries after a failure or a rescue
  /// The engine that runs the job, which only workers that have it claim. Empty: the config's
  /// "engine" key, or kDefaultEngine when it has none.
  std::string engine;
};

/// Check every field of a spec whose job_id is set (lengths, UTF-8 text without control
/// characters, dates in order, the config as ValidateConfigJson does, timeout range). Throws
/// InvalidArgument naming the field.
void ValidateJobSpec(const JobSpec& spec);

/// The columns of `backtest_jobs` that JobRecord holds: the contract's in its order, then
/// btstore's own (migration 0001), the platform's cost blocks (migration 0002), then the engine
/// a job names (migration 0003). The catalog selects them in this order; front ends name the
/// fields of a job by them.
inline constexpr std::array<std::string_view, 40> kJobColumns = {
    // clang-format off
    "id", "job_id", "status", "alpha_name", "start_date", "end_date", "weight_method",
    "config_json", "created_at", "started_at", "completed_at", "worker_id", "progress_pct",
    "job_timeout", "result_path", "mean_ic", "icir", "hit_rate", "coverage", "long_short_spread",
    "average_turnover", "decay_half_life", "snapshot_id", "dataset_version_ids", "error_message",
    "retry_count", "created_by",
    // btstore's own
    "priority", "max_retries", "attempt", "cancel_requested", "heartbeat_at", "lease_expires_at",
    "run_after", "checkpoint_path", "pinned", "expiring_at",
    // the platform's cost blocks (migration 0002)
    "cost_config", "cost_summary",
    // the engine the job names (migration 0003)
    "engine",
    // clang-format on
};

/// One row of `backtest_jobs`: the contract's columns, then btstore's own.
struct JobRecord {
  std::string id;  ///< UUID
  std::string job_id;
  JobStatus status = JobStatus::kPending;
  std::string alpha_name;
  Date start_date;
  Date end_date;
  std::string weight_method;
  std::string config_json;
  Timestamp created_at;
  std::optional<Timestamp> started_at;
  std::optional<Timestamp> completed_at;
  std::optional<std::string> worker_id;
  int progress_pct = 0;
  int job_timeout_seconds = kDefaultJobTimeoutSeconds;
  std::optional<std::string> result_path;
  Metrics metrics;
  std::optional<std::string> snapshot_id;
  std::optional<std::string> dataset_version_ids_json;  ///< a JSON object, as stored
  std::optional<std::string> error_message;
  int retry_count = 0;
  std::string created_by;
  /// The platform's cost model blocks (migration 0002): JSON text as stored, copied from the
  /// result's summary.json on completion; nullopt when the result has none.
  std::optional<std::string> cost_config_json;
  std::optional<std::string> cost_summary_json;

  // btstore's columns (migration 0001).
  Priority priority = Priority::kNormal;
  int max_retries = kDefaultMaxRetries;
  int attempt = 0;  ///< number of the current/last attempt; fences that attempt's writes
  bool cancel_requested = false;
  std::optional<Timestamp> heartbeat_at;
  std::optional<Timestamp> lease_expires_at;
  std::optional<Timestamp> run_after;  ///< a retried job is not claimed before this
  std::optional<std::string> checkpoint_path;
  bool pinned = false;                   ///< exempt from retention
  std::optional<Timestamp> expiring_at;  ///< marked for removal by retention
  /// The engine that runs the job (migration 0003): only a worker that has it claims the job.
  std::string engine = std::string(kDefaultEngine);
};

// ---------------------------------------------------------------------------------------------
// Listing

inline constexpr int kDefaultListLimit = 50;
inline constexpr int kMaxListLimit = 1000;

/// Filters of list_jobs; every field is optional and they combine with AND.
struct JobFilter {
  std::optional<std::string> created_by;
  std::optional<std::string> alpha_name;
  std::vector<JobStatus> statuses;        ///< any of them; empty = all
  std::optional<Timestamp> created_from;  ///< created_at >= created_from
  std::optional<Timestamp> created_to;    ///< created_at <= created_to
  std::optional<Date> range_from;         ///< backtest range overlaps [range_from, range_to]:
  std::optional<Date> range_to;           ///< end_date >= range_from and start_date <= range_to
  std::optional<double> min_mean_ic;
  std::optional<double> min_icir;
  std::optional<double> min_hit_rate;
  std::vector<std::string> engines;  ///< jobs run by any of these engines; empty = all
};

/// A page request: keyset (`after`, an opaque cursor from the previous page) or, for
/// compatibility, `offset`. Not both.
struct PageRequest {
  int limit = kDefaultListLimit;
  std::optional<std::string> after;
  int64_t offset = 0;
};

/// The decoded position of a keyset cursor: the last row of the previous page.
struct CursorPosition {
  Timestamp created_at;
  std::string id;
};

/// Check a filter and a page request (user and alpha filters of at most 255 bytes of UTF-8,
/// inverted ranges, metric bounds that are not finite, limit 1..kMaxListLimit, negative offset,
/// cursor together with offset, malformed cursor or one whose time is outside the years
/// 1970..9999). Return the decoded cursor, if any. Throws InvalidArgument.
std::optional<CursorPosition> ValidateListRequest(const JobFilter& filter, const PageRequest& page);

/// Encode a cursor for the row after which the next page starts.
std::string EncodeCursor(const JobRecord& last_row);

/// A page of jobs, newest first (created_at DESC, id DESC).
struct JobPage {
  std::vector<JobRecord> jobs;
  std::optional<std::string> next;  ///< cursor of the next page; empty on the last page
};

// ---------------------------------------------------------------------------------------------
// API tokens (the HTTP server's bearer tokens; contract section 9)

/// What a token's holder may do: a reader reads everything; a submitter also submits, and
/// cancels, resumes and pins its own jobs; an admin does everything.
enum class Role { kReader, kSubmitter, kAdmin };
/// Return "reader", "submitter" or "admin".
std::string_view ToString(Role role);
/// Parse "reader", "submitter" or "admin". Throws InvalidArgument otherwise.
Role ParseRole(std::string_view text);

/// A token as the catalog keeps it: never the token itself, only its SHA-256.
struct TokenRecord {
  std::string token_id;  ///< public name of the token, for list and revoke ("tok-" + 16 hex)
  std::string user;      ///< the user it acts as (created_by of what it submits)
  Role role = Role::kReader;
  std::string token_hash;  ///< lowercase hex SHA-256 of the token text
  Timestamp created_at;
  std::optional<Timestamp> revoked_at;  ///< set once revoked; a revoked token authenticates no one
};

}  // namespace btstore
