"""llm-svc serving behaviour through Python grpcio on a small random-weight llama: batching is
invisible (32 concurrent greedy streams give exactly the tokens each gives alone), also when a
tiny KV pool forces preemption; prefix-cache reuse; cancelling streams returns their blocks
while the others go on; a full queue answers RESOURCE_EXHAUSTED; bad inputs answer
INVALID_ARGUMENT naming the field; SIGTERM drains and exits 0."""
import re
import signal
import threading
import time
import urllib.request

import grpc
import pytest

from tiny_models import tiny_model_dir
from twin_testlib import Process, binary, stubs

pb, pbg = stubs("llm")

# 4 layers, 4 KV heads of 32: one 16-token KV block is 2*4*16*4*32*4 bytes = 64 KiB in f32.
MODEL = dict(arch="llama", dim=256, layers=4, heads=8, kv_heads=4, intermediate=512, vocab=1024,
             max_pos=1024, seed=7)
BLOCK_BYTES = 2 * 4 * 16 * 4 * 32 * 4

PROMPTS = [
    "The quick brown fox", "Once upon a time", "In the beginning", "def main():",
    "Twin serves language models", "Paged attention splits the cache", "Hello, world!",
    "1 2 3 4 5 6 7 8", "Redis keeps the chunks", "Streaming tokens over gRPC",
    "A B C D E F", "Continuous batching", "Prefix caching saves work", "The answer is",
    "Once more with feeling", "Zebras and zeppelins",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory, **MODEL)


def start_llm(model_dir, *extra):
    return Process([binary("llm-svc"), "--model", model_dir, "--backend", "cpu", "--host", "127.0.0.1",
                    "--port", "0", "--http-port", "0", "--threads", "2", *extra],
                   ready=r"LISTENING grpc=(\d+) http=(\d+)", name="llm-svc")


class Llm:
    def __init__(self, proc):
        self.proc = proc
        self.channel = grpc.insecure_channel(f"127.0.0.1:{proc.port}")
        self.stub = pbg.LlmServiceStub(self.channel)
        self.http = proc.extra_ports[0]
        wait_ready(self.stub)

    def metrics(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5).read().decode()
        out = {}
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def generate(self, prompt, n=32, **kw):
        req = pb.GenerateRequest(prompt=prompt, max_new_tokens=n, ignore_eos=True,
                                 sampling=pb.SamplingParams(temperature=0), **kw)
        msgs = list(self.stub.Generate(req, timeout=120))
        return [t for m in msgs for t in m.token_ids], msgs

    def close(self):
        self.channel.close()
        rc = self.proc.stop()
        assert rc == 0, self.proc.logs()
        assert self.proc.sanitizer_reports() == [], self.proc.logs()


def wait_ready(stub, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            time.sleep(0.05)
    raise TimeoutError("llm-svc not ready")


def run_concurrently(llm, prompts, n):
    results, errors = {}, []

    def one(i, p):
        try:
            results[i] = llm.generate(p, n)[0]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return [results[i] for i in range(len(prompts))]


@pytest.fixture(scope="module")
def alone(model_dir):
    """Each prompt's greedy tokens, generated one request at a time."""
    llm = Llm(start_llm(model_dir, "--max-batch", "1"))
    try:
        return {p: llm.generate(p, 48)[0] for p in PROMPTS * 1}
    finally:
        llm.close()


def test_32_concurrent_streams_match_alone(model_dir, alone):
    llm = Llm(start_llm(model_dir, "--max-batch", "32", "--kv-cache", "64M"))
    try:
        prompts = (PROMPTS * 2)[:32]
        got = run_concurrently(llm, prompts, 48)
        for p, g in zip(prompts, got):
            assert g == alone[p], p
        assert llm.metrics()["llm_num_preemptions_total"] == 0
    finally:
        llm.close()


def test_preemption_is_invisible(model_dir, alone):
    # 40 blocks: 32 sequences of ~10 + 48 tokens each need ~4 blocks: far more than fit at once.
    llm = Llm(start_llm(model_dir, "--max-batch", "32", "--kv-cache", str(40 * BLOCK_BYTES)))
    try:
        info = llm.stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.num_blocks == 40
        prompts = (PROMPTS * 2)[:32]
        got = run_concurrently(llm, prompts, 48)
        for p, g in zip(prompts, got):
            assert g == alone[p], p
        assert llm.metrics()["llm_num_preemptions_total"] > 0
    finally:
        llm.close()


def test_prefix_cache_hits_and_same_output(model_dir):
    llm = Llm(start_llm(model_dir, "--max-batch", "8"))
    try:
        shared = " ".join(f"word{i}" for i in range(60))  # many full blocks of shared prefix
        first, _ = llm.generate(shared + " first question", 16)
        before = llm.metrics()
        second, msgs = llm.generate(shared + " first question", 16)
        after = llm.metrics()
        assert second == first
        assert after["llm_prefix_cache_hits_total"] > before["llm_prefix_cache_hits_total"]
        assert msgs[-1].usage.cached_prompt_tokens >= 16
        third, msgs3 = llm.generate(shared + " another question", 16)
        assert msgs3[-1].usage.cached_prompt_tokens >= 16
    finally:
        llm.close()


def test_cancel_frees_blocks_others_continue(model_dir, alone):
    llm = Llm(start_llm(model_dir, "--max-batch", "32"))
    try:
        baseline = llm.metrics()["llm_kv_cache_blocks_used"]
        streams = []
        for i in range(10):
            req = pb.GenerateRequest(prompt=PROMPTS[i], max_new_tokens=900, ignore_eos=True,
                                     sampling=pb.SamplingParams(temperature=0))
            streams.append(llm.stub.Generate(req, timeout=120))
        keep = {}

        def survivor(i):
            keep[i] = llm.generate(PROMPTS[i], 48)[0]

        survivors = [threading.Thread(target=survivor, args=(i,)) for i in range(10, 14)]
        for t in survivors:
            t.start()
        for s in streams:
            next(s)  # each is generating
        assert llm.metrics()["llm_kv_cache_blocks_used"] > baseline
        for s in streams:
            s.cancel()
        for t in survivors:
            t.join()
        for i in range(10, 14):
            assert keep[i] == alone[PROMPTS[i]]
        deadline = time.time() + 5
        while llm.metrics()["llm_kv_cache_blocks_used"] != baseline:
            assert time.time() < deadline, llm.metrics()
            time.sleep(0.02)
        assert llm.metrics()["llm_num_requests_running"] == 0
    finally:
        llm.close()


def test_full_queue_is_resource_exhausted(model_dir):
    llm = Llm(start_llm(model_dir, "--max-batch", "1", "--max-queue", "2"))
    try:
        codes = []
        lock = threading.Lock()

        def one():
            try:
                llm.generate("queue me", 200)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
        assert grpc.StatusCode.OK in codes, codes
    finally:
        llm.close()


BAD = [
    (dict(prompt=""), "prompt"),
    (dict(prompt="x" * 20000), "prompt"),
    (dict(prompt="hi", max_new_tokens=100000), "max_new_tokens"),
    (dict(prompt="hi", sampling=pb.SamplingParams(temperature=-1)), "temperature"),
    (dict(prompt="hi", sampling=pb.SamplingParams(top_p=1.5)), "top_p"),
    (dict(prompt="hi", sampling=pb.SamplingParams(top_k=-3)), "top_k"),
    (dict(prompt="hi", sampling=pb.SamplingParams(min_p=2)), "min_p"),
    (dict(prompt="hi", sampling=pb.SamplingParams(repetition_penalty=0)), "repetition_penalty"),
    (dict(prompt="hi", sampling=pb.SamplingParams(presence_penalty=5)), "presence_penalty"),
    (dict(prompt="hi", sampling=pb.SamplingParams(frequency_penalty=-5)), "frequency_penalty"),
    (dict(prompt="hi", adapter="no-such-lora"), "adapter"),
    (dict(prompt="hi", logprobs=500), "logprobs"),
    (dict(token_ids=pb.TokenIds(ids=[5, 99999])), "token_ids"),
    (dict(token_ids=pb.TokenIds(ids=[])), "token_ids"),
    (dict(prompt="hi", stop=[""]), "stop"),
    (dict(messages=pb.ChatMessageList(items=[pb.ChatMessage(role="wizard", content="x")])), "role"),
    (dict(), "input"),
]


def test_bad_inputs_are_invalid_argument(model_dir):
    llm = Llm(start_llm(model_dir, "--max-context", "512"))
    try:
        for fields, name in BAD:
            with pytest.raises(grpc.RpcError) as e:
                list(llm.stub.Generate(pb.GenerateRequest(**fields), timeout=30))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (fields, e.value.details())
            assert name in e.value.details(), (name, e.value.details())
        # invalid UTF-8 cannot be sent as a proto3 string by grpcio: send raw bytes
        raw = llm.channel.unary_stream("/twin.llm.v1.LlmService/Generate")
        bad_utf8 = b"\x0a\x03\xff\xfeA"  # field 1 (prompt), 3 bytes, invalid UTF-8
        with pytest.raises(grpc.RpcError) as e:
            list(raw(bad_utf8, timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        llm.close()


def test_tokenize_and_model_info(model_dir):
    llm = Llm(start_llm(model_dir, "--max-context", "512", "--max-batch", "4"))
    try:
        info = llm.stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.architecture == "llama" and info.backend == "cpu"
        assert info.context_length == 512 and info.block_size == 16 and info.max_batch == 4
        assert info.vocab_size == MODEL["vocab"]
        t = llm.stub.Tokenize(pb.TokenizeRequest(text="hello world", add_special_tokens=True))
        assert len(t.ids) == len(t.pieces) >= 2
        toks, _ = llm.generate("hello world", 4)
        assert len(toks) == 4
        # the same prompt as token ids gives the same greedy tokens
        req = pb.GenerateRequest(token_ids=pb.TokenIds(ids=list(t.ids)), max_new_tokens=4,
                                 ignore_eos=True, sampling=pb.SamplingParams(temperature=0))
        assert [i for m in llm.stub.Generate(req) for i in m.token_ids] == toks
    finally:
        llm.close()


def test_sigterm_drains_running_stream(model_dir):
    llm = Llm(start_llm(model_dir, "--grace-period", "20s"))
    try:
        req = pb.GenerateRequest(prompt="drain me", max_new_tokens=120, ignore_eos=True,
                                 sampling=pb.SamplingParams(temperature=0))
        stream = llm.stub.Generate(req, timeout=60)
        first = next(stream)
        llm.proc.send(signal.SIGTERM)
        rest = list(stream)
        n = len(first.token_ids) + sum(len(m.token_ids) for m in rest)
        assert n == 120 and rest[-1].finish_reason == pb.FINISH_REASON_LENGTH
        assert llm.proc.proc.wait(30) == 0
    finally:
        llm.close()
