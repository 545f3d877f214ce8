"""tests/gpu/hf_models.py — random-weight Llama-family models of named shapes, made with Hugging
Face transformers and written as a model directory our loader reads (config.json without a
tokenizer, bf16 safetensors, sharded with an index above 4 GiB). Used by tests/gpu/e2e_check.py,
tests/bench/gpu/gpu_bench.py and tests/gpu/serve_check.sh (python3 hf_models.py make SHAPE DIR).

Weights are built on the GPU when there is one (the 8B shape's 16 GB in seconds) and written
shard by shard straight from bf16 tensors. Logits are scaled to a standard deviation of about
`logit_std` (4 by default), through the final norm's weight so that a tied embedding's input
side stays as initialised: Hugging Face's initialisation (std 0.02) leaves logits so flat that
the top two tokens are often closer than bf16 rounding, which would make greedy comparisons
mostly about ties. Norm weights are drawn from [0.8, 1.2] so that a misapplied norm shows.
"""
import json
import math
import os
import sys

import torch

# name -> transformers LlamaConfig arguments
SHAPES = {
    # hd 64, GQA 4, untied, odd vocabulary, default rope
    "tiny-a": dict(vocab_size=5003, hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                   num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                   rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False),
    # hd 128, GQA 4, tied, llama3 rope scaling
    "tiny-b": dict(vocab_size=4096, hidden_size=512, intermediate_size=1376, num_hidden_layers=3,
                   num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=2048,
                   rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 1024}),
    # meta-llama/Llama-3.2-1B
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=64, max_position_embeddings=131072, rope_theta=500000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=128000,
                         eos_token_id=128001,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192}),
    # meta-llama/Llama-3.1-8B
    "llama-3.1-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=128, max_position_embeddings=131072, rope_theta=500000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=128000,
                         eos_token_id=128001,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192}),
}

SHARD_BYTES = 4 << 30


def make_config(shape):
    from transformers import LlamaConfig
    cfg = LlamaConfig(**SHAPES[shape])
    cfg.dtype = torch.bfloat16
    return cfg


def build_model(shape, device, seed=0, logit_std=4.0):
    """A bf16 LlamaForCausalLM of the shape with random weights, on device, in eval mode."""
    from transformers import LlamaForCausalLM
    cfg = make_config(shape)
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.8, 1.2)
        # logits = lm_head . (rmsnorm(x) * final_norm): scale the final norm, which leaves a
        # tied embedding's input side alone
        std = model.lm_head.weight.float().std().item()
        model.model.norm.weight.mul_(logit_std / (std * math.sqrt(cfg.hidden_size)))
    return model


def save_model(model, out_dir):
    """config.json + model.safetensors (or shards + index) from the model's bf16 tensors."""
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    cfg = model.config
    state = model.state_dict()
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    names = sorted(state)
    shards, cur, cur_bytes = [], [], 0
    for n in names:
        b = state[n].numel() * state[n].element_size()
        if cur and cur_bytes + b > SHARD_BYTES:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(n)
        cur_bytes += b
    if cur:
        shards.append(cur)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else \
            "model-%05d-of-%05d.safetensors" % (k + 1, len(shards))
        tensors = {n: state[n].detach().to("cpu", copy=True).contiguous() for n in shard}
        save_file(tensors, os.path.join(out_dir, fname), metadata={"format": "pt"})
        for n in shard:
            weight_map[n] = fname
            total += tensors[n].numel() * tensors[n].element_size()
        del tensors
    if len(shards) > 1:
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    cfg.to_json_file(os.path.join(out_dir, "config.json"))
    with open(os.path.join(out_dir, "SHAPE"), "w") as f:
        f.write(shape_key(cfg) + "\n")
    return total


def shape_key(cfg):
    return "%d-%d-%d-%d-%d-%d" % (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size,
                                  cfg.num_hidden_layers, cfg.num_attention_heads,
                                  cfg.num_key_value_heads)


def model_is_current(shape, out_dir):
    """True when out_dir already holds this shape (written completely by save_model)."""
    try:
        with open(os.path.join(out_dir, "SHAPE")) as f:
            return f.read().strip() == shape_key(make_config(shape))
    except OSError:
        return False


def weight_bytes_per_token(cfg):
    """Bytes of weights one decode step reads: every matrix once (the embedding only as the LM
    head when tied; its gathered rows are negligible), bf16."""
    d, h, L, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    hd = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    layer = d * (q + 2 * kv) + q * d + 3 * d * h + 2 * d
    return 2 * (L * layer + v * d + d)


def kv_bytes_per_token(cfg):
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * hd


def main(argv):
    if len(argv) != 4 or argv[1] != "make" or argv[2] not in SHAPES:
        print("usage: hf_models.py make {%s} DIR" % "|".join(SHAPES), file=sys.stderr)
        return 2
    shape, out = argv[2], argv[3]
    if model_is_current(shape, out):
        print("%s: %s already there" % (out, shape))
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(shape, device)
    total = save_model(model, out)
    print("%s: %s, %.2f GB of bf16 weights" % (out, shape, total / 1e9))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
