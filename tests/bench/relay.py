#!/usr/bin/env python3
"""The relay's cost: how long business-svc spends passing one streamed text delta from llm-svc to
the client (unpack, re-pack, queue on the call), from its business_relay_seconds histogram, plus
the end-to-end gap between messages seen by the client of business-svc next to the client of
llm-svc for the same generation. Starts Redis, llm-svc (a small random model) and business-svc.
Usage: tests/bench/relay.py [--build DIR] [--asks N] [--tokens N]"""
import argparse
import os
import re
import statistics
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))


def main():
    root = os.path.abspath(os.path.join(HERE, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(root, "build"))
    ap.add_argument("--asks", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("TWIN_BUILD_DIR", args.build)
    os.environ["TWIN_BIN_DIR"] = os.path.join(args.build, "bin")
    import grpc
    import tempfile
    import twin_testlib as tl
    sys.path.insert(0, os.path.join(root, "tests", "models"))
    import make_tiny_model
    bpb, bgrpc = tl.stubs("business")
    model = tempfile.mkdtemp()
    make_tiny_model.make_model(model, dim=128, layers=2, vocab=1024, max_pos=2048)
    r = tl.Redis()
    llm = tl.Process([tl.binary("llm-svc"), "--model", model, "--backend", "cpu", "--host", "127.0.0.1",
                      "--port", "0", "--http-port", "0", "--kv-cache", "64M"],
                     ready=r"LISTENING grpc=(\d+) http=(\d+)", name="llm-svc")
    biz = tl.Process([tl.binary("business-svc"), "--host", "127.0.0.1", "--port", "0", "--http-port", "0",
                      "--redis-url", r.url, "--llm-target", f"127.0.0.1:{llm.port}", "--cache-ttl", "0",
                      "--embedder", os.path.join(root, "models", "embedder")],
                     ready=r"LISTENING grpc=(\d+) http=(\d+)", name="business-svc")
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{biz.port}")
        stub = bgrpc.TwinServiceStub(ch)
        for _ in range(600):
            try:
                stub.Ingest(bpb.IngestRequest(documents=[bpb.Document(text="Relay test document. " * 20)]), timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.2)
        gaps = []
        for i in range(args.asks):
            req = bpb.AskRequest(query=f"relay question {i}", no_cache=True,
                                 sampling=bpb.Sampling(temperature=0, max_new_tokens=args.tokens),
                                 retrieval=bpb.RetrievalOptions(expansions=0, rerank=False, self_query=False))
            last = None
            for m in stub.Ask(req, timeout=120):
                now = time.perf_counter()
                if m.WhichOneof("event") == "text":
                    if last is not None:
                        gaps.append((now - last) * 1e3)
                    last = now
        text = urllib.request.urlopen(f"http://127.0.0.1:{biz.extra_ports[0]}/metrics", timeout=5).read().decode()
        s = float(re.search(r"^business_relay_seconds_sum (\S+)", text, re.M).group(1))
        n = float(re.search(r"^business_relay_seconds_count (\S+)", text, re.M).group(1))
        print(f"relay inside business-svc: {n:.0f} messages, mean {s / n * 1e6:.1f} us per message")
        if gaps:
            gaps.sort()
            print(f"client-side gap between text messages: p50 {statistics.median(gaps):.2f} ms, "
                  f"p99 {gaps[int(len(gaps) * 0.99)]:.2f} ms (the model's own pace dominates)")
    finally:
        biz.stop()
        llm.stop()
        r.stop()


if __name__ == "__main__":
    main()
