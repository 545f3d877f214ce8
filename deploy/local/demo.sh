#!/usr/bin/env bash
# deploy/local/demo.sh — the main job: installs what it needs, builds, fetches the default models
# (SmolLM2-135M-Instruct as GGUF, all-MiniLM-L6-v2), starts Redis and the three services on
# loopback (deploy/local/up.sh), ingests a sample corpus the project wrote about itself (its
# README and deploy/local/corpus/), asks a question with twinctl — the answer streams with its
# sources — and prints the dashboard URL. Safe to re-run; deploy/local/down.sh stops the stack.
# Environment: TWIN_QUESTION (the question), TWIN_JOBS (build parallelism), and up.sh's settings.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
started=$SECONDS
QUESTION=${TWIN_QUESTION:-"How does Twin reuse the KV cache between requests?"}

echo "== installing dependencies"
./deploy/install-deps.sh --no-browser
echo "== building"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"${TWIN_JOBS:-$(nproc)}" --target llm-svc business-svc monitor-svc twinctl
echo "== fetching the models"
./deploy/fetch-models.sh --llm smollm2
echo "== starting the stack"
./deploy/local/up.sh
BIZ=127.0.0.1:${BUSINESS_PORT:-50052}
MON_HTTP=${MONITOR_HTTP_PORT:-8081}
echo "== ingesting the sample corpus"
./build/bin/twinctl --business "$BIZ" ingest README.md deploy/local/corpus
echo "== asking: $QUESTION"
./build/bin/twinctl --business "$BIZ" --timeout 600 ask "$QUESTION" --max-new-tokens 160
echo
echo "== done in $((SECONDS - started)) s"
echo "dashboard: http://127.0.0.1:$MON_HTTP/   (traces of this run are there)"
echo "stop the stack with: deploy/local/down.sh"
