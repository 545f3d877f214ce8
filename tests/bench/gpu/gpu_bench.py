#!/usr/bin/env python3
"""tests/bench/gpu/gpu_bench.py — our engine next to Hugging Face transformers on the GPU machine,
on random-weight models of the Llama-3.2-1B and Llama-3.1-8B shapes (bf16, made by
tests/gpu/hf_models.py into --work, kept there for later runs). Run through run.sh.

Per shape:
  * engine-bench (our engine, CUDA backend, in-process, device sampling): 128-token prompts and
    128 new tokens at each batch size; output tokens/s (prompt processing included), decode
    tokens/s (once every request has its first token) and the decode step time; the time to
    first token of one 2,048-token prompt;
  * achieved memory bandwidth of a decode step: (bf16 weights read once + the batch's KV cache
    at the mean context, prompt + new/2) / step time, as a fraction of the device-to-device copy
    bandwidth measured here with torch (bytes read + written);
  * transformers with a static cache and its compiled decode step (generate() compiles the
    forward with torch.compile, mode reduce-overhead (CUDA graphs), fullgraph, when the cache is
    static): decode tokens/s = batch x S / (time of generate(8 + S new) - time of generate(8
    new)), so its eager prefill cancels out; each size after warm-up runs, min of two. Its
    compilation dominates its time (one compile for batch 1, one more, with a dynamic batch,
    for the other sizes), so it runs after all of ours, batch 1 and 64 first, under time limits:
    sizes left when they run out are reported as skipped.
Time (H200, first run, models not yet on disk): copy bandwidth ~5 s; 1B: make ~15 s, engine
~20 s; 8B: make ~40 s, engine ~45 s; then transformers, ended by --deadline (440 s from the
start: one compile of the 1B shape ~40-60 s, of the 8B shape ~60-100 s). A second run finds the
models in --work.
Every stage is a subprocess with a timeout; a failed stage is reported and the rest goes on.
Prints one table at the end; exits 1 when a stage of ours failed.

Subcommands used internally: `hf SHAPE DIR` (the transformers measurement), `bandwidth`.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(ROOT, "tests", "gpu"))

SHAPES = {"1b": "llama-3.2-1b", "8b": "llama-3.1-8b", "tiny": "tiny-a"}  # tiny: dry runs
# DESIGN.md's targets (H200): decode tokens/s by batch, and TTFT of 2,048 tokens
TARGETS = {"llama-3.2-1b": {1: 1300, 64: 40000}, "llama-3.1-8b": {1: 230, 64: 11000}}
TTFT_TARGET_MS = {"llama-3.1-8b": 60}
HF_REFERENCE = {"llama-3.1-8b": {1: 145, 64: 3900}}  # transformers figures DESIGN.md quotes


def log(msg):
    print("[%6.1f s] %s" % (time.time() - T0, msg), flush=True)


def parse_results(text):
    """RESULT lines -> list of (kind, {key: value})."""
    out = []
    for line in text.splitlines():
        if not line.startswith("RESULT "):
            continue
        parts = line.split()
        kv = {}
        for p in parts[2:]:
            k, _, v = p.partition("=")
            try:
                kv[k] = float(v)
            except ValueError:
                kv[k] = v
        out.append((parts[1], kv))
    return out


def run_stage(name, cmd, timeout, env=None):
    """Runs cmd, echoing its output; returns (ok, output). A timeout keeps what was printed."""
    log("%s: %s (timeout %d s)" % (name, " ".join(cmd), timeout))
    t0 = time.time()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=max(timeout, 1), env=env)
        out, ok = p.stdout, p.returncode == 0
        status = "exit %d" % p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        ok, status = False, "timed out"
    for line in out.splitlines():
        print("    | " + line)
    log("%s: %s after %.1f s" % (name, status, time.time() - t0))
    return ok, out


# ---- subcommands run in their own process ------------------------------------------------------

def cmd_bandwidth():
    import torch
    n = 4 << 30  # bytes
    x = torch.empty(n, dtype=torch.uint8, device="cuda")
    x.random_(0, 255)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 20
    start.record()
    for _ in range(reps):
        y.copy_(x)
    end.record()
    torch.cuda.synchronize()
    s = start.elapsed_time(end) / 1e3 / reps
    print("RESULT bandwidth copy_gb_s=%.1f bytes=%d device=%s" %
          (2 * n / s / 1e9, n, torch.cuda.get_device_name(0).replace(" ", "_")))
    return 0


def cmd_hf(shape, model_dir, batches, prompt_len, steps, budget_s):
    t_start = time.time()
    import torch
    from transformers import CompileConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to("cuda").eval()
    gc = model.generation_config
    gc.cache_implementation = "static"
    gc.compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead")
    fallback_done = False
    gc.eos_token_id = None
    gc.pad_token_id = 0
    gc.do_sample = False
    print("hf: transformers model loaded in %.1f s (torch %s)" % (time.time() - t_start,
                                                                  torch.__version__), flush=True)
    vocab = model.config.vocab_size
    short, long_ = 8, 8 + steps

    def gen(ids, n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=n, min_new_tokens=n, do_sample=False)
        torch.cuda.synchronize()
        assert out.shape[1] == ids.shape[1] + n, out.shape
        return time.perf_counter() - t0

    first = True
    for b in batches:
        if not first and time.time() - t_start > budget_s:
            print("RESULT hf_skip batch=%d reason=budget" % b, flush=True)
            continue
        first = False
        ids = torch.randint(0, vocab, (b, prompt_len), device="cuda")
        t0 = time.time()
        try:
            gen(ids, long_)       # compiles (the first size, or a new one) and records graphs
        except Exception as e:    # a graph break under fullgraph: HF's default (breaks allowed)
            if fallback_done:
                raise
            fallback_done = True
            print("hf: fullgraph compile failed (%s); retrying with CompileConfig()" %
                  str(e).splitlines()[0][:200], flush=True)
            gc.compile_config = CompileConfig(mode="reduce-overhead")
            torch._dynamo.reset()
            gen(ids, long_)
        gen(ids, long_)
        warm = time.time() - t0
        t_long = min(gen(ids, long_), gen(ids, long_))
        t_short = min(gen(ids, short), gen(ids, short))
        decode = b * steps / (t_long - t_short) if t_long > t_short else 0.0
        print("hf: batch %d: warm-up (compile) %.1f s; generate(%d) %.3f s, generate(%d) %.3f s: "
              "%.0f decode tok/s" % (b, warm, long_, t_long, short, t_short, decode), flush=True)
        print("RESULT hf batch=%d decode_tok_s=%.1f step_ms=%.3f output_tok_s=%.1f warm_s=%.1f"
              % (b, decode, 1e3 * (t_long - t_short) / steps, b * long_ / t_long, warm),
              flush=True)
    return 0


# ---- the driver ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine-bench", required=True)
    ap.add_argument("--work", default="/tmp/twin-models")
    ap.add_argument("--shapes", default="1b,8b")
    ap.add_argument("--batches", default="1,16,64,128")
    ap.add_argument("--hf-batches", default=None, help="default: --batches")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--ttft-prompt", type=int, default=2048)
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--engine-backend", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: try the script without a GPU (with --shapes tiny --skip-hf)")
    ap.add_argument("--hf-steps", type=int, default=32)
    ap.add_argument("--hf-budget", default="1b:120,8b:150",
                    help="seconds per shape after which transformers starts no new batch size")
    ap.add_argument("--deadline", type=float, default=440,
                    help="seconds from the start by which every transformers stage has ended")
    args = ap.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    for s in shapes:
        if s not in SHAPES:
            sys.exit("gpu_bench: unknown shape %s (1b, 8b, tiny)" % s)
    batches = [int(b) for b in args.batches.split(",")]
    hf_batches = [int(b) for b in (args.hf_batches or args.batches).split(",")]
    # transformers: batch 1 and 64 first (the design's reference points), then the others
    hf_order = [b for b in (1, 64) if b in hf_batches] + [b for b in hf_batches if b not in (1, 64)]
    budgets = dict(kv.split(":") for kv in args.hf_budget.split(","))
    me = os.path.abspath(__file__)
    results = {"failures": []}

    ok, out = run_stage("copy bandwidth", [sys.executable, me, "bandwidth"], 120)
    bw = [kv for k, kv in parse_results(out) if k == "bandwidth"]
    copy_bw = bw[0]["copy_gb_s"] if bw else 0.0
    device = bw[0]["device"] if bw else "?"
    if not ok:
        results["failures"].append("copy bandwidth")

    import hf_models
    from twin_programs import program_env
    per_shape = {}
    # phase 1, ours: model, engine-bench (a few tens of seconds a shape)
    for s in shapes:
        shape = SHAPES[s]
        model_dir = os.path.join(args.work, shape)
        r = per_shape[shape] = {"engine": {}, "hf": {}, "hf_skip": [], "ttft": None,
                                "dir": model_dir, "made": False}
        ok, _ = run_stage("make %s" % shape, [sys.executable,
                                              os.path.join(ROOT, "tests", "gpu", "hf_models.py"),
                                              "make", shape, model_dir], 600)
        if not ok:
            results["failures"].append("make " + shape)
            continue
        r["made"] = True
        cmd = [args.engine_bench, "--model", model_dir, "--backend", args.engine_backend, "--batch",
               ",".join(map(str, batches)), "--prompt-len", str(args.prompt_len), "--new",
               str(args.new), "--ttft-prompt", str(args.ttft_prompt), "--ttft-reps", "5"]
        ok, out = run_stage("engine %s" % shape, cmd, 300, env=program_env(args.engine_bench))
        for kind, kv in parse_results(out):
            if kind == "engine":
                r["engine"][int(kv["batch"])] = kv
            elif kind == "ttft":
                r["ttft"] = kv
        if not ok:
            results["failures"].append("engine " + shape)

    # phase 2, transformers, in the time left before the deadline: each shape a soft budget
    # (no new batch size starts after it) and a hard timeout that leaves 60 s to each later one
    for k, s in enumerate(shapes):
        shape = SHAPES[s]
        r = per_shape[shape]
        if args.skip_hf or not r["made"]:
            r["hf_skip"] = list(hf_order)
            continue
        left = args.deadline - (time.time() - T0) - 60 * (len(shapes) - k - 1)
        budget = min(float(budgets.get(s, 150)), left - 60)
        if left < 60:
            r["hf_skip"] = list(hf_order)
            log("transformers %s: skipped (%.0f s left before the deadline)" % (shape, left))
            continue
        cmd = [sys.executable, me, "hf", shape, r["dir"], ",".join(map(str, hf_order)),
               str(args.prompt_len), str(args.hf_steps), str(max(budget, 1))]
        ok, out = run_stage("transformers %s" % shape, cmd, int(left))
        for kind, kv in parse_results(out):
            if kind == "hf":
                r["hf"][int(kv["batch"])] = kv
            elif kind == "hf_skip":
                r["hf_skip"].append(int(kv["batch"]))
        for b in hf_order:
            if b not in r["hf"] and b not in r["hf_skip"]:
                r["hf_skip"].append(b)

    # ---- the table ----
    print()
    print("== %s: device-to-device copy %.0f GB/s (read + write); prompts %d tokens, %d new, "
          "greedy" % (device, copy_bw, args.prompt_len, args.new))
    hdr = ("%-13s %5s %11s %11s %8s %9s %6s %11s %8s %8s" %
           ("shape", "batch", "ours out/s", "ours dec/s", "step ms", "GB/s", "of bw", "HF dec/s",
            "ours/HF", "target"))
    print(hdr)
    print("-" * len(hdr))
    for shape, r in per_shape.items():
        cfg = hf_models.make_config(shape)
        wbytes = hf_models.weight_bytes_per_token(cfg)
        kvtok = hf_models.kv_bytes_per_token(cfg)
        for b in batches:
            e = r["engine"].get(b)
            h = r["hf"].get(b)
            tgt = TARGETS.get(shape, {}).get(b)
            cells = [shape, str(b)]
            if e:
                step_s = e["step_ms"] / 1e3
                moved = wbytes + b * kvtok * (args.prompt_len + args.new / 2)
                gbs = moved / step_s / 1e9 if step_s > 0 else 0
                cells += ["%.0f" % e["output_tok_s"], "%.0f" % e["decode_tok_s"],
                          "%.2f" % e["step_ms"], "%.0f" % gbs,
                          "%.0f%%" % (100 * gbs / copy_bw) if copy_bw else "-"]
            else:
                cells += ["failed", "-", "-", "-", "-"]
            if h:
                cells.append("%.0f" % h["decode_tok_s"])
                cells.append("%.1fx" % (e["decode_tok_s"] / h["decode_tok_s"])
                             if e and h["decode_tok_s"] > 0 else "-")
            else:
                cells += ["skipped" if (args.skip_hf or b in r["hf_skip"]) else "-", "-"]
            cells.append(str(tgt) if tgt else "-")
            print("%-13s %5s %11s %11s %8s %9s %6s %11s %8s %8s" % tuple(cells))
        t = r["ttft"]
        tt = TTFT_TARGET_MS.get(shape)
        print("%-13s time to first token, %d-token prompt: %s%s" % (
            shape, args.ttft_prompt,
            "p50 %.1f ms (min %.1f, max %.1f)" % (t["p50_ms"], t["min_ms"], t["max_ms"]) if t
            else "failed", ", target <= %d ms" % tt if tt else ""))
        if shape in HF_REFERENCE:
            print("%-13s (DESIGN.md quotes transformers + static cache + compile at %s tok/s)" % (
                shape, ", ".join("batch %d: %d" % kv for kv in HF_REFERENCE[shape].items())))
        print("%-13s weights read per decode step %.2f GB, KV %.0f KiB per token" % (
            shape, wbytes / 1e9, kvtok / 1024))
    print()
    print("decode dec/s: tokens/s once every request has its first token; out/s: output tokens/s "
          "over the whole run (prefill included); GB/s: (weights + KV at the mean context) / step "
          "time; of bw: that over the copy bandwidth.")
    summary = {"device": device, "copy_gb_s": copy_bw, "shapes": per_shape,
               "failures": results["failures"]}
    out_dir = os.environ.get("OUT")
    if out_dir and os.path.isdir(out_dir):
        with open(os.path.join(out_dir, "gpu_bench.json"), "w") as f:
            json.dump(summary, f, indent=1, default=str)
    if results["failures"]:
        print("gpu_bench: failed stages: %s" % ", ".join(results["failures"]))
        return 1
    log("gpu_bench: done")
    return 0


T0 = time.time()

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "bandwidth":
        sys.exit(cmd_bandwidth())
    if len(sys.argv) > 1 and sys.argv[1] == "hf":
        _, _, shape, model_dir, batches, prompt_len, steps, budget = sys.argv
        sys.exit(cmd_hf(shape, model_dir, [int(b) for b in batches.split(",")], int(prompt_len),
                        int(steps), float(budget)))
    sys.exit(main())
