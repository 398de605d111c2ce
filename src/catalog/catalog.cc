#include "btstore/catalog.h"

#include "btstore/errors.h"
#include "catalog/backends_internal.h"

namespace btstore {

JobRecord Catalog::GetJob(std::string_view job_id) {
  std::optional<JobRecord> job = FindJob(job_id);
  if (!job) throw JobNotFound(std::string(job_id));
  return *std::move(job);
}

std::unique_ptr<Catalog> Catalog::Open(std::string_view url, const CatalogOptions& options) {
  constexpr std::string_view kSqlite = "sqlite:";
  if (options.pool_size < 1) {
    throw InvalidArgument("pool_size must be at least 1", {{"field", "pool_size"}});
  }
  if (options.connect_timeout.count() <= 0) {
    throw InvalidArgument("connect_timeout must be positive", {{"field", "connect_timeout"}});
  }
  if (url.starts_with(kSqlite)) {
    std::string_view path = url.substr(kSqlite.size());
    if (path.empty()) {
      throw InvalidArgument("the sqlite catalog URL needs a path: sqlite:PATH",
                            {{"field", "catalog"}, {"value", std::string(url)}});
    }
    return catalog_internal::OpenSqliteCatalog(std::filesystem::path(path), options);
  }
  // libpq accepts URLs with either scheme, and key=value strings ("host=... dbname=...").
  if (url.starts_with("postgresql://") || url.starts_with("postgres://") ||
      url.find('=') != std::string_view::npos) {
    return catalog_internal::OpenPostgresCatalog(std::string(url), options);
  }
  const std::string shown = RedactCredentials(url);
  throw InvalidArgument("unknown catalog URL '" + shown +
                            "': use postgresql://..., a libpq connection string, or sqlite:PATH",
                        {{"field", "catalog"}, {"value", shown}});
}

}  // namespace btstore
