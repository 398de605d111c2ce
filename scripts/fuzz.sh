#!/usr/bin/env bash
# Build and run the libFuzzer targets of tests/fuzz (docs/TESTING.md) with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer, in build-fuzz/.
#
#   scripts/fuzz.sh TARGET [SECONDS] [LIBFUZZER_FLAGS...]   run one target (default 60 s)
#   scripts/fuzz.sh all [SECONDS]                           run every target in turn
#   scripts/fuzz.sh list                                    name the targets
#
# Targets: summary, bundle, listing, config. A run starts from the seeds in
# tests/fuzz/corpus/TARGET/ (never written to) and keeps the inputs it finds in
# build-fuzz/corpus/TARGET/; crashing inputs go to build-fuzz/findings/TARGET/ and the log to
# build-fuzz/logs/TARGET.log. Copy a crash input into tests/fuzz/corpus/TARGET/ together with
# its fix: the test suite replays that directory on every run.
#
# Installs what is missing first (scripts/setup.sh --no-build, then clang and libFuzzer).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
targets=(summary bundle listing config)

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}
[ $# -ge 1 ] || usage
what=$1
shift
case "$what" in
  list) printf '%s\n' "${targets[@]}"; exit 0 ;;
  all) run=("${targets[@]}") ;;
  *)
    [[ " ${targets[*]} " == *" $what "* ]] || usage
    run=("$what")
    ;;
esac
seconds=${1:-60}
[ $# -ge 1 ] && shift
[[ "$seconds" =~ ^[0-9]+$ ]] || usage

# --- Install ---------------------------------------------------------------------------------
scripts/setup.sh --no-build
debs=(clang libfuzzer-14-dev libclang-rt-14-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Configure and build ---------------------------------------------------------------------
build=build-fuzz
if [ ! -f $build/build.ninja ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
        -DBTSTORE_FUZZ=ON -DBTSTORE_BUILD_BENCH=OFF -DPython3_EXECUTABLE="$root/.venv/bin/python" \
        "${launcher[@]}" >/dev/null
fi
cmake --build $build -j"$(nproc)" --target "${run[@]/%/_fuzz}"

# --- Run -------------------------------------------------------------------------------------
# Arrow allocates from malloc, where AddressSanitizer checks every access, instead of jemalloc.
export ARROW_DEFAULT_MEMORY_POOL=system
export UBSAN_OPTIONS=print_stacktrace=1
# The targets write their files under TMPDIR: memory, when there is some, spares the disk.
[ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
status=0
for name in "${run[@]}"; do
  mkdir -p $build/corpus/$name $build/findings/$name $build/logs
  dict=()
  [ -f tests/fuzz/$name.dict ] && dict=(-dict=tests/fuzz/$name.dict)
  echo "fuzz: running $name for $seconds s (log: $build/logs/$name.log)"
  set +e
  $build/tests/fuzz/${name}_fuzz $build/corpus/$name tests/fuzz/corpus/$name \
      -max_total_time="$seconds" -max_len=65536 -timeout=30 -rss_limit_mb=2048 \
      -print_final_stats=1 \
      -artifact_prefix=$build/findings/$name/ "${dict[@]}" "$@" > $build/logs/$name.log 2>&1
  rc=$?
  set -e
  grep -E "^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units|^stat::peak_rss_mb" \
      $build/logs/$name.log || true
  if [ $rc -ne 0 ]; then
    status=1
    echo "fuzz: $name found a problem (exit $rc):"
    grep -E "FUZZ FINDING|ERROR: |runtime error|Test unit written to" $build/logs/$name.log | head -5
  fi
done
exit $status
