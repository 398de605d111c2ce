// Helper process of the kill test: writes bundles <root>/b-0, b-1, ... one after another and
// writes one byte to stdout after each is published, until it is killed (or has written
// kMaxBundles, so that it never outlives a parent that died).

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "artifact/bundle_fixtures.h"
#include "artifact/kill_test_params.h"
#include "btstore/bundle.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s ROOT\n", argv[0]);
    return 2;
  }
  std::filesystem::path root = argv[1];
  for (int i = 0; i < btstore::testing::kKillTestMaxBundles; ++i) {
    btstore::WriteBundle(btstore::testing::KillTestResult(i), root / ("b-" + std::to_string(i)));
    if (::write(STDOUT_FILENO, "p", 1) != 1) return 1;
  }
  return 0;
}
