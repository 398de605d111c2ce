// A binary whose only test skips, to check the rule of test_main.cc (see tests/CMakeLists.txt).

#include <gtest/gtest.h>

TEST(TestMainProbe, Skips) { GTEST_SKIP() << "skipped on purpose"; }
