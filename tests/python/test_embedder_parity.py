"""Parity of business-svc's C sentence embedder (driven through build/bin/embed-tool) with an
independent reference: token ids from the `tokenizers` package on the model's tokenizer.json, and
vectors from a float64 numpy BERT (padded batch + additive attention mask, mean pooling, L2
normalization) on the same safetensors weights. The model is all-MiniLM-L6-v2, installed by
deploy/fetch-embedder.sh (TWIN_EMBEDDER_DIR overrides where it lives)."""
import json
import math
import os
import shutil
import subprocess

import numpy as np
import pytest

from twin_testlib import SOURCE_DIR, binary

MODEL_DIR = os.environ.get("TWIN_EMBEDDER_DIR") or os.path.join(SOURCE_DIR, "models", "embedder")

LONG_TEXT = " ".join(
    f"Paragraph {i}: retrieval augmented generation looks up relevant passages, ranks them, and "
    f"writes a prompt that cites each source; the embedding model maps every chunk to a vector."
    for i in range(1, 16))

TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "",
    "   \t\n  ",
    LONG_TEXT,
    "Café naïve résumé Ångström façade coöperate",
    "İstanbul'da ŞEHİR ışık Straße",
    "我爱自然语言处理。東京タワーに行きました",
    "안녕하세요 세계",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "Hello!!! What's up??? (test) [brackets] {braces} $100 #hash @user e-mail: a.b@c.com ~x^ `y` |z|",
    "abc\x07def\u200bghi\u00adjkl\ufffdmno\x1fpqr",
    "[CLS] in the middle [SEP] and [MASK] or [unused0] [PAD]x",
    "I love 🍕 and 🚀! ☺",
    "a" * 150 + " supercalifragilisticexpialidocious " + "b" * 100,
    "3.14159 1,000,000 2024-01-01T12:00:00Z",
    "مرحبا بالعالم",
    "Σίσυφος ΑΘΗΝΑ Привет, мир! नमस्ते दुनिया สวัสดีครับ",
    "Z̴̡a̸l̷g̵o text",
    "𠀀𠀁 豈 丽",
    "a\u00a0b\u2003c\u3000d\u2028e\u0085f\u000bg",
    "line1\nline2\tline3\r\nline4",
]


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir():
    script = os.path.join(SOURCE_DIR, "deploy", "fetch-embedder.sh")
    subprocess.run(["bash", script, MODEL_DIR], check=True, timeout=600)
    return MODEL_DIR


@pytest.fixture(scope="module")
def max_len(model_dir):
    with open(os.path.join(model_dir, "sentence_bert_config.json")) as f:
        return json.load(f)["max_seq_length"]


@pytest.fixture(scope="module")
def reference_tokenizer(model_dir, max_len):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok


@pytest.fixture(scope="module")
def reference_model(model_dir):
    return NumpyBert(model_dir)


@pytest.fixture(scope="module")
def reference_vectors(reference_tokenizer, reference_model):
    return reference_embed(reference_model, reference_tokenizer, TEXTS)


def reference_embed(model, tokenizer, texts, group=4):
    """Reference vectors, run in padded batches of `group` texts of similar length."""
    ids = [tokenizer.encode(t).ids for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    out = [None] * len(texts)
    for k in range(0, len(order), group):
        members = order[k:k + group]
        for i, v in zip(members, model.embed([ids[i] for i in members])):
            out[i] = v
    return np.array(out)


def run_tool(model_dir, texts, *args, raw_input=None):
    data = raw_input if raw_input is not None else json.dumps(texts).encode()
    proc = subprocess.run([binary("embed-tool"), model_dir, *args], input=data,
                          capture_output=True, timeout=600)
    return proc


def embed(model_dir, texts, *args):
    proc = run_tool(model_dir, texts, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    return out, np.array(out["vectors"], dtype=np.float64).reshape(len(texts), out["dim"])


# ------------------------------------------------------------------------------------------------
# numpy reference model
# ------------------------------------------------------------------------------------------------

def erf(x):
    """erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), as numpy has none."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


class NumpyBert:
    """BERT encoder + mean pooling + L2 normalization, float64, following config.json."""

    def __init__(self, model_dir, weights=None):
        from safetensors.numpy import load_file
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        if weights is None:
            weights = load_file(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in weights.items()}

    def layer_norm(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def dense(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed(self, batch_ids):
        w = self.w
        B, L = len(batch_ids), max(len(ids) for ids in batch_ids)
        ids = np.zeros((B, L), dtype=np.int64)
        mask = np.zeros((B, L))
        for b, row in enumerate(batch_ids):
            ids[b, :len(row)] = row
            mask[b, :len(row)] = 1.0
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self.layer_norm(x, "embeddings.LayerNorm")
        D = x.shape[-1]
        H, dh = self.n_heads, D // self.n_heads
        additive = (1.0 - mask)[:, None, None, :] * np.finfo(np.float32).min
        for l in range(self.n_layers):
            p = f"encoder.layer.{l}."

            def heads(t):
                return t.reshape(B, L, H, dh).transpose(0, 2, 1, 3)
            q = heads(self.dense(x, p + "attention.self.query"))
            k = heads(self.dense(x, p + "attention.self.key"))
            v = heads(self.dense(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + additive
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(B, L, D)
            x = self.layer_norm(self.dense(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inter = self.dense(x, p + "intermediate.dense")
            inter = 0.5 * inter * (1.0 + erf(inter / math.sqrt(2.0)))
            x = self.layer_norm(self.dense(inter, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------

def test_reference_erf_is_accurate():
    xs = np.linspace(-6, 6, 2001)
    exact = np.array([math.erf(v) for v in xs])
    assert np.max(np.abs(erf(xs) - exact)) < 2e-7


def test_token_ids_match_tokenizers(model_dir, reference_tokenizer, max_len):
    out, _ = embed(model_dir, TEXTS)
    assert out["max_len"] == max_len == 256
    for text, ours in zip(TEXTS, out["ids"]):
        assert ours == reference_tokenizer.encode(text).ids, f"ids differ for {text!r}"
    long_ids = out["ids"][TEXTS.index(LONG_TEXT)]
    assert len(long_ids) == max_len  # the long text really was truncated


# Blocks whose characters were all assigned, with their present categories, by Unicode 8: the
# reference's character tables are that old, utf8proc's are current, so characters assigned or
# recategorized later (rare scripts' marks and punctuation) may legitimately split differently.
CORE_BLOCKS = [(0x1, 0x530), (0x590, 0x600), (0x900, 0x980), (0xE00, 0xE80), (0x1100, 0x1200),
               (0x1E00, 0x2E00), (0x3000, 0x3100), (0x3400, 0x4DC0), (0x4E00, 0xA000), (0xAC00, 0xD7A4),
               (0xF900, 0xFB00), (0xFE30, 0xFE50), (0xFF00, 0xFFF0), (0x1F300, 0x1F650), (0x20000, 0x2A6E0)]


def tool_ids(model_dir, texts):
    proc = run_tool(model_dir, texts, "--ids-only")
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)["ids"]


def test_token_ids_match_over_code_points(model_dir, reference_tokenizer):
    cps = [c for lo, hi in CORE_BLOCKS for c in range(lo, hi) if c != 0]
    texts = [chr(c) for c in cps] + [f"a{chr(c)}b{chr(c)}" for c in cps]
    ours = tool_ids(model_dir, texts)
    refs = reference_tokenizer.encode_batch(texts)
    bad = [hex(ord(t[-1])) for t, g, r in zip(texts, ours, refs) if g != r.ids]
    assert not bad, f"{len(bad)} code points tokenize differently: {bad[:20]}"

    every = [c for c in range(1, 0x32000) if not 0xD800 <= c < 0xE000]
    texts = [f"a{chr(c)}b{chr(c)}" for c in every]
    ours = tool_ids(model_dir, texts)
    refs = reference_tokenizer.encode_batch(texts)
    n_bad = sum(g != r.ids for g, r in zip(ours, refs))
    print(f"\ncode points U+0001..U+31FFF tokenizing unlike the reference: {n_bad} of {len(every)}")
    assert n_bad < 1000


def test_token_ids_match_on_random_mixed_text(model_dir, reference_tokenizer):
    import random
    pools = [[chr(c) for c in range(lo, hi)] for lo, hi in CORE_BLOCKS if hi - lo < 0x3000]
    pools.append([" ", "\t", "\n", "\u00a0", "\u3000", "\u200b", "\x07", "\ufeff", "\ufffd"])
    pools.append(["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "##", "İ", "ß", "ﬁ", "Ǆ", "e\u0301"])
    rng = random.Random(20240601)
    texts = ["".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 80))) for _ in range(2000)]
    texts += [" ".join(texts[i:i + 12]) for i in range(0, 240, 12)]  # some past max length
    # long texts whose kept tokens span many kilobytes (101-char words are one [UNK] each)
    texts.append(("x" * 101 + " e\u0301\u0301 中 \r\n\t") * 400)
    texts.append(("ab" * 60 + "\u00a0[SEP]") * 3000 + "end")
    ours = tool_ids(model_dir, texts)
    for text, got, ref in zip(texts, ours, reference_tokenizer.encode_batch(texts)):
        assert got == ref.ids, f"ids differ for {text!r}"


def test_vectors_match_numpy_reference(model_dir, reference_vectors):
    out, ours = embed(model_dir, TEXTS)
    assert out["dim"] == 384
    ref = reference_vectors
    cos = cosines(ours, ref)
    print(f"\nC vs numpy over {len(TEXTS)} texts: min cosine {cos.min():.9f} (1 - cos {1 - cos.min():.1e}), "
          f"max abs diff {np.max(np.abs(ours - ref)):.1e}")
    for text, c in zip(TEXTS, cos):
        assert c >= 0.999, f"cosine {c} for {text!r}"
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.max(np.abs(ours - ref)) < 1e-3


def test_many_long_texts_span_several_internal_batches(model_dir, reference_tokenizer, reference_model):
    texts = [f"{i} " + LONG_TEXT[i * 7:] for i in range(10)]  # 10 x 256 tokens: more than one batch
    _, ours = embed(model_dir, texts)
    ref = reference_embed(reference_model, reference_tokenizer, texts)
    assert cosines(ours, ref).min() >= 0.999


def test_batched_equals_one_at_a_time(model_dir):
    _, together = embed(model_dir, TEXTS)
    _, alone = embed(model_dir, TEXTS, "--batch", "1")
    assert np.max(np.abs(together - alone)) < 1e-5


def test_concurrent_calls_agree(model_dir, reference_vectors):
    out, first = embed(model_dir, TEXTS, "--threads", "4", "--batch", "5")
    ref = reference_vectors
    assert len(out["thread_vectors"]) == 3
    for vectors in out["thread_vectors"]:
        other = np.array(vectors).reshape(first.shape)
        assert np.max(np.abs(other - first)) < 1e-5
        assert cosines(other, ref).min() >= 0.999


def test_similar_sentences_are_closer(model_dir):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse.",
             "The stock market fell sharply today."]
    _, v = embed(model_dir, texts)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] > sim[0, 3]


def test_vocab_txt_fallback_gives_same_ids(model_dir, reference_tokenizer, tmp_path):
    for name in os.listdir(model_dir):
        if name != "tokenizer.json":
            os.symlink(os.path.join(model_dir, name), tmp_path / name)
    out, _ = embed(str(tmp_path), TEXTS)
    for text, ours in zip(TEXTS, out["ids"]):
        assert ours == reference_tokenizer.encode(text).ids, f"ids differ for {text!r}"


def bf16_bits(a):
    """float32 array -> bfloat16 bit patterns (round to nearest even)."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype name, shape, raw bytes)."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head + b"".join(blobs))


@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_half_precision_weights(model_dir, reference_tokenizer, dtype, tmp_path):
    from safetensors.numpy import load_file
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    tensors, rounded = {}, {}
    for name, w in weights.items():
        if w.dtype != np.float32:
            continue  # position_ids (I64) is not read
        if dtype == "F16":
            half = w.astype(np.float16)
            tensors[name] = ("F16", w.shape, half.tobytes())
            rounded[name] = half.astype(np.float32)
        else:
            bits = bf16_bits(w)
            tensors["bert." + name] = ("BF16", w.shape, bits.tobytes())  # the prefixed naming
            rounded[name] = (bits.astype(np.uint32) << 16).view(np.float32)
    copy_model(model_dir, tmp_path, skip=("model.safetensors",))
    write_safetensors(tmp_path / "model.safetensors", tensors)
    texts = TEXTS[:6] + [LONG_TEXT]
    _, ours = embed(str(tmp_path), texts)
    ref = reference_embed(NumpyBert(str(tmp_path), rounded), reference_tokenizer, texts)
    assert cosines(ours, ref).min() >= 0.999


# ---- bad inputs get errors that name the problem ------------------------------------------------

def copy_model(model_dir, dst, skip=()):
    for name in os.listdir(model_dir):
        if name in skip:
            continue
        src = os.path.join(model_dir, name)
        if os.path.isdir(src):
            shutil.copytree(src, dst / name)
        elif name == "model.safetensors":
            os.symlink(src, dst / name)
        else:
            shutil.copy(src, dst / name)


def test_missing_directory_names_the_file(tmp_path):
    proc = run_tool(str(tmp_path / "nope"), ["x"])
    assert proc.returncode == 1
    assert "config.json" in proc.stderr.decode()


def test_missing_tokenizer_is_reported(model_dir, tmp_path):
    copy_model(model_dir, tmp_path, skip=("tokenizer.json", "vocab.txt"))
    proc = run_tool(str(tmp_path), ["x"])
    assert proc.returncode == 1
    assert "neither tokenizer.json nor vocab.txt" in proc.stderr.decode()


def test_truncated_weights_name_a_tensor(model_dir, tmp_path):
    copy_model(model_dir, tmp_path, skip=("model.safetensors",))
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        data = f.read()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    proc = run_tool(str(tmp_path), ["x"])
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "model.safetensors" in err and "embeddings.word_embeddings.weight" in err and "past the end" in err


def test_config_shape_mismatch_names_the_tensor(model_dir, tmp_path):
    copy_model(model_dir, tmp_path, skip=("config.json",))
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg["intermediate_size"] = 1024
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    proc = run_tool(str(tmp_path), ["x"])
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "encoder.layer.0.intermediate.dense.weight" in err and "[1536,384]" in err and "[1024, 384]" in err


def test_garbage_header_is_a_format_error(model_dir, tmp_path):
    copy_model(model_dir, tmp_path, skip=("model.safetensors",))
    (tmp_path / "model.safetensors").write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    proc = run_tool(str(tmp_path), ["x"])
    assert proc.returncode == 1
    assert "header length" in proc.stderr.decode()


def test_invalid_utf8_names_the_text(model_dir):
    proc = run_tool(model_dir, None, raw_input=b'["fine", "bad \xff byte"]')
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "text 1" in err and "invalid UTF-8 at byte 4" in err
