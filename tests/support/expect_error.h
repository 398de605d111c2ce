#pragma once
/// Expecting a btstore error of a given code from a call, in GoogleTest.

#include <gtest/gtest.h>

#include "btstore/errors.h"

namespace btstore::testing {

/// Run `fn`, expecting a btstore error of `code`; return it for more checks (a test failure,
/// and an Internal error to look at, when `fn` throws nothing or another code).
template <typename Fn>
Error ExpectError(ErrorCode code, Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(ErrorCodeName(e.code()), ErrorCodeName(code)) << e.what();
    return e;
  }
  ADD_FAILURE() << "expected " << ErrorCodeName(code) << ", nothing was thrown";
  return Error(ErrorCode::kInternal, "nothing thrown");
}

}  // namespace btstore::testing
