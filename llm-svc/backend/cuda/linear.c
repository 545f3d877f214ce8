/* llm-svc/backend/cuda/linear.c — the projection dispatch of linear.h: our GEMV kernels for
 * decode-sized inputs, cuBLAS for the rest (the tuner's per-shape choice when the context has
 * one), block formats dequantized to bf16 scratch in bands of rows before cuBLAS (each band's
 * product lands in its columns of y, so the scratch can be far smaller than the matrix: the LM
 * head of a large vocabulary is done in a few bands). */
#include "llm-svc/backend/cuda/linear.h"

#include "llm-svc/backend/cuda/cuda_check.h"

int twin_cuda_linear_ctx_init(twin_cuda_linear_ctx *ctx, twin_err *err) {
  ctx->tuner = NULL;
  if (!twin_cuda_env_on("TWIN_CUDA_GEMM_TUNE")) return 0;
  const int rc = twin_cuda_gemm_tuner_create(ctx->cublas, ctx->stream, &ctx->tuner, err);
  return rc ? twin_err_wrap(err, "cuda linear") : 0;
}

void twin_cuda_linear_ctx_release(twin_cuda_linear_ctx *ctx) {
  twin_cuda_gemm_tuner_destroy(ctx->tuner);
  ctx->tuner = NULL;
}

/* y = x . w^T + beta * y for a bf16 w (a matrix, or a dequantized band of one) through cuBLAS */
static int gemm(const twin_cuda_linear_ctx *ctx, const twin_bf16 *x, int ldx,
                const twin_bf16 *w /* [m][k] */, void *y, int y_f32, int ldy, int n, int m, int k,
                float beta, twin_err *err) {
  if (ctx->tuner)
    return twin_cuda_gemm_tuned(ctx->tuner, x, ldx, w, y, y_f32, ldy, n, m, k, beta, err);
  CUBLAS_CHECK(err, twin_cuda_gemm(ctx->cublas, x, ldx, w, y, y_f32, ldy, n, m, k, beta));
  return 0;
}

twin_dtype twin_cuda_linear_storage(twin_dtype src) {
  return twin_dtype_is_quantized(src) ? src : TWIN_DT_BF16;
}

size_t twin_cuda_linear_row_bytes(twin_dtype type, int cols) {
  return twin_dtype_is_quantized(type) ? twin_cuda_quant_row_stride(type, cols)
                                       : (size_t)cols * sizeof(twin_bf16);
}

int twin_cuda_linear_forward(const twin_cuda_linear_ctx *ctx, const twin_cuda_linear *L,
                             const twin_bf16 *x, int ldx, void *y, int y_f32, int ldy, int n,
                             float beta, twin_err *err) {
  const int quantized = twin_dtype_is_quantized(L->type);
  if (n <= TWIN_CUDA_GEMV_MAX_N && (quantized || ctx->gemv)) {
    if (quantized)
      CUDA_CHECK(err, twin_cuda_gemv_quant(y, y_f32, ldy, x, 1, ldx, L->w, L->type, n, L->rows,
                                           L->cols, beta, ctx->stream));
    else
      CUDA_CHECK(err, twin_cuda_gemv_bf16(y, y_f32, ldy, x, ldx, L->w, n, L->rows, L->cols, beta,
                                          ctx->stream));
    return 0;
  }
  if (!quantized) return gemm(ctx, x, ldx, L->w, y, y_f32, ldy, n, L->rows, L->cols, beta, err);
  /* block format, many rows of x: bands of whole weight rows through the scratch */
  int band = (int)(ctx->dequant_elems / (size_t)L->cols);
  if (band <= 0)
    return twin_err_set(err, TWIN_EINVAL, "cuda linear: dequantize scratch of %zu values holds "
                        "no row of %d columns", ctx->dequant_elems, L->cols);
  const size_t out_esize = y_f32 ? sizeof(float) : sizeof(twin_bf16);
  for (int r0 = 0; r0 < L->rows; r0 += band) {
    const int rows = L->rows - r0 < band ? L->rows - r0 : band;
    CUDA_CHECK(err, twin_cuda_dequantize_bf16(ctx->dequant,
                                              (const char *)L->w + (size_t)r0 * L->row_bytes,
                                              L->type, rows, L->cols, ctx->stream));
    const int rc = gemm(ctx, x, ldx, ctx->dequant, (char *)y + (size_t)r0 * out_esize, y_f32,
                        ldy, n, rows, L->cols, beta, err);
    if (rc) return rc;
  }
  return 0;
}
