#pragma once
// The numbered SQL migrations of each backend, embedded at build time (EmbedMigrations.cmake).

#include <string_view>
#include <vector>

namespace btstore::internal {

/// One migration file, NNNN_name.sql.
struct Migration {
  int version = 0;
  std::string_view name;
  std::string_view sql;
};

/// The migrations of postgres/migrations, in version order.
const std::vector<Migration>& Migrations_postgres();
/// The migrations of sqlite/migrations, in version order.
const std::vector<Migration>& Migrations_sqlite();

}  // namespace btstore::internal
