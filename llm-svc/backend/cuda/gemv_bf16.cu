/* llm-svc/backend/cuda/gemv_bf16.cu — the decode-step projection y = x . w^T for 1..8 tokens
 * with bf16 weights as stand-alone kernels: one unit of gemv_bf16_unit.cuh per thread block,
 * launched with programmatic dependent launch (cuda_util.cuh): a block issues its first round
 * of weight loads, then waits for the previous kernel; the variants and the launchers. */
#include <cuda_bf16.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/gemv_bf16_unit.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* The previous kernel's end, as gemv_unit waits for it: the first wait also lets the next
 * kernel be scheduled, unless the kernel did at its start (f.pdl_early). */
struct pdl_waiter {
  int early;
  __device__ __forceinline__ void operator()(bool first) const {
    if (first && !early) pdl_enter();
    else pdl_wait();
  }
};

template <int W, int U, int NT, int XM, int EPI>
static __global__ void __launch_bounds__(W * 32, W <= 8 ? 2 : 1) /* 8 warps: two blocks an SM */
gemv_bf16_kernel(void *__restrict__ y /* [n][ldy] */, int y_f32, int ldy, twin_gemv_fused f,
                 const twin_bf16 *__restrict__ w /* [rows][cols] */, int n, int rows, int cols,
                 float beta) {
  __shared__ __align__(16) char smem[gemv_unit_smem<W, NT, EPI>()];
  if (f.pdl_early) pdl_trigger();
  gemv_unit<W, U, NT, XM, EPI>(y, y_f32, ldy, f, w, n, rows, cols, beta, (int)blockIdx.x,
                               pdl_waiter{f.pdl_early}, smem);
}

/* ==== variants and the launcher =================================================================== */

struct bf16_variant {
  const char *name;
  void (*kernel)(void *, int, int, twin_gemv_fused, const twin_bf16 *, int, int, int, float);
  int warps, rows_per_block;
};

#define BF16_VARIANT(W, U, NT) \
  { "warps " #W " unroll " #U " tiles " #NT, gemv_bf16_kernel<W, U, NT, TWIN_GEMV_X_BF16, EPI_STORE>, W, 16 * NT }

static const bf16_variant kBf16Variants[] = {
    BF16_VARIANT(4, 4, 1), BF16_VARIANT(8, 4, 1), BF16_VARIANT(16, 4, 1), BF16_VARIANT(8, 2, 1),
    BF16_VARIANT(8, 8, 1), BF16_VARIANT(4, 4, 2), BF16_VARIANT(8, 2, 2),  BF16_VARIANT(16, 2, 1),
};
#define N_BF16_VARIANTS ((int)(sizeof kBf16Variants / sizeof kBf16Variants[0]))

/* The fused forms a decoder layer uses (shapes: tests/gpu/NOTES.md run 12; the kernels trigger
 * the next one at their start, so a shape that leaves room on a multiprocessor lets the next
 * kernel's blocks in early). Plain x with the row scale out (o_proj, down): 8 warps of 8
 * chunks, 64 KiB in flight and half an SM's registers a block. */
typedef void (*fused_kernel)(void *, int, int, twin_gemv_fused, const twin_bf16 *, int, int, int,
                             float);
static const fused_kernel kFusedRms = gemv_bf16_kernel<8, 8, 1, TWIN_GEMV_X_BF16, EPI_RMS>;
/* The pair epilogues: q/k/v with RoPE and the cache write (x plain or normed): 8 warps, 4
 * chunks a round, two tiles (the same bytes in flight as 8 warps x 8 chunks x 1 tile); normed
 * q/k/v with at most one block an SM (the 1B shapes): 16 warps, a block's whole product in
 * flight in one round. gate/up into SiLU(gate) * up (x normed): below. */
static const fused_kernel kFusedRope[2] = {gemv_bf16_kernel<8, 4, 2, TWIN_GEMV_X_BF16, EPI_ROPE>,
                                           gemv_bf16_kernel<8, 4, 2, TWIN_GEMV_X_RMSNORM, EPI_ROPE>};
static const fused_kernel kFusedRopeWide = gemv_bf16_kernel<16, 4, 2, TWIN_GEMV_X_RMSNORM, EPI_ROPE>;
/* gate/up as 4 tiles (32 gate rows, then their 32 up rows) x 2 chunks: the same bytes in
 * flight, half the blocks (the 1B gate/up in one wave of two blocks an SM), each forming
 * normed x once for 64 rows; hidden sizes that are not a multiple of 32 take the pair form. */
static const fused_kernel kFusedGlu = gemv_bf16_kernel<8, 2, 4, TWIN_GEMV_X_RMSNORM, EPI_GLU>;
static const fused_kernel kFusedGluPair = gemv_bf16_kernel<8, 4, 2, TWIN_GEMV_X_RMSNORM, EPI_GLU>;
/* Normed x, the product stored: the LM head on the last layer's residual stream. Four tiles of
 * 16 rows a block, 2 chunks a round (the same bytes in flight as the pair kernels, half the
 * blocks: each block forms normed x, a round trip after its wait, once for 64 rows) */
static const fused_kernel kFusedNormStore = gemv_bf16_kernel<8, 2, 4, TWIN_GEMV_X_RMSNORM, EPI_STORE>;
#define TWIN_SM_BLOCKS 132 /* H200 / H100 SXM multiprocessors: one block each */

/* The launcher's choice (H200 sweep, tests/gpu/NOTES.md run 4): bytes in flight decide. Over
 * 132 tiles of 16 rows: 8 warps of 8 chunks (8 KiB a warp a round, two blocks an SM); up to 132
 * tiles (the 1B o_proj and down: one block an SM): 16 warps of 4 chunks. */
static int bf16_auto_variant(int rows, int cols) {
  (void)cols;
  const int tiles = (rows + 15) / 16;
  if (tiles <= 132) return 2; /* warps 16 unroll 4 */
  return 4;                   /* warps 8 unroll 8 */
}

static cudaError_t gemv_bf16_launch(int variant, void *y, int y_f32, int ldy, const twin_bf16 *x,
                                    int ldx, const twin_bf16 *w, int n, int rows, int cols,
                                    float beta, cudaStream_t stream) {
  if (!y || !x || !w || n < 1 || n > TWIN_CUDA_GEMV_MAX_N || rows < 1 || cols < 8 ||
      cols % 8 != 0 || ldx < cols || ldx % 8 != 0 || ldy < rows ||
      (reinterpret_cast<uintptr_t>(x) & 15) != 0 || (reinterpret_cast<uintptr_t>(w) & 15) != 0 ||
      variant < -1 || variant >= N_BF16_VARIANTS)
    return cudaErrorInvalidValue;
  if (variant < 0) variant = bf16_auto_variant(rows, cols);
  const bf16_variant &v = kBf16Variants[variant];
  const unsigned grid = (unsigned)((rows + v.rows_per_block - 1) / v.rows_per_block);
  twin_gemv_fused f = {};
  f.x_mode = TWIN_GEMV_X_BF16;
  f.x = x;
  f.ldx = ldx;
  f.pdl_early = twin_cuda_pdl_early();
  return twin_launch(v.kernel, grid, v.warps * 32, 0, stream, y, y_f32, ldy, f, w, n, rows, cols,
                     beta);
}

extern "C" cudaError_t twin_cuda_gemv_bf16(void *y, int y_f32, int ldy, const twin_bf16 *x, int ldx,
                                           const twin_bf16 *w, int n, int rows, int cols,
                                           float beta, cudaStream_t stream) {
  return gemv_bf16_launch(-1, y, y_f32, ldy, x, ldx, w, n, rows, cols, beta, stream);
}

extern "C" cudaError_t twin_cuda_gemv_bf16_fused(void *y, int y_f32, int ldy,
                                                 const twin_gemv_fused *f, const twin_bf16 *w,
                                                 int n, int rows, int cols, float beta,
                                                 cudaStream_t stream) {
  if (!f || f->x_mode < TWIN_GEMV_X_BF16 || f->x_mode > TWIN_GEMV_X_RMSNORM) return cudaErrorInvalidValue;
  const int xm = (int)f->x_mode, rms = f->rms_acc != nullptr;
  if (!y || !f->x || !w || n < 1 || n > TWIN_CUDA_GEMV_MAX_N || rows < 1 || cols < 8 ||
      cols % 8 != 0 || f->ldx < cols || f->ldx % 8 != 0 ||
      (reinterpret_cast<uintptr_t>(f->x) & 15) != 0 || (reinterpret_cast<uintptr_t>(w) & 15) != 0 ||
      (xm == TWIN_GEMV_X_RMSNORM &&
       (!f->norm_w || !f->rms_sum || (reinterpret_cast<uintptr_t>(f->norm_w) & 15) != 0)) ||
      (rms && (!y_f32 || ldy != rows)) ||
      (f->rope_kv && f->glu_hidden))
    return cudaErrorInvalidValue;
  twin_gemv_fused fk = *f; /* what the kernel gets */
  fk.rms_inv_len = 1.0f / (float)cols;
  fk.pdl_early = twin_cuda_pdl_early();
  if (f->argmax && (rms || f->rope_kv || f->glu_hidden)) return cudaErrorInvalidValue;
  if (f->rope_kv) {
    const twin_gemv_rope &r = f->rope;
    if (rms || y_f32 || beta != 0.0f || ldy < rows || r.head_dim < 32 || r.head_dim % 32 != 0 ||
        r.n_heads < 1 || r.n_kv_heads < 1 || !r.cos_sin || !r.slots || !r.k_cache ||
        !r.v_cache || (reinterpret_cast<uintptr_t>(r.cos_sin) & 15) != 0 ||
        rows != (r.n_heads + 2 * r.n_kv_heads) * r.head_dim)
      return cudaErrorInvalidValue;
    if (xm == TWIN_GEMV_X_RMSNORM && rows / 32 <= TWIN_SM_BLOCKS)
      return twin_launch(kFusedRopeWide, (unsigned)(rows / 32), 16 * 32, 0, stream, y, y_f32, ldy,
                         fk, w, n, rows, cols, beta);
    return twin_launch(kFusedRope[xm], (unsigned)(rows / 32), 8 * 32, 0, stream, y, y_f32, ldy,
                       fk, w, n, rows, cols, beta);
  }
  if (f->glu_hidden) {
    if (rms || xm != TWIN_GEMV_X_RMSNORM || y_f32 || beta != 0.0f || f->glu_hidden % 16 != 0 ||
        rows != 2 * f->glu_hidden || ldy < f->glu_hidden)
      return cudaErrorInvalidValue;
    if (f->glu_hidden % 32 == 0)
      return twin_launch(kFusedGlu, (unsigned)(f->glu_hidden / 32), 8 * 32, 0, stream, y, y_f32,
                         ldy, fk, w, n, rows, cols, beta);
    return twin_launch(kFusedGluPair, (unsigned)(f->glu_hidden / 16), 8 * 32, 0, stream, y, y_f32,
                       ldy, fk, w, n, rows, cols, beta);
  }
  if (!rms) { /* normed x, stored */
    if (xm != TWIN_GEMV_X_RMSNORM || ldy < rows || f->rms_clear ||
        (f->argmax && (!y_f32 || beta != 0.0f)))
      return cudaErrorInvalidValue;
    return twin_launch(kFusedNormStore, (unsigned)((rows + 63) / 64), 8 * 32, 0, stream, y,
                       y_f32, ldy, fk, w, n, rows, cols, beta);
  }
  if (xm != TWIN_GEMV_X_BF16) return cudaErrorInvalidValue; /* no other form is built */
  return twin_launch(kFusedRms, (unsigned)((rows + 15) / 16), 8 * 32, 0, stream, y, y_f32, ldy,
                     fk, w, n, rows, cols, beta);
}

extern "C" int twin_cuda_gemv_bf16_variant_count(void) { return N_BF16_VARIANTS; }

extern "C" const char *twin_cuda_gemv_bf16_variant_name(int variant) {
  if (variant < 0 || variant >= N_BF16_VARIANTS) return "auto";
  return kBf16Variants[variant].name;
}

extern "C" int twin_cuda_gemv_bf16_auto_variant(int rows, int cols) {
  return bf16_auto_variant(rows, cols);
}

extern "C" cudaError_t twin_cuda_gemv_bf16_variant(int variant, void *y, int y_f32, int ldy,
                                                   const twin_bf16 *x, int ldx, const twin_bf16 *w,
                                                   int n, int rows, int cols, float beta,
                                                   cudaStream_t stream) {
  return gemv_bf16_launch(variant, y, y_f32, ldy, x, ldx, w, n, rows, cols, beta, stream);
}
