#!/usr/bin/env python3
"""tests/gpu/quant_check.py — the CUDA backend on GGUF block-quantized weights, end to end on the
GPU machine. For each case, a random Llama model (tests/models/make_tiny_model.py) is written as
GGUF with its matrices in one block format (once with a tied embedding, which the LM head then
reads in its block format), or in a mix like the GGUF tools' Q4_K_M (q4_k with
v_proj, down_proj and the LM head in q6_k, gate and up in different formats so they cannot be
fused, o_proj in f16), by tests/models/make_tiny_gguf.py, which also returns the weights exactly
as the file stores them (dequantized, Hugging Face order). The reference is Hugging Face
transformers in fp32 on those dequantized weights, so the only differences left are the
backend's own roundings (bf16 activations, and for prefill the weights dequantized to bf16).

forward-dump (tests/gpu/forward_dump.c) runs the GGUF file on the CUDA backend over two batches:
4 prompts (prefill through dequantize + cuBLAS, decode through the dequantizing GEMV) and 12
prompts with 32-token chunks (decode rows padded to 16: dequantize + cuBLAS again). Checks, per
case: logits of every prompt and generated position against transformers (relative L2 per row,
max and overall); greedy tokens = the reference argmax but at near-ties; the prompts shared by
both batches give the same tokens (near-ties aside); our CPU backend on the same file agrees.

Usage (GPU machine, repository root; programs as twin_programs.py finds them):
  BIN_DIR=<dir with forward-dump> python3 tests/gpu/quant_check.py [--work DIR] [--steps 32]
Prints one table; exits 1 when a check fails.
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "models"))
import e2e_check as e2e  # noqa: E402
import make_tiny_gguf  # noqa: E402
import make_tiny_model  # noqa: E402
from twin_programs import find_program  # noqa: E402

# relative L2 of logits rows against transformers fp32 on the dequantized weights (max row, all)
TOL_CUDA = (2e-2, 1e-2)
# the CPU backend quantizes its activations to int8 blocks for these formats
TOL_CPU = (6e-2, 3e-2)

HD64 = dict(dim=512, heads=8, kv_heads=2, intermediate=1536, layers=3, vocab=1024)
HD128 = dict(dim=1024, heads=8, kv_heads=2, intermediate=2816, layers=2, vocab=2048)


def q4_k_m(name):
    """A Q4_K_M-like mix, with gate and up in different formats and o_proj in f16."""
    if ".v_proj." in name or ".down_proj." in name or name == "lm_head.weight":
        return "q6_k"
    if ".up_proj." in name:
        return "q5_k"
    if ".o_proj." in name:
        return "f16"
    return "q4_k"


CASES = [("q8_0", "q8_0", HD64), ("q4_0", "q4_0", HD64), ("q4_1", "q4_1", HD64),
         ("q5_0", "q5_0", HD64), ("q4_k", "q4_k", HD128), ("q5_k", "q5_k", HD64),
         ("q6_k", "q6_k", HD128), ("q4_k_m mix", q4_k_m, HD128),
         ("q4_k tied", "q4_k", dict(HD64, tied=True))]


def make_case(work, name, qtype, shape):
    """GGUF file + a Hugging Face fp32 directory of the weights the file stores."""
    slug = name.replace(" ", "-")
    hf_dir, ref_dir = os.path.join(work, slug + "-hf"), os.path.join(work, slug + "-ref")
    gguf = os.path.join(work, slug + ".gguf")
    make_tiny_model.make_model(hf_dir, arch="llama", dim=shape["dim"], layers=shape["layers"],
                               heads=shape["heads"], kv_heads=shape["kv_heads"],
                               vocab=shape["vocab"], intermediate=shape["intermediate"],
                               max_pos=1024, tied=shape.get("tied", False), seed=len(name))
    with open(os.path.join(hf_dir, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    # the trained tokenizer is smaller than the embedding table: say the table's size
    stored = make_tiny_gguf.convert(hf_dir, gguf, qtype,
                                    extra_kv=[("llama.vocab_size", make_tiny_gguf.U32, vocab)])
    os.makedirs(ref_dir, exist_ok=True)
    shutil.copy(os.path.join(hf_dir, "config.json"), ref_dir)
    arrays = [(n, np.ascontiguousarray(a, dtype=np.float32), "float32") for n, a in sorted(stored.items())]
    make_tiny_model.write_safetensors(os.path.join(ref_dir, "model.safetensors"), arrays)
    return gguf, ref_dir, vocab


def prompts_for(vocab):
    rng = np.random.default_rng(11)
    draw = lambda n: [int(x) for x in rng.integers(0, vocab, n)]  # noqa: E731
    four = [draw(n) for n in (37, 5, 64, 100)]
    others = [draw(n) for n in (1, 17, 150, 33, 2, 90, 48, 9)]
    twelve = others[:2] + [four[0]] + others[2:5] + [four[1], four[2]] + others[5:] + [four[3]]
    shared = [(0, 2), (1, 6), (2, 7), (3, 11)]   # index in four, index in twelve
    return four, twelve, shared


def check_case(rep, exe, args, name, qtype, shape):
    t0 = time.time()
    gguf, ref_dir, vocab = make_case(args.work, name, qtype, shape)
    print("== %s (%s, made in %.1f s)" % (name, gguf, time.time() - t0), flush=True)
    four, twelve, shared = prompts_for(vocab)
    prefix = os.path.join(args.work, name.replace(" ", "-"))
    d4 = e2e.run_dump(exe, gguf, "cuda", four, prefix + "-cuda4", args.steps, vocab,
                      prompt_logits=True)
    d12 = e2e.run_dump(exe, gguf, "cuda", twelve, prefix + "-cuda12", args.steps, vocab, chunk=32)
    cpu = e2e.run_dump(exe, gguf, "cpu", four, prefix + "-cpu4", args.steps, vocab,
                       prompt_logits=True)
    ref = e2e.load_reference(ref_dir, "cuda")
    e2e.compare_to_reference(rep, name, "cuda batch4 (gemv decode)", TOL_CUDA, ref, four, d4,
                             list(range(4)))
    # the shared prompts of the 12, as a dump of their own (compare_to_reference reads logits
    # row k for the k-th prompt it is given)
    sel = [j for _, j in shared]
    d12_shared = {"tokens": d12["tokens"][sel], "logits": d12["logits"][sel]}
    e2e.compare_to_reference(rep, name, "cuda batch12 (dequant+cublas decode)", TOL_CUDA, ref,
                             [twelve[j] for j in sel], d12_shared, list(range(len(sel))))
    e2e.compare_to_reference(rep, name, "cpu batch4", TOL_CPU, ref, four, cpu, list(range(4)))
    del ref
    torch.cuda.empty_cache()
    for i4, i12 in shared:
        a, b = d4["tokens"][i4], d12["tokens"][i12]
        same, note = True, "identical"
        if not np.array_equal(a, b):
            same, note = e2e.divergence(a, d4["logits"][i4], b, d12["logits"][i12])
        rep.add(name, "greedy tokens of prompt %d: batch4 = batch12" % i4,
                "%d/%d" % (int(np.sum(a == b)), len(a)), "identical", same, note)
    errs = []
    for i in range(4):
        a, b = d4["tokens"][i], cpu["tokens"][i]
        k = int(np.argmax(a != b)) if np.any(a != b) else len(a)
        errs.append(e2e.rel_l2_rows(d4["logits"][i][:k + 1], cpu["logits"][i][:k + 1])[0])
    e = np.concatenate(errs)
    rep.add(name, "cuda vs cpu (same file): logits rel L2 on common tokens, max", "%.2e" % e.max(),
            "<= %.0e" % TOL_CPU[0], e.max() <= TOL_CPU[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/twin-quant")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--bin-dir", default=os.environ.get("BIN_DIR"))
    ap.add_argument("--only", help="run only the cases whose name contains this")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    exe = find_program("forward-dump", args.bin_dir)
    rep = e2e.Report()
    for name, qtype, shape in CASES:
        if args.only and args.only not in name:
            continue
        try:
            check_case(rep, exe, args, name, qtype, shape)
        except Exception as ex:  # a program that failed to run is a failed check
            rep.add(name, "runs", "error", "runs", False, str(ex).splitlines()[0][:200])
            print(ex, flush=True)
    rep.print()
    return 1 if rep.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
