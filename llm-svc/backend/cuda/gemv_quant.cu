/* llm-svc/backend/cuda/gemv_quant.cu — matrix-vector products straight from ggml block-quantized
 * weights (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K; layouts in llm-svc/model/quant.h) for the
 * decode steps, and a dequantizer to bf16 for prefill (dequantize, then cuBLAS).
 * GEMV: one warp serves GEMV_ROWS_PER_WARP output rows; it stages a chunk of each row's blocks in
 * shared memory with 16-byte loads (rows of these formats are rarely 16-byte aligned, so the chunk
 * is read from the aligned word below it), then each lane dequantizes groups of 8 consecutive
 * elements in registers and multiplies them with the 8 matching x values of every token, so the
 * weights are read once for all n <= 8 tokens and the x loads of a warp are contiguous. Values are
 * decoded in the reference's operation order (quant.c), so the dequantized weights are bit-equal. */
#include <cuda_fp16.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* ==== formats ====================================================================================
 * Format tags, bytes per block, elements per block. */

enum { FMT_Q4_0, FMT_Q4_1, FMT_Q5_0, FMT_Q8_0, FMT_Q4_K, FMT_Q5_K, FMT_Q6_K };

template <int F> struct fmt_info;
template <> struct fmt_info<FMT_Q4_0> { static constexpr int bytes = 18, elems = 32; };
template <> struct fmt_info<FMT_Q4_1> { static constexpr int bytes = 20, elems = 32; };
template <> struct fmt_info<FMT_Q5_0> { static constexpr int bytes = 22, elems = 32; };
template <> struct fmt_info<FMT_Q8_0> { static constexpr int bytes = 34, elems = 32; };
template <> struct fmt_info<FMT_Q4_K> { static constexpr int bytes = 144, elems = 256; };
template <> struct fmt_info<FMT_Q5_K> { static constexpr int bytes = 176, elems = 256; };
template <> struct fmt_info<FMT_Q6_K> { static constexpr int bytes = 210, elems = 256; };

/* ==== byte sources ===============================================================================
 * The decoders read bytes at any offset through one of these. */

/* Shared memory staged as 32-bit words: 8 bytes at any offset from three aligned words. The
 * buffer must have 8 readable bytes past its last used byte. */
struct smem_src {
  const uint32_t *w;
  __device__ __forceinline__ uint2 u64(int off) const {
    const int i = off >> 2, sh = (off & 3) * 8;
    const uint32_t a = w[i], b = w[i + 1], c = w[i + 2];
    return make_uint2(__funnelshift_r(a, b, sh), __funnelshift_r(b, c, sh));
  }
  __device__ __forceinline__ uint32_t u8(int off) const {
    return (w[off >> 2] >> ((off & 3) * 8)) & 0xffu;
  }
  __device__ __forceinline__ uint32_t u32(int off) const {
    const int i = off >> 2;
    return __funnelshift_r(w[i], w[i + 1], (off & 3) * 8);
  }
  __device__ __forceinline__ uint32_t u16(int off) const { return u32(off) & 0xffffu; }
};

/* Global memory read byte by byte (the dequantizer: every byte is read once, no reuse). */
struct gmem_src {
  const uint8_t *p;
  __device__ __forceinline__ uint32_t u8(int off) const { return __ldg(p + off); }
  __device__ __forceinline__ uint32_t u16(int off) const { return u8(off) | u8(off + 1) << 8; }
  __device__ __forceinline__ uint32_t u32(int off) const { return u16(off) | u16(off + 2) << 16; }
  __device__ __forceinline__ uint2 u64(int off) const { return make_uint2(u32(off), u32(off + 4)); }
};

static __device__ __forceinline__ float f16_bits(uint32_t h) {
  return __half2float(__ushort_as_half((unsigned short)h));
}

/* (float)v for |v| < 2^22, exact, without the quarter-rate integer-to-float conversion: v is
 * added to the integer bits of 1.5 * 2^23, whose unit in the last place is 1. */
static __device__ __forceinline__ float small_int_to_f32(int v) {
  return __fsub_rn(__int_as_float(0x4B400000 + v), 12582912.0f);
}

/* byte i (0..7) of an 8-byte value */
static __device__ __forceinline__ uint32_t byte_of(uint2 v, int i) {
  return ((i < 4 ? v.x : v.y) >> ((i & 3) * 8)) & 0xffu;
}

/* byte i (0..7) of v, an unsigned integer u, as the float u + 2^23 - bias (exact for the small
 * biases used here): one byte permute puts u under the exponent of 2^23, one subtraction. */
static __device__ __forceinline__ float byte_f32(uint2 v, int i, float bias) {
  const uint32_t word = i < 4 ? v.x : v.y;
  return __fsub_rn(__uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u | (unsigned)(i & 3))), bias);
}

/* per-byte (v >> shift) & mask on both words */
static __device__ __forceinline__ uint2 bytes_shr_and(uint2 v, int shift, uint32_t mask) {
  return make_uint2((v.x >> shift) & mask, (v.y >> shift) & mask);
}

#define MAGIC 8388608.0f /* 2^23 */

/* ==== decoders ===================================================================================
 * dequant8<F>(src, off, g, w): the 8 elements 8g .. 8g+7 of the run of blocks starting at byte
 * `off` of src, as floats, computed as quant.c's dequantizers compute them (the integer parts
 * are exact in any form, the scale products keep the reference's order and rounding). */

template <int F, typename Src>
static __device__ __forceinline__ void dequant8(const Src &s, int off, int g, float w[8]) {
  if constexpr (F == FMT_Q8_0) {
    const int b = off + 34 * (g >> 2);
    const float d = f16_bits(s.u16(b));
    uint2 q = s.u64(b + 2 + 8 * (g & 3));
    q.x ^= 0x80808080u; /* int8 + 128 */
    q.y ^= 0x80808080u;
#pragma unroll
    for (int i = 0; i < 8; i++) w[i] = __fmul_rn(d, byte_f32(q, i, MAGIC + 128.0f));
  } else if constexpr (F == FMT_Q4_0 || F == FMT_Q4_1) {
    constexpr int bb = fmt_info<F>::bytes, qs = F == FMT_Q4_0 ? 2 : 4;
    const int b = off + bb * (g >> 2), part = g & 3;
    const float d = f16_bits(s.u16(b));
    const uint2 q = bytes_shr_and(s.u64(b + qs + 8 * (part & 1)), (part >> 1) * 4, 0x0F0F0F0Fu);
    if constexpr (F == FMT_Q4_0) {
#pragma unroll
      for (int i = 0; i < 8; i++) w[i] = __fmul_rn(d, byte_f32(q, i, MAGIC + 8.0f));
    } else {
      const float m = f16_bits(s.u16(b + 2));
#pragma unroll
      for (int i = 0; i < 8; i++) w[i] = __fadd_rn(__fmul_rn(d, byte_f32(q, i, MAGIC)), m);
    }
  } else if constexpr (F == FMT_Q5_0) {
    const int b = off + 22 * (g >> 2), part = g & 3, shift = (part >> 1) * 4;
    const float d = f16_bits(s.u16(b));
    const uint32_t qh = s.u32(b + 2);
    const uint2 q = s.u64(b + 6 + 8 * (part & 1));
#pragma unroll
    for (int i = 0; i < 8; i++) {
      const int j = 8 * part + i; /* element within the block; its high bit is bit j of qh */
      const int v = (int)((byte_of(q, i) >> shift) & 15) | (int)((qh >> j) & 1) << 4;
      w[i] = __fmul_rn(d, small_int_to_f32(v - 16));
    }
  } else if constexpr (F == FMT_Q4_K || F == FMT_Q5_K) {
    constexpr int bb = fmt_info<F>::bytes, qs_off = F == FMT_Q4_K ? 16 : 48;
    const int b = off + bb * (g >> 5), e0 = (g & 31) * 8;
    const int p = e0 >> 6, upper = (e0 >> 5) & 1, l0 = e0 & 31, sub = 2 * p + upper;
    const float d = f16_bits(s.u16(b)), dmin = f16_bits(s.u16(b + 2));
    int sc, m;
    if (sub < 4) {
      sc = (int)(s.u8(b + 4 + sub) & 63);
      m = (int)(s.u8(b + 4 + sub + 4) & 63);
    } else {
      const uint32_t hi = s.u8(b + 4 + sub + 4);
      sc = (int)((hi & 15) | (s.u8(b + 4 + sub - 4) >> 6) << 4);
      m = (int)((hi >> 4) | (s.u8(b + 4 + sub) >> 6) << 4);
    }
    const float ds = __fmul_rn(d, small_int_to_f32(sc)), dm = __fmul_rn(dmin, small_int_to_f32(m));
    uint2 q = bytes_shr_and(s.u64(b + qs_off + 32 * p + l0), 4 * upper, 0x0F0F0F0Fu);
    if constexpr (F == FMT_Q5_K) { /* bit `sub` of qh[l] is bit 4 of element l */
      const uint2 qh = bytes_shr_and(s.u64(b + 16 + l0), sub, 0x01010101u);
      q.x |= qh.x << 4;
      q.y |= qh.y << 4;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) w[i] = __fsub_rn(__fmul_rn(ds, byte_f32(q, i, MAGIC)), dm);
  } else { /* FMT_Q6_K */
    const int b = off + 210 * (g >> 5), e0 = (g & 31) * 8;
    const int half = e0 >> 7, e = e0 & 127, quad = e >> 5, l0 = e & 31;
    const float d = f16_bits(s.u16(b + 208));
    const int sc = (int)(int8_t)s.u8(b + 192 + 8 * half + 2 * quad + (l0 >> 4));
    const float dsc = __fmul_rn(d, small_int_to_f32(sc));
    uint2 q = bytes_shr_and(s.u64(b + 64 * half + 32 * (quad & 1) + l0), 4 * (quad >> 1), 0x0F0F0F0Fu);
    const uint2 qh = bytes_shr_and(s.u64(b + 128 + 32 * half + l0), 2 * quad, 0x03030303u);
    q.x |= qh.x << 4;
    q.y |= qh.y << 4;
#pragma unroll
    for (int i = 0; i < 8; i++) w[i] = __fmul_rn(dsc, byte_f32(q, i, MAGIC + 32.0f));
  }
}

/* ==== GEMV =======================================================================================
 * Grid: ceil(rows / (GEMV_WARPS * GEMV_ROWS_PER_WARP)) blocks of GEMV_WARPS warps. A row is
 * walked in chunks of CHUNK_UNITS * 256 elements (at most GEMV_CHUNK_BYTES of blocks). */

#define GEMV_WARPS 4
#define GEMV_ROWS_PER_WARP 2
#define GEMV_CHUNK_BYTES 2048
#define GEMV_STAGE_BYTES (GEMV_CHUNK_BYTES + 32) /* + the alignment slack and the 8-byte overread */

template <int F> struct chunk_of {
  static constexpr int unit_bytes = fmt_info<F>::bytes * (256 / fmt_info<F>::elems); /* 256 elems */
  static constexpr int units = GEMV_CHUNK_BYTES / unit_bytes;
  static constexpr int elems = units * 256;
};

static __device__ __forceinline__ void load8(const float *p, float v[8]) {
  const float4 a = *reinterpret_cast<const float4 *>(p), b = *reinterpret_cast<const float4 *>(p + 4);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
static __device__ __forceinline__ void load8(const __nv_bfloat16 *p, float v[8]) {
  const uint4 q = *reinterpret_cast<const uint4 *>(p); /* bf16 -> fp32 is a 16-bit shift */
  const uint32_t u[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    v[2 * i] = __uint_as_float(u[i] << 16);
    v[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
  }
}

template <int F, typename XT, int NMAX>
static __global__ void __launch_bounds__(GEMV_WARPS * 32)
gemv_kernel(void *__restrict__ y /* [n][rows] */, int y_f32, const XT *__restrict__ x /* [n][cols] */,
            const uint8_t *__restrict__ wq /* [rows][row_bytes] */, int n, int rows, int cols,
            float beta) {
  constexpr int BB = fmt_info<F>::bytes, BE = fmt_info<F>::elems, R = GEMV_ROWS_PER_WARP;
  __shared__ __align__(16) uint32_t stage[GEMV_WARPS][R][GEMV_STAGE_BYTES / 4];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * GEMV_WARPS + warp) * R;
  if (row0 >= rows) return;
  const size_t row_bytes = (size_t)(cols / BE) * BB;

  float acc[R][NMAX];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int t = 0; t < NMAX; t++) acc[r][t] = 0.0f;

  for (int c0 = 0; c0 < cols; c0 += chunk_of<F>::elems) {
    const int elems = min(chunk_of<F>::elems, cols - c0);
    const int len = elems / BE * BB;
    int off[R];
    /* stage: 16-byte loads from the aligned word at or below the chunk's first byte */
#pragma unroll
    for (int r = 0; r < R; r++) {
      off[r] = 0;
      if (row0 + r >= rows) continue;
      const uint8_t *start = wq + (size_t)(row0 + r) * row_bytes + (size_t)(c0 / BE) * BB;
      const uintptr_t a = reinterpret_cast<uintptr_t>(start) & ~(uintptr_t)15;
      off[r] = (int)(reinterpret_cast<uintptr_t>(start) - a);
      const uint4 *src = reinterpret_cast<const uint4 *>(a);
      uint4 *dst = reinterpret_cast<uint4 *>(stage[warp][r]);
      const int words = (off[r] + len + 15) >> 4;
#pragma unroll 4
      for (int i = lane; i < words; i += 32) dst[i] = __ldcs(src + i); /* streamed: keep x in L1 */
    }
    __syncwarp();
    const int groups = elems >> 3;
    for (int g = lane; g < groups; g += 32) {
      float w[R][8];
#pragma unroll
      for (int r = 0; r < R; r++) {
        if (row0 + r < rows) dequant8<F>(smem_src{stage[warp][r]}, off[r], g, w[r]);
        else
#pragma unroll
          for (int i = 0; i < 8; i++) w[r][i] = 0.0f;
      }
      const int e = c0 + 8 * g;
#pragma unroll
      for (int t = 0; t < NMAX; t++) {
        if (t < n) {
          float xv[8];
          load8(x + (size_t)t * cols + e, xv);
#pragma unroll
          for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < 8; i++) acc[r][t] = fmaf(w[r][i], xv[i], acc[r][t]);
        }
      }
    }
    __syncwarp(); /* the stage is rewritten by the next chunk */
  }

#pragma unroll
  for (int r = 0; r < R; r++) {
#pragma unroll
    for (int t = 0; t < NMAX; t++) {
      if (t >= n) continue;
      float v = warp_sum(acc[r][t]);
      if (lane == 0 && row0 + r < rows) {
        const size_t o = (size_t)t * rows + row0 + r;
        if (y_f32) {
          float *yf = static_cast<float *>(y);
          if (beta != 0.0f) v = fmaf(beta, yf[o], v);
          yf[o] = v;
        } else {
          __nv_bfloat16 *yb = static_cast<__nv_bfloat16 *>(y);
          if (beta != 0.0f) v = fmaf(beta, __bfloat162float(yb[o]), v);
          yb[o] = __float2bfloat16_rn(v);
        }
      }
    }
  }
}

/* ==== dequantize to bf16 =========================================================================
 * One thread per 8 consecutive elements of a row: one 16-byte store. */

template <int F>
static __global__ void dequant_bf16_kernel(uint4 *__restrict__ out /* [rows][cols/8] */,
                                           const uint8_t *__restrict__ wq, int64_t rows, int cols) {
  constexpr int BB = fmt_info<F>::bytes, BE = fmt_info<F>::elems;
  const int groups_per_row = cols >> 3;
  const size_t row_bytes = (size_t)(cols / BE) * BB;
  const int64_t total = rows * groups_per_row;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / groups_per_row;
    const int g = (int)(i - row * groups_per_row);
    /* start from the group's own block so offsets stay small */
    constexpr int groups_per_block = BE / 8;
    const int blk = g / groups_per_block;
    const gmem_src s{wq + (size_t)row * row_bytes + (size_t)blk * BB};
    float w[8];
    dequant8<F>(s, 0, g - blk * groups_per_block, w);
    out[i] = f32_to_bf16x8(w);
  }
}

/* ==== launchers ================================================================================== */

static int fmt_of(twin_dtype t) {
  switch (t) {
    case TWIN_DT_Q4_0: return FMT_Q4_0;
    case TWIN_DT_Q4_1: return FMT_Q4_1;
    case TWIN_DT_Q5_0: return FMT_Q5_0;
    case TWIN_DT_Q8_0: return FMT_Q8_0;
    case TWIN_DT_Q4_K: return FMT_Q4_K;
    case TWIN_DT_Q5_K: return FMT_Q5_K;
    case TWIN_DT_Q6_K: return FMT_Q6_K;
    default: return -1;
  }
}

static int block_elems_of(int f) { return f >= FMT_Q4_K ? 256 : 32; }

template <int F, typename XT>
static void launch_gemv(void *y, int y_f32, const void *x, const void *w, int n, int rows, int cols,
                        float beta, cudaStream_t stream) {
  const int per_block = GEMV_WARPS * GEMV_ROWS_PER_WARP;
  const unsigned grid = (unsigned)((rows + per_block - 1) / per_block);
  const XT *xt = static_cast<const XT *>(x);
  const uint8_t *wq = static_cast<const uint8_t *>(w);
  if (n == 1)
    gemv_kernel<F, XT, 1><<<grid, GEMV_WARPS * 32, 0, stream>>>(y, y_f32, xt, wq, n, rows, cols, beta);
  else if (n <= 4)
    gemv_kernel<F, XT, 4><<<grid, GEMV_WARPS * 32, 0, stream>>>(y, y_f32, xt, wq, n, rows, cols, beta);
  else
    gemv_kernel<F, XT, TWIN_CUDA_GEMV_MAX_N><<<grid, GEMV_WARPS * 32, 0, stream>>>(y, y_f32, xt, wq, n,
                                                                                   rows, cols, beta);
}

template <int F>
static void launch_gemv_x(void *y, int y_f32, const void *x, int x_bf16, const void *w, int n,
                          int rows, int cols, float beta, cudaStream_t stream) {
  if (x_bf16) launch_gemv<F, __nv_bfloat16>(y, y_f32, x, w, n, rows, cols, beta, stream);
  else launch_gemv<F, float>(y, y_f32, x, w, n, rows, cols, beta, stream);
}

extern "C" cudaError_t twin_cuda_gemv_quant(void *y, int y_f32, const void *x, int x_bf16,
                                            const void *w, twin_dtype w_type, int n, int rows,
                                            int cols, float beta, cudaStream_t stream) {
  const int f = fmt_of(w_type);
  if (f < 0 || !y || !x || !w || n < 1 || n > TWIN_CUDA_GEMV_MAX_N || rows < 1 || cols < 1 ||
      cols % block_elems_of(f) != 0 || (reinterpret_cast<uintptr_t>(w) & 15) != 0 ||
      (reinterpret_cast<uintptr_t>(x) & 15) != 0)
    return cudaErrorInvalidValue;
  switch (f) {
    case FMT_Q4_0: launch_gemv_x<FMT_Q4_0>(y, y_f32, x, x_bf16, w, n, rows, cols, beta, stream); break;
    case FMT_Q4_1: launch_gemv_x<FMT_Q4_1>(y, y_f32, x, x_bf16, w, n, rows, cols, beta, stream); break;
    case FMT_Q5_0: launch_gemv_x<FMT_Q5_0>(y, y_f32, x, x_bf16, w, n, rows, cols, beta, stream); break;
    case FMT_Q8_0: launch_gemv_x<FMT_Q8_0>(y, y_f32, x, x_bf16, w, n, rows, cols, beta, stream); break;
    case FMT_Q4_K: launch_gemv_x<FMT_Q4_K>(y, y_f32, x, x_bf16, w, n, rows, cols, beta, stream); break;
    case FMT_Q5_K: launch_gemv_x<FMT_Q5_K>(y, y_f32, x, x_bf16, w, n, rows, cols, beta, stream); break;
    default: launch_gemv_x<FMT_Q6_K>(y, y_f32, x, x_bf16, w, n, rows, cols, beta, stream); break;
  }
  return cudaGetLastError();
}

template <int F>
static void launch_dequant(twin_bf16 *out, const void *w, int64_t rows, int cols,
                           cudaStream_t stream) {
  const int threads = 256;
  const int64_t total = rows * (cols >> 3);
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 132 * 64) blocks = 132 * 64;
  dequant_bf16_kernel<F><<<(unsigned)blocks, threads, 0, stream>>>(
      reinterpret_cast<uint4 *>(out), static_cast<const uint8_t *>(w), rows, cols);
}

extern "C" cudaError_t twin_cuda_dequantize_bf16(twin_bf16 *out, const void *w, twin_dtype w_type,
                                                 int64_t rows, int cols, cudaStream_t stream) {
  const int f = fmt_of(w_type);
  if (f < 0 || !out || !w || rows < 0 || cols < 1 || cols % block_elems_of(f) != 0 ||
      (reinterpret_cast<uintptr_t>(out) & 15) != 0)
    return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  switch (f) {
    case FMT_Q4_0: launch_dequant<FMT_Q4_0>(out, w, rows, cols, stream); break;
    case FMT_Q4_1: launch_dequant<FMT_Q4_1>(out, w, rows, cols, stream); break;
    case FMT_Q5_0: launch_dequant<FMT_Q5_0>(out, w, rows, cols, stream); break;
    case FMT_Q8_0: launch_dequant<FMT_Q8_0>(out, w, rows, cols, stream); break;
    case FMT_Q4_K: launch_dequant<FMT_Q4_K>(out, w, rows, cols, stream); break;
    case FMT_Q5_K: launch_dequant<FMT_Q5_K>(out, w, rows, cols, stream); break;
    default: launch_dequant<FMT_Q6_K>(out, w, rows, cols, stream); break;
  }
  return cudaGetLastError();
}
