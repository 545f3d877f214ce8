/* llm-svc/backend/cpu/cpu_quant_avx2_block32.h — dot products of the 32-element block formats
 * (q8_0, q4_0, q4_1, q5_0) with a8 activations, compiled twice by cpu_quant_avx2.c (AVX2 with
 * DOT_U8S8 = maddubs + madd; AVX-VNNI with one vpdpbusd), KERNEL(name) naming each copy: no
 * include guard on purpose. Exact int32 block sums (offsets through the activation sums), one
 * float multiply-add per block, two blocks per iteration into separate accumulators; the dot4
 * kernels decode each weight block once for four tokens. */

/* 32 bytes of u8 (0..127 or 0..31) times 32 bytes of s8, summed in groups of 4: int32 x 8 */
static inline KERNEL_TARGET __m256i KERNEL(dot_u8s8)(__m256i u, __m256i s) { return DOT_U8S8(u, s); }

/* q8_0: signed x signed through |w| x (a * sign(w)) */
static inline KERNEL_TARGET __m256 KERNEL(block_q8_0)(const twin_block_q8_0 *w, const twin_block_a8 *a) {
  __m256i wq = _mm256_loadu_si256((const __m256i *)w->qs);
  __m256i aq = _mm256_loadu_si256((const __m256i *)a->qs);
  __m256i p = KERNEL(dot_u8s8)(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(aq, wq));
  return _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(w->d) * a->d), _mm256_cvtepi32_ps(p));
}

/* acc + d_w d_a (q . a - offset sum(a)): unsigned codes q (0..15 or 0..31), the offset (the
 * -8 / -16 of q4_0 / q5_0; 0 for q4_1) subtracted in integers through the activations' sum */
static inline __attribute__((always_inline)) KERNEL_TARGET __m256 KERNEL(block_offset)(
    __m256 acc, __m256i q, const twin_block_a8 *a, int offset, float d) {
  __m256i p = KERNEL(dot_u8s8)(q, _mm256_loadu_si256((const __m256i *)a->qs));
  if (offset) p = _mm256_sub_epi32(p, _mm256_zextsi128_si256(_mm_cvtsi32_si128(offset * a->sum)));
  return _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(p), acc);
}

static inline KERNEL_TARGET __m256i KERNEL(codes_q5_0)(const twin_block_q5_0 *w) {
  uint32_t qh;
  memcpy(&qh, w->qh, 4);
  return _mm256_or_si256(unpack_nibbles(w->qs), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16)));
}

static KERNEL_TARGET float KERNEL(dot_q8_0)(const void *w_row, const void *act_row, int n) {
  const twin_block_q8_0 *w = w_row;
  const twin_block_a8 *a = act_row;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int nb = n / 32;
  int i = 0;
  for (; i + 1 < nb; i += 2) {
    acc0 = _mm256_add_ps(acc0, KERNEL(block_q8_0)(&w[i], &a[i]));
    acc1 = _mm256_add_ps(acc1, KERNEL(block_q8_0)(&w[i + 1], &a[i + 1]));
  }
  if (i < nb) acc0 = _mm256_add_ps(acc0, KERNEL(block_q8_0)(&w[i], &a[i]));
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static KERNEL_TARGET float KERNEL(dot_q4_0)(const void *w_row, const void *act_row, int n) {
  const twin_block_q4_0 *w = w_row;
  const twin_block_a8 *a = act_row;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int nb = n / 32;
  int i = 0;
  for (; i + 1 < nb; i += 2) {
    acc0 = KERNEL(block_offset)(acc0, unpack_nibbles(w[i].qs), &a[i], 8, f16_to_f32(w[i].d));
    acc1 = KERNEL(block_offset)(acc1, unpack_nibbles(w[i + 1].qs), &a[i + 1], 8,
                                                    f16_to_f32(w[i + 1].d));
  }
  if (i < nb)
    acc0 = KERNEL(block_offset)(acc0, unpack_nibbles(w[i].qs), &a[i], 8, f16_to_f32(w[i].d));
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static KERNEL_TARGET float KERNEL(dot_q5_0)(const void *w_row, const void *act_row, int n) {
  const twin_block_q5_0 *w = w_row;
  const twin_block_a8 *a = act_row;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int nb = n / 32;
  int i = 0;
  for (; i + 1 < nb; i += 2) {
    acc0 = KERNEL(block_offset)(acc0, KERNEL(codes_q5_0)(&w[i]), &a[i], 16, f16_to_f32(w[i].d));
    acc1 = KERNEL(block_offset)(acc1, KERNEL(codes_q5_0)(&w[i + 1]), &a[i + 1], 16,
                                                    f16_to_f32(w[i + 1].d));
  }
  if (i < nb)
    acc0 = KERNEL(block_offset)(acc0, KERNEL(codes_q5_0)(&w[i]), &a[i], 16, f16_to_f32(w[i].d));
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static KERNEL_TARGET float KERNEL(dot_q4_1)(const void *w_row, const void *act_row, int n) {
  const twin_block_q4_1 *w = w_row;
  const twin_block_a8 *a = act_row;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float mins0 = 0.0f, mins1 = 0.0f;
  const int nb = n / 32;
  int i = 0;
  for (; i + 1 < nb; i += 2) {
    acc0 = KERNEL(block_offset)(acc0, unpack_nibbles(w[i].qs), &a[i], 0, f16_to_f32(w[i].d));
    acc1 = KERNEL(block_offset)(acc1, unpack_nibbles(w[i + 1].qs), &a[i + 1], 0,
                                                    f16_to_f32(w[i + 1].d));
    mins0 += f16_to_f32(w[i].m) * a[i].d * (float)a[i].sum;
    mins1 += f16_to_f32(w[i + 1].m) * a[i + 1].d * (float)a[i + 1].sum;
  }
  if (i < nb) {
    acc0 = KERNEL(block_offset)(acc0, unpack_nibbles(w[i].qs), &a[i], 0, f16_to_f32(w[i].d));
    mins0 += f16_to_f32(w[i].m) * a[i].d * (float)a[i].sum;
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1)) + (mins0 + mins1);
}

/* ---- four activation rows at once ---------------------------------------------------------- */

#define ACT_ROW(k) ((const twin_block_a8 *)(act + (size_t)(k) * act_stride))

static KERNEL_TARGET void KERNEL(dot4_q8_0)(const void *w_row, const uint8_t *act, size_t act_stride,
                                            int n, float *out) {
  const twin_block_q8_0 *w = w_row;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int i = 0; i < n / 32; i++) {
    __m256i wq = _mm256_loadu_si256((const __m256i *)w[i].qs);
    const __m256i wabs = _mm256_sign_epi8(wq, wq);
    const float dw = f16_to_f32(w[i].d);
    _Pragma("GCC unroll 4")
    for (int k = 0; k < 4; k++) {
      const twin_block_a8 *a = ACT_ROW(k) + i;
      __m256i p = KERNEL(dot_u8s8)(wabs, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)a->qs), wq));
      acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a->d), _mm256_cvtepi32_ps(p), acc[k]);
    }
  }
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) out[k] = hsum_ps(acc[k]);
}

/* q4_0, q4_1, q5_0: one block of codes with four tokens; the min (q4_1 only) when has_min */
static inline __attribute__((always_inline)) KERNEL_TARGET void KERNEL(dot4_offset_step)(
    __m256i q, float dw, float mw, int has_min, int offset, const uint8_t *act, size_t act_stride,
    int i, __m256 *acc, float *mins) {
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) {
    const twin_block_a8 *a = ACT_ROW(k) + i;
    acc[k] = KERNEL(block_offset)(acc[k], q, a, offset, dw);
    if (has_min) mins[k] += mw * a->d * (float)a->sum;
  }
}

static KERNEL_TARGET void KERNEL(dot4_q4_0)(const void *w_row, const uint8_t *act, size_t act_stride,
                                            int n, float *out) {
  const twin_block_q4_0 *w = w_row;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float mins[4] = {0};
  for (int i = 0; i < n / 32; i++)
    KERNEL(dot4_offset_step)(unpack_nibbles(w[i].qs), f16_to_f32(w[i].d), 0.0f, 0, 8, act, act_stride, i,
                             acc, mins);
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) out[k] = hsum_ps(acc[k]);
}

static KERNEL_TARGET void KERNEL(dot4_q4_1)(const void *w_row, const uint8_t *act, size_t act_stride,
                                            int n, float *out) {
  const twin_block_q4_1 *w = w_row;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float mins[4] = {0};
  for (int i = 0; i < n / 32; i++)
    KERNEL(dot4_offset_step)(unpack_nibbles(w[i].qs), f16_to_f32(w[i].d), f16_to_f32(w[i].m), 1, 0, act,
                             act_stride, i, acc, mins);
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) out[k] = hsum_ps(acc[k]) + mins[k];
}

static KERNEL_TARGET void KERNEL(dot4_q5_0)(const void *w_row, const uint8_t *act, size_t act_stride,
                                            int n, float *out) {
  const twin_block_q5_0 *w = w_row;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float mins[4] = {0};
  for (int i = 0; i < n / 32; i++)
    KERNEL(dot4_offset_step)(KERNEL(codes_q5_0)(&w[i]), f16_to_f32(w[i].d), 0.0f, 0, 16, act, act_stride,
                             i, acc, mins);
  _Pragma("GCC unroll 4")
  for (int k = 0; k < 4; k++) out[k] = hsum_ps(acc[k]);
}

#undef ACT_ROW

