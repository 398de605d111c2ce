#pragma once
/// The service object a front end opens once (the command line, and next an HTTP server or a
/// Python module): it owns the catalog, the artifact store, the clock and the engine registry,
/// and hands out the JobService, workers, retention and verify over them.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/artifact_store.h"
#include "btstore/catalog.h"
#include "btstore/engine.h"
#include "btstore/lifecycle.h"

namespace btstore {

/// The catalog used when none is given: the embedded SQLite file.
inline constexpr std::string_view kDefaultCatalogUrl = "sqlite:btstore-data/catalog.db";
/// The artifact root used when none is given.
inline constexpr std::string_view kDefaultArtifactRoot = "btstore-data/results";

/// Return the catalog URL to use: `given` when not empty, else $BTSTORE_CATALOG when set and
/// not empty, else kDefaultCatalogUrl.
std::string ResolveCatalogUrl(std::string_view given);
/// Return the artifact root to use: `given`, else $BTSTORE_ARTIFACT_ROOT, else
/// kDefaultArtifactRoot (the same rule as ResolveCatalogUrl).
std::string ResolveArtifactRoot(std::string_view given);

/// How a Service opens its parts.
struct ServiceOptions {
  CatalogOptions catalog;  ///< connection settings of the catalog
  /// Bring the catalog's schema up to date when opening (a no-op when it is).
  bool migrate = true;
  /// Where "now" comes from; must outlive the service. nullptr: the system clock.
  Clock* clock = nullptr;
  /// The engines jobs run with and submissions are checked against; must outlive the service.
  /// nullptr: EngineRegistry::Builtins().
  const EngineRegistry* engines = nullptr;
};

/// A catalog, an artifact store, a clock and engines, opened together. Safe to use from several
/// threads (each part is).
class Service {
 public:
  /// Open the catalog at `catalog_url` (see Catalog::Open) and the artifact store at
  /// `artifact_root` (see ArtifactStore::Open), and migrate unless told not to. Throws
  /// InvalidArgument (a bad URL or root), CatalogUnavailable (the catalog cannot be reached),
  /// InternalError (the root cannot be created).
  static std::unique_ptr<Service> Open(std::string_view catalog_url,
                                       const std::string& artifact_root,
                                       const ServiceOptions& options = {});
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  /// Return the catalog.
  Catalog& catalog() { return *catalog_; }
  /// Return the artifact store.
  ArtifactStore& store() { return *store_; }
  /// Return the clock.
  Clock& clock() { return *clock_; }
  /// Return the engines.
  const EngineRegistry& engines() const { return *engines_; }
  /// Return the job service (submit, cancel, resume, pin, get, list, read results).
  JobService& jobs() { return *jobs_; }

  /// Return a worker over this service's catalog, store and clock; its engines are the
  /// service's unless `options.engines` names others. Throws InvalidArgument for bad options.
  std::unique_ptr<Worker> NewWorker(WorkerOptions options);
  /// Run retention (see CleanupOldResults). Same errors.
  RetentionReport Cleanup(const RetentionOptions& options);
  /// Run verify (see VerifyBundles). Same errors.
  VerifyReport Verify(const VerifyOptions& options);

 private:
  Service() = default;

  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<ArtifactStore> store_;
  std::unique_ptr<Clock> own_clock_;
  Clock* clock_ = nullptr;
  std::unique_ptr<EngineRegistry> own_engines_;
  const EngineRegistry* engines_ = nullptr;
  std::unique_ptr<JobService> jobs_;
};

}  // namespace btstore
