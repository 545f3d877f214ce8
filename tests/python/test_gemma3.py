"""tests/python/test_gemma3.py — the Gemma 3 architecture on the CPU backend against an
independent numpy reference (float64, written here from the Hugging Face Gemma 3 modelling
code's definitions): embeddings scaled by sqrt(hidden), RMSNorm with (1 + w), q/k norms per
head, norms after attention and MLP, GeGLU with the tanh gelu, sliding-window layers with their
own rope base and global layers (every Nth) with rope_theta (and linear rope scaling), the
query_pre_attn_scalar attention scale, attention and final logit soft-capping, tied and untied
embeddings.

Tiny random models written as Hugging Face directories (config.json, f32 safetensors) by
tests/models/make_tiny_gguf.py; prompts longer than the window. Checks: whole-prompt logits
(relative error max|a-b| / max|b| < 1e-4), the same through the paged KV cache token by token
and in chunks, the reference's sensitivity to what each variant exercises, and the same models
converted to GGUF (f32 exact; q8_0 / q4_k within their quantization error).
"""
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
import make_tiny_gguf  # noqa: E402

TOLERANCE = 1e-4

VARIANTS = {
    # pattern 3: layers 2 and 5 global; window 8 < the 37-token prompt; both soft-caps
    "softcap-window": dict(layers=7, pattern=3, sliding_window=8, final_softcap=5.0,
                           attn_softcap=3.0, query_pre_attn_scalar=48.0),
    # layer_types list form, untied lm_head, GQA 4/2, linear rope scaling on global layers
    "layer-types-untied": dict(layers=6, heads=4, kv_heads=2, head_dim=16, pattern=6,
                               sliding_window=5, tied=False, layer_types=True, rope_linear=8.0,
                               query_pre_attn_scalar=16.0),
    # everything global but one layer in two, MQA, a window of 1 (a token sees only itself)
    "window-one": dict(layers=4, pattern=2, sliding_window=1, heads=2, kv_heads=1),
}

# ---- reference -------------------------------------------------------------------------------


def rms_norm(x, w, eps):
    """Gemma's RMSNorm: x / rms(x) * (1 + w)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (1.0 + w)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def is_sliding(cfg, layer):
    if "layer_types" in cfg:
        return cfg["layer_types"][layer] == "sliding_attention"
    return (layer + 1) % cfg["sliding_window_pattern"] != 0


def reference_logits(cfg, w, tokens, use_window=True, use_softcap=True, use_local_rope=True):
    """Logits [n][vocab] of one sequence, every position, float64."""
    dim, heads, kv_heads = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim, eps = cfg["head_dim"], cfg["rms_norm_eps"]
    n = len(tokens)
    pos = np.arange(n)

    def rope_tables(base, factor):
        inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
        angles = (pos[:, None] / factor) * inv_freq[None, :]
        both = np.concatenate([angles, angles], axis=-1)
        return np.cos(both)[:, None, :], np.sin(both)[:, None, :]

    scaling = cfg.get("rope_scaling") or {}
    global_rope = rope_tables(cfg["rope_theta"], scaling.get("factor", 1.0))
    local_rope = rope_tables(cfg["rope_local_base_freq"] if use_local_rope else cfg["rope_theta"],
                             1.0 if use_local_rope else scaling.get("factor", 1.0))
    causal = pos[None, :] <= pos[:, None]                          # [query][key]
    windowed = causal & (pos[:, None] - pos[None, :] < cfg["sliding_window"])
    scale = cfg["query_pre_attn_scalar"] ** -0.5
    attn_cap = cfg.get("attn_logit_softcapping") if use_softcap else None
    final_cap = cfg.get("final_logit_softcapping") if use_softcap else None

    x = w["model.embed_tokens.weight"][tokens] * np.float64(np.float32(np.sqrt(dim)))
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        sliding = is_sliding(cfg, layer)
        cos, sin = local_rope if sliding else global_rope
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(n, heads, head_dim)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(n, kv_heads, head_dim)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(n, kv_heads, head_dim)
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, heads // kv_heads, axis=1)
        v = np.repeat(v, heads // kv_heads, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) * scale
        if attn_cap:
            scores = attn_cap * np.tanh(scores / attn_cap)
        allowed = windowed if (sliding and use_window) else causal
        scores = np.where(allowed[None], scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        attn = np.einsum("hqk,khd->qhd", probs, v).reshape(n, heads * head_dim)
        attn = attn @ w[p + "self_attn.o_proj.weight"].T
        x = x + rms_norm(attn, w[p + "post_attention_layernorm.weight"], eps)
        h = rms_norm(x, w[p + "pre_feedforward_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        mlp = (gelu_tanh(gate) * up) @ w[p + "mlp.down_proj.weight"].T
        x = x + rms_norm(mlp, w[p + "post_feedforward_layernorm.weight"], eps)
    x = rms_norm(x, w["model.norm.weight"], eps)
    lm_head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    logits = x @ lm_head.T
    if final_cap:
        logits = final_cap * np.tanh(logits / final_cap)
    return logits


def relative_error(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


# ---- running the binary -----------------------------------------------------------------------


def run_logits(model_path, tokens, out_path, chunk=None):
    cmd = [os.path.join(BIN_DIR, "gguf-tool"), "--model", str(model_path), "--tokens",
           ",".join(map(str, tokens)), "--logits", str(out_path), "--threads", "2"]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def read_logits(path, vocab):
    a = np.fromfile(path, dtype="<f4")
    assert a.size % vocab == 0
    return a.reshape(-1, vocab).astype(np.float64)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request, tmp_path_factory):
    name = request.param
    model_dir = str(tmp_path_factory.mktemp("gemma3-" + name))
    cfg = make_tiny_gguf.make_gemma3(model_dir, seed=zlib.crc32(name.encode()), **VARIANTS[name])
    weights = {k: v.astype(np.float64) for k, v in
               make_tiny_gguf.read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    rng = np.random.default_rng(3)
    tokens = [int(t) for t in rng.integers(0, cfg["vocab_size"], size=37)]
    return dict(name=name, dir=model_dir, cfg=cfg, weights=weights, tokens=tokens,
                expected=reference_logits(cfg, weights, tokens))


# ---- tests ------------------------------------------------------------------------------------


def test_whole_prompt_matches_reference(model, tmp_path):
    out = tmp_path / "logits.bin"
    run_logits(model["dir"], model["tokens"], out)
    got = read_logits(out, model["cfg"]["vocab_size"])
    assert got.shape == model["expected"].shape
    err = relative_error(got, model["expected"])
    assert err < TOLERANCE, f"{model['name']}: relative error {err:.3g}"


@pytest.mark.parametrize("chunk", [1, 5])
def test_paged_cache_steps_match_reference(model, tmp_path, chunk):
    out = tmp_path / "stepped.bin"
    run_logits(model["dir"], model["tokens"], out, chunk=chunk)
    got = read_logits(out, model["cfg"]["vocab_size"])
    err = relative_error(got, model["expected"])
    assert err < TOLERANCE, f"{model['name']} chunk {chunk}: relative error {err:.3g}"


def test_features_under_test_change_the_logits(model):
    """The reference is sensitive to what the variants exercise: dropping the window, the local
    rope base or the soft-caps moves the logits far beyond the tolerance."""
    cfg, w, tokens, expected = model["cfg"], model["weights"], model["tokens"], model["expected"]
    assert relative_error(reference_logits(cfg, w, tokens, use_window=False), expected) > 100 * TOLERANCE
    if cfg["sliding_window"] > 1:  # with a window of one, q and k share their position
        assert relative_error(reference_logits(cfg, w, tokens, use_local_rope=False), expected) > 100 * TOLERANCE
    if cfg.get("final_logit_softcapping") or cfg.get("attn_logit_softcapping"):
        assert relative_error(reference_logits(cfg, w, tokens, use_softcap=False), expected) > 100 * TOLERANCE


def test_config_is_read(model):
    proc = subprocess.run([os.path.join(BIN_DIR, "gguf-tool"), "--model", model["dir"], "--info"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import json
    info = json.loads(proc.stdout)
    cfg = model["cfg"]
    assert info["arch"] == "gemma3"
    assert info["sliding_window"] == cfg["sliding_window"]
    assert info["norm_weight_offset"] == 1.0
    assert abs(info["embed_scale"] - np.sqrt(cfg["hidden_size"])) < 1e-4
    assert info["tie_embeddings"] == int(cfg["tie_word_embeddings"])


# ---- the same models as GGUF ------------------------------------------------------------------

GGUF_CASES = {"f32": 1e-5, "q8_0": 3e-2, "q4_k": 3e-2}


@pytest.mark.parametrize("qtype", sorted(GGUF_CASES))
def test_gguf_matches_reference_on_stored_weights(tmp_path, qtype):
    """A Gemma 3 model (dims multiple of 256 for the k-quants) written as GGUF the way the GGUF
    tools write one (norms stored as 1 + w, llama-style names, no layer pattern: readers take
    Gemma 3's one global layer in 6): the logits match the reference
    on the weights as stored (dequantized in numpy). f32 must be exact up to float rounding; the
    quantized types differ by the 8-bit quantization of the matrix inputs only (3e-2 of the
    largest logit: int8 blocks carry ~0.5% RMS error per element, summed over the layers)."""
    hf = tmp_path / "hf"
    cfg = make_tiny_gguf.make_gemma3(str(hf), dim=256, layers=6, heads=2, kv_heads=1,
                                     head_dim=128, vocab=300, intermediate=512, pattern=6,
                                     sliding_window=6, query_pre_attn_scalar=128.0,
                                     final_softcap=20.0, seed=11)
    gguf = tmp_path / f"gemma3-{qtype}.gguf"
    stored = make_tiny_gguf.convert(str(hf), str(gguf), qtype)
    weights = {k: v.astype(np.float64) for k, v in stored.items()}
    tokens = [int(t) for t in np.random.default_rng(5).integers(0, 300, size=23)]
    expected = reference_logits(cfg, weights, tokens)
    out = tmp_path / "logits.bin"
    run_logits(gguf, tokens, out)
    err = relative_error(read_logits(out, 300), expected)
    assert err < GGUF_CASES[qtype], f"gemma3 {qtype}: relative error {err:.3g}"
