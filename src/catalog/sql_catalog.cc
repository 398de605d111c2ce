#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <span>
#include <utility>

#include "btstore/errors.h"
#include "catalog/sql_catalog_internal.h"

namespace btstore::internal {
namespace {

// How each column of kJobColumns (model.h) is stored, in that order: the order DecodeJob reads.
constexpr std::array<ColumnKind, kJobColumns.size()> kJobColumnKinds = {
    ColumnKind::kUuid,      ColumnKind::kText,      ColumnKind::kText,      ColumnKind::kText,
    ColumnKind::kDate,      ColumnKind::kDate,      ColumnKind::kText,      ColumnKind::kJson,
    ColumnKind::kTimestamp, ColumnKind::kTimestamp, ColumnKind::kTimestamp, ColumnKind::kText,
    ColumnKind::kInt,       ColumnKind::kInt,       ColumnKind::kText,      ColumnKind::kDouble,
    ColumnKind::kDouble,    ColumnKind::kDouble,    ColumnKind::kDouble,    ColumnKind::kDouble,
    ColumnKind::kDouble,    ColumnKind::kDouble,    ColumnKind::kText,      ColumnKind::kJson,
    ColumnKind::kText,      ColumnKind::kInt,       ColumnKind::kText,      ColumnKind::kInt,
    ColumnKind::kInt,       ColumnKind::kInt,       ColumnKind::kBool,      ColumnKind::kTimestamp,
    ColumnKind::kTimestamp, ColumnKind::kTimestamp, ColumnKind::kText,      ColumnKind::kBool,
    ColumnKind::kTimestamp, ColumnKind::kJson,      ColumnKind::kJson,
};
constexpr size_t kFirstMetricColumn = 15;

constexpr std::string_view kTerminalStatuses = "('completed', 'failed', 'cancelled')";
// DeleteExpiring removes rows in batches of this many job_ids per statement.
constexpr size_t kDeleteBatch = 500;

// Decoding trusts the database to hold what the migrations allow; a value that does not parse
// is a bug or a foreign writer, reported as Internal naming the column.
[[noreturn]] void BadValue(std::string_view column, std::string_view value) {
  throw InternalError(
      "catalog returned an unreadable " + std::string(column) + " '" + std::string(value) + "'",
      {{"column", std::string(column)}});
}

const std::string& Required(const SqlRow& row, size_t i) {
  if (i >= row.size() || !row[i]) BadValue(kJobColumns[i], "NULL");
  return *row[i];
}

int64_t ToInt(std::string_view column, std::string_view text) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) BadValue(column, text);
  return value;
}

bool ToBool(std::string_view column, std::string_view text) {
  if (text == "t" || text == "true" || text == "1") return true;
  if (text == "f" || text == "false" || text == "0") return false;
  BadValue(column, text);
}

double ToDouble(std::string_view column, const std::optional<std::string>& text) {
  if (!text) return Metrics::kMissing;
  double value = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size()) BadValue(column, *text);
  return std::isfinite(value) ? value : Metrics::kMissing;
}

std::optional<Timestamp> ToTimestamp(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  return ParseTimestamp(*text, "catalog timestamp");
}

JobRecord DecodeJob(const SqlRow& row) {
  auto name = [](size_t i) { return kJobColumns[i]; };
  JobRecord job;
  job.id = Required(row, 0);
  job.job_id = Required(row, 1);
  job.status = ParseJobStatus(Required(row, 2));
  job.alpha_name = Required(row, 3);
  job.start_date = Date::Parse(Required(row, 4), "start_date");
  job.end_date = Date::Parse(Required(row, 5), "end_date");
  job.weight_method = Required(row, 6);
  job.config_json = Required(row, 7);
  job.created_at = ParseTimestamp(Required(row, 8), "created_at");
  job.started_at = ToTimestamp(row[9]);
  job.completed_at = ToTimestamp(row[10]);
  job.worker_id = row[11];
  job.progress_pct = static_cast<int>(ToInt(name(12), Required(row, 12)));
  job.job_timeout_seconds = static_cast<int>(ToInt(name(13), Required(row, 13)));
  job.result_path = row[14];
  for (size_t m = 0; m < Metrics::kNames.size(); ++m) {
    job.metrics.At(m) = ToDouble(name(kFirstMetricColumn + m), row[kFirstMetricColumn + m]);
  }
  job.snapshot_id = row[22];
  job.dataset_version_ids_json = row[23];
  job.error_message = row[24];
  job.retry_count = static_cast<int>(ToInt(name(25), Required(row, 25)));
  job.created_by = Required(row, 26);
  int64_t priority = ToInt(name(27), Required(row, 27));
  if (priority < 0 || priority > 2) BadValue(name(27), Required(row, 27));
  job.priority = static_cast<Priority>(priority);
  job.max_retries = static_cast<int>(ToInt(name(28), Required(row, 28)));
  job.attempt = static_cast<int>(ToInt(name(29), Required(row, 29)));
  job.cancel_requested = ToBool(name(30), Required(row, 30));
  job.heartbeat_at = ToTimestamp(row[31]);
  job.lease_expires_at = ToTimestamp(row[32]);
  job.run_after = ToTimestamp(row[33]);
  job.checkpoint_path = row[34];
  job.pinned = ToBool(name(35), Required(row, 35));
  job.expiring_at = ToTimestamp(row[36]);
  job.cost_config_json = row[37];
  job.cost_summary_json = row[38];
  job.engine = Required(row, 39);
  return job;
}

std::vector<JobRecord> DecodeJobs(const std::vector<SqlRow>& rows) {
  std::vector<JobRecord> jobs;
  jobs.reserve(rows.size());
  for (const SqlRow& row : rows) jobs.push_back(DecodeJob(row));
  return jobs;
}

RetentionCandidate DecodeCandidate(const SqlRow& row) {
  RetentionCandidate candidate;
  candidate.job_id = row.at(0).value_or("");
  candidate.status = ParseJobStatus(row.at(1).value_or(""));
  candidate.result_path = row.at(2);
  candidate.checkpoint_path = row.at(3);
  candidate.aged_from = ParseTimestamp(row.at(4).value_or(""), "aged_from");
  return candidate;
}

std::vector<RetentionCandidate> SortedCandidates(const std::vector<SqlRow>& rows) {
  std::vector<RetentionCandidate> candidates;
  for (const SqlRow& row : rows) candidates.push_back(DecodeCandidate(row));
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return a.job_id < b.job_id; });
  return candidates;
}

// The engine a submission is stored with: the spec's, else its config's "engine" key, else the
// default (the spec was validated, so the config is a JSON object).
std::string EngineOf(const JobSpec& spec) {
  if (!spec.engine.empty()) return spec.engine;
  nlohmann::json config = nlohmann::json::parse(spec.config_json, nullptr, false);
  auto it = config.is_object() ? config.find("engine") : config.end();
  if (it == config.end() || !it->is_string()) return std::string(kDefaultEngine);
  std::string engine = it->get<std::string>();
  ValidateEngineName(engine);
  return engine;
}

// "col IN ($1, $2, ...)" over `values`.
std::string InList(SqlParams& params, std::string_view column,
                   const std::vector<std::string>& values) {
  std::string in;
  for (const std::string& value : values) in += (in.empty() ? "" : ", ") + params.Add(value);
  return std::string(column) + " IN (" + in + ")";
}

std::string Quoted(JobStatus status) { return "'" + std::string(ToString(status)) + "'"; }

[[noreturn]] void ThrowInvalidTransition(const JobRecord& job, std::string_view request,
                                         const std::string& why) {
  ErrorDetails details = {{"job_id", job.job_id},
                          {"status", std::string(ToString(job.status))},
                          {"from", std::string(ToString(job.status))},
                          {"request", std::string(request)}};
  if (job.expiring_at) details["expiring_at"] = FormatTimestamp(*job.expiring_at);
  throw InvalidTransition("cannot " + std::string(request) + " job " + job.job_id + ": " + why,
                          std::move(details));
}

// The SET clause of a job whose attempt ended without a result (a failure, or a rescue of a
// dead worker): a requested cancel wins; otherwise it is retried after a delay while retries
// remain, else it fails. Every right-hand side reads the row as it was before the update.
std::string RetryOrEndAssignments(SqlParams& params, Timestamp now, Timestamp retry_at,
                                  const std::string& error_expr) {
  const std::string now_p = params.Add(now);
  const std::string retry_p = params.Add(retry_at);
  const std::string retrying = "(NOT cancel_requested AND retry_count < max_retries)";
  return "status = CASE WHEN cancel_requested THEN 'cancelled' WHEN retry_count < max_retries "
         "THEN 'pending' ELSE 'failed' END, "
         "retry_count = CASE WHEN " +
         retrying +
         " THEN retry_count + 1 ELSE retry_count END, "
         "run_after = CASE WHEN " +
         retrying + " THEN " + retry_p +
         " ELSE run_after END, "
         // COALESCE gives the parameter the column's type on PostgreSQL (a CASE of NULL and
         // an untyped parameter would be text); the parameter is never NULL.
         "completed_at = CASE WHEN " +
         retrying + " THEN NULL ELSE COALESCE(" + now_p +
         ", completed_at) END, "
         "error_message = " +
         error_expr + ", lease_expires_at = NULL";
}

}  // namespace

std::string SqlParams::AddValue(SqlValue value) {
  values_.push_back(std::move(value));
  return "$" + std::to_string(values_.size());
}

std::string SqlParams::AddNullable(const std::optional<std::string>& text) {
  return text ? AddValue(SqlValue(*text)) : AddValue(SqlValue());
}

std::string SqlParams::Add(Timestamp ts) { return AddValue(SqlValue(FormatTimestamp(ts))); }

std::string SqlParams::Add(Date date) { return AddValue(SqlValue(date.ToString())); }

std::string SqlParams::AddMetric(double value) {
  return std::isfinite(value) ? AddValue(SqlValue(value)) : AddValue(SqlValue());
}

std::string NewUuid() {
  // One generator per thread, seeded from the OS: ids only need to be unique, not secret.
  thread_local std::mt19937_64 generator{[] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }()};
  std::array<uint8_t, 16> bytes;
  for (size_t i = 0; i < bytes.size(); i += 8) {
    uint64_t word = generator();
    for (size_t j = 0; j < 8; ++j) bytes[i + j] = static_cast<uint8_t>(word >> (8 * j));
  }
  bytes[6] = static_cast<uint8_t>((bytes[6] & 0x0f) | 0x40);  // version 4
  bytes[8] = static_cast<uint8_t>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  constexpr std::string_view kHex = "0123456789abcdef";
  std::string text;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    text += kHex[bytes[i] >> 4];
    text += kHex[bytes[i] & 0x0f];
  }
  return text;
}

// Each migration runs in its own transaction, under the backend's migration lock: a concurrent
// migrator waits, then finds every version recorded, so a second run applies nothing and a
// failed migration leaves nothing half-applied.
int SqlCatalog::Migrate() {
  int applied = 0;
  WithMigrationLock([&](SqlConnection& conn) {
    MigrationTransaction(conn, [&] { conn.Exec(std::string(MigrationsTableSql())); });
    for (const Migration& migration : Migrations()) {
      MigrationTransaction(conn, [&] {
        SqlParams p;
        const std::string version_p = p.Add(migration.version);
        if (!conn.Query("SELECT 1 FROM btstore_migrations WHERE version = " + version_p, p.values())
                 .empty()) {
          return;
        }
        conn.Exec(std::string(migration.sql));
        const std::string name_p = p.Add(migration.name);
        const std::string now_p = p.Add(Now());
        conn.Query("INSERT INTO btstore_migrations (version, name, applied_at) VALUES (" +
                       version_p + ", " + name_p + ", " + now_p + ")",
                   p.values());
        ++applied;
      });
    }
  });
  return applied;
}

std::string SqlCatalog::JobColumns() const {
  std::string columns;
  for (size_t i = 0; i < kJobColumns.size(); ++i) {
    if (!columns.empty()) columns += ", ";
    columns += ReadExpr(kJobColumns[i], kJobColumnKinds[i]);
  }
  return columns;
}

std::string SqlCatalog::CandidateColumns() const {
  return "job_id, status, result_path, checkpoint_path, " +
         ReadExpr("COALESCE(completed_at, created_at)", ColumnKind::kTimestamp);
}

std::string SqlCatalog::UpdatePicked(const std::string& pick, const std::string& set,
                                     const std::string& returning) const {
  // The picked ids are materialised once: an `id IN (SELECT ... LIMIT n)` subquery may be
  // re-evaluated by PostgreSQL's plan and then take more than n rows.
  return "WITH picked AS MATERIALIZED (SELECT id FROM backtest_jobs WHERE " + pick +
         std::string(LockClause()) + ") UPDATE backtest_jobs SET " + set +
         " WHERE id IN (SELECT id FROM picked) RETURNING " + returning;
}

std::optional<JobRecord> SqlCatalog::SelectJob(SqlConnection& conn, std::string_view job_id) {
  SqlParams params;
  std::string sql =
      "SELECT " + JobColumns() + " FROM backtest_jobs WHERE job_id = " + params.Add(job_id);
  std::vector<SqlRow> rows = conn.Query(sql, params.values());
  if (rows.empty()) return std::nullopt;
  return DecodeJob(rows.front());
}

SubmitResult SqlCatalog::InsertUnlessExists(const std::string& job_id, const std::string& columns,
                                            const std::string& values, const SqlParams& params) {
  std::string sql = "INSERT INTO backtest_jobs (" + columns + ") VALUES (" + values +
                    ") ON CONFLICT (job_id) DO NOTHING RETURNING " + JobColumns();
  SubmitResult result;
  Transact(TxKind::kWrite, [&](SqlConnection& conn) {
    std::vector<SqlRow> rows = conn.Query(sql, params.values());
    if (!rows.empty()) {
      result = {DecodeJob(rows.front()), true};
      return;
    }
    // The job_id exists; in this transaction it cannot vanish on SQLite, and on PostgreSQL the
    // conflicting row is committed (ON CONFLICT waits for it), so this read finds it.
    std::optional<JobRecord> existing = SelectJob(conn, job_id);
    if (!existing) {
      throw InternalError("job " + job_id + " conflicted on insert but cannot be read",
                          {{"job_id", job_id}});
    }
    result = {*std::move(existing), false};
  });
  return result;
}

SubmitResult SqlCatalog::Submit(const JobSpec& spec, Timestamp now) {
  ValidateJobSpec(spec);
  SqlParams p;
  std::string values = p.Add(NewUuid()) + ", " + p.Add(spec.job_id) + ", 'pending', " +
                       p.Add(spec.alpha_name) + ", " + p.Add(spec.start_date) + ", " +
                       p.Add(spec.end_date) + ", " + p.Add(spec.weight_method) + ", " +
                       p.Add(spec.config_json) + ", " + p.Add(now) + ", " +
                       p.Add(spec.job_timeout_seconds) + ", " + p.Add(spec.created_by) + ", " +
                       p.Add(static_cast<int>(spec.priority)) + ", " + p.Add(spec.max_retries) +
                       ", " + p.Add(EngineOf(spec));
  return InsertUnlessExists(spec.job_id,
                            "id, job_id, status, alpha_name, start_date, end_date, "
                            "weight_method, config_json, created_at, job_timeout, created_by, "
                            "priority, max_retries, engine",
                            values, p);
}

SubmitResult SqlCatalog::InsertCompleted(const JobSpec& spec, const CompletionRecord& record,
                                         Timestamp now) {
  ValidateJobSpec(spec);
  SqlParams p;
  const std::string now_p = p.Add(now);
  std::string values =
      p.Add(NewUuid()) + ", " + p.Add(spec.job_id) + ", 'completed', " + p.Add(spec.alpha_name) +
      ", " + p.Add(spec.start_date) + ", " + p.Add(spec.end_date) + ", " +
      p.Add(spec.weight_method) + ", " + p.Add(spec.config_json) + ", " + now_p + ", " + now_p +
      ", " + now_p + ", 100, " + p.Add(spec.job_timeout_seconds) + ", " + p.Add(spec.created_by) +
      ", " + p.Add(static_cast<int>(spec.priority)) + ", " + p.Add(spec.max_retries) + ", " +
      p.Add(record.result_path) + ", " + p.Add(record.snapshot_id) + ", " +
      p.Add(record.dataset_version_ids_json) + ", " + p.AddNullable(record.cost_config_json) +
      ", " + p.AddNullable(record.cost_summary_json) + ", " + p.Add(EngineOf(spec));
  std::string columns =
      "id, job_id, status, alpha_name, start_date, end_date, weight_method, config_json, "
      "created_at, started_at, completed_at, progress_pct, job_timeout, created_by, priority, "
      "max_retries, result_path, snapshot_id, dataset_version_ids, cost_config, cost_summary, "
      "engine";
  for (size_t m = 0; m < Metrics::kNames.size(); ++m) {
    columns += ", " + std::string(Metrics::kNames[m]);
    values += ", " + p.AddMetric(record.metrics.At(m));
  }
  return InsertUnlessExists(spec.job_id, columns, values, p);
}

std::optional<JobRecord> SqlCatalog::FindJob(std::string_view job_id) {
  std::optional<JobRecord> job;
  Transact(TxKind::kRead, [&](SqlConnection& conn) { job = SelectJob(conn, job_id); });
  return job;
}

JobPage SqlCatalog::ListJobs(const JobFilter& filter, const PageRequest& page) {
  std::optional<CursorPosition> cursor = ValidateListRequest(filter, page);
  SqlParams p;
  std::vector<std::string> where;
  if (filter.created_by) where.push_back("created_by = " + p.Add(*filter.created_by));
  if (filter.alpha_name) where.push_back("alpha_name = " + p.Add(*filter.alpha_name));
  if (!filter.statuses.empty()) {
    std::string in;
    for (JobStatus status : filter.statuses) {
      in += (in.empty() ? "" : ", ") + p.Add(ToString(status));
    }
    where.push_back("status IN (" + in + ")");
  }
  if (filter.created_from) where.push_back("created_at >= " + p.Add(*filter.created_from));
  if (filter.range_from) where.push_back("end_date >= " + p.Add(*filter.range_from));
  if (filter.range_to) where.push_back("start_date <= " + p.Add(*filter.range_to));
  if (filter.min_mean_ic) where.push_back("mean_ic >= " + p.AddMetric(*filter.min_mean_ic));
  if (filter.min_icir) where.push_back("icir >= " + p.AddMetric(*filter.min_icir));
  if (filter.min_hit_rate) where.push_back("hit_rate >= " + p.AddMetric(*filter.min_hit_rate));
  if (!filter.engines.empty()) where.push_back(InList(p, "engine", filter.engines));
  // The tighter of created_to and the cursor's time is stated on its own as the one upper bound
  // of created_at: a planner estimates such a bound from the column's statistics (a row
  // comparison gets a default guess), and an index range scan takes one upper bound. Without
  // it, PostgreSQL took a deep page of a filter whose rows are sparse in time (user, statuses,
  // created_from and a metric) for a short scan of the time range since the cursor and read the
  // ~8,000 rows of every user there (4.7 ms, against 0.5 ms through the filter's own index), and
  // SQLite scanned a created_at range from created_to down to the cursor (1.1 ms, 10,000 rows
  // deep).
  std::optional<Timestamp> upper = filter.created_to;
  if (cursor && (!upper || cursor->created_at < *upper)) upper = cursor->created_at;
  if (upper) where.push_back("created_at <= " + p.Add(*upper));
  if (cursor) {
    where.push_back("(created_at, id) < (" + p.Add(cursor->created_at) + ", " + p.Add(cursor->id) +
                    ")");
  }
  std::string sql = "SELECT " + JobColumns() + " FROM backtest_jobs";
  for (size_t i = 0; i < where.size(); ++i) sql += (i == 0 ? " WHERE " : " AND ") + where[i];
  // One row more than the page tells whether a next page exists.
  sql +=
      " ORDER BY created_at DESC, id DESC LIMIT " + p.AddValue(SqlValue(int64_t{page.limit} + 1));
  if (page.offset > 0) sql += " OFFSET " + p.AddValue(SqlValue(int64_t{page.offset}));

  JobPage result;
  Transact(TxKind::kRead,
           [&](SqlConnection& conn) { result.jobs = DecodeJobs(conn.Query(sql, p.values())); });
  if (result.jobs.size() > static_cast<size_t>(page.limit)) {
    result.jobs.pop_back();
    result.next = EncodeCursor(result.jobs.back());
  }
  return result;
}

std::vector<StatusCount> SqlCatalog::CountJobs() {
  const std::string sql = "SELECT status, COUNT(*), " +
                          ReadExpr("MIN(created_at)", ColumnKind::kTimestamp) + ", " +
                          ReadExpr("MIN(heartbeat_at)", ColumnKind::kTimestamp) +
                          " FROM backtest_jobs GROUP BY status ORDER BY status";
  std::vector<SqlRow> rows;
  Transact(TxKind::kRead, [&](SqlConnection& conn) { rows = conn.Query(sql, {}); });
  std::vector<StatusCount> counts;
  for (const SqlRow& row : rows) {
    StatusCount count;
    count.status = ParseJobStatus(row.at(0).value_or(""));
    count.count = ToInt("count", row.at(1).value_or(""));
    count.oldest_created_at = ParseTimestamp(row.at(2).value_or(""), "created_at");
    count.oldest_heartbeat_at = ToTimestamp(row.at(3));
    counts.push_back(count);
  }
  return counts;
}

void SqlCatalog::SetPinned(std::string_view job_id, bool pinned) {
  SqlParams p;
  std::string sql = std::string("UPDATE backtest_jobs SET pinned = ") +
                    (pinned ? "TRUE" : "FALSE") + " WHERE job_id = " + p.Add(job_id) +
                    " RETURNING job_id";
  bool found = false;
  Transact(TxKind::kWrite,
           [&](SqlConnection& conn) { found = !conn.Query(sql, p.values()).empty(); });
  if (!found) throw JobNotFound(std::string(job_id));
}

std::vector<JobRecord> SqlCatalog::ClaimJobs(std::string_view worker_id, int max_jobs,
                                             std::chrono::seconds lease, Timestamp now,
                                             const std::vector<std::string>& engines) {
  if (max_jobs < 1) {
    throw InvalidArgument("max_jobs must be at least 1", {{"field", "max_jobs"}});
  }
  for (const std::string& engine : engines) ValidateEngineName(engine);
  SqlParams p;
  const std::string worker_p = p.Add(worker_id);
  const std::string now_p = p.Add(now);
  const std::string lease_p = p.Add(now + lease);
  const std::string limit_p = p.Add(max_jobs);
  const std::string engine_filter =
      engines.empty() ? std::string() : " AND " + InList(p, "engine", engines);
  std::string sql =
      UpdatePicked("status = 'pending' AND (run_after IS NULL OR run_after <= " + now_p + ")" +
                       engine_filter + " ORDER BY priority, created_at, id LIMIT " + limit_p,
                   "status = 'running', attempt = attempt + 1, worker_id = " + worker_p +
                       ", started_at = " + now_p + ", heartbeat_at = " + now_p +
                       ", lease_expires_at = " + lease_p +
                       ", cancel_requested = FALSE, completed_at = NULL, run_after = NULL",
                   JobColumns());
  std::vector<JobRecord> jobs;
  Transact(TxKind::kWrite,
           [&](SqlConnection& conn) { jobs = DecodeJobs(conn.Query(sql, p.values())); });
  // RETURNING gives no order; hand the jobs out in claim order.
  std::sort(jobs.begin(), jobs.end(), [](const JobRecord& a, const JobRecord& b) {
    return std::tie(a.priority, a.created_at, a.id) < std::tie(b.priority, b.created_at, b.id);
  });
  return jobs;
}

HeartbeatResult SqlCatalog::Heartbeat(std::string_view job_id, int attempt, int progress_pct,
                                      const std::optional<std::string>& checkpoint_path,
                                      std::chrono::seconds lease, Timestamp now) {
  if (progress_pct < 0 || progress_pct > 100) {
    throw InvalidArgument("progress must be between 0 and 100", {{"field", "progress_pct"}});
  }
  SqlParams p;
  std::string sql = "UPDATE backtest_jobs SET heartbeat_at = " + p.Add(now) +
                    ", lease_expires_at = " + p.Add(now + lease) +
                    ", progress_pct = " + p.Add(progress_pct) + ", checkpoint_path = COALESCE(" +
                    p.AddNullable(checkpoint_path) +
                    ", checkpoint_path) WHERE job_id = " + p.Add(job_id) +
                    " AND status = 'running' AND attempt = " + p.Add(attempt) + " RETURNING " +
                    ReadExpr("cancel_requested", ColumnKind::kBool);
  HeartbeatResult result;
  Transact(TxKind::kWrite, [&](SqlConnection& conn) {
    std::vector<SqlRow> rows = conn.Query(sql, p.values());
    result.owned = !rows.empty();
    result.cancel_requested =
        result.owned && ToBool("cancel_requested", rows.front().at(0).value_or(""));
  });
  return result;
}

std::string SqlCatalog::WorkerMoveSql(std::string_view job_id, const std::string& set_clause,
                                      const std::string& condition, SqlParams& params,
                                      int attempt) const {
  const std::string job_p = params.Add(job_id);
  const std::string attempt_p = params.Add(attempt);
  return "UPDATE backtest_jobs SET " + set_clause + " WHERE job_id = " + job_p +
         " AND status = 'running' AND attempt = " + attempt_p + condition +
         " RETURNING status, attempt";
}

TransitionResult SqlCatalog::RunWorkerMove(SqlConnection& conn, std::string_view job_id,
                                           const std::string& sql, const SqlParams& params) {
  std::vector<SqlRow> rows = conn.Query(sql, params.values());
  if (!rows.empty()) {
    return {true, ParseJobStatus(rows[0].at(0).value_or("")),
            static_cast<int>(ToInt("attempt", rows[0].at(1).value_or("")))};
  }
  // Lost the race (or the attempt is stale): report the state that won.
  std::optional<JobRecord> job = SelectJob(conn, job_id);
  if (!job) throw JobNotFound(std::string(job_id));
  return {false, job->status, job->attempt};
}

TransitionResult SqlCatalog::WorkerMove(std::string_view job_id, const std::string& set_clause,
                                        const std::string& condition, SqlParams params,
                                        int attempt) {
  const std::string sql = WorkerMoveSql(job_id, set_clause, condition, params, attempt);
  TransitionResult result;
  Transact(TxKind::kWrite,
           [&](SqlConnection& conn) { result = RunWorkerMove(conn, job_id, sql, params); });
  return result;
}

namespace {

// The value of each column that a completion sets, as SQL expressions.
struct CompletionValues {
  std::string completed_at, result_path, snapshot_id, dataset_version_ids, cost_config,
      cost_summary;
  std::vector<std::string> metrics;  // in Metrics::kNames order
};

// Complete's SET clause: one list, for the single completion and the group's statement.
std::string CompletionAssignments(const CompletionValues& v) {
  // The error_message of an earlier attempt (or of a rescue) does not describe a completed job.
  std::string set =
      "status = 'completed', progress_pct = 100, lease_expires_at = NULL, error_message = NULL, "
      "completed_at = " +
      v.completed_at + ", result_path = " + v.result_path + ", snapshot_id = " + v.snapshot_id +
      ", dataset_version_ids = " + v.dataset_version_ids + ", cost_config = " + v.cost_config +
      ", cost_summary = " + v.cost_summary;
  for (size_t m = 0; m < Metrics::kNames.size(); ++m) {
    set += ", " + std::string(Metrics::kNames[m]) + " = " + v.metrics.at(m);
  }
  return set;
}

}  // namespace

std::string SqlCatalog::CompletionSet(const CompletionRecord& record, Timestamp now,
                                      SqlParams& p) const {
  CompletionValues values{p.Add(now),
                          p.Add(record.result_path),
                          p.Add(record.snapshot_id),
                          p.Add(record.dataset_version_ids_json),
                          p.AddNullable(record.cost_config_json),
                          p.AddNullable(record.cost_summary_json),
                          {}};
  for (size_t m = 0; m < Metrics::kNames.size(); ++m) {
    values.metrics.push_back(p.AddMetric(record.metrics.At(m)));
  }
  return CompletionAssignments(values);
}

// A completion is fenced by its attempt and loses to a requested cancel.
constexpr std::string_view kCompletionCondition = " AND NOT cancel_requested";

TransitionResult SqlCatalog::Complete(std::string_view job_id, int attempt,
                                      const CompletionRecord& record, Timestamp now) {
  SqlParams p;
  std::string set = CompletionSet(record, now, p);
  return WorkerMove(job_id, set, std::string(kCompletionCondition), std::move(p), attempt);
}

std::vector<TransitionResult> SqlCatalog::CompleteInOneStatement(
    SqlConnection& conn, std::span<const CompletionRequest> requests, Timestamp now) {
  SqlParams p;
  std::string values;
  for (const CompletionRequest& request : requests) {
    const CompletionRecord& r = request.record;
    values += std::string(values.empty() ? "" : ", ") + "(" + p.Add(request.job_id) + ", " +
              ParamExpr(p.Add(request.attempt), ColumnKind::kInt) + ", " + p.Add(r.result_path) +
              ", " + p.Add(r.snapshot_id) + ", " +
              ParamExpr(p.Add(r.dataset_version_ids_json), ColumnKind::kJson) + ", " +
              ParamExpr(p.AddNullable(r.cost_config_json), ColumnKind::kJson) + ", " +
              ParamExpr(p.AddNullable(r.cost_summary_json), ColumnKind::kJson);
    for (size_t m = 0; m < Metrics::kNames.size(); ++m) {
      values += ", " + ParamExpr(p.AddMetric(r.metrics.At(m)), ColumnKind::kDouble);
    }
    values += ")";
  }
  // VALUES names its columns column1, column2, ... in both dialects.
  CompletionValues from_values{p.Add(now),  "v.column3", "v.column4", "v.column5",
                               "v.column6", "v.column7", {}};
  for (size_t m = 0; m < Metrics::kNames.size(); ++m) {
    from_values.metrics.push_back("v.column" + std::to_string(8 + m));
  }
  const std::string sql = "UPDATE backtest_jobs SET " + CompletionAssignments(from_values) +
                          " FROM (VALUES " + values +
                          ") AS v WHERE backtest_jobs.job_id = v.column1 AND "
                          "backtest_jobs.status = 'running' AND backtest_jobs.attempt = "
                          "v.column2 AND NOT backtest_jobs.cancel_requested RETURNING "
                          "backtest_jobs.job_id, backtest_jobs.status, backtest_jobs.attempt";
  std::map<std::string, TransitionResult, std::less<>> applied;
  for (const SqlRow& row : conn.Query(sql, p.values())) {
    applied[row.at(0).value_or("")] = {true, ParseJobStatus(row.at(1).value_or("")),
                                       static_cast<int>(ToInt("attempt", row.at(2).value_or("")))};
  }
  std::vector<TransitionResult> results;
  for (const CompletionRequest& request : requests) {
    auto it = applied.find(request.job_id);
    if (it != applied.end()) {
      results.push_back(it->second);
      continue;
    }
    // Lost the race (or the attempt is stale): report the state that won.
    std::optional<JobRecord> job = SelectJob(conn, request.job_id);
    if (!job) throw JobNotFound(request.job_id);
    results.push_back({false, job->status, job->attempt});
  }
  return results;
}

std::vector<TransitionResult> SqlCatalog::CompleteMany(
    const std::vector<CompletionRequest>& requests, Timestamp now) {
  // One statement per this many completions: far below both databases' limits on parameters.
  constexpr size_t kCompletionsPerStatement = 500;
  std::set<std::string_view> distinct;
  for (const CompletionRequest& request : requests) distinct.insert(request.job_id);
  std::vector<TransitionResult> results;
  if (requests.empty()) return results;
  if (distinct.size() < requests.size()) {
    // The same job twice: one UPDATE per request, in order, so the first one that owns it wins.
    Transact(TxKind::kWrite, [&](SqlConnection& conn) {
      results.clear();  // the body may run twice (see Transact)
      for (const CompletionRequest& request : requests) {
        SqlParams p;
        const std::string set = CompletionSet(request.record, now, p);
        const std::string sql = WorkerMoveSql(
            request.job_id, set, std::string(kCompletionCondition), p, request.attempt);
        results.push_back(RunWorkerMove(conn, request.job_id, sql, p));
      }
    });
    return results;
  }
  Transact(TxKind::kWrite, [&](SqlConnection& conn) {
    results.clear();  // the body may run twice (see Transact)
    for (size_t first = 0; first < requests.size(); first += kCompletionsPerStatement) {
      const size_t last = std::min(requests.size(), first + kCompletionsPerStatement);
      std::vector<TransitionResult> done =
          CompleteInOneStatement(conn, std::span(requests).subspan(first, last - first), now);
      results.insert(results.end(), done.begin(), done.end());
    }
  });
  return results;
}

TransitionResult SqlCatalog::Fail(std::string_view job_id, int attempt, std::string_view error,
                                  std::chrono::milliseconds retry_delay, Timestamp now) {
  SqlParams p;
  const std::string error_p = p.Add(error);
  std::string set = RetryOrEndAssignments(p, now, now + retry_delay, error_p);
  return WorkerMove(job_id, set, "", std::move(p), attempt);
}

TransitionResult SqlCatalog::AcknowledgeCancel(std::string_view job_id, int attempt,
                                               Timestamp now) {
  SqlParams p;
  std::string set = "status = 'cancelled', lease_expires_at = NULL, completed_at = " + p.Add(now);
  return WorkerMove(job_id, set, " AND cancel_requested", std::move(p), attempt);
}

TransitionResult SqlCatalog::Release(std::string_view job_id, int attempt, std::string_view reason,
                                     Timestamp now) {
  SqlParams p;
  const std::string now_p = p.Add(now);
  // No retry_count + 1 and no run_after: the attempt did not fail, its worker went away, so the
  // job is claimable at once by any live worker, from its checkpoint. worker_id stays, as after a
  // failure, naming the worker that gave the job back.
  std::string set =
      "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END, "
      // COALESCE types the parameter as the column (see RetryOrEndAssignments).
      "completed_at = CASE WHEN cancel_requested THEN COALESCE(" +
      now_p +
      ", completed_at) ELSE NULL END, "
      "error_message = " +
      p.Add(reason) + ", lease_expires_at = NULL, run_after = NULL";
  return WorkerMove(job_id, set, "", std::move(p), attempt);
}

JobRecord SqlCatalog::RequestCancel(std::string_view job_id, Timestamp now) {
  SqlParams p;
  const std::string now_p = p.Add(now);
  std::string sql =
      "UPDATE backtest_jobs SET "
      "status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END, "
      "completed_at = CASE WHEN status = 'pending' THEN " +
      now_p +
      " ELSE completed_at END, "
      "cancel_requested = CASE WHEN status = 'running' THEN TRUE ELSE cancel_requested END"
      " WHERE job_id = " +
      p.Add(job_id) + " AND status IN ('pending', 'running') RETURNING " + JobColumns();
  JobRecord job;
  Transact(TxKind::kWrite, [&](SqlConnection& conn) {
    std::vector<SqlRow> rows = conn.Query(sql, p.values());
    if (rows.empty()) {
      std::optional<JobRecord> current = SelectJob(conn, job_id);
      if (!current) throw JobNotFound(std::string(job_id));
      ThrowInvalidTransition(*current, "cancel",
                             "it already ended (" + std::string(ToString(current->status)) + ")");
    }
    job = DecodeJob(rows.front());
    if (job.status == JobStatus::kRunning) OnCancelRequested(conn, job.job_id);
  });
  return job;
}

JobRecord SqlCatalog::Resume(std::string_view job_id, Timestamp /*now*/) {
  SqlParams p;
  std::string sql =
      "UPDATE backtest_jobs SET status = 'pending', retry_count = retry_count + 1, "
      "cancel_requested = FALSE, error_message = NULL, completed_at = NULL, worker_id = NULL, "
      "started_at = NULL, heartbeat_at = NULL, lease_expires_at = NULL, run_after = NULL"
      " WHERE job_id = " +
      p.Add(job_id) + " AND status IN (" + Quoted(JobStatus::kFailed) + ", " +
      Quoted(JobStatus::kCancelled) + ") AND expiring_at IS NULL RETURNING " + JobColumns();
  JobRecord job;
  Transact(TxKind::kWrite, [&](SqlConnection& conn) {
    std::vector<SqlRow> rows = conn.Query(sql, p.values());
    if (!rows.empty()) {
      job = DecodeJob(rows.front());
      return;
    }
    std::optional<JobRecord> current = SelectJob(conn, job_id);
    if (!current) throw JobNotFound(std::string(job_id));
    if (current->expiring_at) {
      ThrowInvalidTransition(*current, "resume", "retention is removing it");
    }
    ThrowInvalidTransition(*current, "resume",
                           "only failed or cancelled jobs can be resumed, it is " +
                               std::string(ToString(current->status)));
  });
  return job;
}

std::vector<JobRecord> SqlCatalog::RescueExpired(Timestamp now,
                                                 std::chrono::milliseconds retry_delay,
                                                 int max_jobs) {
  if (max_jobs < 1) {
    throw InvalidArgument("max_jobs must be at least 1", {{"field", "max_jobs"}});
  }
  SqlParams p;
  const std::string error_expr =
      "'worker ' || COALESCE(worker_id, '(unknown)') || ' stopped heartbeating; last heartbeat ' "
      "|| COALESCE(" +
      ReadExpr("heartbeat_at", ColumnKind::kTimestamp) + ", 'never')";
  std::string set = RetryOrEndAssignments(p, now, now + retry_delay, error_expr);
  const std::string now_p = p.Add(now);
  std::string sql = UpdatePicked("status = 'running' AND lease_expires_at < " + now_p +
                                     " ORDER BY lease_expires_at, id LIMIT " + p.Add(max_jobs),
                                 set, JobColumns());
  std::vector<JobRecord> jobs;
  Transact(TxKind::kWrite, [&](SqlConnection& conn) {
    jobs.clear();
    if (!TryLockRescue(conn)) return;
    jobs = DecodeJobs(conn.Query(sql, p.values()));
  });
  std::sort(jobs.begin(), jobs.end(),
            [](const JobRecord& a, const JobRecord& b) { return a.job_id < b.job_id; });
  return jobs;
}

std::string SqlCatalog::ExpiredPredicate(SqlParams& params, Timestamp cutoff) const {
  return "status IN " + std::string(kTerminalStatuses) +
         " AND ((NOT pinned AND COALESCE(completed_at, created_at) < " + params.Add(cutoff) +
         ") OR expiring_at IS NOT NULL)";
}

std::vector<RetentionCandidate> SqlCatalog::FindExpired(
    Timestamp cutoff, int limit, const std::optional<std::string>& after_job_id) {
  if (limit < 1) throw InvalidArgument("limit must be at least 1", {{"field", "limit"}});
  SqlParams p;
  std::string sql =
      "SELECT " + CandidateColumns() + " FROM backtest_jobs WHERE " + ExpiredPredicate(p, cutoff);
  if (after_job_id) {
    sql += " AND job_id" + std::string(ByteOrder()) + " > " + p.Add(*after_job_id);
  }
  sql += " ORDER BY job_id" + std::string(ByteOrder()) + " LIMIT " + p.Add(limit);
  std::vector<RetentionCandidate> candidates;
  Transact(TxKind::kRead, [&](SqlConnection& conn) {
    candidates = SortedCandidates(conn.Query(sql, p.values()));
  });
  return candidates;
}

std::vector<RetentionCandidate> SqlCatalog::MarkExpiring(Timestamp cutoff, int limit,
                                                         Timestamp now) {
  if (limit < 1) throw InvalidArgument("limit must be at least 1", {{"field", "limit"}});
  SqlParams p;
  // An earlier (crashed) run's mark is kept: the job has been expiring since then.
  const std::string set = "expiring_at = COALESCE(expiring_at, " + p.Add(now) + ")";
  std::string sql = UpdatePicked(ExpiredPredicate(p, cutoff) + " ORDER BY job_id" +
                                     std::string(ByteOrder()) + " LIMIT " + p.Add(limit),
                                 set, CandidateColumns());
  std::vector<RetentionCandidate> candidates;
  Transact(TxKind::kWrite, [&](SqlConnection& conn) {
    candidates = SortedCandidates(conn.Query(sql, p.values()));
  });
  return candidates;
}

std::vector<std::string> SqlCatalog::DeleteExpiring(const std::vector<std::string>& job_ids) {
  std::vector<std::string> sorted = job_ids;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::vector<std::string> deleted;
  for (size_t begin = 0; begin < sorted.size(); begin += kDeleteBatch) {
    size_t end = std::min(sorted.size(), begin + kDeleteBatch);
    SqlParams p;
    std::string in;
    for (size_t i = begin; i < end; ++i) in += (i == begin ? "" : ", ") + p.Add(sorted[i]);
    // Re-check under the delete: a job resumed (or re-marked) since it was marked stays.
    std::string sql = "DELETE FROM backtest_jobs WHERE job_id IN (" + in +
                      ") AND expiring_at IS NOT NULL AND status IN " +
                      std::string(kTerminalStatuses) + " RETURNING job_id";
    std::vector<std::string> batch_deleted;
    Transact(TxKind::kWrite, [&](SqlConnection& conn) {
      batch_deleted.clear();  // a retried transaction starts over
      for (const auto& row : conn.Query(sql, p.values()))
        batch_deleted.push_back(row.at(0).value());
    });
    deleted.insert(deleted.end(), batch_deleted.begin(), batch_deleted.end());
  }
  std::sort(deleted.begin(), deleted.end());  // RETURNING has no order
  return deleted;
}

std::string SqlCatalog::TokenColumns() const {
  return "token_id, user_name, role, token_hash, " +
         ReadExpr("created_at", ColumnKind::kTimestamp) + ", " +
         ReadExpr("revoked_at", ColumnKind::kTimestamp);
}

namespace {

TokenRecord DecodeToken(const SqlRow& row) {
  auto required = [&](size_t i) -> const std::string& {
    if (i >= row.size() || !row[i]) BadValue("btstore_tokens", "NULL");
    return *row[i];
  };
  TokenRecord token;
  token.token_id = required(0);
  token.user = required(1);
  token.role = ParseRole(required(2));
  token.token_hash = required(3);
  token.created_at = ParseTimestamp(required(4), "created_at");
  token.revoked_at = ToTimestamp(row.at(5));
  return token;
}

}  // namespace

void SqlCatalog::InsertToken(const TokenRecord& token) {
  SqlParams p;
  const std::string sql =
      "INSERT INTO btstore_tokens (token_id, user_name, role, token_hash, created_at) VALUES (" +
      p.Add(token.token_id) + ", " + p.Add(token.user) + ", " + p.Add(ToString(token.role)) + ", " +
      p.Add(token.token_hash) + ", " + p.Add(token.created_at) +
      ") ON CONFLICT DO NOTHING RETURNING token_id";
  bool inserted = false;
  Transact(TxKind::kWrite,
           [&](SqlConnection& conn) { inserted = !conn.Query(sql, p.values()).empty(); });
  if (!inserted) {
    throw InvalidArgument("a token with this id or hash exists", {{"token_id", token.token_id}});
  }
}

std::optional<TokenRecord> SqlCatalog::FindTokenByHash(std::string_view token_hash) {
  SqlParams p;
  const std::string sql =
      "SELECT " + TokenColumns() + " FROM btstore_tokens WHERE token_hash = " + p.Add(token_hash);
  std::vector<SqlRow> rows;
  Transact(TxKind::kRead, [&](SqlConnection& conn) { rows = conn.Query(sql, p.values()); });
  if (rows.empty()) return std::nullopt;
  return DecodeToken(rows.front());
}

std::vector<TokenRecord> SqlCatalog::ListTokens() {
  const std::string sql =
      "SELECT " + TokenColumns() + " FROM btstore_tokens ORDER BY created_at, token_id";
  std::vector<SqlRow> rows;
  Transact(TxKind::kRead, [&](SqlConnection& conn) { rows = conn.Query(sql, {}); });
  std::vector<TokenRecord> tokens;
  for (const SqlRow& row : rows) tokens.push_back(DecodeToken(row));
  return tokens;
}

bool SqlCatalog::RevokeToken(std::string_view token_id, Timestamp now) {
  SqlParams p;
  const std::string sql = "UPDATE btstore_tokens SET revoked_at = COALESCE(revoked_at, " +
                          p.Add(now) + ") WHERE token_id = " + p.Add(token_id) +
                          " RETURNING token_id";
  bool found = false;
  Transact(TxKind::kWrite,
           [&](SqlConnection& conn) { found = !conn.Query(sql, p.values()).empty(); });
  return found;
}

}  // namespace btstore::internal
