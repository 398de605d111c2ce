#include "support/sql_session.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <stdexcept>
#include <string_view>

namespace btstore::testing {

namespace {

constexpr std::string_view kSqlitePrefix = "sqlite:";
// Bound on waiting for a SQLite lock another connection holds (a cleaner, a worker).
constexpr int kSqliteBusyTimeoutMs = 10000;

}  // namespace

SqlSession::SqlSession(const std::string& url) {
  if (url.starts_with(kSqlitePrefix)) {
    const std::string file = url.substr(kSqlitePrefix.size());
    if (sqlite3_open_v2(file.c_str(), &sqlite_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      std::string error = sqlite3_errmsg(sqlite_);
      sqlite3_close(sqlite_);
      throw std::runtime_error("cannot open " + file + ": " + error);
    }
    sqlite3_busy_timeout(sqlite_, kSqliteBusyTimeoutMs);
    return;
  }
  pg_ = PQconnectdb(url.c_str());
  if (PQstatus(pg_) != CONNECTION_OK) {
    std::string error = PQerrorMessage(pg_);
    PQfinish(pg_);
    throw std::runtime_error("cannot connect to " + url + ": " + error);
  }
}

SqlSession::~SqlSession() {
  if (pg_ != nullptr) PQfinish(pg_);
  if (sqlite_ != nullptr) sqlite3_close(sqlite_);
}

std::vector<std::vector<std::optional<std::string>>> SqlSession::Query(
    const std::string& sql, const std::vector<std::string>& params) {
  return Run(sql, params, nullptr);
}

int SqlSession::Execute(const std::string& sql, const std::vector<std::string>& params) {
  int changed = 0;
  Run(sql, params, &changed);
  return changed;
}

std::vector<std::vector<std::optional<std::string>>> SqlSession::Run(
    const std::string& sql, const std::vector<std::string>& params, int* changed) {
  std::vector<std::vector<std::optional<std::string>>> rows;
  if (pg_ != nullptr) {
    std::vector<const char*> values;
    for (const std::string& param : params) values.push_back(param.c_str());
    PGresult* result = PQexecParams(pg_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                    values.data(), nullptr, nullptr, 0);
    const ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      std::string error = PQerrorMessage(pg_);
      PQclear(result);
      throw std::runtime_error(sql + ": " + error);
    }
    for (int r = 0; r < PQntuples(result); ++r) {
      std::vector<std::optional<std::string>> row;
      for (int c = 0; c < PQnfields(result); ++c) {
        if (PQgetisnull(result, r, c)) {
          row.emplace_back(std::nullopt);
        } else {
          row.emplace_back(PQgetvalue(result, r, c));
        }
      }
      rows.push_back(std::move(row));
    }
    if (changed != nullptr) {
      const std::string tuples = PQcmdTuples(result);
      *changed = tuples.empty() ? 0 : std::stoi(tuples);
    }
    PQclear(result);
    return rows;
  }
  sqlite3_stmt* statement = nullptr;
  int rc = sqlite3_prepare_v2(sqlite_, sql.c_str(), -1, &statement, nullptr);
  for (size_t i = 0; rc == SQLITE_OK && i < params.size(); ++i) {
    rc = sqlite3_bind_text(statement, static_cast<int>(i + 1), params[i].c_str(), -1,
                           SQLITE_TRANSIENT);
  }
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
      std::vector<std::optional<std::string>> row;
      for (int c = 0; c < sqlite3_column_count(statement); ++c) {
        const unsigned char* text = sqlite3_column_text(statement, c);
        if (text == nullptr) {
          row.emplace_back(std::nullopt);
        } else {
          row.emplace_back(reinterpret_cast<const char*>(text));
        }
      }
      rows.push_back(std::move(row));
    }
  }
  std::string error = sqlite3_errmsg(sqlite_);
  sqlite3_finalize(statement);
  if (rc != SQLITE_DONE) throw std::runtime_error(sql + ": " + error);
  if (changed != nullptr) *changed = sqlite3_changes(sqlite_);
  return rows;
}

}  // namespace btstore::testing
