/* llm-svc/backend/cpu/cpu_linear.c — y = x . W^T over a cpu_matrix whose parts are held in fp32
 * (OpenBLAS sgemm / sgemv, as the fp32 path always ran) or in block formats (the input
 * quantized once into the scratch activation buffers, then the quantized product of
 * cpu_quant_matmul.c over all quantized parts in one pool job); and the embedding gather, which
 * decodes one row of blocks at a time so a quantized embedding table is never expanded. */
#include <cblas.h>
#include <string.h>

#include "llm-svc/backend/cpu/cpu_backend.h"

/* y[n][rows] (stride ldy) = beta y + x[n][cols] . w[rows][cols]^T */
static void sgemm_rows(float *y, int ldy, const float *x, const float *w, int n, int rows,
                       int cols, float beta) {
  if (n == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, w, cols, x, 1, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols, w, cols,
              beta, y, ldy);
}

void cpu_linear(cpu_backend *b, float *y, int ldy, const float *x, const cpu_matrix *m, int n,
                int accumulate) {
  cpu_qweight quantized[CPU_MAX_PARTS];
  int col0[CPU_MAX_PARTS], n_quantized = 0;
  for (int p = 0; p < m->n_parts; p++) {
    const cpu_part *part = &m->parts[p];
    if (part->f32) {
      sgemm_rows(y + part->row0, ldy, x, part->f32, n, part->rows, m->cols,
                 accumulate ? 1.0f : 0.0f);
    } else {
      quantized[n_quantized] = part->q;
      col0[n_quantized++] = part->row0;
    }
  }
  if (n_quantized == 0) return;
  cpu_qact act = {.a8 = b->s.act_a8, .a8k = b->s.act_a8k};
  cpu_quantize_activations(b->pool, b->kernels, x, m->cols, n, m->cols, m->needs_a8,
                           m->needs_a8k, &act);
  cpu_quant_matmul(b->pool, b->kernels, quantized, col0, n_quantized, &act, y, ldy, accumulate);
}

void cpu_matrix_row(const cpu_matrix *m, int row, float *out) {
  for (int p = 0; p < m->n_parts; p++) {
    const cpu_part *part = &m->parts[p];
    if (row < part->row0 || row >= part->row0 + part->rows) continue;
    const int r = row - part->row0;
    if (part->f32)
      memcpy(out, part->f32 + (size_t)r * m->cols, (size_t)m->cols * sizeof *out);
    else
      twin_dequantize_row(part->q.dtype, part->q.data + (size_t)r * part->q.row_bytes, out, m->cols);
    return;
  }
}
