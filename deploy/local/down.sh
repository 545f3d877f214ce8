#!/usr/bin/env bash
# deploy/local/down.sh — stops what up.sh started (services first, Redis last): SIGTERM, a wait
# for the graceful drain, SIGKILL only after TWIN_DOWN_TIMEOUT seconds (default 40). Removes the
# pid files; logs stay in the run directory.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN=${TWIN_RUN_DIR:-$REPO/run}
TIMEOUT=${TWIN_DOWN_TIMEOUT:-40}
status=0
for name in business-svc monitor-svc llm-svc redis; do
  pidfile=$RUN/$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    deadline=$((SECONDS + TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "down: $name (pid $pid) ignored SIGTERM for ${TIMEOUT}s: killing it" >&2
      kill -KILL "$pid" 2>/dev/null
      status=1
    else
      echo "down: $name stopped"
    fi
  fi
  rm -f "$pidfile"
done
exit $status
