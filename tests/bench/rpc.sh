#!/usr/bin/env bash
# tests/bench/rpc.sh — the gRPC runtime over loopback: starts rpc-testd and prints streamed
# messages/s and unary round-trip p50/p99 for our C client and for Python grpcio.
# Usage: tests/bench/rpc.sh [BUILD_DIR] [STREAM_N] [UNARY_N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
stream_n=${2:-200000}
unary_n=${3:-5000}
out=$(mktemp)
"$build/bin/rpc-testd" --port 0 >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q PORT= "$out" && break; sleep 0.05; done
port=$(sed -n 's/PORT=//p' "$out")
echo "rpc-testd on 127.0.0.1:$port ($(nproc) cores)"
"$build/bin/rpc-bench" "127.0.0.1:$port" "$stream_n" "$unary_n"
TWIN_BUILD_DIR=$build python3 "$here/rpc_bench_py.py" "127.0.0.1:$port" "$stream_n" "$unary_n"
