"""tests/python/test_gguf_tokenizer.py — tokenizers built from GGUF metadata (tokenizer.ggml.*)
against independent references, id for id:
  * model "gpt2" (byte-level BPE with merges) for each pre-tokenizer we know by its
    tokenizer.ggml.pre name — gpt2, smollm, llama-bpe, qwen2 — on vocabularies trained here with
    the Python `tokenizers` package using that family's published pre-tokenizer pipeline; the
    reference is that trained tokenizer;
  * model "llama" (SentencePiece BPE: scores, byte fallback, add_space_prefix on and off),
    trained here with the `sentencepiece` package; the reference is sentencepiece itself;
  * control tokens are special (one id when written in the text, dropped when decoding with
    skipping), user-defined ones plain added tokens;
  * the real files when present: SmolLM2 (gpt2 + smollm) against a `tokenizers` pipeline built
    from the file's vocabulary and merges, Gemma 3 (llama + scores) against a sentencepiece model
    built from the file's pieces, scores and types; <start_of_turn> / <end_of_turn> special.
Texts cover digits, contractions, whitespace runs, newlines, tabs, accents, CJK, emoji, code and
control bytes; each must also decode back to itself.
"""
import io
import os
import subprocess
import sys

import pytest

SOURCE_DIR = os.environ.get("TWIN_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
BIN_DIR = os.environ.get("TWIN_BIN_DIR", os.path.join(SOURCE_DIR, "build", "bin"))
MODELS_DIR = os.environ.get("TWIN_LLM_MODELS", os.path.join(SOURCE_DIR, "models", "llm"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "models"))
import make_tiny_gguf as mg  # noqa: E402
import make_tiny_model  # noqa: E402

TEXTS = [
    "The capital of France is Paris.",
    "Hello, world!  Two spaces and\n\nnewlines\ttabs",
    "Numbers 12345 and 3.14159, 2024-05-17 at 06:45; 1000000 + 42",
    "I'm sure they'LL say it's fine, we'd've DON'T",
    "Café naïve Zürich Ελληνικά 漢字 and 🙂🙂",
    "   leading spaces and trailing   ",
    "def forward(x):\n    return x * 2  # {}[]()<>=+-*/%&|^~",
    "\x01\x02 control bytes \x7f and a\u00a0no-break space",
    "a" * 60,
    "\n\n\n   \n\t\t x",
    "",
]

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
               r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def run_lines(model, texts, *flags):
    """[(ids, decoded text)] for each text, through gguf-tool --tokenize-lines."""
    lines = "".join(t.encode("utf-8").hex() + "\n" for t in texts)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lines-{os.getpid()}.txt")
    with open(path, "w") as f:
        f.write(lines)
    try:
        proc = subprocess.run([os.path.join(BIN_DIR, "gguf-tool"), "--model", str(model),
                               "--tokenize-lines", path, *flags], capture_output=True, text=True,
                              timeout=300)
    finally:
        os.unlink(path)
    assert proc.returncode == 0, proc.stderr
    out = []
    for line in proc.stdout.splitlines():
        ids, hexed = line.split("\t")
        out.append(([int(i) for i in ids.split(",")] if ids else [],
                    bytes.fromhex(hexed).decode("utf-8", "replace")))
    assert len(out) == len(texts)
    return out


# ---- byte-level BPE ------------------------------------------------------------------------------


def pre_tokenizer(pre):
    from tokenizers import Regex, pre_tokenizers
    if pre == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                 use_regex=True)])
    regex = LLAMA3_REGEX if pre == "llama-bpe" else QWEN2_REGEX
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def byte_level_gguf(tok, path, pre):
    """Writes tok's vocabulary (a `tokenizers` byte-level BPE) as a vocabulary-only GGUF."""
    import json
    spec = json.loads(tok.to_str())
    vocab = dict(spec["model"]["vocab"])
    special = {}
    for added in spec["added_tokens"]:
        vocab[added["content"]] = added["id"]
        special[added["id"]] = 3 if added["special"] else 4
    tokens = [None] * len(vocab)
    for s, i in vocab.items():
        tokens[i] = s
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    kv = [("general.architecture", mg.STRING, "llama"),
          ("tokenizer.ggml.model", mg.STRING, "gpt2"), ("tokenizer.ggml.pre", mg.STRING, pre),
          ("tokenizer.ggml.tokens", mg.ARRAY, (mg.STRING, tokens)),
          ("tokenizer.ggml.token_type", mg.ARRAY, (mg.I32, [special.get(i, 1) for i in range(len(tokens))])),
          ("tokenizer.ggml.merges", mg.ARRAY, (mg.STRING, merges)),
          ("tokenizer.ggml.eos_token_id", mg.U32, 0)]
    mg.write_gguf(str(path), kv, [])


@pytest.fixture(scope="module", params=["gpt2", "smollm", "llama-bpe", "qwen2"])
def byte_level(request, tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    pre = request.param
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([make_tiny_model.TRAINING_TEXT, "\n".join(TEXTS)] * 3, trainer)
    tok.add_tokens(["<mark>"])  # a plain added token (user-defined)
    path = tmp_path_factory.mktemp("bpe") / f"{pre}.gguf"
    byte_level_gguf(tok, path, pre)
    return dict(pre=pre, tok=tok, path=path)


def test_byte_level_matches_tokenizers(byte_level):
    tok = byte_level["tok"]
    texts = TEXTS + ["<|im_start|>user\nhi<|im_end|>\n", "a <mark> b<mark>c"]
    got = run_lines(byte_level["path"], texts, "--vocab-only", "--no-special")
    for text, (ids, decoded) in zip(texts, got):
        want = tok.encode(text, add_special_tokens=False).ids
        assert ids == want, f"{byte_level['pre']}: {text!r}\n ours {ids}\n want {want}"
        assert decoded == text


# a vocabulary whose merges cross the boundary another pre-tokenizer would cut at
CHOICE_MATTERS = {"gpt2": ("smollm", "in 2048 and 2024"), "llama-bpe": ("qwen2", "in 2048 and 2024")}


def test_pre_tokenizer_choice_matters(byte_level, tmp_path):
    """The same vocabulary with another pre-tokenizer splits digits differently: the check above
    depends on tokenizer.ggml.pre being followed (gpt2 and llama-bpe vocabularies merge digit
    runs that smollm and qwen2 cut into single digits)."""
    if byte_level["pre"] not in CHOICE_MATTERS:
        pytest.skip("this vocabulary has no merge across the other pre-tokenizer's cuts")
    other, text = CHOICE_MATTERS[byte_level["pre"]]
    path = tmp_path / "other.gguf"
    byte_level_gguf(byte_level["tok"], path, other)
    (ours, _), = run_lines(path, [text], "--vocab-only", "--no-special")
    assert ours != byte_level["tok"].encode(text, add_special_tokens=False).ids


def test_unknown_pre_tokenizer_is_refused(byte_level, tmp_path):
    path = tmp_path / "unknown.gguf"
    byte_level_gguf(byte_level["tok"], path, "mystery-pre")
    proc = subprocess.run([os.path.join(BIN_DIR, "gguf-tool"), "--model", str(path), "--vocab-only",
                           "--tokenize", "x"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "mystery-pre" in proc.stderr and str(path) in proc.stderr


# ---- SentencePiece BPE ---------------------------------------------------------------------------


def sp_gguf(model_proto, path, add_space_prefix, space_user_defined=False):
    """A vocabulary-only GGUF of a sentencepiece model: pieces, scores and types as they are.
    space_user_defined: user-defined pieces of '▁' runs are written with spaces (Gemma files)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString(model_proto)
    tokens = [p.piece.replace("\u2581", " ") if space_user_defined and p.type == 4 else p.piece
              for p in m.pieces]
    kv = [("general.architecture", mg.STRING, "llama"),
          ("tokenizer.ggml.model", mg.STRING, "llama"),
          ("tokenizer.ggml.tokens", mg.ARRAY, (mg.STRING, tokens)),
          ("tokenizer.ggml.scores", mg.ARRAY, (mg.F32, [p.score for p in m.pieces])),
          ("tokenizer.ggml.token_type", mg.ARRAY, (mg.I32, [p.type for p in m.pieces])),
          ("tokenizer.ggml.bos_token_id", mg.U32, m.trainer_spec.bos_id),
          ("tokenizer.ggml.eos_token_id", mg.U32, m.trainer_spec.eos_id),
          ("tokenizer.ggml.unknown_token_id", mg.U32, m.trainer_spec.unk_id),
          ("tokenizer.ggml.add_space_prefix", mg.BOOL, add_space_prefix)]
    mg.write_gguf(str(path), kv, [])


@pytest.fixture(scope="module", params=[True, False], ids=["space-prefix", "no-prefix"])
def sentencepiece_model(request, tmp_path_factory):
    import sentencepiece as spm
    add_prefix = request.param
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter((make_tiny_model.TRAINING_TEXT * 3).splitlines()),
        model_writer=proto, vocab_size=420, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, user_defined_symbols=["<b>", "</b>"],
        control_symbols=["<start_of_turn>", "<end_of_turn>"], add_dummy_prefix=add_prefix,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, minloglevel=2)
    path = tmp_path_factory.mktemp("spm") / "sp.gguf"
    sp_gguf(proto.getvalue(), path, add_prefix)
    return dict(sp=spm.SentencePieceProcessor(model_proto=proto.getvalue()), path=path,
                add_prefix=add_prefix)


def test_sentencepiece_matches(sentencepiece_model):
    sp = sentencepiece_model["sp"]
    texts = [t for t in TEXTS if t]
    got = run_lines(sentencepiece_model["path"], texts, "--vocab-only", "--no-special")
    for text, (ids, decoded) in zip(texts, got):
        want = sp.encode(text)
        assert ids == want, f"{text!r}\n ours {ids}\n want {want}"
        assert decoded == text


def test_sentencepiece_user_defined_tokens(sentencepiece_model):
    """User-defined pieces are cut out of the text first; the pieces between are encoded on
    their own, each getting the space prefix when the model adds one (as llama.cpp and the
    Hugging Face files do; sentencepiece itself prefixes only the start of the text)."""
    sp = sentencepiece_model["sp"]
    (ids, decoded), = run_lines(sentencepiece_model["path"], ["a <b>bold</b> word"],
                                "--vocab-only", "--no-special")
    b, end_b = sp.piece_to_id("<b>"), sp.piece_to_id("</b>")
    assert ids == sp.encode("a ") + [b] + sp.encode("bold") + [end_b] + sp.encode(" word")
    if not sentencepiece_model["add_prefix"]:
        assert ids == sp.encode("a <b>bold</b> word")


def test_sentencepiece_bos_and_control_tokens(sentencepiece_model):
    sp = sentencepiece_model["sp"]
    (ids, decoded), = run_lines(sentencepiece_model["path"],
                                ["<start_of_turn>user\nhi<end_of_turn>"], "--vocab-only")
    start, end = sp.piece_to_id("<start_of_turn>"), sp.piece_to_id("<end_of_turn>")
    assert ids[0] == sp.bos_id() and ids[1] == start and ids[-1] == end
    assert ids[2:-1] == sp.encode("user\nhi")


# ---- the real files ------------------------------------------------------------------------------

SMOLLM = os.path.join(MODELS_DIR, "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA = os.path.join(MODELS_DIR, "gemma-3-270m-q4_k_m.gguf")


@pytest.mark.skipif(not os.path.exists(SMOLLM), reason="SmolLM2 GGUF not fetched")
def test_real_smollm_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models
    kv, _ = mg.read_gguf(SMOLLM)
    assert kv["tokenizer.ggml.pre"] == "smollm"
    tokens = kv["tokenizer.ggml.tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in kv["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizer("smollm")
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, kv["tokenizer.ggml.token_type"]) if ty == 3])
    texts = TEXTS + ["<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"]
    got = run_lines(SMOLLM, texts, "--no-special")
    for text, (ids, decoded) in zip(texts, got):
        assert ids == tok.encode(text, add_special_tokens=False).ids, text
        assert decoded == text
    assert got[-1][0][0] == vocab["<|im_start|>"] == 1


@pytest.mark.skipif(not os.path.exists(GEMMA), reason="Gemma 3 GGUF not fetched")
def test_real_gemma3_tokenizer():
    """Against sentencepiece on a model made of the file's pieces. Gemma files store the
    user-defined whitespace pieces ("  ", "\\n\\n") with real spaces, matched in the text as
    written; sentencepiece matches user-defined pieces after it turned spaces into '▁', so the
    reference model gets those pieces with '▁' for ' '."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb
    kv, _ = mg.read_gguf(GEMMA)
    m = pb.ModelProto()
    for piece, score, typ in zip(kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"],
                                 kv["tokenizer.ggml.token_type"]):
        p = m.pieces.add()
        p.piece, p.score, p.type = (piece.replace(" ", "\u2581") if typ == 4 else piece), score, typ
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id, m.trainer_spec.bos_id = 3, 2
    m.trainer_spec.eos_id, m.trainer_spec.pad_id = 1, 0
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
    texts = [t for t in TEXTS if t]
    got = run_lines(GEMMA, texts + ["<start_of_turn>user\nHi<end_of_turn>\n"], "--no-special")
    for text, (ids, decoded) in zip(texts, got):
        assert ids == sp.encode(text), text
        assert decoded == text
    ids, _ = got[-1]
    assert ids[0] == 105 and ids[-2] == 106  # <start_of_turn>, <end_of_turn>: one id each
    (with_bos, _), = run_lines(GEMMA, ["Hi"])
    assert with_bos[0] == 2  # add_bos_token
