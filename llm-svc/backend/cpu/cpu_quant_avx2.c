/* llm-svc/backend/cpu/cpu_quant_avx2.c — AVX2 kernels for block-quantized weights: the
 * activation quantizers (x -> int8 blocks with a float scale, rounding to nearest even exactly
 * as the scalar reference does) and the dot products of every weight format with them. Unsigned
 * weight codes times signed activations go through vpmaddubsw (pairs -> int16; no overflow:
 * codes <= 63 and |a| <= 127) and vpmaddwd (pairs -> int32, with the k-quants' sub-block scales
 * folded in), or through one AVX-VNNI vpdpbusd for the 32-element formats. Functions carry
 * target attributes, so the file builds without -mavx2 and the backend checks the CPU at run
 * time (__builtin_cpu_supports) before handing these out. */
#include "llm-svc/backend/cpu/cpu_quant.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avxvnni")))

/* ---- helpers ------------------------------------------------------------------------------- */

static inline AVX2_TARGET float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline AVX2_TARGET int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

static inline AVX2_TARGET float hmax_ps(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline AVX2_TARGET float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

/* 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15), then high (16..31). */
static inline AVX2_TARGET __m256i unpack_nibbles(const uint8_t *qs) {
  __m128i raw = _mm_loadu_si128((const __m128i *)qs);
  __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
  return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

/* Byte j = 0xff when bit j of bits is set, else 0. */
static inline AVX2_TARGET __m256i bits_to_bytes(uint32_t bits) {
  const __m256i pick = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                         0x0101010101010101LL, 0x0000000000000000LL);
  const __m256i mask = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
  __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), pick);
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
}

static inline AVX2_TARGET __m256i maddubs_sum(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* ---- the 32-element formats, twice ------------------------------------------------------- */

#define KERNEL_TARGET AVX2_TARGET
#define KERNEL(name) name##_avx2
#define DOT_U8S8(u, s) maddubs_sum((u), (s))
#include "llm-svc/backend/cpu/cpu_quant_avx2_block32.h"
#undef KERNEL_TARGET
#undef KERNEL
#undef DOT_U8S8

#define KERNEL_TARGET VNNI_TARGET
#define KERNEL(name) name##_vnni
#define DOT_U8S8(u, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), (u), (s))
#include "llm-svc/backend/cpu/cpu_quant_avx2_block32.h"
#undef KERNEL_TARGET
#undef KERNEL
#undef DOT_U8S8

/* ---- k-quants ------------------------------------------------------------------------------ */

/* The 8 six-bit scales and mins of a q4_k / q5_k super-block (layout in quant.h). */
static inline void k_scales_mins(const uint8_t *s, int *sc, int *m) {
  for (int j = 0; j < 4; j++) {
    sc[j] = s[j] & 63;
    m[j] = s[j + 4] & 63;
    sc[j + 4] = (s[j + 8] & 15) | (s[j] >> 6) << 4;
    m[j + 4] = (s[j + 8] >> 4) | (s[j + 4] >> 6) << 4;
  }
}

/* sum over sub-blocks of min[s] * (sum of the 32 activations of sub-block s) */
static inline int k_min_dot(const int *m, const int16_t *bsums) {
  int sum = 0;
  for (int s = 0; s < 8; s++) sum += m[s] * (bsums[2 * s] + bsums[2 * s + 1]);
  return sum;
}

static AVX2_TARGET float dot_q4_k_avx2(const void *w_row, const void *act_row, int n) {
  const twin_block_q4_k *w = w_row;
  const twin_block_a8k *a = act_row;
  const __m256i low4 = _mm256_set1_epi8(15);
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0.0f;
  for (int i = 0; i < n / 256; i++) {
    int sc[8], m[8];
    k_scales_mins(w[i].scales, sc, m);
    const float d = f16_to_f32(w[i].d) * a[i].d, dmin = f16_to_f32(w[i].dmin) * a[i].d;
    acc_min += dmin * (float)k_min_dot(m, a[i].bsums);
    __m256i sumi = _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
      __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * p));
      __m256i lo = _mm256_and_si256(raw, low4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      __m256i x_lo = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * p));
      __m256i x_hi = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * p + 32));
      __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x_lo), _mm256_set1_epi16((short)sc[2 * p]));
      __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x_hi), _mm256_set1_epi16((short)sc[2 * p + 1]));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum_ps(acc) - acc_min;
}

static AVX2_TARGET float dot_q5_k_avx2(const void *w_row, const void *act_row, int n) {
  const twin_block_q5_k *w = w_row;
  const twin_block_a8k *a = act_row;
  const __m256i low4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1), two = _mm256_set1_epi8(2);
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0.0f;
  for (int i = 0; i < n / 256; i++) {
    int sc[8], m[8];
    k_scales_mins(w[i].scales, sc, m);
    const float d = f16_to_f32(w[i].d) * a[i].d, dmin = f16_to_f32(w[i].dmin) * a[i].d;
    acc_min += dmin * (float)k_min_dot(m, a[i].bsums);
    /* bits 2p and 2p+1 of each qh byte; shifted down by 2 per pair (the bits that a 16-bit
     * shift carries in from the neighbouring byte land above bit 1 and are masked off) */
    __m256i hbits = _mm256_loadu_si256((const __m256i *)w[i].qh);
    __m256i sumi = _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
      __m256i raw = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * p));
      __m256i lo = _mm256_or_si256(_mm256_and_si256(raw, low4),
                                   _mm256_slli_epi16(_mm256_and_si256(hbits, one), 4));
      __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low4),
                                   _mm256_slli_epi16(_mm256_and_si256(hbits, two), 3));
      hbits = _mm256_srli_epi16(hbits, 2);
      __m256i x_lo = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * p));
      __m256i x_hi = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * p + 32));
      __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x_lo), _mm256_set1_epi16((short)sc[2 * p]));
      __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x_hi), _mm256_set1_epi16((short)sc[2 * p + 1]));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum_ps(acc) - acc_min;
}

/* int16 x 16: the first 8 lanes s0, the last 8 s1 (two sub-blocks of 16 in one register) */
static inline AVX2_TARGET __m256i two_scales(int s0, int s1) {
  return _mm256_set_m128i(_mm_set1_epi16((short)s1), _mm_set1_epi16((short)s0));
}

static AVX2_TARGET float dot_q6_k_avx2(const void *w_row, const void *act_row, int n) {
  const twin_block_q6_k *w = w_row;
  const twin_block_a8k *a = act_row;
  const __m256i low4 = _mm256_set1_epi8(15), low2 = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  float acc_offset = 0.0f;
  for (int i = 0; i < n / 256; i++) {
    const float d = f16_to_f32(w[i].d) * a[i].d;
    const int8_t *sc = w[i].scales;
    int offset = 0; /* sum of scale * activation sum: the -32 of every code */
    for (int s = 0; s < 16; s++) offset += sc[s] * a[i].bsums[s];
    acc_offset += d * (float)(32 * offset);
    __m256i sumi = _mm256_setzero_si256();
    for (int half = 0; half < 2; half++) {
      const uint8_t *ql = w[i].ql + 64 * half;
      const int8_t *x = a[i].qs + 128 * half;
      const int8_t *s = sc + 8 * half;
      __m256i ql0 = _mm256_loadu_si256((const __m256i *)ql);
      __m256i ql1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
      __m256i qh = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * half));
      __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql0, low4),
                                   _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
      __m256i q2 = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4));
      __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4));
      __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4));
      __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)x)),
                                     two_scales(s[0], s[1]));
      __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(q2, _mm256_loadu_si256((const __m256i *)(x + 32))),
                                     two_scales(s[2], s[3]));
      __m256i p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(q3, _mm256_loadu_si256((const __m256i *)(x + 64))),
                                     two_scales(s[4], s[5]));
      __m256i p4 = _mm256_madd_epi16(_mm256_maddubs_epi16(q4, _mm256_loadu_si256((const __m256i *)(x + 96))),
                                     two_scales(s[6], s[7]));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_add_epi32(p1, p2), _mm256_add_epi32(p3, p4)));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum_ps(acc) - acc_offset;
}

/* ---- k-quants, four activation rows at once --------------------------------------------- */

#define ACT_ROW(k) ((const twin_block_a8k *)(act + (size_t)(k) * act_stride))

/* q4_k (high_bits 0) and q5_k: each weight sub-block decoded once, used for four tokens */
static inline __attribute__((always_inline)) AVX2_TARGET void dot4_k_low(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales,
                                          float d16, float dmin16, const uint8_t *act,
                                          size_t act_stride, int i, __m256 *acc, float *acc_min) {
  const __m256i low4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1), two = _mm256_set1_epi8(2);
  int sc[8], m[8];
  k_scales_mins(scales, sc, m);
  __m256i sumi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                     _mm256_setzero_si256()};
  __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
  _Pragma("GCC unroll 4")
  for (int p = 0; p < 4; p++) {
    __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
    __m256i lo = _mm256_and_si256(raw, low4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
    if (qh) {
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hbits, one), 4));
      hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(hbits, two), 3));
      hbits = _mm256_srli_epi16(hbits, 2);
    }
    const __m256i s_lo = _mm256_set1_epi16((short)sc[2 * p]), s_hi = _mm256_set1_epi16((short)sc[2 * p + 1]);
    _Pragma("GCC unroll 4")
    for (int k = 0; k < 4; k++) {
      const int8_t *x = ACT_ROW(k)[i].qs + 64 * p;
      __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)x)), s_lo);
      __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(x + 32))), s_hi);
      sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(p_lo, p_hi));
    }
  }
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) {
    const twin_block_a8k *a = ACT_ROW(k) + i;
    acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d16 * a->d), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
    acc_min[k] += dmin16 * a->d * (float)k_min_dot(m, a->bsums);
  }
}

static AVX2_TARGET void dot4_q4_k_avx2(const void *w_row, const uint8_t *act, size_t act_stride,
                                       int n, float *out) {
  const twin_block_q4_k *w = w_row;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float acc_min[4] = {0};
  for (int i = 0; i < n / 256; i++)
    dot4_k_low(w[i].qs, NULL, w[i].scales, f16_to_f32(w[i].d), f16_to_f32(w[i].dmin), act,
               act_stride, i, acc, acc_min);
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) out[k] = hsum_ps(acc[k]) - acc_min[k];
}

static AVX2_TARGET void dot4_q5_k_avx2(const void *w_row, const uint8_t *act, size_t act_stride,
                                       int n, float *out) {
  const twin_block_q5_k *w = w_row;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float acc_min[4] = {0};
  for (int i = 0; i < n / 256; i++)
    dot4_k_low(w[i].qs, w[i].qh, w[i].scales, f16_to_f32(w[i].d), f16_to_f32(w[i].dmin), act,
               act_stride, i, acc, acc_min);
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) out[k] = hsum_ps(acc[k]) - acc_min[k];
}

static AVX2_TARGET void dot4_q6_k_avx2(const void *w_row, const uint8_t *act, size_t act_stride,
                                       int n, float *out) {
  const twin_block_q6_k *w = w_row;
  const __m256i low4 = _mm256_set1_epi8(15), low2 = _mm256_set1_epi8(3);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float acc_offset[4] = {0};
  for (int i = 0; i < n / 256; i++) {
    const float d16 = f16_to_f32(w[i].d);
    const int8_t *sc = w[i].scales;
    __m256i sumi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                       _mm256_setzero_si256()};
    for (int half = 0; half < 2; half++) {
      const uint8_t *ql = w[i].ql + 64 * half;
      const int8_t *s = sc + 8 * half;
      __m256i ql0 = _mm256_loadu_si256((const __m256i *)ql);
      __m256i ql1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
      __m256i qh = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * half));
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4));
      _Pragma("GCC unroll 4")
      for (int g = 0; g < 4; g++) {
        const __m256i scales = two_scales(s[2 * g], s[2 * g + 1]);
        _Pragma("GCC unroll 4")
        for (int k = 0; k < 4; k++) {
          const int8_t *x = ACT_ROW(k)[i].qs + 128 * half + 32 * g;
          sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(
              _mm256_maddubs_epi16(q[g], _mm256_loadu_si256((const __m256i *)x)), scales));
        }
      }
    }
    _Pragma("GCC unroll 4")
    for (int k = 0; k < 4; k++) {
      const twin_block_a8k *a = ACT_ROW(k) + i;
      int offset = 0;
      for (int j = 0; j < 16; j++) offset += sc[j] * a->bsums[j];
      acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d16 * a->d), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
      acc_offset[k] += d16 * a->d * (float)(32 * offset);
    }
  }
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) out[k] = hsum_ps(acc[k]) - acc_offset[k];
}

#undef ACT_ROW

/* ---- activation quantizers ----------------------------------------------------------------- */

/* 32 floats (amax known) -> 32 int8 at out, rounded to nearest even; returns their sum. */
static inline AVX2_TARGET int quantize_32(const float *x, float id, int8_t *out) {
  const __m256 scale = _mm256_set1_ps(id);
  __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), scale));
  __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), scale));
  __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), scale));
  __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), scale));
  int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
  /* packs work per 128-bit lane; the permute puts the dwords back in element order */
  __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256((__m256i *)out, packed);
  return sum;
}

static inline AVX2_TARGET float abs_max(const float *x, int n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  return hmax_ps(m);
}

static AVX2_TARGET void quantize_a8_avx2(const float *x, twin_block_a8 *out, int64_t n) {
  for (int64_t i = 0; i < n / 32; i++, x += 32) {
    const float d = abs_max(x, 32) / 127.0f, id = d ? 1.0f / d : 0.0f;
    out[i].d = d;
    out[i].sum = quantize_32(x, id, out[i].qs);
  }
}

static AVX2_TARGET void quantize_a8k_avx2(const float *x, twin_block_a8k *out, int64_t n) {
  for (int64_t i = 0; i < n / 256; i++, x += 256) {
    const float d = abs_max(x, 256) / 127.0f, id = d ? 1.0f / d : 0.0f;
    out[i].d = d;
    for (int j = 0; j < 256; j += 32) quantize_32(x + j, id, out[i].qs + j);
    for (int s = 0; s < 16; s++) {
      __m128i q = _mm_loadu_si128((const __m128i *)(out[i].qs + 16 * s));
      /* sum of 16 signed bytes: widen to int16 and add pairs through pmaddwd with ones */
      __m256i wide = _mm256_cvtepi8_epi16(q);
      out[i].bsums[s] = (int16_t)hsum_epi32(_mm256_madd_epi16(wide, _mm256_set1_epi16(1)));
    }
  }
}

/* ---- tables -------------------------------------------------------------------------------- */

static const cpu_quant_kernels avx2_kernels = {
    .name = "avx2",
    .dot = {[TWIN_DT_Q4_0] = dot_q4_0_avx2, [TWIN_DT_Q4_1] = dot_q4_1_avx2,
            [TWIN_DT_Q5_0] = dot_q5_0_avx2, [TWIN_DT_Q8_0] = dot_q8_0_avx2,
            [TWIN_DT_Q4_K] = dot_q4_k_avx2, [TWIN_DT_Q5_K] = dot_q5_k_avx2,
            [TWIN_DT_Q6_K] = dot_q6_k_avx2},
    .dot4 = {[TWIN_DT_Q4_0] = dot4_q4_0_avx2, [TWIN_DT_Q4_1] = dot4_q4_1_avx2,
             [TWIN_DT_Q5_0] = dot4_q5_0_avx2, [TWIN_DT_Q8_0] = dot4_q8_0_avx2,
             [TWIN_DT_Q4_K] = dot4_q4_k_avx2, [TWIN_DT_Q5_K] = dot4_q5_k_avx2,
             [TWIN_DT_Q6_K] = dot4_q6_k_avx2},
    .quantize_a8 = quantize_a8_avx2,
    .quantize_a8k = quantize_a8k_avx2,
};

static const cpu_quant_kernels vnni_kernels = {
    .name = "avx2+vnni",
    .dot = {[TWIN_DT_Q4_0] = dot_q4_0_vnni, [TWIN_DT_Q4_1] = dot_q4_1_vnni,
            [TWIN_DT_Q5_0] = dot_q5_0_vnni, [TWIN_DT_Q8_0] = dot_q8_0_vnni,
            [TWIN_DT_Q4_K] = dot_q4_k_avx2, [TWIN_DT_Q5_K] = dot_q5_k_avx2,
            [TWIN_DT_Q6_K] = dot_q6_k_avx2},
    .dot4 = {[TWIN_DT_Q4_0] = dot4_q4_0_vnni, [TWIN_DT_Q4_1] = dot4_q4_1_vnni,
             [TWIN_DT_Q5_0] = dot4_q5_0_vnni, [TWIN_DT_Q8_0] = dot4_q8_0_vnni,
             [TWIN_DT_Q4_K] = dot4_q4_k_avx2, [TWIN_DT_Q5_K] = dot4_q5_k_avx2,
             [TWIN_DT_Q6_K] = dot4_q6_k_avx2},
    .quantize_a8 = quantize_a8_avx2,
    .quantize_a8k = quantize_a8k_avx2,
};

const cpu_quant_kernels *cpu_quant_kernels_avx2(int vnni) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
      !__builtin_cpu_supports("f16c"))
    return NULL;
  if (!vnni) return &avx2_kernels;
  return __builtin_cpu_supports("avxvnni") ? &vnni_kernels : NULL;
}

#else /* not x86 */

const cpu_quant_kernels *cpu_quant_kernels_avx2(int vnni) {
  (void)vnni;
  return NULL;
}

#endif
