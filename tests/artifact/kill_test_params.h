#pragma once
/// What the kill test's child writes, shared by the child and the test that checks it.

#include "artifact/bundle_fixtures.h"

namespace btstore::testing {

inline constexpr int kKillTestMaxBundles = 1000;

/// The content of bundle `b-<index>`.
inline BacktestResult KillTestResult(int index) {
  return MakeResult(30, 100, static_cast<uint64_t>(index));
}

}  // namespace btstore::testing
