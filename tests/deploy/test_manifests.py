"""tests/deploy/test_manifests.py — runs tests/deploy/check-manifests.sh on the repository
(every check must pass), then shows that each family of checks catches what it is there for:
each case copies the repository, breaks one thing in deploy/ (or in a service's flags), runs
tests/deploy/check_manifests.py on the copy and expects a FAIL line that names the problem.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.environ.get("TWIN_SOURCE_DIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPT = os.path.join(ROOT, "tests", "deploy", "check-manifests.sh")
CHECKER = os.path.join(ROOT, "tests", "deploy", "check_manifests.py")
TOP_LEVEL_SKIP = {"models", "run", ".git", ".whl", ".devcarry"}


@pytest.fixture(scope="module")
def tools():
    """Runs the whole script once (installing its tools) and returns the compose and
    kustomize commands it chose."""
    p = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    m = re.search(r"^check-manifests: compose: (.+?) \(.*\); kustomize: (.+)$", out, re.M)
    return {"rc": p.returncode, "out": out,
            "compose": m.group(1) if m else None, "kustomize": m.group(2).strip() if m else None}


def test_every_check_passes_on_the_repository(tools):
    out = tools["out"]
    assert tools["rc"] == 0, out
    assert re.search(r"^check-manifests: \d+ passed, 0 failed$", out, re.M), out
    assert not re.search(r"^FAIL ", out, re.M), out
    for family in ("docker: Dockerfiles", "docker: build stages", "compose: docker", "compose: profiles",
                   "k8s[dev]: ", "k8s[prod]: ", "k8s[prod+external-redis]: ", "k8s[monitoring]: "):
        assert f"PASS {family}" in out, f"no passing check named {family!r}:\n{out}"


def copy_repo(dest):
    def ignore(folder, names):
        top = os.path.abspath(folder) == os.path.abspath(ROOT)
        return [n for n in names if n == "__pycache__"
                or (top and (n in TOP_LEVEL_SKIP or n.startswith("build")))]
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def edit(root, rel, old, new, count=1):
    path = os.path.join(root, rel)
    text = open(path, encoding="utf-8").read()
    assert old in text, f"{rel} no longer contains {old!r}: update this test"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, count))


def run_checker(tools, root, group, variants=""):
    assert tools["compose"] and tools["kustomize"], tools["out"]
    cmd = [sys.executable, CHECKER, "--root", root, "--compose", tools["compose"],
           "--kustomize", tools["kustomize"], "--only", group]
    if variants:
        cmd += ["--variants", variants]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


# (id, group, k8s variants, file, old text, new text, a regex the FAIL output must match)
BREAKAGES = [
    ("llm-svc-not-headless", "k8s", "dev", "deploy/k8s/base/llm-svc.yaml",
     "spec:\n  clusterIP: None\n", "spec:\n", r"Service/llm-svc is not headless"),
    ("grace-shorter-than-drain", "k8s", "prod", "deploy/k8s/overlays/prod/llm-svc-gpu.yaml",
     "terminationGracePeriodSeconds: 90", "terminationGracePeriodSeconds: 60",
     r"terminationGracePeriodSeconds 60 < preStop 10s \+ LLM_GRACE_PERIOD 60s"),
    ("liveness-inside-drain", "k8s", "prod", "deploy/k8s/overlays/prod/llm-svc-gpu.yaml",
     "failureThreshold: 9", "failureThreshold: 5", r"liveness gives up after 50s, inside the 60s drain"),
    ("probe-wrong-service-name", "k8s", "dev", "deploy/k8s/base/business-svc.yaml",
     "service: twin.business.v1.TwinService", "service: twin.business.v1.Twin",
     r"asks for service 'twin.business.v1.Twin', business-svc reports 'twin.business.v1.TwinService'"),
    ("gpu-in-dev", "k8s", "dev", "deploy/k8s/overlays/dev/llm-svc-cpu.yaml",
     "            limits:\n              memory: 6Gi\n",
     "            limits:\n              memory: 6Gi\n              nvidia.com/gpu: 1\n",
     r"asks for nvidia.com/gpu in a CPU-only variant"),
    ("hpa-metric-nobody-exports", "k8s", "prod", "deploy/k8s/base/hpa.yaml",
     "name: llm_num_requests_waiting", "name: llm_queue_depth",
     r"metric llm_queue_depth is not exported by llm-svc/engine"),
    ("adapter-rule-missing", "k8s", "prod,monitoring", "deploy/k8s/monitoring/prometheus-adapter-rules.yaml",
     'as: "llm_num_requests_waiting"', 'as: "llm_waiting"',
     r"no prometheus-adapter rule in deploy/k8s/monitoring exposes llm_num_requests_waiting"),
    ("unknown-env-twin-in-configmap", "k8s", "dev", "deploy/k8s/base/config/llm-svc.env",
     "LLM_MAX_QUEUE=256", "LLM_MAXQUEUE=256", r"\['LLM_MAXQUEUE'\] are not env twins of llm-svc"),
    ("kv-cache-fraction-on-cpu", "k8s", "dev", "deploy/k8s/overlays/dev/kustomization.yaml",
     "- LLM_KV_CACHE=1G", "- LLM_KV_CACHE=0.3", r"LLM_KV_CACHE=0.3 is a fraction of the node's free memory"),
    ("kv-cache-over-memory-limit", "k8s", "dev", "deploy/k8s/overlays/dev/kustomization.yaml",
     "- LLM_KV_CACHE=1G", "- LLM_KV_CACHE=8G", r"LLM_KV_CACHE=8G does not fit the memory limit 6Gi"),
    ("schema-typo", "k8s", "dev", "deploy/k8s/base/pdb.yaml",
     "  maxUnavailable: 1\n", "  maxUnavailabel: 1\n",
     r"FAIL k8s\[dev\]: schema[\s\S]*'maxUnavailabel' was unexpected"),
    ("kustomize-missing-patch", "k8s", "dev", "deploy/k8s/overlays/dev/kustomization.yaml",
     "- path: business-svc.yaml", "- path: no-such-patch.yaml", r"FAIL k8s\[dev\]: .*kustomize"),
    ("redis-url-to-nowhere", "k8s", "dev", "deploy/k8s/base/config/business-svc.env",
     "REDIS_URL=redis://redis:6379", "REDIS_URL=redis://cache:6379",
     r"business-svc: REDIS_URL redis://cache:6379: no Service cache"),
    ("compose-gpu-in-cpu-profile", "compose", "", "deploy/compose/docker-compose.yml",
     "      LLM_MAX_BATCH: ${LLM_MAX_BATCH:-8}\n",
     "      LLM_MAX_BATCH: ${LLM_MAX_BATCH:-8}\n    deploy:\n      resources:\n        reservations:\n"
     "          devices:\n            - capabilities: [gpu]\n",
     r"profile cpu: llm-svc-cpu reserves a GPU"),
    ("compose-unknown-env", "compose", "", "deploy/compose/docker-compose.yml",
     "LLM_MAX_QUEUE:", "LLM_MAXQUEUE:", r"\['LLM_MAXQUEUE'\] are not env twins of llm-svc"),
    ("compose-invalid-condition", "compose", "", "deploy/compose/docker-compose.yml",
     "condition: service_healthy", "condition: service_up",
     r"FAIL compose: .*config[\s\S]*service_up"),
    ("compose-stop-before-drain", "compose", "", "deploy/compose/docker-compose.yml",
     "stop_grace_period: 45s", "stop_grace_period: 20s",
     r"stop_grace_period 20s does not cover the 30s drain"),
    ("compose-business-ignores-llm", "compose", "", "deploy/compose/docker-compose.yml",
     "      llm-svc-cpu:\n        condition: service_healthy\n", "",
     r"profile cpu: business-svc-cpu does not wait for llm-svc-cpu"),
    ("dockerfile-runs-as-root", "docker", "", "deploy/docker/services.Dockerfile",
     "USER 10001:10001\nEXPOSE 50052", "USER root\nEXPOSE 50052",
     r"stage business-svc does not switch to a non-root USER"),
    ("dockerfile-dev-package-at-runtime", "docker", "", "deploy/docker/services.Dockerfile",
     "/tmp/twin-install/packages.txt curl \\\n && rm -rf /tmp/twin-install\nCOPY --from=build /out/business-svc",
     "/tmp/twin-install/packages.txt curl libgrpc-dev \\\n && rm -rf /tmp/twin-install\nCOPY --from=build /out/business-svc",
     r"runtime stage business-svc installs \['libgrpc-dev'\]"),
    ("dockerfile-cuda-runtime-mismatch", "docker", "", "deploy/docker/llm-svc.Dockerfile",
     "-runtime-${UBUNTU_RELEASE} AS llm-svc", "-runtime-ubuntu22.04 AS llm-svc",
     r"same CUDA and Ubuntu as the build"),
    ("dockerignore-drops-sources", "docker", "", "deploy/docker/services.Dockerfile.dockerignore",
     "!common/\n", "", r"services.Dockerfile.dockerignore excludes common/log.c"),
    ("build-stage-misses-a-library", "docker", "", "deploy/docker/services.Dockerfile",
     " libhiredis-dev ", " ", r"services.Dockerfile: build stage lacks libhiredis-dev"),
    ("service-http-port-changed-in-code", "docker", "", "llm-svc/server/main.c",
     '"LLM_HTTP_PORT", TWIN_OPT_INT, "9101"', '"LLM_HTTP_PORT", TWIN_OPT_INT, "9102"',
     r"HEALTHCHECK uses \$\{LLM_HTTP_PORT:-9101\}, llm-svc's HTTP port is \$\{LLM_HTTP_PORT:-9102\}"),
]


@pytest.fixture(scope="module")
def copies_pass(tools, tmp_path_factory):
    """An untouched copy passes every check, so a failure below comes from the edit."""
    root = copy_repo(str(tmp_path_factory.mktemp("pristine") / "repo"))
    rc, out = run_checker(tools, root, "docker,compose,k8s")
    assert rc == 0, f"the untouched copy should pass:\n{out}"
    return True


@pytest.mark.parametrize("case", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_a_broken_copy_fails_the_check(tools, copies_pass, tmp_path, case):
    _, group, variants, rel, old, new, expect = case
    root = copy_repo(str(tmp_path / "repo"))
    edit(root, rel, old, new)
    rc, out = run_checker(tools, root, group, variants)
    assert rc == 1, out
    assert re.search(r"^FAIL ", out, re.M), out
    assert re.search(expect, out), f"expected /{expect}/ in:\n{out}"
