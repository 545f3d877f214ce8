/* llm-svc/backend/cuda/cuda_backend.c — the CUDA backend: weights on the device in one
 * allocation (bf16, or GGUF block formats kept as stored; q/k/v fused into one QKV matrix and
 * gate/up into one gate/up matrix per layer when their storage types agree), the paged KV pool
 * (one allocation), scratch activations sized for the largest step, and the forward pass over a
 * twin_batch: the projections through linear.h (our GEMV kernels for decode, cuBLAS for prefill),
 * our kernels (kernels.h) for the rest. A step's metadata (tokens, positions, cache slots, block tables, the decode list and the
 * prefill tiles) goes to the device in one copy from pinned memory. Everything runs on one
 * stream; the forward ends with one synchronisation. Pure-decode steps (one token per sequence)
 * run as CUDA graphs, one per batch-size bucket (powers of two), captured on first use: their
 * rows are padded to the bucket with empty sequences, and everything that varies between steps
 * (tokens, positions, slots, block tables, the decode split size) is read from device memory.
 * ops->forward_sample runs the same step and samples each sequence's next token on the device
 * (sampling.cu), so only the ids come back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm-svc/backend/cuda/cuda_backend.h"
#include "llm-svc/backend/cuda/cuda_check.h"
#include "llm-svc/backend/cuda/gemm.h"
#include "llm-svc/backend/cuda/kernels.h"
#include "llm-svc/backend/cuda/linear.h"
#include "llm-svc/backend/cuda/profile.h"

#define CUDA_DEFAULT_MAX_TOKENS 2048
#define CUDA_DEFAULT_MAX_SEQS 256
#define CUDA_DEFAULT_KV_FRACTION 0.9
#define CUDA_STAGING_BYTES ((size_t)64 << 20)   /* f32/f16 weights pass through this */
#define CUDA_CUBLAS_WORKSPACE ((size_t)32 << 20)
#define CUDA_MIN_LOGIT_ROWS 64                   /* LM-head rows computed per pass */
#define CUDA_MIN_PARTITION 64                    /* decode split keys, 4-warp form (16 a warp) */
#define CUDA_ALIGN 256                           /* bytes, for every carved array */
#define CUDA_MAX_GRAPHS 32                       /* decode buckets: 1, 2, 4, ... */
#define CUDA_DEQUANT_ELEMS ((size_t)32 << 20)    /* bf16 scratch for block-format prefill */

static void cuda_destroy(twin_backend *base);
static int cuda_forward(twin_backend *base, const twin_batch *batch, float *logits, twin_err *err);
static int cuda_forward_sample(twin_backend *base, const twin_batch *batch,
                               const twin_backend_sampling *sampling, int32_t *tokens_out,
                               twin_err *err);

static const twin_backend_ops cuda_ops = {
    .forward = cuda_forward,
    .forward_sample = cuda_forward_sample,
    .destroy = cuda_destroy,
};

/* ---- state --------------------------------------------------------------------------------- */

/* A projection whose output columns come from one fused matrix or from parts side by side
 * (q | k | v, gate | up) when the checkpoint stores the parts in different block formats. */
typedef struct cuda_fused {
  int n_parts;                /* 1 (fused) or the number of parts */
  twin_cuda_linear part[3];   /* part i fills output columns col[i] .. col[i] + rows - 1 */
  int col[3];
} cuda_fused;

typedef struct cuda_layer {   /* device pointers into the weights allocation */
  twin_bf16 *attn_norm;       /* [dim] */
  cuda_fused qkv;             /* [(n_heads + 2*n_kv_heads)*hd][dim]: q rows, then k, then v */
  twin_bf16 *bqkv;            /* [(n_heads + 2*n_kv_heads)*hd], or NULL without biases */
  twin_cuda_linear wo;        /* [dim][n_heads*hd] */
  twin_bf16 *ffn_norm;        /* [dim] */
  cuda_fused gate_up;         /* [2*hidden][dim]: gate rows, then up rows */
  twin_cuda_linear down;      /* [dim][hidden] */
} cuda_layer;

/* One step's metadata: counts on the host, arrays on the device (carved from meta_dev). */
typedef struct cuda_step {
  int n_tokens, n_seqs;       /* the batch's */
  int rows;                   /* token rows computed: n_tokens, or a pure-decode step's padded
                                 batch size (bucket) when it runs as a CUDA graph */
  int n_last;                 /* rows fed to the LM head when not all_logits: n_seqs or bucket */
  int graph;                  /* graph slot of the bucket, or -1: run eagerly */
  int n_decode;               /* sequences with one new token (and padding): the decode kernel */
  int n_tiles;                /* 64-query tiles of the others: the prefill kernel */
  int max_blocks;             /* row stride of block_tables this step */
  int max_splits;             /* decode split-K grid */
  const int32_t *tokens;      /* [rows] */
  const int32_t *positions;   /* [rows] */
  const int32_t *slots;       /* [rows] block*16 + pos%16; -1 for padding */
  const int32_t *seq_start;   /* [n_last + 1] */
  const int32_t *seq_len;     /* [n_last] 0 for padding */
  const int32_t *last_rows;   /* [n_last] each sequence's last token row */
  const int32_t *decode_seqs; /* [n_decode] */
  const int32_t *partition;   /* [1] decode keys per split */
  const int32_t *tile_seq;    /* [n_tiles] */
  const int32_t *tile_q0;     /* [n_tiles] */
  const int32_t *block_tables;/* [n_last][max_blocks] */
  const void *sampling;       /* sampling parameters of n_last rows (sampling_bytes) */
  char *sampling_host;        /* their pinned twin, filled before upload_step */
  size_t tables_at;           /* upload_step: where the block tables start (int32 entries) */
  int used_blocks;            /* ... and their longest row */
} cuda_step;

typedef struct cuda_backend {
  twin_backend base;          /* first: a twin_backend* is a cuda_backend* */
  int device, num_sms;
  cudaStream_t stream;
  cublasHandle_t cublas;
  void *cublas_workspace;     /* [CUDA_CUBLAS_WORKSPACE] bytes */
  int q_dim, kv_dim, qkv_dim; /* n_heads*hd, n_kv_heads*hd, q_dim + 2*kv_dim */
  int window;                 /* sliding window (0 = none) */
  float attn_scale;           /* 1/sqrt(hd) */

  void *weights;              /* the one weights allocation */
  size_t weights_bytes;
  twin_bf16 *embed;           /* [vocab][dim] bf16 (block formats dequantized at load) */
  twin_bf16 *final_norm;      /* [dim] */
  twin_cuda_linear lm_head;   /* [vocab][dim]; the embed table when tied */
  cuda_layer *layers;         /* [n_layers], host array */
  twin_cuda_linear_ctx lin;   /* what every projection shares (cuBLAS, dequantize scratch) */
  int quantized;              /* some matrix is held in a block format */

  twin_bf16 *kv_pool;         /* [n_layers][K,V][num_blocks][n_kv_heads][16][hd] */
  size_t kv_cache_elems;      /* num_blocks*n_kv_heads*16*hd: one layer's K (or V) */

  void *scratch;              /* the one scratch allocation, carved into: */
  double *inv_freq;           /* [hd/2] rotary frequencies */
  float *x;                   /* [T][dim] residual stream */
  float *delta;               /* [T][dim] output of o_proj / down_proj, added to x */
  float *cos_sin;             /* [T][hd/2][2] */
  twin_bf16 *y;               /* [T][dim] normalised x, input of the next projection */
  twin_bf16 *qkv;             /* [T][qkv_dim] */
  twin_bf16 *attn;            /* [T][q_dim] */
  twin_bf16 *gate_up;         /* [T][2*hidden] */
  twin_bf16 *act;             /* [T][hidden] silu(gate) * up */
  twin_bf16 *dequant;         /* [CUDA_DEQUANT_ELEMS] when quantized (lin.dequant) */
  twin_bf16 *last;            /* [S][dim] rows of y feeding the LM head */
  float *logits;              /* [logit_rows][vocab] */
  float *part_acc;            /* [part_rows][n_heads][hd] decode split partials */
  float *part_ml;             /* [part_rows][n_heads][2] */
  unsigned *split_counters;   /* [S][n_heads] decode splits finished (zero between kernels) */
  int split_combine;          /* the last decode split combines (else a reduce kernel);
                                 TWIN_CUDA_SPLIT_COMBINE=0 off */
  int32_t *meta_dev;          /* [meta_cap] */
  int32_t *ids_dev;           /* [S] */
  int logit_rows, part_rows;
  int max_blocks_cap;         /* ceil(max_seq_len / 16): widest block table */
  size_t meta_cap;            /* int32 entries */

  int fuse;                   /* decode steps of <= TWIN_CUDA_GEMV_MAX_N rows run the fused
                                 projections (every matrix bf16 and fused; TWIN_CUDA_FUSE=0 off) */
  int fuse_head;              /* ... and their LM head reads x with the final norm on its load
                                 (a bf16 head; TWIN_CUDA_FUSE_HEAD=0 off) */
  /* The fused layers' row scales as fixed-point sums of squares (kernels.h: rms_acc): a step's
   * input kernel writes sum_attn for the first q/k/v; o_proj clears it and leaves sum_ffn for
   * gate/up; down clears sum_ffn and leaves sum_attn for the next q/k/v (or the LM head).
   * sum_ffn is zero between steps (and at creation, with sum_attn). */
  uint64_t *sum_attn;         /* [TWIN_CUDA_GEMV_MAX_N] */
  uint64_t *sum_ffn;          /* [TWIN_CUDA_GEMV_MAX_N] */
  uint64_t *greedy_keys;      /* [TWIN_CUDA_GEMV_MAX_N] the normed LM head's argmax keys for the
                                 sample kernel, which puts them back to zero */
  twin_cuda_profile *prof;    /* TWIN_CUDA_PROFILE=1 or step (profile.h), else NULL */

  int use_graphs;             /* 0 when TWIN_CUDA_GRAPHS=0 or TWIN_CUDA_PROFILE=1 */
  int graph_top;              /* largest decode bucket: min(max_seqs, max_tokens_per_step) */
  cudaGraphExec_t graphs[2][CUDA_MAX_GRAPHS]; /* [logits | sampled ids][bucket slot] */
  unsigned char graph_warm[2][CUDA_MAX_GRAPHS]; /* the bucket ran once eagerly */

  int32_t *meta_host;         /* pinned [meta_cap] */
  int32_t *ids_host;          /* pinned [S]: the sampled ids (copied back, or written by the
                                 sample kernel itself: zero_copy) */
  /* Zero copy (TWIN_CUDA_ZERO_COPY=0 off): the sample kernel writes the ids straight into
   * ids_host (mapped), so a sampling step makes no copy back on the stream. */
  int zero_copy;
  int idle;                   /* the stream has been synchronized since a step last enqueued work */
  int32_t *ids_out;           /* where the sample kernels write: ids_host's device view, or ids_dev */
} cuda_backend;

/* ---- carving one allocation into aligned arrays --------------------------------------------- */

typedef struct carver {
  char *base;                 /* NULL while counting */
  size_t used;                /* bytes */
} carver;

static void *carve(carver *c, size_t bytes) {
  void *p = c->base ? c->base + c->used : NULL;
  c->used += (bytes + CUDA_ALIGN - 1) / CUDA_ALIGN * CUDA_ALIGN;
  return p;
}

/* ---- weights ------------------------------------------------------------------------------- */

/* A matrix of rows x cols held as the storage type of t (t may be NULL: bf16). */
static twin_cuda_linear plan_linear(carver *c, const twin_tensor *t, int rows, int cols) {
  twin_cuda_linear L = {.type = twin_cuda_linear_storage(t ? t->dtype : TWIN_DT_BF16),
                        .rows = rows, .cols = cols};
  L.row_bytes = twin_cuda_linear_row_bytes(L.type, cols);
  L.w = carve(c, (size_t)rows * L.row_bytes);
  return L;
}

/* Parts of a fused projection (rows[i] x cols each, tensors t[i]): one matrix when every part
 * has the same storage type (the parts' rows back to back), else one matrix per part. */
static cuda_fused plan_fused(carver *c, const twin_tensor *const *t, const int *rows, int n,
                             int cols) {
  cuda_fused f = {0};
  int same = 1, total = 0;
  for (int i = 0; i < n; i++) {
    total += rows[i];
    if (twin_cuda_linear_storage(t[i]->dtype) != twin_cuda_linear_storage(t[0]->dtype)) same = 0;
  }
  if (same) {
    f.n_parts = 1;
    f.part[0] = plan_linear(c, t[0], total, cols);
    return f;
  }
  f.n_parts = n;
  for (int i = 0, col = 0; i < n; col += rows[i], i++) {
    f.part[i] = plan_linear(c, t[i], rows[i], cols);
    f.col[i] = col;
  }
  return f;
}

/* Places the backend's weights in c (counting only when c->base is NULL); the storage of each
 * matrix follows its tensor's dtype (shapes were checked when binding). */
static void layout_weights(cuda_backend *b, const twin_llama_tensors *t, carver *c) {
  const twin_model_config *cfg = &b->base.cfg;
  const size_t dim = (size_t)cfg->dim, bf = sizeof(twin_bf16);
  const int hidden = cfg->hidden_dim;
  b->embed = carve(c, (size_t)cfg->vocab_size * dim * bf);
  b->final_norm = carve(c, dim * bf);
  /* tied: the bf16 table itself, unless it comes in a block format, which the head then keeps
   * (the gather reads the bf16 copy; decode steps read the blocks, a fraction of the bytes) */
  if (cfg->tie_embeddings && !twin_dtype_is_quantized(t->embed->dtype))
    b->lm_head = (twin_cuda_linear){.w = b->embed, .type = TWIN_DT_BF16, .rows = cfg->vocab_size,
                                    .cols = cfg->dim, .row_bytes = dim * bf};
  else
    b->lm_head = plan_linear(c, cfg->tie_embeddings ? t->embed : t->lm_head, cfg->vocab_size,
                             cfg->dim);
  for (int l = 0; l < cfg->n_layers; l++) {
    cuda_layer *L = &b->layers[l];
    const twin_llama_layer_tensors *T = &t->layers[l];
    L->attn_norm = carve(c, dim * bf);
    const twin_tensor *qkv[3] = {T->wq, T->wk, T->wv};
    const int qkv_rows[3] = {b->q_dim, b->kv_dim, b->kv_dim};
    L->qkv = plan_fused(c, qkv, qkv_rows, 3, cfg->dim);
    L->bqkv = cfg->attn_bias ? carve(c, (size_t)b->qkv_dim * bf) : NULL;
    L->wo = plan_linear(c, T->wo, cfg->dim, b->q_dim);
    L->ffn_norm = carve(c, dim * bf);
    const twin_tensor *gu[2] = {T->w_gate, T->w_up};
    const int gu_rows[2] = {hidden, hidden};
    L->gate_up = plan_fused(c, gu, gu_rows, 2, cfg->dim);
    L->down = plan_linear(c, T->w_down, cfg->dim, hidden);
  }
}

/* Checks that block-format tensor t holds `rows` rows of `cols` elements; *src_row = the bytes of
 * one row in the file. */
static int check_block_rows(const twin_tensor *t, int64_t rows, int cols, size_t *src_row,
                            twin_err *err) {
  *src_row = twin_dtype_bytes_for(t->dtype, cols);
  if (!t->data || *src_row == 0 || t->nbytes < (size_t)rows * *src_row)
    return twin_err_set(err, TWIN_EFORMAT, "cuda backend: tensor '%s' holds %zu bytes, fewer than "
                        "%lld rows of %d %s values need", t->name, t->nbytes, (long long)rows,
                        cols, twin_dtype_name(t->dtype));
  return 0;
}

/* Copies a block-format tensor t (rows of `cols` elements) into its matrix as stored, one row
 * every row_bytes. */
static int upload_blocks(cuda_backend *b, void *dst, size_t row_bytes, const twin_tensor *t,
                         int64_t rows, int cols, twin_err *err) {
  size_t src_row;
  int rc = check_block_rows(t, rows, cols, &src_row, err);
  if (rc) return rc;
  CUDA_CHECK(err, cudaMemcpy2DAsync(dst, row_bytes, t->data, src_row, src_row, (size_t)rows,
                                    cudaMemcpyDefault, b->stream));
  return 0;
}

/* Decodes a block-format tensor t ([rows][cols]) to bf16 in dst through the staging buffer. */
static int upload_dequantized(cuda_backend *b, twin_bf16 *dst, const twin_tensor *t, int64_t rows,
                              int cols, void *staging, twin_err *err) {
  size_t src_row;
  int rc = check_block_rows(t, rows, cols, &src_row, err);
  if (rc) return rc;
  const size_t dev_row = twin_cuda_linear_row_bytes(t->dtype, cols);
  const int64_t band = (int64_t)(CUDA_STAGING_BYTES / dev_row);
  for (int64_t r0 = 0; r0 < rows; r0 += band) {
    const int64_t n = rows - r0 < band ? rows - r0 : band;
    CUDA_CHECK(err, cudaMemcpy2DAsync(staging, dev_row, (const char *)t->data + r0 * src_row,
                                      src_row, src_row, (size_t)n, cudaMemcpyDefault, b->stream));
    CUDA_CHECK(err, twin_cuda_dequantize_bf16(dst + r0 * cols, staging, t->dtype, n, cols,
                                              b->stream));
  }
  return 0;
}

/* Copies tensor t (host memory, or device memory for tests) to dst as bf16: f32/f16 go through
 * the device staging buffer and the conversion kernel, block formats through the dequantizer;
 * all on b->stream, so staging is reused in order. */
static int upload_tensor(cuda_backend *b, twin_bf16 *dst, const twin_tensor *t, void *staging,
                         twin_err *err) {
  const int64_t n = twin_tensor_numel(t);
  size_t esize;
  twin_cuda_src_type src_type = TWIN_CUDA_SRC_F32;
  if (twin_dtype_is_quantized(t->dtype)) {
    const int cols = t->ndim >= 1 ? (int)t->shape[t->ndim - 1] : 0;
    if (cols <= 0 || n % cols != 0)
      return twin_err_set(err, TWIN_EFORMAT, "cuda backend: tensor '%s' has no whole rows",
                          t->name);
    return upload_dequantized(b, dst, t, n / cols, cols, staging, err);
  }
  switch (t->dtype) {
    case TWIN_DT_BF16: esize = 2; break;
    case TWIN_DT_F16: esize = 2; src_type = TWIN_CUDA_SRC_F16; break;
    case TWIN_DT_F32: esize = 4; break;
    default:
      return twin_err_set(err, TWIN_EUNSUPPORTED,
                          "cuda backend: tensor '%s' has dtype %s; the backend loads f32, f16, "
                          "bf16 and the GGUF block formats", t->name, twin_dtype_name(t->dtype));
  }
  if (n <= 0 || t->nbytes < (size_t)n * esize || !t->data)
    return twin_err_set(err, TWIN_EFORMAT,
                        "cuda backend: tensor '%s' holds %zu bytes, fewer than its %lld elements "
                        "of %s need", t->name, t->nbytes, (long long)n, twin_dtype_name(t->dtype));
  if (t->dtype == TWIN_DT_BF16) {
    CUDA_CHECK(err, cudaMemcpyAsync(dst, t->data, (size_t)n * esize, cudaMemcpyDefault,
                                    b->stream));
    return 0;
  }
  const int64_t chunk = (int64_t)(CUDA_STAGING_BYTES / esize);
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t count = n - first < chunk ? n - first : chunk;
    CUDA_CHECK(err, cudaMemcpyAsync(staging, (const char *)t->data + (size_t)first * esize,
                                    (size_t)count * esize, cudaMemcpyDefault, b->stream));
    CUDA_CHECK(err, twin_cuda_convert_to_bf16(dst + first, staging, src_type, (size_t)count,
                                              b->stream));
  }
  return 0;
}

static int check_numel(const twin_tensor *t, int64_t want, const char *role, twin_err *err) {
  if (!t)
    return twin_err_set(err, TWIN_EINVAL, "cuda backend: tensor for %s is missing", role);
  if (twin_tensor_numel(t) != want)
    return twin_err_set(err, TWIN_EFORMAT,
                        "cuda backend: tensor '%s' (%s) has %lld elements, the config wants %lld",
                        t->name, role, (long long)twin_tensor_numel(t), (long long)want);
  return 0;
}

/* Uploads t after checking it has `want` elements (shapes were checked when binding). */
static int place(cuda_backend *b, twin_bf16 *dst, const twin_tensor *t, int64_t want,
                 const char *role, void *staging, twin_err *err) {
  int rc = check_numel(t, want, role, err);
  return rc ? rc : upload_tensor(b, dst, t, staging, err);
}

/* Uploads t as rows first_row .. first_row + rows - 1 of matrix L (its storage type). */
static int place_rows(cuda_backend *b, const twin_cuda_linear *L, int first_row,
                      const twin_tensor *t, int rows, const char *role, void *staging,
                      twin_err *err) {
  int rc = check_numel(t, (int64_t)rows * L->cols, role, err);
  if (rc) return rc;
  char *dst = (char *)L->w + (size_t)first_row * L->row_bytes;
  if (twin_dtype_is_quantized(L->type)) {
    if (t->dtype != L->type)
      return twin_err_set(err, TWIN_EFORMAT, "cuda backend: tensor '%s' (%s) is %s where its "
                          "matrix holds %s", t->name, role, twin_dtype_name(t->dtype),
                          twin_dtype_name(L->type));
    return upload_blocks(b, dst, L->row_bytes, t, rows, L->cols, err);
  }
  return upload_tensor(b, (twin_bf16 *)dst, t, staging, err);
}

/* Uploads the parts of a fused projection (fused: one after another in part 0). */
static int place_fused(cuda_backend *b, const cuda_fused *f, const twin_tensor *const *t,
                       const int *rows, const char *const *roles, int n, void *staging,
                       twin_err *err) {
  for (int i = 0, row = 0; i < n; row += rows[i], i++) {
    const twin_cuda_linear *L = f->n_parts == 1 ? &f->part[0] : &f->part[i];
    int rc = place_rows(b, L, f->n_parts == 1 ? row : 0, t[i], rows[i], roles[i], staging, err);
    if (rc) return rc;
  }
  return 0;
}

/* "bf16", or the block format of the layers' first quantized matrix (+ "*" when they mix). */
static void name_weights_dtype(cuda_backend *b) {
  twin_dtype first = TWIN_DT_BF16;
  int mixed = 0;
  for (int l = 0; l < b->base.cfg.n_layers; l++) {
    const cuda_layer *L = &b->layers[l];
    const twin_cuda_linear *m[8] = {&L->wo, &L->down};
    int n = 2;
    for (int i = 0; i < L->qkv.n_parts; i++) m[n++] = &L->qkv.part[i];
    for (int i = 0; i < L->gate_up.n_parts; i++) m[n++] = &L->gate_up.part[i];
    for (int i = 0; i < n; i++) {
      if (m[i]->type == first) continue;
      if (first == TWIN_DT_BF16) first = m[i]->type;
      else mixed = 1;
    }
  }
  b->quantized = first != TWIN_DT_BF16 || twin_dtype_is_quantized(b->lm_head.type);
  snprintf(b->base.weights_dtype, sizeof b->base.weights_dtype, "%s%s", twin_dtype_name(first),
           mixed ? "*" : "");
}

static int load_weights(cuda_backend *b, const twin_llama_tensors *t, twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const int64_t dim = cfg->dim, hidden = cfg->hidden_dim, vocab = cfg->vocab_size;
  const int64_t q_dim = b->q_dim, kv_dim = b->kv_dim;
  if (t->n_layers != cfg->n_layers || !t->layers)
    return twin_err_set(err, TWIN_EINVAL, "cuda backend: %d bound layers for a %d-layer config",
                        t->n_layers, cfg->n_layers);
  carver counter = {0};
  layout_weights(b, t, &counter);
  b->weights_bytes = counter.used;
  cudaError_t e = cudaMalloc(&b->weights, b->weights_bytes);
  if (e != cudaSuccess) {
    b->weights = NULL;
    return twin_err_set(err, TWIN_ENOMEM, "cuda backend: cannot allocate %.2f GiB of device "
                        "memory for bf16 weights: %s", (double)b->weights_bytes / (1 << 30),
                        cudaGetErrorString(e));
  }
  carver placer = {.base = b->weights};
  layout_weights(b, t, &placer);
  name_weights_dtype(b);

  void *staging = NULL;
  CUDA_CHECK(err, cudaMalloc(&staging, CUDA_STAGING_BYTES));
  int rc = place(b, b->embed, t->embed, vocab * dim, "embed_tokens", staging, err);
  if (!rc) rc = place(b, b->final_norm, t->final_norm, dim, "final norm", staging, err);
  if (!rc && b->lm_head.w != b->embed)
    rc = place_rows(b, &b->lm_head, 0, cfg->tie_embeddings ? t->embed : t->lm_head, (int)vocab,
                    cfg->tie_embeddings ? "embed_tokens (tied LM head)" : "lm_head", staging,
                    err);
  for (int l = 0; l < cfg->n_layers && !rc; l++) {
    const twin_llama_layer_tensors *T = &t->layers[l];
    const cuda_layer *L = &b->layers[l];
    rc = place(b, L->attn_norm, T->attn_norm, dim, "input_layernorm", staging, err);
    const twin_tensor *qkv[3] = {T->wq, T->wk, T->wv};
    const int qkv_rows[3] = {(int)q_dim, (int)kv_dim, (int)kv_dim};
    const char *qkv_roles[3] = {"q_proj", "k_proj", "v_proj"};
    if (!rc) rc = place_fused(b, &L->qkv, qkv, qkv_rows, qkv_roles, 3, staging, err);
    if (!rc && cfg->attn_bias) {
      rc = place(b, L->bqkv, T->bq, q_dim, "q_proj bias", staging, err);
      if (!rc) rc = place(b, L->bqkv + q_dim, T->bk, kv_dim, "k_proj bias", staging, err);
      if (!rc) rc = place(b, L->bqkv + q_dim + kv_dim, T->bv, kv_dim, "v_proj bias", staging, err);
    }
    if (!rc) rc = place_rows(b, &L->wo, 0, T->wo, (int)dim, "o_proj", staging, err);
    if (!rc) rc = place(b, L->ffn_norm, T->ffn_norm, dim, "post_attention_layernorm", staging, err);
    const twin_tensor *gu[2] = {T->w_gate, T->w_up};
    const int gu_rows[2] = {(int)hidden, (int)hidden};
    const char *gu_roles[2] = {"gate_proj", "up_proj"};
    if (!rc) rc = place_fused(b, &L->gate_up, gu, gu_rows, gu_roles, 2, staging, err);
    if (!rc) rc = place_rows(b, &L->down, 0, T->w_down, (int)dim, "down_proj", staging, err);
    if (rc) twin_err_wrap(err, "layer %d", l);
  }
  /* the staging buffer may still be read by queued conversions */
  cudaError_t sync = cudaStreamSynchronize(b->stream);
  cudaFree(staging);
  if (!rc && sync != cudaSuccess)
    rc = twin_cuda_fail(err, sync, "cudaStreamSynchronize(weights upload)", __FILE__, __LINE__);
  return rc;
}

/* ---- scratch, metadata and the KV pool ------------------------------------------------------ */

static size_t sampling_bytes(int max_seqs) {
  /* temperature, top_k, top_p, min_p (4 bytes each), then seed, offset (8 bytes each) */
  return (size_t)max_seqs * (4 * 4 + 2 * 8);
}

static void layout_scratch(cuda_backend *b, carver *c) {
  const twin_model_config *cfg = &b->base.cfg;
  const size_t T = (size_t)b->base.max_tokens_per_step, S = (size_t)b->base.max_seqs;
  const size_t dim = (size_t)cfg->dim, hidden = (size_t)cfg->hidden_dim, bf = sizeof(twin_bf16);
  b->inv_freq = carve(c, (size_t)(cfg->head_dim / 2) * sizeof(double));
  b->x = carve(c, T * dim * sizeof(float));
  b->delta = carve(c, T * dim * sizeof(float));
  b->cos_sin = carve(c, T * (size_t)cfg->head_dim * sizeof(float));
  b->y = carve(c, T * dim * bf);
  b->qkv = carve(c, T * (size_t)b->qkv_dim * bf);
  b->attn = carve(c, T * (size_t)b->q_dim * bf);
  b->gate_up = carve(c, T * 2 * hidden * bf);
  b->act = carve(c, T * hidden * bf);
  b->dequant = b->quantized ? carve(c, CUDA_DEQUANT_ELEMS * bf) : NULL;
  b->last = carve(c, S * dim * bf);
  b->logits = carve(c, (size_t)b->logit_rows * cfg->vocab_size * sizeof(float));
  b->part_acc = carve(c, (size_t)b->part_rows * b->q_dim * sizeof(float));
  b->part_ml = carve(c, (size_t)b->part_rows * cfg->n_heads * 2 * sizeof(float));
  b->meta_dev = carve(c, b->meta_cap * sizeof(int32_t));
  b->ids_dev = carve(c, S * sizeof(int32_t));
  b->sum_attn = carve(c, TWIN_CUDA_GEMV_MAX_N * sizeof(uint64_t));
  b->sum_ffn = carve(c, TWIN_CUDA_GEMV_MAX_N * sizeof(uint64_t));
  b->greedy_keys = carve(c, TWIN_CUDA_GEMV_MAX_N * sizeof(uint64_t));
  b->split_counters = carve(c, S * (size_t)cfg->n_heads * sizeof(unsigned));
}

static int allocate_scratch(cuda_backend *b, twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const size_t T = (size_t)b->base.max_tokens_per_step, S = (size_t)b->base.max_seqs;
  b->logit_rows = b->base.max_seqs > CUDA_MIN_LOGIT_ROWS ? b->base.max_seqs : CUDA_MIN_LOGIT_ROWS;
  b->part_rows = 4 * b->base.max_seqs > 2 * b->num_sms ? 4 * b->base.max_seqs : 2 * b->num_sms;
  const int max_seq_len = cfg->max_seq_len > 0 ? cfg->max_seq_len : 4096;
  b->max_blocks_cap = (max_seq_len + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE;
  /* tokens, positions, slots | seq_start, seq_len, last rows, decode list | partition | tiles |
   * sampling parameters, 8-byte aligned | block tables (see prepare_step); a graph bucket is at
   * most min(S, T) rows */
  b->meta_cap = 3 * T + 4 * S + 2 + 2 * (T / TWIN_CUDA_PREFILL_TILE + S) + 1 +
                sampling_bytes((int)S) / sizeof(int32_t) + S * (size_t)b->max_blocks_cap;

  carver counter = {0};
  layout_scratch(b, &counter);
  cudaError_t e = cudaMalloc(&b->scratch, counter.used);
  if (e != cudaSuccess) {
    b->scratch = NULL;
    return twin_err_set(err, TWIN_ENOMEM, "cuda backend: cannot allocate %.2f GiB of scratch for "
                        "%zu tokens and %zu sequences a step: %s",
                        (double)counter.used / (1 << 30), T, S, cudaGetErrorString(e));
  }
  carver placer = {.base = b->scratch};
  layout_scratch(b, &placer);
  CUDA_CHECK(err, cudaMemset(b->sum_attn, 0, TWIN_CUDA_GEMV_MAX_N * sizeof(uint64_t)));
  CUDA_CHECK(err, cudaMemset(b->sum_ffn, 0, TWIN_CUDA_GEMV_MAX_N * sizeof(uint64_t)));
  CUDA_CHECK(err, cudaMemset(b->greedy_keys, 0, TWIN_CUDA_GEMV_MAX_N * sizeof(uint64_t)));
  CUDA_CHECK(err, cudaMemset(b->split_counters, 0, S * (size_t)cfg->n_heads * sizeof(unsigned)));
  b->lin.dequant = b->dequant;
  b->lin.dequant_elems = b->dequant ? CUDA_DEQUANT_ELEMS : 0;
  CUDA_CHECK(err, cudaMallocHost((void **)&b->meta_host, b->meta_cap * sizeof(int32_t)));
  CUDA_CHECK(err, cudaMallocHost((void **)&b->ids_host, S * sizeof *b->ids_host));
  b->ids_out = b->ids_dev;
  if (b->zero_copy) {
    void *ids = NULL;
    CUDA_CHECK(err, cudaHostGetDevicePointer(&ids, b->ids_host, 0));
    b->ids_out = ids;
  }

  double *inv_freq = malloc((size_t)(cfg->head_dim / 2) * sizeof *inv_freq);
  if (!inv_freq) return twin_err_set(err, TWIN_ENOMEM, "cuda backend: out of memory");
  twin_rope_inv_freq(cfg, cfg->rope_theta, 1, inv_freq);
  e = cudaMemcpy(b->inv_freq, inv_freq, (size_t)(cfg->head_dim / 2) * sizeof *inv_freq,
                 cudaMemcpyHostToDevice);
  free(inv_freq);
  if (e != cudaSuccess) return twin_cuda_fail(err, e, "cudaMemcpy(inv_freq)", __FILE__, __LINE__);
  return 0;
}

static int allocate_kv_pool(cuda_backend *b, const twin_backend_opts *opts, twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const size_t per_block = (size_t)cfg->n_layers * 2 * TWIN_KV_BLOCK_SIZE * (size_t)b->kv_dim *
                           sizeof(twin_bf16);
  size_t budget = opts->kv_bytes;
  if (budget == 0) {
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(err, cudaMemGetInfo(&free_bytes, &total_bytes));
    const double fraction = opts->kv_fraction > 0 && opts->kv_fraction <= 1
                                ? opts->kv_fraction : CUDA_DEFAULT_KV_FRACTION;
    budget = (size_t)(fraction * (double)free_bytes);
  }
  size_t blocks = budget / per_block;
  if (blocks > INT32_MAX / TWIN_KV_BLOCK_SIZE) blocks = INT32_MAX / TWIN_KV_BLOCK_SIZE;
  if (blocks == 0)
    return twin_err_set(err, TWIN_EINVAL,
                        "cuda backend: a KV budget of %zu bytes holds no block (one block is %zu "
                        "bytes: %d layers x K,V x 16 tokens x %d kv dims x bf16)",
                        budget, per_block, cfg->n_layers, b->kv_dim);
  cudaError_t e = cudaMalloc((void **)&b->kv_pool, blocks * per_block);
  if (e != cudaSuccess) {
    b->kv_pool = NULL;
    return twin_err_set(err, TWIN_ENOMEM, "cuda backend: cannot allocate a KV pool of %zu blocks "
                        "(%.2f GiB): %s", blocks, (double)(blocks * per_block) / (1 << 30),
                        cudaGetErrorString(e));
  }
  b->base.num_blocks = (int)blocks;
  b->base.kv_bytes_per_block = per_block;
  b->kv_cache_elems = blocks * TWIN_KV_BLOCK_SIZE * (size_t)b->kv_dim;
  return 0;
}

static twin_bf16 *k_cache(const cuda_backend *b, int layer) {
  return b->kv_pool + (size_t)(2 * layer) * b->kv_cache_elems;
}
static twin_bf16 *v_cache(const cuda_backend *b, int layer) {
  return b->kv_pool + (size_t)(2 * layer + 1) * b->kv_cache_elems;
}

/* ---- one step's metadata ------------------------------------------------------------------ */

static int check_batch(const cuda_backend *b, const twin_batch *batch, twin_err *err) {
  int rc = twin_batch_check(&b->base, batch, err);
  if (rc) return rc;
  const long model_slots = (long)b->max_blocks_cap * TWIN_KV_BLOCK_SIZE;
  for (int s = 0; s < batch->n_seqs; s++)
    if (batch->seq_len[s] > model_slots)
      return twin_err_set(err, TWIN_EINVAL,
                          "batch: sequence %d: seq_len %d exceeds the model's max_seq_len %d", s,
                          batch->seq_len[s], b->base.cfg.max_seq_len);
  return 0;
}

/* Keys the decode kernel reads for a context of len: from the block holding the first visible
 * position (see twin_cuda_attention_decode). */
static int decode_span(const cuda_backend *b, int len) {
  const int first = b->window > 0 && len > b->window ? len - b->window : 0;
  return len - first / TWIN_KV_BLOCK_SIZE * TWIN_KV_BLOCK_SIZE;
}

/* Split-K for decode: thread blocks per KV head so that n_decode sequences fill the chip twice,
 * within the partials' capacity. */
static int decode_splits(const cuda_backend *b, int n_decode) {
  const int per_split = n_decode * b->base.cfg.n_kv_heads;
  int splits = (2 * b->num_sms + per_split - 1) / per_split;
  if (splits > b->part_rows / n_decode) splits = b->part_rows / n_decode;
  return splits < 1 ? 1 : splits;
}

/* Keys per split: the longest span over `splits`, at least one KV block per warp of the decode
 * kernel's form for this step (twin_cuda_attention_decode_warps: every warp then reads its
 * block before the previous kernel ends, and a short context is one split, no combine), a
 * whole number of blocks. ceil(span_max / result) <= splits. */
static int decode_partition(const cuda_backend *b, int n_decode, int span_max, int splits) {
  const twin_model_config *cfg = &b->base.cfg;
  const int warps =
      twin_cuda_attention_decode_warps(n_decode, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
  const int min_keys = warps > 0 ? warps * TWIN_CUDA_KV_BLOCK : CUDA_MIN_PARTITION;
  int p = (span_max + splits - 1) / splits;
  if (p < min_keys) p = min_keys;
  return (p + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE * TWIN_KV_BLOCK_SIZE;
}

/* Graph slot and padded batch size of a pure-decode step of n sequences: the next power of two,
 * capped at graph_top (the largest batch a step can have). */
static int graph_bucket(const cuda_backend *b, int n, int *padded) {
  int size = 1, slot = 0;
  while (size < n) {
    size *= 2;
    slot++;
  }
  *padded = size < b->graph_top ? size : b->graph_top;
  return slot;
}

/* Checks the batch and fills the pinned metadata (upload_step sends it). Pure-decode steps get
 * a fixed layout per batch-size bucket (rows padded with empty sequences: seq_len 0, cache slot
 * -1), so that a CUDA graph captured once replays for every later step of that bucket. Layout
 * (int32): tokens, positions, slots [rows] | seq_start [seqs+1], seq_len, last_rows,
 * decode_seqs [seqs] | partition [1] | tile_seq, tile_q0 [tiles] | sampling parameters
 * (sampling_bytes(seqs), 8-byte aligned; filled by the caller when the step samples) | block
 * tables [seqs][stride]: one copy carries all of it when the tables' used part is contiguous. */
static int prepare_step(cuda_backend *b, const twin_batch *batch, cuda_step *st, twin_err *err) {
  int rc = check_batch(b, batch, err);
  if (rc) return rc;
  /* a step that failed part-way may have left its copy of meta_host in flight */
  if (!b->idle) CUDA_CHECK(err, cudaStreamSynchronize(b->stream));
  b->idle = 1;
  const int T = batch->n_tokens, S = batch->n_seqs;
  memset(st, 0, sizeof *st);
  st->n_tokens = T;
  st->n_seqs = S;
  st->graph = -1;
  int rows = T, seqs = S;
  if (b->use_graphs && T == S) { /* every sequence brings one token */
    st->graph = graph_bucket(b, S, &rows);
    seqs = rows;
  }
  st->rows = rows;
  st->n_last = seqs;
  int mb = 1, span_max = 1;
  for (int s = 0; s < S; s++) {
    const int blocks = (batch->seq_len[s] + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE;
    if (blocks > mb) mb = blocks;
  }
  const int stride = st->graph >= 0 ? b->max_blocks_cap : mb;
  st->max_blocks = stride;

  int32_t *h = b->meta_host;
  size_t used = 0;
#define TAKE(n) (used += (size_t)(n), h + used - (size_t)(n))
  int32_t *tokens = TAKE(rows), *positions = TAKE(rows), *slots = TAKE(rows);
  int32_t *seq_start = TAKE(seqs + 1), *seq_len = TAKE(seqs), *last_rows = TAKE(seqs);
  int32_t *decode_seqs = TAKE(seqs), *partition = TAKE(1);
  memcpy(tokens, batch->tokens, (size_t)T * sizeof *tokens);
  memcpy(positions, batch->positions, (size_t)T * sizeof *positions);
  memcpy(seq_start, batch->seq_start, (size_t)(S + 1) * sizeof *seq_start);
  memcpy(seq_len, batch->seq_len, (size_t)S * sizeof *seq_len);
  int n_tiles = 0;
  for (int s = 0; s < S; s++) {
    const int32_t *src = batch->block_tables + (size_t)s * batch->max_blocks;
    const int start = batch->seq_start[s], n_new = batch->seq_start[s + 1] - start;
    for (int t = start; t < start + n_new; t++) {
      const int pos = batch->positions[t];
      slots[t] = src[pos / TWIN_KV_BLOCK_SIZE] * TWIN_KV_BLOCK_SIZE + pos % TWIN_KV_BLOCK_SIZE;
    }
    last_rows[s] = start + n_new - 1;
    if (n_new == 1) {
      decode_seqs[st->n_decode++] = s;
      const int span = decode_span(b, batch->seq_len[s]);
      if (span > span_max) span_max = span;
    } else {
      n_tiles += (n_new + TWIN_CUDA_PREFILL_TILE - 1) / TWIN_CUDA_PREFILL_TILE;
    }
  }
  for (int i = S; i < seqs; i++) { /* padding: one empty sequence per padded row */
    tokens[i] = 0;
    positions[i] = 0;
    slots[i] = -1;
    seq_start[i + 1] = i + 1;
    seq_len[i] = 0;
    last_rows[i] = i;
    decode_seqs[st->n_decode++] = i;
  }
  int32_t *tile_seq = TAKE(n_tiles), *tile_q0 = TAKE(n_tiles);
  used += used & 1; /* the sampling parameters' 64-bit fields */
  int32_t *sampling = TAKE(sampling_bytes(seqs) / sizeof(int32_t));
  const size_t tables_at = used;
  int32_t *tables = TAKE((size_t)seqs * stride);
#undef TAKE
  for (int s = 0, k = 0; s < S; s++) {
    const int n_new = batch->seq_start[s + 1] - batch->seq_start[s];
    if (n_new == 1) continue;
    for (int q0 = 0; q0 < n_new; q0 += TWIN_CUDA_PREFILL_TILE, k++) {
      tile_seq[k] = s;
      tile_q0[k] = q0;
    }
  }
  for (int s = 0; s < S; s++) { /* only each sequence's own blocks are ever read */
    const int blocks = (batch->seq_len[s] + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE;
    memcpy(tables + (size_t)s * stride, batch->block_tables + (size_t)s * batch->max_blocks,
           (size_t)blocks * sizeof *tables);
  }
  st->n_tiles = n_tiles;
  if (st->n_decode) {
    const int splits = decode_splits(b, st->n_decode);
    *partition = decode_partition(b, st->n_decode, span_max, splits);
    /* a graph keeps its grid: every split a bucket may need, the unused ones exit at once
     * (attention_decode.cu: the grid is split-major, so they start after the used ones) */
    st->max_splits = st->graph >= 0 ? splits : (span_max + *partition - 1) / *partition;
  } else {
    *partition = CUDA_MIN_PARTITION;
  }

  int32_t *d = b->meta_dev;
  st->tokens = d + (tokens - h);
  st->positions = d + (positions - h);
  st->slots = d + (slots - h);
  st->seq_start = d + (seq_start - h);
  st->seq_len = d + (seq_len - h);
  st->last_rows = d + (last_rows - h);
  st->decode_seqs = d + (decode_seqs - h);
  st->partition = d + (partition - h);
  st->tile_seq = d + (tile_seq - h);
  st->tile_q0 = d + (tile_q0 - h);
  st->block_tables = d + (tables - h);
  st->sampling = d + (sampling - h);
  st->sampling_host = (char *)sampling;
  st->tables_at = tables_at;
  st->used_blocks = mb;
  return 0;
}

/* Sends the step's metadata (prepare_step) to the device: one copy when the block tables' used
 * part is contiguous (a single sequence, or rows as long as the stride), else the arrays and
 * the tables' used prefixes as a second, strided copy. */
static int upload_step(cuda_backend *b, const cuda_step *st, twin_err *err) {
  const int32_t *h = b->meta_host;
  int32_t *d = b->meta_dev;
  const size_t S = (size_t)st->n_seqs, stride = (size_t)st->max_blocks, mb = (size_t)st->used_blocks;
  b->idle = 0;
  twin_cuda_profile_mark(b->prof, TWIN_PROFILE_STEP_START);
  if (S <= 1 || stride == mb) {
    const size_t ints = st->tables_at + (S ? (S - 1) * stride + mb : 0);
    CUDA_CHECK(err, cudaMemcpyAsync(d, h, ints * sizeof *h, cudaMemcpyHostToDevice, b->stream));
  } else {
    CUDA_CHECK(err, cudaMemcpyAsync(d, h, st->tables_at * sizeof *h, cudaMemcpyHostToDevice,
                                    b->stream));
    CUDA_CHECK(err, cudaMemcpy2DAsync(d + st->tables_at, stride * sizeof *h, h + st->tables_at,
                                      stride * sizeof *h, mb * sizeof *h, S,
                                      cudaMemcpyHostToDevice, b->stream));
  }
  return 0;
}

/* ---- the forward --------------------------------------------------------------------------- */

/* y[n][out columns] (bf16) = x . W^T for a fused projection or its parts. */
static int fused_forward(cuda_backend *b, const cuda_fused *f, const twin_bf16 *x, int ldx,
                         twin_bf16 *y, int ldy, int n, twin_err *err) {
  for (int i = 0; i < f->n_parts; i++) {
    int rc = twin_cuda_linear_forward(&b->lin, &f->part[i], x, ldx, y + f->col[i], 0, ldy, n,
                                      0.0f, err);
    if (rc) return rc;
  }
  return 0;
}

/* Profiling brackets (profile.h): nothing when b->prof is NULL. */
#define PROFILED(b, label, stmt)                   \
  do {                                             \
    twin_cuda_profile_begin((b)->prof);            \
    stmt;                                          \
    twin_cuda_profile_end((b)->prof, label);       \
  } while (0)

/* RoPE on q and k, k and v into the cache (unless the q/k/v projection did it: roped), then
 * attention over each sequence's cache into attn: the decode kernel for one-token sequences,
 * the prefill kernel for the tiles. */
static int attention_forward(cuda_backend *b, int l, const cuda_step *st, int roped,
                             twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const cuda_layer *L = &b->layers[l];
  const int n = st->rows, hd = cfg->head_dim;
  cudaStream_t s = b->stream;
  if (!roped)
    PROFILED(b, "rope_kv_write",
             CUDA_CHECK(err, twin_cuda_rope_kv_write(b->qkv, L->bqkv, b->cos_sin, st->slots,
                                                     k_cache(b, l), v_cache(b, l), n,
                                                     cfg->n_heads, cfg->n_kv_heads, hd, s)));
  if (st->n_decode)
    PROFILED(b, "attention_decode",
             CUDA_CHECK(err, twin_cuda_attention_decode(
                                 b->attn, b->qkv, b->qkv_dim, k_cache(b, l), v_cache(b, l),
                                 st->decode_seqs, st->seq_start, st->seq_len, st->block_tables,
                                 st->max_blocks, st->n_decode, cfg->n_heads, cfg->n_kv_heads, hd,
                                 b->attn_scale, b->window, st->partition, st->max_splits,
                                 b->part_acc, b->part_ml,
                                 b->split_combine ? b->split_counters : NULL, s)));
  if (st->n_tiles)
    PROFILED(b, "attention_prefill",
             CUDA_CHECK(err, twin_cuda_attention_prefill(
                                 b->attn, b->qkv, b->qkv_dim, k_cache(b, l), v_cache(b, l),
                                 st->tile_seq, st->tile_q0, st->n_tiles, st->seq_start,
                                 st->seq_len, st->block_tables, st->max_blocks, cfg->n_heads,
                                 cfg->n_kv_heads, hd, b->attn_scale, b->window, s)));
  return 0;
}

/* One decoder layer. On entry y = rmsnorm(x, attn_norm of this layer); on return x has both
 * residual branches added and y = rmsnorm(x, next_norm). */
static int layer_forward(cuda_backend *b, int l, const cuda_step *st, const twin_bf16 *next_norm,
                         twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const cuda_layer *L = &b->layers[l];
  const int n = st->rows, dim = cfg->dim, hidden = cfg->hidden_dim;
  const float eps = cfg->norm_eps;
  cudaStream_t s = b->stream;
  int rc = 0;

  /* attention: x += Wo . attention(rope(Wqkv . y + bqkv)) */
  PROFILED(b, "qkv", rc = fused_forward(b, &L->qkv, b->y, dim, b->qkv, b->qkv_dim, n, err));
  if (rc) return rc;
  rc = attention_forward(b, l, st, 0, err);
  if (rc) return rc;
  PROFILED(b, "o_proj", rc = twin_cuda_linear_forward(&b->lin, &L->wo, b->attn, b->q_dim, b->delta,
                                                      1, dim, n, 0.0f, err));
  if (rc) return rc;
  PROFILED(b, "add_rmsnorm",
           CUDA_CHECK(err, twin_cuda_add_rmsnorm(b->y, b->x, b->delta, L->ffn_norm, n, dim, eps, s)));

  /* MLP: x += Wdown . (silu(Wgate . y) * (Wup . y)) */
  PROFILED(b, "gate_up",
           rc = fused_forward(b, &L->gate_up, b->y, dim, b->gate_up, 2 * hidden, n, err));
  if (rc) return rc;
  PROFILED(b, "silu_mul", CUDA_CHECK(err, twin_cuda_silu_mul(b->act, b->gate_up, n, hidden, s)));
  PROFILED(b, "down", rc = twin_cuda_linear_forward(&b->lin, &L->down, b->act, hidden, b->delta,
                                                    1, dim, n, 0.0f, err));
  if (rc) return rc;
  PROFILED(b, "add_rmsnorm",
           CUDA_CHECK(err, twin_cuda_add_rmsnorm(b->y, b->x, b->delta, next_norm, n, dim, eps, s)));
  return 0;
}

/* The RoPE + KV-write part of layer l's fused q/k/v arguments. */
static twin_gemv_rope layer_rope(const cuda_backend *b, int l, const cuda_step *st) {
  const twin_model_config *cfg = &b->base.cfg;
  return (twin_gemv_rope){.bias = b->layers[l].bqkv, .cos_sin = b->cos_sin, .slots = st->slots,
                          .k_cache = k_cache(b, l), .v_cache = v_cache(b, l),
                          .n_heads = cfg->n_heads, .n_kv_heads = cfg->n_kv_heads,
                          .head_dim = cfg->head_dim};
}

/* Layer l's fused q/k/v: x is the residual stream normed on the load with the scale from
 * sum_attn; q into b->qkv, k and v into the cache. */
static int qkv_fused(cuda_backend *b, int l, const cuda_step *st, twin_err *err) {
  const int dim = b->base.cfg.dim;
  const cuda_layer *L = &b->layers[l];
  twin_gemv_fused f = {.x_mode = TWIN_GEMV_X_RMSNORM, .x = b->x, .ldx = dim,
                       .norm_w = L->attn_norm, .rms_sum = b->sum_attn, .eps = b->base.cfg.norm_eps};
  f.rope_kv = 1;
  f.rope = layer_rope(b, l, st);
  PROFILED(b, "qkv (normed x, rope, kv write)",
           CUDA_CHECK(err, twin_cuda_gemv_bf16_fused(b->qkv, 0, b->qkv_dim, &f, L->qkv.part[0].w,
                                                     st->rows, b->qkv_dim, dim, 0.0f, b->stream)));
  return 0;
}

/* The same layer for a step of at most TWIN_CUDA_GEMV_MAX_N rows when b->fuse: four kernels
 * and the attention instead of nine. The RMSNorms are applied by the projections that read
 * their output (x normed as it is loaded), the residual adds by the projections that produce
 * them (beta = 1 into x), RoPE and the cache write by the q/k/v projection's store, SiLU * up
 * by the gate/up projection's store; o_proj and down leave the sums of squares of the new x for
 * the next normed projection, and each clears the sum its reader has finished with
 * (kernels.h: twin_gemv_fused). On entry sum_attn holds x's sums of squares (for layer 0 from
 * twin_cuda_embed_step) and sum_ffn is zero. On return x has both residual
 * branches added, sum_attn holds its sums (the last layer's go unread) and sum_ffn is zero. */
static int layer_forward_fused(cuda_backend *b, int l, const cuda_step *st, twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const cuda_layer *L = &b->layers[l];
  const int n = st->rows, dim = cfg->dim, hidden = cfg->hidden_dim;
  cudaStream_t s = b->stream;

  int rc = qkv_fused(b, l, st, err);
  if (rc) return rc;
  rc = attention_forward(b, l, st, 1, err);
  if (rc) return rc;

  twin_gemv_fused f = {.x_mode = TWIN_GEMV_X_BF16, .x = b->attn, .ldx = b->q_dim,
                       .rms_acc = b->sum_ffn, .rms_clear = b->sum_attn};
  PROFILED(b, "o_proj (+x, sum sq)",
           CUDA_CHECK(err, twin_cuda_gemv_bf16_fused(b->x, 1, dim, &f, L->wo.w, n, dim, b->q_dim,
                                                     1.0f, s)));
  f = (twin_gemv_fused){.x_mode = TWIN_GEMV_X_RMSNORM, .x = b->x, .ldx = dim,
                        .norm_w = L->ffn_norm, .rms_sum = b->sum_ffn, .eps = cfg->norm_eps,
                        .glu_hidden = hidden};
  PROFILED(b, "gate_up (normed x, silu*up)",
           CUDA_CHECK(err, twin_cuda_gemv_bf16_fused(b->act, 0, hidden, &f, L->gate_up.part[0].w,
                                                     n, 2 * hidden, dim, 0.0f, s)));
  f = (twin_gemv_fused){.x_mode = TWIN_GEMV_X_BF16, .x = b->act, .ldx = hidden,
                        .rms_acc = b->sum_attn, .rms_clear = b->sum_ffn};
  PROFILED(b, "down (+x, sum sq)",
           CUDA_CHECK(err, twin_cuda_gemv_bf16_fused(b->x, 1, dim, &f, L->down.w, n, dim, hidden,
                                                     1.0f, s)));
  return 0;
}

/* Embedding, every layer, final norm: leaves y = rmsnorm(x_final, final_norm) for every row;
 * with gather, also last = the rows of y listed in last_rows (each sequence's last token); with
 * normed_head (head_reads_x), neither: the LM head forms the norm from x and sum_attn itself.
 * The fused layers start from twin_cuda_embed_step (x, its sums of squares, the RoPE table in
 * one kernel), the others from the embedding, the RoPE table and the first norm. */
static int enqueue_layers(cuda_backend *b, const cuda_step *st, int gather, int normed_head,
                          twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const int n = st->rows;
  const int fused = b->fuse && n <= TWIN_CUDA_GEMV_MAX_N;
  if (fused) {
    PROFILED(b, "embed, sum sq, rope table",
             CUDA_CHECK(err, twin_cuda_embed_step(b->x, b->sum_attn, b->cos_sin, st->positions,
                                                  b->inv_freq, cfg->head_dim, b->embed,
                                                  st->tokens, n, cfg->dim, b->stream)));
  } else {
    PROFILED(b, "embed",
             CUDA_CHECK(err, twin_cuda_embed_f32(b->x, b->embed, st->tokens, n, cfg->dim,
                                                 b->stream)));
    PROFILED(b, "rope_table",
             CUDA_CHECK(err, twin_cuda_rope_table(b->cos_sin, st->positions, b->inv_freq, n,
                                                  cfg->head_dim, b->stream)));
    PROFILED(b, "rmsnorm",
             CUDA_CHECK(err, twin_cuda_rmsnorm(b->y, b->x, b->layers[0].attn_norm, n, cfg->dim,
                                               cfg->norm_eps, b->stream)));
  }
  for (int l = 0; l < cfg->n_layers; l++) {
    const twin_bf16 *next_norm = l + 1 < cfg->n_layers ? b->layers[l + 1].attn_norm : b->final_norm;
    int rc = fused ? layer_forward_fused(b, l, st, err) : layer_forward(b, l, st, next_norm, err);
    if (rc) return twin_err_wrap(err, "cuda backend: layer %d", l);
  }
  if (normed_head) return 0;
  if (fused) /* the unfused layers end with this norm; the fused ones leave x */
    PROFILED(b, "rmsnorm",
             CUDA_CHECK(err, twin_cuda_rmsnorm(b->y, b->x, b->final_norm, n, cfg->dim,
                                               cfg->norm_eps, b->stream)));
  if (gather)
    PROFILED(b, "gather_last",
             CUDA_CHECK(err, twin_cuda_embed_bf16(b->last, b->y, st->last_rows, st->n_last,
                                                  cfg->dim, b->stream)));
  return 0;
}

/* Whether the LM head reads the fused layers' x and sums of squares directly (the final norm
 * on its load): every row is its sequence's last token, so no gather is needed (fuse_head:
 * the layers are fused and the head is bf16). */
static int head_reads_x(const cuda_backend *b, const cuda_step *st) {
  return b->fuse_head && st->rows <= TWIN_CUDA_GEMV_MAX_N &&
         st->n_tokens == st->n_seqs && st->n_last == st->rows;
}

typedef enum { HEAD_LOGITS = 0, HEAD_SAMPLE = 1 } cuda_head;

/* The sampling parameters of n_last rows on the device (see sampling_bytes). */
static const float *sp_f32(const cuda_step *st, int field) {
  return (const float *)((const char *)st->sampling + (size_t)field * 4 * st->n_last);
}
static const uint64_t *sp_u64(const cuda_step *st, int field) {
  return (const uint64_t *)((const char *)st->sampling + (size_t)16 * st->n_last +
                            (size_t)field * 8 * st->n_last);
}

/* logits [n_last][vocab] = last . lm_head^T (normed_head: rmsnorm(x, final_norm) formed on the
 * load, and for HEAD_SAMPLE each row's argmax key left for the sample kernel's greedy rows);
 * HEAD_SAMPLE: then one sampled id per row. */
static int enqueue_head(cuda_backend *b, const cuda_step *st, cuda_head head, int normed_head,
                        twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  int rc = 0;
  if (normed_head) {
    const twin_gemv_fused f = {.x_mode = TWIN_GEMV_X_RMSNORM, .x = b->x, .ldx = cfg->dim,
                               .norm_w = b->final_norm, .rms_sum = b->sum_attn,
                               .eps = cfg->norm_eps,
                               .argmax = head == HEAD_SAMPLE ? b->greedy_keys : NULL};
    PROFILED(b, "lm_head (normed x)",
             CUDA_CHECK(err, twin_cuda_gemv_bf16_fused(b->logits, 1, cfg->vocab_size, &f,
                                                       b->lm_head.w, st->n_last, cfg->vocab_size,
                                                       cfg->dim, 0.0f, b->stream)));
  } else {
    PROFILED(b, "lm_head", rc = twin_cuda_linear_forward(&b->lin, &b->lm_head, b->last, cfg->dim,
                                                         b->logits, 1, cfg->vocab_size,
                                                         st->n_last, 0.0f, err));
  }
  if (rc) return rc;
  if (head == HEAD_SAMPLE && normed_head)
    PROFILED(b, "sample (greedy from keys)",
             CUDA_CHECK(err, twin_cuda_sample_keyed(
                                 b->ids_out, b->logits, st->n_last, cfg->vocab_size, sp_f32(st, 0),
                                 (const int32_t *)sp_f32(st, 1), sp_f32(st, 2), sp_f32(st, 3),
                                 sp_u64(st, 0), sp_u64(st, 1), b->greedy_keys, b->stream)));
  else if (head == HEAD_SAMPLE)
    PROFILED(b, "sample",
             CUDA_CHECK(err, twin_cuda_sample(b->ids_out, b->logits, st->n_last, cfg->vocab_size,
                                              sp_f32(st, 0), (const int32_t *)sp_f32(st, 1),
                                              sp_f32(st, 2), sp_f32(st, 3), sp_u64(st, 0),
                                              sp_u64(st, 1), b->stream)));
  return 0;
}

/* The whole step up to the LM head's output (logits of n_last rows, or sampled ids). */
static int enqueue_to_head(cuda_backend *b, const cuda_step *st, cuda_head head, twin_err *err) {
  const int normed_head = head_reads_x(b, st);
  int rc = enqueue_layers(b, st, 1, normed_head, err);
  return rc ? rc : enqueue_head(b, st, head, normed_head, err);
}

/* Runs a pure-decode step through its bucket's CUDA graph. A bucket's first step runs eagerly
 * (every kernel loaded, cuBLAS's choices made outside capture); the second captures the graph. */
static int launch_graph(cuda_backend *b, const cuda_step *st, cuda_head head, twin_err *err) {
  cudaGraphExec_t *exec = &b->graphs[head][st->graph];
  if (!*exec && !b->graph_warm[head][st->graph]) {
    b->graph_warm[head][st->graph] = 1;
    return enqueue_to_head(b, st, head, err);
  }
  if (!*exec) {
    cudaGraph_t graph = NULL;
    CUDA_CHECK(err, cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal));
    int rc = enqueue_to_head(b, st, head, err);
    cudaError_t e = cudaStreamEndCapture(b->stream, &graph);
    if (!rc && e != cudaSuccess)
      rc = twin_cuda_fail(err, e, "cudaStreamEndCapture(decode step)", __FILE__, __LINE__);
    if (!rc) {
      e = cudaGraphInstantiate(exec, graph, 0);
      if (e != cudaSuccess) {
        *exec = NULL;
        rc = twin_cuda_fail(err, e, "cudaGraphInstantiate(decode step)", __FILE__, __LINE__);
      }
    }
    if (graph) cudaGraphDestroy(graph);
    if (rc) return twin_err_wrap(err, "cuda backend: capturing the %d-row decode graph", st->rows);
  }
  twin_cuda_profile_mark(b->prof, TWIN_PROFILE_GRAPH_START);
  CUDA_CHECK(err, cudaGraphLaunch(*exec, b->stream));
  twin_cuda_profile_mark(b->prof, TWIN_PROFILE_GRAPH_END);
  return 0;
}

static int cuda_forward(twin_backend *base, const twin_batch *batch, float *logits, twin_err *err) {
  cuda_backend *b = (cuda_backend *)base;
  const twin_model_config *cfg = &b->base.cfg;
  if (!logits) return twin_err_set(err, TWIN_EINVAL, "cuda backend: logits is NULL");
  cuda_step st;
  int rc = prepare_step(b, batch, &st, err);
  if (!rc) rc = upload_step(b, &st, err);
  if (rc) return rc;
  const size_t vocab = (size_t)cfg->vocab_size;

  if (st.graph >= 0) {
    /* one token per sequence: all_logits or not, the rows are the sequences' */
    rc = launch_graph(b, &st, HEAD_LOGITS, err);
    if (rc) return rc;
    CUDA_CHECK(err, cudaMemcpyAsync(logits, b->logits, (size_t)st.n_seqs * vocab * sizeof(float),
                                    cudaMemcpyDefault, b->stream));
  } else {
    rc = enqueue_layers(b, &st, !batch->all_logits, 0, err);
    if (rc) return rc;
    /* logits = lm_head . y for every token, or for each sequence's last token */
    const twin_bf16 *rows = batch->all_logits ? b->y : b->last;
    const int n_rows = batch->all_logits ? st.n_tokens : st.n_seqs;
    for (int r0 = 0; r0 < n_rows; r0 += b->logit_rows) {
      const int n = n_rows - r0 < b->logit_rows ? n_rows - r0 : b->logit_rows;
      PROFILED(b, "lm_head",
               rc = twin_cuda_linear_forward(&b->lin, &b->lm_head, rows + (size_t)r0 * cfg->dim,
                                             cfg->dim, b->logits, 1, cfg->vocab_size, n, 0.0f,
                                             err));
      if (rc) return rc;
      CUDA_CHECK(err, cudaMemcpyAsync(logits + (size_t)r0 * vocab, b->logits,
                                      (size_t)n * vocab * sizeof(float), cudaMemcpyDefault,
                                      b->stream));
    }
  }
  twin_cuda_profile_mark(b->prof, TWIN_PROFILE_STEP_END);
  CUDA_CHECK(err, cudaStreamSynchronize(b->stream));
  b->idle = 1;
  twin_cuda_profile_step(b->prof, st.n_tiles == 0);
  return 0;
}

/* The pinned sampling parameters of n_last rows, laid out as sampling_bytes() says: the
 * arrays a step's rows read (sp_f32 / sp_u64 give their device twins). */
typedef struct sampling_rows {
  float *temperature, *top_p, *min_p;
  int32_t *top_k;
  uint64_t *seed, *offset;
} sampling_rows;

static sampling_rows sampling_host_rows(const cuda_step *st) {
  char *hp = st->sampling_host;
  const size_t N = (size_t)st->n_last;
  sampling_rows r = {
      .temperature = (float *)hp,
      .top_p = (float *)(hp + 8 * N),
      .min_p = (float *)(hp + 12 * N),
      .top_k = (int32_t *)(hp + 4 * N),
      .seed = (uint64_t *)(hp + 16 * N),
  };
  r.offset = r.seed + N;
  return r;
}

/* Padding rows (a graph bucket's rows past n_seqs) sample greedily. */
static void sampling_pad(sampling_rows *r, int from, int to) {
  for (int i = from; i < to; i++) {
    r->temperature[i] = 0.0f;
    r->top_k[i] = 0;
    r->top_p[i] = 1.0f;
    r->min_p[i] = 0.0f;
    r->seed[i] = 0;
    r->offset[i] = 0;
  }
}

/* Runs a prepared step whose sampling parameters are in st->sampling_host, and copies the
 * n_seqs sampled ids to ids (through pinned memory: a copy to pageable memory is staged). */
static int run_sample_step(cuda_backend *b, const cuda_step *st, int32_t *ids, twin_err *err) {
  int rc = upload_step(b, st, err);
  if (!rc)
    rc = st->graph >= 0 ? launch_graph(b, st, HEAD_SAMPLE, err)
                        : enqueue_to_head(b, st, HEAD_SAMPLE, err);
  if (rc) return rc;
  if (!b->zero_copy) /* else the sample kernel wrote ids_host */
    CUDA_CHECK(err, cudaMemcpyAsync(b->ids_host, b->ids_dev, (size_t)st->n_seqs * sizeof *ids,
                                    cudaMemcpyDeviceToHost, b->stream));
  twin_cuda_profile_mark(b->prof, TWIN_PROFILE_STEP_END);
  CUDA_CHECK(err, cudaStreamSynchronize(b->stream));
  b->idle = 1;
  memcpy(ids, b->ids_host, (size_t)st->n_seqs * sizeof *ids);
  twin_cuda_profile_step(b->prof, st->n_tiles == 0);
  return 0;
}

/* twin_backend_ops.forward_sample: the engine's per-sequence parameters. */
static int cuda_forward_sample(twin_backend *base, const twin_batch *batch,
                               const twin_backend_sampling *sampling, int32_t *tokens_out,
                               twin_err *err) {
  cuda_backend *b = (cuda_backend *)base;
  if (!sampling || !tokens_out)
    return twin_err_set(err, TWIN_EINVAL, "forward_sample: sampling or tokens_out is NULL");
  if (!batch)
    return twin_err_set(err, TWIN_EINVAL, "batch: a required array is NULL");
  for (int i = 0; i < batch->n_seqs && i < b->base.max_seqs; i++) {
    const twin_backend_sampling *p = &sampling[i];
    /* written as !(ok) so that NaN fails */
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
      return twin_err_set(err, TWIN_EINVAL, "forward_sample: sequence %d: temperature %g is not "
                          "a finite number >= 0", i, (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
      return twin_err_set(err, TWIN_EINVAL, "forward_sample: sequence %d: top_p %g is outside "
                          "(0, 1]", i, (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
      return twin_err_set(err, TWIN_EINVAL, "forward_sample: sequence %d: min_p %g is outside "
                          "[0, 1]", i, (double)p->min_p);
  }
  cuda_step st;
  int rc = prepare_step(b, batch, &st, err);
  if (rc) return rc;
  sampling_rows r = sampling_host_rows(&st);
  for (int i = 0; i < st.n_seqs; i++) {
    r.temperature[i] = sampling[i].temperature;
    r.top_k[i] = sampling[i].top_k;
    r.top_p[i] = sampling[i].top_p;
    r.min_p[i] = sampling[i].min_p;
    r.seed[i] = sampling[i].seed;
    r.offset[i] = sampling[i].offset;
  }
  sampling_pad(&r, st.n_seqs, st.n_last);
  return run_sample_step(b, &st, tokens_out, err);
}

int twin_backend_cuda_forward_sample(twin_backend *base, const twin_batch *batch,
                                     const twin_cuda_sampling *sp, int32_t *ids, twin_err *err) {
  if (!base || base->ops != &cuda_ops)
    return twin_err_set(err, TWIN_EINVAL, "forward_sample: not a cuda backend");
  cuda_backend *b = (cuda_backend *)base;
  if (!sp || !sp->temperature || !sp->top_k || !sp->top_p || !sp->min_p || !sp->seed ||
      !sp->offset || !ids)
    return twin_err_set(err, TWIN_EINVAL, "forward_sample: a sampling array or ids is NULL");
  cuda_step st;
  int rc = prepare_step(b, batch, &st, err);
  if (rc) return rc;
  sampling_rows r = sampling_host_rows(&st);
  const size_t S = (size_t)st.n_seqs;
  memcpy(r.temperature, sp->temperature, S * sizeof *r.temperature);
  memcpy(r.top_k, sp->top_k, S * sizeof *r.top_k);
  memcpy(r.top_p, sp->top_p, S * sizeof *r.top_p);
  memcpy(r.min_p, sp->min_p, S * sizeof *r.min_p);
  memcpy(r.seed, sp->seed, S * sizeof *r.seed);
  memcpy(r.offset, sp->offset, S * sizeof *r.offset);
  sampling_pad(&r, st.n_seqs, st.n_last);
  return run_sample_step(b, &st, ids, err);
}

/* ---- create / destroy ---------------------------------------------------------------------- */

static void cuda_destroy(twin_backend *base) {
  cuda_backend *b = (cuda_backend *)base;
  if (!b) return;
  if (b->stream) cudaStreamSynchronize(b->stream);
  twin_cuda_profile_print(b->prof, stderr);
  twin_cuda_profile_destroy(b->prof);
  for (int h = 0; h < 2; h++)
    for (int i = 0; i < CUDA_MAX_GRAPHS; i++)
      if (b->graphs[h][i]) cudaGraphExecDestroy(b->graphs[h][i]);
  twin_cuda_linear_ctx_release(&b->lin);
  if (b->cublas) cublasDestroy(b->cublas);
  cudaFree(b->cublas_workspace);
  cudaFree(b->weights);
  cudaFree(b->kv_pool);
  cudaFree(b->scratch);
  cudaFreeHost(b->meta_host);
  cudaFreeHost(b->ids_host);
  if (b->stream) cudaStreamDestroy(b->stream);
  free(b->layers);
  free(b);
}

/* The fused decode layer (layer_forward_fused) serves models whose every projection is one bf16
 * matrix (q/k/v and gate/up fused), when the GEMV path is on; TWIN_CUDA_FUSE=0 turns it off. */
static int can_fuse(const cuda_backend *b) {
  if (!twin_cuda_env_on("TWIN_CUDA_FUSE") || !b->lin.gemv) return 0;
  const twin_model_config *cfg = &b->base.cfg;
  if (cfg->dim % 8 || cfg->hidden_dim % 16 || b->q_dim % 8 || cfg->head_dim % 32) return 0;
  for (int l = 0; l < cfg->n_layers; l++) {
    const cuda_layer *L = &b->layers[l];
    if (L->qkv.n_parts != 1 || L->qkv.part[0].type != TWIN_DT_BF16 || L->gate_up.n_parts != 1 ||
        L->gate_up.part[0].type != TWIN_DT_BF16 || L->wo.type != TWIN_DT_BF16 ||
        L->down.type != TWIN_DT_BF16)
      return 0;
  }
  return 1;
}

static int check_config(const twin_model_config *cfg, twin_err *err) {
  if (cfg->arch != TWIN_ARCH_LLAMA && cfg->arch != TWIN_ARCH_MISTRAL &&
      cfg->arch != TWIN_ARCH_QWEN2)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "cuda backend: architecture '%s' is not supported (llama, mistral, qwen2)",
                        cfg->arch_name);
  if (cfg->dim <= 0 || cfg->hidden_dim <= 0 || cfg->n_layers <= 0 || cfg->vocab_size <= 0 ||
      cfg->n_heads <= 0 || cfg->n_kv_heads <= 0)
    return twin_err_set(err, TWIN_EINVAL, "cuda backend: config has a non-positive dimension "
                        "(dim %d, hidden %d, layers %d, vocab %d, heads %d, kv heads %d)",
                        cfg->dim, cfg->hidden_dim, cfg->n_layers, cfg->vocab_size, cfg->n_heads,
                        cfg->n_kv_heads);
  if (cfg->head_dim != 64 && cfg->head_dim != 128)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "cuda backend: head_dim %d is not supported (64 or 128)", cfg->head_dim);
  if (cfg->n_heads % cfg->n_kv_heads != 0 || cfg->n_heads / cfg->n_kv_heads > TWIN_CUDA_MAX_GQA)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "cuda backend: %d query heads over %d kv heads is not supported (a whole "
                        "group of at most %d)", cfg->n_heads, cfg->n_kv_heads, TWIN_CUDA_MAX_GQA);
  if (cfg->dim % 8 != 0 || cfg->hidden_dim % 8 != 0)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "cuda backend: dim %d and hidden_dim %d must be "
                        "multiples of 8", cfg->dim, cfg->hidden_dim);
  return 0;
}

static int cuda_init(cuda_backend *b, const twin_llama_tensors *t, const twin_backend_opts *opts,
                     twin_err *err) {
  CUDA_CHECK(err, cudaGetDevice(&b->device));
  CUDA_CHECK(err, cudaDeviceGetAttribute(&b->num_sms, cudaDevAttrMultiProcessorCount, b->device));
  int can_map = 0;
  CUDA_CHECK(err, cudaDeviceGetAttribute(&can_map, cudaDevAttrCanMapHostMemory, b->device));
  if (!can_map) b->zero_copy = 0;
  CUDA_CHECK(err, cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking));
  CUBLAS_CHECK(err, cublasCreate(&b->cublas));
  CUBLAS_CHECK(err, cublasSetStream(b->cublas, b->stream));
  CUDA_CHECK(err, cudaMalloc(&b->cublas_workspace, CUDA_CUBLAS_WORKSPACE));
  CUBLAS_CHECK(err, cublasSetWorkspace(b->cublas, b->cublas_workspace, CUDA_CUBLAS_WORKSPACE));
  b->lin.cublas = b->cublas;
  b->lin.stream = b->stream;
  int rc = twin_cuda_linear_ctx_init(&b->lin, err);
  if (!rc) rc = twin_cuda_profile_create(b->stream, &b->prof, err);
  if (rc) return rc;
  if (twin_cuda_profile_eager(b->prof)) b->use_graphs = 0; /* every kernel bracketed, eagerly */
  rc = load_weights(b, t, err);
  if (!rc) rc = allocate_scratch(b, err);
  if (!rc) rc = allocate_kv_pool(b, opts, err);
  if (!rc) b->fuse = can_fuse(b);
  b->fuse_head =
      b->fuse && b->lm_head.type == TWIN_DT_BF16 && twin_cuda_env_on("TWIN_CUDA_FUSE_HEAD");
  return rc;
}

int twin_backend_cuda_create_from(const twin_model_config *cfg, const twin_llama_tensors *tensors,
                                  const twin_backend_opts *opts, twin_backend **out,
                                  twin_err *err) {
  *out = NULL;
  twin_backend_opts defaults = {0};
  if (!opts) opts = &defaults;
  if (!cfg || !tensors) return twin_err_set(err, TWIN_EINVAL, "cuda backend: no config or tensors");
  if (opts->max_tokens_per_step < 0 || opts->max_seqs < 0)
    return twin_err_set(err, TWIN_EINVAL, "cuda backend: negative max_tokens_per_step or max_seqs");
  int rc = check_config(cfg, err);
  if (rc) return rc;

  cuda_backend *b = calloc(1, sizeof *b);
  if (!b) return twin_err_set(err, TWIN_ENOMEM, "cuda backend: out of memory");
  b->base.ops = &cuda_ops;
  b->base.name = "cuda";
  b->base.cfg = *cfg;
  b->base.max_tokens_per_step =
      opts->max_tokens_per_step ? opts->max_tokens_per_step : CUDA_DEFAULT_MAX_TOKENS;
  b->base.max_seqs = opts->max_seqs ? opts->max_seqs : CUDA_DEFAULT_MAX_SEQS;
  b->lin.gemv = twin_cuda_env_on("TWIN_CUDA_GEMV");
  b->q_dim = cfg->n_heads * cfg->head_dim;
  b->kv_dim = cfg->n_kv_heads * cfg->head_dim;
  b->qkv_dim = b->q_dim + 2 * b->kv_dim;
  b->window = cfg->sliding_window > 0 ? cfg->sliding_window : 0;
  b->split_combine = twin_cuda_env_on("TWIN_CUDA_SPLIT_COMBINE");
  b->use_graphs = twin_cuda_env_on("TWIN_CUDA_GRAPHS");
  b->zero_copy = twin_cuda_env_on("TWIN_CUDA_ZERO_COPY");
  b->graph_top = b->base.max_seqs < b->base.max_tokens_per_step ? b->base.max_seqs
                                                                 : b->base.max_tokens_per_step;
  b->attn_scale = 1.0f / sqrtf((float)cfg->head_dim);
  b->layers = calloc((size_t)cfg->n_layers, sizeof *b->layers);
  rc = b->layers ? cuda_init(b, tensors, opts, err)
                 : twin_err_set(err, TWIN_ENOMEM, "cuda backend: out of memory");
  if (rc) {
    cuda_destroy(&b->base);
    return rc;
  }
  *out = &b->base;
  return 0;
}
