"""Each service process starts, announces its ports, answers grpc.health.v1 for the server and
for its own service name, serves /metrics and /healthz, answers UNIMPLEMENTED for unknown
methods, and exits 0 on SIGTERM with no sanitizer report."""
import signal
import urllib.request

import grpc
import pytest

from twin_testlib import Process, Redis, binary, stubs
from tiny_models import tiny_model_dir

SERVICES = {
    "business-svc": "twin.business.v1.TwinService",
    "monitor-svc": "twin.monitor.v1.MonitorService",
    "llm-svc": "twin.llm.v1.LlmService",
}


def start(name, tmp_path_factory, redis):
    args = [binary(name), "--host", "127.0.0.1", "--port", "0", "--http-port", "0"]
    if name in ("business-svc", "monitor-svc"):
        args += ["--redis-url", redis.url]
    if name == "llm-svc":
        args += ["--model", tiny_model_dir(tmp_path_factory), "--backend", "cpu", "--kv-cache", "16M"]
    return Process(args, ready=r"LISTENING grpc=(\d+) http=(\d+)", name=name)


@pytest.fixture(scope="module")
def redis():
    r = Redis()
    yield r
    r.stop()


@pytest.fixture(params=sorted(SERVICES))
def service(request, tmp_path_factory, redis):
    p = start(request.param, tmp_path_factory, redis)
    yield request.param, p
    assert p.stop() == 0, p.logs()
    assert p.sanitizer_reports() == [], p.logs()


def wait_serving(port, name, timeout=60):
    health_pb2, health_grpc = stubs("health")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        h = health_grpc.HealthStub(ch)
        stream = h.Watch(health_pb2.HealthCheckRequest(service=name), timeout=timeout)
        for r in stream:
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                stream.cancel()
                return
    raise AssertionError(f"{name} never became SERVING")


def test_health_metrics_unknown_and_sigterm(service):
    name, p = service
    svc = SERVICES[name]
    wait_serving(p.port, svc)
    health_pb2, health_grpc = stubs("health")
    with grpc.insecure_channel(f"127.0.0.1:{p.port}") as ch:
        h = health_grpc.HealthStub(ch)
        assert h.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == 1
        assert h.Check(health_pb2.HealthCheckRequest(service=svc), timeout=5).status == 1
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(f"/{svc}/NoSuchMethod")(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    hp = p.extra_ports[0]
    body = urllib.request.urlopen(f"http://127.0.0.1:{hp}/healthz", timeout=5).read()
    assert body.strip() == b"ok"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{hp}/metrics", timeout=5).read().decode()
    assert "# TYPE process_uptime_seconds gauge" in metrics
    p.send(signal.SIGTERM)
    assert p.proc.wait(30) == 0, p.logs()
