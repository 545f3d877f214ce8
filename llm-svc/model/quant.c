/* llm-svc/model/quant.c — reference code for the block formats of quant.h: dequantization (the
 * definition every faster kernel is checked against), simple round-to-nearest quantizers for
 * tests and tools, the activation quantizers, and scalar dot products of weight rows with
 * activation rows. Written from the format description in quant.h; the inner sums are exact
 * integers, scales applied once per block, as the vectorized kernels do. */
#include "llm-svc/model/quant.h"

#include <math.h>
#include <string.h>

#include "common/error.h"

/* ---- formats ------------------------------------------------------------------------------- */

twin_act_format twin_quant_act_format(twin_dtype t) {
  switch (t) {
    case TWIN_DT_Q4_0: case TWIN_DT_Q4_1: case TWIN_DT_Q5_0: case TWIN_DT_Q8_0:
      return TWIN_ACT_A8;
    case TWIN_DT_Q4_K: case TWIN_DT_Q5_K: case TWIN_DT_Q6_K:
      return TWIN_ACT_A8K;
    default:
      return TWIN_ACT_NONE;
  }
}

size_t twin_quant_act_row_bytes(twin_act_format f, int64_t n) {
  if (f == TWIN_ACT_A8) return (size_t)(n / TWIN_QK32) * sizeof(twin_block_a8);
  if (f == TWIN_ACT_A8K) return (size_t)(n / TWIN_QK_K) * sizeof(twin_block_a8k);
  return 0;
}

static uint16_t f16_bits(float f) { return twin_f32_to_f16(f); }

/* The 6-bit scale and min of sub-block j (0..7) of a q4_k / q5_k super-block. */
static inline void k_scale_min(const uint8_t *scales, int j, int *sc, int *m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4;
    *m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4;
  }
}

/* The inverse: packs sc[8] and m[8] (each 0..63) into 12 bytes. */
static void k_pack_scales(const int *sc, const int *m, uint8_t *scales) {
  for (int j = 0; j < 4; j++) {
    scales[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
    scales[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
    scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
  }
}

/* ---- dequantization ------------------------------------------------------------------------ */

static void dequant_q4_0(const twin_block_q4_0 *b, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = twin_quant_f16(b[i].d);
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)((b[i].qs[j] & 15) - 8);
      y[j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
    }
  }
}

static void dequant_q4_1(const twin_block_q4_1 *b, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = twin_quant_f16(b[i].d), m = twin_quant_f16(b[i].m);
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)(b[i].qs[j] & 15) + m;
      y[j + 16] = d * (float)(b[i].qs[j] >> 4) + m;
    }
  }
}

static void dequant_q5_0(const twin_block_q5_0 *b, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = twin_quant_f16(b[i].d);
    uint32_t qh;
    memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; j++) {
      int lo = (b[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
      int hi = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
      y[j] = d * (float)(lo - 16);
      y[j + 16] = d * (float)(hi - 16);
    }
  }
}

static void dequant_q8_0(const twin_block_q8_0 *b, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = twin_quant_f16(b[i].d);
    for (int j = 0; j < 32; j++) y[j] = d * (float)b[i].qs[j];
  }
}

static void dequant_q4_k(const twin_block_q4_k *b, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = twin_quant_f16(b[i].d), dmin = twin_quant_f16(b[i].dmin);
    for (int p = 0; p < 4; p++, y += 64) {
      int sc1, m1, sc2, m2;
      k_scale_min(b[i].scales, 2 * p, &sc1, &m1);
      k_scale_min(b[i].scales, 2 * p + 1, &sc2, &m2);
      const uint8_t *q = b[i].qs + 32 * p;
      for (int l = 0; l < 32; l++) {
        y[l] = d * (float)sc1 * (float)(q[l] & 15) - dmin * (float)m1;
        y[l + 32] = d * (float)sc2 * (float)(q[l] >> 4) - dmin * (float)m2;
      }
    }
  }
}

static void dequant_q5_k(const twin_block_q5_k *b, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = twin_quant_f16(b[i].d), dmin = twin_quant_f16(b[i].dmin);
    for (int p = 0; p < 4; p++, y += 64) {
      int sc1, m1, sc2, m2;
      k_scale_min(b[i].scales, 2 * p, &sc1, &m1);
      k_scale_min(b[i].scales, 2 * p + 1, &sc2, &m2);
      const uint8_t *q = b[i].qs + 32 * p;
      for (int l = 0; l < 32; l++) {
        int lo = (q[l] & 15) | ((b[i].qh[l] >> (2 * p)) & 1) << 4;
        int hi = (q[l] >> 4) | ((b[i].qh[l] >> (2 * p + 1)) & 1) << 4;
        y[l] = d * (float)sc1 * (float)lo - dmin * (float)m1;
        y[l + 32] = d * (float)sc2 * (float)hi - dmin * (float)m2;
      }
    }
  }
}

static void dequant_q6_k(const twin_block_q6_k *b, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float d = twin_quant_f16(b[i].d);
    for (int half = 0; half < 2; half++, y += 128) {
      const uint8_t *ql = b[i].ql + 64 * half, *qh = b[i].qh + 32 * half;
      const int8_t *sc = b[i].scales + 8 * half;
      for (int l = 0; l < 32; l++) {
        const int s = l / 16;
        int q1 = (ql[l] & 15) | (qh[l] & 3) << 4;
        int q2 = (ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4;
        int q3 = (ql[l] >> 4) | (qh[l] >> 4 & 3) << 4;
        int q4 = (ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4;
        y[l] = d * (float)sc[s] * (float)(q1 - 32);
        y[l + 32] = d * (float)sc[s + 2] * (float)(q2 - 32);
        y[l + 64] = d * (float)sc[s + 4] * (float)(q3 - 32);
        y[l + 96] = d * (float)sc[s + 6] * (float)(q4 - 32);
      }
    }
  }
}

int twin_dequantize_row(twin_dtype t, const void *blocks, float *y, int64_t n) {
  switch (t) {
    case TWIN_DT_Q4_0: dequant_q4_0(blocks, y, n / 32); return 0;
    case TWIN_DT_Q4_1: dequant_q4_1(blocks, y, n / 32); return 0;
    case TWIN_DT_Q5_0: dequant_q5_0(blocks, y, n / 32); return 0;
    case TWIN_DT_Q8_0: dequant_q8_0(blocks, y, n / 32); return 0;
    case TWIN_DT_Q4_K: dequant_q4_k(blocks, y, n / 256); return 0;
    case TWIN_DT_Q5_K: dequant_q5_k(blocks, y, n / 256); return 0;
    case TWIN_DT_Q6_K: dequant_q6_k(blocks, y, n / 256); return 0;
    default: return TWIN_EUNSUPPORTED;
  }
}

/* ---- quantization (round to nearest) ------------------------------------------------------- */

static float abs_max(const float *x, int n) {
  float m = 0.0f;
  for (int i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
  return m;
}

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static void quant_q4_0(const float *x, twin_block_q4_0 *b, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += 32) {
    const float d = abs_max(x, 32) / 7.0f, id = d ? 1.0f / d : 0.0f;
    b[i].d = f16_bits(d);
    for (int j = 0; j < 16; j++) {
      int lo = clamp_int((int)nearbyintf(x[j] * id) + 8, 0, 15);
      int hi = clamp_int((int)nearbyintf(x[j + 16] * id) + 8, 0, 15);
      b[i].qs[j] = (uint8_t)(lo | hi << 4);
    }
  }
}

static void quant_q4_1(const float *x, twin_block_q4_1 *b, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += 32) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; j++) lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
    const float d = (hi - lo) / 15.0f, id = d ? 1.0f / d : 0.0f;
    b[i].d = f16_bits(d);
    b[i].m = f16_bits(lo);
    const float m = twin_quant_f16(b[i].m);
    for (int j = 0; j < 16; j++) {
      int q0 = clamp_int((int)nearbyintf((x[j] - m) * id), 0, 15);
      int q1 = clamp_int((int)nearbyintf((x[j + 16] - m) * id), 0, 15);
      b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
    }
  }
}

static void quant_q5_0(const float *x, twin_block_q5_0 *b, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += 32) {
    const float d = abs_max(x, 32) / 15.0f, id = d ? 1.0f / d : 0.0f;
    b[i].d = f16_bits(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
      int lo = clamp_int((int)nearbyintf(x[j] * id) + 16, 0, 31);
      int hi = clamp_int((int)nearbyintf(x[j + 16] * id) + 16, 0, 31);
      b[i].qs[j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
      qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
    }
    memcpy(b[i].qh, &qh, 4);
  }
}

static void quant_q8_0(const float *x, twin_block_q8_0 *b, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += 32) {
    const float d = abs_max(x, 32) / 127.0f, id = d ? 1.0f / d : 0.0f;
    b[i].d = f16_bits(d);
    for (int j = 0; j < 32; j++) b[i].qs[j] = (int8_t)clamp_int((int)nearbyintf(x[j] * id), -127, 127);
  }
}

/* q4_k / q5_k: per sub-block of 32 a scale (max - min) / qmax and a min <= 0, both coded as 6-bit
 * multiples of the super-block's d and dmin; then q = round((x + dmin m) / (d sc)). */
static void quant_k_scales(const float *x, int qmax, uint16_t *d_out, uint16_t *dmin_out,
                           uint8_t *packed, int *sc, int *m) {
  float scale[8], minus_min[8], max_scale = 0.0f, max_min = 0.0f;
  for (int s = 0; s < 8; s++) {
    float lo = 0.0f, hi = x[32 * s];
    for (int l = 0; l < 32; l++) lo = fminf(lo, x[32 * s + l]), hi = fmaxf(hi, x[32 * s + l]);
    scale[s] = (hi - lo) / (float)qmax;
    minus_min[s] = -lo;
    max_scale = fmaxf(max_scale, scale[s]);
    max_min = fmaxf(max_min, minus_min[s]);
  }
  const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
  *d_out = f16_bits(d);
  *dmin_out = f16_bits(dmin);
  const float dq = twin_quant_f16(*d_out), dminq = twin_quant_f16(*dmin_out);
  for (int s = 0; s < 8; s++) {
    sc[s] = dq ? clamp_int((int)nearbyintf(scale[s] / dq), 0, 63) : 0;
    m[s] = dminq ? clamp_int((int)nearbyintf(minus_min[s] / dminq), 0, 63) : 0;
  }
  k_pack_scales(sc, m, packed);
}

static int k_quant_value(float x, float step, float offset, int qmax) {
  return step ? clamp_int((int)nearbyintf((x + offset) / step), 0, qmax) : 0;
}

static void quant_q4_k(const float *x, twin_block_q4_k *b, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += 256) {
    int sc[8], m[8];
    quant_k_scales(x, 15, &b[i].d, &b[i].dmin, b[i].scales, sc, m);
    const float d = twin_quant_f16(b[i].d), dmin = twin_quant_f16(b[i].dmin);
    for (int p = 0; p < 4; p++) {
      const int s1 = 2 * p, s2 = 2 * p + 1;
      for (int l = 0; l < 32; l++) {
        int lo = k_quant_value(x[64 * p + l], d * sc[s1], dmin * m[s1], 15);
        int hi = k_quant_value(x[64 * p + 32 + l], d * sc[s2], dmin * m[s2], 15);
        b[i].qs[32 * p + l] = (uint8_t)(lo | hi << 4);
      }
    }
  }
}

static void quant_q5_k(const float *x, twin_block_q5_k *b, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += 256) {
    int sc[8], m[8];
    quant_k_scales(x, 31, &b[i].d, &b[i].dmin, b[i].scales, sc, m);
    const float d = twin_quant_f16(b[i].d), dmin = twin_quant_f16(b[i].dmin);
    memset(b[i].qh, 0, sizeof b[i].qh);
    for (int p = 0; p < 4; p++) {
      const int s1 = 2 * p, s2 = 2 * p + 1;
      for (int l = 0; l < 32; l++) {
        int lo = k_quant_value(x[64 * p + l], d * sc[s1], dmin * m[s1], 31);
        int hi = k_quant_value(x[64 * p + 32 + l], d * sc[s2], dmin * m[s2], 31);
        b[i].qs[32 * p + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
        b[i].qh[l] |= (uint8_t)((lo >> 4) << s1 | (hi >> 4) << s2);
      }
    }
  }
}

static void quant_q6_k(const float *x, twin_block_q6_k *b, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += 256) {
    float scale[16], max_scale = 0.0f;
    for (int s = 0; s < 16; s++) {
      scale[s] = abs_max(x + 16 * s, 16) / 31.0f;
      max_scale = fmaxf(max_scale, scale[s]);
    }
    const float d = max_scale / 127.0f;
    b[i].d = f16_bits(d);
    const float dq = twin_quant_f16(b[i].d);
    int q[256];
    for (int s = 0; s < 16; s++) {
      int sc = dq ? clamp_int((int)nearbyintf(scale[s] / dq), 0, 127) : 0;
      b[i].scales[s] = (int8_t)sc;
      const float step = dq * (float)sc;
      for (int l = 0; l < 16; l++)
        q[16 * s + l] = step ? clamp_int((int)nearbyintf(x[16 * s + l] / step), -32, 31) + 32 : 32;
    }
    for (int half = 0; half < 2; half++) {
      uint8_t *ql = b[i].ql + 64 * half, *qh = b[i].qh + 32 * half;
      const int *qq = q + 128 * half;
      for (int l = 0; l < 32; l++) {
        ql[l] = (uint8_t)((qq[l] & 15) | (qq[l + 64] & 15) << 4);
        ql[l + 32] = (uint8_t)((qq[l + 32] & 15) | (qq[l + 96] & 15) << 4);
        qh[l] = (uint8_t)((qq[l] >> 4) | (qq[l + 32] >> 4) << 2 | (qq[l + 64] >> 4) << 4 |
                          (qq[l + 96] >> 4) << 6);
      }
    }
  }
}

int twin_quantize_row(twin_dtype t, const float *x, void *blocks, int64_t n) {
  switch (t) {
    case TWIN_DT_Q4_0: quant_q4_0(x, blocks, n / 32); return 0;
    case TWIN_DT_Q4_1: quant_q4_1(x, blocks, n / 32); return 0;
    case TWIN_DT_Q5_0: quant_q5_0(x, blocks, n / 32); return 0;
    case TWIN_DT_Q8_0: quant_q8_0(x, blocks, n / 32); return 0;
    case TWIN_DT_Q4_K: quant_q4_k(x, blocks, n / 256); return 0;
    case TWIN_DT_Q5_K: quant_q5_k(x, blocks, n / 256); return 0;
    case TWIN_DT_Q6_K: quant_q6_k(x, blocks, n / 256); return 0;
    default: return TWIN_EUNSUPPORTED;
  }
}

/* ---- activations --------------------------------------------------------------------------- */

void twin_quantize_act_a8(const float *x, twin_block_a8 *out, int64_t n) {
  for (int64_t i = 0; i < n / 32; i++, x += 32) {
    const float d = abs_max(x, 32) / 127.0f, id = d ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < 32; j++) {
      out[i].qs[j] = (int8_t)nearbyintf(x[j] * id);
      sum += out[i].qs[j];
    }
    out[i].d = d;
    out[i].sum = sum;
  }
}

void twin_quantize_act_a8k(const float *x, twin_block_a8k *out, int64_t n) {
  for (int64_t i = 0; i < n / 256; i++, x += 256) {
    const float d = abs_max(x, 256) / 127.0f, id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 256; j++) out[i].qs[j] = (int8_t)nearbyintf(x[j] * id);
    for (int s = 0; s < 16; s++) {
      int sum = 0;
      for (int l = 0; l < 16; l++) sum += out[i].qs[16 * s + l];
      out[i].bsums[s] = (int16_t)sum;
    }
    out[i].d = d;
  }
}

/* ---- scalar dot products ------------------------------------------------------------------- */

static float dot_q4_0(const void *w_row, const void *act_row, int n) {
  const twin_block_q4_0 *w = w_row;
  const twin_block_a8 *a = act_row;
  float sum = 0.0f;
  for (int i = 0; i < n / 32; i++) {
    int32_t acc = 0;
    for (int j = 0; j < 16; j++)
      acc += (w[i].qs[j] & 15) * a[i].qs[j] + (w[i].qs[j] >> 4) * a[i].qs[j + 16];
    sum += twin_quant_f16(w[i].d) * a[i].d * (float)(acc - 8 * a[i].sum);
  }
  return sum;
}

static float dot_q4_1(const void *w_row, const void *act_row, int n) {
  const twin_block_q4_1 *w = w_row;
  const twin_block_a8 *a = act_row;
  float sum = 0.0f;
  for (int i = 0; i < n / 32; i++) {
    int32_t acc = 0;
    for (int j = 0; j < 16; j++)
      acc += (w[i].qs[j] & 15) * a[i].qs[j] + (w[i].qs[j] >> 4) * a[i].qs[j + 16];
    sum += twin_quant_f16(w[i].d) * a[i].d * (float)acc +
           twin_quant_f16(w[i].m) * a[i].d * (float)a[i].sum;
  }
  return sum;
}

static float dot_q5_0(const void *w_row, const void *act_row, int n) {
  const twin_block_q5_0 *w = w_row;
  const twin_block_a8 *a = act_row;
  float sum = 0.0f;
  for (int i = 0; i < n / 32; i++) {
    uint32_t qh;
    memcpy(&qh, w[i].qh, 4);
    int32_t acc = 0;
    for (int j = 0; j < 16; j++) {
      int lo = (w[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
      int hi = (w[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
      acc += lo * a[i].qs[j] + hi * a[i].qs[j + 16];
    }
    sum += twin_quant_f16(w[i].d) * a[i].d * (float)(acc - 16 * a[i].sum);
  }
  return sum;
}

static float dot_q8_0(const void *w_row, const void *act_row, int n) {
  const twin_block_q8_0 *w = w_row;
  const twin_block_a8 *a = act_row;
  float sum = 0.0f;
  for (int i = 0; i < n / 32; i++) {
    int32_t acc = 0;
    for (int j = 0; j < 32; j++) acc += w[i].qs[j] * a[i].qs[j];
    sum += twin_quant_f16(w[i].d) * a[i].d * (float)acc;
  }
  return sum;
}

static float dot_q4_k(const void *w_row, const void *act_row, int n) {
  const twin_block_q4_k *w = w_row;
  const twin_block_a8k *a = act_row;
  float sum = 0.0f;
  for (int i = 0; i < n / 256; i++) {
    int32_t acc = 0, acc_min = 0;
    for (int p = 0; p < 4; p++) {
      int sc1, m1, sc2, m2;
      k_scale_min(w[i].scales, 2 * p, &sc1, &m1);
      k_scale_min(w[i].scales, 2 * p + 1, &sc2, &m2);
      const uint8_t *q = w[i].qs + 32 * p;
      const int8_t *x = a[i].qs + 64 * p;
      int32_t s1 = 0, s2 = 0;
      for (int l = 0; l < 32; l++) {
        s1 += (q[l] & 15) * x[l];
        s2 += (q[l] >> 4) * x[l + 32];
      }
      acc += sc1 * s1 + sc2 * s2;
      acc_min += m1 * (a[i].bsums[4 * p] + a[i].bsums[4 * p + 1]) +
                 m2 * (a[i].bsums[4 * p + 2] + a[i].bsums[4 * p + 3]);
    }
    sum += a[i].d * (twin_quant_f16(w[i].d) * (float)acc -
                     twin_quant_f16(w[i].dmin) * (float)acc_min);
  }
  return sum;
}

static float dot_q5_k(const void *w_row, const void *act_row, int n) {
  const twin_block_q5_k *w = w_row;
  const twin_block_a8k *a = act_row;
  float sum = 0.0f;
  for (int i = 0; i < n / 256; i++) {
    int32_t acc = 0, acc_min = 0;
    for (int p = 0; p < 4; p++) {
      int sc1, m1, sc2, m2;
      k_scale_min(w[i].scales, 2 * p, &sc1, &m1);
      k_scale_min(w[i].scales, 2 * p + 1, &sc2, &m2);
      const uint8_t *q = w[i].qs + 32 * p;
      const int8_t *x = a[i].qs + 64 * p;
      int32_t s1 = 0, s2 = 0;
      for (int l = 0; l < 32; l++) {
        s1 += ((q[l] & 15) | ((w[i].qh[l] >> (2 * p)) & 1) << 4) * x[l];
        s2 += ((q[l] >> 4) | ((w[i].qh[l] >> (2 * p + 1)) & 1) << 4) * x[l + 32];
      }
      acc += sc1 * s1 + sc2 * s2;
      acc_min += m1 * (a[i].bsums[4 * p] + a[i].bsums[4 * p + 1]) +
                 m2 * (a[i].bsums[4 * p + 2] + a[i].bsums[4 * p + 3]);
    }
    sum += a[i].d * (twin_quant_f16(w[i].d) * (float)acc -
                     twin_quant_f16(w[i].dmin) * (float)acc_min);
  }
  return sum;
}

static float dot_q6_k(const void *w_row, const void *act_row, int n) {
  const twin_block_q6_k *w = w_row;
  const twin_block_a8k *a = act_row;
  float sum = 0.0f;
  for (int i = 0; i < n / 256; i++) {
    int32_t acc = 0;
    for (int half = 0; half < 2; half++) {
      const uint8_t *ql = w[i].ql + 64 * half, *qh = w[i].qh + 32 * half;
      const int8_t *sc = w[i].scales + 8 * half;
      const int8_t *x = a[i].qs + 128 * half;
      int32_t part[8] = {0}; /* per sub-block of 16 within this half */
      for (int l = 0; l < 32; l++) {
        const int s = l / 16;
        part[s] += ((ql[l] & 15) | (qh[l] & 3) << 4) * x[l];
        part[s + 2] += ((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) * x[l + 32];
        part[s + 4] += ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) * x[l + 64];
        part[s + 6] += ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) * x[l + 96];
      }
      for (int s = 0; s < 8; s++) acc += sc[s] * (part[s] - 32 * a[i].bsums[8 * half + s]);
    }
    sum += twin_quant_f16(w[i].d) * a[i].d * (float)acc;
  }
  return sum;
}

twin_quant_dot_fn twin_quant_dot_scalar(twin_dtype t) {
  switch (t) {
    case TWIN_DT_Q4_0: return dot_q4_0;
    case TWIN_DT_Q4_1: return dot_q4_1;
    case TWIN_DT_Q5_0: return dot_q5_0;
    case TWIN_DT_Q8_0: return dot_q8_0;
    case TWIN_DT_Q4_K: return dot_q4_k;
    case TWIN_DT_Q5_K: return dot_q5_k;
    case TWIN_DT_Q6_K: return dot_q6_k;
    default: return NULL;
  }
}
