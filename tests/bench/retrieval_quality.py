#!/usr/bin/env python3
"""Retrieval quality on the test corpus (tests/data/corpus: 64 questions whose answer chunk is
known: the chunk holding the question's answer_text). Starts Redis, llm-svc and business-svc,
ingests the corpus, then runs Search for every question in four settings (plain; with query
expansion; with rerank; with both) and prints recall@3 and MRR (over the kept chunks) for each.
The LLM stages use the model given (--model; the main job's default is a good one); with a
random tiny model they only add noise.
Usage: tests/bench/retrieval_quality.py [--model PATH] [--build DIR] [--limit N] [--rerank llm|embedding]"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.abspath(os.path.join(HERE, "..", ".."))
    ap.add_argument("--model", default=os.path.join(root, "models", "llm", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--build", default=os.path.join(root, "build"))
    ap.add_argument("--limit", type=int, default=0, help="first N questions only")
    ap.add_argument("--rerank", default="llm", choices=["llm", "embedding"])
    ap.add_argument("--keep", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TWIN_BUILD_DIR", args.build)
    os.environ["TWIN_BIN_DIR"] = os.path.join(args.build, "bin")
    import grpc
    import twin_testlib as tl
    bpb, bgrpc = tl.stubs("business")

    corpus = os.path.join(root, "tests", "data", "corpus")
    questions = [json.loads(l) for l in open(os.path.join(corpus, "questions.jsonl"))]
    if args.limit:
        questions = questions[:args.limit]
    r = tl.Redis()
    llm = tl.Process([tl.binary("llm-svc"), "--model", args.model, "--backend", "cpu", "--host", "127.0.0.1",
                      "--port", "0", "--http-port", "0", "--kv-cache", "256M"],
                     ready=r"LISTENING grpc=(\d+) http=(\d+)", name="llm-svc")
    biz = tl.Process([tl.binary("business-svc"), "--host", "127.0.0.1", "--port", "0", "--http-port", "0",
                      "--redis-url", r.url, "--llm-target", f"127.0.0.1:{llm.port}", "--rerank", args.rerank,
                      "--embedder", os.path.join(root, "models", "embedder"), "--llm-stage-timeout", "20s"],
                     ready=r"LISTENING grpc=(\d+) http=(\d+)", name="business-svc")
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{biz.port}")
        stub = bgrpc.TwinServiceStub(ch)
        for _ in range(600):
            try:
                stub.Search(bpb.SearchRequest(query="warm up"), timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.2)
        ctl = [tl.binary("twinctl"), "--business", f"127.0.0.1:{biz.port}", "ingest", os.path.join(corpus, "docs")]
        import subprocess
        subprocess.run(ctl, check=True, capture_output=True, timeout=900)
        settings = [("plain", 0, False), ("expansion", 3, False), ("rerank", 0, True), ("expansion+rerank", 3, True)]
        print(f"{len(questions)} questions, keep {args.keep}, rerank by {args.rerank}, model {os.path.basename(args.model)}")
        print(f"{'setting':<18} {'recall@3':>9} {'MRR':>6} {'p50 ms':>8}")
        for name, expansions, rerank in settings:
            hits3, rr, lat = 0, 0.0, []
            for q in questions:
                opts = bpb.RetrievalOptions(expansions=expansions, rerank=rerank, keep=args.keep, top_k=5,
                                            self_query=False)
                t0 = time.perf_counter()
                res = stub.Search(bpb.SearchRequest(query=q["question"], retrieval=opts), timeout=120).results
                lat.append((time.perf_counter() - t0) * 1e3)
                ranks = [i for i, s in enumerate(res) if q["answer_text"] in s.snippet]
                if ranks:
                    rr += 1.0 / (ranks[0] + 1)
                    hits3 += ranks[0] < 3
            lat.sort()
            n = len(questions)
            print(f"{name:<18} {hits3 / n:>9.3f} {rr / n:>6.3f} {lat[len(lat) // 2]:>8.1f}")
    finally:
        biz.stop()
        llm.stop()
        r.stop()


if __name__ == "__main__":
    main()
