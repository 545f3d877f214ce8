/* tests/gpu/ref.h — plain C references for the CUDA kernels and the CUDA backend's forward pass,
 * written for clarity, not speed: double accumulations, one element at a time, the math as the
 * model defines it. Inputs are host arrays (bf16 as uint16_t bit patterns); every function
 * writes only its outputs. The harnesses compare the device results against these. */
#ifndef TWIN_TESTS_GPU_REF_H
#define TWIN_TESTS_GPU_REF_H

#include <stddef.h>
#include <stdint.h>

#include "llm-svc/model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- scalars -------------------------------------------------------------------------------- */

uint16_t ref_f32_to_bf16(float f);   /* round to nearest even; NaN stays a (quiet) NaN */
float ref_bf16_to_f32(uint16_t h);
float ref_f16_to_f32(uint16_t h);
uint16_t ref_f32_to_f16(float f);    /* round to nearest even */

/* ---- element-wise and per-row ops -------------------------------------------------------------- */

void ref_embed(float *out /* [n][dim] */, const uint16_t *table /* [rows][dim] */,
               const int32_t *ids /* [n] */, int n, int dim);
/* y = x / sqrt(mean(x^2) + eps) * w, before any rounding */
void ref_rmsnorm(float *y /* [n][dim] */, const float *x /* [n][dim] */, const uint16_t *w /* [dim] */,
                 int n, int dim, float eps);
void ref_silu_mul(float *out /* [n][hidden] */, const uint16_t *gate_up /* [n][2*hidden] */, int n,
                  int hidden);

/* ---- rotary embedding and the KV cache (layout: [blocks][n_kv][16][hd]) -------------------------- */

/* inv_freq[i] = theta^(-2i/hd), Llama 3 scaling when cfg->rope_llama3 */
void ref_rope_frequencies(const twin_model_config *cfg, double *inv_freq /* [hd/2] */);
void ref_rope_table(float *cos_sin /* [n][hd/2][2] */, const int32_t *positions /* [n] */,
                    const double *inv_freq /* [hd/2] */, int n, int hd);
/* The contract of twin_cuda_rope_kv_write on host arrays: bias added, q rotated in place in
 * qkv (rounded to bf16), k rotated and v copied to the caches at slot_mapping (rounded). */
void ref_rope_kv_write(uint16_t *qkv /* [n][(nh+2*nkv)*hd] */, const uint16_t *bias /* or NULL */,
                       const float *cos_sin /* [n][hd/2][2] */, const int32_t *slot_mapping /* [n] */,
                       uint16_t *k_cache, uint16_t *v_cache, int n, int nh, int nkv, int hd);

/* ---- attention -------------------------------------------------------------------------------- */

/* Causal attention of the new tokens of the listed sequences (seqs[i], i < n_list) through the
 * paged cache, as twin_cuda_attention_{decode,prefill} define it; out rows of other tokens are
 * untouched. window > 0: only the last `window` positions. */
void ref_attention(float *out /* [rows][nh*hd] */, const uint16_t *q, int q_stride,
                   const uint16_t *k_cache, const uint16_t *v_cache, const int32_t *seqs,
                   int n_list, const int32_t *seq_start, const int32_t *seq_len,
                   const int32_t *block_tables, int max_blocks, int nh, int nkv, int hd,
                   float scale, int window);

/* ---- projections ------------------------------------------------------------------------------- */

/* y[n][m] = x[n][k] . w[m][k]^T (x rows ldx apart), double accumulation */
void ref_gemm(float *y, const uint16_t *x, int ldx, const uint16_t *w, int n, int m, int k);

/* ---- sampling ------------------------------------------------------------------------------------ */

/* Index of the largest value (lowest index among equals; NaN never wins). */
int ref_argmax(const float *logits, int vocab);
/* The distribution twin_cuda_sample draws from: softmax(logits / t) filtered by top-k, top-p
 * (renormalised over the top-k set) and min-p, by sorting. probs[vocab] sums to 1 over the kept
 * tokens, 0 elsewhere. Returns the number kept. */
int ref_sample_distribution(double *probs, const float *logits, int vocab, float t, int top_k,
                            float top_p, float min_p);

/* ---- a whole model --------------------------------------------------------------------------------- */

/* A Llama-family model in fp32 (values already rounded to bf16 by the caller), for the backend
 * test. Shapes as in Hugging Face; biases NULL unless cfg->attn_bias; lm_head == embed when tied. */
typedef struct ref_layer {
  const float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo, *ffn_norm, *w_gate, *w_up, *w_down;
} ref_layer;
typedef struct ref_model {
  twin_model_config cfg;
  const float *embed, *final_norm, *lm_head;
  const ref_layer *layers; /* [n_layers] */
} ref_model;

/* Logits [len - from][vocab] of positions from .. len-1 of the sequence tokens[0..len),
 * recomputed from scratch (no cache), fp32 storage, double dot products. */
void ref_model_logits(const ref_model *m, const int32_t *tokens, int len, int from, float *logits);

#ifdef __cplusplus
}
#endif

#endif
