"""business-svc end to end on loopback: a real redis-server, llm-svc on the CPU backend with a tiny
random model, business-svc with the real MiniLM embedder. Ingest the test corpus, Ask through
Python grpcio (sources, then streamed text, then the summary), the trace on twin:traces with every
field, the response cache and conversation memory, Search, DeleteDocument, and the faults: bad
queries, an unknown author, an unreachable URL, a binary file, Redis down at start and mid-run,
llm-svc down."""
import json
import os
import signal
import subprocess
import time

import grpc
import pytest
import redis as redis_client

from tiny_models import tiny_model_dir
from twin_testlib import SOURCE_DIR, Process, Redis, binary, free_port, stubs

bpb, bgrpc = stubs("business")
CORPUS = os.path.join(SOURCE_DIR, "tests", "data", "corpus", "docs")
EMBEDDER = os.path.join(SOURCE_DIR, "models", "embedder")


@pytest.fixture(scope="module", autouse=True)
def embedder():
    subprocess.run([os.path.join(SOURCE_DIR, "deploy", "fetch-embedder.sh"), EMBEDDER], check=True,
                   capture_output=True, timeout=600)


def start_llm(model_dir, port=0):
    return Process([binary("llm-svc"), "--model", model_dir, "--backend", "cpu", "--host", "127.0.0.1",
                    "--port", str(port), "--http-port", "0", "--kv-cache", "32M", "--max-context", "1024"],
                   ready=r"LISTENING grpc=(\d+) http=(\d+)", name="llm-svc")


def start_business(redis_url, llm_port, *extra):
    return Process([binary("business-svc"), "--host", "127.0.0.1", "--port", "0", "--http-port", "0",
                    "--redis-url", redis_url, "--llm-target", f"127.0.0.1:{llm_port}",
                    "--embedder", EMBEDDER, "--llm-stage-timeout", "2s", *extra],
                   ready=r"LISTENING grpc=(\d+) http=(\d+)", name="business-svc")


def wait_serving(port, timeout=60):
    hpb, hgrpc = stubs("health")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = hgrpc.HealthStub(ch)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                r = stub.Check(hpb.HealthCheckRequest(service="twin.business.v1.TwinService"), timeout=2)
                if r.status == hpb.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError("business-svc never became SERVING")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    model = tiny_model_dir(tmp_path_factory, seed=21, max_pos=1024, vocab=1024)
    r = Redis()
    llm = start_llm(model)
    biz = start_business(r.url, llm.port)
    wait_serving(biz.port)
    ch = grpc.insecure_channel(f"127.0.0.1:{biz.port}")
    stub = bgrpc.TwinServiceStub(ch)
    docs = []
    for name in sorted(os.listdir(CORPUS)):
        path = os.path.join(CORPUS, name)
        if name.endswith(".md"):
            docs.append(bpb.Document(text=open(path).read(), title=name, doc_type="article",
                                     author="maya" if "kv" in name else "", doc_id=name.replace(".", "-")))
    resp = stub.Ingest(bpb.IngestRequest(documents=docs), timeout=300)
    assert resp.chunks > 0
    yield dict(redis=r, llm=llm, biz=biz, stub=stub, channel=ch, model=model, docs=docs, first=resp)
    ch.close()
    for p in (biz, llm):
        assert p.stop() == 0, p.logs()
        assert p.sanitizer_reports() == [], p.logs()
    r.stop()


def ask(stub, query, **kw):
    req = bpb.AskRequest(query=query, sampling=bpb.Sampling(temperature=0, max_new_tokens=12), **kw)
    return list(stub.Ask(req, timeout=120))


def test_ingest_is_idempotent(stack):
    again = stack["stub"].Ingest(bpb.IngestRequest(documents=stack["docs"]), timeout=300)
    assert again.chunks == 0 and again.chunks_unchanged == stack["first"].chunks


def test_ask_streams_sources_text_summary_and_trace(stack):
    msgs = ask(stack["stub"], "How does the KV cache share blocks between requests?")
    kinds = [m.WhichOneof("event") for m in msgs]
    assert kinds[0] == "sources" and kinds[-1] == "summary"
    assert set(kinds[1:-1]) <= {"text"} and len(kinds) >= 3
    sources = msgs[0].sources.items
    assert 1 <= len(sources) <= 3 and all(s.chunk_id and s.doc_id and s.snippet for s in sources)
    assert sources[0].score >= sources[-1].score
    summary = msgs[-1].summary
    assert summary.finish_reason in ("stop", "length") and summary.trace_id
    assert summary.completion_tokens >= 1 and summary.prompt_tokens > 0
    stages = [t.stage for t in summary.timings]
    for stage in ("embed", "search", "prompt", "generate"):
        assert stage in stages, stages
    # the trace reaches the stream with every field
    rc = redis_client.Redis.from_url(stack["redis"].url)
    deadline = time.time() + 10
    trace = None
    while time.time() < deadline and trace is None:
        for _id, fields in rc.xrange("twin:traces"):
            t = json.loads(fields[b"trace"])
            if t["trace_id"] == summary.trace_id:
                trace = t
        time.sleep(0.1)
    assert trace is not None
    for key in ("trace_id", "time_ms", "query", "template_name", "template_version", "variables", "prompt",
                "sources", "answer", "model", "sampling", "prompt_tokens", "completion_tokens", "stages",
                "ttft_ms", "total_ms", "cost_usd", "cache_hit", "error"):
        assert key in trace, key
    assert trace["error"] == "" and trace["sources"][0]["chunk_id"] == sources[0].chunk_id
    assert trace["answer"] == "".join(m.text for m in msgs if m.WhichOneof("event") == "text")
    assert "[system]" in trace["prompt"] and "How does the KV cache" in trace["prompt"]


def test_response_cache_replays(stack):
    q = "What evicts cached blocks?"
    first = ask(stack["stub"], q)
    second = ask(stack["stub"], q)
    text = lambda ms: "".join(m.text for m in ms if m.WhichOneof("event") == "text")
    assert text(first) == text(second)
    assert not first[-1].summary.cache_hit and second[-1].summary.cache_hit
    third = ask(stack["stub"], q, no_cache=True)
    assert not third[-1].summary.cache_hit


def test_conversation_memory(stack):
    a = ask(stack["stub"], "Tell me about prefix caching", session_id="s-1", no_cache=True)
    rc = redis_client.Redis.from_url(stack["redis"].url)
    turns = [json.loads(x) for x in rc.lrange("twin:memory:s-1", 0, -1)]
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[0]["content"] == "Tell me about prefix caching"
    ask(stack["stub"], "And eviction?", session_id="s-1", no_cache=True)
    assert rc.llen("twin:memory:s-1") == 4 and rc.ttl("twin:memory:s-1") > 0


def test_search_and_filters(stack):
    r = stack["stub"].Search(bpb.SearchRequest(query="paged KV cache blocks",
                                               retrieval=bpb.RetrievalOptions(author="maya", rerank=False)), timeout=30)
    assert r.results and all(s.author == "maya" for s in r.results)
    with pytest.raises(grpc.RpcError) as e:
        stack["stub"].Search(bpb.SearchRequest(query="anything", retrieval=bpb.RetrievalOptions(author="Nobody Known")), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "author" in e.value.details()


def test_bad_queries(stack):
    stub = stack["stub"]
    for query, field in [("", "query"), ("x" * (1 << 20), "query")]:
        with pytest.raises(grpc.RpcError) as e:
            ask(stub, query)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        ask(stub, "hello", template="no-such-template")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "template" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Ingest(bpb.IngestRequest(urls=[f"http://127.0.0.1:{free_port()}/nothing"]), timeout=60)
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INVALID_ARGUMENT)
    assert "127.0.0.1" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Ingest(bpb.IngestRequest(documents=[bpb.Document(text="ok", doc_type="poem")]), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "doc_type" in e.value.details()


def test_binary_file_through_twinctl(stack, tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 64)
    out = subprocess.run([binary("twinctl"), "--business", f"127.0.0.1:{stack['biz'].port}", "ingest", str(blob)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "blob.bin" in out.stderr


def test_delete_document(stack):
    doc_id = stack["docs"][0].doc_id
    r = stack["stub"].DeleteDocument(bpb.DeleteDocumentRequest(doc_id=doc_id), timeout=30)
    assert r.chunks_deleted > 0
    with pytest.raises(grpc.RpcError) as e:
        stack["stub"].DeleteDocument(bpb.DeleteDocumentRequest(doc_id=doc_id), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    stack["stub"].Ingest(bpb.IngestRequest(documents=[stack["docs"][0]]), timeout=300)


def test_llm_down_is_unavailable(stack, tmp_path_factory):
    r = Redis()
    port = free_port()
    biz = start_business(r.url, port)  # nothing listens on port
    try:
        wait_serving(biz.port)
        ch = grpc.insecure_channel(f"127.0.0.1:{biz.port}")
        stub = bgrpc.TwinServiceStub(ch)
        stub.Ingest(bpb.IngestRequest(documents=stack["docs"][:2]), timeout=300)
        with pytest.raises(grpc.RpcError) as e:
            ask(stub, "How does the KV cache work?", retrieval=bpb.RetrievalOptions(expansions=0, rerank=False,
                                                                                 self_query=False))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
        ch.close()
    finally:
        assert biz.stop() == 0, biz.logs()
        r.stop()


def test_redis_down_at_start_and_mid_run(stack):
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    biz = start_business(url, stack["llm"].port)
    try:
        hpb, hgrpc = stubs("health")
        ch = grpc.insecure_channel(f"127.0.0.1:{biz.port}")
        h = hgrpc.HealthStub(ch)
        time.sleep(1.0)
        st = h.Check(hpb.HealthCheckRequest(service="twin.business.v1.TwinService"), timeout=5)
        assert st.status == hpb.HealthCheckResponse.NOT_SERVING
        stub = bgrpc.TwinServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            ask(stub, "anything")
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        r = Redis(port=port)  # Redis arrives late: the service catches up
        wait_serving(biz.port)
        stub.Ingest(bpb.IngestRequest(documents=stack["docs"][:3]), timeout=300)
        ok = ask(stub, "How does the KV cache work?")
        assert ok[-1].WhichOneof("event") == "summary"
        r.stop()  # and goes away mid-run: clear UNAVAILABLE, no crash
        with pytest.raises(grpc.RpcError) as e:
            ask(stub, "How does the KV cache work?", no_cache=True)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        r = Redis(port=port)
        ch.close()
        r.stop()
    finally:
        assert biz.stop() == 0, biz.logs()
        assert biz.sanitizer_reports() == []


def test_trace_redis_outage_never_fails_answers(stack):
    """Traces go to a Redis that is down: answers still stream at full speed, and the traces
    queued meanwhile arrive once that Redis is back."""
    port = free_port()
    biz = start_business(stack["redis"].url, stack["llm"].port, "--trace-redis-url", f"redis://127.0.0.1:{port}")
    try:
        wait_serving(biz.port)
        ch = grpc.insecure_channel(f"127.0.0.1:{biz.port}")
        stub = bgrpc.TwinServiceStub(ch)
        ids = []
        for i in range(3):
            t0 = time.time()
            msgs = ask(stub, f"What does the scheduler do first? ({i})", no_cache=True,
                       retrieval=bpb.RetrievalOptions(expansions=0, rerank=False, self_query=False))
            assert msgs[-1].WhichOneof("event") == "summary" and time.time() - t0 < 30
            ids.append(msgs[-1].summary.trace_id)
        late = Redis(port=port)
        try:
            rc = redis_client.Redis.from_url(late.url)
            deadline = time.time() + 20
            seen = set()
            while time.time() < deadline and len(seen) < 3:
                seen = {json.loads(f[b"trace"])["trace_id"] for _id, f in rc.xrange("twin:traces")}
                time.sleep(0.2)
            assert set(ids) <= seen, (ids, seen)
        finally:
            late.stop()
        ch.close()
    finally:
        assert biz.stop() == 0, biz.logs()


def test_dead_replica_is_skipped(stack):
    """llm-svc target with two addresses, one with nobody listening: every Ask is answered by
    the live replica (the call retries before the first token when it lands on the dead one)."""
    dead = free_port()
    biz = Process([binary("business-svc"), "--host", "127.0.0.1", "--port", "0", "--http-port", "0",
                   "--redis-url", stack["redis"].url,
                   "--llm-target", f"ipv4:127.0.0.1:{dead},127.0.0.1:{stack['llm'].port}",
                   "--embedder", EMBEDDER], ready=r"LISTENING grpc=(\d+) http=(\d+)", name="business-svc")
    try:
        wait_serving(biz.port)
        ch = grpc.insecure_channel(f"127.0.0.1:{biz.port}")
        stub = bgrpc.TwinServiceStub(ch)
        for i in range(6):
            msgs = ask(stub, f"How are blocks evicted? {i}", no_cache=True,
                       retrieval=bpb.RetrievalOptions(expansions=0, rerank=False, self_query=False))
            assert msgs[-1].WhichOneof("event") == "summary"
        ch.close()
    finally:
        assert biz.stop() == 0, biz.logs()
