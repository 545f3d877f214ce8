"""The gRPC runtime (common/rpc) driven by Python grpcio against rpc-testd: health, unknown
methods, a 10,000-message stream in order, coalesced streams, cancel latency, deadlines, and a
graceful SIGTERM during a stream. Sanitizer builds must log no reports."""
import signal
import threading
import time

import grpc
import pytest

from twin_testlib import Process, binary

test_pb2, test_grpc = None, None
health_pb2, health_grpc = None, None


@pytest.fixture(scope="module", autouse=True)
def _stubs():
    global test_pb2, test_grpc, health_pb2, health_grpc
    from twin_testlib import stubs
    test_pb2, test_grpc = stubs("test")
    health_pb2, health_grpc = stubs("health")


def start_server(grace_ms=5000):
    return Process([binary("rpc-testd"), "--port", "0", "--grace-ms", str(grace_ms)],
                   ready=r"PORT=(\d+)")


@pytest.fixture
def server():
    p = start_server()
    yield p
    rc = p.stop()
    assert rc == 0, p.logs()
    assert p.sanitizer_reports() == [], p.logs()


def channel(port):
    return grpc.insecure_channel(f"127.0.0.1:{port}")


def test_health_check(server):
    with channel(server.port) as ch:
        h = health_grpc.HealthStub(ch)
        assert h.Check(health_pb2.HealthCheckRequest(service="")).status == 1
        r = h.Check(health_pb2.HealthCheckRequest(service="twin.test.v1.TestService"))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            h.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_streams_current_status(server):
    with channel(server.port) as ch:
        h = health_grpc.HealthStub(ch)
        stream = h.Watch(health_pb2.HealthCheckRequest(service="twin.test.v1.TestService"))
        first = next(stream)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stream.cancel()


def test_unknown_method_is_unimplemented(server):
    with channel(server.port) as ch:
        call = ch.unary_unary("/twin.test.v1.TestService/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        call = ch.unary_unary("/no.such.Service/Method")
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_echo_and_malformed_request(server):
    with channel(server.port) as ch:
        stub = test_grpc.TestServiceStub(ch)
        assert stub.Echo(test_pb2.EchoRequest(text="héllo"), timeout=5).text == "héllo"
        raw = ch.unary_unary("/twin.test.v1.TestService/Echo")
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff", timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_stream_10000_messages_in_order(server):
    with channel(server.port) as ch:
        stub = test_grpc.TestServiceStub(ch)
        seqs = [m.seq for m in stub.Count(test_pb2.CountRequest(n=10000, payload=16), timeout=60)]
        assert seqs == list(range(10000))


def test_coalesced_stream_keeps_order(server):
    with channel(server.port) as ch:
        stub = test_grpc.TestServiceStub(ch)
        msgs = list(stub.CountMerged(test_pb2.CountRequest(n=20000), timeout=60))
        seqs = [s for m in msgs for s in m.seqs]
        assert seqs == list(range(20000))
        assert 1 <= len(msgs) <= 20000


def test_client_cancel_reaches_handler_within_50ms(server):
    with channel(server.port) as ch:
        stub = test_grpc.TestServiceStub(ch)
        latencies = []
        for _ in range(5):
            stream = stub.Count(test_pb2.CountRequest(n=1000000, interval_us=1000), timeout=30)
            for i, _m in enumerate(stream):
                if i == 20:
                    break
            t_cancel = time.time()
            stream.cancel()
            # The handler records the wall-clock time its cancel hook ran.
            deadline = time.time() + 2
            while True:
                rep = stub.LastCancel(test_pb2.EchoRequest(), timeout=5)
                if rep.seen and rep.seen_unix_us / 1e6 >= t_cancel - 0.001:
                    break
                assert time.time() < deadline, "handler never saw the cancel"
                time.sleep(0.005)
            latencies.append(rep.seen_unix_us / 1e6 - t_cancel)
        assert max(latencies) < 0.050, latencies


def test_deadline_exceeded(server):
    with channel(server.port) as ch:
        stub = test_grpc.TestServiceStub(ch)
        t0 = time.time()
        with pytest.raises(grpc.RpcError) as e:
            stub.Sleep(test_pb2.SleepRequest(ms=3000), timeout=0.2)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.time() - t0 < 2.0
        # A stream with a deadline ends with DEADLINE_EXCEEDED too.
        with pytest.raises(grpc.RpcError) as e:
            for _ in stub.Count(test_pb2.CountRequest(n=100000, interval_us=1000), timeout=0.3):
                pass
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_many_concurrent_streams(server):
    with channel(server.port) as ch:
        stub = test_grpc.TestServiceStub(ch)
        results = {}

        def run(k):
            results[k] = [m.seq for m in stub.Count(test_pb2.CountRequest(n=500, interval_us=100), timeout=60)]

        threads = [threading.Thread(target=run, args=(k,)) for k in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(results[k] == list(range(500)) for k in range(32))


def test_sigterm_lets_stream_finish_then_exits_0():
    p = start_server(grace_ms=5000)
    try:
        with channel(p.port) as ch:
            stub = test_grpc.TestServiceStub(ch)
            # 60 messages, 20 ms apart: ~1.2 s, well inside the 5 s grace period.
            stream = stub.Count(test_pb2.CountRequest(n=60, interval_us=20000), timeout=30)
            got = []
            for m in stream:
                got.append(m.seq)
                if len(got) == 5:
                    p.send(signal.SIGTERM)
            assert got == list(range(60))
            assert stream.code() == grpc.StatusCode.OK
            # New calls are refused once shutdown began.
            with pytest.raises(grpc.RpcError):
                stub.Echo(test_pb2.EchoRequest(text="late"), timeout=2)
        assert p.proc.wait(10) == 0
    finally:
        p.stop()
    assert p.sanitizer_reports() == [], p.logs()


def test_sigterm_cancels_stream_after_grace_period():
    p = start_server(grace_ms=300)
    try:
        with channel(p.port) as ch:
            stub = test_grpc.TestServiceStub(ch)
            stream = stub.Count(test_pb2.CountRequest(n=100000, interval_us=10000), timeout=30)
            next(stream)
            t0 = time.time()
            p.send(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as e:
                for _ in stream:
                    pass
            assert e.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
            assert p.proc.wait(10) == 0
            assert time.time() - t0 < 5
    finally:
        p.stop()
    assert p.sanitizer_reports() == [], p.logs()
