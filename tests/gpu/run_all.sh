#!/usr/bin/env bash
# tests/gpu/run_all.sh — on the GPU machine: builds the harnesses (build.sh), runs every one, and
# prints one table: check, error (relative L2 unless the name says otherwise), tolerance,
# PASS/FAIL, median time, GB/s and TFLOP/s; then the backend benchmark's table (tokens/s and
# time to first token on the Llama-3.1-8B and 3.2-1B shapes, with the design's targets). Each
# program's full output goes to <build dir>/logs/<name>.log; when OUT is set, also
# $OUT/gpu-logs.txt (all logs), $OUT/gpu-results.txt and $OUT/gpu-bench.txt.
# Usage: tests/gpu/run_all.sh [build dir]   (default: build-gpu at the repository root)
# SKIP_BENCH=1 skips the benchmark.
# Exit status: 0 when every check passed, 1 when one failed or a program crashed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build-gpu}
started=$(date +%s)

echo "== build"
"$here/build.sh" "$out"
echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem \
  --format=csv 2>/dev/null || echo "(nvidia-smi unavailable)"

logs=$out/logs
mkdir -p "$logs"
results=$logs/results.txt
: >"$results"
harnesses=(test_convert test_embedding test_rmsnorm test_silu_mul test_rope_kv test_gemm
           test_gemv_quant test_gemv_bf16 test_gemv_fused test_attention test_sampling test_profile test_backend)
for t in "${harnesses[@]}"; do
  log=$logs/$t.log
  t0=$(date +%s)
  set +e
  timeout 300 "$out/$t" >"$log" 2>&1
  rc=$?
  set -e
  echo "== $t: exit $rc, $(( $(date +%s) - t0 )) s"
  grep -v '^RESULT|' "$log" | grep -v '^device:' | head -n 20 || true
  grep '^RESULT|' "$log" | sed "s/^RESULT|/$t|/" >>"$results" || true
  if [ "$rc" -ne 0 ] && ! grep -q '|FAIL|' "$log"; then
    echo "$t|harness exited with status $rc (see $log)|-|-|CRASH|-|-|-" >>"$results"
  fi
done
bench=$logs/bench.txt
: >"$bench"
if [ -z "${SKIP_BENCH:-}" ]; then
  log=$logs/bench_backend.log
  t0=$(date +%s)
  set +e
  timeout 300 "$out/bench_backend" >"$log" 2>&1
  rc=$?
  set -e
  echo "== bench_backend: exit $rc, $(( $(date +%s) - t0 )) s"
  grep -v '^BENCH|' "$log" | grep -v '^device:' | head -n 20 || true
  grep '^BENCH|' "$log" >>"$bench" || true
  if [ "$rc" -ne 0 ]; then
    echo "bench_backend|harness exited with status $rc (see $log)|-|-|CRASH|-|-|-" >>"$results"
  fi
fi
if [ -n "${OUT:-}" ]; then # three files: all logs, the two result lists
  for f in "$logs"/*.log; do echo "===== $(basename "$f")"; cat "$f"; done >"$OUT/gpu-logs.txt"
  cp "$results" "$OUT/gpu-results.txt"
  cp "$bench" "$OUT/gpu-bench.txt"
fi

echo
echo "== results ($(( $(date +%s) - started )) s in all; logs in $logs)"
awk -F'|' '
  BEGIN { printf "%-14s %-58s %-10s %-7s %-5s %10s %7s %8s\n", "harness", "check", "error", "tol",
                 "", "ms", "GB/s", "TFLOP/s" }
  { printf "%-14s %-58s %-10s %-7s %-5s %10s %7s %8s\n", $1, substr($2, 1, 58), $3, $4, $5, $6,
           $7, $8 }' "$results"
if [ -s "$bench" ]; then
  echo
  awk -F'|' '
    BEGIN { printf "%-62s %10s %-9s %s\n", "benchmark", "value", "unit", "target" }
    { printf "%-62s %10s %-9s %s\n", $2, $3, $4, $5 }' "$bench"
fi
n_fail=$(grep -c -E '\|(FAIL|CRASH)\|' "$results" || true)
n_all=$(wc -l <"$results")
echo
if [ "$n_fail" -ne 0 ]; then
  echo "FAILED: $n_fail of $n_all checks"
  exit 1
fi
echo "all $n_all checks passed"
