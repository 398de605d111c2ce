// Tests of the shared test fixtures: other layers rely on them behaving as documented.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "support/backends.h"
#include "support/pg_cluster.h"
#include "support/temp_dir.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

// Run a query returning one value on `url`; empty optional when the connection fails.
std::optional<std::string> QueryOne(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::optional<std::string> value;
  if (PQstatus(conn) == CONNECTION_OK) {
    PGresult* result = PQexec(conn, sql.c_str());
    if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1) {
      value = PQgetvalue(result, 0, 0);
    }
    PQclear(result);
  }
  PQfinish(conn);
  return value;
}

TEST(TempDir, CreatesAUniqueDirectoryAndRemovesItWithItsContents) {
  fs::path kept;
  {
    TempDir first;
    TempDir second;
    EXPECT_NE(first.path(), second.path());
    ASSERT_TRUE(fs::is_directory(first.path()));
    fs::create_directories(first.path() / "a" / "b");
    std::ofstream(first.path() / "a" / "b" / "file") << "x";
    kept = first.path();
  }
  EXPECT_FALSE(fs::exists(kept));
}

TEST(TempDir, MovedFromObjectRemovesNothing) {
  TempDir source;
  fs::path path = source.path();
  TempDir target(std::move(source));
  EXPECT_EQ(target.path(), path);
  EXPECT_TRUE(source.path().empty());  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_TRUE(fs::is_directory(path));
}

TEST(Backends, SqliteUrlsAreFreshFilesInTheGivenDirectory) {
  TempDir dir;
  std::string first = NewCatalogUrl(Backend::kSqlite, dir.path());
  std::string second = NewCatalogUrl(Backend::kSqlite, dir.path());
  EXPECT_NE(first, second);
  EXPECT_EQ(first.rfind("sqlite:" + dir.path().string() + "/", 0), 0u) << first;
  EXPECT_EQ(BackendName(Backend::kSqlite), "sqlite");
  EXPECT_EQ(BackendName(Backend::kPostgres), "postgres");
  EXPECT_EQ(AllBackends().size(), 2u);
}

class PgClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = PgCluster::SkipReason()) GTEST_SKIP() << *why;
  }
};

TEST_F(PgClusterTest, NewDatabasesAreDistinctAndReachable) {
  std::string first = PgCluster::Get().NewDatabaseUrl();
  std::string second = PgCluster::Get().NewDatabaseUrl();
  EXPECT_NE(first, second);
  EXPECT_EQ(QueryOne(first, "SELECT current_database()"), first.substr(first.rfind('/') + 1));
  EXPECT_EQ(QueryOne(second, "SELECT 1"), "1");
  EXPECT_EQ(QueryOne(PgCluster::Get().AdminUrl(), "SELECT current_user"), "postgres");
}

TEST_F(PgClusterTest, ImmediateStopKeepsCommittedDataAndStartServesAgain) {
  PgCluster& cluster = PgCluster::Get();
  std::string url = cluster.NewDatabaseUrl();
  ASSERT_EQ(QueryOne(url, "CREATE TABLE t AS SELECT 42 AS v; SELECT v FROM t"), "42");
  cluster.Stop(/*immediate=*/true);
  EXPECT_FALSE(cluster.running());
  EXPECT_EQ(QueryOne(url, "SELECT 1"), std::nullopt);
  cluster.Start();
  EXPECT_TRUE(cluster.running());
  EXPECT_EQ(QueryOne(url, "SELECT v FROM t"), "42");
  cluster.Stop(/*immediate=*/false);
  cluster.Start();
  EXPECT_EQ(QueryOne(url, "SELECT v FROM t"), "42");
}

TEST(PgClusterUnreachable, UrlPointsAtAPortWithNothingListening) {
  EXPECT_EQ(QueryOne(UnreachableDatabaseUrl() + "?connect_timeout=2", "SELECT 1"), std::nullopt);
}

}  // namespace
}  // namespace btstore::testing
