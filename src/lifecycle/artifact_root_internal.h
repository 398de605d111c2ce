#pragma once
// The artifact root as the lifecycle layer stores it.

#include <filesystem>

namespace btstore::internal {

/// Create the artifact root if missing and return it absolute and canonical, so that result
/// paths stored in the catalog (absolute, under it) compare with it by prefix. Throws
/// InternalError.
std::filesystem::path PrepareArtifactRoot(const std::filesystem::path& root);

}  // namespace btstore::internal
