#!/usr/bin/env python3
"""tests/bench/bench_cpu_forward.py — the CPU backend on a model of Llama-3.2-1B's shape
(dim 2048, 16 layers, 32 heads, 8 kv heads, head_dim 64, intermediate 8192, vocab 128256, tied
embeddings, llama3 rope scaling) with random bf16 weights: writes the model once under /tmp (or
--dir), then runs build/bin/bench-cpu-forward, which prints load time, prefill tokens/s (a
--prompt-token prompt), decode tokens/s (batch --batch, --decode steps) and peak RSS.

Usage: python3 tests/bench/bench_cpu_forward.py [--dir DIR] [--bin-dir build/bin]
       [--prompt 128] [--decode 32] [--batch 1] [--threads N]
Bounded: writing the model takes ~1 minute, the run well under two on 2 cores.

The OpenBLAS kernel set matters for prefill: --blas-core NAME sets OPENBLAS_CORETYPE (e.g.
SkylakeX, Cooperlake, Haswell) for the run; by default the environment's choice is kept, and the
script prints which one is in effect.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TWIN_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "models"))
import make_tiny_model  # noqa: E402

LLAMA_32_1B = dict(arch="llama", dtype="bf16", dim=2048, layers=16, heads=32, kv_heads=8,
                   head_dim=64, vocab=128256, intermediate=8192, max_pos=131072,
                   rope_theta=500000.0, rope_llama3=True, rope_factor=32.0, rope_low=1.0,
                   rope_high=4.0, rope_original_max=8192, tied=True, norm_eps=1e-5, seed=1)


def ensure_model(model_dir):
    """Writes the model unless model_dir already holds one of this shape."""
    config_path = os.path.join(model_dir, "config.json")
    if os.path.exists(config_path) and os.path.exists(os.path.join(model_dir,
                                                                   "model.safetensors")):
        with open(config_path) as f:
            cfg = json.load(f)
        if (cfg.get("hidden_size"), cfg.get("num_hidden_layers"), cfg.get("vocab_size"),
                cfg.get("torch_dtype")) == (2048, 16, 128256, "bfloat16"):
            print(f"using the model in {model_dir}", flush=True)
            return
    print(f"writing a random Llama-3.2-1B-shaped bf16 model to {model_dir} ...", flush=True)
    t = time.time()
    make_tiny_model.make_model(model_dir, **LLAMA_32_1B)
    print(f"  written in {time.time() - t:.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/tmp/twin-bench-llama-3.2-1b-bf16")
    ap.add_argument("--bin-dir", default=os.environ.get("TWIN_BIN_DIR",
                                                        os.path.join(SOURCE_DIR, "build", "bin")))
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--blas-core", default="",
                    help="OPENBLAS_CORETYPE for the run (default: keep the environment's)")
    a = ap.parse_args()
    env = dict(os.environ)
    if a.blas_core:
        env["OPENBLAS_CORETYPE"] = a.blas_core
    print(f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset: OpenBLAS detects the CPU)')}", flush=True)
    ensure_model(a.dir)
    cmd = [os.path.join(a.bin_dir, "bench-cpu-forward"), "--model", a.dir,
           "--prompt", str(a.prompt), "--decode", str(a.decode), "--batch", str(a.batch)]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    print(" ".join(cmd), flush=True)
    return subprocess.run(cmd, timeout=900, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
