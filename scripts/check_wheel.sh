#!/usr/bin/env bash
# Build the Python wheel with pip and install it into a fresh venv (no system site packages),
# its dependencies (pyarrow==26.0.1, polars) from the registry, then import it and store a job
# on the embedded catalog. Not part of ctest: a cold wheel build compiles the whole library
# (about 9 minutes on a loaded 2-core machine; incremental afterwards, build/wheel/ is kept).
#
#   scripts/check_wheel.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d -t btstore-wheel-XXXXXX)}
cmake_args=""
command -v ccache >/dev/null && cmake_args="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
CMAKE_ARGS="$cmake_args" .venv/bin/python -m pip wheel -q --no-build-isolation --no-deps \
  -w "$work/dist" .
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/btstore-*.whl
mkdir -p "$work/run"
cd "$work/run"
"$work/venv/bin/python" - <<'PY'
import btstore
store = btstore.Store()          # the embedded default, in this directory
submitted = store.submit("wheel-check", "2024-01-01", "2024-01-31")
assert store.get_job(submitted.job_id)["status"] == "pending"
print("wheel ok:", btstore.__file__)
PY
