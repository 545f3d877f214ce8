#!/usr/bin/env python3
"""tests/models/make_tiny_model.py — writes a small random-weight model directory in the real
Hugging Face formats, for tests and benchmarks: config.json, generation_config.json,
model.safetensors (or shards + model.safetensors.index.json) in f32/f16/bf16, tokenizer.json (a
byte-level BPE trained with the `tokenizers` package on a short built-in text) and
tokenizer_config.json with the architecture's special tokens and chat template.

Architectures: llama (optionally llama3 rope scaling, tied or untied embeddings), mistral
(optionally a sliding window), qwen2 (q/k/v biases). Use as a script (--help) or import and call
make_model(out_dir, **options), which returns the config dict it wrote.
"""
import argparse
import json
import os
import sys

import numpy as np
from safetensors import TensorSpec, serialize_file

# ---- architecture details ---------------------------------------------------------------------

SPECIAL_TOKENS = {
    "llama": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
              "<|end_header_id|>", "<|eot_id|>"],
    "mistral": ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
}
# (bos, eos in config.json, eos list in generation_config.json, add bos when encoding)
SPECIAL_IDS = {
    "llama": (0, 1, [1, 4], True),
    "mistral": (1, 2, [2], True),
    "qwen2": (0, 2, [2, 0], False),
}
CHAT_TEMPLATES = {
    "llama": (
        "{{ bos_token }}{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
        "message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
        "{% endif %}"),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
        "{% endif %}{% endfor %}"),
    "qwen2": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
}
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM"}
TORCH_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}

TRAINING_TEXT = """\
The lighthouse keeper wrote in his log every evening, noting the wind, the tide and the ships
that passed the point. Some nights the fog came in so thick that he could not see the lamp from
the foot of the tower, and he would sit by the stove and listen for horns across the water.
In the spring the village repaired its boats, painted the hulls and mended the nets; children
ran along the harbour wall counting gulls. A retrieval system answers questions by first
finding the passages that matter, then asking a language model to write an answer from them.
Numbers like 42, 3.14159 and 2048 appear in logs; so do dates such as 2024-05-17 and times
like 06:45. Café, naïve, Zürich and Ελληνικά test bytes beyond ASCII, as do emoji 🙂 and 漢字.
def forward(x):\n    return x * 2  # code, with indentation and symbols: {}[]()<>=+-*/%&|^~
"""

# ---- weights ------------------------------------------------------------------------------------


def to_bf16_bits(a):
    """float32 array -> uint16 bf16 bit patterns, rounded to nearest even. Finite values
    only (the weights here are), so the uint32 sum cannot overflow."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    u = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (u >> np.uint32(16)).astype(np.uint16)


def stored(a, dtype):
    """(numpy array holding the stored bytes, safetensors dtype name)."""
    if dtype == "f32":
        return np.ascontiguousarray(a, dtype=np.float32), "float32"
    if dtype == "f16":
        return np.ascontiguousarray(a, dtype=np.float16), "float16"
    return to_bf16_bits(a), "bfloat16"


def model_tensors(cfg, rng):
    """Yields (name, float32 array) in checkpoint order. Linear weights ~ N(0, 1/in_features)
    keep activations O(1); norm weights near 1; biases large enough to matter."""
    dim, hidden = cfg["hidden_size"], cfg["intermediate_size"]
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or dim // heads
    vocab = cfg["vocab_size"]

    def linear(rows, cols):
        return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(cols ** -0.5)

    def norm(n):
        return 1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)

    yield "model.embed_tokens.weight", rng.standard_normal((vocab, dim), dtype=np.float32)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        yield p + "input_layernorm.weight", norm(dim)
        yield p + "self_attn.q_proj.weight", linear(heads * head_dim, dim)
        yield p + "self_attn.k_proj.weight", linear(kv_heads * head_dim, dim)
        yield p + "self_attn.v_proj.weight", linear(kv_heads * head_dim, dim)
        if cfg["model_type"] == "qwen2":
            yield p + "self_attn.q_proj.bias", 0.5 * rng.standard_normal(heads * head_dim,
                                                                         dtype=np.float32)
            yield p + "self_attn.k_proj.bias", 0.5 * rng.standard_normal(kv_heads * head_dim,
                                                                         dtype=np.float32)
            yield p + "self_attn.v_proj.bias", 0.5 * rng.standard_normal(kv_heads * head_dim,
                                                                         dtype=np.float32)
        yield p + "self_attn.o_proj.weight", linear(dim, heads * head_dim)
        yield p + "post_attention_layernorm.weight", norm(dim)
        yield p + "mlp.gate_proj.weight", linear(hidden, dim)
        yield p + "mlp.up_proj.weight", linear(hidden, dim)
        yield p + "mlp.down_proj.weight", linear(dim, hidden)
    yield "model.norm.weight", norm(dim)
    if not cfg["tie_word_embeddings"]:
        yield "lm_head.weight", linear(vocab, dim)


def write_safetensors(path, arrays):
    """arrays: list of (name, stored array, dtype name)."""
    specs = {name: TensorSpec(dtype=dt, shape=list(a.shape), data_ptr=a.ctypes.data,
                              data_len=a.nbytes)
             for name, a, dt in arrays}
    serialize_file(specs, path, {"format": "pt"})


def write_weights(out_dir, cfg, dtype, shards, seed):
    rng = np.random.default_rng(seed)
    tensors = [(name,) + stored(a, dtype) for name, a in model_tensors(cfg, rng)]
    if shards <= 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
        return
    per_shard = -(-len(tensors) // shards)
    weight_map, total = {}, 0
    for i in range(shards):
        part = tensors[i * per_shard:(i + 1) * per_shard]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(os.path.join(out_dir, fname), part)
        for name, a, _ in part:
            weight_map[name] = fname
            total += a.nbytes
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


# ---- tokenizer ------------------------------------------------------------------------------------


def write_tokenizer(out_dir, arch, vocab_size, max_pos):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = SPECIAL_TOKENS[arch]
    bos_id, eos_id, _, add_bos = SPECIAL_IDS[arch]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([TRAINING_TEXT] * 4, trainer)
    if tok.get_vocab_size() > vocab_size:
        raise SystemExit(f"vocab {vocab_size} is smaller than the tokenizer's "
                         f"{tok.get_vocab_size()} (256 bytes + specials): use a larger --vocab")
    if add_bos:
        bos = specials[bos_id]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": specials[bos_id],
        "eos_token": specials[eos_id],
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_pos,
        "chat_template": CHAT_TEMPLATES[arch],
        "added_tokens_decoder": {
            str(i): {"content": s, "lstrip": False, "rstrip": False, "normalized": False,
                     "single_word": False, "special": True}
            for i, s in enumerate(specials)
        },
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, indent=2, ensure_ascii=False)


# ---- config -------------------------------------------------------------------------------------


def make_config(arch, dtype, dim, layers, heads, kv_heads, head_dim, vocab, intermediate,
                max_pos, rope_theta, rope_llama3, rope_factor, rope_low, rope_high,
                rope_original_max, tied, sliding_window, norm_eps):
    bos_id, eos_id, _, _ = SPECIAL_IDS[arch]
    cfg = {
        "architectures": [ARCHITECTURES[arch]],
        "model_type": arch,
        "hidden_size": dim,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": max_pos,
        "rms_norm_eps": norm_eps,
        "rope_theta": rope_theta,
        "rope_scaling": None,
        "tie_word_embeddings": tied,
        "vocab_size": vocab,
        "hidden_act": "silu",
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": TORCH_DTYPES[dtype],
        "transformers_version": "4.46.0",
    }
    if head_dim:
        cfg["head_dim"] = head_dim
    if rope_llama3:
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": rope_factor,
                               "low_freq_factor": rope_low, "high_freq_factor": rope_high,
                               "original_max_position_embeddings": rope_original_max}
    if arch == "llama":
        cfg["attention_bias"] = False
        cfg["mlp_bias"] = False
    if arch == "mistral":
        cfg["sliding_window"] = sliding_window or None
    if arch == "qwen2":
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = max_pos
        cfg["max_window_layers"] = layers
    return cfg


def make_model(out_dir, arch="llama", dtype="f32", dim=64, layers=2, heads=4, kv_heads=2,
               head_dim=0, vocab=512, intermediate=128, max_pos=256, rope_theta=10000.0,
               rope_llama3=False, rope_factor=8.0, rope_low=1.0, rope_high=4.0,
               rope_original_max=16, tied=False, sliding_window=0, norm_eps=1e-5, shards=1,
               seed=0, tokenizer=True):
    """Writes the model directory; returns the config dict."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}")
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    os.makedirs(out_dir, exist_ok=True)
    cfg = make_config(arch, dtype, dim, layers, heads, kv_heads, head_dim, vocab, intermediate,
                      max_pos, rope_theta, rope_llama3, rope_factor, rope_low, rope_high,
                      rope_original_max, tied, sliding_window, norm_eps)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    _, _, gen_eos, _ = SPECIAL_IDS[arch]
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": cfg["bos_token_id"], "eos_token_id": gen_eos,
                   "do_sample": True, "temperature": 0.6, "top_p": 0.9,
                   "transformers_version": "4.46.0"}, f, indent=2)
    write_weights(out_dir, cfg, dtype, shards, seed)
    if tokenizer:
        write_tokenizer(out_dir, arch, vocab, max_pos)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--arch", choices=sorted(ARCHITECTURES), default="llama")
    ap.add_argument("--dtype", choices=sorted(TORCH_DTYPES), default="f32")
    ap.add_argument("--dim", type=int, default=64, help="hidden_size")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=0,
                    help="write an explicit head_dim (default: none, i.e. dim/heads)")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--intermediate", type=int, default=128, help="intermediate_size")
    ap.add_argument("--max-pos", type=int, default=256, help="max_position_embeddings")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rope-llama3", action="store_true", help="add llama3 rope_scaling")
    ap.add_argument("--rope-factor", type=float, default=8.0)
    ap.add_argument("--rope-low", type=float, default=1.0, help="low_freq_factor")
    ap.add_argument("--rope-high", type=float, default=4.0, help="high_freq_factor")
    ap.add_argument("--rope-original-max", type=int, default=16,
                    help="original_max_position_embeddings")
    ap.add_argument("--tied", action="store_true", help="tie_word_embeddings (no lm_head)")
    ap.add_argument("--sliding-window", type=int, default=0, help="mistral sliding_window")
    ap.add_argument("--norm-eps", type=float, default=1e-5)
    ap.add_argument("--shards", type=int, default=1, help="split into N safetensors shards")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-tokenizer", action="store_true",
                    help="skip tokenizer.json / tokenizer_config.json")
    a = ap.parse_args(argv)
    make_model(a.out, arch=a.arch, dtype=a.dtype, dim=a.dim, layers=a.layers, heads=a.heads,
               kv_heads=a.kv_heads, head_dim=a.head_dim, vocab=a.vocab,
               intermediate=a.intermediate, max_pos=a.max_pos, rope_theta=a.rope_theta,
               rope_llama3=a.rope_llama3, rope_factor=a.rope_factor, rope_low=a.rope_low,
               rope_high=a.rope_high, rope_original_max=a.rope_original_max, tied=a.tied,
               sliding_window=a.sliding_window, norm_eps=a.norm_eps, shards=a.shards,
               seed=a.seed, tokenizer=not a.no_tokenizer)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
