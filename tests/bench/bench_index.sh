#!/usr/bin/env bash
# tests/bench/bench_index.sh — runs bench-index: vector search latency p50/p99 at 10k and 100k
# synthetic chunks (dim 384, exact and HNSW, with HNSW recall), then ingestion chunks/s into a
# throwaway redis-server on a free loopback port (hashing encoder; the sentence embedder too
# when models/embedder exists). Usage: tests/bench/bench_index.sh [BUILD_DIR] [extra args]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
shift || true
bin=$build/bin/bench-index
[ -x "$bin" ] || { echo "bench_index: $bin is not built" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

encoder=()
[ -f "$root/models/embedder/model.safetensors" ] && encoder=(--encoder "$root/models/embedder")
"$bin" --redis "redis://127.0.0.1:$port" "${encoder[@]}" "$@"
