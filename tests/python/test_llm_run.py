"""llm-run's modes on a tiny model: --tokenize matches the Python `tokenizers` package on the
model's tokenizer.json; --prompt streams the same greedy continuation the server gives;
--chat renders the chat template; bad inputs give clear errors and exit codes (2 usage, 1 run)."""
import json
import os
import shutil
import subprocess

import grpc
import pytest
from tokenizers import Tokenizer

from tiny_models import tiny_model_dir
from twin_testlib import Process, binary, stubs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory, seed=11)


def llm_run(*args, check=True):
    out = subprocess.run([binary("llm-run"), *args], capture_output=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr.decode()
    return out


def test_tokenize_matches_tokenizers(model_dir):
    ref = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    for text in ["Hello world", "  spaces  and\ttabs\n", "naïve café 東京 🙂", "x"]:
        out = llm_run("--model", model_dir, "--tokenize", text)
        assert json.loads(out.stdout) == ref.encode(text, add_special_tokens=True).ids, text
        out = llm_run("--model", model_dir, "--tokenize", text, "--no-special")
        assert json.loads(out.stdout) == ref.encode(text, add_special_tokens=False).ids, text


def test_prompt_matches_server(model_dir):
    out = llm_run("--model", model_dir, "--prompt", "Once upon a time", "--temperature", "0",
                  "--max-new-tokens", "12", "--verbose")
    text = out.stdout.decode(errors="replace").rstrip("\n")
    assert "12 generated" in out.stderr.decode()
    pb, pbg = stubs("llm")
    p = Process([binary("llm-svc"), "--model", model_dir, "--backend", "cpu", "--host", "127.0.0.1",
                 "--port", "0", "--http-port", "0", "--kv-cache", "8M"],
                ready=r"LISTENING grpc=(\d+) http=(\d+)", name="llm-svc")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{p.port}") as ch:
            stub = pbg.LlmServiceStub(ch)
            import time
            for _ in range(300):
                try:
                    stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=2)
                    break
                except grpc.RpcError:
                    time.sleep(0.05)
            req = pb.GenerateRequest(prompt="Once upon a time", max_new_tokens=12,
                                     sampling=pb.SamplingParams(temperature=0))
            served = "".join(m.text for m in stub.Generate(req, timeout=60))
        assert served.encode(errors="replace") == text.encode(errors="replace")
    finally:
        assert p.stop() == 0


def test_chat_and_seed(model_dir):
    a = llm_run("--model", model_dir, "--chat", "hi", "--system", "be brief", "--seed", "5",
                "--max-new-tokens", "8")
    b = llm_run("--model", model_dir, "--chat", "hi", "--system", "be brief", "--seed", "5",
                "--max-new-tokens", "8")
    assert a.stdout == b.stdout


def test_bad_inputs(model_dir, tmp_path):
    out = subprocess.run([binary("llm-run"), "--model", model_dir, "--prompt", b"bad \xff"],
                         capture_output=True, timeout=60)
    assert out.returncode == 2 and b"UTF-8" in out.stderr
    out = llm_run("--model", str(tmp_path / "none"), "--prompt", "hi", check=False)
    assert out.returncode == 1 and b"does not exist" in out.stderr
    out = llm_run("--model", model_dir, "--prompt", "hi", "--top-p", "7", check=False)
    assert out.returncode == 2 and b"top_p" in out.stderr
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(model_dir, no_tok)
    os.unlink(no_tok / "tokenizer.json")
    out = llm_run("--model", str(no_tok), "--prompt", "hi", check=False)
    assert out.returncode == 1 and b"tokenizer" in out.stderr
    out = llm_run("--model", model_dir, check=False)
    assert out.returncode == 2 and b"nothing to do" in out.stderr
