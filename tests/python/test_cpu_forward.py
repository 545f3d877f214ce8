"""tests/python/test_cpu_forward.py — the CPU backend's forward against an independent numpy
reference (float64, written here from the Hugging Face modelling code's definitions), for tiny
random models of every architecture and weight dtype we load: llama (GQA, llama3 rope scaling,
tied/untied, explicit head_dim, sharded), mistral (MQA, sliding window), qwen2 (q/k/v biases).

Checks, per variant: `llm-run --logits` over a whole prompt matches the reference (relative
error max|a-b| / max|b| < 1e-4; bf16/f16 weights are compared against the reference on the same
rounded weights, read back from the files); token-by-token and chunked feeding through the paged
KV cache (`--chunk`) give the same logits; and `forward-tool` running several sequences at once
in mixed prefill/decode batches with shuffled block tables matches the reference per sequence.
"""
import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

SOURCE_DIR = os.environ.get("TWIN_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
BIN_DIR = os.environ.get("TWIN_BIN_DIR", os.path.join(SOURCE_DIR, "build", "bin"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "models"))
import make_tiny_model  # noqa: E402

TOLERANCE = 1e-4

# name -> make_model options
VARIANTS = {
    "llama-f32": dict(arch="llama", dtype="f32"),
    "llama-bf16-llama3-tied": dict(arch="llama", dtype="bf16", rope_llama3=True, tied=True,
                                   head_dim=0, dim=64, heads=2, kv_heads=1),
    "llama-f32-llama3": dict(arch="llama", dtype="f32", rope_llama3=True, layers=3),
    "llama-f16-sharded-headdim": dict(arch="llama", dtype="f16", heads=4, kv_heads=4,
                                      head_dim=32, shards=3),
    "mistral-f32-window": dict(arch="mistral", dtype="f32", heads=4, kv_heads=1,
                               sliding_window=8),
    "mistral-bf16": dict(arch="mistral", dtype="bf16", kv_heads=2, shards=2),
    "mistral-f16-tied": dict(arch="mistral", dtype="f16", tied=True, layers=1),
    "qwen2-bf16-tied": dict(arch="qwen2", dtype="bf16", tied=True),
    "qwen2-f16-sharded": dict(arch="qwen2", dtype="f16", shards=4, rope_theta=1000000.0),
    "qwen2-f32": dict(arch="qwen2", dtype="f32", layers=3, heads=8, kv_heads=2, dim=64,
                      intermediate=96),
}

# ---- independent reference ----------------------------------------------------------------------


def read_safetensors(path):
    """name -> float64 array, parsed here from the file format (8-byte length, JSON, data)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif info["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2")
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(info["dtype"])
        out[name] = a.astype(np.float64).reshape(info["shape"])
    return out


def read_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for name in files:
        weights.update(read_safetensors(os.path.join(model_dir, name)))
    return cfg, weights


def inv_frequencies(cfg, head_dim, use_scaling=True):
    base = cfg["rope_theta"]
    inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    scaling = cfg.get("rope_scaling")
    if not (use_scaling and scaling and scaling.get("rope_type") == "llama3"):
        return inv_freq
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
    return np.where(medium, smoothed, scaled)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def reference_logits(cfg, w, tokens, use_rope_scaling=True, use_window=True):
    """Logits [n][vocab] of one sequence, every position, float64."""
    dim, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim") or dim // heads
    eps = cfg["rms_norm_eps"]
    window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" and use_window else None
    n = len(tokens)
    pos = np.arange(n)

    angles = pos[:, None] * inv_frequencies(cfg, head_dim, use_rope_scaling)[None, :]
    cos = np.cos(np.concatenate([angles, angles], axis=-1))[:, None, :]  # [n][1][head_dim]
    sin = np.sin(np.concatenate([angles, angles], axis=-1))[:, None, :]
    allowed = pos[None, :] <= pos[:, None]                              # [query][key]
    if window:
        allowed &= pos[:, None] - pos[None, :] < window

    x = w["model.embed_tokens.weight"][tokens]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = h @ w[p + "self_attn.q_proj.weight"].T
        k = h @ w[p + "self_attn.k_proj.weight"].T
        v = h @ w[p + "self_attn.v_proj.weight"].T
        if cfg["model_type"] == "qwen2":
            q = q + w[p + "self_attn.q_proj.bias"]
            k = k + w[p + "self_attn.k_proj.bias"]
            v = v + w[p + "self_attn.v_proj.bias"]
        q = q.reshape(n, heads, head_dim)
        k = k.reshape(n, kv_heads, head_dim)
        v = v.reshape(n, kv_heads, head_dim)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = heads // kv_heads
        k = np.repeat(k, group, axis=1)                                 # [n][heads][head_dim]
        v = np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(head_dim)
        scores = np.where(allowed[None], scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        attn = np.einsum("hqk,khd->qhd", probs, v).reshape(n, heads * head_dim)
        x = x + attn @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    lm_head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ lm_head.T


def relative_error(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


# ---- running the binaries ---------------------------------------------------------------------


def read_logits(path, vocab):
    a = np.fromfile(path, dtype="<f4")
    assert a.size % vocab == 0
    return a.reshape(-1, vocab).astype(np.float64)


def llm_run_logits(model_dir, tokens, out_path, chunk=None):
    cmd = [os.path.join(BIN_DIR, "llm-run"), "--model", model_dir,
           "--tokens", ",".join(map(str, tokens)), "--logits", str(out_path), "--threads", "2"]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request, tmp_path_factory):
    name = request.param
    model_dir = str(tmp_path_factory.mktemp(name))
    make_tiny_model.make_model(model_dir, seed=zlib.crc32(name.encode()), **VARIANTS[name])
    cfg, weights = read_model(model_dir)
    rng = np.random.default_rng(7)
    tokens = [int(t) for t in rng.integers(0, cfg["vocab_size"], size=37)]
    return dict(name=name, dir=model_dir, cfg=cfg, weights=weights, tokens=tokens,
                expected=reference_logits(cfg, weights, tokens))


# ---- tests ----------------------------------------------------------------------------------------


def test_whole_prompt_matches_reference(model, tmp_path):
    out = tmp_path / "logits.bin"
    llm_run_logits(model["dir"], model["tokens"], out)
    got = read_logits(out, model["cfg"]["vocab_size"])
    assert got.shape == model["expected"].shape
    err = relative_error(got, model["expected"])
    assert err < TOLERANCE, f"{model['name']}: relative error {err:.3g}"


@pytest.mark.parametrize("chunk", [1, 5, 16])
def test_paged_cache_steps_match_whole_prompt(model, tmp_path, chunk):
    whole, stepped = tmp_path / "whole.bin", tmp_path / "stepped.bin"
    llm_run_logits(model["dir"], model["tokens"], whole)
    llm_run_logits(model["dir"], model["tokens"], stepped, chunk=chunk)
    vocab = model["cfg"]["vocab_size"]
    a, b = read_logits(stepped, vocab), read_logits(whole, vocab)
    assert a.shape == b.shape
    assert relative_error(a, b) < TOLERANCE
    assert relative_error(a, model["expected"]) < TOLERANCE


@pytest.mark.parametrize("last_only", [False, True])
def test_mixed_batches_of_many_sequences(model, tmp_path, last_only):
    cfg, w = model["cfg"], model["weights"]
    rng = np.random.default_rng(11)
    seqs = [[int(t) for t in rng.integers(0, cfg["vocab_size"], size=n)]
            for n in (23, 1, 40, 17, 9)]
    out = tmp_path / "multi.bin"
    cmd = [os.path.join(BIN_DIR, "forward-tool"), "--model", model["dir"], "--out", str(out),
           "--chunk", "6", "--threads", "2"]
    for s in seqs:
        cmd += ["--seq", ",".join(map(str, s))]
    if last_only:
        cmd.append("--last-only")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = read_logits(out, cfg["vocab_size"])
    row = 0
    for i, s in enumerate(seqs):
        expected = reference_logits(cfg, w, s)
        if last_only:
            actual, expected = got[i:i + 1], expected[-1:]
        else:
            actual = got[row:row + len(s)]
            row += len(s)
        err = relative_error(actual, expected)
        assert err < TOLERANCE, f"{model['name']} sequence {i}: relative error {err:.3g}"


def test_features_under_test_change_the_logits(model):
    """The reference is sensitive to what the variant exercises: dropping llama3 scaling or
    the sliding window from it moves the logits far beyond the tolerance."""
    cfg, w, tokens = model["cfg"], model["weights"], model["tokens"]
    if cfg.get("rope_scaling"):
        plain = reference_logits(cfg, w, tokens, use_rope_scaling=False)
        assert relative_error(plain, model["expected"]) > 100 * TOLERANCE
    if cfg.get("sliding_window") and cfg["model_type"] == "mistral":
        full = reference_logits(cfg, w, tokens, use_window=False)
        assert relative_error(full, model["expected"]) > 100 * TOLERANCE
