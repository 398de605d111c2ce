#pragma once
/// A plain database session outside btstore's catalog, for tests that act as another program on
/// the same database would: an operator's SQL, the platform's own tools writing
/// `backtest_jobs`, a second session holding a lock, an administrator inspecting the server.

#include <optional>
#include <string>
#include <vector>

struct pg_conn;
struct sqlite3;

namespace btstore::testing {

/// One connection to a catalog URL ("sqlite:PATH" or a libpq URL), kept open until destroyed
/// (so a transaction it began, and the locks it holds, last until then or until ROLLBACK).
class SqlSession {
 public:
  /// Connect. Throws std::runtime_error.
  explicit SqlSession(const std::string& url);
  ~SqlSession();
  SqlSession(const SqlSession&) = delete;
  SqlSession& operator=(const SqlSession&) = delete;

  /// Run one statement with `params` bound to $1, $2... (PostgreSQL) or ?1, ?2... (SQLite) and
  /// return its rows, every value as text (nullopt for NULL). Throws std::runtime_error with
  /// the database's message.
  std::vector<std::vector<std::optional<std::string>>> Query(
      const std::string& sql, const std::vector<std::string>& params = {});

  /// Run one statement and return how many rows it changed. Throws std::runtime_error.
  int Execute(const std::string& sql, const std::vector<std::string>& params = {});

 private:
  std::vector<std::vector<std::optional<std::string>>> Run(const std::string& sql,
                                                           const std::vector<std::string>& params,
                                                           int* changed);

  pg_conn* pg_ = nullptr;
  sqlite3* sqlite_ = nullptr;
};

}  // namespace btstore::testing
