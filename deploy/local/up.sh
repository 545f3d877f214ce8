#!/usr/bin/env bash
# deploy/local/up.sh — runs the whole stack on loopback without containers: redis-server,
# llm-svc, business-svc and monitor-svc, each logging to RUN_DIR/<name>.log with its pid in
# RUN_DIR/<name>.pid, then waits until every service reports healthy. Safe to re-run: what is
# already running is left alone. deploy/local/down.sh stops it all.
# Environment (defaults): TWIN_RUN_DIR (<repo>/run), TWIN_BIN_DIR (<repo>/build/bin),
#   LLM_MODEL (<repo>/models/llm/SmolLM2-135M-Instruct.Q4_1.gguf), BUSINESS_EMBEDDER
#   (<repo>/models/embedder), TWIN_REDIS_PORT (6379), LLM_PORT (50051), LLM_HTTP_PORT (9101),
#   BUSINESS_PORT (50052), BUSINESS_HTTP_PORT (8080), MONITOR_PORT (50053),
#   MONITOR_HTTP_PORT (8081), LLM_BACKEND (auto), TWIN_UP_TIMEOUT (seconds, 300).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN=${TWIN_RUN_DIR:-$REPO/run}
BIN=${TWIN_BIN_DIR:-$REPO/build/bin}
export LLM_MODEL=${LLM_MODEL:-$REPO/models/llm/SmolLM2-135M-Instruct.Q4_1.gguf}
export BUSINESS_EMBEDDER=${BUSINESS_EMBEDDER:-$REPO/models/embedder}
export BUSINESS_TEMPLATES=${BUSINESS_TEMPLATES:-$REPO/business-svc/prompt/templates}
REDIS_PORT=${TWIN_REDIS_PORT:-6379}
export LLM_PORT=${LLM_PORT:-50051} LLM_HTTP_PORT=${LLM_HTTP_PORT:-9101}
export BUSINESS_PORT=${BUSINESS_PORT:-50052} BUSINESS_HTTP_PORT=${BUSINESS_HTTP_PORT:-8080}
export MONITOR_PORT=${MONITOR_PORT:-50053} MONITOR_HTTP_PORT=${MONITOR_HTTP_PORT:-8081}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
export BUSINESS_LLM_TARGET=${BUSINESS_LLM_TARGET:-dns:///127.0.0.1:$LLM_PORT}
export LLM_HOST=127.0.0.1 BUSINESS_HOST=127.0.0.1 MONITOR_HOST=127.0.0.1
TIMEOUT=${TWIN_UP_TIMEOUT:-300}
mkdir -p "$RUN/redis"

for exe in llm-svc business-svc monitor-svc; do
  [ -x "$BIN/$exe" ] || { echo "up: $BIN/$exe is missing: build first (cmake --build build)" >&2; exit 1; }
done
[ -e "$LLM_MODEL" ] || { echo "up: no model at $LLM_MODEL: run deploy/fetch-models.sh" >&2; exit 1; }

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() {  # name command...
  local name=$1; shift
  if running "$name"; then echo "up: $name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  setsid "$@" >>"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  echo "up: $name started (pid $!, log $RUN/$name.log)"
}

wait_http() {  # name url
  local deadline=$((SECONDS + TIMEOUT))
  until curl -sf -o /dev/null "$2"; do
    if ! running "$1"; then echo "up: $1 exited; its log:" >&2; tail -20 "$RUN/$1.log" >&2; exit 1; fi
    if [ $SECONDS -ge $deadline ]; then echo "up: $1 not healthy after ${TIMEOUT}s ($2)" >&2; exit 1; fi
    sleep 0.2
  done
  echo "up: $1 healthy"
}

start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN/redis" --appendonly yes \
  --save "" --protected-mode yes
deadline=$((SECONDS + 30))
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "up: redis did not answer" >&2; exit 1; }
  sleep 0.1
done
echo "up: redis ready on $REDIS_PORT"
start llm-svc "$BIN/llm-svc"
start business-svc "$BIN/business-svc"
start monitor-svc "$BIN/monitor-svc"
wait_http llm-svc "http://127.0.0.1:$LLM_HTTP_PORT/healthz"
wait_http business-svc "http://127.0.0.1:$BUSINESS_HTTP_PORT/healthz"
wait_http monitor-svc "http://127.0.0.1:$MONITOR_HTTP_PORT/healthz"
echo "up: the stack is running: llm-svc :$LLM_PORT, business-svc :$BUSINESS_PORT, monitor-svc :$MONITOR_PORT"
echo "up: dashboard http://127.0.0.1:$MONITOR_HTTP_PORT/"
