/* llm-svc/backend/cpu/cpu_backend.h — the CPU backend's private state, shared by its files:
 * the weights in the backend's layout (fused QKV and gate/up; fp32 for float checkpoints, the
 * stored blocks for block-quantized ones), the KV block pool, scratch activations sized for the
 * largest batch, and the thread pool. Not for use outside llm-svc/backend/cpu/: everyone else
 * goes through llm-svc/engine/backend.h. */
#ifndef TWIN_BACKEND_CPU_BACKEND_H
#define TWIN_BACKEND_CPU_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "llm-svc/backend/cpu/cpu_quant.h"
#include "llm-svc/backend/cpu/cpu_threads.h"
#include "llm-svc/engine/backend.h"

#define CPU_MAX_PARTS 3

/* A run of output rows of a matrix held one way: fp32 (converted from f32/f16/bf16) or the
 * checkpoint's blocks. */
typedef struct cpu_part {
  int row0, rows;     /* output rows [row0, row0 + rows) of the matrix */
  float *f32;         /* [rows][cols], or NULL when quantized */
  cpu_qweight q;      /* the blocks when f32 == NULL */
} cpu_part;

/* A weight matrix [rows][cols] as the forward multiplies it: y = x . W^T. Matrices stacked for
 * one product (q, k, v; gate, up) share one part when held alike, else keep a part each (a
 * q4_k_m file stores v in another format than q and k). */
typedef struct cpu_matrix {
  int rows, cols;
  int n_parts;
  cpu_part parts[CPU_MAX_PARTS];
  int needs_a8, needs_a8k; /* activation formats its quantized parts read */
} cpu_matrix;

typedef struct cpu_layer {
  float *attn_norm;   /* [dim] */
  cpu_matrix wqkv;    /* [(n_heads + 2*n_kv_heads)*head_dim][dim]: q rows, then k, then v */
  float *bqkv;        /* [(n_heads + 2*n_kv_heads)*head_dim], or NULL without biases */
  cpu_matrix wo;      /* [dim][n_heads*head_dim] */
  float *ffn_norm;    /* [dim] the norm before the MLP */
  cpu_matrix w_gate_up; /* [2*hidden_dim][dim]: gate rows, then up rows */
  cpu_matrix w_down;  /* [dim][hidden_dim] */
  /* gemma3 (NULL otherwise) */
  float *q_norm, *k_norm;        /* [head_dim] RMS norms of each q and k head */
  float *post_attn_norm;         /* [dim] norm of the attention output */
  float *post_ffn_norm;          /* [dim] norm of the MLP output */
  int sliding;                   /* attends through the sliding window, with the local rope */
} cpu_layer;

/* Activations of one step, each sized for max_tokens_per_step rows. */
typedef struct cpu_scratch {
  float *x;           /* [max_tokens][dim] residual stream */
  float *xn;          /* [max_tokens][dim] RMS-normalized x */
  float *branch;      /* [max_tokens][dim] attention / MLP output before its norm (gemma3) */
  float *qkv;         /* [max_tokens][qkv_dim]: q [n_heads][head_dim], k, v [n_kv_heads][head_dim] */
  float *attn;        /* [max_tokens][n_heads*head_dim] attention output, heads concatenated */
  float *gate_up;     /* [max_tokens][2*hidden_dim] */
  float *ffn;         /* [max_tokens][hidden_dim] silu(gate) * up */
  float *rope_cos;    /* [max_tokens][head_dim/2] cos(position * inv_freq[i]) */
  float *rope_sin;    /* [max_tokens][head_dim/2] */
  float *rope_cos_local; /* [max_tokens][head_dim/2] with the local base (sliding layers), or */
  float *rope_sin_local; /* NULL when every layer uses one base */
  uint8_t *act_a8;    /* [max_tokens][max_cols/32] twin_block_a8: quantized matmul inputs */
  uint8_t *act_a8k;   /* [max_tokens][max_cols/256] twin_block_a8k */
  int32_t *token_seq; /* [max_tokens] the batch sequence each token belongs to */
  float *scores;      /* [n_workers][scores_cap] attention weights, one row per worker */
  size_t scores_cap;  /* grows to the longest context seen */
} cpu_scratch;

typedef struct cpu_backend {
  twin_backend base;  /* first: a twin_backend* is a cpu_backend* */
  cpu_pool *pool;
  int n_threads;
  int qkv_dim;        /* (n_heads + 2*n_kv_heads) * head_dim */
  int q_dim;          /* n_heads * head_dim */
  int kv_dim;         /* n_kv_heads * head_dim */

  void *weights;      /* one allocation; everything below points into it */
  cpu_matrix embed;   /* [vocab][dim]; rows gathered (dequantized when quantized) */
  float *final_norm;  /* [dim] */
  cpu_matrix lm_head; /* [vocab][dim]; the same parts as embed when the embeddings are tied */
  cpu_layer *layers;  /* [n_layers] */
  double *rope_inv_freq; /* [head_dim/2] with llama3 / linear scaling applied when configured */
  double *rope_inv_freq_local; /* [head_dim/2] sliding layers' base, or NULL */
  const cpu_quant_kernels *kernels; /* for the block-quantized parts */
  size_t act_max_cols;  /* widest input of a quantized product (sizes act_a8 / act_a8k) */
  int act_needs_a8, act_needs_a8k;

  float *kv_pool;     /* [n_layers][2 (K, V)][num_blocks][16][n_kv_heads][head_dim] */
  size_t kv_layer_floats; /* num_blocks * 16 * kv_dim: one layer's K (or V) */

  float *scratch_mem; /* one allocation behind s (but scores) */
  cpu_scratch s;
} cpu_backend;

/* K (which = 0) or V (which = 1) of layer l: [num_blocks][16][n_kv_heads][head_dim]. */
static inline float *cpu_kv_cache(const cpu_backend *b, int layer, int which) {
  return b->kv_pool + ((size_t)layer * 2 + (size_t)which) * b->kv_layer_floats;
}

/* ---- the forward (cpu_forward.c): twin_backend_ops.forward ------------------------------- */

int cpu_forward(twin_backend *base, const twin_batch *batch, float *logits, twin_err *err);

/* ---- ops (cpu_ops.c) ----------------------------------------------------------------------- */

/* y[n][out_dim] = beta * y + x[n][in_dim] . w[out_dim][in_dim]^T  (OpenBLAS sgemm) */
void cpu_matmul(float *y, const float *x, const float *w, int n, int out_dim, int in_dim,
                float beta);
/* y[n][m->rows] (row stride ldy) = x[n][m->cols] . W^T (+ y when accumulate), each part by its
 * kind: sgemm for fp32 parts, the quantized product for the others (cpu_linear.c). */
void cpu_linear(cpu_backend *b, float *y, int ldy, const float *x, const cpu_matrix *m, int n,
                int accumulate);
/* out[dim] = row `row` of m, decoded to fp32 (the embedding gather). */
void cpu_matrix_row(const cpu_matrix *m, int row, float *out);
/* y[r] += bias for each of n rows of width dim */
void cpu_add_bias(float *y, const float *bias, int n, int dim);
/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for n rows of width dim */
void cpu_rmsnorm(float *out, const float *x, const float *weight, int n, int dim, float eps);
/* Rotates each head of vec [n_heads][head_dim] in place, pairs (i, i + head_dim/2). */
void cpu_rope(float *vec, const float *cos, const float *sin, int n_heads, int head_dim);
/* out[t][i] = silu(gate_up[t][i]) * gate_up[t][hidden + i], rows spread over the pool */
void cpu_silu_mul(cpu_pool *pool, float *out, const float *gate_up, int n, int hidden);
/* The same with gelu (tanh approximation) for silu. */
void cpu_gelu_tanh_mul(cpu_pool *pool, float *out, const float *gate_up, int n, int hidden);
/* x[i] = cap * tanh(x[i] / cap) for n values */
void cpu_softcap(float *x, size_t n, float cap);
/* dot product of a[n] and b[n] */
float cpu_dot(const float *a, const float *b, int n);

/* ---- attention (cpu_attention.c) ----------------------------------------------------------- */

/* Causal attention of every batch token over its sequence's cached K/V (which already holds
 * this step's keys and values): out [n_tokens][n_heads*head_dim] from the q part of qkv. */
void cpu_paged_attention(cpu_backend *b, int layer, const twin_batch *batch, const float *qkv,
                         float *out);

#endif
