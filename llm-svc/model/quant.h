/* llm-svc/model/quant.h — the block-quantized weight formats of GGUF files (ggml's Q4_0, Q4_1,
 * Q5_0, Q8_0 on 32-element blocks; the "k-quants" Q4_K, Q5_K, Q6_K on 256-element super-blocks),
 * the two 8-bit activation formats the matrix products quantize their inputs to, a reference
 * (scalar) dequantizer, simple quantizers (round to nearest, for tests and tools: not the
 * error-minimising searches of the GGUF tools), and scalar dot products of a weight row with
 * an activation row. The vectorized dot products live in the CPU backend (cpu_quant.h) and are
 * checked against these. All block structs are byte layouts of the file format: no padding,
 * little-endian, fp16 scales kept as their bit patterns. */
#ifndef TWIN_MODEL_QUANT_H
#define TWIN_MODEL_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "llm-svc/model/tensor.h"

#define TWIN_QK32 32   /* elements per block of q4_0, q4_1, q5_0, q8_0 */
#define TWIN_QK_K 256  /* elements per super-block of the k-quants */

/* ---- weight blocks (the file format) ------------------------------------------------------
 * Element j of a block is called x[j]; "d * q" means the fp16 scale times the stored integer. */

/* x[j] = d * (q[j] - 8); q[j] = qs[j] & 15 and q[j + 16] = qs[j] >> 4 for j < 16. */
typedef struct twin_block_q4_0 {
  uint16_t d;
  uint8_t qs[16];
} twin_block_q4_0;

/* x[j] = d * q[j] + m; nibbles as q4_0. */
typedef struct twin_block_q4_1 {
  uint16_t d, m;
  uint8_t qs[16];
} twin_block_q4_1;

/* x[j] = d * (q[j] - 16); q[j] = nibble as q4_0 | bit j of qh (little-endian uint32) << 4. */
typedef struct twin_block_q5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
} twin_block_q5_0;

/* x[j] = d * qs[j]. */
typedef struct twin_block_q8_0 {
  uint16_t d;
  int8_t qs[32];
} twin_block_q8_0;

/* 8 sub-blocks of 32, each with a 6-bit scale sc[s] and a 6-bit min m[s] packed in scales[12]:
 * s < 4: sc = scales[s] & 63, m = scales[s + 4] & 63; s >= 4: sc = (scales[s + 4] & 15) |
 * (scales[s - 4] >> 6) << 4, m = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4.
 * x = d * sc[s] * q - dmin * m[s]. The 4-bit q: bytes qs[32p .. 32p+31] hold sub-block 2p in
 * their low nibbles and sub-block 2p + 1 in their high nibbles (p = 0..3). */
typedef struct twin_block_q4_k {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
} twin_block_q4_k;

/* As q4_k with a fifth bit: element l of sub-block 2p takes bit 2p of qh[l] as its bit 4, and
 * element l of sub-block 2p + 1 takes bit 2p + 1 (l = 0..31). */
typedef struct twin_block_q5_k {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
} twin_block_q5_k;

/* 16 sub-blocks of 16 with int8 scales; x = d * scales[s] * (q - 32), q 6-bit. Two halves of
 * 128 elements, each with 64 bytes of ql, 32 of qh and 8 scales; within a half, for l < 32:
 * element l      = ql[l] & 15      | (qh[l] & 3) << 4,       scale index l / 16
 * element l + 32 = ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4,  scale index 2 + l / 16
 * element l + 64 = ql[l] >> 4      | (qh[l] >> 4 & 3) << 4,  scale index 4 + l / 16
 * element l + 96 = ql[l + 32] >> 4 | (qh[l] >> 6 & 3) << 4,  scale index 6 + l / 16 */
typedef struct twin_block_q6_k {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
} twin_block_q6_k;

_Static_assert(sizeof(twin_block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(twin_block_q4_1) == 20, "q4_1 block is 20 bytes");
_Static_assert(sizeof(twin_block_q5_0) == 22, "q5_0 block is 22 bytes");
_Static_assert(sizeof(twin_block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(twin_block_q4_k) == 144, "q4_k block is 144 bytes");
_Static_assert(sizeof(twin_block_q5_k) == 176, "q5_k block is 176 bytes");
_Static_assert(sizeof(twin_block_q6_k) == 210, "q6_k block is 210 bytes");

/* ---- activation blocks (in memory only) ----------------------------------------------------
 * The input of a quantized matrix product is quantized per block to int8 with one float scale
 * (x ~= d * qs, |qs| <= 127), carrying the integer sums the weight formats' offsets need. */

typedef struct twin_block_a8 {      /* for q4_0, q4_1, q5_0, q8_0 weights */
  float d;
  int32_t sum;                      /* sum of qs */
  int8_t qs[32];
} twin_block_a8;

typedef struct twin_block_a8k {     /* for q4_k, q5_k, q6_k weights */
  float d;
  int16_t bsums[16];                /* sum of qs[16 i .. 16 i + 15] */
  int8_t qs[256];
} twin_block_a8k;

_Static_assert(sizeof(twin_block_a8) == 40, "a8 block is 40 bytes");
_Static_assert(sizeof(twin_block_a8k) == 292, "a8k block is 292 bytes");

typedef enum {
  TWIN_ACT_NONE = 0,  /* not a block-quantized weight type */
  TWIN_ACT_A8 = 1,    /* twin_block_a8 */
  TWIN_ACT_A8K = 2,   /* twin_block_a8k */
} twin_act_format;

/* The activation format a weight type's dot product reads. */
twin_act_format twin_quant_act_format(twin_dtype weight_type);
/* Bytes of one activation row of n elements (n a multiple of the format's block). */
size_t twin_quant_act_row_bytes(twin_act_format f, int64_t n);

/* ---- reference kernels ---------------------------------------------------------------------
 * n: elements of the row, a multiple of the type's block length (checked by the callers). */

/* Decodes n elements of blocks of type t into y[n]. TWIN_EUNSUPPORTED for a non-block type. */
int twin_dequantize_row(twin_dtype t, const void *blocks, float *y, int64_t n);
/* Encodes x[n] as blocks of type t (round to nearest; scales from each block's extremes). */
int twin_quantize_row(twin_dtype t, const float *x, void *blocks, int64_t n);

/* x[n] -> activation blocks; scalar reference (the CPU backend has a vectorized twin). */
void twin_quantize_act_a8(const float *x, twin_block_a8 *out, int64_t n);
void twin_quantize_act_a8k(const float *x, twin_block_a8k *out, int64_t n);

/* Dot product of one weight row (blocks of type t) with one activation row of the format
 * twin_quant_act_format(t). Scalar reference, in float with exact integer inner sums. */
typedef float (*twin_quant_dot_fn)(const void *w_row, const void *act_row, int n);
/* NULL for a non-block type. */
twin_quant_dot_fn twin_quant_dot_scalar(twin_dtype t);

/* fp16 bit pattern <-> float (IEEE half, round to nearest even), inlined for the kernels. */
static inline float twin_quant_f16(uint16_t h) {
  union { uint32_t u; float f; } v;
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exponent == 0) {
    float magnitude = (float)mant * 5.9604644775390625e-8f; /* 2^-24 */
    return sign ? -magnitude : magnitude;
  }
  v.u = exponent == 31 ? sign | 0x7f800000u | (mant << 13)
                       : sign | ((exponent + 112u) << 23) | (mant << 13);
  return v.f;
}

#endif
