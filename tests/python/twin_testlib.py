"""Shared helpers for Twin's Python tests: generated gRPC stubs for proto/, locating the built
programs, starting a service and waiting until it serves, free ports, and a real redis-server.
The stubs are generated with grpc_tools.protoc into the build tree on first use."""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

SOURCE_DIR = os.environ.get("TWIN_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("TWIN_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
BIN_DIR = os.environ.get("TWIN_BIN_DIR") or os.path.join(BUILD_DIR, "bin")
PROTO_DIR = os.path.join(SOURCE_DIR, "proto")

_stub_dir = None


def _generate_stubs():
    global _stub_dir
    if _stub_dir:
        return _stub_dir
    out = os.path.join(BUILD_DIR, "py")
    os.makedirs(out, exist_ok=True)
    protos = sorted(p for p in os.listdir(PROTO_DIR) if p.endswith(".proto"))
    stamp = os.path.join(out, ".stamp")
    newest = max(os.path.getmtime(os.path.join(PROTO_DIR, p)) for p in protos)
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < newest:
        from grpc_tools import protoc
        import grpc_tools
        inc = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        # Generate into a private dir then move, so parallel test processes never see half files.
        tmp = tempfile.mkdtemp(dir=out)
        rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{inc}", f"--python_out={tmp}",
                          f"--grpc_python_out={tmp}"] + [os.path.join(PROTO_DIR, p) for p in protos])
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({rc})")
        for f in os.listdir(tmp):
            os.replace(os.path.join(tmp, f), os.path.join(out, f))
        os.rmdir(tmp)
        with open(stamp, "w") as f:
            f.write("ok\n")
    sys.path.insert(0, out)
    _stub_dir = out
    return out


def stubs(name):
    """stubs("llm") -> (llm_pb2, llm_pb2_grpc)."""
    _generate_stubs()
    import importlib
    return importlib.import_module(f"{name}_pb2"), importlib.import_module(f"{name}_pb2_grpc")


def binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is not built")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose stderr goes to a log file; stop() sends SIGTERM and waits."""

    def __init__(self, args, env=None, ready=None, timeout=30.0, name=None):
        self.name = name or os.path.basename(args[0])
        self.log_path = tempfile.mktemp(prefix=f"{self.name}-", suffix=".log")
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env=full_env)
        self.port = None
        self.extra_ports = []
        if ready:
            self._wait_ready(ready, timeout)

    def _wait_ready(self, pattern, timeout):
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited early (rc={self.proc.wait()}):\n{self.logs()}")
            m = rx.search(line.decode(errors="replace"))
            if m:
                if m.groups():
                    self.port = int(m.group(1))
                    self.extra_ports = [int(g) for g in m.groups()[1:]]
                return
        raise TimeoutError(f"{self.name} not ready in {timeout}s:\n{self.logs()}")

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def sanitizer_reports(self):
        text = self.logs()
        return [l for l in text.splitlines()
                if "ERROR: AddressSanitizer" in l or "ERROR: LeakSanitizer" in l
                or "runtime error:" in l]


def wait_port(port, timeout=30.0, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not open after {timeout}s")


class Redis:
    """A real redis-server on a free loopback port, no persistence."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = Process(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], name="redis")
        wait_port(self.port)
        self.url = f"redis://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.stop()
