/* llm-svc/model/config.h — the hyper-parameters of a model we can run, read from
 * config.json (+ generation_config.json) or GGUF metadata. An architecture we cannot run is
 * refused by name. */
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
  int sliding_window_pattern;/* 0 = every layer slides; N = every Nth layer is global */
  float rope_local_theta;
  float query_pre_attn_scalar;
  float attn_logit_softcap;  /* 0 = none */
  float final_logit_softcap; /* 0 = none */
} twin_model_config;

/* Reads dir/config.json and, if present, dir/generation_config.json. */
int twin_config_load_hf(twin_model_config *cfg, const char *dir, twin_err *err);

#endif
