#!/usr/bin/env bash
# Set up, build, and run the whole test suite (C++ GoogleTest binaries and the Python interop
# tests, all registered with ctest). Tests that need PostgreSQL start their own private cluster.
#
#   scripts/test.sh [ctest arguments...]     e.g. scripts/test.sh -R catalog
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
ctest --output-on-failure --timeout 1500 "$@"
