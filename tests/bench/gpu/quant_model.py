#!/usr/bin/env python3
"""tests/bench/gpu/quant_model.py — a GGUF file of a benchmark shape (tests/gpu/hf_models.py; one
safetensors file, so the Llama-3.2-1B shape) with its matrices in one block format, for timing
the CUDA backend's quantized decode path with engine-bench. The weights are the shape's random
bf16 model (made with transformers when absent), quantized by tests/models/make_tiny_gguf.py;
the tokenizer is a small trained one (engine-bench feeds token ids), so the configuration's
bos/eos ids are moved into its range.
Usage: python3 tests/bench/gpu/quant_model.py SHAPE TYPE OUT.gguf [--work /tmp/twin-models]
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(ROOT, "tests", "gpu"))
sys.path.insert(0, os.path.join(ROOT, "tests", "models"))
import hf_models  # noqa: E402
import make_tiny_gguf  # noqa: E402
import make_tiny_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shape", choices=sorted(hf_models.SHAPES))
    ap.add_argument("type", choices=sorted(make_tiny_gguf.GGML_TYPES))
    ap.add_argument("out")
    ap.add_argument("--work", default="/tmp/twin-models")
    a = ap.parse_args()
    t0 = time.time()
    model_dir = os.path.join(a.work, a.shape)
    if not hf_models.model_is_current(a.shape, model_dir):
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
        hf_models.save_model(hf_models.build_model(a.shape, device), model_dir)
    if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        raise SystemExit("quant_model.py: %s is sharded; only single-file shapes are supported"
                         % a.shape)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        cfg["bos_token_id"], cfg["eos_token_id"] = 0, 1
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f)
        os.symlink(os.path.join(model_dir, "model.safetensors"),
                   os.path.join(tmp, "model.safetensors"))
        make_tiny_model.write_tokenizer(tmp, "llama", 1024, cfg["max_position_embeddings"])
        make_tiny_gguf.convert(tmp, a.out, a.type,
                               extra_kv=[("llama.vocab_size", make_tiny_gguf.U32,
                                          cfg["vocab_size"])])
    print("%s: %s %s, %.2f GB, %.1f s" % (a.out, a.shape, a.type, os.path.getsize(a.out) / 1e9,
                                         time.time() - t0))


if __name__ == "__main__":
    main()
