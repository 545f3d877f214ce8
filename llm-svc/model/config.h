/* llm-svc/model/config.h — the hyper-parameters of a model we can run, read from
 * config.json (+ generation_config.json) or GGUF metadata (gguf.h: twin_gguf_read_config).
 * An architecture we cannot run is refused by name. The loaders also fill the fields that say
 * how to compute (embedding scale, MLP activation, norm weight offset), so backends follow the
 * config rather than test the architecture. */
#ifndef TWIN_MODEL_CONFIG_H
#define TWIN_MODEL_CONFIG_H

#include "common/error.h"
#include "llm-svc/model/tensor.h"

typedef enum {
  TWIN_ARCH_LLAMA = 1,
  TWIN_ARCH_MISTRAL,
  TWIN_ARCH_QWEN2,
  TWIN_ARCH_GEMMA3,
} twin_arch;

#define TWIN_MAX_EOS 8

typedef enum {
  TWIN_MLP_SILU = 0,      /* silu(gate) * up (llama, mistral, qwen2) */
  TWIN_MLP_GELU_TANH = 1, /* gelu(gate), tanh approximation, * up (gemma3: gelu_pytorch_tanh) */
} twin_mlp_act;

typedef struct twin_model_config {
  twin_arch arch;
  char arch_name[32];        /* "llama" | "mistral" | "qwen2" | "gemma3" */
  int vocab_size;
  int dim;                   /* hidden_size */
  int hidden_dim;            /* intermediate_size */
  int n_layers;
  int n_heads;
  int n_kv_heads;
  int head_dim;              /* usually dim / n_heads; explicit in some configs */
  int max_seq_len;           /* max_position_embeddings */
  float rope_theta;
  float norm_eps;            /* rms_norm_eps */
  /* rope_scaling {"rope_type": "llama3", ...}; rope_llama3 = 0 when absent */
  int rope_llama3;
  float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
  int rope_original_max_pos;
  int tie_embeddings;        /* lm_head shares embed_tokens */
  int attn_bias;             /* q/k/v projections carry biases (qwen2) */
  int bos_id;                /* -1 if none */
  int eos_ids[TWIN_MAX_EOS]; /* from config.json and generation_config.json, merged */
  int n_eos;
  twin_dtype dtype;          /* torch_dtype */
  /* Gemma 3 */
  int sliding_window;        /* 0 = none; else a query attends to the last sliding_window
                                positions (itself included); mistral's applies to all layers */
  int sliding_window_pattern;/* 0 = every layer slides; N = every Nth layer is global
                                (layers N-1, 2N-1, ...: twin_layer_is_sliding) */
  float rope_local_theta;    /* rope base of sliding layers when sliding_window_pattern > 0 */
  float query_pre_attn_scalar; /* attention scores scale by its -1/2 power; 0 = head_dim */
  float attn_logit_softcap;  /* 0 = none; else scores = cap * tanh(scores / cap) */
  float final_logit_softcap; /* 0 = none; else logits = cap * tanh(logits / cap) */
  /* how to compute (set by the loaders) */
  float rope_linear_factor;  /* rope_scaling "linear": positions divided by it (gemma3: global
                                layers only); 0 = none */
  float embed_scale;         /* embeddings are multiplied by it (gemma3: sqrt(dim)); 0 = none */
  twin_mlp_act mlp_act;
  float norm_weight_offset;  /* added to every RMSNorm weight: 1 for Hugging Face Gemma 3
                                (x * (1 + w)); 0 otherwise (GGUF Gemma files store 1 + w) */
} twin_model_config;

/* 1 when layer l attends through the sliding window (with the local rope base). */
static inline int twin_layer_is_sliding(const twin_model_config *cfg, int layer) {
  if (cfg->sliding_window <= 0) return 0;
  if (cfg->sliding_window_pattern <= 0) return 1;
  return (layer + 1) % cfg->sliding_window_pattern != 0;
}

/* RoPE inverse frequencies inv_freq [head_dim/2] for base theta; scaled = 1 applies the
 * config's llama3 and linear scaling (global layers), 0 gives the plain frequencies. */
void twin_rope_inv_freq(const twin_model_config *cfg, double theta, int scaled, double *inv_freq);

/* Reads dir/config.json and, if present, dir/generation_config.json. */
int twin_config_load_hf(twin_model_config *cfg, const char *dir, twin_err *err);

#endif
