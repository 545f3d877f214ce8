/* llm-svc/backend/cpu/cpu_quant.h — the CPU backend's kernels for block-quantized weights: a
 * table of activation quantizers and weight-row x activation-row dot products, picked once at
 * backend creation for the CPU we run on (AVX2 + FMA + F16C when __builtin_cpu_supports says
 * so, with AVX-VNNI where present; else the scalar reference of quant.h), and the matrix
 * product y = x . W^T run directly on the blocks, threaded over output rows.
 * Also used by tests/unit/test_quant.c to check each vectorized kernel against the scalar one. */
#ifndef TWIN_BACKEND_CPU_QUANT_H
#define TWIN_BACKEND_CPU_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "llm-svc/backend/cpu/cpu_threads.h"
#include "llm-svc/model/quant.h"

/* One weight row with four activation rows (four tokens): out[k] = dot(w_row, act + k*stride). */
typedef void (*cpu_quant_dot4_fn)(const void *w_row, const uint8_t *act, size_t act_stride, int n,
                                  float *out);

typedef struct cpu_quant_kernels {
  const char *name;                              /* "scalar" | "avx2" | "avx2+vnni" */
  twin_quant_dot_fn dot[TWIN_DT_COUNT];          /* NULL for non-block types */
  cpu_quant_dot4_fn dot4[TWIN_DT_COUNT];         /* NULL: dot four times */
  void (*quantize_a8)(const float *x, twin_block_a8 *out, int64_t n);
  void (*quantize_a8k)(const float *x, twin_block_a8k *out, int64_t n);
} cpu_quant_kernels;

typedef enum {
  CPU_QUANT_BEST = 0,   /* the fastest this CPU runs */
  CPU_QUANT_SCALAR,     /* the reference */
  CPU_QUANT_AVX2,       /* AVX2 without VNNI (NULL when the CPU lacks AVX2/FMA/F16C) */
  CPU_QUANT_AVX2_VNNI,  /* AVX2 with AVX-VNNI dot products (NULL without AVX-VNNI) */
} cpu_quant_level;

/* A static table (never freed); NULL when the CPU cannot run that level. The environment
 * variable TWIN_CPU_KERNELS=scalar|avx2 caps CPU_QUANT_BEST (for comparisons). */
const cpu_quant_kernels *cpu_quant_kernels_get(cpu_quant_level level);

/* The AVX2 tables (cpu_quant_avx2.c); NULL when built without x86 support. */
const cpu_quant_kernels *cpu_quant_kernels_avx2(int vnni);

/* One weight matrix [rows][cols] kept in its stored block format. */
typedef struct cpu_qweight {
  twin_dtype dtype;     /* a block type of quant.h */
  const uint8_t *data;  /* [rows][row_bytes] */
  int rows, cols;
  size_t row_bytes;
} cpu_qweight;

/* Quantized activations of n input rows, in the format(s) the weights need. */
typedef struct cpu_qact {
  uint8_t *a8;          /* [n][cols/32] twin_block_a8, or NULL */
  uint8_t *a8k;         /* [n][cols/256] twin_block_a8k, or NULL */
  size_t a8_row_bytes, a8k_row_bytes;
  int n, cols;
} cpu_qact;

/* Quantizes x [n][cols] (row stride ldx floats) into act, in format a8 and/or a8k as asked;
 * act's buffers must hold n rows. Rows are spread over the pool. */
void cpu_quantize_activations(cpu_pool *pool, const cpu_quant_kernels *k, const float *x,
                              int ldx, int n, int cols, int want_a8, int want_a8k, cpu_qact *act);

/* y[t][col0 + r] = dot(W_part row r, x[t]) (+ y when accumulate) for every part, every row r
 * and token t < n, in one pool job spread over output rows. parts share cols and act. */
void cpu_quant_matmul(cpu_pool *pool, const cpu_quant_kernels *k, const cpu_qweight *parts,
                      const int *col0, int n_parts, const cpu_qact *act, float *y, int ldy,
                      int accumulate);

#endif
