/* llm-svc/backend/cpu/cpu_backend.c — creating and destroying the CPU backend. At create the
 * checkpoint's tensors (f32, f16 or bf16, memory-mapped) are converted once into one fp32
 * allocation in the backend's layout: q, k, v stacked into one QKV matrix per layer, gate and up
 * into one gate/up matrix. Then the KV block pool (one allocation, per layer K and V
 * [num_blocks][16][n_kv_heads][head_dim]) and the scratch activations are allocated. */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "llm-svc/backend/cpu/cpu_backend.h"

#define CPU_DEFAULT_MAX_TOKENS 512
#define CPU_DEFAULT_MAX_SEQS 64
#define CPU_DEFAULT_KV_FRACTION 0.5
#define CPU_CONVERT_CHUNK ((int64_t)1 << 22) /* elements per conversion work item */
#define CPU_INITIAL_SCORES 1024              /* context length the score rows start with */

static void cpu_destroy(twin_backend *base);

static const twin_backend_ops cpu_ops = {
    .forward = cpu_forward,
    .destroy = cpu_destroy,
};

/* ---- big allocations ---------------------------------------------------------------------- */

/* 2 MiB-aligned memory that the kernel may back with transparent huge pages: the weights and
 * the KV pool are gigabytes, and 4 KiB pages would mean a page fault per 4 KiB at load and TLB
 * misses in every matmul. Contents are not initialized. Free with free(). */
static void *alloc_big(size_t bytes) {
  const size_t huge = (size_t)2 << 20;
  void *p = NULL;
  if (posix_memalign(&p, bytes >= huge ? huge : 64, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (bytes >= huge) madvise(p, bytes / huge * huge, MADV_HUGEPAGE);
#endif
  return p;
}

/* ---- weight layout and conversion ---------------------------------------------------------- */

/* Hands out consecutive 64-byte aligned pieces of one float allocation (or only counts them). */
typedef struct carver {
  float *base;   /* NULL while counting */
  size_t used;   /* floats */
} carver;

static float *carve(carver *c, size_t n) {
  float *p = c->base ? c->base + c->used : NULL;
  c->used += (n + 15) & ~(size_t)15;
  return p;
}

typedef struct convert_piece {
  const twin_tensor *tensor;
  int64_t first, n;   /* elements of the tensor */
  float *dst;         /* [n] */
} convert_piece;

typedef struct convert_plan {
  convert_piece *pieces;
  int n, cap;
  atomic_int failed;  /* index + 1 of a piece that could not be converted */
} convert_plan;

/* Queues t for conversion into dst [numel(t)], split into pieces for the pool. */
static int plan_tensor(convert_plan *plan, const twin_tensor *t, float *dst) {
  int64_t numel = twin_tensor_numel(t);
  for (int64_t first = 0; first < numel; first += CPU_CONVERT_CHUNK) {
    if (plan->n == plan->cap) {
      int cap = plan->cap ? 2 * plan->cap : 256;
      convert_piece *grown = realloc(plan->pieces, (size_t)cap * sizeof *grown);
      if (!grown) return TWIN_ENOMEM;
      plan->pieces = grown;
      plan->cap = cap;
    }
    int64_t n = numel - first < CPU_CONVERT_CHUNK ? numel - first : CPU_CONVERT_CHUNK;
    plan->pieces[plan->n++] = (convert_piece){t, first, n, dst + first};
  }
  return 0;
}

static void convert_one_piece(void *ctx, int item, int worker) {
  (void)worker;
  convert_plan *plan = ctx;
  const convert_piece *p = &plan->pieces[item];
  if (twin_tensor_to_f32(p->tensor, p->first, p->n, p->dst) != 0)
    atomic_store(&plan->failed, item + 1);
}

/* Lays the backend's weights out in c (counting only, when c->base is NULL) and, when plan is
 * given, queues each checkpoint tensor for conversion into its place. */
static int layout_weights(cpu_backend *b, const twin_llama_tensors *t, carver *c,
                          convert_plan *plan) {
  const twin_model_config *cfg = &b->base.cfg;
  const size_t dim = (size_t)cfg->dim, hidden = (size_t)cfg->hidden_dim;
  int rc = 0;
#define PLACE(dst, tensor) \
  do { if (plan && (rc = plan_tensor(plan, (tensor), (dst)))) return rc; } while (0)

  b->embed = carve(c, (size_t)cfg->vocab_size * dim);
  PLACE(b->embed, t->embed);
  b->final_norm = carve(c, dim);
  PLACE(b->final_norm, t->final_norm);
  if (cfg->tie_embeddings) {
    b->lm_head = b->embed;
  } else {
    b->lm_head = carve(c, (size_t)cfg->vocab_size * dim);
    PLACE(b->lm_head, t->lm_head);
  }
  for (int l = 0; l < cfg->n_layers; l++) {
    const twin_llama_layer_tensors *T = &t->layers[l];
    cpu_layer *L = &b->layers[l];
    L->attn_norm = carve(c, dim);
    PLACE(L->attn_norm, T->attn_norm);
    L->wqkv = carve(c, (size_t)b->qkv_dim * dim);
    PLACE(L->wqkv, T->wq);
    PLACE(L->wqkv ? L->wqkv + (size_t)b->q_dim * dim : NULL, T->wk);
    PLACE(L->wqkv ? L->wqkv + (size_t)(b->q_dim + b->kv_dim) * dim : NULL, T->wv);
    L->bqkv = NULL;
    if (cfg->attn_bias) {
      L->bqkv = carve(c, (size_t)b->qkv_dim);
      PLACE(L->bqkv, T->bq);
      PLACE(L->bqkv ? L->bqkv + b->q_dim : NULL, T->bk);
      PLACE(L->bqkv ? L->bqkv + b->q_dim + b->kv_dim : NULL, T->bv);
    }
    L->wo = carve(c, dim * (size_t)b->q_dim);
    PLACE(L->wo, T->wo);
    L->ffn_norm = carve(c, dim);
    PLACE(L->ffn_norm, T->ffn_norm);
    L->w_gate_up = carve(c, 2 * hidden * dim);
    PLACE(L->w_gate_up, T->w_gate);
    PLACE(L->w_gate_up ? L->w_gate_up + hidden * dim : NULL, T->w_up);
    L->w_down = carve(c, dim * hidden);
    PLACE(L->w_down, T->w_down);
  }
#undef PLACE
  return 0;
}

static int load_weights(cpu_backend *b, const twin_weights *w, twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  twin_llama_tensors tensors;
  int rc = twin_llama_tensors_bind(&tensors, w, cfg, err);
  if (rc) return rc;

  carver counter = {0};
  layout_weights(b, &tensors, &counter, NULL);
  size_t bytes = counter.used * sizeof(float);
  b->weights = alloc_big(bytes);
  if (!b->weights) {
    twin_llama_tensors_free(&tensors);
    return twin_err_set(err, TWIN_ENOMEM, "cpu backend: cannot allocate %.2f GiB for fp32 weights",
                        (double)bytes / (1 << 30));
  }
  carver placer = {.base = b->weights};
  convert_plan plan = {0};
  atomic_init(&plan.failed, 0);
  rc = layout_weights(b, &tensors, &placer, &plan);
  if (rc == 0) {
    cpu_pool_run(b->pool, convert_one_piece, &plan, plan.n);
    int failed = atomic_load(&plan.failed);
    if (failed) {
      const twin_tensor *t = plan.pieces[failed - 1].tensor;
      rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: tensor '%s' at offset %llu: cannot convert "
                        "dtype %s to f32", t->file, t->name, (unsigned long long)t->file_offset,
                        twin_dtype_name(t->dtype));
    }
  } else {
    rc = twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory planning weight conversion");
  }
  free(plan.pieces);
  twin_llama_tensors_free(&tensors);
  return rc;
}

/* ---- rotary frequencies -------------------------------------------------------------------- */

/* inv_freq[i] = theta^(-2i/head_dim), with Llama 3's frequency-dependent scaling when
 * configured: high frequencies kept, low ones divided by factor, a smooth blend between. */
static void rope_frequencies(const twin_model_config *cfg, double *inv_freq) {
  const int half = cfg->head_dim / 2;
  const double two_pi = 6.283185307179586;
  for (int i = 0; i < half; i++) {
    double inv = 1.0 / pow((double)cfg->rope_theta, (2.0 * i) / cfg->head_dim);
    if (cfg->rope_llama3) {
      const double factor = cfg->rope_factor, low = cfg->rope_low_freq_factor,
                   high = cfg->rope_high_freq_factor, old_len = cfg->rope_original_max_pos;
      const double wavelen = two_pi / inv;
      if (wavelen > old_len / low) {
        inv = inv / factor;
      } else if (wavelen >= old_len / high) {
        const double smooth = (old_len / wavelen - low) / (high - low);
        inv = (1.0 - smooth) * inv / factor + smooth * inv;
      }
    }
    inv_freq[i] = inv;
  }
}

/* ---- KV pool and scratch ------------------------------------------------------------------- */

/* MemAvailable from /proc/meminfo, else the free pages sysconf reports. */
static size_t available_memory_bytes(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (f) {
    char line[256];
    unsigned long long kib;
    while (fgets(line, sizeof line, f)) {
      if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
        fclose(f);
        return (size_t)kib * 1024;
      }
    }
    fclose(f);
  }
  long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

static int allocate_kv_pool(cpu_backend *b, const twin_backend_opts *opts, twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const size_t per_block =
      (size_t)cfg->n_layers * 2 * TWIN_KV_BLOCK_SIZE * (size_t)b->kv_dim * sizeof(float);
  size_t budget = opts->kv_bytes;
  if (budget == 0) {
    double fraction = opts->kv_fraction > 0 && opts->kv_fraction <= 1 ? opts->kv_fraction
                                                                       : CPU_DEFAULT_KV_FRACTION;
    budget = (size_t)(fraction * (double)available_memory_bytes());
  }
  size_t blocks = budget / per_block;
  if (blocks > INT32_MAX) blocks = INT32_MAX;
  if (blocks == 0)
    return twin_err_set(err, TWIN_EINVAL,
                        "cpu backend: a KV budget of %zu bytes holds no block (one block is %zu "
                        "bytes: %d layers x K,V x 16 tokens x %d kv dims x fp32)",
                        budget, per_block, cfg->n_layers, b->kv_dim);
  /* pages are committed lazily: blocks cost memory only once written. Attention reads only
   * positions this or an earlier step wrote, so the pool needs no clearing. */
  b->kv_pool = blocks <= SIZE_MAX / per_block ? alloc_big(blocks * per_block) : NULL;
  if (!b->kv_pool)
    return twin_err_set(err, TWIN_ENOMEM, "cpu backend: cannot allocate a KV pool of %zu blocks "
                        "(%.2f GiB)", blocks, (double)(blocks * per_block) / (1 << 30));
  b->base.num_blocks = (int)blocks;
  b->base.kv_bytes_per_block = per_block;
  b->kv_layer_floats = blocks * TWIN_KV_BLOCK_SIZE * (size_t)b->kv_dim;
  return 0;
}

static int allocate_scratch(cpu_backend *b, twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  const size_t T = (size_t)b->base.max_tokens_per_step;
  carver c = {0};
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      if (posix_memalign((void **)&b->scratch_mem, 64, c.used * sizeof(float)) != 0) {
        b->scratch_mem = NULL;
        return twin_err_set(err, TWIN_ENOMEM, "cpu backend: cannot allocate scratch for %zu "
                            "tokens per step", T);
      }
      c = (carver){.base = b->scratch_mem};
    }
    b->s.x = carve(&c, T * cfg->dim);
    b->s.xn = carve(&c, T * cfg->dim);
    b->s.qkv = carve(&c, T * b->qkv_dim);
    b->s.attn = carve(&c, T * b->q_dim);
    b->s.gate_up = carve(&c, T * 2 * cfg->hidden_dim);
    b->s.ffn = carve(&c, T * cfg->hidden_dim);
    b->s.rope_cos = carve(&c, T * (cfg->head_dim / 2));
    b->s.rope_sin = carve(&c, T * (cfg->head_dim / 2));
  }
  b->s.token_seq = malloc(T * sizeof *b->s.token_seq);
  b->s.scores_cap = CPU_INITIAL_SCORES;
  b->s.scores = malloc((size_t)b->n_threads * b->s.scores_cap * sizeof *b->s.scores);
  if (!b->s.token_seq || !b->s.scores)
    return twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory for scratch");
  return 0;
}

/* ---- create / destroy ---------------------------------------------------------------------- */

static void cpu_destroy(twin_backend *base) {
  cpu_backend *b = (cpu_backend *)base;
  if (!b) return;
  cpu_pool_destroy(b->pool);
  free(b->weights);
  free(b->layers);
  free(b->rope_inv_freq);
  free(b->kv_pool);
  free(b->scratch_mem);
  free(b->s.token_seq);
  free(b->s.scores);
  free(b);
}

int twin_backend_cpu_create(const twin_model_config *cfg, const twin_weights *w,
                            const twin_backend_opts *opts, twin_backend **out, twin_err *err) {
  *out = NULL;
  twin_backend_opts defaults = {0};
  if (!opts) opts = &defaults;
  if (opts->max_tokens_per_step < 0 || opts->max_seqs < 0 || opts->threads < 0)
    return twin_err_set(err, TWIN_EINVAL, "cpu backend: negative max_tokens_per_step, max_seqs "
                        "or threads");

  cpu_backend *b = calloc(1, sizeof *b);
  if (!b) return twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory");
  b->base.ops = &cpu_ops;
  b->base.name = "cpu";
  b->base.cfg = *cfg;
  b->base.max_tokens_per_step =
      opts->max_tokens_per_step ? opts->max_tokens_per_step : CPU_DEFAULT_MAX_TOKENS;
  b->base.max_seqs = opts->max_seqs ? opts->max_seqs : CPU_DEFAULT_MAX_SEQS;
  snprintf(b->base.weights_dtype, sizeof b->base.weights_dtype, "f32");
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  b->n_threads = opts->threads ? opts->threads : (cores > 0 ? (int)cores : 1);
  b->q_dim = cfg->n_heads * cfg->head_dim;
  b->kv_dim = cfg->n_kv_heads * cfg->head_dim;
  b->qkv_dim = b->q_dim + 2 * b->kv_dim;
  openblas_set_num_threads(b->n_threads);

  int rc = 0;
  b->layers = calloc((size_t)cfg->n_layers, sizeof *b->layers);
  b->rope_inv_freq = malloc((size_t)(cfg->head_dim / 2) * sizeof *b->rope_inv_freq);
  if (!b->layers || !b->rope_inv_freq)
    rc = twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory");
  if (rc == 0) rc = cpu_pool_create(&b->pool, b->n_threads, err);
  if (rc == 0) rc = load_weights(b, w, err);
  if (rc == 0) {
    rope_frequencies(cfg, b->rope_inv_freq);
    rc = allocate_kv_pool(b, opts, err);
  }
  if (rc == 0) rc = allocate_scratch(b, err);
  if (rc) {
    cpu_destroy(&b->base);
    return rc;
  }
  *out = &b->base;
  return 0;
}
