#!/usr/bin/env bash
# Install everything btstore needs on a Debian 12 machine, then configure and build it.
#
#   scripts/setup.sh            install (if needed) and build into build/
#   scripts/setup.sh --no-build install (if needed) only; scripts/fuzz.sh and sanitize.sh use it
#
# Idempotent: packages already present are not reinstalled, the venv is rebuilt only when
# requirements-dev.txt changes, and the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# --- Debian packages ------------------------------------------------------------------------
debs=(build-essential cmake ninja-build pkg-config git
      libpq-dev libsqlite3-dev libssl-dev libxxhash-dev
      libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
      postgresql clang-format clang-tidy strace iproute2
      libcpp-httplib-dev libjs-chart.js wrk chromium chromium-driver)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python venv (pyarrow provides Arrow C++ for the build; the rest is for interop tests) --
py=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating the Python venv in .venv"
  "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# --- Configure and build --------------------------------------------------------------------
[ "${1:-}" = "--no-build" ] && exit 0
build_type=${BTSTORE_BUILD_TYPE:-Release}
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type" \
        -DPython3_EXECUTABLE="$root/.venv/bin/python" >/dev/null
fi
cmake --build build -j"$(nproc)"

# --- The Python package (import btstore) into .venv -------------------------------------------
# Installed with pip like any package (pyproject.toml, scikit-build-core), again only when its
# sources change; the wheel's build directory (build/wheel/) is kept, so a reinstall is
# incremental.
pkg_stamp=.venv/.btstore-package.sha256
pkg_want=$( (sha256sum pyproject.toml CMakeLists.txt requirements-dev.txt;
             find python src include cmake -type f -print0 | sort -z | xargs -0 sha256sum) |
            sha256sum | cut -d' ' -f1)
if [ "$(cat "$pkg_stamp" 2>/dev/null)" != "$pkg_want" ] ||
   ! .venv/bin/python -c "import btstore" 2>/dev/null; then
  echo "setup: installing the Python package btstore into .venv"
  cmake_args=""
  command -v ccache >/dev/null && cmake_args="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
  CMAKE_ARGS="$cmake_args" .venv/bin/python -m pip install -q --no-build-isolation --no-deps .
  echo "$pkg_want" > "$pkg_stamp"
fi
