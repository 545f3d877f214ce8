"""monitor-svc replicas and crashes, with a real redis-server and a producer publishing while
they run: a monitor killed with SIGKILL mid-stream and restarted, two replicas consuming the
same group at once, and one of two replicas killed mid-stream; in each case every published
trace appears exactly once through the gRPC API and nothing stays pending. Entries left pending
by a consumer that died are claimed after the idle time (XAUTOCLAIM); entries delivered too many
times are dead-lettered; consumers idle with nothing pending are forgotten."""
import os
import signal
import sys
import threading
import time

import grpc
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
import trace_producer as tp  # noqa: E402
from twin_testlib import Redis, stubs  # noqa: E402

pb, pb_grpc = stubs("monitor")
FAST_CLAIM = ("--claim-idle", "1s", "--claim-interval", "200ms", "--batch", "64")


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.stop()


class Producer(threading.Thread):
    """Publishes traces in small chunks at about `rate` per second."""

    def __init__(self, url, traces, rate=2000, chunk=20):
        super().__init__(daemon=True)
        self.r = tp.client(url)
        self.traces, self.rate, self.chunk = traces, rate, chunk
        self.published = 0
        self.error = None

    def run(self):
        try:
            t0 = time.time()
            for k in range(0, len(self.traces), self.chunk):
                wait = t0 + k / self.rate - time.time()
                if wait > 0:
                    time.sleep(wait)
                tp.publish(self.r, self.traces[k:k + self.chunk])
                self.published = k + len(self.traces[k:k + self.chunk])
        except Exception as e:  # surfaced by the test
            self.error = e


def stub_for(m):
    ch = grpc.insecure_channel(f"127.0.0.1:{m.port}")
    return ch, pb_grpc.MonitorServiceStub(ch)


def total(stub):
    return stub.ListTraces(pb.ListTracesRequest(page_size=1), timeout=10).total


def stored(m):
    return tp.metric(tp.metrics(m.extra_ports[0]), "monitor_consumer_traces_stored_total")


def assert_exactly_once(stub, traces):
    got, totals = tp.list_all(stub, pb, page_size=500)
    ids = [x.trace_id for x in got]
    assert len(ids) == len(set(ids)), "a trace listed twice"
    assert set(ids) == {t["trace_id"] for t in traces}
    assert set(totals) == {len(traces)}


def stop_ok(m):
    rc = m.stop()
    assert rc == 0, m.logs()
    assert m.sanitizer_reports() == [], m.logs()


def test_sigkill_mid_stream_then_restart(redis):
    traces = [tp.make_trace(i, seed=30, now_ms=int(time.time() * 1000)) for i in range(4000)]
    prod = Producer(redis.url, traces, rate=1500)
    m1 = tp.start_monitor(redis.url, *FAST_CLAIM)
    prod.start()
    tp.wait_for(lambda: stored(m1) >= 800, what="the first monitor storing")
    m1.send(signal.SIGKILL)
    assert m1.proc.wait(10) == -signal.SIGKILL
    m1.stop()
    killed_at = prod.published
    assert killed_at < len(traces), "the producer finished before the kill; slow it down"
    left_pending = tp.client(redis.url).xpending(tp.STREAM, "monitor")["pending"]
    m2 = tp.start_monitor(redis.url, *FAST_CLAIM)
    ch, stub = stub_for(m2)
    try:
        prod.join(60)
        assert prod.error is None and prod.published == len(traces)
        tp.wait_for(lambda: total(stub) == len(traces), timeout=60, what="every trace stored")
        tp.wait_for(lambda: tp.client(redis.url).xpending(tp.STREAM, "monitor")["pending"] == 0,
                    what="nothing pending")
        assert_exactly_once(stub, traces)
        # what the killed consumer held was claimed by the new one
        claimed = tp.metric(tp.metrics(m2.extra_ports[0]), "monitor_consumer_claimed_total")
        assert claimed >= left_pending
        print(f"killed after {killed_at} published; {left_pending} pending at the kill; {claimed} claimed")
    finally:
        ch.close()
        stop_ok(m2)


def test_dead_consumers_pending_entries_are_claimed(redis):
    r = tp.client(redis.url)
    r.xgroup_create(tp.STREAM, "monitor", id="0", mkstream=True)
    traces = [tp.make_trace(i, seed=31, now_ms=int(time.time() * 1000)) for i in range(100)]
    tp.publish(r, traces)
    # a consumer that read 40 entries and died before acknowledging them
    got = r.xreadgroup("monitor", "ghost", {tp.STREAM: ">"}, count=40)
    assert len(got[0][1]) == 40
    m = tp.start_monitor(redis.url, "--claim-idle", "500ms", "--claim-interval", "200ms")
    ch, stub = stub_for(m)
    try:
        tp.wait_for(lambda: total(stub) == 100, what="every trace stored")
        assert_exactly_once(stub, traces)
        tp.wait_for(lambda: r.xpending(tp.STREAM, "monitor")["pending"] == 0, what="nothing pending")
        assert tp.metric(tp.metrics(m.extra_ports[0]), "monitor_consumer_claimed_total") == 40
    finally:
        ch.close()
        stop_ok(m)


def test_entries_delivered_too_often_are_dead_lettered(redis):
    r = tp.client(redis.url)
    r.xgroup_create(tp.STREAM, "monitor", id="0", mkstream=True)
    traces = [tp.make_trace(i, seed=32, now_ms=int(time.time() * 1000)) for i in range(10)]
    ids = tp.publish(r, traces)
    r.xreadgroup("monitor", "ghost", {tp.STREAM: ">"}, count=3)        # delivery 1
    for _ in range(2):                                                 # deliveries 2 and 3
        r.xclaim(tp.STREAM, "monitor", "ghost2", 0, ids[:3])
    m = tp.start_monitor(redis.url, "--claim-idle", "200ms", "--claim-interval", "200ms", "--max-deliveries", "3")
    ch, stub = stub_for(m)
    try:
        tp.wait_for(lambda: total(stub) == 7, what="the other traces stored")
        tp.wait_for(lambda: r.xlen(tp.DEAD_STREAM) == 3, what="3 dead-lettered")
        dead = r.xrange(tp.DEAD_STREAM)
        assert sorted(e[1][b"source_id"].decode() for e in dead) == sorted(ids[:3])
        assert all(b"delivered 4 times" in e[1][b"reason"] for e in dead)
        ms = tp.metrics(m.extra_ports[0])
        assert tp.metric(ms, "monitor_consumer_dead_lettered_total", reason="undeliverable") == 3
        got, _ = tp.list_all(stub, pb)
        assert {x.trace_id for x in got} == {t["trace_id"] for t in traces[3:]}
        tp.wait_for(lambda: r.xpending(tp.STREAM, "monitor")["pending"] == 0, what="nothing pending")
    finally:
        ch.close()
        stop_ok(m)


def test_two_replicas_share_the_stream(redis):
    traces = [tp.make_trace(i, seed=33, now_ms=int(time.time() * 1000)) for i in range(5000)]
    a = tp.start_monitor(redis.url, *FAST_CLAIM, name="monitor-a")
    b = tp.start_monitor(redis.url, *FAST_CLAIM, name="monitor-b")
    ch_a, stub_a = stub_for(a)
    ch_b, stub_b = stub_for(b)
    try:
        prod = Producer(redis.url, traces, rate=2500)
        prod.start()
        prod.join(60)
        assert prod.error is None
        tp.wait_for(lambda: stored(a) + stored(b) == len(traces), timeout=60, what="every trace stored")
        assert stored(a) > 0 and stored(b) > 0, "both replicas consume"
        assert_exactly_once(stub_a, traces)
        assert_exactly_once(stub_b, traces)
        dups = sum(tp.metric(tp.metrics(m.extra_ports[0]), "monitor_consumer_duplicates_total") for m in (a, b))
        assert dups == 0
        # the trace-derived counters of the two replicas add up to the whole
        req = sum(v for m in (a, b) for k, v in tp.metrics(m.extra_ports[0]).items()
                  if k[0] == "monitor_trace_requests_total")
        assert req == len(traces)
        assert tp.client(redis.url).xpending(tp.STREAM, "monitor")["pending"] == 0
    finally:
        ch_a.close()
        ch_b.close()
        stop_ok(a)
        stop_ok(b)


def test_one_of_two_replicas_killed_mid_stream(redis):
    traces = [tp.make_trace(i, seed=34, now_ms=int(time.time() * 1000)) for i in range(4000)]
    a = tp.start_monitor(redis.url, *FAST_CLAIM, name="monitor-a")
    b = tp.start_monitor(redis.url, *FAST_CLAIM, name="monitor-b")
    ch, stub = stub_for(b)
    try:
        prod = Producer(redis.url, traces, rate=1500)
        prod.start()
        tp.wait_for(lambda: stored(a) >= 400, what="replica a storing")
        a.send(signal.SIGKILL)
        assert a.proc.wait(10) == -signal.SIGKILL
        a.stop()
        prod.join(60)
        assert prod.error is None and prod.published == len(traces)
        tp.wait_for(lambda: total(stub) == len(traces), timeout=60, what="every trace stored")
        tp.wait_for(lambda: tp.client(redis.url).xpending(tp.STREAM, "monitor")["pending"] == 0,
                    what="nothing pending")
        assert_exactly_once(stub, traces)
    finally:
        ch.close()
        stop_ok(b)


def test_idle_consumers_with_nothing_pending_are_forgotten(redis):
    r = tp.client(redis.url)
    r.xgroup_create(tp.STREAM, "monitor", id="0", mkstream=True)
    r.xgroup_createconsumer(tp.STREAM, "monitor", "old-replica")      # restarted under a new name
    tp.publish(r, [tp.make_trace(i, seed=35, now_ms=int(time.time() * 1000)) for i in range(5)])
    r.xreadgroup("monitor", "holder", {tp.STREAM: ">"}, count=5)        # dead, holding 5 entries
    m = tp.start_monitor(redis.url, "--consumer", "live", "--consumer-expiry", "300ms",
                         "--claim-interval", "200ms", "--claim-idle", "1h")
    try:
        names = lambda: sorted(c["name"].decode() for c in r.xinfo_consumers(tp.STREAM, "monitor"))  # noqa: E731
        tp.wait_for(lambda: names() == ["holder", "live"], what="old-replica forgotten")
        time.sleep(1.0)
        assert names() == ["holder", "live"]   # one holding entries stays until they are claimed
    finally:
        stop_ok(m)
