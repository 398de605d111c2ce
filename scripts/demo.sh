#!/usr/bin/env bash
# Set up, build, and run the main job: `btstore demo` on the embedded SQLite catalog.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/btstore demo "$@"
