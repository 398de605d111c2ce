#!/usr/bin/env bash
# Build btstore and its whole test suite with AddressSanitizer and UndefinedBehaviorSanitizer in
# build-asan/ (cmake -DBTSTORE_SANITIZE=ON), then run the suite with ctest (docs/TESTING.md).
# A memory error, a leak or undefined behaviour aborts the process that hits it, so its test
# fails and the report is in ctest's output.
#
#   scripts/sanitize.sh [ctest arguments...]     e.g. scripts/sanitize.sh -R artifact
#
# Installs what is missing first (scripts/setup.sh --no-build); the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh --no-build

build=build-asan
if [ ! -f $build/build.ninja ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBTSTORE_SANITIZE=ON \
        -DBTSTORE_BUILD_BENCH=OFF -DPython3_EXECUTABLE="$root/.venv/bin/python" \
        "${launcher[@]}" >/dev/null
fi
cmake --build $build -j"$(nproc)"

# Arrow allocates from malloc, where AddressSanitizer checks every access, instead of jemalloc.
export ARROW_DEFAULT_MEMORY_POOL=system
export UBSAN_OPTIONS=print_stacktrace=1
cd $build
ctest --output-on-failure --timeout 1500 "$@"
