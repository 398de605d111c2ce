# Build options for the sanitizer build and the fuzz targets (docs/TESTING.md).
#
# BTSTORE_SANITIZE: compile and link everything (libraries, tests, the executable) with
#   AddressSanitizer and UndefinedBehaviorSanitizer, gcc or clang. Undefined behaviour aborts
#   like a memory error does, so a test that triggers either fails. scripts/sanitize.sh builds
#   build-asan this way and runs the test suite.
# BTSTORE_FUZZ: build the libFuzzer binaries of tests/fuzz, with everything instrumented for
#   coverage and sanitized as with BTSTORE_SANITIZE. Needs clang; scripts/fuzz.sh builds
#   build-fuzz this way.
option(BTSTORE_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(BTSTORE_FUZZ "Build the libFuzzer targets of tests/fuzz (clang; implies sanitizers)" OFF)

if(BTSTORE_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "BTSTORE_FUZZ needs clang for libFuzzer: configure with "
                      "-DCMAKE_CXX_COMPILER=clang++ (scripts/fuzz.sh does)")
endif()

if(BTSTORE_SANITIZE OR BTSTORE_FUZZ)
  set(_sanitizers -fsanitize=address,undefined)
  add_compile_options(${_sanitizers} -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_link_options(${_sanitizers})
endif()
if(BTSTORE_FUZZ)
  # Coverage feedback for libFuzzer in every object; the fuzz binaries link the fuzzer itself.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
