#!/usr/bin/env bash
# tests/bench/relay_engine_thread.sh — what streaming replies costs the engine's loop thread:
# runs llm-svc under serve-load, samples it with perf (cpu-clock, DWARF call stacks) for a
# window in the middle of the load, and prints the samples per thread role and, for the engine
# thread, the share and the microseconds per streamed token spent in gen_on_event,
# twin_rpc_call_send and gRPC (grpc_call_start_batch). Needs perf; figures, never a verdict.
# Usage: BIN_DIR=build/bin tests/bench/relay_engine_thread.sh --model DIR --vocab N
#          [--backend cpu] [--concurrency 64] [--requests 256] [--prompt-len 128] [--new 128]
#          [--seconds 8] [--hz 499]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
model="" vocab="" backend=cpu conc=64 requests=256 plen=128 new=128 seconds=8 hz=499
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2 ;; --vocab) vocab=$2 ;; --backend) backend=$2 ;;
    --concurrency) conc=$2 ;; --requests) requests=$2 ;; --prompt-len) plen=$2 ;;
    --new) new=$2 ;; --seconds) seconds=$2 ;; --hz) hz=$2 ;;
    *) echo "relay_engine_thread.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ -n "$model" ] && [ -n "$vocab" ] || { echo "relay_engine_thread.sh: --model and --vocab are required" >&2; exit 2; }
command -v perf >/dev/null || { echo "relay_engine_thread.sh: perf is not installed" >&2; exit 1; }
bin=${BIN_DIR:-$root/build/bin}
for p in llm-svc serve-load; do
  [ -x "$bin/$p" ] || { echo "relay_engine_thread.sh: $bin/$p missing (set BIN_DIR)" >&2; exit 1; }
done

tmp=$(mktemp -d)
pid="" load_pid=""
cleanup() {
  [ -n "$load_pid" ] && { kill "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; }
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT

"$bin/llm-svc" --model "$model" --backend "$backend" --host 127.0.0.1 --port 0 --http-port 0 \
  --max-batch "$conc" --max-queue $((conc * 4)) --max-tokens-per-step 8192 --max-context 4096 \
  --kv-cache 0.3 --log-level warn >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1200); do
  grep -q LISTENING "$tmp/out" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
port=$(sed -n 's/.*LISTENING grpc=\([0-9]*\).*/\1/p' "$tmp/out")
hport=$(sed -n 's/.*LISTENING.*http=\([0-9]*\).*/\1/p' "$tmp/out")
[ -n "$port" ] || { echo "relay_engine_thread.sh: llm-svc did not start" >&2; cat "$tmp/err" >&2; exit 1; }

# generated tokens so far (= GenerateResponse messages streamed, one token per message)
gen_tokens() {
  python3 - "$hport" <<'EOF'
import re, sys, time, urllib.request
for _ in range(600):
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=2).read().decode()
        break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("relay_engine_thread.sh: /metrics did not answer")
m = re.search(r"^llm_generation_tokens_total(?:\{\})? ([0-9.e+]+)$", body, re.M)
print(int(float(m.group(1))) if m else 0)
EOF
}

gen_tokens >/dev/null # waits for the HTTP side
"$bin/serve-load" "127.0.0.1:$port" --concurrency "$conc" --requests "$conc" --prompt-len "$plen" \
  --new 8 --vocab "$vocab" >/dev/null
"$bin/serve-load" "127.0.0.1:$port" --concurrency "$conc" --requests "$requests" --prompt-len "$plen" \
  --new "$new" --vocab "$vocab" >"$tmp/load" &
load_pid=$!
sleep 2 # past the first prefills, into steady decoding
t0=$(gen_tokens)
perf record -q -e cpu-clock -F "$hz" --call-graph dwarf,16384 -p "$pid" -o "$tmp/perf.data" \
  -- sleep "$seconds" >"$tmp/perf.log" 2>&1 || { echo "relay_engine_thread.sh: perf record failed:" >&2; cat "$tmp/perf.log" >&2; exit 1; }
t1=$(gen_tokens)
if kill -0 "$load_pid" 2>/dev/null; then :; else
  echo "relay_engine_thread.sh: the load ended inside the window; raise --requests" >&2
fi
wait "$load_pid" || { echo "relay_engine_thread.sh: serve-load failed" >&2; cat "$tmp/load" "$tmp/err" >&2; exit 1; }
load_pid=""
cat "$tmp/load"
perf script -i "$tmp/perf.data" -F tid,ip,sym 2>"$tmp/script.log" >"$tmp/stacks" || { cat "$tmp/script.log" >&2; exit 1; }

python3 - "$tmp/stacks" "$((t1 - t0))" "$hz" "$seconds" <<'EOF'
import collections, sys
path, tokens, hz, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
samples, cur = [], None  # (tid, [function names, leaf first])
for line in open(path):
    line = line.rstrip("\n")
    if not line.strip():
        if cur:
            samples.append(cur)
        cur = None
    elif line.strip().isdigit():  # a sample's thread id (right-aligned), then its frames
        if cur:
            samples.append(cur)
        cur = (line.strip(), [])
    elif cur is not None:
        parts = line.strip().split(None, 1)
        cur[1].append(parts[1].rsplit(" (", 1)[0] if len(parts) > 1 else "?")
if cur:
    samples.append(cur)

def has(stack, name):
    return any(f == name for f in stack)

ROLES = [("engine_main", "engine loop"), ("cq_main", "rpc completion queue"),
         ("sender_main", "rpc sender"), ("run_handler", "rpc handler"),
         ("worker_main", "cpu backend worker")]
per_tid = collections.defaultdict(list)
for tid, stack in samples:
    per_tid[tid].append(stack)
role_of = {}
for tid, stacks in per_tid.items():
    votes = collections.Counter(label for s in stacks for fn, label in ROLES if has(s, fn))
    if votes:
        role_of[tid] = votes.most_common(1)[0][0]
    elif any("blas" in f.lower() or "sgemm" in f for s in stacks for f in s):
        role_of[tid] = "BLAS worker"
    else:
        role_of[tid] = "other"
ms_per_sample = 1000.0 / hz
print("window %.0f s at %.0f Hz: %d samples, %d tokens streamed" % (seconds, hz, len(samples), tokens))
print("%-24s %8s %10s" % ("thread", "samples", "cpu ms"))
by_role = collections.Counter()
for tid, stacks in per_tid.items():
    by_role[role_of[tid]] += len(stacks)
for role, n in by_role.most_common():
    print("%-24s %8d %10.0f" % (role, n, n * ms_per_sample))
engine = [s for tid, st in per_tid.items() if role_of[tid] == "engine loop" for s in st]
if not engine:
    sys.exit("relay_engine_thread.sh: no engine-thread samples")
print("engine thread, inside:            share   us/token")
for fn in ("gen_on_event", "twin_rpc_call_send", "twin_rpc_call_finish", "grpc_call_start_batch"):
    k = sum(1 for s in engine if has(s, fn))
    us = k * ms_per_sample * 1000.0 / tokens if tokens else float("nan")
    print("  %-28s %7.2f%% %9.2f" % (fn, 100.0 * k / len(engine), us))
inside = collections.Counter(s[0] for s in engine if has(s, "twin_rpc_call_send"))
if inside:
    print("engine thread, leaf functions under twin_rpc_call_send (samples):")
    for fn, k in inside.most_common(8):
        print("  %-40s %5d" % (fn, k))
EOF
