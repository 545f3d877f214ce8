"""tests/python/test_model_errors.py — broken model directories give a clear error and a
non-zero exit from llm-run, never a crash: truncated or lying safetensors headers (sizes,
offsets, overlaps, dtypes), missing or malformed config.json, unknown architectures, missing
tensors, shapes that disagree with the config, broken shard indexes.

Each case starts from a valid tiny model (written by tests/models/make_tiny_model.py), breaks
one thing, and checks the exit status, that stderr names the file / tensor / offset at fault,
and that no sanitizer fired. Set TWIN_ASAN_BIN_DIR to the bin/ of a
-DTWIN_SANITIZE=address,undefined build to run the same cases under ASan/UBSan (default:
TWIN_BIN_DIR).
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

SOURCE_DIR = os.environ.get("TWIN_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
BIN_DIR = (os.environ.get("TWIN_ASAN_BIN_DIR") or os.environ.get("TWIN_BIN_DIR")
           or os.path.join(SOURCE_DIR, "build", "bin"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "models"))
import make_tiny_model  # noqa: E402

K_PROJ = "model.layers.0.self_attn.k_proj.weight"
UP_PROJ = "model.layers.0.mlp.up_proj.weight"

# ---- editing a safetensors file -------------------------------------------------------------------


def read_parts(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_parts(path, header, data):
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)


def edit_header(path, edit):
    header, data = read_parts(path)
    edit(header)
    write_parts(path, header, data)


def data_start(path):
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


# ---- the broken models ----------------------------------------------------------------------------
# Each case: fn(model_dir) breaks the model and returns a list of regexes stderr must match.


def truncated_data(d):
    path = os.path.join(d, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    return [r"model\.safetensors: tensor '[^']+'", r"file offset \d+", r"run past the end"]


def truncated_header(d):
    path = os.path.join(d, "model.safetensors")
    with open(path, "r+b") as f:
        f.truncate(100)
    return [r"model\.safetensors: header length \d+ \(at offset 0\) runs past the end"]


def empty_file(d):
    open(os.path.join(d, "model.safetensors"), "wb").close()
    return [r"model\.safetensors: file is 0 bytes"]


def huge_header_length(d):
    path = os.path.join(d, "model.safetensors")
    with open(path, "r+b") as f:
        f.write((1 << 63).to_bytes(8, "little"))
    return [r"header length 9223372036854775808"]


def malformed_header(d):
    path = os.path.join(d, "model.safetensors")
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(b"x")
    return [r"model\.safetensors: header JSON is malformed near file offset 8"]


def garbage_after_header(d):
    path = os.path.join(d, "model.safetensors")
    header, data = read_parts(path)
    text = json.dumps(header).encode() + b"#junk"
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)
    return [r"unexpected bytes after the header JSON at file offset \d+"]


def header_lies_about_size(d):
    path = os.path.join(d, "model.safetensors")
    edit_header(path, lambda h: h[K_PROJ].update(shape=[h[K_PROJ]["shape"][0] + 1,
                                                       h[K_PROJ]["shape"][1]]))
    return [re.escape(f"tensor '{K_PROJ}' at file offset"), r"hold \d+ bytes but shape",
            r"needs \d+"]


def header_offsets_out_of_range(d):
    path = os.path.join(d, "model.safetensors")
    size = os.path.getsize(path)

    def edit(h):
        begin, end = h[UP_PROJ]["data_offsets"]
        h[UP_PROJ]["data_offsets"] = [size, size + end - begin]
    edit_header(path, edit)
    return [re.escape(f"tensor '{UP_PROJ}'"), r"data_offsets \[\d+, \d+\]",
            r"run past the end of the data"]


def overlapping_offsets(d):
    path = os.path.join(d, "model.safetensors")
    edit_header(path, lambda h: h[UP_PROJ].update(
        data_offsets=list(h["model.layers.0.mlp.gate_proj.weight"]["data_offsets"])))
    return [r"overlaps tensor", r"file offset \d+"]


def unknown_dtype(d):
    path = os.path.join(d, "model.safetensors")
    edit_header(path, lambda h: h[K_PROJ].update(dtype="F12"))
    return [re.escape(f"model.safetensors: tensor '{K_PROJ}': unknown dtype 'F12'")]


def integer_weights(d):
    path = os.path.join(d, "model.safetensors")
    edit_header(path, lambda h: h[K_PROJ].update(dtype="I32"))
    return [re.escape(f"tensor '{K_PROJ}' at offset"), r"dtype i32; weights must be"]


def missing_config(d):
    os.remove(os.path.join(d, "config.json"))
    return [r"config\.json: cannot open: No such file"]


def malformed_config(d):
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write('{"model_type": "llama", "hidden_size": 64,,}')
    return [r"config\.json: malformed JSON near byte \d+"]


def unknown_architecture(d):
    path = os.path.join(d, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["model_type"] = "gpt_neox"
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    with open(path, "w") as f:
        json.dump(cfg, f)
    return [r"model_type 'gpt_neox'", r"'GPTNeoXForCausalLM'", r"not supported"]


def missing_tensor(d):
    path = os.path.join(d, "model.safetensors")
    edit_header(path, lambda h: h.pop(UP_PROJ))
    return [re.escape(f"missing tensor '{UP_PROJ}'")]


def shape_disagrees_with_config(d):
    path = os.path.join(d, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    with open(path, "w") as f:
        json.dump(cfg, f)
    return [re.escape(f"tensor '{K_PROJ}' at offset"), r"has shape \[32, 64\]",
            r"config wants \[64, 64\]"]


def untied_without_lm_head(d):
    path = os.path.join(d, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["tie_word_embeddings"] = False
    with open(path, "w") as f:
        json.dump(cfg, f)
    return [r"missing tensor 'lm_head\.weight'"]


def no_weights(d):
    os.remove(os.path.join(d, "model.safetensors"))
    return [r"no model\.safetensors or model\.safetensors\.index\.json"]


def missing_shard(d):
    os.remove(os.path.join(d, "model.safetensors"))
    make_tiny_model.make_model(d, shards=2, tied=True, layers=1, tokenizer=False)
    os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
    return [r"model-00002-of-00002\.safetensors", r"cannot open"]


def index_names_wrong_shard(d):
    os.remove(os.path.join(d, "model.safetensors"))
    make_tiny_model.make_model(d, shards=2, tied=True, layers=1, tokenizer=False)
    index = os.path.join(d, "model.safetensors.index.json")
    with open(index) as f:
        doc = json.load(f)
    doc["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors"
    with open(index, "w") as f:
        json.dump(doc, f)
    return [r"model\.safetensors\.index\.json: tensor 'model\.norm\.weight' is mapped to "
            r"'model-00001-of-00002\.safetensors', which does not hold it"]


def index_escapes_directory(d):
    os.remove(os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {"model.norm.weight": "../model.safetensors"}}, f)
    return [r"must name a file in the model directory"]


CASES = [truncated_data, truncated_header, empty_file, huge_header_length, malformed_header,
         garbage_after_header,
         header_lies_about_size, header_offsets_out_of_range, overlapping_offsets, unknown_dtype,
         integer_weights, missing_config, malformed_config, unknown_architecture, missing_tensor,
         shape_disagrees_with_config, untied_without_lm_head, no_weights, missing_shard,
         index_names_wrong_shard, index_escapes_directory]

# ---- running ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pristine"))
    make_tiny_model.make_model(d, layers=1, tied=True, tokenizer=False)
    return d


def run_llm(model_dir, tmp_path):
    cmd = [os.path.join(BIN_DIR, "llm-run"), "--model", model_dir, "--tokens", "1,2,3",
           "--logits", str(tmp_path / "logits.bin"), "--threads", "2"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def assert_no_sanitizer_report(stderr):
    for marker in ("Sanitizer", "runtime error:", "Segmentation fault"):
        assert marker not in stderr, stderr


def test_pristine_model_runs(pristine, tmp_path):
    proc = run_llm(pristine, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_no_sanitizer_report(proc.stderr)
    assert os.path.getsize(tmp_path / "logits.bin") == 3 * 512 * 4


@pytest.mark.parametrize("breakage", CASES, ids=[c.__name__ for c in CASES])
def test_broken_model_is_refused(pristine, tmp_path, breakage):
    model_dir = str(tmp_path / "model")
    shutil.copytree(pristine, model_dir)
    patterns = breakage(model_dir)
    proc = run_llm(model_dir, tmp_path)
    assert_no_sanitizer_report(proc.stderr)
    assert proc.returncode == 1, f"exit {proc.returncode}: {proc.stderr}"
    assert proc.stderr.startswith("llm-run: error: "), proc.stderr
    assert model_dir in proc.stderr, proc.stderr
    for pattern in patterns:
        assert re.search(pattern, proc.stderr), f"/{pattern}/ not in: {proc.stderr}"


@pytest.mark.parametrize("args, message", [
    (["--tokens", "1,x,3"], r"item 1 \('x,3'\) is not an integer"),
    (["--tokens", "1,512"], r"id 512 \(item 1\) is outside the vocabulary \[0, 512\)"),
    (["--tokens", "-4"], r"id -4"),
    (["--tokens", ""], r"item 0"),
])
def test_bad_token_lists_are_refused(pristine, tmp_path, args, message):
    cmd = [os.path.join(BIN_DIR, "llm-run"), "--model", pristine, "--logits",
           str(tmp_path / "l.bin")] + args
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert_no_sanitizer_report(proc.stderr)
    assert proc.returncode == 1, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr


@pytest.mark.parametrize("args, message", [
    ([], r"--model DIR is required"),
    (["--model", "x"], r"nothing to do"),
    (["--model", "x", "--logits", "f"], r"--logits needs --tokens"),
    (["--model", "x", "--chunk", "0", "--logits", "f", "--tokens", "1"], r"--chunk: '0'"),
    (["--frobnicate"], r"unknown option '--frobnicate'"),
    (["--model"], r"--model needs a value"),
])
def test_bad_usage_exits_2(args, message):
    env = dict(os.environ)
    env.pop("LLM_MODEL", None)
    proc = subprocess.run([os.path.join(BIN_DIR, "llm-run")] + args, capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr


def test_help():
    proc = subprocess.run([os.path.join(BIN_DIR, "llm-run"), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("--model", "--tokens", "--logits", "--chunk", "--threads", "LLM_MODEL"):
        assert flag in proc.stdout
