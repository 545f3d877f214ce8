/* llm-svc/backend/cuda/gemv_bf16.cu — the decode-step projection y = x . w^T for 1..8 tokens
 * with bf16 weights, written for weight bandwidth (cuBLAS reaches only 2.0-2.5 TB/s on these
 * small products). One warp multiplies a tile of 16 weight rows with all n tokens through
 * tensor-core mma.sync m16n8k16 (bf16 in, fp32 accumulate): the weights are the 16x16 A operand,
 * the tokens the 8 columns of B (columns past n repeat token 0, never stored), so n = 1..8 cost
 * about the same. Each lane
 * loads 16 bytes (8 consecutive columns) of two of the tile's rows straight to registers and
 * hands them to the A fragment as they are; a dot product does not care in which order its
 * columns are summed, so the lane's 16 bytes of x (the same 8 columns of its token) form the
 * matching B fragment and nothing is shuffled. The warps of a block split the columns in
 * interleaved super-chunks (several 32-column chunks whose loads are all issued before the first
 * mma); their partial sums are added in shared memory in a fixed order, so results are
 * deterministic. Launched with programmatic dependent launch (cuda_util.cuh): the first round of
 * weight loads is issued before waiting for the previous kernel, x and y are touched after. */
#include <cuda_bf16.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* ==== device helpers ============================================================================== */

/* 16 bytes of weights: read once per step, so kept out of L1; the L2 fetches the 256-byte
 * segment around them (a warp reads the rest of it in the same super-chunk). */
static __device__ __forceinline__ uint4 ld_weights16(const twin_bf16 *p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

/* 16 bytes of activations: every block reads them, so through L1 */
static __device__ __forceinline__ uint4 ld_act16(const twin_bf16 *p) {
  return __ldg(reinterpret_cast<const uint4 *>(p));
}

/* c[16x8] += a[16x16] . b[16x8], bf16 operands, fp32 accumulators (PTX fragment layouts:
 * a = {row g k 2q..2q+1, row g+8 k 2q.., row g k 2q+8.., row g+8 k 2q+8..}, b = {k 2q.. col g,
 * k 2q+8.. col g}, c = {row g col 2q, 2q+1, row g+8 col 2q, 2q+1}; g = lane / 4, q = lane % 4) */
static __device__ __forceinline__ void mma_bf16_16x8x16(float c[4], uint32_t a0, uint32_t a1,
                                                        uint32_t a2, uint32_t a3, uint32_t b0,
                                                        uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* ==== kernel ======================================================================================
 * Grid: ceil(rows / (16 * NT)) blocks of W warps. Block b serves rows 16*NT*b .. +16*NT-1 (NT
 * tiles of 16). The columns are cut into chunks of 32 and super-chunks of U chunks; warp w takes
 * super-chunks w, w + W, w + 2W ... For each chunk, lane (g, q) loads columns 8q .. 8q+7 of
 * rows g and g+8 of each tile and of token g's x, then issues two mma: one on
 * columns 8q..8q+3 (words x, y of the 16 bytes), one on 8q+4..8q+7 (words z, w). Rows past the
 * end read the last row (their results are dropped); columns past the end (cols is a multiple
 * of 8, so a lane's 8 columns are all in or all out) load zeros. */

template <int W, int U, int NT>
static __global__ void __launch_bounds__(W * 32)
gemv_bf16_kernel(void *__restrict__ y /* [n][ldy] */, int y_f32, int ldy,
                 const twin_bf16 *__restrict__ x /* [n][ldx] */, int ldx,
                 const twin_bf16 *__restrict__ w /* [rows][cols] */, int n, int rows, int cols,
                 float beta) {
  constexpr int ROWS = 16 * NT, SUPER = 32 * U;
  __shared__ float partial[W][ROWS][8]; /* [warp][row of the block][token] */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int row0 = blockIdx.x * ROWS;

  const twin_bf16 *wrow[NT][2]; /* rows g and g+8 of each tile, at column 8q */
#pragma unroll
  for (int t = 0; t < NT; t++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = min(row0 + 16 * t + 8 * h + g, rows - 1);
      wrow[t][h] = w + (size_t)r * cols + 8 * q;
    }
  /* a lane past n reads token 0's x: column t of an mma's result depends only on column t of
   * B, and columns >= n are never stored */
  const twin_bf16 *xrow = x + (size_t)(g < n ? g : 0) * ldx + 8 * q;

  float acc[NT][2][4]; /* two chains per tile: the even and odd chunks */
#pragma unroll
  for (int t = 0; t < NT; t++)
#pragma unroll
    for (int e = 0; e < 2; e++)
#pragma unroll
      for (int i = 0; i < 4; i++) acc[t][e][i] = 0.0f;

  const int n_super = (cols + SUPER - 1) / SUPER;
  bool waited = false; /* pdl_wait() done: after the first round of weight loads */
  for (int s = warp; s < n_super; s += W) {
    const int c0 = s * SUPER;
    uint4 wv[NT][2][U], xv[U];
    if (c0 + SUPER <= cols) { /* whole super-chunk: no predicates */
#pragma unroll
      for (int u = 0; u < U; u++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
          wv[t][0][u] = ld_weights16(wrow[t][0] + c0 + 32 * u);
          wv[t][1][u] = ld_weights16(wrow[t][1] + c0 + 32 * u);
        }
      if (!waited) pdl_enter(); /* wait for the previous kernel, let the next be scheduled */
      waited = true;
#pragma unroll
      for (int u = 0; u < U; u++) xv[u] = ld_act16(xrow + c0 + 32 * u);
    } else { /* the last, partial one */
#pragma unroll
      for (int u = 0; u < U; u++) {
        const bool in = c0 + 32 * u + 8 * q < cols;
#pragma unroll
        for (int t = 0; t < NT; t++) {
          wv[t][0][u] = in ? ld_weights16(wrow[t][0] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
          wv[t][1][u] = in ? ld_weights16(wrow[t][1] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
        }
      }
      if (!waited) pdl_enter(); /* wait for the previous kernel, let the next be scheduled */
      waited = true;
#pragma unroll
      for (int u = 0; u < U; u++) {
        const bool in = c0 + 32 * u + 8 * q < cols;
        xv[u] = in ? ld_act16(xrow + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int t = 0; t < NT; t++) {
        const uint4 lo = wv[t][0][u], hi = wv[t][1][u];
        mma_bf16_16x8x16(acc[t][u & 1], lo.x, hi.x, lo.y, hi.y, xv[u].x, xv[u].y);
        mma_bf16_16x8x16(acc[t][u & 1], lo.z, hi.z, lo.w, hi.w, xv[u].z, xv[u].w);
      }
  }

  if (!waited) pdl_wait(); /* a warp without columns still reads and writes y below */

  /* the warps' partial sums, added in warp order */
#pragma unroll
  for (int t = 0; t < NT; t++) {
    partial[warp][16 * t + g][2 * q] = acc[t][0][0] + acc[t][1][0];
    partial[warp][16 * t + g][2 * q + 1] = acc[t][0][1] + acc[t][1][1];
    partial[warp][16 * t + g + 8][2 * q] = acc[t][0][2] + acc[t][1][2];
    partial[warp][16 * t + g + 8][2 * q + 1] = acc[t][0][3] + acc[t][1][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < ROWS * n; i += W * 32) {
    const int tok = i / ROWS, r = i - tok * ROWS, row = row0 + r;
    if (row >= rows) continue;
    float v = 0.0f;
#pragma unroll
    for (int k = 0; k < W; k++) v += partial[k][r][tok];
    store_out(y, y_f32, (size_t)tok * ldy + row, v, beta);
  }
}

/* ==== variants and the launcher =================================================================== */

struct bf16_variant {
  const char *name;
  void (*kernel)(void *, int, int, const twin_bf16 *, int, const twin_bf16 *, int, int, int, float);
  int warps, rows_per_block;
};

#define BF16_VARIANT(W, U, NT) \
  { "warps " #W " unroll " #U " tiles " #NT, gemv_bf16_kernel<W, U, NT>, W, 16 * NT }

static const bf16_variant kBf16Variants[] = {
    BF16_VARIANT(4, 4, 1), BF16_VARIANT(8, 4, 1), BF16_VARIANT(16, 4, 1), BF16_VARIANT(8, 2, 1),
    BF16_VARIANT(8, 8, 1), BF16_VARIANT(4, 4, 2), BF16_VARIANT(8, 2, 2),  BF16_VARIANT(16, 2, 1),
};
#define N_BF16_VARIANTS ((int)(sizeof kBf16Variants / sizeof kBf16Variants[0]))

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
  return twin_launch(v.kernel, grid, v.warps * 32, 0, stream, y, y_f32, ldy, x, ldx, w, n, rows,
                     cols, beta);
}

extern "C" cudaError_t twin_cuda_gemv_bf16(void *y, int y_f32, int ldy, const twin_bf16 *x, int ldx,
                                           const twin_bf16 *w, int n, int rows, int cols,
                                           float beta, cudaStream_t stream) {
  return gemv_bf16_launch(-1, y, y_f32, ldy, x, ldx, w, n, rows, cols, beta, stream);
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
