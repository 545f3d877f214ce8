/* llm-svc/backend/cuda/gemm.c — row-major projections on cuBLAS. cuBLAS is column-major, so
 * y[n][m] = x[n][k] . w[m][k]^T is computed as its transpose: y^T (m x n, ld m) =
 * op_T(w as k x m, ld k) . x^T (k x n, ld ldx), y^T ld ldy, with cublasGemmEx in CUBLAS_COMPUTE_32F. */
#include "llm-svc/backend/cuda/gemm.h"

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
