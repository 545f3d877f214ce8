#!/usr/bin/env python3
"""tests/bench/monitor_bench.py — monitor-svc's consumer throughput and query latency at scale.
Starts a private redis-server, publishes --count traces (the test producer's, ~2.4 KB each) to
the stream before the monitor starts, then starts build/bin/monitor-svc and measures:
  - sustained consumption: traces stored per second while it drains the backlog (from 10% to
    90% stored, read from its /metrics), and the whole drain time;
  - ListTraces latency through grpcio (client-side wall time, p50/p99) with every trace stored:
    the newest page, a deep page (following page tokens), filters on one index (model), filters
    checked on summaries (model + template + errors), and a text search over the last hour;
  - GetStats latency over the last hour with 48 buckets.
Prints one line per figure. Bounded: ~1-2 minutes at 100k traces on 2 cores.

Usage: python3 tests/bench/monitor_bench.py [--count 100000] [--queries 200] [--bin-dir build/bin]
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TWIN_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "python"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))


def pcts(xs):
    xs = sorted(xs)
    def q(p):
        k = (len(xs) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)
    return q(0.5) * 1000, q(0.99) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--bin-dir", default=os.environ.get("TWIN_BIN_DIR", os.path.join(SOURCE_DIR, "build", "bin")))
    a = ap.parse_args()
    os.environ["TWIN_BIN_DIR"] = a.bin_dir
    os.environ.setdefault("TWIN_BUILD_DIR", os.path.dirname(os.path.abspath(a.bin_dir)))
    import grpc
    import trace_producer as tp
    from twin_testlib import Redis, stubs
    pb, pb_grpc = stubs("monitor")

    redis = Redis()
    m = None
    try:
        r = tp.client(redis.url)
        now = int(time.time() * 1000)
        t0 = time.time()
        for k in range(0, a.count, 5000):
            batch = [tp.make_trace(i, seed=40, now_ms=now, spread_ms=24 * 3600_000)
                     for i in range(k, min(k + 5000, a.count))]
            tp.publish(r, batch, batch=1000)
        info = r.info("memory")
        n_entries = r.xinfo_stream(tp.STREAM)["length"]
        print(f"published {n_entries} traces in {time.time() - t0:.1f} s "
              f"(redis {info['used_memory_human']})", flush=True)

        m = tp.start_monitor(redis.url, "--log-level", "warn")
        hp = m.extra_ports[0]
        start = time.time()
        marks = {}
        while True:
            stored = tp.metric(tp.metrics(hp), "monitor_consumer_traces_stored_total")
            t = time.time()
            for frac in (0.1, 0.9):
                if frac not in marks and stored >= frac * a.count:
                    marks[frac] = (t, stored)
            if stored >= a.count:
                break
            if t - start > 600:
                raise SystemExit(f"only {stored} of {a.count} stored after 600 s")
            time.sleep(0.05)
        drain = time.time() - start
        (t1, s1), (t9, s9) = marks[0.1], marks[0.9]
        rate = (s9 - s1) / max(t9 - t1, 1e-9)
        print(f"consumer: {rate:,.0f} traces/s sustained (10%..90% of the backlog); "
              f"{a.count} drained in {drain:.1f} s ({a.count / drain:,.0f} traces/s overall)", flush=True)

        ch = grpc.insecure_channel(f"127.0.0.1:{m.port}")
        stub = pb_grpc.MonitorServiceStub(ch)
        first = stub.ListTraces(pb.ListTracesRequest(page_size=50), timeout=30)
        assert first.total == a.count, first.total

        def bench(name, make_req, n):
            lat = []
            for i in range(n):
                req = make_req(i)
                t = time.perf_counter()
                resp = stub.ListTraces(req, timeout=60)
                lat.append(time.perf_counter() - t)
            p50, p99 = pcts(lat)
            print(f"ListTraces {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
                  f"({n} calls, {len(resp.traces)} traces/page, total {resp.total})", flush=True)

        bench("newest page of 50", lambda i: pb.ListTracesRequest(page_size=50), a.queries)
        # page tokens 20 pages deep (traces 1001..1050)
        tok = ""
        for _ in range(20):
            tok = stub.ListTraces(pb.ListTracesRequest(page_size=50, page_token=tok), timeout=30).next_page_token
        bench("page 21 of 50 (token)", lambda i: pb.ListTracesRequest(page_size=50, page_token=tok), a.queries)
        bench("model filter (index)", lambda i: pb.ListTracesRequest(page_size=50, model=tp.MODELS[i % 3]),
              a.queries)
        bench("model+template+errors (index membership)",
              lambda i: pb.ListTracesRequest(page_size=50, model=tp.MODELS[i % 3],
                                             template_name=tp.TEMPLATES[i % 3][0], errors_only=True),
              max(10, a.queries // 10))
        hour = int(time.time() * 1000) - 3600_000
        bench("text search, last hour",
              lambda i: pb.ListTracesRequest(page_size=50, text=["hopper", "straße", "KV cache"][i % 3],
                                             since_ms=hour), max(10, a.queries // 10))
        lat = []
        for _ in range(max(5, a.queries // 20)):
            t = time.perf_counter()
            st = stub.GetStats(pb.GetStatsRequest(window_ms=3600_000, buckets=48), timeout=60)
            lat.append(time.perf_counter() - t)
        p50, p99 = pcts(lat)
        print(f"GetStats last hour ({st.overall.count} traces, 48 buckets): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        lat = []
        for _ in range(3):
            t = time.perf_counter()
            st = stub.GetStats(pb.GetStatsRequest(window_ms=25 * 3600_000), timeout=120)
            lat.append(time.perf_counter() - t)
        print(f"GetStats all {st.overall.count} traces: {statistics.median(lat) * 1000:.0f} ms")
        ch.close()
    finally:
        if m:
            m.stop()
        redis.stop()


if __name__ == "__main__":
    main()
