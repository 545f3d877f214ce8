/* llm-svc/backend/cuda/linear.h — one projection's weights on the device and its product
 * y = x . W^T + beta * y. A matrix is held either as bf16 (checkpoints in f32, f16 or bf16 are
 * converted at load) or, for GGUF block formats, as its blocks exactly as the file stores them
 * (quant.h), one row of blocks after another. The product picks its path by the number of rows
 * of x: up to TWIN_CUDA_GEMV_MAX_N (decode steps) our GEMV kernels read the weights once for all
 * rows (gemv_bf16.cu, gemv_quant.cu); more rows go to cuBLAS (through the context's GEMM tuner,
 * gemm.h, unless TWIN_CUDA_GEMM_TUNE=0), block formats after dequantizing to bf16 scratch a band
 * of rows at a time. Plain C; device pointers are borrowed. */
#ifndef TWIN_BACKEND_CUDA_LINEAR_H
#define TWIN_BACKEND_CUDA_LINEAR_H

#include <cublas_v2.h>
#include <stddef.h>

#include "common/error.h"
#include "llm-svc/backend/cuda/gemm.h"
#include "llm-svc/backend/cuda/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct twin_cuda_linear {
  void *w;            /* bf16 [rows][cols], or [rows] rows of blocks, row_bytes apart */
  twin_dtype type;    /* TWIN_DT_BF16 or a block format of quant.h */
  int rows, cols;     /* out_features, in_features */
  size_t row_bytes;   /* bytes from one row to the next */
} twin_cuda_linear;

/* What every product of one backend shares. */
typedef struct twin_cuda_linear_ctx {
  cublasHandle_t cublas;      /* bound to stream */
  cudaStream_t stream;
  twin_bf16 *dequant;         /* [dequant_elems] scratch for block formats with many rows of x */
  size_t dequant_elems;       /* >= cols of every block-format matrix (one row at a time) */
  int gemv;                   /* 1: few rows of x go through our GEMV kernels (bf16 too);
                                 0: bf16 matrices always through cuBLAS (block formats still
                                 use the dequantizing GEMV: cuBLAS cannot read them) */
  twin_cuda_gemm_tuner *tuner; /* owned (twin_cuda_linear_ctx_init / _release); NULL: every
                                  cuBLAS product through plain cublasGemmEx */
} twin_cuda_linear_ctx;

/* Makes the context's own parts once cublas (bound to stream) and stream are set: the GEMM
 * tuner, unless the environment has TWIN_CUDA_GEMM_TUNE=0 (then tuner stays NULL). Allocates
 * max(32 MiB, 2 x L2) of device memory (gemm.h): call it before sizing pools by free memory.
 * Returns 0 or a TWIN_E* code with err filled. */
int twin_cuda_linear_ctx_init(twin_cuda_linear_ctx *ctx, twin_err *err);
/* Frees what twin_cuda_linear_ctx_init made (the stream's work done); safe on a zeroed ctx and
 * twice. */
void twin_cuda_linear_ctx_release(twin_cuda_linear_ctx *ctx);

/* The device storage of a checkpoint matrix of dtype `src`: itself for block formats, bf16 for
 * f32/f16/bf16. */
twin_dtype twin_cuda_linear_storage(twin_dtype src);
/* Bytes between rows of a matrix of `type` storage with `cols` columns (cols a multiple of the
 * block length). */
size_t twin_cuda_linear_row_bytes(twin_dtype type, int cols);

/* y (row t at y + t*ldy elements, fp32 when y_f32 else bf16) = x[n][ldx] . W^T + beta * y for
 * the n rows of x (bf16, 16-byte aligned rows). Enqueued on ctx->stream; records the failing
 * call in err and returns TWIN_EDEVICE. */
int twin_cuda_linear_forward(const twin_cuda_linear_ctx *ctx, const twin_cuda_linear *L,
                             const twin_bf16 *x /* [n][ldx] */, int ldx, void *y /* [n][ldy] */,
                             int y_f32, int ldy, int n, float beta, twin_err *err);

#ifdef __cplusplus
}
#endif

#endif
