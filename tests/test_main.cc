// The main() of every GoogleTest binary of btstore: GoogleTest's, plus one rule. Where the
// environment variable CI is "true" (CI sets it, and so does .ci/run when run by hand), a binary
// whose tests were all skipped fails: a dependency missing on the machine (PostgreSQL, strace)
// must fail CI, not pass it with nothing tested. Binaries where only some tests skip are left to
// their own checks (support/backends.h makes missing backends fail instead of skip under CI).

#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <string_view>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int status = RUN_ALL_TESTS();
  const ::testing::UnitTest& tests = *::testing::UnitTest::GetInstance();
  const char* ci = std::getenv("CI");
  if (status == 0 && ci != nullptr && std::string_view(ci) == "true" &&
      tests.test_to_run_count() > 0 && tests.skipped_test_count() == tests.test_to_run_count()) {
    std::cerr << "every test of this binary was skipped (" << tests.skipped_test_count()
              << "), which fails where CI=true: install what the skip messages name" << std::endl;
    return 1;
  }
  return status;
}
