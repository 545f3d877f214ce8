"""The same runtime behaviours through our own C client (rpc-testc) against rpc-testd: health,
UNIMPLEMENTED, 10,000 messages in order, coalesced streams, cancel latency, deadlines, SIGTERM
during a stream, and round-robin over several addresses."""
import signal
import subprocess
import time

import pytest

from twin_testlib import Process, binary


def run_testc(target, *args, timeout=120):
    out = subprocess.run([binary("rpc-testc"), target, *map(str, args)], capture_output=True,
                         timeout=timeout, text=True)
    assert out.returncode == 0, out.stderr
    fields = dict(kv.split("=", 1) for kv in out.stdout.split())
    return fields, out


def server(*extra, grace_ms=5000, name="a"):
    return Process([binary("rpc-testd"), "--grace-ms", str(grace_ms), "--name", name, *extra],
                   ready=r"PORT=(\d+)")


@pytest.fixture
def srv():
    p = server("--port", "0")
    yield p
    assert p.stop() == 0, p.logs()
    assert p.sanitizer_reports() == [], p.logs()


def check_clean(out):
    bad = [l for l in out.stderr.splitlines() if "Sanitizer" in l or "runtime error" in l]
    assert bad == [], out.stderr


def test_health(srv):
    f, out = run_testc(f"127.0.0.1:{srv.port}", "health", "twin.test.v1.TestService")
    assert f == {"code": "OK", "serving": "1"}
    f, _ = run_testc(f"127.0.0.1:{srv.port}", "health", "nope")
    assert f["code"] == "NOT_FOUND"
    check_clean(out)


def test_unknown_method(srv):
    f, _ = run_testc(f"dns:///127.0.0.1:{srv.port}", "unknown")
    assert f["code"] == "UNIMPLEMENTED"


def test_count_10000_in_order(srv):
    f, out = run_testc(f"127.0.0.1:{srv.port}", "count", 10000)
    assert f == {"received": "10000", "messages": "10000", "in_order": "1", "code": "OK"}
    check_clean(out)


def test_merged_in_order(srv):
    f, _ = run_testc(f"127.0.0.1:{srv.port}", "merged", 20000)
    assert f["received"] == "20000" and f["in_order"] == "1" and f["code"] == "OK"
    assert 1 <= int(f["messages"]) <= 20000


def test_cancel_latency(srv):
    for _ in range(3):
        f, out = run_testc(f"127.0.0.1:{srv.port}", "cancel")
        assert f["code"] == "CANCELLED"
        assert 0 <= float(f["latency_ms"]) < 50, f
    check_clean(out)


def test_deadline(srv):
    f, _ = run_testc(f"127.0.0.1:{srv.port}", "deadline", 200)
    assert f["code"] == "DEADLINE_EXCEEDED"
    assert float(f["elapsed_ms"]) < 2000


def test_sigterm_lets_stream_finish():
    p = server("--port", "0")
    try:
        c = subprocess.Popen([binary("rpc-testc"), f"127.0.0.1:{p.port}", "count", "60", "20000"],
                             stdout=subprocess.PIPE, text=True)
        time.sleep(0.2)
        p.send(signal.SIGTERM)
        stdout, _ = c.communicate(timeout=30)
        f = dict(kv.split("=", 1) for kv in stdout.split())
        assert f["received"] == "60" and f["in_order"] == "1" and f["code"] == "OK", stdout
        assert p.proc.wait(10) == 0
    finally:
        p.stop()
    assert p.sanitizer_reports() == [], p.logs()


def test_round_robin_over_addresses():
    # Two servers on the same port of two loopback addresses; the ipv4: target lists both, and
    # the channel's round_robin policy alternates between them once both are connected.
    from twin_testlib import free_port
    port = free_port()
    a = server("--listen", f"127.0.0.1:{port}", name="a")
    b = server("--listen", f"127.0.0.2:{port}", name="b")
    try:
        f, _ = run_testc(f"ipv4:127.0.0.1:{port},127.0.0.2:{port}", "whoami", 20)
        names = f["servers"].split(",")
        assert len(names) == 20 and set(names) == {"a", "b"}, names
        # round_robin picks among the READY subchannels: the calls before the second connection
        # is up all go to the first; from the first call of the second on, the two alternate
        both = names.index("b" if names[0] == "a" else "a")
        rest = names[both:]
        assert abs(rest.count("a") - rest.count("b")) <= 1, names
    finally:
        assert a.stop() == 0 and b.stop() == 0
