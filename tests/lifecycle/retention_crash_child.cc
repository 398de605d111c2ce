// A cleanup run in a process of its own, for retention_test's crash test, which SIGKILLs it at
// random moments. Prints "progress N" after each batch and "done N" at the end, flushed, so the
// test can time its kills by what the run has done.
//
// Usage: retention_crash_child CATALOG_URL ARTIFACT_ROOT NOW_MICROS RETENTION_DAYS BATCH_SIZE

#include <cstdio>
#include <string>

#include "btstore/catalog.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"

namespace {

class FixedClock : public btstore::Clock {
 public:
  explicit FixedClock(btstore::Timestamp now) : now_(now) {}
  btstore::Timestamp Now() override { return now_; }

 private:
  btstore::Timestamp now_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr,
                 "usage: %s CATALOG_URL ARTIFACT_ROOT NOW_MICROS RETENTION_DAYS BATCH_SIZE\n",
                 argv[0]);
    return 2;
  }
  try {
    FixedClock clock{btstore::Timestamp(std::chrono::microseconds(std::stoll(argv[3])))};
    std::unique_ptr<btstore::Catalog> catalog = btstore::Catalog::Open(argv[1]);
    btstore::RetentionOptions options;
    options.retention_days = std::stoi(argv[4]);
    options.batch_size = std::stoi(argv[5]);
    options.on_progress = [](int64_t done) {
      std::printf("progress %lld\n", static_cast<long long>(done));
      std::fflush(stdout);
    };
    std::unique_ptr<btstore::ArtifactStore> store = btstore::ArtifactStore::Open(argv[2]);
    const btstore::RetentionReport report =
        btstore::CleanupOldResults(*catalog, *store, clock, options);
    std::printf("done %lld\n", static_cast<long long>(report.removed));
    std::fflush(stdout);
    return 0;
  } catch (const btstore::Error& error) {
    std::fprintf(stderr, "%s: %s\n", std::string(btstore::ErrorCodeName(error.code())).c_str(),
                 error.what());
    return btstore::ExitStatus(error.code());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 1;
  }
}
