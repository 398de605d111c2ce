#pragma once
// The SQL shared by both backends. PostgreSQL and SQLite (3.35+) accept the same statements for
// every move (UPDATE ... RETURNING, INSERT ... ON CONFLICT DO NOTHING, row-value comparison,
// $n parameters), so each statement is written once here; a backend supplies a connection, its
// transactions, and the few spots where the dialects differ (how a column is read back as
// canonical text, row locking, byte-order collation, NOTIFY, advisory locks).

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "btstore/catalog.h"
#include "catalog/migrations_internal.h"

namespace btstore::internal {

/// A bound parameter: NULL, an integer, a double or text.
using SqlValue = std::variant<std::monostate, int64_t, double, std::string>;
/// One result row: every value as text (doubles in shortest round-trip form), NULL as nullopt.
using SqlRow = std::vector<std::optional<std::string>>;

/// One connection, used by one thread for one transaction.
class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  /// Run one statement whose parameters are written $1..$n and return its rows.
  /// Throws a btstore::Error translated from the database's error.
  virtual std::vector<SqlRow> Query(const std::string& sql,
                                    const std::vector<SqlValue>& params) = 0;
  /// Run `sql`, which may hold several statements, without parameters.
  /// Throws a btstore::Error translated from the database's error.
  virtual void Exec(const std::string& sql) = 0;
};

/// Collects the parameters of one statement and returns their placeholders.
class SqlParams {
 public:
  /// Add a value and return its placeholder ("$3").
  std::string AddValue(SqlValue value);
  std::string Add(std::string_view text) { return AddValue(SqlValue(std::string(text))); }
  std::string Add(int value) { return AddValue(SqlValue(int64_t{value})); }
  /// nullopt is NULL.
  std::string AddNullable(const std::optional<std::string>& text);
  /// Timestamps are passed as fixed-width RFC 3339 UTC text with microseconds.
  std::string Add(Timestamp ts);
  std::string Add(Date date);
  /// A non-finite double is NULL (not available).
  std::string AddMetric(double value);

  const std::vector<SqlValue>& values() const { return values_; }

 private:
  std::vector<SqlValue> values_;
};

/// Whether a transaction writes (SQLite takes the write lock at BEGIN IMMEDIATE).
enum class TxKind { kRead, kWrite };

/// How a column is stored, so that a backend can read it back as canonical text.
enum class ColumnKind { kText, kUuid, kDate, kTimestamp, kBool, kInt, kDouble, kJson };

/// The Catalog moves, written once over SqlConnection.
class SqlCatalog : public Catalog {
 public:
  int Migrate() final;
  SubmitResult Submit(const JobSpec& spec, Timestamp now) override;
  SubmitResult InsertCompleted(const JobSpec& spec, const CompletionRecord& record,
                               Timestamp now) override;
  std::optional<JobRecord> FindJob(std::string_view job_id) override;
  JobPage ListJobs(const JobFilter& filter, const PageRequest& page) override;
  std::vector<StatusCount> CountJobs() override;
  void SetPinned(std::string_view job_id, bool pinned) override;
  using Catalog::ClaimJobs;
  std::vector<JobRecord> ClaimJobs(std::string_view worker_id, int max_jobs,
                                   std::chrono::seconds lease, Timestamp now,
                                   const std::vector<std::string>& engines) override;
  HeartbeatResult Heartbeat(std::string_view job_id, int attempt, int progress_pct,
                            const std::optional<std::string>& checkpoint_path,
                            std::chrono::seconds lease, Timestamp now) override;
  TransitionResult Complete(std::string_view job_id, int attempt, const CompletionRecord& record,
                            Timestamp now) override;
  std::vector<TransitionResult> CompleteMany(const std::vector<CompletionRequest>& requests,
                                             Timestamp now) override;
  TransitionResult Fail(std::string_view job_id, int attempt, std::string_view error,
                        std::chrono::milliseconds retry_delay, Timestamp now) override;
  TransitionResult AcknowledgeCancel(std::string_view job_id, int attempt, Timestamp now) override;
  TransitionResult Release(std::string_view job_id, int attempt, std::string_view reason,
                           Timestamp now) override;
  JobRecord RequestCancel(std::string_view job_id, Timestamp now) override;
  JobRecord Resume(std::string_view job_id, Timestamp now) override;
  std::vector<JobRecord> RescueExpired(Timestamp now, std::chrono::milliseconds retry_delay,
                                       int max_jobs) override;
  std::vector<RetentionCandidate> FindExpired(
      Timestamp cutoff, int limit, const std::optional<std::string>& after_job_id) override;
  std::vector<RetentionCandidate> MarkExpiring(Timestamp cutoff, int limit, Timestamp now) override;
  std::vector<std::string> DeleteExpiring(const std::vector<std::string>& job_ids) override;
  void InsertToken(const TokenRecord& token) override;
  std::optional<TokenRecord> FindTokenByHash(std::string_view token_hash) override;
  std::vector<TokenRecord> ListTokens() override;
  bool RevokeToken(std::string_view token_id, Timestamp now) override;

 protected:
  /// Return an expression that reads `expr` (a column or expression of `kind`) as the canonical
  /// text the decoder expects: timestamps as FormatTimestamp text, dates as YYYY-MM-DD, UUIDs
  /// as lowercase text.
  virtual std::string ReadExpr(std::string_view expr, ColumnKind kind) const = 0;
  /// Return an expression that turns `expr`, a bound parameter whose type the statement does
  /// not give (a value inside VALUES), into a value for a column of `kind`.
  virtual std::string ParamExpr(std::string_view expr, ColumnKind kind) const = 0;
  /// The row-locking clause a claim's subquery ends with (" FOR UPDATE SKIP LOCKED"), or "".
  virtual std::string_view LockClause() const = 0;
  /// A collation clause that orders text by bytes, as C++ does (job_id order).
  virtual std::string_view ByteOrder() const = 0;
  /// Run `body` in one transaction on one connection and commit it; roll back when it throws.
  /// A kRead body must be a single statement (a backend may run it in autocommit). `body` may
  /// run twice when the backend retries after a lost connection, so it must only assign its
  /// results.
  virtual void Transact(TxKind kind, const std::function<void(SqlConnection&)>& body) = 0;
  /// Called in the transaction that set cancel_requested on a running job.
  virtual void OnCancelRequested(SqlConnection& /*conn*/, const std::string& /*job_id*/) {}
  /// Called first in a rescue transaction; false means another process is rescuing.
  virtual bool TryLockRescue(SqlConnection& /*conn*/) { return true; }
  /// The backend's numbered migrations, in version order.
  virtual const std::vector<Migration>& Migrations() const = 0;
  /// The statement that creates the table recording applied migrations when it is missing.
  virtual std::string_view MigrationsTableSql() const = 0;
  /// Run `body` on one connection while holding the lock that makes concurrent migrators wait;
  /// release it when `body` returns or throws.
  virtual void WithMigrationLock(const std::function<void(SqlConnection&)>& body) = 0;
  /// Run `body` in one write transaction on `conn` (from WithMigrationLock) and commit it; roll
  /// back when it throws.
  virtual void MigrationTransaction(SqlConnection& conn, const std::function<void()>& body) = 0;

 private:
  std::string JobColumns() const;
  std::string CandidateColumns() const;
  std::string TokenColumns() const;
  std::optional<JobRecord> SelectJob(SqlConnection& conn, std::string_view job_id);
  // INSERT `columns` with `values` (placeholders of `params`) unless the job_id exists; return
  // the new row, or the existing one with created=false.
  SubmitResult InsertUnlessExists(const std::string& job_id, const std::string& columns,
                                  const std::string& values, const SqlParams& params);
  // An UPDATE of the rows `pick` (a WHERE condition with ORDER BY and LIMIT) selects, locked
  // against concurrent pickers, returning `returning`.
  std::string UpdatePicked(const std::string& pick, const std::string& set,
                           const std::string& returning) const;
  std::string ExpiredPredicate(SqlParams& params, Timestamp cutoff) const;
  // The fenced UPDATE of a worker's move (job_id and attempt added to `params`).
  std::string WorkerMoveSql(std::string_view job_id, const std::string& set_clause,
                            const std::string& condition, SqlParams& params, int attempt) const;
  // Run a statement of WorkerMoveSql on `conn`; when it changed no row, report the state that
  // won. Throws JobNotFound when the job does not exist.
  TransitionResult RunWorkerMove(SqlConnection& conn, std::string_view job_id,
                                 const std::string& sql, const SqlParams& params);
  TransitionResult WorkerMove(std::string_view job_id, const std::string& set_clause,
                              const std::string& condition, SqlParams params, int attempt);
  // Complete's SET clause for one attempt.
  std::string CompletionSet(const CompletionRecord& record, Timestamp now, SqlParams& params) const;
  // Complete `requests` (distinct jobs) with one UPDATE ... FROM (VALUES ...) on `conn`; return
  // the results in order. Throws JobNotFound when a job does not exist.
  std::vector<TransitionResult> CompleteInOneStatement(SqlConnection& conn,
                                                       std::span<const CompletionRequest> requests,
                                                       Timestamp now);
};

/// Return a random (version 4) UUID in lowercase text.
std::string NewUuid();

}  // namespace btstore::internal
