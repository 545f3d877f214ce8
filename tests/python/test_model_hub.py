"""hf://org/name@rev models: llm-svc pulls a model from a Hub-compatible registry into its cache,
resumes a download cut off midway (HTTP Range), refuses a file whose SHA-256 does not match the
registry's, and serves the same greedy tokens as the local copy.
The registry is a stand-in written here (a small HTTP server speaking the Hub's file-list and
resolve endpoints): the real hub cannot be reached from this machine."""
import hashlib
import http.server
import json
import os
import threading

import grpc
import pytest

from tiny_models import tiny_model_dir
from twin_testlib import Process, binary, stubs

pb, pbg = stubs("llm")


class Registry:
    def __init__(self, model_dir, repo="acme/tiny", rev="main"):
        self.files = {f: open(os.path.join(model_dir, f), "rb").read() for f in os.listdir(model_dir)}
        self.repo, self.rev = repo, rev
        self.cut_once = set()      # files whose first download is cut in the middle
        self.bad_sha = set()       # files announced with a wrong checksum
        self.ranges = []           # Range headers seen
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                api = f"/api/models/{reg.repo}/revision/{reg.rev}"
                prefix = f"/{reg.repo}/resolve/{reg.rev}/"
                if self.path == api:
                    body = json.dumps({"id": reg.repo, "sha": "0" * 40,
                                       "siblings": [{"rfilename": f} for f in sorted(reg.files)]
                                       + [{"rfilename": "README.md"}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if not self.path.startswith(prefix) or self.path[len(prefix):] not in reg.files:
                    self.send_error(404)
                    return
                name = self.path[len(prefix):]
                data = reg.files[name]
                sha = hashlib.sha256(data).hexdigest()
                if name in reg.bad_sha:
                    sha = hashlib.sha256(b"something else").hexdigest()
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    reg.ranges.append((name, rng))
                    start = int(rng.split("=")[1].split("-")[0])
                if start >= len(data) and start > 0:
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if name in reg.cut_once:
                    reg.cut_once.discard(name)
                    self.wfile.write(data[start:start + (len(data) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def run_llm(ref, env):
    return Process([binary("llm-svc"), "--model", ref, "--backend", "cpu", "--host", "127.0.0.1",
                 "--port", "0", "--http-port", "0", "--kv-cache", "8M"], env=env,
                   ready=r"LISTENING grpc=(\d+) http=(\d+)", name="llm-svc")


def greedy(port, prompt="hub test", n=8):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pbg.LlmServiceStub(ch)
        import time
        for _ in range(600):
            try:
                stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.05)
        req = pb.GenerateRequest(prompt=prompt, max_new_tokens=n, ignore_eos=True,
                                 sampling=pb.SamplingParams(temperature=0))
        return [t for m in stub.Generate(req, timeout=60) for t in m.token_ids]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory, seed=3)


def test_pull_resume_and_serve(model_dir, tmp_path):
    reg = Registry(model_dir)
    reg.cut_once.add("model.safetensors")
    env = {"HF_ENDPOINT": reg.url, "TWIN_MODEL_CACHE": str(tmp_path / "cache")}
    try:
        # first start: the weights download is cut off -> a clear error, the partial file kept
        p = Process([binary("llm-svc"), "--model", "hf://acme/tiny", "--backend", "cpu", "--host",
                     "127.0.0.1", "--port", "0", "--http-port", "0"], env=env, name="llm-svc")
        assert p.proc.wait(60) != 0
        assert "model.safetensors" in p.logs(), p.logs()
        p.stop()
        partial = tmp_path / "cache" / "acme--tiny" / "main" / "model.safetensors.incomplete"
        assert partial.exists() and partial.stat().st_size > 0
        # second start resumes with a Range request and serves
        p = run_llm("hf://acme/tiny@main", env)
        try:
            remote = greedy(p.port)
            assert any(name == "model.safetensors" for name, _ in reg.ranges), reg.ranges
        finally:
            assert p.stop() == 0
        local_p = run_llm(model_dir, {})
        try:
            assert greedy(local_p.port) == remote
        finally:
            assert local_p.stop() == 0
        # a third start uses the cache without asking the registry
        reg.close()
        p = run_llm("hf://acme/tiny", env)
        try:
            assert greedy(p.port) == remote
        finally:
            assert p.stop() == 0
    finally:
        reg.close()


def test_checksum_mismatch_is_refused(model_dir, tmp_path):
    reg = Registry(model_dir)
    reg.bad_sha.add("model.safetensors")
    env = {"HF_ENDPOINT": reg.url, "TWIN_MODEL_CACHE": str(tmp_path / "cache")}
    try:
        p = Process([binary("llm-svc"), "--model", "hf://acme/tiny", "--backend", "cpu", "--host",
                     "127.0.0.1", "--port", "0", "--http-port", "0"], env=env, name="llm-svc")
        assert p.proc.wait(60) != 0
        assert "checksum mismatch" in p.logs(), p.logs()
        p.stop()
        assert not (tmp_path / "cache" / "acme--tiny" / "main" / "model.safetensors").exists()
    finally:
        reg.close()


def test_unknown_repo_and_bad_ref(tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "TWIN_MODEL_CACHE": str(tmp_path / "cache")}
    for ref, words in [("hf://acme", "hf://org/name"), ("hf://acme/../x", "hf://org/name"),
                       ("hf://acme/none", "127.0.0.1:9")]:
        p = Process([binary("llm-svc"), "--model", ref, "--backend", "cpu", "--port", "0",
                     "--http-port", "0"], env=env, name="llm-svc")
        assert p.proc.wait(60) != 0
        assert words in p.logs(), (ref, p.logs())
        p.stop()
