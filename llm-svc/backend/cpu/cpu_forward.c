/* llm-svc/backend/cpu/cpu_forward.c — the CPU forward pass over one batch (prefill chunks and
 * decode tokens of many sequences together), fp32 activations over fp32 or block-quantized
 * weights: Llama-family layers, and Gemma 3's (scaled embeddings, per-head q/k norms, norms
 * after attention and MLP, GeGLU, sliding and global layers, logit soft-capping). Each
 * sequence reads its cached prefix through its block table and writes this step's keys and
 * values into its blocks before attending, so a chunk's tokens see each other through the
 * cache exactly as later tokens will. The batch is
 * checked first (token ids, positions, block ids) so a bad batch is an error, never a stray
 * read or write. This file is the golden model the CUDA kernels are checked against. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llm-svc/backend/cpu/cpu_backend.h"

/* ---- batch checks -------------------------------------------------------------------------- */

static int check_batch(const cpu_backend *b, const twin_batch *batch, const float *logits,
                       twin_err *err) {
  if (!logits) return twin_err_set(err, TWIN_EINVAL, "batch: logits is NULL");
  return twin_batch_check(&b->base, batch, err);
}

/* One score row per worker, as long as the longest context in the batch. */
static int reserve_scores(cpu_backend *b, const twin_batch *batch, twin_err *err) {
  size_t longest = 0;
  for (int s = 0; s < batch->n_seqs; s++)
    if ((size_t)batch->seq_len[s] > longest) longest = (size_t)batch->seq_len[s];
  if (longest <= b->s.scores_cap) return 0;
  float *grown = realloc(b->s.scores, (size_t)b->n_threads * longest * sizeof *grown);
  if (!grown)
    return twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory for attention scores of "
                        "a %zu-token context", longest);
  b->s.scores = grown;
  b->s.scores_cap = longest;
  return 0;
}

/* ---- steps of the forward ------------------------------------------------------------------ */

/* x = embed[tokens] (* embed_scale), a row decoded at a time */
static void embed_tokens(const cpu_backend *b, const twin_batch *batch, float *x) {
  const size_t dim = (size_t)b->base.cfg.dim;
  const float scale = b->base.cfg.embed_scale;
  for (int t = 0; t < batch->n_tokens; t++) {
    float *row = x + t * dim;
    cpu_matrix_row(&b->embed, batch->tokens[t], row);
    if (scale > 0)
      for (size_t i = 0; i < dim; i++) row[i] *= scale;
  }
}

/* cos/sin(position * inv_freq[i]) per token, shared by every layer of this step (a second
 * table with the local base when sliding layers have their own). */
static void rope_tables(cpu_backend *b, const twin_batch *batch) {
  const int half = b->base.cfg.head_dim / 2;
  for (int t = 0; t < batch->n_tokens; t++) {
    for (int i = 0; i < half; i++) {
      double angle = (double)batch->positions[t] * b->rope_inv_freq[i];
      b->s.rope_cos[(size_t)t * half + i] = (float)cos(angle);
      b->s.rope_sin[(size_t)t * half + i] = (float)sin(angle);
      if (b->rope_inv_freq_local) {
        double local = (double)batch->positions[t] * b->rope_inv_freq_local[i];
        b->s.rope_cos_local[(size_t)t * half + i] = (float)cos(local);
        b->s.rope_sin_local[(size_t)t * half + i] = (float)sin(local);
      }
    }
  }
}

/* Rotates the q and k heads of every token's qkv row. */
static void apply_rope(cpu_backend *b, const cpu_layer *L, int n_tokens, float *qkv) {
  const twin_model_config *cfg = &b->base.cfg;
  const int half = cfg->head_dim / 2;
  const int local = L->sliding && b->rope_inv_freq_local;
  const float *cos_table = local ? b->s.rope_cos_local : b->s.rope_cos;
  const float *sin_table = local ? b->s.rope_sin_local : b->s.rope_sin;
  for (int t = 0; t < n_tokens; t++) {
    float *q = qkv + (size_t)t * b->qkv_dim, *k = q + b->q_dim;
    const float *cos = cos_table + (size_t)t * half, *sin = sin_table + (size_t)t * half;
    cpu_rope(q, cos, sin, cfg->n_heads, cfg->head_dim);
    cpu_rope(k, cos, sin, cfg->n_kv_heads, cfg->head_dim);
  }
}

/* Gemma 3: each q and k head RMS-normalized on its own (before the rope). */
static void norm_heads(const cpu_backend *b, const cpu_layer *L, int n_tokens, float *qkv) {
  const twin_model_config *cfg = &b->base.cfg;
  for (int t = 0; t < n_tokens; t++) {
    float *q = qkv + (size_t)t * b->qkv_dim, *k = q + b->q_dim;
    cpu_rmsnorm(q, q, L->q_norm, cfg->n_heads, cfg->head_dim, cfg->norm_eps);
    cpu_rmsnorm(k, k, L->k_norm, cfg->n_kv_heads, cfg->head_dim, cfg->norm_eps);
  }
}

/* Copies each token's k and v into block block_table[pos/16], slot pos%16, of layer l. */
static void write_kv_cache(cpu_backend *b, int layer, const twin_batch *batch, const float *qkv) {
  float *k_cache = cpu_kv_cache(b, layer, 0), *v_cache = cpu_kv_cache(b, layer, 1);
  const size_t kv_dim = (size_t)b->kv_dim;
  for (int t = 0; t < batch->n_tokens; t++) {
    const int seq = b->s.token_seq[t], pos = batch->positions[t];
    const int32_t block =
        batch->block_tables[(size_t)seq * batch->max_blocks + pos / TWIN_KV_BLOCK_SIZE];
    const size_t slot = (size_t)block * TWIN_KV_BLOCK_SIZE + pos % TWIN_KV_BLOCK_SIZE;
    const float *k = qkv + (size_t)t * b->qkv_dim + b->q_dim, *v = k + kv_dim;
    memcpy(k_cache + slot * kv_dim, k, kv_dim * sizeof *k);
    memcpy(v_cache + slot * kv_dim, v, kv_dim * sizeof *v);
  }
}

/* x += W . in, or with a post-norm (gemma3): x += rmsnorm(W . in) */
static void project_into_residual(cpu_backend *b, const cpu_matrix *w, const float *in,
                                  const float *post_norm, int n) {
  const int dim = b->base.cfg.dim;
  cpu_scratch *s = &b->s;
  if (!post_norm) {
    cpu_linear(b, s->x, dim, in, w, n, 1);
    return;
  }
  cpu_linear(b, s->branch, dim, in, w, n, 0);
  cpu_rmsnorm(s->branch, s->branch, post_norm, n, dim, b->base.cfg.norm_eps);
  for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->branch[i];
}

/* ---- the forward --------------------------------------------------------------------------- */

int cpu_forward(twin_backend *base, const twin_batch *batch, float *logits, twin_err *err) {
  cpu_backend *b = (cpu_backend *)base;
  const twin_model_config *cfg = &b->base.cfg;
  int rc = check_batch(b, batch, logits, err);
  if (rc == 0) rc = reserve_scores(b, batch, err);
  if (rc) return rc;

  const int n = batch->n_tokens, dim = cfg->dim, hidden = cfg->hidden_dim;
  const float eps = cfg->norm_eps;
  cpu_scratch *s = &b->s;
  for (int seq = 0; seq < batch->n_seqs; seq++)
    for (int t = batch->seq_start[seq]; t < batch->seq_start[seq + 1]; t++) s->token_seq[t] = seq;
  rope_tables(b, batch);

  /* x = embed[tokens] (* sqrt(dim) for gemma3) */
  embed_tokens(b, batch, s->x);

  for (int l = 0; l < cfg->n_layers; l++) {
    const cpu_layer *L = &b->layers[l];

    /* attention: x = x + [post_norm](Wo . attention(rope([qk_norm](Wqkv . rmsnorm(x) + bqkv)))) */
    cpu_rmsnorm(s->xn, s->x, L->attn_norm, n, dim, eps);
    cpu_linear(b, s->qkv, b->qkv_dim, s->xn, &L->wqkv, n, 0);
    if (L->bqkv) cpu_add_bias(s->qkv, L->bqkv, n, b->qkv_dim);
    if (L->q_norm) norm_heads(b, L, n, s->qkv);
    apply_rope(b, L, n, s->qkv);
    write_kv_cache(b, l, batch, s->qkv);
    cpu_paged_attention(b, l, batch, s->qkv, s->attn);
    project_into_residual(b, &L->wo, s->attn, L->post_attn_norm, n);

    /* MLP: x = x + [post_norm](Wdown . (act(Wgate . rmsnorm(x)) * (Wup . rmsnorm(x)))) */
    cpu_rmsnorm(s->xn, s->x, L->ffn_norm, n, dim, eps);
    cpu_linear(b, s->gate_up, 2 * hidden, s->xn, &L->w_gate_up, n, 0);
    if (cfg->mlp_act == TWIN_MLP_GELU_TANH) cpu_gelu_tanh_mul(b->pool, s->ffn, s->gate_up, n, hidden);
    else cpu_silu_mul(b->pool, s->ffn, s->gate_up, n, hidden);
    project_into_residual(b, &L->w_down, s->ffn, L->post_ffn_norm, n);
  }

  /* logits = lm_head . rmsnorm(x), for every token or for each sequence's last token */
  int rows = n;
  if (batch->all_logits) {
    cpu_rmsnorm(s->xn, s->x, b->final_norm, n, dim, eps);
  } else {
    rows = batch->n_seqs;
    for (int seq = 0; seq < batch->n_seqs; seq++) {
      const int last = batch->seq_start[seq + 1] - 1;
      cpu_rmsnorm(s->xn + (size_t)seq * dim, s->x + (size_t)last * dim, b->final_norm, 1, dim,
                  eps);
    }
  }
  cpu_linear(b, logits, cfg->vocab_size, s->xn, &b->lm_head, rows, 0);
  if (cfg->final_logit_softcap > 0)
    cpu_softcap(logits, (size_t)rows * cfg->vocab_size, cfg->final_logit_softcap);
  return 0;
}
