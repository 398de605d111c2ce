#pragma once
// What verify and cleanup share: the rule that tells a losing attempt's bundle.

#include "btstore/artifact_store.h"
#include "btstore/catalog.h"

namespace btstore::internal {

/// Whether `bundle` was left by an attempt that did not complete its job: the job's row is
/// completed (not being removed) and names another bundle. On an object store each attempt
/// writes under a prefix of its own, so a dead worker's upload is such a bundle; on a local
/// root every attempt of a job publishes in one place, so there is none. Throws what the
/// catalog throws.
bool IsStrayAttempt(Catalog& catalog, ArtifactStore& store, const StoredBundle& bundle);

}  // namespace btstore::internal
