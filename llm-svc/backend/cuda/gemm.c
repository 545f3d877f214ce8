/* llm-svc/backend/cuda/gemm.c — row-major projections on cuBLAS. cuBLAS is column-major, so
 * y[n][m] = x[n][k] . w[m][k]^T is computed as its transpose: y^T (m x n, ld ldy) =
 * op_T(w as k x m, ld k) . x^T (k x n, ld ldx), in CUBLAS_COMPUTE_32F, by cublasGemmEx (cuBLAS's
 * default choice) or by cuBLASLt with an algorithm the tuner timed for the shape.
 * How a candidate is timed: as in a decode step, its weights come from HBM and it follows
 * another kernel. Each timed run is an event pair around [an L2 sweep, the candidate], less the
 * sweep alone: the sweep is a cuBLAS product that reads the tuner's buffer (2 x L2 bytes) and
 * writes 0.5 MB, so it evicts the weights and leaves L2 clean (a memset would leave 2 x L2 of
 * dirty lines whose write-back then competes with the weights' reads and skews the ranking).
 * Runs go round-robin across candidates (clock drift hits all alike); median of TUNE_RUNS.
 * Only weights of at least the L2 size are tuned. On smaller ones (8B qkv and o_proj, 1B qkv,
 * o_proj and down: 8-50 MB, 7-24 us) this timing did not rank the candidates as they run back
 * to back on the H200: of its 19 cuBLASLt picks there, 13 ran within 1% of cublasGemmEx, 3 were
 * 4-9% faster and 3 (1B down, n = 16-64, split-K) 4-10% slower (split-K candidates looked up to
 * 2 us faster than they are), so those keys are recorded as cublasGemmEx, untimed. On the larger
 * ones (gate_up, 8B down, LM heads) every cuBLASLt pick ran 1.00-1.12x cublasGemmEx back to back
 * (tests/gpu/test_gemm.cu prints both measurements for every candidate).
 * Tuning cost, paid once per key (gemm.h) on its first product, on the stream, synchronously:
 * the heuristic query (tens of us), then (1 + candidates) x (1 warm-up + TUNE_RUNS timed runs),
 * each timed run behind a ~30 us sweep. Measured on the H200 (8 cuBLASLt candidates per key):
 * 9-18 ms per key of the gate_up and 8B down shapes, 9-14 ms for the 1B LM head, 24-32 ms for
 * the 8B LM head; untimed keys cost one product. A model sees its shapes x decode buckets
 * (16..256) in its first steps, plus one key per distinct prefill chunk size <= 256 rows. */
#include "llm-svc/backend/cuda/gemm.h"

#include <cublasLt.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/util.h"
#include "llm-svc/backend/cuda/cuda_check.h"

/* ---- plain product (cublasGemmEx) ------------------------------------------------------------ */

cublasStatus_t twin_cuda_gemm(cublasHandle_t handle, const twin_bf16 *x, int ldx,
                              const twin_bf16 *w, void *y, int y_f32, int ldy, int n, int m,
                              int k, float beta) {
  if (n <= 0 || m <= 0 || k <= 0 || ldx < k || ldy < m || !x || !w || !y)
    return CUBLAS_STATUS_INVALID_VALUE;
  const float alpha = 1.0f;
  return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w, CUDA_R_16BF, k, x,
                      CUDA_R_16BF, ldx, &beta, y, y_f32 ? CUDA_R_32F : CUDA_R_16BF, ldy,
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* ---- the tuner's state --------------------------------------------------------------------- */

#define TUNE_RUNS 5                                  /* timed runs per candidate (median) */
#define TUNE_SLOTS (1 + TWIN_CUDA_GEMM_TUNE_CANDIDATES) /* cublasGemmEx + cuBLASLt candidates */
#define TABLE_SLOTS (2 * TWIN_CUDA_GEMM_TUNER_KEYS)  /* open addressing, at most half full */
#define NEAR_TIE 0.02f /* a candidate within 2% of the fastest that comes earlier wins:
                          cublasGemmEx first, then the heuristic's order */
#define SWEEP_ROWS 8     /* the L2 sweep: y[SWEEP_ROWS][cols] = x . buffer^T, k = SWEEP_K */
#define SWEEP_K 4096
#define SWEEP_OUT_BYTES ((size_t)1 << 20) /* the buffer's first MiB takes the sweep's output */

typedef struct gemm_key {
  int n, m, k, ldx, ldy, y_f32;
  int align_x, align_w, align_y; /* bytes: the largest power of two <= 256 dividing the address */
} gemm_key;

/* The cuBLASLt description of one key's product. */
typedef struct lt_problem {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t w_layout, x_layout, y_layout; /* A, B, C = D */
} lt_problem;

typedef struct gemm_entry {
  int used;
  gemm_key key;
  twin_cuda_gemm_choice choice;
  cublasLtMatmulAlgo_t algo; /* when choice.lt */
  lt_problem problem;        /* when choice.lt */
} gemm_entry;

struct twin_cuda_gemm_tuner {
  cublasHandle_t cublas;  /* borrowed, bound to stream */
  cudaStream_t stream;    /* borrowed */
  cublasLtHandle_t lt;
  void *buffer;           /* [buffer_bytes]: the first TWIN_CUDA_GEMM_WORKSPACE bytes are the
                             cuBLASLt workspace; all of it is overwritten to evict L2 */
  size_t buffer_bytes;
  int sweep_cols;         /* buffer rows of SWEEP_K bf16 past the first MiB */
  size_t l2_bytes;        /* the device's L2: smaller weights are not tuned */
  cudaEvent_t start[TUNE_SLOTS + 1][TUNE_RUNS], stop[TUNE_SLOTS + 1][TUNE_RUNS]; /* + sweep */
  gemm_entry *table;      /* [TABLE_SLOTS] */
  int keys;
};

/* One product's operands. */
typedef struct gemm_args {
  const twin_bf16 *x, *w;
  void *y;
  float beta;
} gemm_args;

static int pointer_alignment(const void *p) {
  const uintptr_t a = (uintptr_t)p;
  int align = 256;
  while (align > 1 && a % (uintptr_t)align != 0) align /= 2;
  return align;
}

static int key_equal(const gemm_key *a, const gemm_key *b) {
  return a->n == b->n && a->m == b->m && a->k == b->k && a->ldx == b->ldx && a->ldy == b->ldy &&
         a->y_f32 == b->y_f32 && a->align_x == b->align_x && a->align_w == b->align_w &&
         a->align_y == b->align_y;
}

/* gemm_key is ints only (no padding), built whole by make_key */
static uint32_t key_hash(const gemm_key *key) { return (uint32_t)twin_hash64(key, sizeof *key, 0); }

/* The key's slot: its entry, or the empty slot where it would go. */
static gemm_entry *table_slot(gemm_entry *table, const gemm_key *key) {
  uint32_t i = key_hash(key) % TABLE_SLOTS;
  while (table[i].used && !key_equal(&table[i].key, key)) i = (i + 1) % TABLE_SLOTS;
  return &table[i];
}

/* ---- cuBLASLt descriptors ------------------------------------------------------------------ */

static void lt_problem_release(lt_problem *p) {
  if (p->y_layout) cublasLtMatrixLayoutDestroy(p->y_layout);
  if (p->x_layout) cublasLtMatrixLayoutDestroy(p->x_layout);
  if (p->w_layout) cublasLtMatrixLayoutDestroy(p->w_layout);
  if (p->op) cublasLtMatmulDescDestroy(p->op);
  p->op = NULL;
  p->w_layout = p->x_layout = p->y_layout = NULL;
}

/* The transposed product of gemm.c's head: A = w (k x m, ld k) transposed, B = x^T (k x n, ld
 * ldx), C = D = y^T (m x n, ld ldy). On failure p holds what was made (release it). */
static int lt_problem_make(lt_problem *p, const gemm_key *key, twin_err *err) {
  const cublasOperation_t trans_w = CUBLAS_OP_T, trans_x = CUBLAS_OP_N;
  CUBLAS_CHECK(err, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_w,
                                                   sizeof trans_w));
  CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_x,
                                                   sizeof trans_x));
  CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->w_layout, CUDA_R_16BF, (uint64_t)key->k,
                                               (uint64_t)key->m, key->k));
  CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->x_layout, CUDA_R_16BF, (uint64_t)key->k,
                                               (uint64_t)key->n, key->ldx));
  CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->y_layout,
                                               key->y_f32 ? CUDA_R_32F : CUDA_R_16BF,
                                               (uint64_t)key->m, (uint64_t)key->n, key->ldy));
  return 0;
}

/* Up to TWIN_CUDA_GEMM_TUNE_CANDIDATES algorithms for the problem that fit the workspace and the
 * operands' alignment, with out-of-place split-K reductions only (partial sums in fp32, or in
 * the output type when that is fp32): the in-place scheme accumulates in y through counters. */
static int lt_candidates(const twin_cuda_gemm_tuner *t, const lt_problem *p, const gemm_key *key,
                         cublasLtMatmulAlgo_t *algos /* [TWIN_CUDA_GEMM_TUNE_CANDIDATES] */,
                         size_t *workspaces /* [TWIN_CUDA_GEMM_TUNE_CANDIDATES] */, int *count,
                         twin_err *err) {
  *count = 0;
  cublasLtMatmulPreference_t pref = NULL;
  CUBLAS_CHECK(err, cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = TWIN_CUDA_GEMM_WORKSPACE;
  const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE |
                              (key->y_f32 ? CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE : 0u);
  const uint32_t align_w = (uint32_t)key->align_w, align_x = (uint32_t)key->align_x,
                 align_y = (uint32_t)key->align_y;
  cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                             &reductions, sizeof reductions);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                             &align_w, sizeof align_w);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                             &align_x, sizeof align_x);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                             &align_y, sizeof align_y);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                             &align_y, sizeof align_y);
  if (s != CUBLAS_STATUS_SUCCESS) {
    cublasLtMatmulPreferenceDestroy(pref);
    return twin_cublas_fail(err, s, "cublasLtMatmulPreferenceSetAttribute", __FILE__, __LINE__);
  }
  cublasLtMatmulHeuristicResult_t found[TWIN_CUDA_GEMM_TUNE_CANDIDATES];
  int n_found = 0;
  s = cublasLtMatmulAlgoGetHeuristic(t->lt, p->op, p->w_layout, p->x_layout, p->y_layout,
                                     p->y_layout, pref, TWIN_CUDA_GEMM_TUNE_CANDIDATES, found,
                                     &n_found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) return 0; /* no cuBLASLt algorithm: cublasGemmEx alone */
  if (s != CUBLAS_STATUS_SUCCESS)
    return twin_cublas_fail(err, s, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  for (int i = 0; i < n_found; i++)
    if (found[i].state == CUBLAS_STATUS_SUCCESS && found[i].workspaceSize <= workspace) {
      workspaces[*count] = found[i].workspaceSize;
      algos[(*count)++] = found[i].algo;
    }
  return 0;
}

/* The configuration of an algorithm, for reports. */
static void describe_algo(const cublasLtMatmulAlgo_t *algo, twin_cuda_gemm_choice *c) {
  int32_t id = -1, splitk = 1;
  uint32_t tile = 0, stages = 0, reduction = 0, swizzle = 0, custom = 0;
  uint16_t cluster = 0;
  size_t written = 0;
  cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &written);
  cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile,
                                       &written);
  cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages,
                                       sizeof stages, &written);
  cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk,
                                       sizeof splitk, &written);
  cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &reduction,
                                       sizeof reduction, &written);
  cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swizzle,
                                       sizeof swizzle, &written);
  cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &custom,
                                       sizeof custom, &written);
  cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster,
                                       sizeof cluster, &written);
  c->algo_id = id;
  c->tile_id = (int)tile;
  c->stages_id = (int)stages;
  c->splitk = splitk;
  c->reduction = (int)reduction;
  c->swizzle = (int)swizzle;
  c->custom = (int)custom;
  c->cluster_id = cluster;
}

/* ---- running a product ------------------------------------------------------------------- */

/* The product by cuBLASLt's algo, or by cublasGemmEx when algo is NULL. */
static cublasStatus_t launch(const twin_cuda_gemm_tuner *t, const gemm_key *key,
                             const lt_problem *p, const cublasLtMatmulAlgo_t *algo,
                             const gemm_args *a) {
  if (!algo)
    return twin_cuda_gemm(t->cublas, a->x, key->ldx, a->w, a->y, key->y_f32, key->ldy, key->n,
                          key->m, key->k, a->beta);
  const float alpha = 1.0f;
  return cublasLtMatmul(t->lt, p->op, &alpha, a->w, p->w_layout, a->x, p->x_layout, &a->beta,
                        a->y, p->y_layout, a->y, p->y_layout, algo, t->buffer,
                        TWIN_CUDA_GEMM_WORKSPACE, t->stream);
}

/* ---- tuning -------------------------------------------------------------------------------- */

static int compare_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Reads the buffer past its first MiB once (evicting L2, leaving it clean) and writes
 * SWEEP_ROWS x sweep_cols floats to the first MiB. */
static int l2_sweep(const twin_cuda_gemm_tuner *t, twin_err *err) {
  const twin_bf16 *in = (const twin_bf16 *)((const char *)t->buffer + SWEEP_OUT_BYTES);
  CUBLAS_CHECK(err, twin_cuda_gemm(t->cublas, in, SWEEP_K, in, t->buffer, 1, t->sweep_cols,
                                   SWEEP_ROWS, t->sweep_cols, SWEEP_K, 0.0f));
  return 0;
}

/* Median microseconds each candidate (slot 0 cublasGemmEx, slot 1 + i algos[i]) adds after the
 * L2 sweep; +inf for a candidate cuBLAS refused to launch. */
static int time_candidates(twin_cuda_gemm_tuner *t, const gemm_key *key, const lt_problem *p,
                           const cublasLtMatmulAlgo_t *algos, int n_algos, const gemm_args *a,
                           float *us /* [1 + n_algos] */, twin_err *err) {
  const int slots = 1 + n_algos, sweep_slot = TUNE_SLOTS;
  int ok[TUNE_SLOTS];
  int rc = l2_sweep(t, err);
  for (int c = 0; c < slots; c++) /* warm-up: loads each kernel, finds the refused ones */
    ok[c] = launch(t, key, p, c ? &algos[c - 1] : NULL, a) == CUBLAS_STATUS_SUCCESS;
  for (int r = 0; r < TUNE_RUNS && !rc; r++)
    for (int c = 0; c <= slots && !rc; c++) { /* c == slots: the sweep alone */
      const int slot = c < slots ? c : sweep_slot;
      if (c < slots && !ok[c]) continue;
      CUDA_CHECK(err, cudaEventRecord(t->start[slot][r], t->stream));
      rc = l2_sweep(t, err);
      if (c < slots) ok[c] = launch(t, key, p, c ? &algos[c - 1] : NULL, a) == CUBLAS_STATUS_SUCCESS;
      CUDA_CHECK(err, cudaEventRecord(t->stop[slot][r], t->stream));
    }
  if (rc) return rc;
  CUDA_CHECK(err, cudaStreamSynchronize(t->stream));
  float sweep_us = 0.0f;
  for (int c = 0; c <= slots; c++) {
    const int slot = c < slots ? c : sweep_slot;
    if (c < slots && !ok[c]) {
      us[c] = INFINITY;
      continue;
    }
    float ms[TUNE_RUNS];
    for (int r = 0; r < TUNE_RUNS; r++)
      CUDA_CHECK(err, cudaEventElapsedTime(&ms[r], t->start[slot][r], t->stop[slot][r]));
    qsort(ms, TUNE_RUNS, sizeof ms[0], compare_float);
    if (c < slots) us[c] = 1e3f * ms[TUNE_RUNS / 2];
    else sweep_us = 1e3f * ms[TUNE_RUNS / 2];
  }
  for (int c = 0; c < slots; c++) us[c] -= sweep_us;
  return 0;
}

/* Tunes the key on the caller's operands (beta == 0), records the choice in `slot` and leaves
 * y = the chosen candidate's product. */
static int tune(twin_cuda_gemm_tuner *t, gemm_entry *slot, const gemm_key *key,
                const gemm_args *a, twin_err *err) {
  if ((size_t)key->m * (size_t)key->k * sizeof(twin_bf16) < t->l2_bytes) {
    /* weights smaller than L2: recorded as cublasGemmEx without timing (see the file head) */
    const gemm_entry e = {.used = 1, .key = *key, .choice = {.algo_id = -1, .splitk = 1}};
    *slot = e;
    t->keys++;
    CUBLAS_CHECK(err, launch(t, key, NULL, NULL, a));
    return 0;
  }
  lt_problem p = {0};
  cublasLtMatmulAlgo_t algos[TWIN_CUDA_GEMM_TUNE_CANDIDATES];
  size_t workspaces[TWIN_CUDA_GEMM_TUNE_CANDIDATES];
  float us[TUNE_SLOTS];
  int n_algos = 0;
  int rc = lt_problem_make(&p, key, err);
  if (!rc) rc = lt_candidates(t, &p, key, algos, workspaces, &n_algos, err);
  if (!rc) rc = time_candidates(t, key, &p, algos, n_algos, a, us, err);
  if (rc) {
    lt_problem_release(&p);
    return twin_err_wrap(err, "gemm tuner: n %d m %d k %d", key->n, key->m, key->k);
  }
  float fastest = us[0];
  for (int c = 1; c <= n_algos; c++)
    if (us[c] < fastest) fastest = us[c];
  int chosen = 0; /* the first within NEAR_TIE of the fastest, cublasGemmEx first */
  while (chosen < n_algos && !(us[chosen] <= fastest * (1.0f + NEAR_TIE))) chosen++;

  gemm_entry e = {.used = 1, .key = *key};
  e.choice.candidates = 1 + n_algos;
  e.choice.chosen = chosen;
  for (int c = 0; c <= n_algos; c++) e.choice.candidate_us[c] = us[c];
  e.choice.chosen_us = us[chosen];
  e.choice.default_us = us[0];
  e.choice.algo_id = -1;
  e.choice.splitk = 1;
  if (chosen > 0) {
    e.choice.lt = 1;
    e.algo = algos[chosen - 1];
    e.problem = p;
    describe_algo(&e.algo, &e.choice);
    e.choice.workspace = workspaces[chosen - 1];
  } else {
    lt_problem_release(&p);
  }
  *slot = e;
  t->keys++;
  /* the result: y now holds the last candidate timed, not necessarily the chosen one */
  const cublasStatus_t s = launch(t, key, &slot->problem, slot->choice.lt ? &slot->algo : NULL, a);
  if (s != CUBLAS_STATUS_SUCCESS)
    return twin_cublas_fail(err, s, "gemm tuner: the chosen product", __FILE__, __LINE__);
  return 0;
}

/* ---- public ------------------------------------------------------------------------------- */

/* What create makes after the table; on failure t holds what was made (destroy frees it). */
static int tuner_init(twin_cuda_gemm_tuner *t, twin_err *err) {
  int device = 0, l2_bytes = 0;
  CUDA_CHECK(err, cudaGetDevice(&device));
  CUDA_CHECK(err, cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  t->l2_bytes = (size_t)l2_bytes;
  t->buffer_bytes = 2 * (size_t)l2_bytes;
  if (t->buffer_bytes < TWIN_CUDA_GEMM_WORKSPACE) t->buffer_bytes = TWIN_CUDA_GEMM_WORKSPACE;
  const cudaError_t e = cudaMalloc(&t->buffer, t->buffer_bytes);
  if (e != cudaSuccess) {
    t->buffer = NULL;
    return twin_err_set(err, TWIN_ENOMEM, "gemm tuner: cannot allocate %zu MiB of workspace: %s",
                        t->buffer_bytes >> 20, cudaGetErrorString(e));
  }
  CUDA_CHECK(err, cudaMemset(t->buffer, 0, t->buffer_bytes)); /* finite values for the sweep */
  t->sweep_cols = (int)((t->buffer_bytes - SWEEP_OUT_BYTES) / (SWEEP_K * sizeof(twin_bf16)));
  CUBLAS_CHECK(err, cublasLtCreate(&t->lt));
  for (int c = 0; c <= TUNE_SLOTS; c++)
    for (int r = 0; r < TUNE_RUNS; r++) {
      CUDA_CHECK(err, cudaEventCreate(&t->start[c][r]));
      CUDA_CHECK(err, cudaEventCreate(&t->stop[c][r]));
    }
  return 0;
}

int twin_cuda_gemm_tuner_create(cublasHandle_t cublas, cudaStream_t stream,
                                twin_cuda_gemm_tuner **out, twin_err *err) {
  *out = NULL;
  if (!cublas) return twin_err_set(err, TWIN_EINVAL, "gemm tuner: no cuBLAS handle");
  twin_cuda_gemm_tuner *t = calloc(1, sizeof *t);
  if (!t) return twin_err_set(err, TWIN_ENOMEM, "gemm tuner: out of memory");
  t->cublas = cublas;
  t->stream = stream;
  t->table = calloc(TABLE_SLOTS, sizeof *t->table);
  const int rc = t->table ? tuner_init(t, err)
                          : twin_err_set(err, TWIN_ENOMEM, "gemm tuner: out of memory");
  if (rc) {
    twin_cuda_gemm_tuner_destroy(t);
    return rc;
  }
  *out = t;
  return 0;
}

void twin_cuda_gemm_tuner_destroy(twin_cuda_gemm_tuner *t) {
  if (!t) return;
  if (t->table)
    for (int i = 0; i < TABLE_SLOTS; i++)
      if (t->table[i].used) lt_problem_release(&t->table[i].problem);
  free(t->table);
  for (int c = 0; c <= TUNE_SLOTS; c++)
    for (int r = 0; r < TUNE_RUNS; r++) {
      if (t->start[c][r]) cudaEventDestroy(t->start[c][r]);
      if (t->stop[c][r]) cudaEventDestroy(t->stop[c][r]);
    }
  if (t->lt) cublasLtDestroy(t->lt);
  cudaFree(t->buffer);
  free(t);
}

static gemm_key make_key(const twin_bf16 *x, int ldx, const twin_bf16 *w, const void *y,
                         int y_f32, int ldy, int n, int m, int k) {
  const gemm_key key = {.n = n, .m = m, .k = k, .ldx = ldx, .ldy = ldy, .y_f32 = y_f32 ? 1 : 0,
                        .align_x = pointer_alignment(x), .align_w = pointer_alignment(w),
                        .align_y = pointer_alignment(y)};
  return key;
}

int twin_cuda_gemm_tuned(twin_cuda_gemm_tuner *t, const twin_bf16 *x, int ldx,
                         const twin_bf16 *w, void *y, int y_f32, int ldy, int n, int m, int k,
                         float beta, twin_err *err) {
  if (!t) return twin_err_set(err, TWIN_EINVAL, "gemm tuner: no tuner");
  if (n <= 0 || m <= 0 || k <= 0 || ldx < k || ldy < m || !x || !w || !y)
    return twin_err_set(err, TWIN_EINVAL, "gemm: bad product: n %d m %d k %d ldx %d ldy %d%s", n,
                        m, k, ldx, ldy, (!x || !w || !y) ? ", a NULL operand" : "");
  const gemm_key key = make_key(x, ldx, w, y, y_f32, ldy, n, m, k);
  const gemm_args a = {.x = x, .w = w, .y = y, .beta = beta};
  gemm_entry *slot = table_slot(t->table, &key);
  if (slot->used) {
    const cublasStatus_t s =
        launch(t, &key, &slot->problem, slot->choice.lt ? &slot->algo : NULL, &a);
    if (s != CUBLAS_STATUS_SUCCESS)
      return twin_cublas_fail(err, s, slot->choice.lt ? "cublasLtMatmul (tuned)" : "cublasGemmEx",
                              __FILE__, __LINE__);
    return 0;
  }
  if (beta == 0.0f && n <= TWIN_CUDA_GEMM_TUNE_MAX_N && t->keys < TWIN_CUDA_GEMM_TUNER_KEYS) {
    enum cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_CHECK(err, cudaStreamIsCapturing(t->stream, &capture));
    if (capture == cudaStreamCaptureStatusNone) return tune(t, slot, &key, &a, err);
  }
  CUBLAS_CHECK(err, twin_cuda_gemm(t->cublas, x, ldx, w, y, y_f32, ldy, n, m, k, beta));
  return 0;
}

int twin_cuda_gemm_tuner_lookup(const twin_cuda_gemm_tuner *t, const twin_bf16 *x, int ldx,
                                const twin_bf16 *w, const void *y, int y_f32, int ldy, int n,
                                int m, int k, twin_cuda_gemm_choice *out) {
  if (!t) return 0;
  const gemm_key key = make_key(x, ldx, w, y, y_f32, ldy, n, m, k);
  const gemm_entry *slot = table_slot(t->table, &key);
  if (!slot->used) return 0;
  if (out) *out = slot->choice;
  return 1;
}

int twin_cuda_gemm_tuner_keys(const twin_cuda_gemm_tuner *t) { return t ? t->keys : 0; }
