/* llm-svc/backend/cuda/gemv_quant.cu — matrix-vector products straight from ggml block-quantized
 * weights (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K; layouts in llm-svc/model/quant.h) for the
 * decode steps, and a dequantizer to bf16 for prefill (dequantize, then cuBLAS).
 *
 * GEMV v2 (bf16 x): tensor cores on the integer quants. A warp serves tiles of 16 weight rows;
 * each 256-element unit of a row (a k-quant super-block, or 8 blocks of 32) is copied to the
 * warp's shared-memory ring with cp.async (16-byte copies that do not pass through registers, a
 * few units ahead of the one being computed), then every 16 elements that share one scale form
 * one mma.sync m16n8k16: A = the 16 rows' quants as exact small bf16 integers (a byte permute
 * puts q under the exponent of 128, a bf16 subtraction removes 128 and the format's offset),
 * B = the 8 tokens' x (columns past n repeat token 0 and are never stored), C in fp32, then C
 * times the row's scale is added in fp32.
 * A dot product may sum its columns in any order, so each lane takes 4 consecutive elements of
 * the group (4 bytes or nibbles it reads with one 32-bit shared load) and the 8 matching bytes
 * of x: no shuffles. Mins (Q4_1, Q4_K, Q5_K) multiply the sum of x over the block, taken by an
 * mma with A = ones. Every row tile of a block is split by units over the block's warps, whose
 * partial sums are added in shared memory in a fixed order (deterministic). Launched with
 * programmatic dependent launch (cuda_util.cuh): the first units are requested before waiting
 * for the previous kernel.
 * Rows are 16-byte aligned (twin_cuda_quant_row_stride pads them), so a unit's 256 elements
 * start on a 16-byte boundary for every format but Q6_K (210-byte blocks: read 2-byte aligned).
 *
 * GEMV with fp32 x (v1, kept for completeness; the backend's activations are bf16): a warp per 2
 * rows stages 2 KiB chunks of each row in shared memory, each lane dequantizes 8 elements and
 * multiplies them with all n rows of x on the CUDA cores.
 * Dequantization (v1 decoders, also used by the fp32-x path) computes values in the reference's
 * operation order (quant.c), so they are bit-equal to twin_dequantize_row's. */
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

/* A unit is 256 elements of a row: unit_bytes of blocks. The v2 GEMV stages `words` 16-byte
 * words of each of a tile's rows per unit (Q6_K: one more, its units start 2-byte aligned), at a
 * stride of `stride_words` in shared memory (odd, so that the 8 rows read by one load
 * instruction fall in 8 different groups of 4 banks). */
template <int F> struct unit_info {
  static constexpr int block_bytes = fmt_info<F>::bytes, block_elems = fmt_info<F>::elems;
  static constexpr int unit_bytes = block_bytes * (256 / block_elems);
  static constexpr int words = F == FMT_Q6_K ? 14 : unit_bytes / 16;
  static constexpr int stride_words = words | 1;
};
static_assert(unit_info<FMT_Q4_0>::unit_bytes % 16 == 0 && unit_info<FMT_Q4_1>::unit_bytes % 16 == 0 &&
                  unit_info<FMT_Q5_0>::unit_bytes % 16 == 0 && unit_info<FMT_Q8_0>::unit_bytes % 16 == 0 &&
                  unit_info<FMT_Q4_K>::unit_bytes % 16 == 0 && unit_info<FMT_Q5_K>::unit_bytes % 16 == 0,
              "units of every format but Q6_K are whole 16-byte words");

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

/* ==== GEMV v2 (bf16 x): device helpers ============================================================ */

/* 16 bytes global -> shared without passing through registers; the L2 fetches the 256-byte
 * segment around them (the rest of the row's unit, read by the next copies). cp_async_commit:
 * cuda_util.cuh. */
static __device__ __forceinline__ void cp_async16_seg(void *smem, const void *gmem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
/* wait until at most N of this thread's committed groups are still in flight */
template <int N>
static __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

static __device__ __forceinline__ uint32_t lds32(const uint8_t *p) {
  return *reinterpret_cast<const uint32_t *>(p);
}
static __device__ __forceinline__ uint32_t lds16(const uint8_t *p) {
  return *reinterpret_cast<const uint16_t *>(p);
}
/* 4 bytes at a 2-byte aligned address */
static __device__ __forceinline__ uint32_t lds32_a2(const uint8_t *p) {
  return __byte_perm(lds16(p), lds16(p + 2), 0x5410);
}
/* 4 bytes at p, 4-byte aligned when `aligned` (a constant after unrolling), else 2-byte aligned */
static __device__ __forceinline__ uint32_t lds32_al(const uint8_t *p, bool aligned) {
  return aligned ? lds32(p) : lds32_a2(p);
}

static __device__ __forceinline__ float f16_to_f32(uint32_t h) {
  return __half2float(__ushort_as_half((unsigned short)(h & 0xffffu)));
}

static __device__ __forceinline__ uint32_t bf16x2_sub(uint32_t a, uint32_t b) {
  uint32_t r;
  asm("sub.rn.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* v holds four unsigned integers q0..q3 < 128, one a byte. Returns the bf16 pairs
 * (q0 - OFF, q1 - OFF) and (q2 - OFF, q3 - OFF), exactly: the byte permute makes bf16 0x43qq =
 * 128 + q, the subtraction of 128 + OFF is exact (small integers). */
template <int OFF>
static __device__ __forceinline__ void u8x4_to_bf16(uint32_t v, uint32_t &p01, uint32_t &p23) {
  constexpr uint32_t k = 0x43004300u | (uint32_t)OFF << 16 | (uint32_t)OFF;
  p01 = bf16x2_sub(__byte_perm(v, 0x43434343u, 0x4140), k);
  p23 = bf16x2_sub(__byte_perm(v, 0x43434343u, 0x4342), k);
}

/* v holds four int8: the bf16 pairs (q0, q1), (q2, q3), exactly (through fp32: q + 128 under
 * the exponent of 2^23, minus 2^23 + 128; an integer of 8 bits keeps the top 16 bits only). */
static __device__ __forceinline__ void s8x4_to_bf16(uint32_t v, uint32_t &p01, uint32_t &p23) {
  const uint32_t u = v ^ 0x80808080u;
  uint32_t f[4];
#pragma unroll
  for (int i = 0; i < 4; i++)
    f[i] = __float_as_uint(
        __fsub_rn(__uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u | (unsigned)i)), MAGIC + 128.0f));
  p01 = __byte_perm(f[0], f[1], 0x7632);
  p23 = __byte_perm(f[2], f[3], 0x7632);
}

/* c[16x8] += a[16x16] . b[16x8], bf16 in, fp32 accumulate; fragments as in gemv_bf16.cu:
 * a = {row g k 2q.., row g+8 k 2q.., row g k 2q+8.., row g+8 k 2q+8..}, b = {k 2q.., k 2q+8..}
 * of column g, c = {row g col 2q, 2q+1, row g+8 col 2q, 2q+1}; g = lane / 4, q = lane % 4. */
static __device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                uint32_t a3, uint2 b) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b.x), "r"(b.y));
}

#define BF16X2_ONES 0x3F803F80u /* (1.0, 1.0) */

/* sum over the 16 k of b, for the lane's two columns 2q, 2q+1: s[0], s[1] (also in s[2], s[3]) */
static __device__ __forceinline__ void mma_sum(float s[4], uint2 b) {
  mma16816(s, BF16X2_ONES, BF16X2_ONES, BF16X2_ONES, BF16X2_ONES, b);
}

/* 8 bytes of x: 4 consecutive bf16 of the lane's token. A lane past n reads token 0's: column
 * t of an mma's result depends only on column t of B, and columns >= n are never stored, so
 * no predicate or zeroing is needed. */
static __device__ __forceinline__ uint2 x_frag(const twin_bf16 *p) {
  return ld_act_v2(p); /* after pdl_wait: cuda_util.cuh */
}

/* the B fragment from nothing: c = a . 0 */
static __device__ __forceinline__ void zero4(float c[4]) { c[0] = c[1] = c[2] = c[3] = 0.0f; }

/* ==== GEMV v2: one part (32 elements) of a unit, NT row tiles ======================================
 * A unit's 256 elements are 8 parts of 32: part j is block j (32-element formats), sub-block j
 * (Q4_K, Q5_K) or elements 32j .. 32j+31 (Q6_K: two sub-blocks of 16), so every part is two
 * mma groups of 16 columns, 32j + 16h (h = 0, 1). lo[t], hi[t]: the staged unit of rows g and
 * g+8 of tile t (shared memory, Q6_K's 2-byte shift included); xf[h]: the lane's x fragment of
 * group h (4 bf16 at column 32j + 16h + 4q of its token's row); q = lane % 4; j is a constant
 * after inlining (the callers unroll or switch), so offsets and alignments fold.
 * acc[t] += the part's contribution to tile t's C fragment. */

template <int NT>
static __device__ __forceinline__ void part_q4_0(const uint8_t *const (&lo)[NT],
                                                 const uint8_t *const (&hi)[NT], const uint2 (&xf)[2],
                                                 int q, int j, float (&acc)[NT][4]) {
  const int o = 18 * j; /* d at o, qs at o + 2: element i low nibble of qs[i], i + 16 high */
  const bool al = ((o + 2) & 3) == 0;
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const uint32_t vl = lds32_al(lo[t] + o + 2 + 4 * q, al), vh = lds32_al(hi[t] + o + 2 + 4 * q, al);
    const float dl = f16_to_f32(lds16(lo[t] + o)), dh = f16_to_f32(lds16(hi[t] + o));
    float c[4];
    zero4(c);
    uint32_t l01, l23, h01, h23;
    u8x4_to_bf16<8>(vl & 0x0F0F0F0Fu, l01, l23);
    u8x4_to_bf16<8>(vh & 0x0F0F0F0Fu, h01, h23);
    mma16816(c, l01, h01, l23, h23, xf[0]);
    u8x4_to_bf16<8>((vl >> 4) & 0x0F0F0F0Fu, l01, l23);
    u8x4_to_bf16<8>((vh >> 4) & 0x0F0F0F0Fu, h01, h23);
    mma16816(c, l01, h01, l23, h23, xf[1]);
    acc[t][0] = fmaf(dl, c[0], acc[t][0]);
    acc[t][1] = fmaf(dl, c[1], acc[t][1]);
    acc[t][2] = fmaf(dh, c[2], acc[t][2]);
    acc[t][3] = fmaf(dh, c[3], acc[t][3]);
  }
}

template <int NT>
static __device__ __forceinline__ void part_q4_1(const uint8_t *const (&lo)[NT],
                                                 const uint8_t *const (&hi)[NT], const uint2 (&xf)[2],
                                                 int q, int j, float (&acc)[NT][4]) {
  const int o = 20 * j; /* d, m at o, qs at o + 4 (4-byte aligned) */
  float s[4];           /* sum of x over the block: x = d q + m */
  zero4(s);
  mma_sum(s, xf[0]);
  mma_sum(s, xf[1]);
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const uint32_t vl = lds32(lo[t] + o + 4 + 4 * q), vh = lds32(hi[t] + o + 4 + 4 * q);
    const uint32_t dml = lds32(lo[t] + o), dmh = lds32(hi[t] + o);
    float c[4];
    zero4(c);
    uint32_t l01, l23, h01, h23;
    u8x4_to_bf16<0>(vl & 0x0F0F0F0Fu, l01, l23);
    u8x4_to_bf16<0>(vh & 0x0F0F0F0Fu, h01, h23);
    mma16816(c, l01, h01, l23, h23, xf[0]);
    u8x4_to_bf16<0>((vl >> 4) & 0x0F0F0F0Fu, l01, l23);
    u8x4_to_bf16<0>((vh >> 4) & 0x0F0F0F0Fu, h01, h23);
    mma16816(c, l01, h01, l23, h23, xf[1]);
    const float dl = f16_to_f32(dml), ml = f16_to_f32(dml >> 16);
    const float dh = f16_to_f32(dmh), mh = f16_to_f32(dmh >> 16);
    acc[t][0] = fmaf(ml, s[0], fmaf(dl, c[0], acc[t][0]));
    acc[t][1] = fmaf(ml, s[1], fmaf(dl, c[1], acc[t][1]));
    acc[t][2] = fmaf(mh, s[0], fmaf(dh, c[2], acc[t][2]));
    acc[t][3] = fmaf(mh, s[1], fmaf(dh, c[3], acc[t][3]));
  }
}

/* the 4 low bits of t (element i's fifth bit at bit i) moved to bit 4 of byte i */
static __device__ __forceinline__ uint32_t spread4_to_bit4(uint32_t t) {
  return ((t & 15u) * 0x02040810u) & 0x10101010u;
}

template <int NT>
static __device__ __forceinline__ void part_q5_0(const uint8_t *const (&lo)[NT],
                                                 const uint8_t *const (&hi)[NT], const uint2 (&xf)[2],
                                                 int q, int j, float (&acc)[NT][4]) {
  const int o = 22 * j; /* d at o, qh (bit i: element i's fifth bit) at o + 2, qs at o + 6 */
  const bool al = ((o + 2) & 3) == 0;
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const uint32_t vl = lds32_al(lo[t] + o + 6 + 4 * q, al), vh = lds32_al(hi[t] + o + 6 + 4 * q, al);
    const uint32_t qhl = lds32_al(lo[t] + o + 2, al), qhh = lds32_al(hi[t] + o + 2, al);
    const float dl = f16_to_f32(lds16(lo[t] + o)), dh = f16_to_f32(lds16(hi[t] + o));
    float c[4];
    zero4(c);
    uint32_t l01, l23, h01, h23;
    u8x4_to_bf16<16>((vl & 0x0F0F0F0Fu) | spread4_to_bit4(qhl >> (4 * q)), l01, l23);
    u8x4_to_bf16<16>((vh & 0x0F0F0F0Fu) | spread4_to_bit4(qhh >> (4 * q)), h01, h23);
    mma16816(c, l01, h01, l23, h23, xf[0]);
    u8x4_to_bf16<16>(((vl >> 4) & 0x0F0F0F0Fu) | spread4_to_bit4(qhl >> (16 + 4 * q)), l01, l23);
    u8x4_to_bf16<16>(((vh >> 4) & 0x0F0F0F0Fu) | spread4_to_bit4(qhh >> (16 + 4 * q)), h01, h23);
    mma16816(c, l01, h01, l23, h23, xf[1]);
    acc[t][0] = fmaf(dl, c[0], acc[t][0]);
    acc[t][1] = fmaf(dl, c[1], acc[t][1]);
    acc[t][2] = fmaf(dh, c[2], acc[t][2]);
    acc[t][3] = fmaf(dh, c[3], acc[t][3]);
  }
}

template <int NT>
static __device__ __forceinline__ void part_q8_0(const uint8_t *const (&lo)[NT],
                                                 const uint8_t *const (&hi)[NT], const uint2 (&xf)[2],
                                                 int q, int j, float (&acc)[NT][4]) {
  const int o = 34 * j; /* d at o, qs (int8) at o + 2 */
  const bool al = ((o + 2) & 3) == 0;
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const uint32_t v0l = lds32_al(lo[t] + o + 2 + 4 * q, al), v0h = lds32_al(hi[t] + o + 2 + 4 * q, al);
    const uint32_t v1l = lds32_al(lo[t] + o + 18 + 4 * q, al), v1h = lds32_al(hi[t] + o + 18 + 4 * q, al);
    const float dl = f16_to_f32(lds16(lo[t] + o)), dh = f16_to_f32(lds16(hi[t] + o));
    float c[4];
    zero4(c);
    uint32_t l01, l23, h01, h23;
    s8x4_to_bf16(v0l, l01, l23);
    s8x4_to_bf16(v0h, h01, h23);
    mma16816(c, l01, h01, l23, h23, xf[0]);
    s8x4_to_bf16(v1l, l01, l23);
    s8x4_to_bf16(v1h, h01, h23);
    mma16816(c, l01, h01, l23, h23, xf[1]);
    acc[t][0] = fmaf(dl, c[0], acc[t][0]);
    acc[t][1] = fmaf(dl, c[1], acc[t][1]);
    acc[t][2] = fmaf(dh, c[2], acc[t][2]);
    acc[t][3] = fmaf(dh, c[3], acc[t][3]);
  }
}

/* bit `sb` of each byte of w moved to bit 4 (Q5_K's fifth bits) */
static __device__ __forceinline__ uint32_t bit_to_bit4(uint32_t w, int sb) {
  return (sb <= 4 ? w << (4 - sb) : w >> (sb - 4)) & 0x10101010u;
}

static __device__ __forceinline__ uint32_t lds8(const uint8_t *p) { return *p; }

/* The 6-bit scale and min of sub-block j of a Q4_K / Q5_K super-block at p (scales[] at p + 4),
 * as floats (exact). */
static __device__ __forceinline__ void k_scale_min(const uint8_t *p, int j, float &sc, float &m) {
  int s, mn;
  if (j < 4) {
    s = (int)(lds8(p + 4 + j) & 63);
    mn = (int)(lds8(p + 8 + j) & 63);
  } else {
    const uint32_t hi = lds8(p + 8 + j);
    s = (int)((hi & 15) | (lds8(p + j) >> 6) << 4);
    mn = (int)((hi >> 4) | (lds8(p + 4 + j) >> 6) << 4);
  }
  sc = small_int_to_f32(s);
  m = small_int_to_f32(mn);
}

/* Q4_K and Q5_K (Q5: 32 bytes of fifth bits before the nibbles): sub-block j, x = d sc q -
 * dmin m: acc += (d sc) (q . x) - (dmin m) sum(x). Its nibbles are the low (j even) or high
 * (j odd) halves of qs[32 (j/2) + l]. */
template <int NT, bool Q5>
static __device__ __forceinline__ void part_qk(const uint8_t *const (&lo)[NT],
                                               const uint8_t *const (&hi)[NT], const uint2 (&xf)[2],
                                               int q, int j, float (&acc)[NT][4]) {
  constexpr int QS = Q5 ? 48 : 16; /* offset of qs */
  const int p = j >> 1, nib = j & 1;
  float s[4];
  zero4(s);
  mma_sum(s, xf[0]);
  mma_sum(s, xf[1]);
#pragma unroll
  for (int t = 0; t < NT; t++) {
    float c[4];
    zero4(c);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      uint32_t a[2][2]; /* [row][pair] */
#pragma unroll
      for (int r = 0; r < 2; r++) {
        const uint8_t *row = r ? hi[t] : lo[t];
        const uint32_t v = lds32(row + QS + 32 * p + 16 * h + 4 * q);
        uint32_t w = (nib ? v >> 4 : v) & 0x0F0F0F0Fu;
        if (Q5) w |= bit_to_bit4(lds32(row + 16 + 16 * h + 4 * q), j);
        u8x4_to_bf16<0>(w, a[r][0], a[r][1]);
      }
      mma16816(c, a[0][0], a[1][0], a[0][1], a[1][1], xf[h]);
    }
    float dsc[2], dmn[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const uint8_t *row = r ? hi[t] : lo[t];
      const uint32_t dd = lds32(row);
      float sc, m;
      k_scale_min(row, j, sc, m);
      dsc[r] = f16_to_f32(dd) * sc;
      dmn[r] = f16_to_f32(dd >> 16) * m;
    }
    acc[t][0] = fmaf(-dmn[0], s[0], fmaf(dsc[0], c[0], acc[t][0]));
    acc[t][1] = fmaf(-dmn[0], s[1], fmaf(dsc[0], c[1], acc[t][1]));
    acc[t][2] = fmaf(-dmn[1], s[0], fmaf(dsc[1], c[2], acc[t][2]));
    acc[t][3] = fmaf(-dmn[1], s[1], fmaf(dsc[1], c[3], acc[t][3]));
  }
}

/* Q6_K: elements 32j .. 32j+31 = half hf = j / 4, quarter qd = j % 4; x = d sc (q - 32) per
 * sub-block of 16 (lh = 0, 1). Within half hf, element 32 qd + l (l < 32) has its low 4 bits in
 * ql[64 hf + 32 (qd & 1) + l] (nibble qd >> 1), bits 4-5 in qh[32 hf + l] bits 2 qd, 2 qd + 1,
 * scale sc[8 hf + 2 qd + l / 16]. Shared-memory reads are 2-byte aligned. */
template <int NT>
static __device__ __forceinline__ void part_q6_k(const uint8_t *const (&lo)[NT],
                                                 const uint8_t *const (&hi)[NT], const uint2 (&xf)[2],
                                                 int q, int j, float (&acc)[NT][4]) {
  const int hf = j >> 2, qd = j & 3;
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const float dl = f16_to_f32(lds16(lo[t] + 208)), dh = f16_to_f32(lds16(hi[t] + 208));
#pragma unroll
    for (int lh = 0; lh < 2; lh++) {
      const int sidx = 8 * hf + 2 * qd + lh;
      uint32_t a[2][2];
#pragma unroll
      for (int r = 0; r < 2; r++) {
        const uint8_t *row = r ? hi[t] : lo[t];
        const uint32_t ql = lds32_a2(row + 64 * hf + 32 * (qd & 1) + 16 * lh + 4 * q);
        const uint32_t qh = lds32_a2(row + 128 + 32 * hf + 16 * lh + 4 * q);
        const uint32_t h2 = qd == 0 ? qh << 4 : qd == 1 ? qh << 2 : qd == 2 ? qh : qh >> 2;
        const uint32_t w = (((qd >> 1) ? ql >> 4 : ql) & 0x0F0F0F0Fu) | (h2 & 0x30303030u);
        u8x4_to_bf16<32>(w, a[r][0], a[r][1]);
      }
      float c[4];
      zero4(c);
      mma16816(c, a[0][0], a[1][0], a[0][1], a[1][1], xf[lh]);
      const float scl = dl * small_int_to_f32((int)*reinterpret_cast<const int8_t *>(lo[t] + 192 + sidx));
      const float sch = dh * small_int_to_f32((int)*reinterpret_cast<const int8_t *>(hi[t] + 192 + sidx));
      acc[t][0] = fmaf(scl, c[0], acc[t][0]);
      acc[t][1] = fmaf(scl, c[1], acc[t][1]);
      acc[t][2] = fmaf(sch, c[2], acc[t][2]);
      acc[t][3] = fmaf(sch, c[3], acc[t][3]);
    }
  }
}

template <int F, int NT>
static __device__ __forceinline__ void part_mma(const uint8_t *const (&lo)[NT],
                                                const uint8_t *const (&hi)[NT], const uint2 (&xf)[2],
                                                int q, int j, float (&acc)[NT][4]) {
  if constexpr (F == FMT_Q4_0) part_q4_0<NT>(lo, hi, xf, q, j, acc);
  else if constexpr (F == FMT_Q4_1) part_q4_1<NT>(lo, hi, xf, q, j, acc);
  else if constexpr (F == FMT_Q5_0) part_q5_0<NT>(lo, hi, xf, q, j, acc);
  else if constexpr (F == FMT_Q8_0) part_q8_0<NT>(lo, hi, xf, q, j, acc);
  else if constexpr (F == FMT_Q4_K) part_qk<NT, false>(lo, hi, xf, q, j, acc);
  else if constexpr (F == FMT_Q5_K) part_qk<NT, true>(lo, hi, xf, q, j, acc);
  else part_q6_k<NT>(lo, hi, xf, q, j, acc);
}

/* ==== GEMV v2: the kernel ============================================================================
 * Grid: ceil(rows / (16 NT)) blocks of W warps; block b serves rows 16 NT b .. +16 NT - 1 (rows
 * past the end are read from the last row, their results dropped). Warp w takes the units w,
 * w + W, w + 2W ... of the block's rows through its own ring of S stages in shared memory (S - 1
 * units in flight while one is computed; no block barrier until the end), all 8 parts of each.
 * The lane's x fragments of a unit (2 a part) are requested before waiting for its weights. The
 * warps' partial sums are added in shared memory in warp order at the end (deterministic).
 * (One ring a block with the warps splitting each unit's parts was tried: the barrier per unit
 * made it slower everywhere; tests/gpu/NOTES.md, run 4.) */

/* The lane's copies of one unit of a tile: flat word idx = tid + THREADS * j of the ROWS rows x
 * `words` words, i.e. word k of row r; the offsets do not depend on the unit. */
template <int F, int ROWS, int THREADS>
struct unit_copier {
  using UI = unit_info<F>;
  static constexpr int COPIES = ROWS * UI::words, PER = (COPIES + THREADS - 1) / THREADS;
  uint32_t src_off[PER], dst_off[PER];
  int word[PER]; /* k, or a huge value past the tile's copies */
  const uint8_t *wblock;

  __device__ __forceinline__ unit_copier(const uint8_t *wq, size_t stride, int row0, int rows,
                                         int tid) {
#pragma unroll
    for (int j = 0; j < PER; j++) {
      const int idx = tid + THREADS * j, r = idx / UI::words, k = idx - r * UI::words;
      src_off[j] = (uint32_t)(min(row0 + r, rows - 1) - row0) * (uint32_t)stride + 16u * (uint32_t)k;
      dst_off[j] = (uint32_t)(r * UI::stride_words + k) * 16u;
      word[j] = idx < COPIES ? k : 1 << 30;
    }
    wblock = wq + (size_t)row0 * stride;
  }
  /* unit u of the tile's rows into dst (a ring stage) */
  __device__ __forceinline__ void copy(int u, int n_blocks, uint4 *dst_stage) const {
    const uint8_t *src = wblock + (((size_t)u * UI::unit_bytes) & ~(size_t)15);
    uint8_t *dst = reinterpret_cast<uint8_t *>(dst_stage);
    if (UI::block_elems == 32 && 8 * u + 8 > n_blocks) { /* the last unit of a row, partial */
      const int words = ((n_blocks - 8 * u) * UI::block_bytes + 15) >> 4;
#pragma unroll
      for (int j = 0; j < PER; j++)
        if (word[j] < words) cp_async16_seg(dst + dst_off[j], src + src_off[j]);
    } else {
#pragma unroll
      for (int j = 0; j < PER; j++)
        if (COPIES % THREADS == 0 || j < PER - 1 || word[j] < UI::words)
          cp_async16_seg(dst + dst_off[j], src + src_off[j]);
    }
  }
};

/* The block's partial sums (acc of every warp, in `scratch`, free shared memory of at least
 * W * 16 NT * 8 floats) added in warp order and stored: y[tok][row0 + r] (+ beta y). */
template <int W, int NT>
static __device__ __forceinline__ void reduce_store(float *scratch, const float (&acc)[NT][4],
                                                    void *y, int y_f32, int ldy, int n, int rows,
                                                    int row0, float beta) {
  constexpr int ROWS = 16 * NT;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  float(*partial)[ROWS][8] = reinterpret_cast<float(*)[ROWS][8]>(scratch); /* [W] */
#pragma unroll
  for (int t = 0; t < NT; t++) {
    partial[warp][16 * t + g][2 * q] = acc[t][0];
    partial[warp][16 * t + g][2 * q + 1] = acc[t][1];
    partial[warp][16 * t + g + 8][2 * q] = acc[t][2];
    partial[warp][16 * t + g + 8][2 * q + 1] = acc[t][3];
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

/* rows g and g+8 of each tile in a staged unit (Q6_K: at the unit's 2-byte shift) */
template <int F, int NT>
static __device__ __forceinline__ void stage_rows(const uint4 *stage, int u, int g,
                                                  const uint8_t *(&lo)[NT], const uint8_t *(&hi)[NT]) {
  constexpr int SW = unit_info<F>::stride_words;
  const int shift = F == FMT_Q6_K ? (u * unit_info<F>::unit_bytes) & 15 : 0;
  const uint8_t *base = reinterpret_cast<const uint8_t *>(stage);
#pragma unroll
  for (int t = 0; t < NT; t++) {
    lo[t] = base + (16 * t + g) * SW * 16 + shift;
    hi[t] = lo[t] + 8 * SW * 16;
  }
}

template <int F, int W, int NT, int S>
static __global__ void __launch_bounds__(W * 32, 1)
gemv_q_warp_kernel(void *__restrict__ y /* [n][ldy] */, int y_f32, int ldy,
                   const twin_bf16 *__restrict__ x /* [n][ldx] */, int ldx,
                   const uint8_t *__restrict__ wq /* [rows][stride] */, size_t stride, int n,
                   int rows, int cols, float beta) {
  using UI = unit_info<F>;
  constexpr int ROWS = 16 * NT, STAGE = ROWS * UI::stride_words;
  static_assert(S >= 2 && (size_t)W * S * STAGE * 16 <= 49152, "ring fits static shared memory");
  static_assert(S * STAGE * 16 >= ROWS * 8 * 4, "the ring holds the partial sums afterwards");
  __shared__ uint4 ring[W][S][STAGE];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int row0 = blockIdx.x * ROWS;
  const int n_units = (cols + 255) >> 8, n_blocks = cols / UI::block_elems;
  const int my_units = warp < n_units ? (n_units - 1 - warp) / W + 1 : 0;
  const unit_copier<F, ROWS, 32> copier(wq, stride, row0, rows, lane);

#pragma unroll
  for (int i = 0; i < S - 1; i++) { /* weights only: before waiting for the previous kernel */
    if (i < my_units) copier.copy(warp + W * i, n_blocks, ring[warp][i]);
    cp_async_commit();
  }
  pdl_enter();

  const twin_bf16 *xrow = x + (size_t)(g < n ? g : 0) * ldx + 4 * q;
  float acc[NT][4];
#pragma unroll
  for (int t = 0; t < NT; t++) zero4(acc[t]);

  int slot = 0; /* ring slot of unit i */
  for (int i = 0; i < my_units; i++) {
    const int u = warp + W * i;
    const int nb = UI::block_elems == 32 ? min(8, n_blocks - 8 * u) : 8;
    uint2 xf[8][2]; /* the unit's x fragments, requested before waiting for its weights */
#pragma unroll
    for (int j = 0; j < 8; j++)
      if (UI::block_elems == 256 || j < nb)
#pragma unroll
        for (int h = 0; h < 2; h++) xf[j][h] = x_frag(xrow + 256 * u + 32 * j + 16 * h);
    cp_async_wait<S - 2>(); /* unit i has landed (this lane's copies) */
    __syncwarp();           /* ... everyone's; and slot i - 1 is no longer read */
    if (i + S - 1 < my_units) copier.copy(u + W * (S - 1), n_blocks, ring[warp][slot == 0 ? S - 1 : slot - 1]);
    cp_async_commit();
    const uint8_t *lo[NT], *hi[NT];
    stage_rows<F, NT>(ring[warp][slot], u, g, lo, hi);
    if (nb == 8) {
#pragma unroll
      for (int j = 0; j < 8; j++) part_mma<F, NT>(lo, hi, xf[j], q, j, acc);
    } else {
#pragma unroll
      for (int j = 0; j < 8; j++)
        if (j < nb) part_mma<F, NT>(lo, hi, xf[j], q, j, acc);
    }
    slot = slot + 1 == S ? 0 : slot + 1;
  }
  cp_async_wait<0>();
  __syncthreads(); /* every warp is done with the ring: it now holds the partial sums */
  reduce_store<W, NT>(reinterpret_cast<float *>(&ring[0][0][0]), acc, y, y_f32, ldy, n, rows, row0,
                      beta);
}

/* ==== GEMV with fp32 x (v1) ========================================================================
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
template <int F, typename XT, int NMAX>
static __global__ void __launch_bounds__(GEMV_WARPS * 32)
gemv_kernel(void *__restrict__ y /* [n][ldy] */, int y_f32, int ldy,
            const XT *__restrict__ x /* [n][ldx] */, int ldx,
            const uint8_t *__restrict__ wq /* [rows][stride] */, size_t stride, int n, int rows,
            int cols, float beta) {
  constexpr int BB = fmt_info<F>::bytes, BE = fmt_info<F>::elems, R = GEMV_ROWS_PER_WARP;
  __shared__ __align__(16) uint32_t stage[GEMV_WARPS][R][GEMV_STAGE_BYTES / 4];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * GEMV_WARPS + warp) * R;
  pdl_enter();
  if (row0 >= rows) return;

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
      const uint8_t *start = wq + (size_t)(row0 + r) * stride + (size_t)(c0 / BE) * BB;
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
          load8(x + (size_t)t * ldx + e, xv);
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
      if (lane == 0 && row0 + r < rows)
        store_out(y, y_f32, (size_t)t * ldy + row0 + r, v, beta);
    }
  }
}

/* ==== dequantize to bf16 =========================================================================
 * One thread per 8 consecutive elements of a row: one 16-byte store. */

template <int F>
static __global__ void dequant_bf16_kernel(uint4 *__restrict__ out /* [rows][cols/8] */,
                                           const uint8_t *__restrict__ wq /* [rows][stride] */,
                                           size_t stride, int64_t rows, int cols) {
  constexpr int BB = fmt_info<F>::bytes, BE = fmt_info<F>::elems;
  const int groups_per_row = cols >> 3;
  const int64_t total = rows * groups_per_row;
  pdl_enter();
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / groups_per_row;
    const int g = (int)(i - row * groups_per_row);
    /* start from the group's own block so offsets stay small */
    constexpr int groups_per_block = BE / 8;
    const int blk = g / groups_per_block;
    const gmem_src s{wq + (size_t)row * stride + (size_t)blk * BB};
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

static int block_bytes_of(int f) {
  static const int bytes[] = {18, 20, 22, 34, 144, 176, 210}; /* in FMT_* order */
  return bytes[f];
}

extern "C" size_t twin_cuda_quant_row_stride(twin_dtype type, int cols) {
  const int f = fmt_of(type);
  if (f < 0 || cols < 1 || cols % block_elems_of(f) != 0) return 0;
  const size_t bytes = (size_t)(cols / block_elems_of(f)) * (size_t)block_bytes_of(f);
  return (bytes + 15) & ~(size_t)15;
}

/* ---- v2 (bf16 x): variants -------------------------------------------------------------------- */

typedef void (*gemv_q_fn)(void *, int, int, const twin_bf16 *, int, const uint8_t *, size_t, int,
                          int, int, float);

/* Ring stages for (format, warps, tiles): as many as fit 48 KiB of static shared memory, at most
 * 4; fewer than 2: no such variant. */
template <int F, int W, int NT>
constexpr int q_stages() {
  constexpr int s = 49152 / (W * 16 * NT * unit_info<F>::stride_words * 16);
  return s > 4 ? 4 : s;
}

template <int F, int W, int NT>
static gemv_q_fn q_kernel_for() {
  constexpr int s = q_stages<F, W, NT>();
  if constexpr (s >= 2) return gemv_q_warp_kernel<F, W, NT, s>;
  else return nullptr;
}

struct q_variant {
  const char *name;
  int warps, tiles;
  gemv_q_fn kernel[7]; /* by FMT_*; NULL where the rings do not fit */
};

#define Q_VARIANT(W, NT)                                                                            \
  {                                                                                                 \
    "warps " #W " tiles " #NT, W, NT,                                                               \
    {                                                                                               \
      q_kernel_for<FMT_Q4_0, W, NT>(), q_kernel_for<FMT_Q4_1, W, NT>(),                             \
          q_kernel_for<FMT_Q5_0, W, NT>(), q_kernel_for<FMT_Q8_0, W, NT>(),                         \
          q_kernel_for<FMT_Q4_K, W, NT>(), q_kernel_for<FMT_Q5_K, W, NT>(),                         \
          q_kernel_for<FMT_Q6_K, W, NT>()                                                           \
    }                                                                                               \
  }

static const q_variant kQVariants[] = {Q_VARIANT(4, 1), Q_VARIANT(8, 1), Q_VARIANT(2, 1),
                                       Q_VARIANT(4, 2)};
#define N_Q_VARIANTS ((int)(sizeof kQVariants / sizeof kQVariants[0]))

/* The launcher's choice (H200 sweep, tests/gpu/NOTES.md run 4): 8 warps on a tile of 16 rows;
 * for the big matrices (over 512 tiles) of Q4_0, Q4_K, Q5_K 4 warps on 2 tiles (the x fragments
 * serve both); Q8_0 and Q6_K, whose units are larger, always 4 warps on one tile (8 rings of
 * them do not fit). */
static int q_auto_variant(int f, int rows, int cols) {
  (void)cols;
  if (f == FMT_Q8_0 || f == FMT_Q6_K) return 0;
  if ((rows + 15) / 16 > 512 && (f == FMT_Q4_0 || f == FMT_Q4_K || f == FMT_Q5_K)) return 3;
  return 1;
}

/* ---- v1 (fp32 x) ------------------------------------------------------------------------------ */

template <int F>
static cudaError_t launch_gemv_f32(void *y, int y_f32, int ldy, const float *x, int ldx,
                                   const uint8_t *w, size_t stride, int n, int rows, int cols,
                                   float beta, cudaStream_t stream) {
  const int per_block = GEMV_WARPS * GEMV_ROWS_PER_WARP;
  const unsigned grid = (unsigned)((rows + per_block - 1) / per_block);
  if (n == 1)
    return twin_launch(gemv_kernel<F, float, 1>, grid, GEMV_WARPS * 32, 0, stream, y, y_f32, ldy, x,
                       ldx, w, stride, n, rows, cols, beta);
  if (n <= 4)
    return twin_launch(gemv_kernel<F, float, 4>, grid, GEMV_WARPS * 32, 0, stream, y, y_f32, ldy, x,
                       ldx, w, stride, n, rows, cols, beta);
  return twin_launch(gemv_kernel<F, float, TWIN_CUDA_GEMV_MAX_N>, grid, GEMV_WARPS * 32, 0, stream, y,
                     y_f32, ldy, x, ldx, w, stride, n, rows, cols, beta);
}

static cudaError_t gemv_quant_launch(int variant, void *y, int y_f32, int ldy, const void *x,
                                     int x_bf16, int ldx, const void *w, twin_dtype w_type, int n,
                                     int rows, int cols, float beta, cudaStream_t stream) {
  const int f = fmt_of(w_type);
  if (f < 0 || !y || !x || !w || n < 1 || n > TWIN_CUDA_GEMV_MAX_N || rows < 1 || cols < 1 ||
      cols % block_elems_of(f) != 0 || ldy < rows || ldx < cols || ldx % (x_bf16 ? 8 : 4) != 0 ||
      (reinterpret_cast<uintptr_t>(w) & 15) != 0 || (reinterpret_cast<uintptr_t>(x) & 15) != 0 ||
      variant < -1 || variant >= N_Q_VARIANTS || (!x_bf16 && variant >= 0))
    return cudaErrorInvalidValue;
  const size_t stride = twin_cuda_quant_row_stride(w_type, cols);
  const uint8_t *wq = static_cast<const uint8_t *>(w);
  if (!x_bf16) {
    const float *xf = static_cast<const float *>(x);
    switch (f) {
      case FMT_Q4_0: return launch_gemv_f32<FMT_Q4_0>(y, y_f32, ldy, xf, ldx, wq, stride, n, rows, cols, beta, stream);
      case FMT_Q4_1: return launch_gemv_f32<FMT_Q4_1>(y, y_f32, ldy, xf, ldx, wq, stride, n, rows, cols, beta, stream);
      case FMT_Q5_0: return launch_gemv_f32<FMT_Q5_0>(y, y_f32, ldy, xf, ldx, wq, stride, n, rows, cols, beta, stream);
      case FMT_Q8_0: return launch_gemv_f32<FMT_Q8_0>(y, y_f32, ldy, xf, ldx, wq, stride, n, rows, cols, beta, stream);
      case FMT_Q4_K: return launch_gemv_f32<FMT_Q4_K>(y, y_f32, ldy, xf, ldx, wq, stride, n, rows, cols, beta, stream);
      case FMT_Q5_K: return launch_gemv_f32<FMT_Q5_K>(y, y_f32, ldy, xf, ldx, wq, stride, n, rows, cols, beta, stream);
      default: return launch_gemv_f32<FMT_Q6_K>(y, y_f32, ldy, xf, ldx, wq, stride, n, rows, cols, beta, stream);
    }
  }
  if (variant < 0) variant = q_auto_variant(f, rows, cols);
  const q_variant &v = kQVariants[variant];
  if (!v.kernel[f]) return cudaErrorInvalidValue;
  const unsigned grid = (unsigned)((rows + 16 * v.tiles - 1) / (16 * v.tiles));
  return twin_launch(v.kernel[f], grid, v.warps * 32, 0, stream, y, y_f32, ldy,
                     static_cast<const twin_bf16 *>(x), ldx, wq, stride, n, rows, cols, beta);
}

extern "C" cudaError_t twin_cuda_gemv_quant(void *y, int y_f32, int ldy, const void *x, int x_bf16,
                                            int ldx, const void *w, twin_dtype w_type, int n,
                                            int rows, int cols, float beta, cudaStream_t stream) {
  return gemv_quant_launch(-1, y, y_f32, ldy, x, x_bf16, ldx, w, w_type, n, rows, cols, beta, stream);
}

extern "C" int twin_cuda_gemv_quant_variant_count(void) { return N_Q_VARIANTS; }

extern "C" const char *twin_cuda_gemv_quant_variant_name(int variant) {
  if (variant < 0 || variant >= N_Q_VARIANTS) return "auto";
  return kQVariants[variant].name;
}

extern "C" cudaError_t twin_cuda_gemv_quant_variant(int variant, void *y, int y_f32, int ldy,
                                                    const void *x, int x_bf16, int ldx,
                                                    const void *w, twin_dtype w_type, int n,
                                                    int rows, int cols, float beta,
                                                    cudaStream_t stream) {
  return gemv_quant_launch(variant, y, y_f32, ldy, x, x_bf16, ldx, w, w_type, n, rows, cols, beta,
                           stream);
}

/* ---- dequantization ------------------------------------------------------------------------------- */

template <int F>
static cudaError_t launch_dequant(twin_bf16 *out, const void *w, size_t stride, int64_t rows,
                                  int cols, cudaStream_t stream) {
  const int threads = 256;
  const int64_t total = rows * (cols >> 3);
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 132 * 64) blocks = 132 * 64;
  return twin_launch(dequant_bf16_kernel<F>, (unsigned)blocks, threads, 0, stream,
                     reinterpret_cast<uint4 *>(out), static_cast<const uint8_t *>(w), stride, rows,
                     cols);
}

extern "C" cudaError_t twin_cuda_dequantize_bf16(twin_bf16 *out, const void *w, twin_dtype w_type,
                                                 int64_t rows, int cols, cudaStream_t stream) {
  const int f = fmt_of(w_type);
  if (f < 0 || !out || !w || rows < 0 || cols < 1 || cols % block_elems_of(f) != 0 ||
      (reinterpret_cast<uintptr_t>(out) & 15) != 0)
    return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const size_t stride = twin_cuda_quant_row_stride(w_type, cols);
  switch (f) {
    case FMT_Q4_0: return launch_dequant<FMT_Q4_0>(out, w, stride, rows, cols, stream);
    case FMT_Q4_1: return launch_dequant<FMT_Q4_1>(out, w, stride, rows, cols, stream);
    case FMT_Q5_0: return launch_dequant<FMT_Q5_0>(out, w, stride, rows, cols, stream);
    case FMT_Q8_0: return launch_dequant<FMT_Q8_0>(out, w, stride, rows, cols, stream);
    case FMT_Q4_K: return launch_dequant<FMT_Q4_K>(out, w, stride, rows, cols, stream);
    case FMT_Q5_K: return launch_dequant<FMT_Q5_K>(out, w, stride, rows, cols, stream);
    default: return launch_dequant<FMT_Q6_K>(out, w, stride, rows, cols, stream);
  }
}
