// The embedded SQLite backend. One connection per Catalog object, used by one thread at a time
// under a mutex (a SQLite connection is not meant for concurrent statements, and the file
// allows one writer at a time anyway). Several processes share the file through WAL mode:
// writes start with BEGIN IMMEDIATE, so a writer waits (busy_timeout) for the write lock at the
// start of its transaction instead of failing half-way, and claims are exclusive.

#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "btstore/errors.h"
#include "catalog/backends_internal.h"
#include "catalog/migrations_internal.h"
#include "catalog/sql_catalog_internal.h"
#include "catalog/sqlite/cancel_wakeups_internal.h"
#include "catalog/sqlite/fair_mutex_internal.h"

namespace btstore::internal {
namespace {

// A writer waits at least this long for another process's write lock.
constexpr std::chrono::milliseconds kMinBusyTimeout{5000};
// Pause between tries to switch a brand-new file to WAL while another process does the same
// (that switch does not use the busy handler).
constexpr std::chrono::milliseconds kWalRetryPause{10};

// The one place where SQLite result codes become btstore errors.
[[noreturn]] void ThrowSqlite(sqlite3* db, int rc, std::string_view what) {
  std::string message = std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  ErrorDetails details = {{"sqlite_code", std::to_string(rc)}};
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      throw CatalogUnavailable("the SQLite catalog stayed locked by another writer: " + message,
                               std::move(details));
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_NOTADB:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      throw CatalogUnavailable("cannot use the SQLite catalog: " + message, std::move(details));
    case SQLITE_ERROR:
      if (message.find("no such table") != std::string::npos) {
        throw InvalidArgument("the catalog has no backtest_jobs table: run `btstore migrate`",
                              std::move(details));
      }
      throw InternalError("SQLite failed: " + message, std::move(details));
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
      throw InvalidArgument("the catalog rejected a value: " + message, std::move(details));
    default:
      throw InternalError("SQLite failed: " + message, std::move(details));
  }
}

class SqliteConnection : public SqlConnection {
 public:
  SqliteConnection(const std::filesystem::path& path, std::chrono::milliseconds busy_timeout) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw CatalogUnavailable("cannot open the SQLite catalog " + path.string() + ": " + message,
                               {{"path", path.string()}});
    }
    try {
      Configure(path, busy_timeout);
    } catch (const Error&) {
      sqlite3_close_v2(db_);  // the destructor does not run for a constructor that throws
      throw;
    }
  }

  ~SqliteConnection() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  void Configure(const std::filesystem::path& path, std::chrono::milliseconds busy_timeout) {
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, static_cast<int>(busy_timeout.count()));
    auto deadline = std::chrono::steady_clock::now() + busy_timeout;
    int rc = SQLITE_OK;
    for (;;) {
      rc = sqlite3_exec(db_, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr);
      if ((rc & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(kWalRetryPause);
    }
    if (rc != SQLITE_OK) ThrowSqlite(db_, rc, "opening " + path.string());
    // FULL: a committed transaction survives a power loss, not only a crash of the process.
    Exec("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON");
  }

  // Run statements without parameters or results (pragmas, transaction control, migrations).
  void Exec(const std::string& sql) override {
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) ThrowSqlite(db_, rc, sql.substr(0, 60));
  }

  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

  // Used while an error unwinds: a failed rollback leaves nothing more to undo (SQLite rolls
  // back the rest when the connection closes), and the first error is the one to report.
  void RollbackQuietly() noexcept { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

  std::vector<SqlRow> Query(const std::string& sql, const std::vector<SqlValue>& params) override {
    sqlite3_stmt* stmt = Prepare(sql);
    // Reset even when a step or a bind fails, so the cached statement holds no lock.
    struct Reset {
      sqlite3_stmt* stmt;
      ~Reset() {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
      }
    } reset{stmt};
    for (size_t i = 0; i < params.size(); ++i) Bind(stmt, i + 1, params[i]);
    std::vector<SqlRow> rows;
    const int columns = sqlite3_column_count(stmt);
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) ThrowSqlite(db_, rc, "catalog statement");
      SqlRow& row = rows.emplace_back(columns);
      for (int c = 0; c < columns; ++c) row[c] = ReadValue(stmt, c);
    }
    return rows;
  }

 private:
  sqlite3_stmt* Prepare(const std::string& sql) {
    auto found = statements_.find(sql);
    if (found != statements_.end()) return found->second;
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) ThrowSqlite(db_, rc, "preparing a catalog statement");
    statements_.emplace(sql, stmt);
    return stmt;
  }

  // Parameters are written $1..$n, which SQLite treats as names: bind by name, not position.
  void Bind(sqlite3_stmt* stmt, size_t number, const SqlValue& value) {
    char name[24];
    std::snprintf(name, sizeof name, "$%zu", number);
    int index = sqlite3_bind_parameter_index(stmt, name);
    if (index == 0) return;  // the statement does not use this parameter
    int rc = std::visit(
        [&](const auto& v) -> int {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::monostate>) {
            return sqlite3_bind_null(stmt, index);
          } else if constexpr (std::is_same_v<T, int64_t>) {
            return sqlite3_bind_int64(stmt, index, v);
          } else if constexpr (std::is_same_v<T, double>) {
            return sqlite3_bind_double(stmt, index, v);
          } else {
            return sqlite3_bind_text(stmt, index, v.data(), static_cast<int>(v.size()),
                                     SQLITE_TRANSIENT);
          }
        },
        value);
    if (rc != SQLITE_OK) ThrowSqlite(db_, rc, std::string("binding ") + name);
  }

  static std::optional<std::string> ReadValue(sqlite3_stmt* stmt, int column) {
    switch (sqlite3_column_type(stmt, column)) {
      case SQLITE_NULL:
        return std::nullopt;
      case SQLITE_INTEGER:
        return std::to_string(sqlite3_column_int64(stmt, column));
      case SQLITE_FLOAT: {
        // Shortest round-trip form, so the decoder gets the stored double bit for bit.
        char buf[32];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, sqlite3_column_double(stmt, column));
        return std::string(buf, end);
      }
      default: {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
        return std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt, column)));
      }
    }
  }

  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

// Rolls back a transaction that did not commit (an exception left its scope).
class SqliteTransaction {
 public:
  SqliteTransaction(SqliteConnection& conn, TxKind kind) : conn_(conn) {
    conn_.Exec(kind == TxKind::kWrite ? "BEGIN IMMEDIATE" : "BEGIN");
  }
  ~SqliteTransaction() {
    // Some errors end the transaction already; roll back only what is still open.
    if (!committed_ && conn_.InTransaction()) conn_.RollbackQuietly();
  }
  void Commit() {
    conn_.Exec("COMMIT");
    committed_ = true;
  }

 private:
  SqliteConnection& conn_;
  bool committed_ = false;
};

class SqliteCatalog : public SqlCatalog {
 public:
  SqliteCatalog(const std::filesystem::path& path, std::chrono::milliseconds busy_timeout)
      : conn_(path, busy_timeout) {
    if (path != ":memory:") wakeups_ = CancelWakeupDir(path);
  }

  std::string_view Backend() const override { return "sqlite"; }

  JobRecord RequestCancel(std::string_view job_id, Timestamp now) override {
    JobRecord job = SqlCatalog::RequestCancel(job_id, now);
    // After the commit, so that a worker woken by it finds the cancel on the row.
    if (job.status == JobStatus::kRunning && wakeups_) SendCancelWakeup(*wakeups_, job.job_id);
    return job;
  }

  std::unique_ptr<CancelListener> ListenForCancels() override {
    if (!wakeups_) return nullptr;  // an in-memory catalog has no other process to wake
    return WatchCancelWakeups(*wakeups_);
  }

 protected:
  // Values are stored in their canonical text form already (see the migration).
  std::string ReadExpr(std::string_view expr, ColumnKind /*kind*/) const override {
    return std::string(expr);
  }
  // Parameters are bound with their own types (integer, real, text).
  std::string ParamExpr(std::string_view expr, ColumnKind /*kind*/) const override {
    return std::string(expr);
  }
  // BEGIN IMMEDIATE already excludes every other writer.
  std::string_view LockClause() const override { return ""; }
  const std::vector<Migration>& Migrations() const override { return Migrations_sqlite(); }
  std::string_view MigrationsTableSql() const override {
    return "CREATE TABLE IF NOT EXISTS btstore_migrations (version INTEGER PRIMARY KEY, "
           "name TEXT NOT NULL, applied_at TEXT NOT NULL)";
  }
  // The process's migrators take turns on the mutex; other processes wait in BEGIN IMMEDIATE
  // (each migration's transaction), then see the version recorded.
  void WithMigrationLock(const std::function<void(SqlConnection&)>& body) override {
    std::lock_guard lock(mutex_);
    body(conn_);
  }
  void MigrationTransaction(SqlConnection& /*conn*/, const std::function<void()>& body) override {
    SqliteTransaction tx(conn_, TxKind::kWrite);
    body();
    tx.Commit();
  }
  // SQLite compares text with memcmp (BINARY) by default.
  std::string_view ByteOrder() const override { return ""; }

  void Transact(TxKind kind, const std::function<void(SqlConnection&)>& body) override {
    std::lock_guard lock(mutex_);
    SqliteTransaction tx(conn_, kind);
    body(conn_);
    tx.Commit();
  }

 private:
  FairMutex mutex_;  // first come, first served: see fair_mutex_internal.h
  SqliteConnection conn_;
  std::optional<std::filesystem::path> wakeups_;  // the cancel wake-up directory of the file
};

}  // namespace

std::unique_ptr<Catalog> OpenSqliteCatalog(const std::filesystem::path& path,
                                           const CatalogOptions& options) {
  // SQLite opens a device or a FIFO as if it were a database file and fails later with an I/O
  // error: refuse any path that is there but is not a file, as a directory is refused.
  std::error_code status_error;
  std::filesystem::file_status status = std::filesystem::status(path, status_error);
  if (path != ":memory:" && std::filesystem::exists(status) &&
      !std::filesystem::is_regular_file(status)) {
    throw CatalogUnavailable("cannot use the SQLite catalog " + path.string() +
                                 ": it is not a regular file; give the path of a database file "
                                 "(it is created when missing)",
                             {{"path", path.string()}});
  }
  if (path.has_parent_path() && path != ":memory:") {
    std::error_code error;
    std::filesystem::create_directories(path.parent_path(), error);
    if (error) {
      throw CatalogUnavailable("cannot create the directory of the SQLite catalog " +
                                   path.string() + ": " + error.message(),
                               {{"path", path.string()}});
    }
  }
  return std::make_unique<SqliteCatalog>(path, std::max(options.connect_timeout, kMinBusyTimeout));
}

}  // namespace btstore::internal
