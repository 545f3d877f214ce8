/* llm-svc/backend/cpu/cpu_backend.c — creating and destroying the CPU backend. At create the
 * checkpoint's tensors (memory-mapped) are brought once into one allocation in the backend's
 * layout: f32, f16 and bf16 converted to fp32, block-quantized ones copied as stored (their
 * products run on the blocks: cpu_quant_matmul.c); q, k, v stacked into one QKV matrix per
 * layer, gate and up into one gate/up matrix (one part per storage kind when they differ).
 * Then the KV block pool (one allocation, per layer K and V [num_blocks][16][n_kv_heads]
 * [head_dim]) and the scratch activations are allocated. */
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

/* Hands out consecutive 64-byte aligned pieces of one allocation (or only counts them). */
typedef struct carver {
  uint8_t *base;  /* NULL while counting */
  size_t used;    /* bytes */
} carver;

static void *carve(carver *c, size_t bytes) {
  void *p = c->base ? c->base + c->used : NULL;
  c->used += (bytes + 63) & ~(size_t)63;
  return p;
}

static float *carve_floats(carver *c, size_t n) { return carve(c, n * sizeof(float)); }

/* One work item of the load: a range of a checkpoint tensor converted to fp32, or a range of
 * its stored bytes (blocks) copied as they are. */
typedef struct load_piece {
  const twin_tensor *tensor;
  int64_t first, n;   /* convert: elements; copy: bytes */
  void *dst;          /* convert: float[n]; copy: uint8_t[n] */
  int copy;
} load_piece;

typedef struct load_plan {
  load_piece *pieces;
  int n, cap;
  atomic_int failed;  /* index + 1 of a piece that could not be converted */
} load_plan;

static int plan_push(load_plan *plan, load_piece piece) {
  if (plan->n == plan->cap) {
    int cap = plan->cap ? 2 * plan->cap : 256;
    load_piece *grown = realloc(plan->pieces, (size_t)cap * sizeof *grown);
    if (!grown) return TWIN_ENOMEM;
    plan->pieces = grown;
    plan->cap = cap;
  }
  plan->pieces[plan->n++] = piece;
  return 0;
}

/* Queues t for conversion into dst [numel(t)] fp32, split into pieces for the pool. */
static int plan_convert(load_plan *plan, const twin_tensor *t, float *dst) {
  int64_t numel = twin_tensor_numel(t);
  for (int64_t first = 0; first < numel; first += CPU_CONVERT_CHUNK) {
    int64_t n = numel - first < CPU_CONVERT_CHUNK ? numel - first : CPU_CONVERT_CHUNK;
    if (plan_push(plan, (load_piece){t, first, n, dst + first, 0})) return TWIN_ENOMEM;
  }
  return 0;
}

/* Queues a copy of t's stored bytes into dst [t->nbytes]. */
static int plan_copy(load_plan *plan, const twin_tensor *t, uint8_t *dst) {
  const int64_t total = (int64_t)t->nbytes, chunk = 4 * CPU_CONVERT_CHUNK;
  for (int64_t first = 0; first < total; first += chunk) {
    int64_t n = total - first < chunk ? total - first : chunk;
    if (plan_push(plan, (load_piece){t, first, n, dst + first, 1})) return TWIN_ENOMEM;
  }
  return 0;
}

static void load_one_piece(void *ctx, int item, int worker) {
  (void)worker;
  load_plan *plan = ctx;
  const load_piece *p = &plan->pieces[item];
  if (p->copy) {
    memcpy(p->dst, (const uint8_t *)p->tensor->data + p->first, (size_t)p->n);
  } else if (twin_tensor_to_f32(p->tensor, p->first, p->n, p->dst) != 0) {
    atomic_store(&plan->failed, item + 1);
  }
}

/* A norm or bias vector: fp32 [numel], converted at once (they are small), plus offset
 * (Hugging Face Gemma's norms multiply by 1 + w). NULL tensor: NULL. */
static float *layout_vector(carver *c, const twin_tensor *t, float offset, int *rc) {
  if (!t) return NULL;
  const int64_t n = twin_tensor_numel(t);
  float *v = carve_floats(c, (size_t)n);
  if (v && *rc == 0) {
    if (twin_tensor_to_f32(t, 0, n, v) != 0) *rc = TWIN_EUNSUPPORTED;
    for (int64_t i = 0; i < n && offset != 0.0f; i++) v[i] += offset;
  }
  return v;
}

/* Lays out matrix m as tensors[0..n) stacked by rows (all with the same columns). Consecutive
 * tensors held alike (fp32; or one block type, kept as stored) share a part, so plain float
 * checkpoints get one fused fp32 matrix. With a plan, queues each tensor into its place. */
static int layout_matrix(cpu_matrix *m, const twin_tensor *const *tensors, int n, carver *c,
                         load_plan *plan) {
  memset(m, 0, sizeof *m);
  m->cols = (int)tensors[0]->shape[1];
  twin_dtype kinds[CPU_MAX_PARTS + 1];
  int part_of[CPU_MAX_PARTS];
  for (int i = 0; i < n; i++) {
    const twin_dtype kind = twin_dtype_is_quantized(tensors[i]->dtype) ? tensors[i]->dtype : TWIN_DT_F32;
    if (m->n_parts == 0 || kinds[m->n_parts - 1] != kind) {
      cpu_part *part = &m->parts[m->n_parts];
      part->row0 = m->rows;
      kinds[m->n_parts++] = kind;
    }
    part_of[i] = m->n_parts - 1;
    m->parts[m->n_parts - 1].rows += (int)tensors[i]->shape[0];
    m->rows += (int)tensors[i]->shape[0];
  }
  for (int p = 0; p < m->n_parts; p++) {
    cpu_part *part = &m->parts[p];
    if (kinds[p] == TWIN_DT_F32) {
      part->f32 = carve_floats(c, (size_t)part->rows * m->cols);
      continue;
    }
    const size_t row_bytes = twin_dtype_bytes_for(kinds[p], m->cols);
    part->q = (cpu_qweight){kinds[p], carve(c, row_bytes * part->rows), part->rows, m->cols,
                            row_bytes};
    if (twin_quant_act_format(kinds[p]) == TWIN_ACT_A8) m->needs_a8 = 1;
    else m->needs_a8k = 1;
  }
  if (!plan) return 0;
  for (int i = 0, row = 0; i < n; row += (int)tensors[i]->shape[0], i++) {
    const cpu_part *part = &m->parts[part_of[i]];
    const int r = row - part->row0;
    int rc = part->f32 ? plan_convert(plan, tensors[i], part->f32 + (size_t)r * m->cols)
                       : plan_copy(plan, tensors[i], (uint8_t *)part->q.data + (size_t)r * part->q.row_bytes);
    if (rc) return rc;
  }
  return 0;
}

/* Lays the backend's weights out in c (counting only, when c->base is NULL) and, when plan is
 * given, converts the vectors and queues each matrix tensor into its place. */
static int layout_weights(cpu_backend *b, const twin_llama_tensors *t, carver *c,
                          load_plan *plan) {
  const twin_model_config *cfg = &b->base.cfg;
  const float norm_offset = cfg->norm_weight_offset;
  int rc = 0;
#define MATRIX(dst, ...)                                                                    \
  do {                                                                                      \
    const twin_tensor *list_[] = {__VA_ARGS__};                                             \
    if ((rc = layout_matrix(dst, list_, (int)(sizeof list_ / sizeof list_[0]), c, plan)))  \
      return rc;                                                                            \
  } while (0)

  MATRIX(&b->embed, t->embed);
  b->final_norm = layout_vector(c, t->final_norm, norm_offset, &rc);
  if (cfg->tie_embeddings) b->lm_head = b->embed;
  else MATRIX(&b->lm_head, t->lm_head);
  for (int l = 0; l < cfg->n_layers; l++) {
    const twin_llama_layer_tensors *T = &t->layers[l];
    cpu_layer *L = &b->layers[l];
    L->attn_norm = layout_vector(c, T->attn_norm, norm_offset, &rc);
    MATRIX(&L->wqkv, T->wq, T->wk, T->wv);
    L->bqkv = NULL;
    if (cfg->attn_bias) {
      L->bqkv = carve_floats(c, (size_t)b->qkv_dim);
      if (plan && rc == 0 &&
          (twin_tensor_to_f32(T->bq, 0, b->q_dim, L->bqkv) ||
           twin_tensor_to_f32(T->bk, 0, b->kv_dim, L->bqkv + b->q_dim) ||
           twin_tensor_to_f32(T->bv, 0, b->kv_dim, L->bqkv + b->q_dim + b->kv_dim)))
        rc = TWIN_EUNSUPPORTED;
    }
    MATRIX(&L->wo, T->wo);
    L->ffn_norm = layout_vector(c, T->ffn_norm, norm_offset, &rc);
    MATRIX(&L->w_gate_up, T->w_gate, T->w_up);
    MATRIX(&L->w_down, T->w_down);
    L->q_norm = layout_vector(c, T->q_norm, norm_offset, &rc);
    L->k_norm = layout_vector(c, T->k_norm, norm_offset, &rc);
    L->post_attn_norm = layout_vector(c, T->post_attn_norm, norm_offset, &rc);
    L->post_ffn_norm = layout_vector(c, T->post_ffn_norm, norm_offset, &rc);
    L->sliding = twin_layer_is_sliding(cfg, l);
  }
#undef MATRIX
  return rc;
}

/* The widest input among quantized products (sizes the activation scratch). */
static void note_quantized_inputs(cpu_backend *b, const cpu_matrix *m, int *a8, int *a8k) {
  if (!m->needs_a8 && !m->needs_a8k) return;
  if ((size_t)m->cols > b->act_max_cols) b->act_max_cols = (size_t)m->cols;
  *a8 |= m->needs_a8;
  *a8k |= m->needs_a8k;
}

static int load_weights(cpu_backend *b, const twin_weights *w, twin_err *err) {
  const twin_model_config *cfg = &b->base.cfg;
  twin_llama_tensors tensors;
  int rc = twin_model_tensors_bind(&tensors, w, cfg, err);
  if (rc) return rc;

  carver counter = {0};
  layout_weights(b, &tensors, &counter, NULL);
  b->weights = alloc_big(counter.used);
  if (!b->weights) {
    twin_llama_tensors_free(&tensors);
    return twin_err_set(err, TWIN_ENOMEM, "cpu backend: cannot allocate %.2f GiB for weights",
                        (double)counter.used / (1 << 30));
  }
  carver placer = {.base = b->weights};
  load_plan plan = {0};
  atomic_init(&plan.failed, 0);
  rc = layout_weights(b, &tensors, &placer, &plan);
  if (rc == 0) {
    cpu_pool_run(b->pool, load_one_piece, &plan, plan.n);
    int failed = atomic_load(&plan.failed);
    if (failed) {
      const twin_tensor *t = plan.pieces[failed - 1].tensor;
      rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: tensor '%s' at offset %llu: cannot convert "
                        "dtype %s to f32", t->file, t->name, (unsigned long long)t->file_offset,
                        twin_dtype_name(t->dtype));
    }
  } else if (rc == TWIN_EUNSUPPORTED) {
    rc = twin_err_set(err, rc, "cpu backend: a norm or bias vector has a dtype that cannot be "
                      "converted to f32");
  } else {
    rc = twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory planning weight conversion");
  }
  free(plan.pieces);
  twin_llama_tensors_free(&tensors);
  if (rc) return rc;

  /* what the quantized products need, and the name of what the backend holds */
  int a8 = 0, a8k = 0;
  note_quantized_inputs(b, &b->lm_head, &a8, &a8k);
  const char *held = NULL;
  for (int l = 0; l < cfg->n_layers; l++) {
    const cpu_layer *L = &b->layers[l];
    note_quantized_inputs(b, &L->wqkv, &a8, &a8k);
    note_quantized_inputs(b, &L->wo, &a8, &a8k);
    note_quantized_inputs(b, &L->w_gate_up, &a8, &a8k);
    note_quantized_inputs(b, &L->w_down, &a8, &a8k);
    if (!held && !L->wqkv.parts[0].f32) held = twin_dtype_name(L->wqkv.parts[0].q.dtype);
  }
  b->act_needs_a8 = a8;
  b->act_needs_a8k = a8k;
  snprintf(b->base.weights_dtype, sizeof b->base.weights_dtype, "%s", held ? held : "f32");
  return 0;
}

/* ---- rotary frequencies -------------------------------------------------------------------- */

/* inv_freq[i] = theta^(-2i/head_dim), with Llama 3's frequency-dependent scaling when
 * configured (high frequencies kept, low ones divided by factor, a smooth blend between) or a
 * linear factor (every frequency divided by it: positions scaled down). */
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
  const size_t T = (size_t)b->base.max_tokens_per_step, half = (size_t)(cfg->head_dim / 2);
  const int local_rope = b->rope_inv_freq_local != NULL;
  carver c = {0};
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      if (posix_memalign((void **)&b->scratch_mem, 64, c.used) != 0) {
        b->scratch_mem = NULL;
        return twin_err_set(err, TWIN_ENOMEM, "cpu backend: cannot allocate scratch for %zu "
                            "tokens per step", T);
      }
      c = (carver){.base = (uint8_t *)b->scratch_mem};
    }
    b->s.x = carve_floats(&c, T * cfg->dim);
    b->s.xn = carve_floats(&c, T * cfg->dim);
    b->s.branch = carve_floats(&c, T * cfg->dim);
    b->s.qkv = carve_floats(&c, T * b->qkv_dim);
    b->s.attn = carve_floats(&c, T * b->q_dim);
    b->s.gate_up = carve_floats(&c, T * 2 * cfg->hidden_dim);
    b->s.ffn = carve_floats(&c, T * cfg->hidden_dim);
    b->s.rope_cos = carve_floats(&c, T * half);
    b->s.rope_sin = carve_floats(&c, T * half);
    b->s.rope_cos_local = local_rope ? carve_floats(&c, T * half) : NULL;
    b->s.rope_sin_local = local_rope ? carve_floats(&c, T * half) : NULL;
    b->s.act_a8 = b->act_needs_a8
                      ? carve(&c, T * twin_quant_act_row_bytes(TWIN_ACT_A8, (int64_t)b->act_max_cols))
                      : NULL;
    b->s.act_a8k = b->act_needs_a8k
                       ? carve(&c, T * twin_quant_act_row_bytes(TWIN_ACT_A8K, (int64_t)b->act_max_cols))
                       : NULL;
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
  free(b->rope_inv_freq_local);
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
  b->kernels = cpu_quant_kernels_get(CPU_QUANT_BEST);
  openblas_set_num_threads(b->n_threads);

  /* sliding layers with their own rope base (gemma3): a second frequency table, unscaled;
   * the global layers' scaling applies to the global table only */
  const int local_rope = cfg->sliding_window > 0 && cfg->sliding_window_pattern > 0;
  const size_t half = (size_t)(cfg->head_dim / 2);
  int rc = 0;
  b->layers = calloc((size_t)cfg->n_layers, sizeof *b->layers);
  b->rope_inv_freq = malloc(half * sizeof *b->rope_inv_freq);
  if (local_rope) b->rope_inv_freq_local = malloc(half * sizeof *b->rope_inv_freq_local);
  if (!b->layers || !b->rope_inv_freq || (local_rope && !b->rope_inv_freq_local))
    rc = twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory");
  if (rc == 0) rc = cpu_pool_create(&b->pool, b->n_threads, err);
  if (rc == 0) rc = load_weights(b, w, err);
  if (rc == 0) {
    twin_rope_inv_freq(cfg, cfg->rope_theta, 1, b->rope_inv_freq);
    if (local_rope) {
      const double local_theta = cfg->rope_local_theta > 0 ? cfg->rope_local_theta : cfg->rope_theta;
      twin_rope_inv_freq(cfg, local_theta, 0, b->rope_inv_freq_local);
    }
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
