/* llm-svc/backend/cpu/cpu_attention.c — causal grouped-query attention over the paged KV cache.
 * A work item is one (token, query head) pair (a decode step has a few heads to spread over
 * the threads, not a few kv heads): the head reads its kv head's keys and values of the
 * sequence block by block through the block table, positions 0 .. the
 * token's own (or the last sliding_window of them, on the layers that slide), with scores
 * scaled by 1/sqrt(head_dim) (or query_pre_attn_scalar^-1/2), soft-capped when configured, a
 * max-subtracted softmax, and the weighted sum of values. Items run on the pool's threads. */
#include <math.h>
#include <string.h>

#include "llm-svc/backend/cpu/cpu_backend.h"

typedef struct attention_job {
  const cpu_backend *b;
  const twin_batch *batch;
  const float *k_cache;   /* [num_blocks][16][n_kv_heads][head_dim] */
  const float *v_cache;   /* [num_blocks][16][n_kv_heads][head_dim] */
  const float *qkv;       /* [n_tokens][qkv_dim] */
  float *out;             /* [n_tokens][n_heads*head_dim] */
  int window;             /* positions a query sees (itself included); 0 = all */
  float scale;            /* applied to q . k */
  float softcap;          /* 0 = none */
} attention_job;

static void attend_token_head(void *ctx, int item, int worker) {
  const attention_job *job = ctx;
  const cpu_backend *b = job->b;
  const twin_model_config *cfg = &b->base.cfg;
  const int head_dim = cfg->head_dim, kv_dim = b->kv_dim;
  const int group = cfg->n_heads / cfg->n_kv_heads; /* query heads per kv head */
  const int token = item / cfg->n_heads, head = item % cfg->n_heads, kv_head = head / group;
  const int seq = b->s.token_seq[token];
  const int pos = job->batch->positions[token];
  const int first = job->window > 0 && pos + 1 > job->window ? pos + 1 - job->window : 0;
  const int32_t *block_table = job->batch->block_tables + (size_t)seq * job->batch->max_blocks;
  const float scale = job->scale, softcap = job->softcap;
  float *scores = b->s.scores + (size_t)worker * b->s.scores_cap; /* [pos + 1 - first] */

  const float *q = job->qkv + (size_t)token * b->qkv_dim + (size_t)head * head_dim;
  float *out = job->out + (size_t)token * b->q_dim + (size_t)head * head_dim;

  /* scores[p] = q . k[p] / sqrt(head_dim), walking the block table 16 positions at a time */
  float max_score = -INFINITY;
  for (int p = first; p <= pos;) {
    const int block = block_table[p / TWIN_KV_BLOCK_SIZE], slot = p % TWIN_KV_BLOCK_SIZE;
    const int run = TWIN_KV_BLOCK_SIZE - slot < pos + 1 - p ? TWIN_KV_BLOCK_SIZE - slot
                                                             : pos + 1 - p;
    const float *k = job->k_cache + ((size_t)block * TWIN_KV_BLOCK_SIZE + slot) * kv_dim +
                     (size_t)kv_head * head_dim;
    for (int i = 0; i < run; i++) {
      float score = cpu_dot(q, k + (size_t)i * kv_dim, head_dim) * scale;
      if (softcap > 0) score = softcap * tanhf(score / softcap);
      scores[p - first + i] = score;
      if (score > max_score) max_score = score;
    }
    p += run;
  }
  /* softmax */
  double sum = 0.0;
  for (int p = first; p <= pos; p++) {
    float e = expf(scores[p - first] - max_score);
    scores[p - first] = e;
    sum += e;
  }
  const float inv_sum = (float)(1.0 / sum);
  /* out = sum_p softmax[p] * v[p] */
  memset(out, 0, (size_t)head_dim * sizeof *out);
  for (int p = first; p <= pos;) {
    const int block = block_table[p / TWIN_KV_BLOCK_SIZE], slot = p % TWIN_KV_BLOCK_SIZE;
    const int run = TWIN_KV_BLOCK_SIZE - slot < pos + 1 - p ? TWIN_KV_BLOCK_SIZE - slot
                                                             : pos + 1 - p;
    const float *v = job->v_cache + ((size_t)block * TWIN_KV_BLOCK_SIZE + slot) * kv_dim +
                     (size_t)kv_head * head_dim;
    for (int i = 0; i < run; i++) {
      const float weight = scores[p - first + i] * inv_sum;
      const float *vi = v + (size_t)i * kv_dim;
      for (int d = 0; d < head_dim; d++) out[d] += weight * vi[d];
    }
    p += run;
  }
}

void cpu_paged_attention(cpu_backend *b, int layer, const twin_batch *batch, const float *qkv,
                         float *out) {
  attention_job job = {
      .b = b,
      .batch = batch,
      .k_cache = cpu_kv_cache(b, layer, 0),
      .v_cache = cpu_kv_cache(b, layer, 1),
      .qkv = qkv,
      .out = out,
      .window = b->layers[layer].sliding ? b->base.cfg.sliding_window : 0,
      .scale = 1.0f / sqrtf(b->base.cfg.query_pre_attn_scalar > 0 ? b->base.cfg.query_pre_attn_scalar
                                                                   : (float)b->base.cfg.head_dim),
      .softcap = b->base.cfg.attn_logit_softcap,
  };
  cpu_pool_run(b->pool, attend_token_head, &job, batch->n_tokens * b->base.cfg.n_heads);
}
