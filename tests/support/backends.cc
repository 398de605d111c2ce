#include "support/backends.h"

#include <atomic>

#include "support/pg_cluster.h"

namespace btstore::testing {

std::vector<Backend> AllBackends() { return {Backend::kSqlite, Backend::kPostgres}; }

std::string BackendName(Backend backend) {
  switch (backend) {
    case Backend::kSqlite:
      return "sqlite";
    case Backend::kPostgres:
      return "postgres";
  }
  return "unknown";
}

std::optional<std::string> SkipReason(Backend backend) {
  if (backend == Backend::kPostgres) return PgCluster::SkipReason();
  return std::nullopt;
}

std::string NewCatalogUrl(Backend backend, const std::filesystem::path& dir) {
  if (backend == Backend::kPostgres) return PgCluster::Get().NewDatabaseUrl();
  // Unique within the process even when several threads ask for catalogs in one directory.
  static std::atomic<int> next_file{0};
  return "sqlite:" + (dir / ("catalog-" + std::to_string(++next_file) + ".db")).string();
}

void PrintTo(Backend backend, std::ostream* out) { *out << BackendName(backend); }

}  // namespace btstore::testing
