#pragma once
// The backend factories behind Catalog::Open.

#include <filesystem>
#include <memory>
#include <string>

#include "btstore/catalog.h"

namespace btstore::internal {

/// Open (creating when missing) the SQLite catalog at `path`. Throws CatalogUnavailable.
std::unique_ptr<Catalog> OpenSqliteCatalog(const std::filesystem::path& path,
                                           const CatalogOptions& options);

/// Connect to the PostgreSQL catalog at `conninfo` (a URL or a key=value string).
/// Throws InvalidArgument for a malformed string, CatalogUnavailable when unreachable.
std::unique_ptr<Catalog> OpenPostgresCatalog(const std::string& conninfo,
                                             const CatalogOptions& options);

}  // namespace btstore::internal
