#!/usr/bin/env bash
# tests/bench/serve.sh — llm-svc under load over gRPC next to the offline engine at the same
# batch size. Makes a random-weight llama (size set by the flags below), runs engine-bench
# in-process, then starts llm-svc and runs serve-load with N concurrent clients.
# Usage: tests/bench/serve.sh [--build DIR] [--backend cpu|cuda] [--concurrency N]
#          [--requests R] [--prompt-len P] [--new M] [--model DIR | --dim D --layers L ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$here/../../build
backend=cpu conc=8 requests=16 plen=64 new=64 model="" dim=512 layers=4 heads=8 kv=4 inter=1408 vocab=4096
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2 ;; --backend) backend=$2 ;; --concurrency) conc=$2 ;; --requests) requests=$2 ;;
    --prompt-len) plen=$2 ;; --new) new=$2 ;; --model) model=$2 ;; --dim) dim=$2 ;;
    --layers) layers=$2 ;; --heads) heads=$2 ;; --kv-heads) kv=$2 ;; --intermediate) inter=$2 ;;
    --vocab) vocab=$2 ;;
    *) echo "serve.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
pid=""
if [ -z "$model" ]; then
  model=$tmp/model
  python3 "$here/../models/make_tiny_model.py" --out "$model" --arch llama --dtype bf16 --dim "$dim" \
    --layers "$layers" --heads "$heads" --kv-heads "$kv" --intermediate "$inter" --vocab "$vocab" \
    --max-pos 4096 >/dev/null
fi
vocab=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]+'/config.json'))['vocab_size'])" "$model")
echo "model: $model ($(nproc) cores, backend $backend)"
"$build/bin/engine-bench" --model "$model" --backend "$backend" --batch "$conc" --prompt-len "$plen" --new "$new"
"$build/bin/llm-svc" --model "$model" --backend "$backend" --host 127.0.0.1 --port 0 --http-port 0 \
  --max-batch "$conc" --log-level warn >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 600); do grep -q LISTENING "$tmp/out" && break; sleep 0.1; done
port=$(sed -n 's/LISTENING grpc=\([0-9]*\).*/\1/p' "$tmp/out")
[ -n "$port" ] || { cat "$tmp/err"; exit 1; }
hport=$(sed -n 's/.*http=\([0-9]*\).*/\1/p' "$tmp/out")
# /healthz turns 200 once the model is loaded and warmed up
for _ in $(seq 1200); do curl -sf "http://127.0.0.1:$hport/healthz" >/dev/null && break; sleep 0.1; done
"$build/bin/serve-load" "127.0.0.1:$port" --concurrency "$conc" --requests "$requests" \
  --prompt-len "$plen" --new "$new" --vocab "$vocab"
