#!/usr/bin/env python3
"""tests/integration/trace_producer.py — a test producer of the trace contract
(monitor-svc/trace_format.h): deterministic traces built from an index and a seed, published to
the Redis stream `twin:traces` (one field `trace` holding the JSON object), plus malformed
entries for the dead-letter path. Tests import it, with the helpers below that run monitor-svc
against it and read its APIs; as a program it publishes N traces and writes what it published,
one JSON object per line, for comparison.

Usage: python3 tests/integration/trace_producer.py --redis-url redis://127.0.0.1:6379
       [--count 1000] [--start 0] [--seed 1] [--prefix t] [--rate 0 (per second; 0 = flat out)]
       [--spread-ms 3600000] [--out published.jsonl]
"""
import argparse
import json
import random
import sys
import time

import redis

STREAM = "twin:traces"
DEAD_STREAM = "twin:traces:dead"
FIELD = "trace"

MODELS = ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "mistral-7b-v0.3"]
TEMPLATES = [("rag_answer", "v3"), ("rag_answer_short", "v1"), ("persona_chat", "v2")]
STAGES = ["self_query", "expand", "embed", "search", "rerank", "prompt", "cache", "generate"]
AUTHORS = ["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"]
TOPICS = ["paged attention", "KV cache eviction", "continuous batching", "RMSNorm fusion",
          "vector search recall", "Straße naming", "prompt templates", "ÉTÉ release notes",
          "retrieval augmentation", "speculative decoding"]
ERRORS = ["llm-svc: deadline exceeded after 30000 ms", "llm-svc: RESOURCE_EXHAUSTED (queue full)",
          "retriever: redis unavailable"]


def make_trace(i, seed=1, prefix="t", now_ms=None, spread_ms=3600_000, error_every=9):
    """The i-th trace of a run: every field filled, values drawn from random.Random(seed, i)."""
    rng = random.Random(seed * 1_000_003 + i)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    model = MODELS[rng.randrange(len(MODELS))]
    tname, tver = TEMPLATES[rng.randrange(len(TEMPLATES))]
    topic = TOPICS[rng.randrange(len(TOPICS))]
    author = AUTHORS[rng.randrange(len(AUTHORS))]
    query = f"What did {author} write about {topic}? (#{i})"
    failed = error_every > 0 and i % error_every == error_every - 1
    cache_hit = not failed and rng.random() < 0.2
    sources = [{"chunk_id": f"c-{i}-{k}", "doc_id": f"d-{rng.randrange(500)}",
                "score": round(rng.uniform(0.35, 0.98), 4),
                "snippet": f"{author} on {topic}, part {k}: " + " ".join(
                    rng.choice(["tokens", "blocks", "latency", "cache", "queries", "<b>tags</b>"])
                    for _ in range(12))}
               for k in range(rng.randrange(1, 6))]
    sources.sort(key=lambda s: -s["score"])
    stages = [{"stage": s, "ms": round(rng.uniform(0.2, 25.0), 3)} for s in STAGES[:-1]]
    prompt_tokens = rng.randrange(200, 3000)
    completion_tokens = 0 if failed else rng.randrange(10, 600)
    gen_ms = 0.0 if cache_hit else round(completion_tokens * rng.uniform(4, 12), 3)
    stages.append({"stage": "generate", "ms": gen_ms})
    before = sum(s["ms"] for s in stages[:-1])
    ttft = 0.0 if failed else round(before + (1.0 if cache_hit else rng.uniform(15, 180)), 3)
    total = round(before + gen_ms + rng.uniform(0.1, 3.0), 3)
    answer = "" if failed else (f"{author} described {topic} as a trade-off between memory and "
                                f"throughput. " * rng.randrange(1, 4)).strip()
    variables = {"question": query, "author": author, "k": len(sources),
                 "context": [s["chunk_id"] for s in sources]}
    return {
        "trace_id": f"{prefix}-{seed}-{i:07d}",
        "time_ms": now_ms - rng.randrange(0, max(1, spread_ms)),
        "query": query,
        "template_name": tname,
        "template_version": tver,
        "variables": variables,
        "prompt": f"<|system|>You answer as {author}'s twin.\n<|context|>\n" +
                  "\n".join(f"[{s['chunk_id']}] {s['snippet']}" for s in sources) +
                  f"\n<|user|>{query}\n<|assistant|>",
        "sources": sources,
        "answer": answer,
        "model": model,
        "sampling": {"temperature": round(rng.uniform(0, 1), 2), "top_p": 0.9, "max_new_tokens": 512},
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "stages": stages,
        "ttft_ms": ttft,
        "total_ms": total,
        "cost_usd": round(prompt_tokens * 1e-7 + completion_tokens * 4e-7, 9),
        "cache_hit": cache_hit,
        "error": ERRORS[i % len(ERRORS)] if failed else "",
    }


def client(url):
    return redis.Redis.from_url(url)


def publish(r, traces, stream=STREAM, batch=500):
    """XADD each trace (pipelined); returns the entry ids."""
    ids = []
    for k in range(0, len(traces), batch):
        p = r.pipeline(transaction=False)
        for t in traces[k:k + batch]:
            p.xadd(stream, {FIELD: json.dumps(t, ensure_ascii=False)})
        ids.extend(x.decode() for x in p.execute())
    return ids


def publish_fields(r, fields, stream=STREAM):
    """One entry with arbitrary fields (bytes or str values): malformed entries."""
    return r.xadd(stream, fields).decode()


MALFORMED = [
    {"other": "no trace field"},
    {FIELD: b"\xff\xfe\x00garbage \xc3\x28"},
    {FIELD: "this is not json {"},
    {FIELD: "[1, 2, 3]"},
    {FIELD: json.dumps({"time_ms": 1, "model": "m", "total_ms": 1, "error": ""})},   # no trace_id
    {FIELD: json.dumps({"trace_id": "bad id/slash", "time_ms": 1, "model": "m", "total_ms": 1,
                        "error": ""})},
    {FIELD: json.dumps({"trace_id": "x-typed", "time_ms": "yesterday", "model": "m",
                        "total_ms": 1, "error": ""})},
    {FIELD: json.dumps({"trace_id": "x-neg", "time_ms": 5, "model": "m", "total_ms": -3,
                        "error": ""})},
]


# ---- running monitor-svc and reading it back (for the tests) -----------------------------------

def start_monitor(redis_url, *extra, env=None, name="monitor-svc", timeout=60):
    """monitor-svc on free loopback ports; .port is gRPC, .extra_ports[0] HTTP."""
    import os
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    from twin_testlib import Process, binary
    args = [binary("monitor-svc"), "--host", "127.0.0.1", "--port", "0", "--http-port", "0",
            "--redis-url", redis_url, "--block", "200ms"] + list(extra)
    return Process(args, env=env, ready=r"LISTENING grpc=(\d+) http=(\d+)", name=name,
                   timeout=timeout)


def wait_for(cond, timeout=30.0, interval=0.05, what="condition"):
    """Polls cond() until it returns a true value (returned) or timeout passes."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s (last: {last!r})")


def http_get(port, path, timeout=10):
    """(status, body bytes) of GET http://127.0.0.1:port/path."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metrics(port):
    """/metrics as {(name, frozenset(labels.items())): value}."""
    import re
    status, body = http_get(port, "/metrics")
    assert status == 200
    out = {}
    rx = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
    lrx = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = rx.match(line)
        if not m:
            continue
        labels = frozenset((k, v.replace('\\"', '"').replace("\\\\", "\\"))
                           for k, v in lrx.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())), 0.0)


def list_all(stub, pb, page_size=100, **filters):
    """Every trace ListTraces returns for the filters, following page tokens; (traces, totals)."""
    traces, totals, token = [], [], ""
    for _ in range(100000):
        resp = stub.ListTraces(pb.ListTracesRequest(page_size=page_size, page_token=token, **filters),
                               timeout=30)
        traces.extend(resp.traces)
        totals.append(resp.total)
        token = resp.next_page_token
        if not token:
            return traces, totals
    raise AssertionError("ListTraces never ended")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    ap.add_argument("--stream", default=STREAM)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prefix", default="t")
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--spread-ms", type=int, default=3600_000)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    r = client(a.redis_url)
    now = int(time.time() * 1000)
    traces = [make_trace(i, a.seed, a.prefix, now, a.spread_ms)
              for i in range(a.start, a.start + a.count)]
    out = open(a.out, "w") if a.out else None
    t0 = time.time()
    if a.rate <= 0:
        publish(r, traces, a.stream)
        if out:
            for t in traces:
                out.write(json.dumps(t, ensure_ascii=False) + "\n")
    else:
        for k, t in enumerate(traces):
            wait = t0 + k / a.rate - time.time()
            if wait > 0:
                time.sleep(wait)
            publish(r, [t], a.stream)
            if out:
                out.write(json.dumps(t, ensure_ascii=False) + "\n")
                out.flush()
    if out:
        out.close()
    print(f"published {len(traces)} traces to {a.stream} in {time.time() - t0:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
