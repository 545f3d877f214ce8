/* llm-svc/model/tensor.c — dtype names and sizes, and conversion of stored weights (f32, f16,
 * bf16, and the block formats of quant.h through its reference dequantizer) to float32. The half-precision conversions are written out bit by bit (with IEEE
 * round-to-nearest-even) so they behave the same on every compiler and CPU; they run once per
 * weight at load, never per request. Data pointers may be unaligned (safetensors promises no
 * alignment), so elements are read with memcpy. */
#include "llm-svc/model/tensor.h"

#include <string.h>

#include "common/error.h"
#include "llm-svc/model/quant.h"

/* ---- dtypes -------------------------------------------------------------------------------- */

const char *twin_dtype_name(twin_dtype t) {
  switch (t) {
    case TWIN_DT_F32: return "f32";
    case TWIN_DT_F16: return "f16";
    case TWIN_DT_BF16: return "bf16";
    case TWIN_DT_Q8_0: return "q8_0";
    case TWIN_DT_Q4_K: return "q4_k";
    case TWIN_DT_Q6_K: return "q6_k";
    case TWIN_DT_Q5_K: return "q5_k";
    case TWIN_DT_Q4_0: return "q4_0";
    case TWIN_DT_I32: return "i32";
    case TWIN_DT_I64: return "i64";
    case TWIN_DT_Q4_1: return "q4_1";
    case TWIN_DT_Q5_0: return "q5_0";
    default: return "?";
  }
}

size_t twin_dtype_size(twin_dtype t) {
  switch (t) {
    case TWIN_DT_F32: return 4;
    case TWIN_DT_F16: return 2;
    case TWIN_DT_BF16: return 2;
    case TWIN_DT_I32: return 4;
    case TWIN_DT_I64: return 8;
    default: return 0;
  }
}

int twin_dtype_block_elems(twin_dtype t) {
  switch (t) {
    case TWIN_DT_Q4_0: case TWIN_DT_Q4_1: case TWIN_DT_Q5_0: case TWIN_DT_Q8_0:
      return TWIN_QK32;
    case TWIN_DT_Q4_K: case TWIN_DT_Q5_K: case TWIN_DT_Q6_K:
      return TWIN_QK_K;
    default:
      return twin_dtype_size(t) ? 1 : 0;
  }
}

size_t twin_dtype_block_bytes(twin_dtype t) {
  switch (t) {
    case TWIN_DT_Q4_0: return sizeof(twin_block_q4_0);
    case TWIN_DT_Q4_1: return sizeof(twin_block_q4_1);
    case TWIN_DT_Q5_0: return sizeof(twin_block_q5_0);
    case TWIN_DT_Q8_0: return sizeof(twin_block_q8_0);
    case TWIN_DT_Q4_K: return sizeof(twin_block_q4_k);
    case TWIN_DT_Q5_K: return sizeof(twin_block_q5_k);
    case TWIN_DT_Q6_K: return sizeof(twin_block_q6_k);
    default: return twin_dtype_size(t);
  }
}

int twin_dtype_is_quantized(twin_dtype t) { return twin_dtype_block_elems(t) > 1; }

size_t twin_dtype_bytes_for(twin_dtype t, int64_t n) {
  int block = twin_dtype_block_elems(t);
  if (block < 1 || n < 0 || n % block != 0) return 0;
  return (size_t)(n / block) * twin_dtype_block_bytes(t);
}

int64_t twin_tensor_numel(const twin_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

/* ---- scalar conversions -------------------------------------------------------------------- */

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* The loops below use these static versions: exported functions may be interposed in a
 * shared object (-fPIC), so the compiler would not inline those into a per-element loop. */
static inline float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

static inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    /* zero or subnormal: mantissa * 2^-24, exact in float32 */
    float magnitude = (float)mantissa * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
  return f32_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

float twin_bf16_to_f32(uint16_t h) { return bf16_to_f32(h); }

uint16_t twin_f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u); /* quiet NaN */
  uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)((x + rounding) >> 16);
}

float twin_f16_to_f32(uint16_t h) { return f16_to_f32(h); }

uint16_t twin_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u;          /* NaN */
  if (ax >= 0x47800000u) return sign | 0x7c00u;         /* >= 65536 (or inf): inf */
  if (ax < 0x38800000u) {                               /* below 2^-14: f16 subnormal */
    if (ax < 0x33000000u) return sign;                  /* <= 2^-25: rounds to zero */
    uint32_t biased_exp = ax >> 23;
    uint32_t mantissa = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - biased_exp;                 /* 14 .. 24 */
    uint32_t result = mantissa >> shift;
    uint32_t rest = mantissa & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (result & 1u))) result++;
    return sign | (uint16_t)result;
  }
  uint32_t result = ((ax >> 23) - 112u) << 10 | ((ax & 0x7fffffu) >> 13);
  uint32_t rest = ax & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) result++; /* may carry to inf */
  return sign | (uint16_t)result;
}

/* ---- row conversion ------------------------------------------------------------------------ */

int twin_tensor_to_f32(const twin_tensor *t, int64_t first, int64_t n, float *out) {
  int64_t numel = twin_tensor_numel(t);
  if (first < 0 || n < 0 || first > numel || n > numel - first) return TWIN_EINVAL;
  const unsigned char *bytes = (const unsigned char *)t->data;
  switch (t->dtype) {
    case TWIN_DT_F32:
      memcpy(out, bytes + first * 4, (size_t)n * 4);
      return 0;
    case TWIN_DT_F16:
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, bytes + (first + i) * 2, 2);
        out[i] = f16_to_f32(h);
      }
      return 0;
    case TWIN_DT_BF16: {
      /* blocks of a fixed length so the compiler vectorizes the widening shift */
      enum { BLOCK = 64 };
      int64_t i = 0;
      for (; i + BLOCK <= n; i += BLOCK) {
        uint16_t h[BLOCK];
        uint32_t bits[BLOCK];
        memcpy(h, bytes + (first + i) * 2, sizeof h);
        for (int j = 0; j < BLOCK; j++) bits[j] = (uint32_t)h[j] << 16;
        memcpy(out + i, bits, sizeof bits);
      }
      for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, bytes + (first + i) * 2, 2);
        out[i] = bf16_to_f32(h);
      }
      return 0;
    }
    default:
      break;
  }
  const int block = twin_dtype_block_elems(t->dtype);
  if (block <= 1) return TWIN_EUNSUPPORTED;
  /* block formats: whole blocks straight into out, a cut block through a scratch block */
  const size_t block_bytes = twin_dtype_block_bytes(t->dtype);
  float scratch[TWIN_QK_K];
  int64_t i = first;
  while (i < first + n) {
    const int64_t block_index = i / block, offset = i % block;
    const unsigned char *src = bytes + (size_t)block_index * block_bytes;
    int64_t take = block - offset < first + n - i ? block - offset : first + n - i;
    if (offset == 0 && take == block) {
      int64_t whole = (first + n - i) / block;
      twin_dequantize_row(t->dtype, src, out + (i - first), whole * block);
      i += whole * block;
      continue;
    }
    twin_dequantize_row(t->dtype, src, scratch, block);
    memcpy(out + (i - first), scratch + offset, (size_t)take * sizeof *out);
    i += take;
  }
  return 0;
}
