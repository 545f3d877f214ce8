/* tests/unit/test_quant.c — the block formats of quant.h: blocks assembled here element by
 * element from the format description (codes, scales) must dequantize to the values that
 * description gives; round-to-nearest quantization stays within each format's step; the
 * activation quantizers (scalar and AVX2) agree byte for byte; every dot product kernel
 * (scalar, AVX2, AVX2+VNNI where the CPU has them) matches a double-precision sum over the
 * dequantized values, also at the extremes of the codes; and the threaded quantized matrix
 * product with several parts matches the same reference. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm-svc/backend/cpu/cpu_quant.h"
#include "llm-svc/model/quant.h"
#include "llm-svc/model/tensor.h"

static const twin_dtype all_types[] = {TWIN_DT_Q4_0, TWIN_DT_Q4_1, TWIN_DT_Q5_0, TWIN_DT_Q8_0,
                                       TWIN_DT_Q4_K, TWIN_DT_Q5_K, TWIN_DT_Q6_K};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* ---- deterministic random numbers ---------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return *s >> 11;
}

static float rng_uniform(uint64_t *s) { return (float)((double)rng_next(s) / 9007199254740992.0); }

static float rng_normal(uint64_t *s) {
  float u1 = rng_uniform(s) + 1e-7f, u2 = rng_uniform(s);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* ---- blocks assembled from the format description ------------------------------------------
 * put_code writes the integer code of element e of a row into its place. Expected values come
 * from the codes and scales, never from the code under test. */

static void put_nibble(uint8_t *qs, int e, int code) {
  /* 32-element formats: elements 0..15 low nibbles of qs[0..15], 16..31 the high nibbles */
  if (e < 16) qs[e] = (uint8_t)((qs[e] & 0xf0) | (code & 15));
  else qs[e - 16] = (uint8_t)((qs[e - 16] & 0x0f) | (code & 15) << 4);
}

static void test_dequantize_q4_0_q4_1_q5_0_q8_0(void **state) {
  (void)state;
  float y[32];
  /* q4_0: d = 2 (fp16 0x4000), code c -> 2 (c - 8) */
  twin_block_q4_0 b40 = {.d = 0x4000};
  for (int e = 0; e < 32; e++) put_nibble(b40.qs, e, (e * 5) % 16);
  assert_int_equal(twin_dequantize_row(TWIN_DT_Q4_0, &b40, y, 32), 0);
  for (int e = 0; e < 32; e++) assert_float_equal(y[e], 2.0f * ((e * 5) % 16 - 8), 0);
  /* q4_1: d = 0.25 (0x3400), m = -1 (0xbc00): 0.25 c - 1 */
  twin_block_q4_1 b41 = {.d = 0x3400, .m = 0xbc00};
  for (int e = 0; e < 32; e++) put_nibble(b41.qs, e, (e * 3 + 1) % 16);
  assert_int_equal(twin_dequantize_row(TWIN_DT_Q4_1, &b41, y, 32), 0);
  for (int e = 0; e < 32; e++) assert_float_equal(y[e], 0.25f * ((e * 3 + 1) % 16) - 1.0f, 0);
  /* q5_0: d = 0.5 (0x3800), 5-bit code: nibble + bit e of qh; 0.5 (c - 16) */
  twin_block_q5_0 b50 = {.d = 0x3800};
  uint32_t qh = 0;
  for (int e = 0; e < 32; e++) {
    int code = (e * 7 + 3) % 32;
    put_nibble(b50.qs, e, code);
    qh |= (uint32_t)(code >> 4) << e;
  }
  b50.qh[0] = (uint8_t)qh, b50.qh[1] = (uint8_t)(qh >> 8);
  b50.qh[2] = (uint8_t)(qh >> 16), b50.qh[3] = (uint8_t)(qh >> 24);
  assert_int_equal(twin_dequantize_row(TWIN_DT_Q5_0, &b50, y, 32), 0);
  for (int e = 0; e < 32; e++) assert_float_equal(y[e], 0.5f * ((e * 7 + 3) % 32 - 16), 0);
  /* q8_0: d = -1.5 (0xbe00) */
  twin_block_q8_0 b80 = {.d = 0xbe00};
  for (int e = 0; e < 32; e++) b80.qs[e] = (int8_t)(e * 9 - 128);
  assert_int_equal(twin_dequantize_row(TWIN_DT_Q8_0, &b80, y, 32), 0);
  for (int e = 0; e < 32; e++) assert_float_equal(y[e], -1.5f * (int8_t)(e * 9 - 128), 0);
}

/* q4_k / q5_k: sub-block scales sc = {1, 2, 3, 4, 33, 34, 35, 36} and mins m = {5, 6, 7, 8, 49,
 * 50, 51, 52}, packed by hand: bytes 0..3 = sc[j] | (sc[j+4] >> 4) << 6, bytes 4..7 = m[j] |
 * (m[j+4] >> 4) << 6, bytes 8..11 = (sc[j+4] & 15) | (m[j+4] & 15) << 4. */
static const uint8_t k_scales[12] = {129, 130, 131, 132, 197, 198, 199, 200, 17, 34, 51, 68};
static const int k_sc[8] = {1, 2, 3, 4, 33, 34, 35, 36}, k_m[8] = {5, 6, 7, 8, 49, 50, 51, 52};

static void test_dequantize_q4_k_q5_k(void **state) {
  (void)state;
  float y[256];
  /* d = 0.5 (0x3800), dmin = 0.125 (0x3000); element e: pair p = e / 64, r = e % 64, sub-block
   * 2p + r / 32, byte qs[32p + r % 32], nibble r / 32 (low first) */
  twin_block_q4_k b4 = {.d = 0x3800, .dmin = 0x3000};
  memcpy(b4.scales, k_scales, 12);
  twin_block_q5_k b5 = {.d = 0x3800, .dmin = 0x3000};
  memcpy(b5.scales, k_scales, 12);
  for (int e = 0; e < 256; e++) {
    const int p = e / 64, r = e % 64, l = r % 32, hi = r / 32;
    const int code4 = (e * 11 + 5) % 16, code5 = (e * 13 + 2) % 32;
    b4.qs[32 * p + l] |= (uint8_t)(code4 << (4 * hi));
    b5.qs[32 * p + l] |= (uint8_t)((code5 & 15) << (4 * hi));
    b5.qh[l] |= (uint8_t)((code5 >> 4) << (2 * p + hi));
  }
  assert_int_equal(twin_dequantize_row(TWIN_DT_Q4_K, &b4, y, 256), 0);
  for (int e = 0; e < 256; e++) {
    const int s = e / 32;
    assert_float_equal(y[e], 0.5f * k_sc[s] * ((e * 11 + 5) % 16) - 0.125f * k_m[s], 1e-6);
  }
  assert_int_equal(twin_dequantize_row(TWIN_DT_Q5_K, &b5, y, 256), 0);
  for (int e = 0; e < 256; e++) {
    const int s = e / 32;
    assert_float_equal(y[e], 0.5f * k_sc[s] * ((e * 13 + 2) % 32) - 0.125f * k_m[s], 1e-6);
  }
}

static void test_dequantize_q6_k(void **state) {
  (void)state;
  /* d = 0.25 (0x3400), int8 scales s - 8; element e: half = e / 128, r = e % 128, group =
   * r / 32, l = r % 32: low 4 bits in ql[64 half + 32 (group % 2) + l] (nibble group / 2),
   * high 2 bits in qh[32 half + l] at bit 2 group; value d * scale[e / 16] * (code - 32) */
  twin_block_q6_k b = {.d = 0x3400};
  for (int s = 0; s < 16; s++) b.scales[s] = (int8_t)(s - 8);
  for (int e = 0; e < 256; e++) {
    const int half = e / 128, r = e % 128, group = r / 32, l = r % 32;
    const int code = (e * 7 + 1) % 64;
    b.ql[64 * half + 32 * (group % 2) + l] |= (uint8_t)((code & 15) << (4 * (group / 2)));
    b.qh[32 * half + l] |= (uint8_t)((code >> 4) << (2 * group));
  }
  float y[256];
  assert_int_equal(twin_dequantize_row(TWIN_DT_Q6_K, &b, y, 256), 0);
  for (int e = 0; e < 256; e++)
    assert_float_equal(y[e], 0.25f * (e / 16 - 8) * ((e * 7 + 1) % 64 - 32), 1e-6);
}

static void test_block_sizes_and_tensor_rows(void **state) {
  (void)state;
  assert_int_equal(twin_dtype_block_elems(TWIN_DT_Q4_1), 32);
  assert_int_equal(twin_dtype_block_elems(TWIN_DT_Q6_K), 256);
  assert_int_equal(twin_dtype_block_elems(TWIN_DT_BF16), 1);
  assert_int_equal(twin_dtype_bytes_for(TWIN_DT_Q5_0, 64), 44);
  assert_int_equal(twin_dtype_bytes_for(TWIN_DT_Q5_K, 512), 352);
  assert_int_equal(twin_dtype_bytes_for(TWIN_DT_Q4_K, 100), 0); /* not whole blocks */
  assert_string_equal(twin_dtype_name(TWIN_DT_Q5_0), "q5_0");
  /* twin_tensor_to_f32 on a range that cuts blocks: [2][64] q8_0, elements 30..99 */
  twin_block_q8_0 blocks[4];
  for (int b = 0; b < 4; b++) {
    blocks[b].d = 0x3c00; /* 1.0 */
    for (int j = 0; j < 32; j++) blocks[b].qs[j] = (int8_t)(b * 32 + j - 64);
  }
  twin_tensor t = {.dtype = TWIN_DT_Q8_0, .ndim = 2, .shape = {2, 64}, .data = blocks,
                   .nbytes = sizeof blocks};
  float out[70];
  assert_int_equal(twin_tensor_to_f32(&t, 30, 70, out), 0);
  for (int i = 0; i < 70; i++) assert_float_equal(out[i], (float)(30 + i - 64), 0);
  assert_int_equal(twin_tensor_to_f32(&t, 100, 29, out), TWIN_EINVAL);
}

/* ---- quantization error ------------------------------------------------------------------- */

static void test_quantize_round_trip(void **state) {
  (void)state;
  enum { N = 4096 };
  float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
  void *blocks = malloc(N * 2);
  uint64_t rng = 42;
  for (int i = 0; i < N; i++) x[i] = rng_normal(&rng);
  /* relative RMS error bounds for N(0,1) data, from the step of each format: a uniform step
   * q gives an RMS error q / sqrt(12); e.g. q8_0 steps are absmax/127 ~ 2.5/127 -> 0.6%,
   * 4-bit formats absmax/7 or range/15 -> ~10% (k-quants' 6-bit scales add a little). */
  const struct { twin_dtype t; double bound; } cases[] = {
      {TWIN_DT_Q8_0, 0.01}, {TWIN_DT_Q6_K, 0.04}, {TWIN_DT_Q5_0, 0.07}, {TWIN_DT_Q5_K, 0.05},
      {TWIN_DT_Q4_0, 0.14}, {TWIN_DT_Q4_1, 0.11}, {TWIN_DT_Q4_K, 0.11},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    assert_int_equal(twin_quantize_row(cases[c].t, x, blocks, N), 0);
    assert_int_equal(twin_dequantize_row(cases[c].t, blocks, y, N), 0);
    double err = 0, ref = 0;
    for (int i = 0; i < N; i++) err += (double)(x[i] - y[i]) * (x[i] - y[i]), ref += (double)x[i] * x[i];
    double rel = sqrt(err / ref);
    printf("  %-5s round trip: relative RMS error %.4f (bound %.2f)\n",
           twin_dtype_name(cases[c].t), rel, cases[c].bound);
    assert_true(rel < cases[c].bound);
    assert_true(rel > 0.0); /* something was rounded */
  }
  free(x);
  free(y);
  free(blocks);
}

/* ---- activations and dot products ---------------------------------------------------------- */

static void test_activation_quantizers_agree(void **state) {
  (void)state;
  enum { N = 1024 };
  float x[N];
  uint64_t rng = 7;
  for (int i = 0; i < N; i++) x[i] = 3.0f * rng_normal(&rng);
  x[5] = 0.5f; /* ties and a zero block */
  for (int i = 64; i < 96; i++) x[i] = 0.0f;
  twin_block_a8 ref8[N / 32], got8[N / 32];
  twin_block_a8k ref8k[N / 256], got8k[N / 256];
  memset(ref8, 0, sizeof ref8), memset(got8, 0, sizeof got8);
  memset(ref8k, 0, sizeof ref8k), memset(got8k, 0, sizeof got8k);
  twin_quantize_act_a8(x, ref8, N);
  twin_quantize_act_a8k(x, ref8k, N);
  /* values: |x - d q| <= d / 2 and sums match the codes */
  for (int b = 0; b < N / 32; b++) {
    int sum = 0;
    for (int j = 0; j < 32; j++) {
      assert_true(fabsf(x[32 * b + j] - ref8[b].d * ref8[b].qs[j]) <= ref8[b].d * 0.5001f);
      assert_true(abs(ref8[b].qs[j]) <= 127);
      sum += ref8[b].qs[j];
    }
    assert_int_equal(sum, ref8[b].sum);
  }
  assert_true(ref8[2].d == 0.0f && ref8[2].sum == 0);
  for (int b = 0; b < N / 256; b++)
    for (int s = 0; s < 16; s++) {
      int sum = 0;
      for (int l = 0; l < 16; l++) sum += ref8k[b].qs[16 * s + l];
      assert_int_equal(sum, ref8k[b].bsums[s]);
    }
  const cpu_quant_kernels *k = cpu_quant_kernels_get(CPU_QUANT_AVX2);
  if (!k) {
    printf("  no AVX2 on this CPU: vectorized quantizers skipped\n");
    return;
  }
  k->quantize_a8(x, got8, N);
  k->quantize_a8k(x, got8k, N);
  assert_memory_equal(got8, ref8, sizeof ref8);
  assert_memory_equal(got8k, ref8k, sizeof ref8k);
}

/* sum over i of dequant(w)[i] * d_a * qs_a[i], in double */
static double reference_dot(twin_dtype t, const void *w, const void *act, int n) {
  float *wf = malloc((size_t)n * sizeof *wf);
  assert_int_equal(twin_dequantize_row(t, w, wf, n), 0);
  double sum = 0;
  for (int i = 0; i < n; i++) {
    double a;
    if (twin_quant_act_format(t) == TWIN_ACT_A8) {
      const twin_block_a8 *b = (const twin_block_a8 *)act + i / 32;
      a = (double)b->d * b->qs[i % 32];
    } else {
      const twin_block_a8k *b = (const twin_block_a8k *)act + i / 256;
      a = (double)b->d * b->qs[i % 256];
    }
    sum += (double)wf[i] * a;
  }
  free(wf);
  return sum;
}

/* |got - want| within tol of the sum of |terms| (the scale a float sum can be off by) */
static double magnitude(twin_dtype t, const void *w, const void *act, int n) {
  float *wf = malloc((size_t)n * sizeof *wf);
  float *af = malloc((size_t)n * sizeof *af);
  twin_dequantize_row(t, w, wf, n);
  for (int i = 0; i < n; i++) {
    if (twin_quant_act_format(t) == TWIN_ACT_A8) {
      const twin_block_a8 *b = (const twin_block_a8 *)act + i / 32;
      af[i] = b->d * b->qs[i % 32];
    } else {
      const twin_block_a8k *b = (const twin_block_a8k *)act + i / 256;
      af[i] = b->d * b->qs[i % 256];
    }
  }
  double m = 0;
  for (int i = 0; i < n; i++) m += fabs((double)wf[i] * af[i]);
  free(wf);
  free(af);
  return m;
}

static void check_kernels_on(twin_dtype t, const void *w, const void *act, int n, const char *what) {
  const double want = reference_dot(t, w, act, n), scale = magnitude(t, w, act, n) + 1e-30;
  const cpu_quant_level levels[] = {CPU_QUANT_SCALAR, CPU_QUANT_AVX2, CPU_QUANT_AVX2_VNNI};
  for (size_t l = 0; l < 3; l++) {
    const cpu_quant_kernels *k = cpu_quant_kernels_get(levels[l]);
    if (!k) continue;
    const double got = k->dot[t](w, act, n);
    if (fabs(got - want) > 4e-6 * scale) {
      fail_msg("%s %s kernel %s: got %.9g want %.9g (scale %.3g)", twin_dtype_name(t), what,
               k->name, got, want, scale);
    }
  }
}

static void test_dot_products_random(void **state) {
  (void)state;
  enum { N = 1024 };
  float x[N], a[N];
  uint64_t rng = 99;
  for (size_t c = 0; c < N_TYPES; c++) {
    for (int trial = 0; trial < 8; trial++) {
      for (int i = 0; i < N; i++) x[i] = rng_normal(&rng) * (trial + 1), a[i] = rng_normal(&rng);
      if (trial == 1) for (int i = 0; i < N; i++) x[i] = fabsf(x[i]) + 0.5f; /* all-positive */
      uint8_t w[N * 2];
      twin_quantize_row(all_types[c], x, w, N);
      twin_block_a8 a8[N / 32];
      twin_block_a8k a8k[N / 256];
      twin_quantize_act_a8(a, a8, N);
      twin_quantize_act_a8k(a, a8k, N);
      const void *act = twin_quant_act_format(all_types[c]) == TWIN_ACT_A8 ? (void *)a8 : (void *)a8k;
      check_kernels_on(all_types[c], w, act, N, "random");
    }
  }
}

/* Every code at its largest, activations at +-127: the int16 pair sums must not saturate. */
static void test_dot_products_extremes(void **state) {
  (void)state;
  enum { N = 512 };
  twin_block_a8 a8[N / 32];
  twin_block_a8k a8k[N / 256];
  for (int sign = -1; sign <= 1; sign += 2) {
    for (int b = 0; b < N / 32; b++) {
      a8[b].d = 0.01f;
      a8[b].sum = 0;
      for (int j = 0; j < 32; j++) a8[b].qs[j] = (int8_t)(sign * 127), a8[b].sum += sign * 127;
    }
    for (int b = 0; b < N / 256; b++) {
      a8k[b].d = 0.01f;
      for (int j = 0; j < 256; j++) a8k[b].qs[j] = (int8_t)(sign * 127);
      for (int s = 0; s < 16; s++) a8k[b].bsums[s] = (int16_t)(sign * 127 * 16);
    }
    uint8_t w[N * 2];
    for (size_t c = 0; c < N_TYPES; c++) {
      const twin_dtype t = all_types[c];
      memset(w, 0xff, sizeof w); /* every code bit set: the largest codes, scales and mins */
      const size_t bb = twin_dtype_block_bytes(t);
      for (int b = 0; b < N / twin_dtype_block_elems(t); b++) {
        uint8_t *blk = w + b * bb;
        const uint16_t one = 0x3c00;
        if (t == TWIN_DT_Q6_K) {
          memcpy(blk + 208, &one, 2);
          memset(blk + 192, 0x7f, 16); /* scales 127 */
        } else if (t == TWIN_DT_Q8_0) {
          memcpy(blk, &one, 2);
          memset(blk + 2, 0x81, 32); /* -127 */
        } else {
          memcpy(blk, &one, 2);
          if (t == TWIN_DT_Q4_1 || t == TWIN_DT_Q4_K || t == TWIN_DT_Q5_K) memcpy(blk + 2, &one, 2);
        }
      }
      const void *act = twin_quant_act_format(t) == TWIN_ACT_A8 ? (void *)a8 : (void *)a8k;
      check_kernels_on(t, w, act, N, sign < 0 ? "extremes-" : "extremes+");
    }
  }
}

/* The four-token kernels give each token what the one-token kernel gives it. */
static void test_dot4_matches_dot(void **state) {
  (void)state;
  enum { N = 512 };
  uint64_t rng = 1234;
  float x[N], a[4][N];
  uint8_t w[N * 2];
  twin_block_a8 a8[4][N / 32];
  twin_block_a8k a8k[4][N / 256];
  const cpu_quant_level levels[] = {CPU_QUANT_AVX2, CPU_QUANT_AVX2_VNNI};
  for (size_t c = 0; c < N_TYPES; c++) {
    const twin_dtype t = all_types[c];
    for (int i = 0; i < N; i++) x[i] = rng_normal(&rng);
    twin_quantize_row(t, x, w, N);
    for (int k = 0; k < 4; k++) {
      for (int i = 0; i < N; i++) a[k][i] = rng_normal(&rng) * (k + 1);
      twin_quantize_act_a8(a[k], a8[k], N);
      twin_quantize_act_a8k(a[k], a8k[k], N);
    }
    const int is_a8 = twin_quant_act_format(t) == TWIN_ACT_A8;
    const uint8_t *act = is_a8 ? (const uint8_t *)a8 : (const uint8_t *)a8k;
    const size_t stride = is_a8 ? sizeof a8[0] : sizeof a8k[0];
    for (size_t l = 0; l < 2; l++) {
      const cpu_quant_kernels *k = cpu_quant_kernels_get(levels[l]);
      if (!k || !k->dot4[t]) continue;
      float out[4];
      k->dot4[t](w, act, stride, N, out);
      for (int j = 0; j < 4; j++) {
        const void *row = act + j * stride;
        const double want = reference_dot(t, w, row, N), scale = magnitude(t, w, row, N);
        if (fabs(out[j] - want) > 4e-6 * scale)
          fail_msg("%s dot4 %s token %d: got %.9g want %.9g", twin_dtype_name(t), k->name, j,
                   out[j], want);
      }
    }
  }
}

/* ---- the thread pool ----------------------------------------------------------------------- */

typedef struct count_job {
  int *counts;        /* [n_items] */
  int *seen_worker;   /* [n_items] */
} count_job;

static void count_item(void *ctx, int item, int worker) {
  count_job *job = ctx;
  job->counts[item]++;
  job->seen_worker[item] = worker;
}

/* Thousands of jobs of 1 to 40 items, back to back (as a decode step runs them) with polling
 * and with immediate sleeping: every item runs exactly once per job, and the job's writes are
 * visible to the caller when cpu_pool_run returns. */
static void test_pool_runs_every_item_once(void **state) {
  (void)state;
  const char *spins[] = {"0", "2000"};
  for (int s = 0; s < 2; s++) {
    setenv("TWIN_CPU_SPIN", spins[s], 1);
    cpu_pool *pool = NULL;
    twin_err err;
    assert_int_equal(cpu_pool_create(&pool, 3, &err), 0);
    int counts[40], workers[40], used[3] = {0};
    for (int j = 0; j < 5000; j++) {
      const int n = 1 + (j * 7) % 40;
      memset(counts, 0, sizeof counts);
      count_job job = {counts, workers};
      cpu_pool_run(pool, count_item, &job, n);
      for (int i = 0; i < n; i++) {
        if (counts[i] != 1) fail_msg("job %d item %d ran %d times", j, i, counts[i]);
        used[workers[i]] = 1;
      }
    }
    assert_true(used[0]);
    cpu_pool_destroy(pool);
  }
  unsetenv("TWIN_CPU_SPIN");
}

/* ---- the threaded product ------------------------------------------------------------------ */

static void test_quant_matmul_parts(void **state) {
  (void)state;
  enum { COLS = 512, ROWS_A = 37, ROWS_B = 70, NTOK = 6, LDY = 120 }; /* 6: 4 + 2 tokens */
  const twin_dtype types[2] = {TWIN_DT_Q4_K, TWIN_DT_Q5_0};
  const int rows[2] = {ROWS_A, ROWS_B}, col0[2] = {0, 45};
  uint64_t rng = 5;
  uint8_t *data[2];
  cpu_qweight parts[2];
  for (int p = 0; p < 2; p++) {
    const size_t row_bytes = twin_dtype_bytes_for(types[p], COLS);
    data[p] = malloc(row_bytes * rows[p]);
    float x[COLS];
    for (int r = 0; r < rows[p]; r++) {
      for (int i = 0; i < COLS; i++) x[i] = rng_normal(&rng);
      twin_quantize_row(types[p], x, data[p] + r * row_bytes, COLS);
    }
    parts[p] = (cpu_qweight){types[p], data[p], rows[p], COLS, row_bytes};
  }
  float in[NTOK][COLS];
  for (int t = 0; t < NTOK; t++)
    for (int i = 0; i < COLS; i++) in[t][i] = rng_normal(&rng);
  uint8_t a8[NTOK * COLS / 32 * sizeof(twin_block_a8)], a8k[NTOK * COLS / 256 * sizeof(twin_block_a8k)];
  cpu_qact act = {.a8 = a8, .a8k = a8k};
  cpu_pool *pool = NULL;
  twin_err err;
  assert_int_equal(cpu_pool_create(&pool, 3, &err), 0);
  const cpu_quant_kernels *k = cpu_quant_kernels_get(CPU_QUANT_BEST);
  cpu_quantize_activations(pool, k, &in[0][0], COLS, NTOK, COLS, 1, 1, &act);
  float y[NTOK][LDY];
  for (int accumulate = 0; accumulate < 2; accumulate++) {
    for (int t = 0; t < NTOK; t++)
      for (int c = 0; c < LDY; c++) y[t][c] = 1000.0f + c;
    cpu_quant_matmul(pool, k, parts, col0, 2, &act, &y[0][0], LDY, accumulate);
    for (int t = 0; t < NTOK; t++) {
      for (int c = 0; c < LDY; c++) {
        int p = c >= col0[1] && c < col0[1] + ROWS_B ? 1 : c < ROWS_A ? 0 : -1;
        if (p < 0) {
          assert_float_equal(y[t][c], 1000.0f + c, 0); /* untouched between and after parts */
          continue;
        }
        const int r = c - col0[p];
        const uint8_t *act_row = twin_quant_act_format(types[p]) == TWIN_ACT_A8
                                     ? a8 + t * act.a8_row_bytes : a8k + t * act.a8k_row_bytes;
        double want = reference_dot(types[p], parts[p].data + r * parts[p].row_bytes, act_row, COLS);
        if (accumulate) want += 1000.0 + c;
        assert_float_equal(y[t][c], want, 1e-3 + 1e-5 * fabs(want));
      }
    }
  }
  cpu_pool_destroy(pool);
  free(data[0]);
  free(data[1]);
}

int main(void) {
  const cpu_quant_kernels *best = cpu_quant_kernels_get(CPU_QUANT_BEST);
  printf("kernels on this CPU: %s\n", best->name);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dequantize_q4_0_q4_1_q5_0_q8_0),
      cmocka_unit_test(test_dequantize_q4_k_q5_k),
      cmocka_unit_test(test_dequantize_q6_k),
      cmocka_unit_test(test_block_sizes_and_tensor_rows),
      cmocka_unit_test(test_quantize_round_trip),
      cmocka_unit_test(test_activation_quantizers_agree),
      cmocka_unit_test(test_dot_products_random),
      cmocka_unit_test(test_dot_products_extremes),
      cmocka_unit_test(test_dot4_matches_dot),
      cmocka_unit_test(test_pool_runs_every_item_once),
      cmocka_unit_test(test_quant_matmul_parts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
