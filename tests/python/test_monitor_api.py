"""monitor-svc against a real redis-server, through its gRPC API (grpcio), its HTTP API and
/metrics: every published trace appears exactly once and reads back field for field; filters,
paging and statistics agree with references computed here (Python filtering, numpy
percentiles); malformed entries go to the dead-letter stream and are acknowledged; duplicates
are stored once; retention trims by count and age; Redis down at start and mid-run flips
health without a crash; --help and the environment twins; SIGTERM exits 0."""
import json
import os
import re
import subprocess
import sys
import time
import unicodedata

import grpc
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import trace_producer as tp  # noqa: E402
from twin_testlib import Redis, binary, free_port, stubs  # noqa: E402

pb, pb_grpc = stubs("monitor")
health_pb, health_grpc = stubs("health")
SERVICE = "twin.monitor.v1.MonitorService"


class Stack:
    """A redis-server, a monitor-svc on it, a gRPC stub and a redis-py client."""

    def __init__(self, *flags, redis=None, env=None):
        self.redis = redis or Redis()
        self.r = tp.client(self.redis.url)
        self.monitor = tp.start_monitor(self.redis.url, *flags, env=env)
        self.http = self.monitor.extra_ports[0]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.monitor.port}")
        self.stub = pb_grpc.MonitorServiceStub(self.channel)
        self.health = health_grpc.HealthStub(self.channel)

    def total(self, **filters):
        return self.stub.ListTraces(pb.ListTracesRequest(page_size=1, **filters), timeout=10).total

    def wait_total(self, n, timeout=60, **filters):
        return tp.wait_for(lambda: self.total(**filters) == n, timeout, what=f"{n} traces stored")

    def metrics(self):
        return tp.metrics(self.http)

    def close(self):
        self.channel.close()
        rc = self.monitor.stop()
        reports = self.monitor.sanitizer_reports()
        self.redis.stop()
        assert rc == 0, self.monitor.logs()
        assert reports == [], self.monitor.logs()


@pytest.fixture
def make_stack():
    made = []

    def make(*flags, **kw):
        s = Stack(*flags, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def now_ms():
    return int(time.time() * 1000)


def fold(s):
    return unicodedata.normalize("NFC", s).casefold()


def reference(traces, since=0, until=0, model="", template="", text="", errors=False):
    """The traces a listing must return, newest first (ties: larger id first)."""
    out = []
    for t in traces:
        if since and t["time_ms"] < since:
            continue
        if until and t["time_ms"] > until:
            continue
        if model and t["model"] != model:
            continue
        if template and t["template_name"] != template:
            continue
        if errors and not t["error"]:
            continue
        if text and fold(text) not in fold(t["query"]) and fold(text) not in fold(t["answer"]):
            continue
        out.append(t)
    out.sort(key=lambda t: (t["time_ms"], t["trace_id"]), reverse=True)
    return out


def assert_same_trace(m, t):
    assert m.trace_id == t["trace_id"]
    assert m.time_ms == t["time_ms"]
    for f in ("query", "template_name", "template_version", "prompt", "answer", "model", "error"):
        assert getattr(m, f) == t[f], f
    assert json.loads(m.variables_json) == t["variables"]
    assert json.loads(m.sampling_json) == t["sampling"]
    assert m.prompt_tokens == t["prompt_tokens"]
    assert m.completion_tokens == t["completion_tokens"]
    assert m.ttft_ms == t["ttft_ms"] and m.total_ms == t["total_ms"]
    assert m.cost_usd == pytest.approx(t["cost_usd"], rel=1e-12)
    assert m.cache_hit == t["cache_hit"]
    assert [(s.chunk_id, s.doc_id, s.snippet) for s in m.sources] == \
        [(s["chunk_id"], s["doc_id"], s["snippet"]) for s in t["sources"]]
    assert [s.score for s in m.sources] == pytest.approx([s["score"] for s in t["sources"]], rel=1e-6)
    assert [(s.stage, s.ms) for s in m.stages] == [(s["stage"], s["ms"]) for s in t["stages"]]


def rpc_error(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, timeout=10, **kw)
    return e.value


# ---- every trace, exactly once ------------------------------------------------------------------

def test_every_trace_once_newest_first_and_field_for_field(make_stack):
    s = make_stack()
    traces = [tp.make_trace(i, seed=3, now_ms=now_ms()) for i in range(1200)]
    tp.publish(s.r, traces)
    s.wait_total(1200)
    got, totals = tp.list_all(s.stub, pb, page_size=97)
    ids = [m.trace_id for m in got]
    assert len(ids) == len(set(ids)) == 1200
    assert set(ids) == {t["trace_id"] for t in traces}
    assert set(totals) == {1200}
    assert [m.trace_id for m in got] == [t["trace_id"] for t in reference(traces)]
    by_id = {t["trace_id"]: t for t in traces}
    for m in got:
        assert_same_trace(m, by_id[m.trace_id])
    for t in traces[:50]:
        assert_same_trace(s.stub.GetTrace(pb.GetTraceRequest(trace_id=t["trace_id"]), timeout=10), t)
    ms = s.metrics()
    assert tp.metric(ms, "monitor_consumer_traces_stored_total") == 1200
    assert tp.metric(ms, "monitor_consumer_entries_read_total") == 1200
    assert tp.metric(ms, "monitor_consumer_duplicates_total") == 0
    pending = s.r.xpending(tp.STREAM, "monitor")
    assert pending["pending"] == 0


def test_get_trace_not_found_and_bad_ids(make_stack):
    s = make_stack()
    tp.publish(s.r, [tp.make_trace(0, now_ms=now_ms())])
    s.wait_total(1)
    e = rpc_error(s.stub.GetTrace, pb.GetTraceRequest(trace_id="t-1-9999999"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "t-1-9999999" in e.details()
    for bad in ("", "a/b", "x" * 200, "sp ace"):
        e = rpc_error(s.stub.GetTrace, pb.GetTraceRequest(trace_id=bad))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "trace_id" in e.details()


# ---- filters and paging ---------------------------------------------------------------------------

def test_filters_and_paging_match_reference(make_stack):
    s = make_stack()
    now = now_ms()
    traces = [tp.make_trace(i, seed=5, now_ms=now) for i in range(700)]
    tp.publish(s.r, traces)
    s.wait_total(700)
    times = sorted(t["time_ms"] for t in traces)
    lo, hi = times[200], times[500]
    cases = [
        dict(model=tp.MODELS[0]),
        dict(template=tp.TEMPLATES[1][0]),
        dict(errors=True),
        dict(text="straße"),
        dict(text="STRASSE"),           # full case folding: ß == ss
        dict(text="été"),               # matches "ÉTÉ"
        dict(text="TRADE-OFF between"),  # answers only
        dict(text="no such words anywhere"),
        dict(since=lo, until=hi),
        dict(since=lo),
        dict(until=hi),
        dict(model=tp.MODELS[1], template=tp.TEMPLATES[0][0], errors=True),
        dict(model=tp.MODELS[2], text="grace"),
        dict(template=tp.TEMPLATES[2][0], since=lo, until=hi),
        dict(errors=True, text="hopper"),
    ]
    for c in cases:
        want = [t["trace_id"] for t in reference(traces, **c)]
        req = dict(since_ms=c.get("since", 0), until_ms=c.get("until", 0), model=c.get("model", ""),
                   template_name=c.get("template", ""), text=c.get("text", ""),
                   errors_only=c.get("errors", False))
        got, totals = tp.list_all(s.stub, pb, page_size=7, **req)
        assert [m.trace_id for m in got] == want, c
        assert set(totals) == {len(want)}, c
    # the text search really folds: the reference found something for the folded cases
    assert reference(traces, text="STRASSE") and reference(traces, text="été")


def test_scan_limit_marks_total_partial_and_paging_still_complete(make_stack):
    s = make_stack("--max-scan", "50")
    traces = [tp.make_trace(i, seed=6, now_ms=now_ms()) for i in range(400)]
    tp.publish(s.r, traces)
    s.wait_total(400)
    first = s.stub.ListTraces(pb.ListTracesRequest(text="hopper", page_size=5), timeout=10)
    assert first.total_partial
    got, _ = tp.list_all(s.stub, pb, page_size=5, text="hopper")
    want = [t["trace_id"] for t in reference(traces, text="hopper")]
    assert [m.trace_id for m in got] == want


def test_large_traces_split_pages_under_the_message_limit(make_stack):
    s = make_stack()
    traces = []
    for i in range(40):
        t = tp.make_trace(i, seed=15, now_ms=now_ms())
        t["prompt"] = (f"[{i}] " + "context line about paged attention and KV blocks. " * 4000)[:200_000]
        traces.append(t)
    tp.publish(s.r, traces)
    s.wait_total(40)
    first = s.stub.ListTraces(pb.ListTracesRequest(page_size=40), timeout=30)
    assert 0 < len(first.traces) < 40 and first.next_page_token and first.total == 40
    got, totals = tp.list_all(s.stub, pb, page_size=40)
    assert [m.trace_id for m in got] == [t["trace_id"] for t in reference(traces)]
    assert set(totals) == {40}
    by_id = {t["trace_id"]: t for t in traces}
    assert all(m.prompt == by_id[m.trace_id]["prompt"] for m in got)


def test_invalid_arguments_name_the_field(make_stack):
    s = make_stack()
    L = pb.ListTracesRequest
    for req, field in [(L(page_size=1001), "page_size"),
                       (L(page_token="zz"), "page_token"),
                       (L(page_token="76313a616263"), "page_token"),  # "v1:abc"
                       (L(since_ms=200, until_ms=100), "since_ms"),
                       (L(since_ms=-1), "since_ms"),
                       (L(until_ms=-5), "until_ms"),
                       (L(text="x" * 2000), "text"),
                       (L(model="m" * 300), "model")]:
        e = rpc_error(s.stub.ListTraces, req)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (req, e.details())
        assert e.details().startswith(field), e.details()
    for req, field in [(pb.GetStatsRequest(window_ms=-5), "window_ms"),
                       (pb.GetStatsRequest(buckets=1001), "buckets"),
                       (pb.GetStatsRequest(until_ms=-1), "until_ms"),
                       (pb.GetStatsRequest(window_ms=10**13), "window_ms")]:
        e = rpc_error(s.stub.GetStats, req)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details().startswith(field), e.details()
    raw = s.channel.unary_unary(f"/{SERVICE}/ListTraces")
    e = rpc_error(raw, b"\xff\xff\xff")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    for path, field in [("/api/traces?page_size=abc", "page_size"), ("/api/traces?page_size=5000", "page_size"),
                        ("/api/traces?since_ms=9&until_ms=3", "since_ms"), ("/api/stats?window_ms=-1", "window_ms"),
                        ("/api/traces?errors_only=maybe", "errors_only"), ("/api/traces/bad%20id", "trace_id")]:
        status, body = tp.http_get(s.http, path)
        assert status == 400, (path, body)
        assert json.loads(body)["error"]["message"].startswith(field), body


# ---- statistics -----------------------------------------------------------------------------------

def pct(xs, q):
    return float(np.percentile(np.array(xs, dtype=np.float64), q)) if len(xs) else 0.0


def check_group(g, ts, key):
    assert g.key == key
    assert g.count == len(ts)
    errs = sum(1 for t in ts if t["error"])
    assert g.errors == errs
    assert g.error_rate == pytest.approx(errs / len(ts) if ts else 0)
    lat = [t["total_ms"] for t in ts]
    ttft = [t["ttft_ms"] for t in ts if t["ttft_ms"] > 0]
    for q, v in ((50, g.latency_p50_ms), (90, g.latency_p90_ms), (99, g.latency_p99_ms)):
        assert v == pytest.approx(pct(lat, q), rel=1e-9), (key, q)
    for q, v in ((50, g.ttft_p50_ms), (90, g.ttft_p90_ms), (99, g.ttft_p99_ms)):
        assert v == pytest.approx(pct(ttft, q), rel=1e-9), (key, q)
    assert g.prompt_tokens == sum(t["prompt_tokens"] for t in ts)
    assert g.completion_tokens == sum(t["completion_tokens"] for t in ts)
    assert g.cost_usd == pytest.approx(sum(t["cost_usd"] for t in ts), rel=1e-9)
    assert g.cache_hit_rate == pytest.approx(sum(t["cache_hit"] for t in ts) / len(ts) if ts else 0)


def test_stats_match_numpy(make_stack):
    s = make_stack()
    until = now_ms()
    window = 3600_000
    traces = [tp.make_trace(i, seed=7, now_ms=until, spread_ms=2 * window) for i in range(900)]
    # a model whose latencies repeat a few values (ties in the percentile selection)
    for i in range(60):
        t = tp.make_trace(5000 + i, seed=7, now_ms=until, spread_ms=window // 2)
        t.update(model="dup-model", total_ms=[10.0, 20.0, 20.0, 20.0, 30.5][i % 5], ttft_ms=[0.0, 5.0, 5.0][i % 3])
        traces.append(t)
    tp.publish(s.r, traces)
    s.wait_total(len(traces))
    inwin = [t for t in traces if until - window <= t["time_ms"] <= until]
    assert 0 < len(inwin) < len(traces)
    st = s.stub.GetStats(pb.GetStatsRequest(window_ms=window, until_ms=until, buckets=12), timeout=30)
    assert st.window_ms == window and st.until_ms == until
    check_group(st.overall, inwin, "")
    models = sorted({t["model"] for t in inwin}, key=lambda m: (-sum(t["model"] == m for t in inwin), m))
    assert [g.key for g in st.per_model] == models
    for g in st.per_model:
        check_group(g, [t for t in inwin if t["model"] == g.key], g.key)
    assert {g.key for g in st.per_template} == {t["template_name"] for t in inwin}
    for g in st.per_template:
        check_group(g, [t for t in inwin if t["template_name"] == g.key], g.key)
    # time series: 12 buckets of ceil(window / 12) ms from until - window
    bucket = -(-window // 12)
    assert st.bucket_ms == bucket and len(st.series) == 12
    since = until - window
    for i, b in enumerate(st.series):
        assert b.start_ms == since + i * bucket
        ts = [t for t in inwin if min((t["time_ms"] - since) // bucket, 11) == i]
        assert b.count == len(ts)
        assert b.errors == sum(1 for t in ts if t["error"])
        assert b.latency_p50_ms == pytest.approx(pct([t["total_ms"] for t in ts], 50), rel=1e-9)
        assert b.latency_p99_ms == pytest.approx(pct([t["total_ms"] for t in ts], 99), rel=1e-9)
        assert b.ttft_p50_ms == pytest.approx(pct([t["ttft_ms"] for t in ts if t["ttft_ms"] > 0], 50), rel=1e-9)
        assert b.prompt_tokens == sum(t["prompt_tokens"] for t in ts)
        assert b.completion_tokens == sum(t["completion_tokens"] for t in ts)
    # filtered by model and template
    m, tn = tp.MODELS[1], tp.TEMPLATES[0][0]
    st = s.stub.GetStats(pb.GetStatsRequest(window_ms=window, until_ms=until, model=m, template_name=tn), timeout=30)
    sub = [t for t in inwin if t["model"] == m and t["template_name"] == tn]
    check_group(st.overall, sub, "")
    assert [g.key for g in st.per_model] == [m] and [g.key for g in st.per_template] == [tn]
    # an empty window
    st = s.stub.GetStats(pb.GetStatsRequest(window_ms=1000, until_ms=1000), timeout=10)
    assert st.overall.count == 0 and st.overall.latency_p50_ms == 0 and not st.per_model
    # the default window is one hour ending now
    st = s.stub.GetStats(pb.GetStatsRequest(), timeout=30)
    assert st.window_ms == window and abs(st.until_ms - now_ms()) < 60_000
    # the HTTP API serves the same numbers
    status, body = tp.http_get(s.http, f"/api/stats?window_ms={window}&until_ms={until}&buckets=12")
    assert status == 200
    js = json.loads(body)
    assert js["overall"]["count"] == len(inwin)
    assert js["overall"]["latency_p99_ms"] == pytest.approx(pct([t["total_ms"] for t in inwin], 99), rel=1e-12)
    assert [b["count"] for b in js["series"]] == [b.count for b in
                                                 s.stub.GetStats(pb.GetStatsRequest(window_ms=window, until_ms=until,
                                                                                    buckets=12), timeout=30).series]


# ---- malformed entries, duplicates ------------------------------------------------------------------

def test_malformed_entries_dead_lettered_and_duplicates_stored_once(make_stack):
    s = make_stack()
    good = [tp.make_trace(i, seed=8, now_ms=now_ms()) for i in range(60)]
    tp.publish(s.r, good[:30])
    for fields in tp.MALFORMED:
        tp.publish_fields(s.r, fields)
    tp.publish(s.r, good[30:])
    tp.publish(s.r, good[:10])       # republished: duplicates
    tp.publish(s.r, [good[5]] * 3)   # the same trace three times in one batch
    n_bad = len(tp.MALFORMED)
    tp.wait_for(lambda: tp.metric(s.metrics(), "monitor_consumer_acked_total") == 60 + n_bad + 13,
                what="every entry acknowledged")
    ms = s.metrics()
    assert tp.metric(ms, "monitor_consumer_traces_stored_total") == 60
    assert tp.metric(ms, "monitor_consumer_duplicates_total") == 13
    dead = {r: tp.metric(ms, "monitor_consumer_dead_lettered_total", reason=r)
            for r in ("no_trace_field", "not_utf8", "not_json", "bad_field", "too_large", "undeliverable")}
    assert dead == {"no_trace_field": 1, "not_utf8": 1, "not_json": 2, "bad_field": 4, "too_large": 0,
                    "undeliverable": 0}
    got, totals = tp.list_all(s.stub, pb, page_size=50)
    assert sorted(m.trace_id for m in got) == sorted(t["trace_id"] for t in good)
    assert set(totals) == {60}
    assert s.r.xpending(tp.STREAM, "monitor")["pending"] == 0
    entries = s.r.xrange(tp.DEAD_STREAM)
    assert len(entries) == n_bad
    reasons = [e[1][b"reason"].decode() for e in entries]
    expected = ["no 'trace' field", "not valid UTF-8", "not JSON", "not an object", "trace_id: missing",
                "trace_id: must be", "time_ms: must be a finite number", "total_ms: must be >= 0"]
    for reason, want in zip(reasons, expected):
        assert want in reason, (reason, want)
    assert entries[1][1][b"raw"] == tp.MALFORMED[1][tp.FIELD]  # the bytes as received
    assert entries[0][1][b"raw"] == b"other=no trace field\n"
    assert all(e[1][b"source_id"] and e[1][b"consumer"] for e in entries)
    assert s.health.Check(health_pb.HealthCheckRequest(service=SERVICE), timeout=5).status == 1


# ---- metrics derived from traces ----------------------------------------------------------------------

def test_prometheus_metrics_from_traces(make_stack):
    s = make_stack()
    traces = [tp.make_trace(i, seed=9, now_ms=now_ms()) for i in range(400)]
    tp.publish(s.r, traces)
    s.wait_total(400)
    ms = s.metrics()
    combos = {(t["model"], t["template_name"]) for t in traces}
    for model, tmpl in combos:
        ts = [t for t in traces if t["model"] == model and t["template_name"] == tmpl]
        lab = dict(model=model, template=tmpl)
        assert tp.metric(ms, "monitor_trace_requests_total", **lab) == len(ts)
        assert tp.metric(ms, "monitor_trace_errors_total", **lab) == sum(1 for t in ts if t["error"])
        assert tp.metric(ms, "monitor_trace_cache_hits_total", **lab) == sum(t["cache_hit"] for t in ts)
        assert tp.metric(ms, "monitor_trace_prompt_tokens_total", **lab) == sum(t["prompt_tokens"] for t in ts)
        assert tp.metric(ms, "monitor_trace_completion_tokens_total", **lab) == \
            sum(t["completion_tokens"] for t in ts)
        assert tp.metric(ms, "monitor_trace_cost_usd_total", **lab) == pytest.approx(sum(t["cost_usd"] for t in ts))
        assert tp.metric(ms, "monitor_trace_latency_seconds_count", **lab) == len(ts)
        assert tp.metric(ms, "monitor_trace_latency_seconds_sum", **lab) == \
            pytest.approx(sum(t["total_ms"] for t in ts) / 1000)
        assert tp.metric(ms, "monitor_trace_ttft_seconds_count", **lab) == sum(1 for t in ts if t["ttft_ms"] > 0)
        lat = np.array([t["total_ms"] / 1000 for t in ts])
        buckets = [(dict(k[1])["le"], v) for k, v in ms.items()
                   if k[0] == "monitor_trace_latency_seconds_bucket" and dict(k[1]).get("model") == model
                   and dict(k[1]).get("template") == tmpl]
        assert len(buckets) == 17
        for le, v in buckets:
            bound = float("inf") if le == "+Inf" else float(le)
            assert v == int((lat <= bound).sum()), le
    assert tp.metric(ms, "monitor_trace_stage_seconds_count", stage="generate") == 400
    tp.wait_for(lambda: tp.metric(s.metrics(), "monitor_store_traces") == 400, what="store gauge")
    ms = s.metrics()
    assert tp.metric(ms, "monitor_stream_length") == 400
    assert tp.metric(ms, "monitor_consumer_lag") == 0
    assert tp.metric(ms, "monitor_consumer_pending") == 0
    assert tp.metric(ms, "monitor_redis_up") == 1


# ---- retention --------------------------------------------------------------------------------------------

def test_retention_by_count_keeps_the_newest(make_stack):
    s = make_stack("--max-traces", "100", "--trim-interval", "100ms")
    traces = [tp.make_trace(i, seed=10, now_ms=now_ms()) for i in range(300)]
    tp.publish(s.r, traces)
    tp.wait_for(lambda: tp.metric(s.metrics(), "monitor_consumer_acked_total") == 300, what="all acked")
    s.wait_total(100)
    got, _ = tp.list_all(s.stub, pb, page_size=100)
    assert [m.trace_id for m in got] == [t["trace_id"] for t in reference(traces)[:100]]
    assert s.r.hlen("twin:monitor:summary") == 100
    assert len(s.r.keys("twin:monitor:trace:*")) == 100
    assert sum(s.r.zcard(f"twin:monitor:by_model:{m}") for m in tp.MODELS) == 100
    assert s.r.zcard("twin:monitor:errors") == sum(1 for t in reference(traces)[:100] if t["error"])
    assert tp.metric(s.metrics(), "monitor_store_trimmed_total") == 200
    st = s.stub.GetStats(pb.GetStatsRequest(window_ms=7200_000), timeout=10)
    assert st.overall.count == 100


def test_retention_by_age(make_stack):
    s = make_stack("--retention", "30m", "--trim-interval", "100ms")
    t0 = now_ms()
    traces = [tp.make_trace(i, seed=11, now_ms=t0, spread_ms=3600_000) for i in range(300)]
    tp.publish(s.r, traces)
    tp.wait_for(lambda: tp.metric(s.metrics(), "monitor_consumer_acked_total") == 300, what="all acked")
    cutoff = t0 - 1800_000
    keep = {t["trace_id"] for t in traces if t["time_ms"] > cutoff + 60_000}
    drop = {t["trace_id"] for t in traces if t["time_ms"] < cutoff}
    assert keep and drop
    got, _ = tp.list_all(s.stub, pb, page_size=200)
    ids = {m.trace_id for m in got}
    assert keep <= ids and not (drop & ids)
    ms = s.metrics()
    assert tp.metric(ms, "monitor_consumer_expired_total") + tp.metric(ms, "monitor_store_trimmed_total") >= len(drop)


# ---- Redis down ------------------------------------------------------------------------------------------

def health_status(stub):
    return stub.Check(health_pb.HealthCheckRequest(service=SERVICE), timeout=5).status


def test_redis_down_at_start_and_mid_run(make_stack):
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    m = tp.start_monitor(url)
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{m.port}")
        stub, health = pb_grpc.MonitorServiceStub(ch), health_grpc.HealthStub(ch)
        hp = m.extra_ports[0]
        assert health_status(health) == health_pb.HealthCheckResponse.NOT_SERVING
        status, body = tp.http_get(hp, "/healthz")
        assert status == 503 and b"redis" in body
        e = rpc_error(stub.ListTraces, pb.ListTracesRequest())
        assert e.code() == grpc.StatusCode.UNAVAILABLE
        time.sleep(1.0)
        assert m.proc.poll() is None
        redis = Redis(port)
        try:
            tp.wait_for(lambda: health_status(health) == 1, what="SERVING once redis is up")
            assert tp.http_get(hp, "/healthz")[0] == 200
            r = tp.client(url)
            first = [tp.make_trace(i, seed=12, now_ms=now_ms()) for i in range(20)]
            tp.publish(r, first)
            tp.wait_for(lambda: stub.ListTraces(pb.ListTracesRequest(), timeout=5).total == 20)
        finally:
            redis.stop()
        tp.wait_for(lambda: health_status(health) == 2, what="NOT_SERVING once redis is gone")
        assert tp.http_get(hp, "/healthz")[0] == 503
        e = rpc_error(stub.ListTraces, pb.ListTracesRequest())
        assert e.code() == grpc.StatusCode.UNAVAILABLE
        assert m.proc.poll() is None
        redis = Redis(port)  # a fresh, empty one
        try:
            tp.wait_for(lambda: health_status(health) == 1, what="SERVING again")
            r = tp.client(url)
            second = [tp.make_trace(i, seed=13, now_ms=now_ms()) for i in range(15)]
            tp.publish(r, second)
            tp.wait_for(lambda: stub.ListTraces(pb.ListTracesRequest(), timeout=5).total == 15)
            got, _ = tp.list_all(stub, pb)
            assert sorted(x.trace_id for x in got) == sorted(t["trace_id"] for t in second)
        finally:
            ch.close()
            assert m.stop() == 0, m.logs()
            redis.stop()
    finally:
        if m.proc.poll() is None:
            m.stop()
    assert m.sanitizer_reports() == [], m.logs()


# ---- flags ------------------------------------------------------------------------------------------------

def test_help_bad_flags_and_environment_twins(make_stack):
    out = subprocess.run([binary("monitor-svc"), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for env in ("REDIS_URL", "MONITOR_PORT", "MONITOR_HTTP_PORT", "MONITOR_STREAM", "MONITOR_DEAD_STREAM",
                "MONITOR_GROUP", "MONITOR_CONSUMER", "MONITOR_KEY_PREFIX", "MONITOR_BATCH", "MONITOR_CLAIM_IDLE",
                "MONITOR_MAX_DELIVERIES", "MONITOR_CONSUMER_EXPIRY", "MONITOR_RETENTION", "MONITOR_MAX_TRACES", "MONITOR_TRIM_INTERVAL",
                "MONITOR_REDIS_POOL", "MONITOR_MAX_SCAN", "MONITOR_WEB_DIR", "MONITOR_GRACE_PERIOD"):
        assert env in out.stdout, env
    for args, needle, code in ((["--batch", "0"], "--batch", 2), (["--retention", "soon"], "--retention", 2),
                               (["--redis-url", "http://x"], "redis", 2), (["--no-such-flag"], "no-such-flag", 2),
                               (["--web-dir", "/no/such/dir", "--port", "0", "--http-port", "0"], "/no/such/dir", 1)):
        bad = subprocess.run([binary("monitor-svc")] + args, capture_output=True, text=True, timeout=30)
        assert bad.returncode == code, (args, bad.stderr)
        assert needle in bad.stderr, (args, bad.stderr)
    env = {"MONITOR_GROUP": "envgroup", "MONITOR_CONSUMER": "envconsumer", "MONITOR_KEY_PREFIX": "envp:"}
    s = make_stack(env=env)
    tp.publish(s.r, [tp.make_trace(i, now_ms=now_ms()) for i in range(5)])
    s.wait_total(5)
    groups = [g["name"].decode() for g in s.r.xinfo_groups(tp.STREAM)]
    assert groups == ["envgroup"]
    consumers = [c["name"].decode() for c in s.r.xinfo_consumers(tp.STREAM, "envgroup")]
    assert consumers == ["envconsumer"]
    assert s.r.zcard("envp:by_time") == 5 and s.r.zcard("twin:monitor:by_time") == 0


# ---- the HTTP API and the dashboard's files -------------------------------------------------------------

def test_http_api_matches_grpc_and_web_files_are_local(make_stack):
    s = make_stack()
    traces = [tp.make_trace(i, seed=14, now_ms=now_ms()) for i in range(120)]
    tp.publish(s.r, traces)
    s.wait_total(120)
    status, body = tp.http_get(s.http, "/api/traces?page_size=25")
    assert status == 200
    js = json.loads(body)
    first = s.stub.ListTraces(pb.ListTracesRequest(page_size=25), timeout=10)
    assert [r["trace_id"] for r in js["traces"]] == [m.trace_id for m in first.traces]
    assert js["total"] == 120 and js["next_page_token"] == first.next_page_token
    status, body = tp.http_get(s.http, "/api/traces?page_size=25&page_token=" + js["next_page_token"])
    second = s.stub.ListTraces(pb.ListTracesRequest(page_size=25, page_token=first.next_page_token), timeout=10)
    assert [r["trace_id"] for r in json.loads(body)["traces"]] == [m.trace_id for m in second.traces]
    by_id = {t["trace_id"]: t for t in traces}
    row = js["traces"][0]
    t = by_id[row["trace_id"]]
    for k in ("time_ms", "model", "template_name", "template_version", "error", "total_ms", "ttft_ms",
              "prompt_tokens", "completion_tokens", "cache_hit"):
        assert row[k] == t[k], k
    assert row["cost_usd"] == pytest.approx(t["cost_usd"])
    assert row["n_sources"] == len(t["sources"])
    status, body = tp.http_get(s.http, f"/api/traces/{t['trace_id']}")
    assert status == 200 and json.loads(body) == t
    assert tp.http_get(s.http, "/api/traces/t-9-9999999")[0] == 404
    q = f"/api/traces?model={tp.MODELS[2]}&errors_only=1&page_size=1000"
    rows = json.loads(tp.http_get(s.http, q)[1])["traces"]
    assert [r["trace_id"] for r in rows] == \
        [t["trace_id"] for t in reference(traces, model=tp.MODELS[2], errors=True)]
    facets = json.loads(tp.http_get(s.http, "/api/facets")[1])
    assert facets["models"] == sorted({t["model"] for t in traces})
    assert facets["templates"] == sorted({t["template_name"] for t in traces})
    tp.wait_for(lambda: json.loads(tp.http_get(s.http, "/api/status")[1])["stored_traces"] == 120)
    st = json.loads(tp.http_get(s.http, "/api/status")[1])
    assert st["redis_up"] is True and st["lag"] == 0 and st["stream_length"] == 120 and st["group"] == "monitor"
    status, body = tp.http_get(s.http, "/")
    assert status == 200 and b"<html" in body.lower()
    web = os.path.join(os.environ.get("TWIN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                       "monitor-svc", "web")
    names = sorted(os.listdir(web))
    assert "index.html" in names
    for n in names:
        assert tp.http_get(s.http, "/" + n)[0] == 200, n
        text = open(os.path.join(web, n), encoding="utf-8").read()
        # everything local: nothing loaded from another origin (an XML namespace is not a load)
        remote = re.findall(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|"""
                            r"""(?:fetch|import)\s*\(?\s*["'`](?:https?:)?//|@import""", text)
        assert remote == [], (n, remote)
