#include <gtest/gtest.h>

#include "btstore/errors.h"

namespace btstore {
namespace {

TEST(Errors, NamesAndExitStatusesFollowTheContract) {
  struct Row {
    ErrorCode code;
    const char* name;
    int exit_status;
    int http;
  };
  for (const Row& row : {Row{ErrorCode::kInvalidArgument, "InvalidArgument", 2, 400},
                         Row{ErrorCode::kJobNotFound, "JobNotFound", 3, 404},
                         Row{ErrorCode::kResultPathMissing, "ResultPathMissing", 4, 409},
                         Row{ErrorCode::kInvalidTransition, "InvalidTransition", 4, 409},
                         Row{ErrorCode::kMissingReproducibilityMetadata,
                             "MissingReproducibilityMetadata", 6, 422},
                         Row{ErrorCode::kInvalidResult, "InvalidResult", 6, 422},
                         Row{ErrorCode::kCatalogUnavailable, "CatalogUnavailable", 5, 503},
                         Row{ErrorCode::kUnauthenticated, "Unauthenticated", 7, 401},
                         Row{ErrorCode::kPermissionDenied, "PermissionDenied", 7, 403},
                         Row{ErrorCode::kInternal, "Internal", 1, 500}}) {
    EXPECT_EQ(ErrorCodeName(row.code), row.name);
    EXPECT_EQ(ExitStatus(row.code), row.exit_status);
    EXPECT_EQ(HttpStatus(row.code), row.http);
  }
}

TEST(Errors, MissingMetadataIsAKindOfInvalidResultWithItsOwnCode) {
  try {
    throw MissingReproducibilityMetadata("summary.json lacks snapshot_id", {{"field", "snapshot_id"}});
  } catch (const InvalidResult& e) {
    EXPECT_EQ(e.code(), ErrorCode::kMissingReproducibilityMetadata);
    EXPECT_EQ(e.details().at("field"), "snapshot_id");
  }
}

TEST(Errors, JobNotFoundCarriesTheId) {
  JobNotFound e("abc");
  EXPECT_EQ(e.details().at("job_id"), "abc");
  EXPECT_EQ(e.code(), ErrorCode::kJobNotFound);
}

}  // namespace
}  // namespace btstore
