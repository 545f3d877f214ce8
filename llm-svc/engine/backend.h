/* llm-svc/engine/backend.h — the interface every backend (cpu, cuda) implements.
 * The engine owns scheduling, block tables and the block allocator; a backend owns the weights
 * in its own layout, the storage of the KV block pool, and the forward pass over one batch
 * (logits to the host; a backend may also sample the next tokens on its device).
 * A batch mixes prefill chunks and decode tokens of many sequences (continuous batching). */
#ifndef TWIN_ENGINE_BACKEND_H
#define TWIN_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "llm-svc/model/config.h"
#include "llm-svc/model/weights.h"

#define TWIN_KV_BLOCK_SIZE 16  /* tokens per KV block */

/* One forward step. The tokens of sequence s are tokens[seq_start[s] .. seq_start[s+1]-1]; they
 * sit at consecutive positions ending at seq_len[s]-1, so the sequence's KV cache already holds
 * positions 0 .. seq_len[s]-n_new-1 (cached prefix) and this step writes the rest. Position p of
 * sequence s lives in block block_tables[s*max_blocks + p/16], slot p%16. */
typedef struct twin_batch {
  int n_tokens;                 /* tokens in this step, all sequences together */
  int n_seqs;
  const int32_t *tokens;        /* [n_tokens] */
  const int32_t *positions;     /* [n_tokens] position of each token within its sequence */
  const int32_t *seq_start;     /* [n_seqs + 1] */
  const int32_t *seq_len;       /* [n_seqs] context length after this step */
  const int32_t *block_tables;  /* [n_seqs][max_blocks] KV block ids */
  int max_blocks;               /* row stride of block_tables */
  int all_logits;               /* 1: a row of logits per token; 0: per sequence (its last token) */
} twin_batch;

/* Zero in any field means the backend's default (cpu: kv_fraction 0.5 of MemAvailable after
 * the weights are loaded, max_tokens_per_step 512, max_seqs 64). The CPU backend calls
 * openblas_set_num_threads(threads): a process-wide setting. */
typedef struct twin_backend_opts {
  size_t kv_bytes;              /* KV pool size in bytes; 0 = use kv_fraction */
  double kv_fraction;           /* of free device (or host) memory when kv_bytes == 0 */
  int max_tokens_per_step;      /* largest n_tokens a batch may carry (sizes scratch buffers) */
  int max_seqs;                 /* largest n_seqs */
  int threads;                  /* CPU threads; 0 = all cores */
} twin_backend_opts;

/* Sampling parameters of one sequence for a backend that samples on its device
 * (twin_backend_ops.forward_sample). The engine fills them from the request's
 * twin_sampling_params (sampler.h), which has validated them; the order of operations is
 * sampler.h's steps 2-6: temperature, top-k, top-p over the top-k set, min-p, one draw. */
typedef struct twin_backend_sampling {
  float temperature;          /* <= 0: greedy (argmax, the lowest id among equals) */
  int32_t top_k;              /* <= 0 (or >= vocab): off */
  float top_p;                /* >= 1: off */
  float min_p;                /* <= 0: off */
  uint64_t seed;              /* the random stream's key: one per request */
  uint64_t offset;            /* the draw's index in that stream: the request's tokens generated
                                 so far, so a draw depends on (seed, offset, logits) alone and
                                 not on the rest of the batch */
} twin_backend_sampling;

typedef struct twin_backend twin_backend;

typedef struct twin_backend_ops {
  /* Writes fp32 logits [n_out][vocab_size], n_out = all_logits ? n_tokens : n_seqs.
   * Every sequence carries at least one token. The batch is checked (token ids, positions
   * against seq_len, block ids against num_blocks) and a bad one is TWIN_EINVAL with nothing
   * written. One thread drives a backend at a time. */
  int (*forward)(twin_backend *b, const twin_batch *batch, float *logits, twin_err *err);
  /* Optional (NULL when the backend cannot): the same step with all_logits ignored (treated as
   * 0), then one token per sequence chosen on the device from its last token's logits, which
   * never leave the device: tokens_out[n_seqs]. sampling[n_seqs] is borrowed for the call; a
   * bad value (NaN, a negative temperature or min_p, top_p outside (0, 1]) is TWIN_EINVAL
   * naming the sequence, with nothing written. A sequence mid-prompt gets a token too, which
   * the caller ignores. */
  int (*forward_sample)(twin_backend *b, const twin_batch *batch,
                        const twin_backend_sampling *sampling, int32_t *tokens_out,
                        twin_err *err);
  void (*destroy)(twin_backend *b);
} twin_backend_ops;

struct twin_backend {
  const twin_backend_ops *ops;
  const char *name;                 /* "cpu" | "cuda" */
  twin_model_config cfg;            /* copy of the model's config */
  int num_blocks;                   /* blocks in the KV pool (each TWIN_KV_BLOCK_SIZE tokens) */
  size_t kv_bytes_per_block;        /* K and V, all layers */
  int max_tokens_per_step;
  int max_seqs;
  char weights_dtype[16];           /* as held by the backend: "f32", "bf16", "q4_k" ... */
};

static inline int twin_backend_forward(twin_backend *b, const twin_batch *batch, float *logits,
                                       twin_err *err) {
  return b->ops->forward(b, batch, logits, err);
}
/* 1 when the backend implements forward_sample. */
static inline int twin_backend_can_sample(const twin_backend *b) {
  return b->ops->forward_sample != NULL;
}
static inline int twin_backend_forward_sample(twin_backend *b, const twin_batch *batch,
                                              const twin_backend_sampling *sampling,
                                              int32_t *tokens_out, twin_err *err) {
  if (!b->ops->forward_sample) { /* filled here: C++ harnesses include this header too */
    if (err) {
      err->code = TWIN_EUNSUPPORTED;
      snprintf(err->msg, sizeof err->msg, "backend %s does not sample on its device", b->name);
    }
    return TWIN_EUNSUPPORTED;
  }
  return b->ops->forward_sample(b, batch, sampling, tokens_out, err);
}
static inline void twin_backend_destroy(twin_backend *b) {
  if (b) b->ops->destroy(b);
}

/* The checks every backend runs on a batch first (backend/batch_check.c): TWIN_EINVAL naming
 * the bad field, nothing touched. */
int twin_batch_check(const twin_backend *b, const twin_batch *batch, twin_err *err);

/* Backends. The weights are borrowed only during create (converted into the backend's layout). */
int twin_backend_cpu_create(const twin_model_config *cfg, const twin_weights *w,
                            const twin_backend_opts *opts, twin_backend **out, twin_err *err);
int twin_backend_cuda_create(const twin_model_config *cfg, const twin_weights *w,
                             const twin_backend_opts *opts, twin_backend **out, twin_err *err);

#endif
