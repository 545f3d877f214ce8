/* llm-svc/model/weights.h — a set of named tensors memory-mapped from safetensors files
 * (model.safetensors, or shards listed by model.safetensors.index.json) or from a GGUF file.
 * Every header field is validated on open; errors name the file, the tensor and the offset.
 * The set owns its mappings; tensors borrow them until twin_weights_destroy.
 * twin_llama_tensors binds the tensors of a Llama-family model (llama, mistral, qwen2) by
 * name and checks every shape and dtype against the config, for any backend to convert. */
#ifndef TWIN_MODEL_WEIGHTS_H
#define TWIN_MODEL_WEIGHTS_H

#include "common/error.h"
#include "llm-svc/model/config.h"
#include "llm-svc/model/tensor.h"

typedef struct twin_weights twin_weights;

/* dir holds model.safetensors or model.safetensors.index.json + shards (model.safetensors wins
 * when both exist). Missing both: TWIN_ENOTFOUND. */
int twin_weights_open_safetensors_dir(twin_weights **out, const char *dir, twin_err *err);
/* One .safetensors file. */
int twin_weights_open_safetensors_file(twin_weights **out, const char *path, twin_err *err);

/* NULL when absent. Names are the Hugging Face names ("model.layers.0.self_attn.q_proj.weight"). */
const twin_tensor *twin_weights_get(const twin_weights *w, const char *name);
size_t twin_weights_count(const twin_weights *w);
/* Tensors in name order. */
const twin_tensor *twin_weights_at(const twin_weights *w, size_t i);
/* The directory or file the set was opened from (for messages). */
const char *twin_weights_source(const twin_weights *w);
void twin_weights_destroy(twin_weights *w);

/* ---- Llama-family tensor binding ----------------------------------------------------------- */

typedef struct twin_llama_layer_tensors {
  const twin_tensor *attn_norm;   /* [dim]                      input_layernorm */
  const twin_tensor *wq;          /* [n_heads*head_dim][dim] */
  const twin_tensor *wk;          /* [n_kv_heads*head_dim][dim] */
  const twin_tensor *wv;          /* [n_kv_heads*head_dim][dim] */
  const twin_tensor *bq, *bk, *bv;/* [n_heads*head_dim], [n_kv_heads*head_dim] x2; NULL unless
                                     cfg->attn_bias */
  const twin_tensor *wo;          /* [dim][n_heads*head_dim] */
  const twin_tensor *ffn_norm;    /* [dim]                      post_attention_layernorm */
  const twin_tensor *w_gate;      /* [hidden_dim][dim] */
  const twin_tensor *w_up;        /* [hidden_dim][dim] */
  const twin_tensor *w_down;      /* [dim][hidden_dim] */
} twin_llama_layer_tensors;

typedef struct twin_llama_tensors {
  const twin_tensor *embed;       /* [vocab][dim] */
  const twin_tensor *final_norm;  /* [dim] */
  const twin_tensor *lm_head;     /* [vocab][dim]; == embed when cfg->tie_embeddings */
  int n_layers;
  twin_llama_layer_tensors *layers; /* [n_layers], owned */
} twin_llama_tensors;

/* Finds every tensor the config calls for and checks its shape and dtype (f32, f16 or bf16).
 * A missing tensor, a wrong shape or an unsupported dtype is an error naming the tensor, its
 * file and offset. Tensors borrow w. Release with twin_llama_tensors_free. */
int twin_llama_tensors_bind(twin_llama_tensors *out, const twin_weights *w,
                            const twin_model_config *cfg, twin_err *err);
void twin_llama_tensors_free(twin_llama_tensors *t);

#endif
