#!/usr/bin/env python3
"""tests/models/make_tiny_gguf.py — GGUF v3 files of tiny random models, for tests and
benchmarks, written here with numpy (no GGUF package): a GGUF writer and reader, the ggml block
formats (quantizers and dequantizers written from the format description, independent of the C
code), tiny Gemma 3 Hugging Face directories (config.json + model.safetensors; the llama family
comes from make_tiny_model.py), and a converter from such a directory to GGUF the way the GGUF
tools lay a model out: llama q/k rows interleaved per head, Gemma norm weights stored as 1 + w,
metadata keys under general.architecture, the tokenizer of tokenizer.json as tokenizer.ggml.*.

Use as a script (--help) or import: convert(hf_dir, out_path, qtype), gguf_content(...),
make_gemma3(out_dir, ...),
write_gguf(path, kv, tensors), read_gguf(path), quantize(qtype, x) / dequantize(qtype, raw, shape).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model  # noqa: E402

# ---- the container ------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
# metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
                  BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}

# ggml tensor types: id, elements per block, bytes per block
GGML_TYPES = {
    "f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q4_1": (3, 32, 20),
    "q5_0": (6, 32, 22), "q8_0": (8, 32, 34), "q4_k": (12, 256, 144), "q5_k": (13, 256, 176),
    "q6_k": (14, 256, 210), "bf16": (30, 1, 2),
}
GGML_NAMES = {v[0]: k for k, v in GGML_TYPES.items()}


def _pack_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _pack_value(vtype, value):
    if vtype == STRING:
        return _pack_string(value)
    if vtype == ARRAY:
        elem_type, items = value
        out = struct.pack("<IQ", elem_type, len(items))
        if elem_type in SCALAR_FORMATS:
            fmt = SCALAR_FORMATS[elem_type]
            return out + np.asarray(items, dtype=np.dtype(fmt)).tobytes()
        return out + b"".join(_pack_value(elem_type, v) for v in items)
    return struct.pack(SCALAR_FORMATS[vtype], value)


def write_gguf(path, kv, tensors, alignment=32, version=3):
    """kv: list of (key, type, value); an array value is (element type, list). tensors: list of
    (name, ggml type name, HF shape (outermost first), raw bytes). Writes a GGUF file and returns
    a dict with the byte offsets of interest (for tests that corrupt it)."""
    if not any(k == "general.alignment" for k, _, _ in kv) and alignment != 32:
        kv = list(kv) + [("general.alignment", U32, alignment)]
    header = GGUF_MAGIC + struct.pack("<IQQ", version, len(tensors), len(kv))
    body = bytearray(header)
    offsets = {"kv": {}, "tensor_info": {}}
    for key, vtype, value in kv:
        offsets["kv"][key] = len(body)
        body += _pack_string(key) + struct.pack("<I", vtype) + _pack_value(vtype, value)
    data_offset, data = 0, bytearray()
    for name, tname, shape, raw in tensors:
        type_id, block, block_bytes = GGML_TYPES[tname]
        ne = list(reversed(shape))
        assert ne[0] % block == 0 and len(raw) == int(np.prod(shape)) // block * block_bytes, name
        offsets["tensor_info"][name] = len(body)
        body += _pack_string(name) + struct.pack("<I", len(ne))
        body += struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", type_id, data_offset)
        data += raw
        pad = (-len(data)) % alignment
        data += b"\0" * pad
        data_offset = len(data)
    body += b"\0" * ((-len(body)) % alignment)
    offsets["data"] = len(body)
    with open(path, "wb") as f:
        f.write(body)
        f.write(data)
    return offsets


def read_gguf(path, typed=False):
    """(metadata dict key -> value, tensors dict name -> (type name, HF shape, raw bytes)).
    typed: the metadata as write_gguf's list of (key, type, value) instead."""
    with open(path, "rb") as f:
        blob = f.read()
    pos = 0

    def take(n):
        nonlocal pos
        out = blob[pos:pos + n]
        assert len(out) == n, "truncated"
        pos += n
        return out

    def value(vtype, with_elem=False):
        if vtype == STRING:
            (n,) = struct.unpack("<Q", take(8))
            return take(n).decode("utf-8", "surrogateescape")
        if vtype == ARRAY:
            elem, count = struct.unpack("<IQ", take(12))
            if elem in SCALAR_FORMATS:
                fmt = np.dtype(SCALAR_FORMATS[elem])
                items = np.frombuffer(take(count * fmt.itemsize), dtype=fmt).tolist()
            else:
                items = [value(elem) for _ in range(count)]
            return (elem, items) if with_elem else items
        fmt = SCALAR_FORMATS[vtype]
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

    assert take(4) == GGUF_MAGIC
    version, n_tensors, n_kv = struct.unpack("<IQQ", take(20))
    assert version in (2, 3)
    kv, items = {}, []
    for _ in range(n_kv):
        key = value(STRING)
        (vtype,) = struct.unpack("<I", take(4))
        v = value(vtype, with_elem=True)
        items.append((key, vtype, v))
        kv[key] = v[1] if vtype == ARRAY else v
    infos = []
    for _ in range(n_tensors):
        name = value(STRING)
        (nd,) = struct.unpack("<I", take(4))
        ne = struct.unpack(f"<{nd}Q", take(8 * nd))
        type_id, off = struct.unpack("<IQ", take(12))
        infos.append((name, GGML_NAMES[type_id], tuple(reversed(ne)), off))
    alignment = kv.get("general.alignment", 32)
    data = pos + (-pos) % alignment
    tensors = {}
    for name, tname, shape, off in infos:
        _, block, block_bytes = GGML_TYPES[tname]
        nbytes = int(np.prod(shape)) // block * block_bytes
        tensors[name] = (tname, shape, blob[data + off:data + off + nbytes])
    return (items if typed else kv), tensors


def expand_to_f32(src, dst):
    """Rewrites a GGUF file with every tensor decoded to f32 (same names, order, metadata)."""
    items, tensors = read_gguf(src, typed=True)
    write_gguf(dst, items, [(name, "f32", list(shape), dequantize(t, raw, shape).tobytes())
                            for name, (t, shape, raw) in tensors.items()])


# ---- block formats ------------------------------------------------------------------------------
# Each quantizer takes float32 [..., n] (n a multiple of the block) and returns the raw bytes of
# the rows; each dequantizer the inverse, from the format description:
#   q4_0  fp16 d, 16 bytes of nibbles: x = d (q - 8); elements 0..15 low nibbles, 16..31 high
#   q4_1  fp16 d, fp16 m, nibbles: x = d q + m
#   q5_0  fp16 d, u32 qh (bit j = bit 4 of element j), nibbles: x = d (q - 16)
#   q8_0  fp16 d, 32 int8: x = d q
#   q4_k  256 per block: fp16 d, fp16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
#         (bytes 32p..32p+31: sub-block 2p low nibbles, 2p+1 high); x = d sc q - dmin m
#   q5_k  as q4_k plus 32 bytes qh: element l of sub-block 2p takes bit 2p of qh[l], of 2p+1 bit
#         2p+1
#   q6_k  ql[128], qh[64], int8 scales[16] (per 16 elements), fp16 d: x = d sc (q - 32), the
#         6-bit q of element 128h + 32g + l: low 4 bits in ql[64h + 32(g%2) + l] (nibble g//2),
#         high 2 bits in qh[32h + l] at bit 2g


def f16(a):
    return np.asarray(a, dtype=np.float32).astype(np.float16)


def bf16_bits(a):
    return make_tiny_model.to_bf16_bits(a)


def _blocks(x, size):
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x.reshape(-1, size)


def _safe_inverse(d):
    d = np.asarray(d, dtype=np.float32)
    return np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0).astype(np.float32)


def _pack_nibbles32(q):
    """q [nb][32] in 0..15 -> [nb][16] bytes: element j low nibble, j + 16 high nibble."""
    return (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)


def _unpack_nibbles32(qs):
    return np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)


def q8_0_quantize(x):
    b = _blocks(x, 32)
    d = f16(np.abs(b).max(1) / 127)
    q = np.clip(np.rint(b * _safe_inverse(d.astype(np.float32))[:, None]), -127, 127).astype(np.int8)
    out = np.zeros(len(b), dtype=[("d", "<f2"), ("qs", "i1", (32,))])
    out["d"], out["qs"] = d, q
    return out.tobytes()


def q8_0_dequantize(raw):
    a = np.frombuffer(raw, dtype=[("d", "<f2"), ("qs", "i1", (32,))])
    return a["d"].astype(np.float32)[:, None] * a["qs"].astype(np.float32)


def q4_0_quantize(x):
    b = _blocks(x, 32)
    # the signed extreme maps to -8, the full range of the code
    idx = np.abs(b).argmax(1)
    extreme = b[np.arange(len(b)), idx]
    d = f16(extreme / -8)
    q = np.clip(np.rint(b * _safe_inverse(np.abs(d.astype(np.float32)))[:, None] *
                        np.sign(d.astype(np.float32))[:, None]) + 8, 0, 15).astype(np.uint8)
    out = np.zeros(len(b), dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    out["d"], out["qs"] = d, _pack_nibbles32(q)
    return out.tobytes()


def q4_0_dequantize(raw):
    a = np.frombuffer(raw, dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    return a["d"].astype(np.float32)[:, None] * (_unpack_nibbles32(a["qs"]) - 8)


def q4_1_quantize(x):
    b = _blocks(x, 32)
    lo, hi = b.min(1), b.max(1)
    d, m = f16((hi - lo) / 15), f16(lo)
    q = np.clip(np.rint((b - m.astype(np.float32)[:, None]) *
                        _safe_inverse(d.astype(np.float32))[:, None]), 0, 15).astype(np.uint8)
    out = np.zeros(len(b), dtype=[("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))])
    out["d"], out["m"], out["qs"] = d, m, _pack_nibbles32(q)
    return out.tobytes()


def q4_1_dequantize(raw):
    a = np.frombuffer(raw, dtype=[("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))])
    return (a["d"].astype(np.float32)[:, None] * _unpack_nibbles32(a["qs"]) +
            a["m"].astype(np.float32)[:, None])


def q5_0_quantize(x):
    b = _blocks(x, 32)
    d = f16(np.abs(b).max(1) / 15)
    q = np.clip(np.rint(b * _safe_inverse(d.astype(np.float32))[:, None]) + 16, 0, 31).astype(np.uint32)
    qh = ((q >> 4) << np.arange(32, dtype=np.uint32)).sum(1, dtype=np.uint64).astype(np.uint32)
    out = np.zeros(len(b), dtype=[("d", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))])
    out["d"], out["qh"], out["qs"] = d, qh, _pack_nibbles32((q & 15).astype(np.uint8))
    return out.tobytes()


def q5_0_dequantize(raw):
    a = np.frombuffer(raw, dtype=[("d", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))])
    high = (a["qh"][:, None] >> np.arange(32, dtype=np.uint32)) & 1
    q = _unpack_nibbles32(a["qs"]) | (high.astype(np.int32) << 4)
    return a["d"].astype(np.float32)[:, None] * (q - 16)


def _k_pack_scales(sc, m):
    """sc, m [nb][8] in 0..63 -> [nb][12] bytes."""
    s = np.zeros((len(sc), 12), dtype=np.uint8)
    s[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    s[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    return s


def _k_unpack_scales(s):
    s = s.astype(np.int32)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc, m


def _k_scales(b, qmax):
    sub = b.reshape(len(b), 8, 32)
    lo = np.minimum(sub.min(2), 0)
    scale = (sub.max(2) - lo) / qmax
    d = f16(scale.max(1) / 63)
    dmin = f16((-lo).max(1) / 63)
    sc = np.clip(np.rint(scale * _safe_inverse(d.astype(np.float32))[:, None]), 0, 63).astype(np.uint8)
    m = np.clip(np.rint(-lo * _safe_inverse(dmin.astype(np.float32))[:, None]), 0, 63).astype(np.uint8)
    step = d.astype(np.float32)[:, None] * sc
    offset = dmin.astype(np.float32)[:, None] * m
    q = np.clip(np.rint((sub + offset[:, :, None]) * _safe_inverse(step)[:, :, None]), 0, qmax)
    return d, dmin, _k_pack_scales(sc, m), q.reshape(len(b), 256).astype(np.uint8)


def _k_pack_low(q):
    """q [nb][256] -> [nb][128]: bytes 32p + l = element 64p + l | element 64p + 32 + l << 4."""
    q = q.reshape(len(q), 4, 2, 32)
    return ((q[:, :, 0] & 15) | ((q[:, :, 1] & 15) << 4)).reshape(len(q), 128).astype(np.uint8)


def _k_unpack_low(qs):
    qs = qs.reshape(len(qs), 4, 1, 32).astype(np.int32)
    return np.concatenate([qs & 15, qs >> 4], axis=2).reshape(len(qs), 256)


Q4K = [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qs", "u1", (128,))]
Q5K = [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qh", "u1", (32,)),
       ("qs", "u1", (128,))]
Q6K = [("ql", "u1", (128,)), ("qh", "u1", (64,)), ("scales", "i1", (16,)), ("d", "<f2")]


def q4_k_quantize(x):
    b = _blocks(x, 256)
    out = np.zeros(len(b), dtype=Q4K)
    out["d"], out["dmin"], out["scales"], q = _k_scales(b, 15)
    out["qs"] = _k_pack_low(q)
    return out.tobytes()


def _k_values(a, q):
    sc, m = _k_unpack_scales(a["scales"])
    d, dmin = a["d"].astype(np.float32)[:, None], a["dmin"].astype(np.float32)[:, None]
    per_elem_sc = np.repeat(sc, 32, axis=1)
    per_elem_m = np.repeat(m, 32, axis=1)
    return d * per_elem_sc * q - dmin * per_elem_m


def q4_k_dequantize(raw):
    a = np.frombuffer(raw, dtype=Q4K)
    return _k_values(a, _k_unpack_low(a["qs"]))


def q5_k_quantize(x):
    b = _blocks(x, 256)
    out = np.zeros(len(b), dtype=Q5K)
    out["d"], out["dmin"], out["scales"], q = _k_scales(b, 31)
    out["qs"] = _k_pack_low(q)
    high = (q >> 4).reshape(len(b), 8, 32).astype(np.uint8)   # [nb][sub-block][l]
    out["qh"] = (high << np.arange(8, dtype=np.uint8)[None, :, None]).sum(1, dtype=np.uint32)
    return out.tobytes()


def q5_k_dequantize(raw):
    a = np.frombuffer(raw, dtype=Q5K)
    bits = (a["qh"][:, None, :].astype(np.int32) >> np.arange(8)[None, :, None]) & 1
    q = _k_unpack_low(a["qs"]) | (bits.reshape(len(a), 256) << 4)
    return _k_values(a, q)


def q6_k_quantize(x):
    b = _blocks(x, 256)
    sub = b.reshape(len(b), 16, 16)
    scale = np.abs(sub).max(2) / 31
    d = f16(scale.max(1) / 127)
    sc = np.clip(np.rint(scale * _safe_inverse(d.astype(np.float32))[:, None]), 0, 127).astype(np.int8)
    step = d.astype(np.float32)[:, None] * sc
    q = (np.clip(np.rint(sub * _safe_inverse(step)[:, :, None]), -32, 31) + 32).astype(np.uint8)
    q = q.reshape(len(b), 2, 4, 32)          # [nb][half][group][l]
    ql = np.zeros((len(b), 2, 2, 32), dtype=np.uint8)
    ql[:, :, 0] = (q[:, :, 0] & 15) | ((q[:, :, 2] & 15) << 4)
    ql[:, :, 1] = (q[:, :, 1] & 15) | ((q[:, :, 3] & 15) << 4)
    qh = sum(((q[:, :, g] >> 4) << (2 * g)) for g in range(4)).astype(np.uint8)
    out = np.zeros(len(b), dtype=Q6K)
    out["ql"], out["qh"] = ql.reshape(len(b), 128), qh.reshape(len(b), 64)
    out["scales"], out["d"] = sc, d
    return out.tobytes()


def q6_k_dequantize(raw):
    a = np.frombuffer(raw, dtype=Q6K)
    ql = a["ql"].reshape(len(a), 2, 2, 32).astype(np.int32)
    qh = a["qh"].reshape(len(a), 2, 32).astype(np.int32)
    low = np.stack([ql[:, :, 0] & 15, ql[:, :, 1] & 15, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], axis=2)
    high = np.stack([(qh >> (2 * g)) & 3 for g in range(4)], axis=2)
    q = (low | (high << 4)).reshape(len(a), 256) - 32
    sc = np.repeat(a["scales"].astype(np.float32), 16, axis=1)
    return a["d"].astype(np.float32)[:, None] * sc * q


QUANTIZERS = {"q8_0": (q8_0_quantize, q8_0_dequantize), "q4_0": (q4_0_quantize, q4_0_dequantize),
              "q4_1": (q4_1_quantize, q4_1_dequantize), "q5_0": (q5_0_quantize, q5_0_dequantize),
              "q4_k": (q4_k_quantize, q4_k_dequantize), "q5_k": (q5_k_quantize, q5_k_dequantize),
              "q6_k": (q6_k_quantize, q6_k_dequantize)}


def quantize(tname, x):
    """float32 array -> raw bytes in type tname (f32, f16, bf16 or a block format)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if tname == "f32":
        return x.tobytes()
    if tname == "f16":
        return x.astype(np.float16).tobytes()
    if tname == "bf16":
        return bf16_bits(x).tobytes()
    return QUANTIZERS[tname][0](x)


def dequantize(tname, raw, shape):
    """raw bytes of type tname -> float32 array of shape."""
    if tname == "f32":
        a = np.frombuffer(raw, dtype="<f4")
    elif tname == "f16":
        a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif tname == "bf16":
        a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        a = QUANTIZERS[tname][1](raw)
    return np.asarray(a, dtype=np.float32).reshape(shape)


# ---- tiny Gemma 3 (Hugging Face layout) ---------------------------------------------------------


def gemma3_tensors(cfg, rng):
    """(name, float32 array) of a random Gemma 3 text model, Hugging Face names. Norm weights
    are the w of x * (1 + w): small, around 0."""
    dim, hidden = cfg["hidden_size"], cfg["intermediate_size"]
    heads, kv_heads, head_dim = (cfg["num_attention_heads"], cfg["num_key_value_heads"],
                                 cfg["head_dim"])

    def linear(rows, cols):
        return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(cols ** -0.5)

    def norm(n):
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    yield "model.embed_tokens.weight", rng.standard_normal((cfg["vocab_size"], dim),
                                                           dtype=np.float32) * np.float32(0.1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        yield p + "input_layernorm.weight", norm(dim)
        yield p + "self_attn.q_proj.weight", linear(heads * head_dim, dim)
        yield p + "self_attn.k_proj.weight", linear(kv_heads * head_dim, dim)
        yield p + "self_attn.v_proj.weight", linear(kv_heads * head_dim, dim)
        yield p + "self_attn.o_proj.weight", linear(dim, heads * head_dim)
        yield p + "self_attn.q_norm.weight", norm(head_dim)
        yield p + "self_attn.k_norm.weight", norm(head_dim)
        yield p + "post_attention_layernorm.weight", norm(dim)
        yield p + "pre_feedforward_layernorm.weight", norm(dim)
        yield p + "post_feedforward_layernorm.weight", norm(dim)
        yield p + "mlp.gate_proj.weight", linear(hidden, dim)
        yield p + "mlp.up_proj.weight", linear(hidden, dim)
        yield p + "mlp.down_proj.weight", linear(dim, hidden)
    yield "model.norm.weight", norm(dim)
    if not cfg["tie_word_embeddings"]:
        yield "lm_head.weight", linear(cfg["vocab_size"], dim)


def make_gemma3(out_dir, dim=64, layers=7, heads=2, kv_heads=1, head_dim=32, vocab=300,
                intermediate=128, max_pos=512, sliding_window=8, pattern=3, rope_theta=1e6,
                rope_local=1e4, query_pre_attn_scalar=48.0, final_softcap=None, attn_softcap=None,
                tied=True, norm_eps=1e-6, layer_types=False, rope_linear=None, seed=0):
    """Writes a tiny Gemma 3 text model (config.json, model.safetensors f32); returns the
    config dict. layer_types: write the newer list form instead of sliding_window_pattern."""
    os.makedirs(out_dir, exist_ok=True)
    cfg = {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": dim,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "max_position_embeddings": max_pos,
        "rms_norm_eps": norm_eps,
        "rope_theta": rope_theta,
        "rope_local_base_freq": rope_local,
        "rope_scaling": {"rope_type": "linear", "factor": rope_linear} if rope_linear else None,
        "sliding_window": sliding_window,
        "query_pre_attn_scalar": query_pre_attn_scalar,
        "final_logit_softcapping": final_softcap,
        "attn_logit_softcapping": attn_softcap,
        "hidden_activation": "gelu_pytorch_tanh",
        "attention_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "torch_dtype": "float32",
    }
    if layer_types:
        cfg["layer_types"] = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                              for i in range(layers)]
    else:
        cfg["sliding_window_pattern"] = pattern
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    rng = np.random.default_rng(seed)
    arrays = [(name, a, "float32") for name, a in gemma3_tensors(cfg, rng)]
    make_tiny_model.write_safetensors(os.path.join(out_dir, "model.safetensors"), arrays)
    return cfg


# ---- Hugging Face directory -> GGUF -------------------------------------------------------------

LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    "post_feedforward_layernorm": "post_ffw_norm", "pre_feedforward_layernorm": "ffn_norm",
}


def gguf_name(arch, hf):
    """Hugging Face tensor name -> GGUF name."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
             "output_norm.weight", "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")
    assert parts[0] == "model" and parts[1] == "layers", hf
    layer, base, suffix = parts[2], ".".join(parts[3:-1]), parts[-1]
    if base == "post_attention_layernorm":
        short = "post_attention_norm" if arch == "gemma3" else "ffn_norm"
    else:
        short = LAYER_NAMES[base]
    return f"blk.{layer}.{short}.{suffix}"


def interleave_heads(w, heads):
    """Hugging Face q/k rows -> the GGUF llama order: per head, rows (i, i + head_dim/2) of the
    rotate_half pairing become neighbours (2i, 2i + 1)."""
    rows = w.shape[0]
    head_dim = rows // heads
    return (w.reshape(heads, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def read_safetensors(path):
    """name -> float32 array (f32, f16, bf16 files)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    data, out = blob[8 + n:], {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        raw = data[info["data_offsets"][0]:info["data_offsets"][1]]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif info["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        else:
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        out[name] = a.reshape(info["shape"]).astype(np.float32)
    return out


def tokenizer_metadata(hf_dir, cfg, pre="gpt2"):
    """tokenizer.ggml.* entries from the directory's tokenizer.json (byte-level BPE), or []."""
    path = os.path.join(hf_dir, "tokenizer.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        tok = json.load(f)
    vocab = dict(tok["model"]["vocab"])
    special = set()
    for added in tok.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["id"])
    tokens = [None] * (max(vocab.values()) + 1)
    for s, i in vocab.items():
        tokens[i] = s
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    kv = [("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, pre),
          ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
          ("tokenizer.ggml.token_type", ARRAY, (I32, [3 if i in special else 1
                                                      for i in range(len(tokens))])),
          ("tokenizer.ggml.merges", ARRAY, (STRING, merges))]
    if cfg.get("bos_token_id") is not None:
        kv.append(("tokenizer.ggml.bos_token_id", U32, cfg["bos_token_id"]))
    eos = cfg.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0]
    if eos is not None:
        kv.append(("tokenizer.ggml.eos_token_id", U32, eos))
    return kv


def gguf_content(hf_dir, qtype="f32", norm_type="f32", extra_kv=None):
    """What convert() writes for hf_dir's model (llama / mistral / qwen2 / gemma3_text):
    (metadata items, tensors, stored) with stored = {HF name: float32 weights as the file holds
    them, dequantized, in Hugging Face layout}. qtype: the type of every matrix, or a function
    (HF name) -> type; norms and biases in norm_type."""
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    arch = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2",
            "gemma3_text": "gemma3"}[cfg["model_type"]]
    weights = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    kv = [("general.architecture", STRING, arch), ("general.name", STRING, "tiny " + arch),
          (f"{arch}.context_length", U32, cfg["max_position_embeddings"]),
          (f"{arch}.embedding_length", U32, cfg["hidden_size"]),
          (f"{arch}.block_count", U32, cfg["num_hidden_layers"]),
          (f"{arch}.feed_forward_length", U32, cfg["intermediate_size"]),
          (f"{arch}.attention.head_count", U32, heads),
          (f"{arch}.attention.head_count_kv", U32, kv_heads),
          (f"{arch}.rope.freq_base", F32, cfg.get("rope_theta", 10000.0)),
          (f"{arch}.attention.layer_norm_rms_epsilon", F32, cfg["rms_norm_eps"])]
    if cfg.get("head_dim"):
        kv += [(f"{arch}.attention.key_length", U32, head_dim),
               (f"{arch}.attention.value_length", U32, head_dim)]
    if arch == "gemma3":
        # GGUF readers take Gemma 3's one global layer in 6; a model with another layout has
        # no key to say so
        layers = range(cfg["num_hidden_layers"])
        if "layer_types" in cfg:
            full = [i for i in layers if cfg["layer_types"][i] == "full_attention"]
        else:
            full = [i for i in layers if (i + 1) % cfg.get("sliding_window_pattern", 6) == 0]
        if full != [i for i in layers if (i + 1) % 6 == 0]:
            raise ValueError("GGUF Gemma 3 files imply a global layer every 6th")
        kv.append((f"{arch}.attention.sliding_window", U32, cfg["sliding_window"]))
        if cfg.get("final_logit_softcapping"):
            kv.append((f"{arch}.final_logit_softcapping", F32, cfg["final_logit_softcapping"]))
        if cfg.get("attn_logit_softcapping"):
            kv.append((f"{arch}.attn_logit_softcapping", F32, cfg["attn_logit_softcapping"]))
    kv += tokenizer_metadata(hf_dir, cfg)
    kv += extra_kv or []
    tensors, stored = [], {}
    for name in sorted(weights):
        w = weights[name]
        if arch == "gemma3" and name.endswith("norm.weight"):
            w = w + np.float32(1.0)    # GGUF Gemma files store the 1 + w of x * (1 + w)
        tname = (qtype(name) if callable(qtype) else qtype) if w.ndim == 2 else norm_type
        file_w = w
        if arch == "llama" and (".q_proj." in name or ".k_proj." in name):
            file_w = interleave_heads(w, heads if ".q_proj." in name else kv_heads)
        raw = quantize(tname, file_w)
        tensors.append((gguf_name(arch, name), tname, list(w.shape), raw))
        back = dequantize(tname, raw, w.shape)
        if arch == "llama" and (".q_proj." in name or ".k_proj." in name):
            # the file's rows, back in Hugging Face order
            h = heads if ".q_proj." in name else kv_heads
            back = back.reshape(h, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
        if arch == "gemma3" and name.endswith("norm.weight"):
            back = back - np.float32(1.0)
        stored[name] = back
    return kv, tensors, stored


def convert(hf_dir, out_path, qtype="f32", norm_type="f32", alignment=32, extra_kv=None):
    """Writes hf_dir's model as GGUF (see gguf_content); returns the stored weights."""
    kv, tensors, stored = gguf_content(hf_dir, qtype, norm_type, extra_kv)
    write_gguf(out_path, kv, tensors, alignment=alignment)
    return stored


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the .gguf file to write")
    ap.add_argument("--arch", choices=["llama", "mistral", "qwen2", "gemma3"], default="llama")
    ap.add_argument("--type", default="q8_0", choices=sorted(GGML_TYPES), help="matrix type")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--hf-dir", help="also keep the f32 Hugging Face directory here")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    import tempfile
    hf_dir = a.hf_dir or tempfile.mkdtemp(prefix="tiny-hf-")
    if a.arch == "gemma3":
        make_gemma3(hf_dir, dim=a.dim, layers=a.layers, heads=a.heads, kv_heads=a.kv_heads,
                    head_dim=a.dim // a.heads, vocab=a.vocab, intermediate=a.intermediate,
                    seed=a.seed)
    else:
        make_tiny_model.make_model(hf_dir, arch=a.arch, dim=a.dim, layers=a.layers,
                                   heads=a.heads, kv_heads=a.kv_heads, vocab=a.vocab,
                                   intermediate=a.intermediate, seed=a.seed)
    convert(hf_dir, a.out, a.type)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
