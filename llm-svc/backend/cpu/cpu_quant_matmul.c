/* llm-svc/backend/cpu/cpu_quant_matmul.c — matrix products on block-quantized weights: pick the
 * kernel table for this CPU, quantize the input rows once per product (to the a8 / a8k blocks
 * of quant.h), then compute every output element as one weight row . activation row dot
 * product, the output rows cut into items for the thread pool. The weights are read in their
 * stored blocks; nothing is dequantized. An item walks its rows once per input token while they
 * sit in L1, so a prefill chunk streams each weight row from memory once. */
#include <stdlib.h>
#include <string.h>

#include "llm-svc/backend/cpu/cpu_quant.h"

/* ---- kernel tables ------------------------------------------------------------------------- */

#define SCALAR_DOT(type, name)                                              \
  static float name(const void *w, const void *a, int n) {                  \
    return twin_quant_dot_scalar(type)(w, a, n);                            \
  }
SCALAR_DOT(TWIN_DT_Q4_0, scalar_dot_q4_0)
SCALAR_DOT(TWIN_DT_Q4_1, scalar_dot_q4_1)
SCALAR_DOT(TWIN_DT_Q5_0, scalar_dot_q5_0)
SCALAR_DOT(TWIN_DT_Q8_0, scalar_dot_q8_0)
SCALAR_DOT(TWIN_DT_Q4_K, scalar_dot_q4_k)
SCALAR_DOT(TWIN_DT_Q5_K, scalar_dot_q5_k)
SCALAR_DOT(TWIN_DT_Q6_K, scalar_dot_q6_k)
#undef SCALAR_DOT

static const cpu_quant_kernels scalar_kernels = {
    .name = "scalar",
    .dot = {[TWIN_DT_Q4_0] = scalar_dot_q4_0, [TWIN_DT_Q4_1] = scalar_dot_q4_1,
            [TWIN_DT_Q5_0] = scalar_dot_q5_0, [TWIN_DT_Q8_0] = scalar_dot_q8_0,
            [TWIN_DT_Q4_K] = scalar_dot_q4_k, [TWIN_DT_Q5_K] = scalar_dot_q5_k,
            [TWIN_DT_Q6_K] = scalar_dot_q6_k},
    .quantize_a8 = twin_quantize_act_a8,
    .quantize_a8k = twin_quantize_act_a8k,
};

const cpu_quant_kernels *cpu_quant_kernels_get(cpu_quant_level level) {
  switch (level) {
    case CPU_QUANT_SCALAR: return &scalar_kernels;
    case CPU_QUANT_AVX2: return cpu_quant_kernels_avx2(0);
    case CPU_QUANT_AVX2_VNNI: return cpu_quant_kernels_avx2(1);
    case CPU_QUANT_BEST: break;
  }
  const char *cap = getenv("TWIN_CPU_KERNELS");
  if (cap && strcmp(cap, "scalar") == 0) return &scalar_kernels;
  const cpu_quant_kernels *k = NULL;
  if (!cap || strcmp(cap, "avx2") != 0) k = cpu_quant_kernels_avx2(1);
  if (!k) k = cpu_quant_kernels_avx2(0);
  return k ? k : &scalar_kernels;
}

/* ---- activations --------------------------------------------------------------------------- */

typedef struct quantize_job {
  const cpu_quant_kernels *k;
  const float *x;   /* [n][ldx] */
  int ldx, cols, want_a8, want_a8k;
  cpu_qact *act;
} quantize_job;

static void quantize_one_row(void *ctx, int row, int worker) {
  (void)worker;
  const quantize_job *job = ctx;
  const float *x = job->x + (size_t)row * job->ldx;
  if (job->want_a8)
    job->k->quantize_a8(x, (twin_block_a8 *)(job->act->a8 + (size_t)row * job->act->a8_row_bytes),
                        job->cols);
  if (job->want_a8k)
    job->k->quantize_a8k(x, (twin_block_a8k *)(job->act->a8k + (size_t)row * job->act->a8k_row_bytes),
                         job->cols);
}

void cpu_quantize_activations(cpu_pool *pool, const cpu_quant_kernels *k, const float *x,
                              int ldx, int n, int cols, int want_a8, int want_a8k, cpu_qact *act) {
  act->n = n;
  act->cols = cols;
  act->a8_row_bytes = twin_quant_act_row_bytes(TWIN_ACT_A8, cols);
  act->a8k_row_bytes = twin_quant_act_row_bytes(TWIN_ACT_A8K, cols);
  quantize_job job = {.k = k, .x = x, .ldx = ldx, .cols = cols, .want_a8 = want_a8,
                      .want_a8k = want_a8k, .act = act};
  if (n < 4) {
    for (int r = 0; r < n; r++) quantize_one_row(&job, r, 0);
  } else {
    cpu_pool_run(pool, quantize_one_row, &job, n);
  }
}

/* ---- the product --------------------------------------------------------------------------- */

#define MAX_PARTS 4

typedef struct qmatmul_job {
  const cpu_quant_kernels *k;
  const cpu_qweight *parts;   /* [n_parts] */
  const int *col0;            /* [n_parts] first output column of each part */
  int n_parts;
  int item_rows;              /* output rows per item */
  int first_item[MAX_PARTS + 1];
  const cpu_qact *act;
  float *y;                   /* [n][ldy] */
  int ldy, accumulate;
} qmatmul_job;

static void qmatmul_item(void *ctx, int item, int worker) {
  (void)worker;
  const qmatmul_job *job = ctx;
  int p = 0;
  while (item >= job->first_item[p + 1]) p++;
  const cpu_qweight *w = &job->parts[p];
  const int r0 = (item - job->first_item[p]) * job->item_rows;
  const int r1 = r0 + job->item_rows < w->rows ? r0 + job->item_rows : w->rows;
  const twin_quant_dot_fn dot = job->k->dot[w->dtype];
  const int a8k = twin_quant_act_format(w->dtype) == TWIN_ACT_A8K;
  const uint8_t *act = a8k ? job->act->a8k : job->act->a8;
  const size_t act_row_bytes = a8k ? job->act->a8k_row_bytes : job->act->a8_row_bytes;
  const cpu_quant_dot4_fn dot4 = job->k->dot4[w->dtype];
  int t = 0;
  /* four tokens at a time: each weight block decoded once for the four (the item's rows are
   * read from memory by the first four tokens, from cache by the others) */
  for (; dot4 && t + 4 <= job->act->n; t += 4) {
    const uint8_t *a = act + (size_t)t * act_row_bytes;
    float *y = job->y + (size_t)t * job->ldy + job->col0[p];
    const uint8_t *row = w->data + (size_t)r0 * w->row_bytes;
    for (int r = r0; r < r1; r++, row += w->row_bytes) {
      float out[4];
      dot4(row, a, act_row_bytes, w->cols, out);
      for (int k = 0; k < 4; k++) {
        float *dst = y + (size_t)k * job->ldy + r;
        *dst = job->accumulate ? *dst + out[k] : out[k];
      }
    }
  }
  for (; t < job->act->n; t++) {
    const uint8_t *a = act + (size_t)t * act_row_bytes;
    float *y = job->y + (size_t)t * job->ldy + job->col0[p];
    const uint8_t *row = w->data + (size_t)r0 * w->row_bytes;
    for (int r = r0; r < r1; r++, row += w->row_bytes) {
      const float v = dot(row, a, w->cols);
      y[r] = job->accumulate ? y[r] + v : v;
    }
  }
}

void cpu_quant_matmul(cpu_pool *pool, const cpu_quant_kernels *k, const cpu_qweight *parts,
                      const int *col0, int n_parts, const cpu_qact *act, float *y, int ldy,
                      int accumulate) {
  qmatmul_job job = {.k = k, .parts = parts, .col0 = col0, .n_parts = n_parts, .act = act,
                     .y = y, .ldy = ldy, .accumulate = accumulate};
  /* one token (decode): two items per worker. Every claim is a compare-and-swap on a cache
   * line the workers share, and short runs of rows stream worse: measured on two cores, 2 items
   * per worker decode 1.4-1.6x faster than 16. Several tokens (prefill): items of at most 16
   * rows, each worth rows x tokens dot products, for balance. */
  long total_rows = 0;
  for (int p = 0; p < n_parts; p++) total_rows += parts[p].rows;
  const int workers = cpu_pool_size(pool);
  long rows = total_rows / ((long)workers * (act->n > 1 ? 16 : 2));
  if (act->n > 1 && rows > 16) rows = 16;
  job.item_rows = rows < 4 ? 4 : rows > (1 << 20) ? (1 << 20) : (int)rows;
  job.first_item[0] = 0;
  for (int p = 0; p < n_parts; p++)
    job.first_item[p + 1] = job.first_item[p] + (parts[p].rows + job.item_rows - 1) / job.item_rows;
  cpu_pool_run(pool, qmatmul_item, &job, job.first_item[n_parts]);
}
