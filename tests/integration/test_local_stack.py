"""The whole stack as the main job runs it, on loopback, with the CPU backend and a tiny model:
deploy/local/up.sh starts Redis and the three services; twinctl ingests the sample corpus and asks
a question (a streamed answer with sources); the trace shows up through monitor-svc; twinctl
health says SERVING; deploy/local/down.sh stops everything: no process left, every port free."""
import os
import socket
import subprocess
import time

import grpc
import pytest

from tiny_models import tiny_model_dir
from twin_testlib import BIN_DIR, SOURCE_DIR, binary, free_port, stubs


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    subprocess.run([os.path.join(SOURCE_DIR, "deploy", "fetch-embedder.sh")], check=True,
                   capture_output=True, timeout=600)
    ports = {k: free_port() for k in ("TWIN_REDIS_PORT", "LLM_PORT", "LLM_HTTP_PORT", "BUSINESS_PORT",
                                      "BUSINESS_HTTP_PORT", "MONITOR_PORT", "MONITOR_HTTP_PORT")}
    e = dict(os.environ)
    e.update({k: str(v) for k, v in ports.items()})
    e.update({"TWIN_RUN_DIR": str(tmp_path_factory.mktemp("run")), "TWIN_BIN_DIR": BIN_DIR,
              "LLM_MODEL": tiny_model_dir(tmp_path_factory, seed=5, max_pos=1024, vocab=1024),
              "LLM_BACKEND": "cpu", "LLM_KV_CACHE": "32M", "BUSINESS_LLM_STAGE_TIMEOUT": "1s",
              "TWIN_UP_TIMEOUT": "120"})
    return e, ports


def run(cmd, env, timeout=300):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_up_ask_trace_down(env):
    e, ports = env
    up = os.path.join(SOURCE_DIR, "deploy", "local", "up.sh")
    down = os.path.join(SOURCE_DIR, "deploy", "local", "down.sh")
    out = run([up], e)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        assert "the stack is running" in out.stdout
        again = run([up], e)  # safe to re-run: everything is already there
        assert again.returncode == 0 and again.stdout.count("already running") == 4, again.stdout
        ctl = [binary("twinctl"), "--business", f"127.0.0.1:{ports['BUSINESS_PORT']}",
               "--monitor", f"127.0.0.1:{ports['MONITOR_PORT']}", "--llm", f"127.0.0.1:{ports['LLM_PORT']}"]
        h = run(ctl + ["health"], e)
        assert h.returncode == 0 and h.stdout.count("SERVING") == 3, h.stdout
        ing = run(ctl + ["ingest", os.path.join(SOURCE_DIR, "README.md"),
                         os.path.join(SOURCE_DIR, "deploy", "local", "corpus")], e)
        assert ing.returncode == 0 and "new chunks" in ing.stdout, ing.stderr
        ask = run(ctl + ["ask", "How does Twin reuse the KV cache?", "--max-new-tokens", "16",
                         "--temperature", "0"], e)
        assert ask.returncode == 0, ask.stderr
        assert "Sources:" in ask.stdout and "[1]" in ask.stdout and "Answer:" in ask.stdout
        trace_id = ask.stdout.rsplit("trace ", 1)[1].split("]")[0]
        # the monitor stores the trace
        deadline = time.time() + 30
        while True:
            show = run(ctl + ["traces", "show", trace_id], e)
            if show.returncode == 0:
                break
            assert time.time() < deadline, show.stderr
            time.sleep(0.3)
        assert "How does Twin reuse the KV cache?" in show.stdout
        lst = run(ctl + ["traces", "list"], e)
        assert trace_id in lst.stdout
        # bad usage and unknown things give script-friendly exit codes
        assert run(ctl + ["frobnicate"], e).returncode == 2
        assert run(ctl + ["traces", "show", "no-such-trace"], e).returncode == 4
    finally:
        d = run([down], e, timeout=120)
    assert d.returncode == 0, d.stdout + d.stderr
    run_dir = e["TWIN_RUN_DIR"]
    assert not [f for f in os.listdir(run_dir) if f.endswith(".pid")]
    for name, port in ports.items():
        assert port_free(port), f"{name} {port} still bound"
    left = subprocess.run(["pgrep", "-f", run_dir], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout
    # after down, health reports the services as unreachable
    h = run([binary("twinctl"), "--business", f"127.0.0.1:{ports['BUSINESS_PORT']}", "health"], e)
    assert h.returncode == 3
