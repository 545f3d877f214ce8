/* llm-svc/model/weights.h — a set of named tensors memory-mapped from safetensors files
 * (model.safetensors, or shards listed by model.safetensors.index.json) or from a GGUF file
 * (gguf.h: its tensors under their Hugging Face names, Hugging Face shapes and row order).
 * Every header field is validated on open; errors name the file, the tensor and the offset.
 * The set owns its mappings; tensors borrow them until twin_weights_destroy.
 * twin_llama_tensors binds the tensors of a model (llama, mistral, qwen2 and gemma3) by name
 * and checks every shape and dtype against the config, for any backend to convert. */
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

/* One .gguf file (gguf.c): the tensors under their Hugging Face names. */
int twin_weights_open_gguf(twin_weights **out, const char *path, twin_err *err);

/* A set over tensors another reader parsed: the tensor structs are copied (sorted by name; a
 * name twice is an error); their data stays where it is, held by `owner`, which the set
 * releases with owner_release(owner) when destroyed — or at once when this call fails. */
int twin_weights_create_view(twin_weights **out, const char *source, const twin_tensor *tensors,
                             size_t n, void *owner, void (*owner_release)(void *owner),
                             twin_err *err);

/* NULL when absent. Names are the Hugging Face names ("model.layers.0.self_attn.q_proj.weight"). */
const twin_tensor *twin_weights_get(const twin_weights *w, const char *name);
size_t twin_weights_count(const twin_weights *w);
/* Tensors in name order. */
const twin_tensor *twin_weights_at(const twin_weights *w, size_t i);
/* The directory or file the set was opened from (for messages). */
const char *twin_weights_source(const twin_weights *w);
void twin_weights_destroy(twin_weights *w);

/* ---- Llama-family tensor binding ----------------------------------------------------------- */

/* Norm names are Hugging Face's: in Llama "post_attention_layernorm" is the norm before the
 * MLP (ffn_norm here); in Gemma 3 it is the norm of the attention output (post_attn_norm) and
 * "pre_feedforward_layernorm" the one before the MLP. */
typedef struct twin_llama_layer_tensors {
  const twin_tensor *attn_norm;   /* [dim]                      input_layernorm */
  const twin_tensor *wq;          /* [n_heads*head_dim][dim] */
  const twin_tensor *wk;          /* [n_kv_heads*head_dim][dim] */
  const twin_tensor *wv;          /* [n_kv_heads*head_dim][dim] */
  const twin_tensor *bq, *bk, *bv;/* [n_heads*head_dim], [n_kv_heads*head_dim] x2; NULL unless
                                     cfg->attn_bias */
  const twin_tensor *wo;          /* [dim][n_heads*head_dim] */
  const twin_tensor *ffn_norm;    /* [dim]  llama: post_attention_layernorm;
                                     gemma3: pre_feedforward_layernorm */
  const twin_tensor *w_gate;      /* [hidden_dim][dim] */
  const twin_tensor *w_up;        /* [hidden_dim][dim] */
  const twin_tensor *w_down;      /* [dim][hidden_dim] */
  /* gemma3 only (NULL otherwise) */
  const twin_tensor *q_norm;      /* [head_dim]  self_attn.q_norm, per head */
  const twin_tensor *k_norm;      /* [head_dim]  self_attn.k_norm */
  const twin_tensor *post_attn_norm; /* [dim]  post_attention_layernorm */
  const twin_tensor *post_ffn_norm;  /* [dim]  post_feedforward_layernorm */
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
 * file and offset. Tensors borrow w. Release with twin_llama_tensors_free.
 * This binds the Llama family only (llama, mistral, qwen2) with float weights: the contract of
 * backends that implement exactly that. */
int twin_llama_tensors_bind(twin_llama_tensors *out, const twin_weights *w,
                            const twin_model_config *cfg, twin_err *err);

/* The same for every architecture of config.h (gemma3 included: its extra norms are bound) and
 * every weight dtype of tensor.h: f32, f16, bf16 and the block formats of quant.h (a matrix's
 * rows must be whole blocks). For backends that implement them all (cpu). */
int twin_model_tensors_bind(twin_llama_tensors *out, const twin_weights *w,
                            const twin_model_config *cfg, twin_err *err);
void twin_llama_tensors_free(twin_llama_tensors *t);

#endif
