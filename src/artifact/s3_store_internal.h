#pragma once
// The artifact store on S3-compatible object storage (see s3_store.cc for its layout).

#include <memory>
#include <string>
#include <string_view>

#include "btstore/artifact_store.h"

namespace btstore::internal {

/// The scheme prefix that makes an artifact root an object-store root.
inline constexpr std::string_view kS3Scheme = "s3://";

/// Open the store rooted at `root` ("s3://bucket" or "s3://bucket/prefix"). The endpoint comes
/// from BTSTORE_S3_ENDPOINT ("http://host:port", "https://host" or "host:port"; empty: AWS),
/// region and credentials from the standard AWS variables and files. Throws InvalidArgument
/// for a root without a bucket, InternalError when the S3 client cannot be set up.
std::unique_ptr<ArtifactStore> OpenS3Store(const std::string& root);

}  // namespace btstore::internal
