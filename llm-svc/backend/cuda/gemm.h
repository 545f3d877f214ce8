/* llm-svc/backend/cuda/gemm.h — the projections: row-major y = x . w^T through cuBLAS, bf16
 * operands, fp32 accumulation, bf16 or fp32 output. The weights keep the Hugging Face layout
 * [out_features][in_features]; activations are [tokens][features]. Pointers are device memory,
 * borrowed for the enqueued work. Two entry points: twin_cuda_gemm (cublasGemmEx, cuBLAS's
 * default choice) and the tuner (cuBLASLt with an algorithm timed per shape on first sight). */
#ifndef TWIN_BACKEND_CUDA_GEMM_H
#define TWIN_BACKEND_CUDA_GEMM_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stddef.h>

#include "common/error.h"
#include "llm-svc/backend/cuda/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[n][m] = x[n][k] . w[m][k]^T + beta * y[n][m]; x rows are ldx apart (ldx >= k), y rows ldy
 * apart (ldy >= m: y may be a band of columns of a wider matrix); y is fp32 when y_f32, else
 * bf16. n, m, k > 0. Runs on the handle's stream. */
cublasStatus_t twin_cuda_gemm(cublasHandle_t handle, const twin_bf16 *x /* [n][ldx] */, int ldx,
                              const twin_bf16 *w /* [m][k] */, void *y /* [n][ldy] */, int y_f32,
                              int ldy, int n, int m, int k, float beta);

/* ---- the tuner ------------------------------------------------------------------------------
 * A product's key is (n, m, k, ldx, ldy, y_f32) and the alignment of x, w and y (the largest
 * power of two up to 256 dividing each address). The first time a key with n <= TWIN_CUDA_GEMM_
 * TUNE_MAX_N is seen with beta == 0 while the stream is not capturing a CUDA graph, the tuner
 * times cublasGemmEx's default and up to TWIN_CUDA_GEMM_TUNE_CANDIDATES cuBLASLt algorithms on
 * the caller's buffers (y is overwritten along the way, then written by the chosen one) and
 * keeps the fastest for the key; every later product of the key runs that choice, also inside
 * a graph capture and with beta != 0. Weights smaller than the L2 are not timed: their key is
 * recorded as cublasGemmEx (gemm.c says why). Products of keys never tuned run cublasGemmEx as
 * twin_cuda_gemm does. The same key always gives the same bits within one tuner (the split-K
 * reductions allowed are the out-of-place ones). gemm.c's head gives the tuning cost. */

#define TWIN_CUDA_GEMM_TUNE_MAX_N 256       /* the largest n tuned */
#define TWIN_CUDA_GEMM_TUNE_CANDIDATES 16   /* cuBLASLt heuristic results timed per key */
#define TWIN_CUDA_GEMM_TUNER_KEYS 1024      /* keys held; later keys run cublasGemmEx */
#define TWIN_CUDA_GEMM_WORKSPACE ((size_t)32 << 20) /* cuBLASLt workspace bytes */

typedef struct twin_cuda_gemm_tuner twin_cuda_gemm_tuner;

/* What a tuned key runs and what its tuning measured: microseconds a candidate adds after a
 * kernel that leaves L2 without its weights (median of the timed runs; gemm.c). */
typedef struct twin_cuda_gemm_choice {
  int lt;                 /* 1: a cuBLASLt algorithm (fields below); 0: cublasGemmEx default */
  int chosen;             /* 0: cublasGemmEx; i >= 1: the heuristic's i-th result */
  int algo_id, tile_id, stages_id, splitk, reduction, swizzle, custom, cluster_id;
  size_t workspace;       /* bytes the algorithm uses */
  int candidates;         /* how many were timed, cublasGemmEx included (0: not timed) */
  float candidate_us[1 + TWIN_CUDA_GEMM_TUNE_CANDIDATES]; /* [candidates]; +inf: refused */
  float chosen_us, default_us;
} twin_cuda_gemm_choice;

/* Creates a tuner that runs its products with `cublas` (borrowed; bound to `stream`, which the
 * tuner also borrows and enqueues everything on). Owns a cuBLASLt handle, one device buffer of
 * max(TWIN_CUDA_GEMM_WORKSPACE, twice the L2 size) bytes (the cuBLASLt workspace, and what is
 * read between timed runs to evict the weights from L2) and the key table. One tuner serves
 * one stream from one thread at a time. */
int twin_cuda_gemm_tuner_create(cublasHandle_t cublas, cudaStream_t stream,
                                twin_cuda_gemm_tuner **out, twin_err *err);
/* Frees everything the tuner owns (after the stream's work is done). NULL is a no-op. */
void twin_cuda_gemm_tuner_destroy(twin_cuda_gemm_tuner *tuner);

/* y[n][m] = x[n][k] . w[m][k]^T + beta * y[n][m] with the key's choice, as twin_cuda_gemm
 * defines it. y must not overlap x or w. A first sight that tunes synchronises the stream and
 * takes milliseconds (see gemm.c). Returns 0, TWIN_EINVAL for bad arguments, TWIN_EDEVICE with
 * the failing call in err. */
int twin_cuda_gemm_tuned(twin_cuda_gemm_tuner *tuner, const twin_bf16 *x /* [n][ldx] */, int ldx,
                         const twin_bf16 *w /* [m][k] */, void *y /* [n][ldy] */, int y_f32,
                         int ldy, int n, int m, int k, float beta, twin_err *err);

/* 1 and *out filled when the key of these arguments has a choice, else 0. */
int twin_cuda_gemm_tuner_lookup(const twin_cuda_gemm_tuner *tuner, const twin_bf16 *x, int ldx,
                                const twin_bf16 *w, const void *y, int y_f32, int ldy, int n,
                                int m, int k, twin_cuda_gemm_choice *out);
/* Number of keys with a choice. */
int twin_cuda_gemm_tuner_keys(const twin_cuda_gemm_tuner *tuner);

#ifdef __cplusplus
}
#endif

#endif
