#!/usr/bin/env bash
# Run btstore's benchmarks side by side with pyarrow, polars and raw Arrow C++ (docs/PERFORMANCE.md).
#
#   scripts/bench.sh [--quick] [--json-out FILE] [--cases 1,2,...]
#
# Sets up the machine first when needed (scripts/setup.sh), builds the target btstore_bench in
# build/ (or $BTSTORE_BUILD_DIR), then runs bench/run_bench.py with the project's venv. Each case
# prints its time and what limits it (an extra run under perf, bench/limiter.py); a full run took
# 689 s on the shared 2-core machine at load 4-7, --quick 60-140 s at load 2-5 (see
# docs/PERFORMANCE.md, "The harness"). Cases 4-6 start a private PostgreSQL cluster in a
# temporary directory (as the `postgres` user when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build_dir=${BTSTORE_BUILD_DIR:-build}

if ! .venv/bin/python -c 'import pyarrow, polars, psycopg' 2>/dev/null || [ ! -f build/build.ninja ]; then
  scripts/setup.sh
fi
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DPython3_EXECUTABLE="$root/.venv/bin/python" >/dev/null
fi
cmake --build "$build_dir" --target btstore_bench
exec .venv/bin/python bench/run_bench.py --build-dir "$build_dir" "$@"
