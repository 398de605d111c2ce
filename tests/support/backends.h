#pragma once
/// The catalog backends a conformance test runs against, and fresh catalogs for each.

#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace btstore::testing {

/// A catalog backend of btstore.
enum class Backend { kSqlite, kPostgres };

/// Return every backend, for INSTANTIATE_TEST_SUITE_P(..., ValuesIn(AllBackends()), ...).
std::vector<Backend> AllBackends();

/// Return "sqlite" or "postgres".
std::string BackendName(Backend backend);

/// Return why `backend` cannot be tested here, for GTEST_SKIP; nullopt when it can (always
/// nullopt where CI=true: a missing backend must fail there). Use in SetUp:
/// `if (auto why = SkipReason(GetParam())) GTEST_SKIP() << *why;`
std::optional<std::string> SkipReason(Backend backend);

/// Return the URL of a fresh, empty (unmigrated) catalog: "sqlite:<dir>/catalog-N.db" for
/// SQLite, a new database of PgCluster::Get() for PostgreSQL. Throws std::runtime_error.
std::string NewCatalogUrl(Backend backend, const std::filesystem::path& dir);

/// Name parameterised tests after the backend: `Conformance/CatalogTest.Submit/sqlite`.
struct BackendParamName {
  std::string operator()(const ::testing::TestParamInfo<Backend>& info) const {
    return BackendName(info.param);
  }
};

/// Print a backend in GoogleTest messages.
void PrintTo(Backend backend, std::ostream* out);

}  // namespace btstore::testing
