/* llm-svc/backend/cuda/gemm.h — the projections: row-major y = x . w^T through cuBLAS, bf16
 * operands, fp32 accumulation, bf16 or fp32 output. The weights keep the Hugging Face layout
 * [out_features][in_features]; activations are [tokens][features]. Pointers are device memory,
 * borrowed for the enqueued work; the call runs on the handle's stream. */
#ifndef TWIN_BACKEND_CUDA_GEMM_H
#define TWIN_BACKEND_CUDA_GEMM_H

#include <cublas_v2.h>

#include "llm-svc/backend/cuda/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[n][m] = x[n][k] . w[m][k]^T + beta * y[n][m]; x rows are ldx apart (ldx >= k), y rows ldy
 * apart (ldy >= m: y may be a band of columns of a wider matrix); y is fp32 when y_f32, else
 * bf16. n, m, k > 0. */
cublasStatus_t twin_cuda_gemm(cublasHandle_t handle, const twin_bf16 *x /* [n][ldx] */, int ldx,
                              const twin_bf16 *w /* [m][k] */, void *y /* [n][ldy] */, int y_f32,
                              int ldy, int n, int m, int k, float beta);

#ifdef __cplusplus
}
#endif

#endif
