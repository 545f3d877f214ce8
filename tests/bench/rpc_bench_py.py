"""Loopback figures for the gRPC runtime with Python grpcio against rpc-testd: streamed messages
per second and unary round-trip latency p50/p99. Usage: rpc_bench_py.py TARGET [STREAM_N] [UNARY_N]"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import grpc  # noqa: E402
from twin_testlib import stubs  # noqa: E402


def main():
    target = sys.argv[1]
    stream_n = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    unary_n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    pb, pbg = stubs("test")
    with grpc.insecure_channel(target) as ch:
        stub = pbg.TestServiceStub(ch)
        for rnd in range(2):
            t0 = time.perf_counter()
            n = sum(1 for _ in stub.Count(pb.CountRequest(n=stream_n, payload=32), timeout=300))
            dt = time.perf_counter() - t0
            if rnd == 1:
                print(f"grpcio stream: {n} messages in {dt:.3f} s = {n / dt:.0f} msg/s")
        lat = []
        for i in range(unary_n + 200):
            t0 = time.perf_counter()
            stub.Echo(pb.EchoRequest(text="ping"), timeout=5)
            if i >= 200:
                lat.append((time.perf_counter() - t0) * 1e6)
        lat.sort()
        print(f"grpcio unary: {unary_n} calls, p50 {lat[len(lat) // 2]:.0f} us, "
              f"p99 {lat[int(len(lat) * 0.99)]:.0f} us")


if __name__ == "__main__":
    main()
