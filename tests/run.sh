#!/usr/bin/env bash
# tests/run.sh — the project's test command (README, .ci/run): installs what the build and the
# tests need, builds everything (CUDA objects too when nvcc exists), runs the unit, Python,
# integration and deploy-manifest tests, then rebuilds with AddressSanitizer + UBSan and runs the unit and Python
# tests again against the sanitized programs. Ends with ctest's summary and a combined line.
# Environment: TWIN_JOBS (build parallelism, default nproc), TWIN_SKIP_ASAN=1 (skip the
# sanitizer pass), TWIN_SKIP_DEPS=1 (skip installing packages).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${TWIN_JOBS:-$(nproc)}

./deploy/install-deps.sh || { echo "tests: installing dependencies failed" >&2; exit 1; }

step() { printf '\n==== %s ====\n' "$*"; }
fail=0
passed_total=0
failed_total=0

run_ctest() {  # build_dir label_regex
  local log
  log=$(mktemp)
  ctest --test-dir "$1" --output-on-failure --no-tests=error -L "$2" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -n "$line" ]; then
    local nfail ntotal
    nfail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    ntotal=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
    passed_total=$((passed_total + ntotal - nfail))
    failed_total=$((failed_total + nfail))
  fi
  rm -f "$log"
  [ "$rc" = 0 ] || fail=1
}

step "build (RelWithDebInfo${TWIN_CUDA:+, TWIN_CUDA=$TWIN_CUDA})"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo ${TWIN_CUDA:+-DTWIN_CUDA=$TWIN_CUDA} >/dev/null \
  && cmake --build build -j"$jobs" || { echo "tests: build failed" >&2; exit 1; }

step "unit, python, integration and deploy tests"
run_ctest build 'unit|python|integration|deploy'

if [ "${TWIN_SKIP_ASAN:-0}" != 1 ]; then
  step "build with AddressSanitizer + UndefinedBehaviorSanitizer"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTWIN_CUDA=OFF \
        -DTWIN_SANITIZE=address,undefined >/dev/null \
    && cmake --build build-asan -j"$jobs" || { echo "tests: sanitizer build failed" >&2; exit 1; }
  step "unit and python tests under the sanitizers"
  TWIN_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_ctest build-asan 'unit|python'
fi

echo
echo "tests: $passed_total passed, $failed_total failed"
exit $fail
