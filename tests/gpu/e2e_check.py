#!/usr/bin/env python3
"""tests/gpu/e2e_check.py — the CUDA backend end to end on the GPU machine, against Hugging Face
transformers and against our CPU backend, on random-weight Llama models written by
hf_models.py: two tiny ones (head_dim 64 and 128, GQA 4, untied and tied, default and llama3
RoPE) and the Llama-3.2-1B shape.

For each model, forward-dump (tests/gpu/forward_dump.c) runs our backends over batches of
mixed-length prompts: a prefill, then --steps greedy decode steps. Checks:
  * logits against transformers in fp32 (the same bf16 weights, widened; TF32 off; eager
    attention), teacher-forced on the tokens our backend chose, so one near-tie cannot send the
    two down different paths: every prompt position and every generated position, as relative
    L2 per row (max over rows, and over all rows). Tolerances are explicit below: the CPU backend
    computes in fp32 and must match closely; the CUDA backend keeps activations in bf16 between
    kernels, and its bounds are ~2.5-4x what a CPU emulation of exactly those roundings gives
    (tiny shapes 5e-3, the 1B shape 1.8e-2 mean / 2.1e-2 max);
  * greedy choices against transformers: where our token is not the reference's argmax, the
    reference's gap between the two must be within 4 RMS of that row's error (a near-tie);
  * CUDA against CPU on the positions where both chose the same tokens;
  * batch invariance: one prompt's greedy tokens alone, in a batch of 4, in a batch of 16 mixed
    with others and in a batch of 11 with chunked prefill (padded CUDA-graph bucket, cached
    prefix) must be identical (and three other prompts' in the batches of 4 and 16); a
    divergence is allowed only at a near-tie (the top-two gap within 4 RMS of the two runs'
    difference on that row), and the logits up to it must agree within half the CUDA budget;
  * device greedy sampling (forward_sample) picks exactly the host argmax's tokens;
  * tests/gpu/engine_check.c: the engine's device-sampling path, with a mock backend and with
    the CUDA backend.
Prints one table; exits 1 when a check fails (or a program fails to run).

Usage (on the GPU machine, repository root; programs and libraries as twin_programs.py says):
  BIN_DIR=<dir with forward-dump, engine-check> \
      python3 tests/gpu/e2e_check.py [--work /tmp/twin-models] [--steps 64] [--skip-1b] [--skip-cpu]
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import hf_models  # noqa: E402
from twin_programs import find_program, program_env  # noqa: E402

# bounds on relative L2 of logits rows against transformers fp32: (max over rows, all rows)
TOL_CPU = (2e-3, 1e-3)
TOL_CUDA = {"tiny-a": (2e-2, 1e-2), "tiny-b": (2e-2, 1e-2), "llama-3.2-1b": (5e-2, 3e-2)}
# logits of the same prompt in two batch compositions (max row): half the CUDA budget
TOL_COMPOSITION = {k: v[0] / 2 for k, v in TOL_CUDA.items()}
NEAR_TIE_RMS = 4.0       # a greedy mismatch is a near-tie when the gap <= this x row RMS error


class Report:
    def __init__(self):
        self.rows = []

    def add(self, model, check, value, tol, ok, note=""):
        self.rows.append((model, check, value, tol, "PASS" if ok else "FAIL", note))
        print("%s %-13s %-50s %s" % ("PASS" if ok else "FAIL", model, check, value), flush=True)

    def failed(self):
        return sum(r[4] == "FAIL" for r in self.rows)

    def print(self):
        print()
        print("%-13s %-60s %-11s %-10s %-5s %s" % ("model", "check", "value", "tolerance", "", "note"))
        for m, c, v, t, s, n in self.rows:
            print("%-13s %-60s %-11s %-10s %-5s %s" % (m, c[:60], v, t, s, n))


# ---- running forward-dump ----------------------------------------------------------------------

def write_prompts(path, prompts):
    arr = [len(prompts)] + [len(p) for p in prompts] + [t for p in prompts for t in p]
    np.asarray(arr, dtype="<i4").tofile(path)


def run_dump(exe, model_dir, backend, prompts, prefix, steps, vocab, chunk=0, device_sample=False,
             prompt_logits=False, keep=0):
    write_prompts(prefix + ".prompts", prompts)
    cmd = [exe, "--model", model_dir, "--backend", backend, "--prompts", prefix + ".prompts",
           "--out", prefix, "--steps", str(steps)]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    if keep:
        cmd += ["--keep-logits", str(keep)]
    if device_sample:
        cmd.append("--device-sample")
    if prompt_logits:
        cmd.append("--prompt-logits")
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=program_env(exe))
    if p.returncode != 0:
        raise RuntimeError("%s failed (exit %d):\n%s%s" % (" ".join(cmd), p.returncode, p.stdout,
                                                          p.stderr))
    print("  %s (%.1f s)" % (p.stdout.strip(), time.time() - t0), flush=True)
    n, gen = len(prompts), steps + 1
    out = {"tokens": np.fromfile(prefix + ".tokens", dtype="<i4").reshape(n, gen)}
    if not device_sample:
        k = keep if keep and keep < n else n
        out["logits"] = np.fromfile(prefix + ".logits", dtype="<f4").reshape(k, gen, vocab)
    if prompt_logits:
        rows = np.fromfile(prefix + ".prompt_logits", dtype="<f4").reshape(-1, vocab)
        out["prompt_logits"], off = [], 0
        for p_ in prompts:
            out["prompt_logits"].append(rows[off:off + len(p_)])
            off += len(p_)
    return out


# ---- the reference -----------------------------------------------------------------------------

def load_reference(model_dir, device):
    from transformers import LlamaForCausalLM
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    m = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                         attn_implementation="eager")
    return m.to(device).eval()


def reference_logits(ref, prompt, tokens):
    """fp32 logits [len(prompt) + len(tokens) - 1][vocab] of prompt + tokens[:-1] (teacher
    forced): row len(prompt)-1+i is what token i was chosen from."""
    ids = torch.tensor([list(prompt) + list(tokens[:-1])], dtype=torch.long,
                       device=next(ref.parameters()).device)
    with torch.no_grad():
        return ref(ids).logits[0].float().cpu().numpy()


def rel_l2_rows(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = np.linalg.norm(a - b, axis=-1) / np.maximum(np.linalg.norm(b, axis=-1), 1e-30)
    return d, float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def compare_to_reference(rep, model, label, tol, ref, prompts, dump, idx):
    """dump's prompts idx (each with logits in the dump) against the reference."""
    rows_err, ours_all, refs_all = [], [], []
    mismatches = bad_mismatches = positions = 0
    worst_gap = 0.0
    for j, i in enumerate(idx):
        p, toks = prompts[i], dump["tokens"][i]
        r = reference_logits(ref, p, toks)
        ours = [dump["logits"][j]]
        refs = [r[len(p) - 1:]]
        if "prompt_logits" in dump:
            ours.insert(0, dump["prompt_logits"][i][:-1])
            refs.insert(0, r[:len(p) - 1])
        ours, refs = np.concatenate(ours), np.concatenate(refs)
        ours_all.append(ours)
        refs_all.append(refs)
        # greedy choices on the generated rows
        g = dump["logits"][j]
        rg = r[len(p) - 1:]
        rms = np.sqrt(np.mean((g.astype(np.float64) - rg) ** 2, axis=-1))
        ref_top = rg.argmax(-1)
        for t in range(len(toks)):
            positions += 1
            if toks[t] != ref_top[t]:
                mismatches += 1
                gap = float(rg[t, ref_top[t]] - rg[t, toks[t]])
                if gap > NEAR_TIE_RMS * rms[t] + 1e-6:
                    bad_mismatches += 1
                    worst_gap = max(worst_gap, gap / max(rms[t], 1e-12))
    d, total = rel_l2_rows(np.concatenate(ours_all), np.concatenate(refs_all))
    rep.add(model, "%s vs transformers fp32: logits rel L2, max row" % label, "%.2e" % d.max(),
            "<= %.0e" % tol[0], d.max() <= tol[0], "%d rows" % len(d))
    rep.add(model, "%s vs transformers fp32: logits rel L2, all rows" % label, "%.2e" % total,
            "<= %.0e" % tol[1], total <= tol[1])
    note = "all equal" if not mismatches else "%d not the argmax, all near-ties" % mismatches \
        if not bad_mismatches else \
        "%d beyond a near-tie (worst gap %.1f RMS)" % (bad_mismatches, worst_gap)
    rep.add(model, "%s greedy tokens = transformers argmax" % label,
            "%d/%d" % (positions - mismatches, positions), "near-ties", bad_mismatches == 0, note)


# ---- one model -----------------------------------------------------------------------------------

def make_prompts(vocab, seed):
    rng = np.random.default_rng(seed)
    draw = lambda n: [int(x) for x in rng.integers(0, vocab, n)]  # noqa: E731
    target = draw(37)
    others = [draw(n) for n in (5, 64, 100, 1, 17, 150, 33, 2, 90, 48, 128, 9, 71, 16, 140, 55)]
    return {
        "alone": ([target], 0),
        "batch4": ([others[0], target, others[1], others[2]], 0),
        # the target at 2, others[0..2] at 0, 3, 4 (as in batch4)
        "batch16": ([others[0], others[3], target, others[1], others[2], others[4], others[5],
                     others[6], others[7], others[8], others[9], others[10], others[11],
                     others[12], others[13], others[14]], 0),
        "batch11-chunk32": (others[3:6] + [target] + others[6:13], 32),
    }


TARGET_AT = {"alone": 0, "batch4": 1, "batch16": 2, "batch11-chunk32": 3}
SHARED = [(0, 0), (2, 3), (3, 4)]   # others[0..2]: index in batch4, index in batch16
KEEP_BIG = 5                        # logits kept per run of a big-vocabulary model: these all


def divergence(ta, la, tb, lb):
    """Where two greedy runs of one prompt first differ, and whether it is a near-tie: the
    first run's gap between its top two logits there is within NEAR_TIE_RMS times the RMS
    difference of the two runs' logits for that row (computed from the same tokens)."""
    k = int(np.argmax(ta != tb))
    top2 = np.sort(la[k])[-2:]
    gap = float(top2[1] - top2[0])
    rms = float(np.sqrt(np.mean((la[k].astype(np.float64) - lb[k]) ** 2)))
    tie = gap <= NEAR_TIE_RMS * rms + 1e-6
    return tie, "diverge at step %d, gap %.2e vs %.1f x RMS %.2e (%s)" % (
        k, gap, NEAR_TIE_RMS, rms, "near-tie" if tie else "NOT a tie")


def check_model(rep, shape, args, exe, device):
    model_dir = os.path.join(args.work, shape)
    t0 = time.time()
    if not hf_models.model_is_current(shape, model_dir):
        m = hf_models.build_model(shape, device)
        hf_models.save_model(m, model_dir)
        del m
        torch.cuda.empty_cache() if device == "cuda" else None
    print("== %s (%s, made in %.1f s)" % (shape, model_dir, time.time() - t0), flush=True)
    cfg = hf_models.make_config(shape)
    vocab, steps = cfg.vocab_size, args.steps
    big = cfg.vocab_size * cfg.hidden_size > 1e8
    groups = make_prompts(vocab, 7)
    dumps = {}
    work = os.path.join(args.work, shape + "-dumps")
    os.makedirs(work, exist_ok=True)
    for name, (prompts, chunk) in groups.items():
        keep = KEEP_BIG if big and len(prompts) > KEEP_BIG else 0
        dumps[name] = run_dump(exe, model_dir, args.as_cuda, prompts, os.path.join(work, "cuda-" + name),
                               steps, vocab, chunk=chunk, keep=keep,
                               prompt_logits=name == "batch4" or (not big and name == "batch16"))
    dev = None
    if args.as_cuda == "cuda":
        dev = run_dump(exe, model_dir, "cuda", groups["batch16"][0],
                       os.path.join(work, "cuda-dev16"), steps, vocab, device_sample=True)
    cpu = None
    if not args.skip_cpu:
        cpu_group = "batch4" if big else "batch16"
        cpu = run_dump(exe, model_dir, "cpu", groups[cpu_group][0],
                       os.path.join(work, "cpu-" + cpu_group), steps, vocab, prompt_logits=True)

    # against transformers
    ref = load_reference(model_dir, device)
    g = "batch4" if big else "batch16"
    prompts = groups[g][0]
    n_cmp = 4 if big else len(prompts)
    compare_to_reference(rep, shape, "cuda %s" % g, TOL_CUDA[shape], ref, prompts, dumps[g],
                         list(range(n_cmp)))
    if cpu is not None:
        compare_to_reference(rep, shape, "cpu %s" % g, TOL_CPU, ref, prompts, cpu,
                             list(range(n_cmp)))
    del ref
    if device == "cuda":
        torch.cuda.empty_cache()

    # CUDA against CPU where both chose the same tokens
    if cpu is not None:
        same_tok, total_tok, errs = 0, 0, []
        for i in range(n_cmp):
            a, b = dumps[g]["tokens"][i], cpu["tokens"][i]
            k = int(np.argmax(a != b)) if np.any(a != b) else len(a)
            same_tok += k
            total_tok += len(a)
            # rows 0..k are computed from identical inputs (token k is the first to differ)
            rows = min(k + 1, len(a))
            errs.append(rel_l2_rows(dumps[g]["logits"][i][:rows], cpu["logits"][i][:rows])[0])
        e = np.concatenate(errs)
        rep.add(shape, "cuda vs cpu: logits rel L2 on common tokens, max", "%.2e" % e.max(),
                "<= %.0e" % TOL_CUDA[shape][0], e.max() <= TOL_CUDA[shape][0],
                "%d/%d tokens before the first difference" % (same_tok, total_tok))

    # batch invariance of greedy decoding
    base = dumps["alone"]
    bt, bl = base["tokens"][0], base["logits"][0]
    tol_c = TOL_COMPOSITION[shape]
    for name in ("batch4", "batch16", "batch11-chunk32"):
        j = TARGET_AT[name]
        t, logits = dumps[name]["tokens"][j], dumps[name]["logits"][j]
        ok, note, upto = True, "identical", len(t)
        if not np.array_equal(t, bt):
            ok, note = divergence(bt, bl, t, logits)
            upto = int(np.argmax(t != bt)) + 1
        rep.add(shape, "greedy tokens alone = in %s" % name,
                "%d/%d" % (int(np.sum(t == bt)), len(t)), "identical", ok, note)
        d, _ = rel_l2_rows(logits[:upto], bl[:upto])
        rep.add(shape, "logits alone vs in %s (same tokens), max" % name, "%.2e" % d.max(),
                "<= %.1e" % tol_c, d.max() <= tol_c)
    for i4, i16 in SHARED:
        a, b = dumps["batch4"]["tokens"][i4], dumps["batch16"]["tokens"][i16]
        same, note = True, "identical"
        if not np.array_equal(a, b):
            same, note = divergence(a, dumps["batch4"]["logits"][i4], b,
                                    dumps["batch16"]["logits"][i16])
        rep.add(shape, "greedy tokens of prompt %d: batch4 = batch16" % i4,
                "%d/%d" % (int(np.sum(a == b)), len(a)), "identical", same, note)

    # device greedy = host argmax (the same batch, the same steps)
    if dev is not None:
        same = int(np.sum(dev["tokens"] == dumps["batch16"]["tokens"]))
        rep.add(shape, "device greedy (forward_sample) = host argmax, batch16",
                "%d/%d" % (same, dev["tokens"].size), "identical", same == dev["tokens"].size)
    return model_dir


def run_engine_check(rep, exe, args_list, label):
    t0 = time.time()
    p = subprocess.run([exe] + args_list, capture_output=True, text=True, env=program_env(exe))
    out = p.stdout + p.stderr
    lines = [l for l in p.stdout.splitlines() if l.startswith(("PASS", "FAIL", "INFO"))]
    for l in lines:
        print("  " + l)
    n_fail = sum(l.startswith("FAIL") for l in lines)
    n_pass = sum(l.startswith("PASS") for l in lines)
    ok = p.returncode == 0 and n_fail == 0 and n_pass > 0
    if not ok and not lines:
        print(out)
    rep.add(label, "engine-check %s" % " ".join(args_list[:1]), "%d/%d" % (n_pass, n_pass + n_fail),
            "all pass", ok, "exit %d, %.1f s" % (p.returncode, time.time() - t0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/twin-models")
    ap.add_argument("--bin-dir", default=None)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--skip-1b", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true", help="no CPU backend runs")
    ap.add_argument("--shapes", default=None, help="comma-separated subset of the shapes")
    ap.add_argument("--as-cuda", default="cuda", choices=["cuda", "cpu"],
                    help="backend of the 'cuda' runs: cpu tries this script on a machine without "
                         "a GPU (no device-sampling or engine CUDA checks then)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    exe = find_program("forward-dump", args.bin_dir)
    checker = find_program("engine-check", args.bin_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cuda":
        print("e2e_check: warning: torch sees no GPU; the reference runs on the CPU", flush=True)
    else:
        print("device: %s, torch %s" % (torch.cuda.get_device_name(0), torch.__version__))
    shapes = ["tiny-a", "tiny-b"] + ([] if args.skip_1b else ["llama-3.2-1b"])
    if args.shapes:
        shapes = args.shapes.split(",")
    rep = Report()
    t0 = time.time()
    run_engine_check(rep, checker, ["--mock"], "mock")
    for shape in shapes:
        try:
            model_dir = check_model(rep, shape, args, exe, device)
        except Exception as e:  # a program that fails is a failed check, and the run goes on
            rep.add(shape, "run", "error", "-", False, str(e).splitlines()[0][:200])
            print(e, flush=True)
            continue
        if shape == "tiny-a" and args.as_cuda == "cuda":
            run_engine_check(rep, checker, ["--model", model_dir], shape)
    rep.print()
    print("\ne2e_check: %d checks, %d failed (%.0f s)" % (len(rep.rows), rep.failed(),
                                                          time.time() - t0))
    return 1 if rep.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
