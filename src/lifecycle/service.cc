// The service object: opens the catalog and the artifact store once and hands out the lifecycle
// over them.

#include "btstore/service.h"

#include <cstdlib>

namespace btstore {

namespace {

std::string FromEnvironment(std::string_view given, const char* variable,
                            std::string_view fallback) {
  if (!given.empty()) return std::string(given);
  const char* value = std::getenv(variable);
  return value != nullptr && *value != '\0' ? std::string(value) : std::string(fallback);
}

}  // namespace

std::string ResolveCatalogUrl(std::string_view given) {
  return FromEnvironment(given, "BTSTORE_CATALOG", kDefaultCatalogUrl);
}

std::string ResolveArtifactRoot(std::string_view given) {
  return FromEnvironment(given, "BTSTORE_ARTIFACT_ROOT", kDefaultArtifactRoot);
}

std::unique_ptr<Service> Service::Open(std::string_view catalog_url,
                                       const std::string& artifact_root,
                                       const ServiceOptions& options) {
  std::unique_ptr<Service> service(new Service());
  service->catalog_ = Catalog::Open(catalog_url, options.catalog);
  if (options.migrate) service->catalog_->Migrate();
  service->store_ = ArtifactStore::Open(artifact_root);
  if (options.clock != nullptr) {
    service->clock_ = options.clock;
  } else {
    service->own_clock_ = std::make_unique<SystemClock>();
    service->clock_ = service->own_clock_.get();
  }
  if (options.engines != nullptr) {
    service->engines_ = options.engines;
  } else {
    service->own_engines_ = std::make_unique<EngineRegistry>(EngineRegistry::Builtins());
    service->engines_ = service->own_engines_.get();
  }
  service->jobs_ = std::make_unique<JobService>(*service->catalog_, *service->store_,
                                                *service->clock_, *service->engines_);
  return service;
}

Service::~Service() = default;

std::unique_ptr<Worker> Service::NewWorker(WorkerOptions options) {
  if (options.engines == nullptr) options.engines = engines_;
  return std::make_unique<Worker>(*catalog_, *store_, *clock_, std::move(options));
}

RetentionReport Service::Cleanup(const RetentionOptions& options) {
  return CleanupOldResults(*catalog_, *store_, *clock_, options);
}

VerifyReport Service::Verify(const VerifyOptions& options) {
  return VerifyBundles(*catalog_, *store_, options);
}

}  // namespace btstore
