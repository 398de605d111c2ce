// One durable write of btstore in a process of its own, for durability_test, which runs it under
// strace and checks the order of its system calls.
//
// Usage: durability_child bundle ROOT JOB_ID            stage and publish a synthetic bundle
//        durability_child checkpoint ROOT JOB_ID        save a checkpoint of attempt 1
//        durability_child retention ROOT CATALOG_URL    run retention (90 days, one batch)

#include <cstdio>
#include <string>

#include "btstore/artifact_store.h"
#include "btstore/catalog.h"
#include "btstore/engine.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"

namespace {

// A small synthetic result: the three required tables and summary.json.
btstore::BacktestResult SmallResult(const std::string& job_id) {
  btstore::JobSpec spec;
  spec.job_id = job_id;
  spec.alpha_name = "momentum";
  spec.start_date = btstore::Date::Parse("2024-01-01");
  spec.end_date = btstore::Date::Parse("2024-01-31");
  spec.weight_method = "equal";
  spec.config_json = R"({"engine":"synthetic","symbols":20})";
  spec.created_by = "alice";
  return btstore::GenerateSyntheticResult(spec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s bundle|checkpoint|retention ROOT JOB_ID|CATALOG_URL\n",
                 argv[0]);
    return 2;
  }
  const std::string phase = argv[1];
  try {
    std::unique_ptr<btstore::ArtifactStore> store = btstore::ArtifactStore::Open(argv[2]);
    if (phase == "bundle") {
      const btstore::BacktestResult result = SmallResult(argv[3]);
      const btstore::StagedBundle staged = store->Stage(result, {});
      std::unique_ptr<btstore::JobLock> lock = store->LockJob(argv[3]);
      std::printf("%s\n", store->Publish(staged, argv[3]).c_str());
    } else if (phase == "checkpoint") {
      std::printf("%s\n", store->SaveCheckpoint(argv[3], 1, "state after day 20").c_str());
    } else if (phase == "retention") {
      std::unique_ptr<btstore::Catalog> catalog = btstore::Catalog::Open(argv[3]);
      btstore::SystemClock clock;
      const btstore::RetentionReport report = CleanupOldResults(*catalog, *store, clock, {});
      std::printf("removed %lld\n", static_cast<long long>(report.removed));
    } else {
      std::fprintf(stderr, "unknown phase %s\n", phase.c_str());
      return 2;
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 1;
  }
}
