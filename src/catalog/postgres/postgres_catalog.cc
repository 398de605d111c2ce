// The PostgreSQL backend over libpq. A bounded pool of connections is shared by the threads of
// a process; a connection found broken (the server restarted or dropped it) is closed and
// replaced, and a transaction whose very first statement hit a dead pooled connection is run
// again once on a new connection (nothing of it had run). Every value is a bound parameter.

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "btstore/errors.h"
#include "catalog/backends_internal.h"
#include "catalog/migrations_internal.h"
#include "catalog/sql_catalog_internal.h"

namespace btstore::internal {
namespace {

// Advisory lock keys ("btstmigr", "btstresc" in ASCII), one per kind of exclusive work.
constexpr int64_t kMigrateLockKey = 0x6274'7374'6d69'6772;
constexpr int64_t kRescueLockKey = 0x6274'7374'7265'7363;
constexpr const char* kCancelChannel = "btstore_cancel";
// libpq's smallest useful connect_timeout (it treats 1 as 2 seconds).
constexpr int kMinConnectTimeoutSeconds = 2;
// Pause between reconnection attempts of a cancel listener whose server is down.
constexpr std::chrono::milliseconds kReconnectPause{100};

// A connection broke (server restart, network, administrator): the caller may reconnect.
class ConnectionLost : public CatalogUnavailable {
 public:
  using CatalogUnavailable::CatalogUnavailable;
};

bool IsConnectionLoss(PGconn* conn, std::string_view sqlstate) {
  return PQstatus(conn) == CONNECTION_BAD || sqlstate.starts_with("08") || sqlstate == "57P01" ||
         sqlstate == "57P02" || sqlstate == "57P03";
}

// The one place where libpq errors become btstore errors.
[[noreturn]] void ThrowPg(PGconn* conn, const PGresult* result, std::string_view what) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string sqlstate = state ? state : "";
  std::string message = result ? PQresultErrorMessage(result) : "";
  if (message.empty()) message = PQerrorMessage(conn);
  while (!message.empty() && message.back() == '\n') message.pop_back();
  message = RedactCredentials(message);
  ErrorDetails details = {{"sqlstate", sqlstate}, {"statement", std::string(what)}};
  if (IsConnectionLoss(conn, sqlstate)) {
    throw ConnectionLost("lost the connection to the PostgreSQL catalog: " + message,
                         std::move(details));
  }
  // Class 22 (data exception) and 23 (integrity constraint): a value the table does not accept.
  if (sqlstate.starts_with("22") || sqlstate.starts_with("23")) {
    throw InvalidArgument("the catalog rejected a value: " + message, std::move(details));
  }
  if (sqlstate == "42P01") {
    throw InvalidArgument("the catalog has no backtest_jobs table: run `btstore migrate`",
                          std::move(details));
  }
  if (sqlstate.starts_with("53") || sqlstate.starts_with("57")) {
    throw CatalogUnavailable("the PostgreSQL catalog cannot serve the request: " + message,
                             std::move(details));
  }
  throw InternalError("PostgreSQL failed: " + message, std::move(details));
}

std::string ToText(double value) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, end);
}

class PgConnection : public SqlConnection {
 public:
  // Connect within `timeout`. Throws CatalogUnavailable.
  PgConnection(const std::string& conninfo, std::chrono::milliseconds timeout) {
    int seconds =
        std::max<int>(kMinConnectTimeoutSeconds, static_cast<int>((timeout.count() + 999) / 1000));
    std::string timeout_text = std::to_string(seconds);
    // expand_dbname: `dbname` holds the whole URL or key=value string; later keywords win.
    const char* keywords[] = {"dbname", "connect_timeout", "application_name", nullptr};
    const char* values[] = {conninfo.c_str(), timeout_text.c_str(), "btstore", nullptr};
    conn_ = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
      std::string message = conn_ ? PQerrorMessage(conn_) : "out of memory";
      while (!message.empty() && message.back() == '\n') message.pop_back();
      message = RedactCredentials(message);
      PQfinish(conn_);
      conn_ = nullptr;
      throw CatalogUnavailable("cannot connect to the PostgreSQL catalog: " + message,
                               {{"connect_timeout_s", timeout_text}});
    }
    // Server notices (e.g. "terminating connection due to administrator command") would be
    // printed on stderr by libpq; failures reach callers as exceptions instead.
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
    // Doubles come back in their shortest exact form (the default since PostgreSQL 12, set
    // in case a server configures less).
    try {
      Exec("SET extra_float_digits = 3");
    } catch (const Error&) {
      PQfinish(conn_);  // the destructor does not run for a constructor that throws
      throw;
    }
  }

  ~PgConnection() override { PQfinish(conn_); }
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  PGconn* raw() const { return conn_; }
  bool Broken() const { return PQstatus(conn_) != CONNECTION_OK; }
  bool Idle() const { return PQtransactionStatus(conn_) == PQTRANS_IDLE; }

  // Run statements without parameters (transaction control, migrations).
  void Exec(const std::string& sql) override {
    PGresult* result = PQexec(conn_, sql.c_str());
    Check(result, sql);
    PQclear(result);
  }

  std::vector<SqlRow> Query(const std::string& sql, const std::vector<SqlValue>& params) override {
    std::vector<std::optional<std::string>> texts;
    texts.reserve(params.size());
    for (const SqlValue& value : params) {
      texts.push_back(std::visit(
          [](const auto& v) -> std::optional<std::string> {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
              return std::nullopt;
            } else if constexpr (std::is_same_v<T, int64_t>) {
              return std::to_string(v);
            } else if constexpr (std::is_same_v<T, double>) {
              return ToText(v);
            } else {
              return v;
            }
          },
          value));
    }
    std::vector<const char*> pointers;
    for (const auto& text : texts) pointers.push_back(text ? text->c_str() : nullptr);
    PGresult* result = PQexecParams(conn_, sql.c_str(), static_cast<int>(pointers.size()), nullptr,
                                    pointers.data(), nullptr, nullptr, /*resultFormat=*/0);
    Check(result, sql);
    std::vector<SqlRow> rows(static_cast<size_t>(PQntuples(result)));
    const int columns = PQnfields(result);
    for (size_t r = 0; r < rows.size(); ++r) {
      rows[r].resize(columns);
      for (int c = 0; c < columns; ++c) {
        if (!PQgetisnull(result, static_cast<int>(r), c)) {
          rows[r][c] = std::string(PQgetvalue(result, static_cast<int>(r), c),
                                   PQgetlength(result, static_cast<int>(r), c));
        }
      }
    }
    PQclear(result);
    return rows;
  }

  // Used while unwinding; a connection left outside the idle state is dropped by the pool.
  void RollbackQuietly() noexcept {
    if (Broken() || Idle()) return;
    PQclear(PQexec(conn_, "ROLLBACK"));
  }

 private:
  void Check(PGresult* result, std::string_view sql) {
    ExecStatusType status = result ? PQresultStatus(result) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return;
    // Keep the result alive while the error is built, then free it.
    struct Clear {
      PGresult* result;
      ~Clear() { PQclear(result); }
    } clear{result};
    ThrowPg(conn_, result, sql.substr(0, 80));
  }

  PGconn* conn_ = nullptr;
};

// At most `size` connections, shared by the threads of the process.
class PgPool {
 public:
  PgPool(std::string conninfo, int size, std::chrono::milliseconds timeout)
      : conninfo_(std::move(conninfo)), size_(size), timeout_(timeout) {}

  // Return a connection: an idle one, or a new one while fewer than `size` exist (always a new
  // one when `fresh`). Waits while all are in use, at most the connect timeout (a thread that
  // holds a connection too long must not hang the others). Throws CatalogUnavailable.
  std::unique_ptr<PgConnection> Acquire(bool fresh) {
    std::unique_lock lock(mutex_);
    if (!available_.wait_for(lock, timeout_, [&] { return !idle_.empty() || open_ < size_; })) {
      throw CatalogUnavailable("no PostgreSQL catalog connection became free within " +
                                   std::to_string(timeout_.count()) + " ms: all " +
                                   std::to_string(size_) +
                                   " connections of the pool are in use (raise the pool size?)",
                               {{"pool_size", std::to_string(size_)},
                                {"connect_timeout_ms", std::to_string(timeout_.count())}});
    }
    if (!fresh && !idle_.empty()) {
      std::unique_ptr<PgConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
    if (open_ == size_)
      idle_.pop_back();  // make room for the new connection
    else
      ++open_;
    lock.unlock();
    try {
      return std::make_unique<PgConnection>(conninfo_, timeout_);
    } catch (const CatalogUnavailable&) {
      Forget();
      throw;
    }
  }

  // Take a connection back; one that is broken or inside a transaction is closed.
  void Release(std::unique_ptr<PgConnection> conn) {
    if (conn) conn->RollbackQuietly();
    if (!conn || conn->Broken() || !conn->Idle()) {
      conn.reset();
      Forget();
      return;
    }
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(conn));
    available_.notify_one();
  }

  const std::string& conninfo() const { return conninfo_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  void Forget() {
    std::lock_guard lock(mutex_);
    --open_;
    available_.notify_one();
  }

  const std::string conninfo_;
  const int size_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<PgConnection>> idle_;
  int open_ = 0;  // idle and in use
};

// A connection borrowed from the pool for one scope.
class PooledConnection {
 public:
  PooledConnection(PgPool& pool, bool fresh) : pool_(pool), conn_(pool.Acquire(fresh)) {}
  ~PooledConnection() { pool_.Release(std::move(conn_)); }
  PooledConnection(const PooledConnection&) = delete;
  PooledConnection& operator=(const PooledConnection&) = delete;
  PgConnection& operator*() { return *conn_; }
  PgConnection* operator->() { return conn_.get(); }
  // Close the connection instead of returning it (it holds a session lock, or it broke).
  void Discard() { conn_.reset(); }

 private:
  PgPool& pool_;
  std::unique_ptr<PgConnection> conn_;
};

// A dedicated connection (not from the pool) that LISTENs on the cancel channel.
class PgCancelListener : public CancelListener {
 public:
  PgCancelListener(std::string conninfo, std::chrono::milliseconds timeout)
      : conninfo_(std::move(conninfo)), timeout_(timeout) {
    Connect();
  }

  std::optional<std::string> Wait(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!conn_) return Reconnect(deadline);
    for (;;) {
      if (PGnotify* notify = PQnotifies(conn_->raw())) {
        std::string job_id = notify->extra;
        PQfreemem(notify);
        return job_id;
      }
      auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (remaining.count() <= 0) return std::nullopt;
      pollfd fd = {PQsocket(conn_->raw()), POLLIN, 0};
      int ready = poll(&fd, 1, static_cast<int>(remaining.count()));
      if (ready < 0 && errno != EINTR) {
        throw InternalError("poll on the cancel listener failed: " +
                            std::string(std::strerror(errno)));
      }
      if (ready > 0 && (PQconsumeInput(conn_->raw()) == 0 || conn_->Broken())) {
        // Notifications sent while we reconnect are lost: "" tells the caller to re-read rows.
        conn_.reset();
        return Reconnect(deadline);
      }
    }
  }

 private:
  void Connect() {
    auto conn = std::make_unique<PgConnection>(conninfo_, timeout_);
    conn->Exec(std::string("LISTEN ") + kCancelChannel);
    conn_ = std::move(conn);
  }

  // Try to reconnect until `deadline`: "" once connected, nullopt while the server is away.
  std::optional<std::string> Reconnect(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      try {
        Connect();
        return std::string();
      } catch (const CatalogUnavailable&) {
        if (std::chrono::steady_clock::now() + kReconnectPause >= deadline) return std::nullopt;
        std::this_thread::sleep_for(kReconnectPause);
      }
    }
  }

  const std::string conninfo_;
  const std::chrono::milliseconds timeout_;
  std::unique_ptr<PgConnection> conn_;
};

class PostgresCatalog : public SqlCatalog {
 public:
  PostgresCatalog(const std::string& conninfo, const CatalogOptions& options)
      : pool_(conninfo, options.pool_size, options.connect_timeout) {
    // Reach the server now, so a wrong URL fails at Open; the connection joins the pool.
    PooledConnection first(pool_, /*fresh=*/false);
  }

  std::string_view Backend() const override { return "postgresql"; }

  std::unique_ptr<CancelListener> ListenForCancels() override {
    return std::make_unique<PgCancelListener>(pool_.conninfo(), pool_.timeout());
  }

 protected:
  std::string ReadExpr(std::string_view expr, ColumnKind kind) const override {
    const std::string e(expr);
    switch (kind) {
      case ColumnKind::kUuid:
      case ColumnKind::kJson:
        return "(" + e + ")::text";
      case ColumnKind::kDate:
        return "to_char(" + e + ", 'YYYY-MM-DD')";
      case ColumnKind::kTimestamp:
        return "to_char((" + e + ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
      default:
        return e;
    }
  }
  // A parameter inside VALUES is text unless cast.
  std::string ParamExpr(std::string_view expr, ColumnKind kind) const override {
    const std::string e(expr);
    switch (kind) {
      case ColumnKind::kJson:
        return "CAST(" + e + " AS JSONB)";
      case ColumnKind::kInt:
        return "CAST(" + e + " AS INTEGER)";
      case ColumnKind::kDouble:
        return "CAST(" + e + " AS DOUBLE PRECISION)";
      default:
        return e;
    }
  }
  std::string_view LockClause() const override { return " FOR UPDATE SKIP LOCKED"; }

  const std::vector<Migration>& Migrations() const override { return Migrations_postgres(); }
  std::string_view MigrationsTableSql() const override {
    return "CREATE TABLE IF NOT EXISTS btstore_migrations (version INTEGER PRIMARY KEY, "
           "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";
  }

  void WithMigrationLock(const std::function<void(SqlConnection&)>& body) override {
    PooledConnection conn(pool_, /*fresh=*/false);
    // A session lock: concurrent migrators wait here, then find every version recorded. On an
    // error the connection is closed instead of returned, which releases the lock (and rolls
    // back the migration in progress).
    struct Unlock {
      PooledConnection& conn;
      bool done = false;
      ~Unlock() {
        if (!done) conn.Discard();
      }
    } unlock{conn};
    SqlParams lock_p;
    std::string key_p = lock_p.AddValue(SqlValue(kMigrateLockKey));
    conn->Query("SELECT pg_advisory_lock(" + key_p + ")", lock_p.values());
    body(*conn);
    conn->Query("SELECT pg_advisory_unlock(" + key_p + ")", lock_p.values());
    unlock.done = true;
  }

  // A failure leaves the transaction open; WithMigrationLock then discards the connection.
  void MigrationTransaction(SqlConnection& conn, const std::function<void()>& body) override {
    conn.Exec("BEGIN");
    body();
    conn.Exec("COMMIT");
  }
  std::string_view ByteOrder() const override { return " COLLATE \"C\""; }

  // A read is one statement in autocommit, so it is safe to run again after a lost
  // connection. A write is a transaction; it runs again only when the BEGIN found the pooled
  // connection dead (nothing of it ran), since a lost COMMIT may or may not have applied.
  void Transact(TxKind kind, const std::function<void(SqlConnection&)>& body) override {
    for (int round = 0;; ++round) {
      PooledConnection conn(pool_, /*fresh=*/round > 0);
      try {
        if (kind == TxKind::kRead) {
          body(*conn);
          return;
        }
        conn->Exec("BEGIN");
      } catch (const ConnectionLost&) {
        // For instance the server restarted while the connection sat in the pool.
        conn.Discard();
        if (round == 0) continue;
        throw;
      }
      body(*conn);
      conn->Exec("COMMIT");
      return;
    }
  }

  void OnCancelRequested(SqlConnection& conn, const std::string& job_id) override {
    SqlParams p;
    std::string sql =
        "SELECT pg_notify('" + std::string(kCancelChannel) + "', " + p.Add(job_id) + ")";
    conn.Query(sql, p.values());
  }

  bool TryLockRescue(SqlConnection& conn) override {
    SqlParams p;
    std::string sql =
        "SELECT pg_try_advisory_xact_lock(" + p.AddValue(SqlValue(kRescueLockKey)) + ")";
    std::vector<SqlRow> rows = conn.Query(sql, p.values());
    return !rows.empty() && rows[0].at(0) == "t";
  }

 private:
  PgPool pool_;
};

}  // namespace

std::unique_ptr<Catalog> OpenPostgresCatalog(const std::string& conninfo,
                                             const CatalogOptions& options) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (parsed == nullptr) {
    // libpq quotes the string it could not parse, password included.
    std::string message = RedactCredentials(error ? error : "cannot parse it");
    PQfreemem(error);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    throw InvalidArgument("malformed PostgreSQL connection string: " + message,
                          {{"field", "catalog"}});
  }
  // libpq only checks the port when it connects, and then reports it like an unreachable
  // server; a port that is not a number (or a comma-separated list of them) is a bad URL.
  for (PQconninfoOption* option = parsed; option->keyword != nullptr; ++option) {
    if (std::string_view(option->keyword) != "port" || option->val == nullptr) continue;
    std::string_view port = option->val;
    if (port.find_first_not_of("0123456789,") != std::string_view::npos) {
      std::string value(port);
      PQconninfoFree(parsed);
      throw InvalidArgument("the port of the PostgreSQL URL is not a number: " + value,
                            {{"field", "catalog"}, {"value", value}});
    }
  }
  PQconninfoFree(parsed);
  return std::make_unique<PostgresCatalog>(conninfo, options);
}

}  // namespace btstore::internal
