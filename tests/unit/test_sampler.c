/* tests/unit/test_sampler.c — the token sampler (llm-svc/engine/sampler.h): validation names
 * the field, greedy is the argmax, seeds reproduce, top-k=1 and tiny top-p are greedy, min-p
 * filters, penalties move the right logits by amounts worked out by hand, and sampled
 * frequencies match distributions computed here from their definitions (chi-square with a
 * fixed seed, so the test is deterministic). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm-svc/engine/sampler.h"

/* ==== helpers ============================================================================== */

typedef struct fixture {
  twin_sampler *sampler;
  twin_sampler_scratch *scratch;
} fixture;

static void make(fixture *f, const twin_sampling_params *p, int vocab) {
  twin_err err = {0};
  int rc = twin_sampler_create(p, vocab, &f->sampler, &err);
  if (rc) fail_msg("twin_sampler_create: %s", err.msg);
  rc = twin_sampler_scratch_create(vocab, &f->scratch, &err);
  if (rc) fail_msg("twin_sampler_scratch_create: %s", err.msg);
}

static void unmake(fixture *f) {
  twin_sampler_destroy(f->sampler);
  twin_sampler_scratch_destroy(f->scratch);
}

static int32_t sample1(fixture *f, const float *logits) {
  twin_sample_result r;
  twin_err err = {0};
  int rc = twin_sampler_sample(f->sampler, f->scratch, logits, &r, &err);
  if (rc) fail_msg("twin_sampler_sample: %s", err.msg);
  return r.token;
}

/* A test-local generator (an LCG, not the sampler's) for random logits. */
static double test_uniform(uint64_t *state) {
  *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*state >> 11) * 0x1.0p-53;
}
static float test_normal(uint64_t *state) {
  double u1 = test_uniform(state), u2 = test_uniform(state);
  if (u1 < 1e-300) u1 = 1e-300;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
static void random_logits(uint64_t *state, float *x, int n, float scale) {
  for (int i = 0; i < n; i++) x[i] = scale * test_normal(state);
}

static int32_t reference_argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

/* Chi-square of observed counts against expected probabilities (zero-probability classes
 * must never be observed). */
static double chi_square(const int *counts, const double *probs, int k, int n_draws) {
  double chi = 0.0;
  for (int i = 0; i < k; i++) {
    if (probs[i] == 0.0) {
      if (counts[i] != 0)
        fail_msg("class %d has probability 0 but was drawn %d times", i, counts[i]);
      continue;
    }
    double e = probs[i] * n_draws;
    chi += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi;
}

/* The five-token distribution of the statistical tests and its logits (shifted by +3: only
 * differences matter). */
static const double P5[5] = {0.4, 0.3, 0.15, 0.1, 0.05};
static void p5_logits(float *x) {
  for (int i = 0; i < 5; i++) x[i] = (float)log(P5[i]) + 3.0f;
}

/* Draws n times and returns the chi-square against expected[5]. */
static double draw_chi(const twin_sampling_params *p, const double *expected, int n_draws) {
  fixture f;
  make(&f, p, 5);
  float logits[5];
  p5_logits(logits);
  int counts[5] = {0};
  for (int i = 0; i < n_draws; i++) counts[sample1(&f, logits)]++;
  unmake(&f);
  return chi_square(counts, expected, 5, n_draws);
}

/* The critical chi-square value for 4 degrees of freedom at p = 1e-6 is about 33.4; a wrong
 * distribution over 100k draws scores in the hundreds or thousands. */
#define CHI_BOUND 40.0
#define N_DRAWS 100000

/* ==== validation =========================================================================== */

static void expect_invalid(twin_sampling_params p, const char *field) {
  twin_err err = {0};
  assert_int_equal(twin_sampling_params_validate(&p, &err), TWIN_EINVAL);
  if (!strstr(err.msg, field)) fail_msg("message '%s' does not name '%s'", err.msg, field);
  twin_sampler *s = NULL;
  assert_int_equal(twin_sampler_create(&p, 10, &s, &err), TWIN_EINVAL);
  assert_null(s);
}

static void test_validation_names_field(void **state) {
  (void)state;
  twin_sampling_params d, p;
  twin_sampling_params_default(&d);
  twin_err err = {0};
  assert_int_equal(twin_sampling_params_validate(&d, &err), 0);

  p = d; p.temperature = -0.1f; expect_invalid(p, "temperature");
  p = d; p.temperature = NAN; expect_invalid(p, "temperature");
  p = d; p.top_p = 0.0f; expect_invalid(p, "top_p");
  p = d; p.top_p = 1.01f; expect_invalid(p, "top_p");
  p = d; p.top_k = -1; expect_invalid(p, "top_k");
  p = d; p.min_p = -0.01f; expect_invalid(p, "min_p");
  p = d; p.min_p = 1.5f; expect_invalid(p, "min_p");
  p = d; p.repetition_penalty = 0.0f; expect_invalid(p, "repetition_penalty");
  p = d; p.repetition_penalty = -1.0f; expect_invalid(p, "repetition_penalty");
  p = d; p.presence_penalty = 2.5f; expect_invalid(p, "presence_penalty");
  p = d; p.presence_penalty = -2.01f; expect_invalid(p, "presence_penalty");
  p = d; p.frequency_penalty = -3.0f; expect_invalid(p, "frequency_penalty");
  p = d; p.frequency_penalty = NAN; expect_invalid(p, "frequency_penalty");
  p = d; p.logprobs = 1; p.top_logprobs = 21; expect_invalid(p, "top_logprobs");
  p = d; p.top_logprobs = 3; expect_invalid(p, "top_logprobs");

  /* The boundaries themselves are valid. */
  p = d; p.top_p = 1.0f; p.min_p = 1.0f; p.presence_penalty = -2.0f; p.frequency_penalty = 2.0f;
  p.temperature = 0.0f; p.top_k = 0; p.logprobs = 1; p.top_logprobs = 20;
  assert_int_equal(twin_sampling_params_validate(&p, &err), 0);

  twin_sampler *s = NULL;
  assert_int_equal(twin_sampler_create(&d, 0, &s, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "vocab_size"));
}

/* ==== greedy =============================================================================== */

static void test_greedy_is_argmax(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.temperature = 0.0f;
  fixture f;
  make(&f, &p, 6);
  const float a[6] = {0.1f, 2.5f, -1.0f, 2.4f, -INFINITY, 0.0f};
  assert_int_equal(sample1(&f, a), 1);
  const float ties[6] = {1.0f, 3.0f, 0.0f, 3.0f, 3.0f, -2.0f}; /* first maximum, as torch */
  assert_int_equal(sample1(&f, ties), 1);
  const float last[6] = {-5.0f, -4.0f, -3.0f, -2.0f, -1.0f, -0.5f};
  assert_int_equal(sample1(&f, last), 5);
  unmake(&f);

  /* Random rows at a realistic vocabulary size. */
  int n = 32000;
  float *x = malloc(n * sizeof *x);
  uint64_t rs = 1;
  make(&f, &p, n);
  for (int t = 0; t < 5; t++) {
    random_logits(&rs, x, n, 4.0f);
    assert_int_equal(sample1(&f, x), reference_argmax(x, n));
  }
  unmake(&f);
  free(x);
}

/* ==== seeds ================================================================================ */

static void draw_sequence(uint64_t seed, int32_t *out, int n, const float *logits, int vocab) {
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.seed = seed;
  p.has_seed = 1;
  fixture f;
  make(&f, &p, vocab);
  for (int i = 0; i < n; i++) out[i] = sample1(&f, logits);
  unmake(&f);
}

static void test_seed_reproduces(void **state) {
  (void)state;
  enum { V = 100, N = 200 };
  float logits[V];
  uint64_t rs = 2;
  random_logits(&rs, logits, V, 1.0f); /* flat enough that draws vary */
  int32_t a[N], b[N], c[N];
  draw_sequence(42, a, N, logits, V);
  draw_sequence(42, b, N, logits, V);
  draw_sequence(43, c, N, logits, V);
  assert_memory_equal(a, b, sizeof a);
  int same = 0, distinct_in_a = 0;
  for (int i = 0; i < N; i++) same += a[i] == c[i];
  assert_true(same < N / 4); /* two streams agree only by chance (~ sum p^2 per step) */
  for (int i = 0; i < N; i++) {
    int seen = 0;
    for (int j = 0; j < i; j++) seen |= a[j] == a[i];
    distinct_in_a += !seen;
  }
  assert_true(distinct_in_a > 20);
}

/* ==== top-k, top-p, min-p sets ============================================================= */

static void test_topk1_and_tiny_topp_are_greedy(void **state) {
  (void)state;
  int n = 50000;
  float *x = malloc(n * sizeof *x);
  twin_sampling_params pk, pp;
  twin_sampling_params_default(&pk);
  pk.temperature = 1.5f;
  pk.top_k = 1;
  pk.has_seed = 1;
  pk.seed = 7;
  pp = pk;
  pp.top_k = 0;
  pp.top_p = 1e-6f;
  fixture fk, fp;
  make(&fk, &pk, n);
  make(&fp, &pp, n);
  uint64_t rs = 3;
  for (int t = 0; t < 20; t++) {
    random_logits(&rs, x, n, 2.0f);
    if (t % 5 == 0) { /* a tie at the top: the lower id wins, as with greedy */
      int32_t m = reference_argmax(x, n);
      x[n - 1 - m % 7] = x[m];
    }
    int32_t want = reference_argmax(x, n);
    assert_int_equal(sample1(&fk, x), want);
    assert_int_equal(sample1(&fp, x), want);
  }
  unmake(&fk);
  unmake(&fp);
  free(x);
}

static void test_min_p_filters(void **state) {
  (void)state;
  /* p = [0.4, 0.3, 0.15, 0.1, 0.05]; min_p 0.3 keeps p >= 0.12: tokens 0, 1, 2. */
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.min_p = 0.3f;
  p.has_seed = 1;
  p.seed = 11;
  double expected[5] = {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0};
  double chi = draw_chi(&p, expected, N_DRAWS);
  if (chi > CHI_BOUND) fail_msg("min_p 0.3: chi-square %.1f", chi);
  /* min_p 0.8 keeps only the top token (0.3 < 0.32). */
  p.min_p = 0.8f;
  double only0[5] = {1, 0, 0, 0, 0};
  assert_true(draw_chi(&p, only0, 2000) == 0.0);
}

/* ==== penalties ============================================================================ */

static void test_penalty_amounts(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  twin_sampler *s = NULL;
  twin_err err = {0};
  assert_int_equal(twin_sampler_create(&p, 6, &s, &err), 0);
  const int32_t prompt[3] = {0, 1, 0};
  assert_int_equal(twin_sampler_add_prompt(s, prompt, 3, &err), 0);
  assert_int_equal(twin_sampler_accept(s, 2, &err), 0);
  assert_int_equal(twin_sampler_accept(s, 2, &err), 0);
  assert_int_equal(twin_sampler_accept(s, 3, &err), 0);
  float x[6] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  twin_sampler_apply_penalties(s, x);
  /* token 0: prompt only, positive: 2.0 / 2 = 1.0
   * token 1: prompt only, negative: -1.0 * 2 = -2.0
   * token 2: generated twice: 0.5 / 2 - 0.5 * 2 - 0.25 = -1.0
   * token 3: generated once: 3.0 / 2 - 0.5 * 1 - 0.25 = 0.75
   * tokens 4, 5: never seen, unchanged */
  const float want[6] = {1.0f, -2.0f, -1.0f, 0.75f, -2.0f, 1.0f};
  for (int i = 0; i < 6; i++)
    if (fabsf(x[i] - want[i]) > 1e-6f) fail_msg("token %d: %g, want %g", i, x[i], want[i]);
  twin_sampler_destroy(s);

  /* OpenAI penalties count generated tokens only; the prompt does not count. */
  twin_sampling_params_default(&p);
  p.frequency_penalty = -1.5f;
  p.presence_penalty = 2.0f;
  assert_int_equal(twin_sampler_create(&p, 4, &s, &err), 0);
  const int32_t prompt2[2] = {0, 1};
  assert_int_equal(twin_sampler_add_prompt(s, prompt2, 2, &err), 0);
  for (int i = 0; i < 3; i++) assert_int_equal(twin_sampler_accept(s, 1, &err), 0);
  float y[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  twin_sampler_apply_penalties(s, y);
  /* token 1: 1 - (-1.5 * 3) - 2.0 = 3.5; token 0 (prompt only) unchanged */
  const float want2[4] = {1.0f, 3.5f, 1.0f, 1.0f};
  for (int i = 0; i < 4; i++)
    if (fabsf(y[i] - want2[i]) > 1e-6f) fail_msg("token %d: %g, want %g", i, y[i], want2[i]);
  twin_sampler_destroy(s);
}

static void test_penalties_steer_greedy_without_touching_caller(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.temperature = 0.0f;
  p.repetition_penalty = 1.5f;
  fixture f;
  make(&f, &p, 3);
  twin_err err = {0};
  const int32_t prompt[1] = {0};
  assert_int_equal(twin_sampler_add_prompt(f.sampler, prompt, 1, &err), 0);
  float x[3] = {3.0f, 2.9f, -1.0f}; /* token 0 becomes 3 / 1.5 = 2.0 < 2.9 */
  const float copy[3] = {3.0f, 2.9f, -1.0f};
  assert_int_equal(sample1(&f, x), 1);
  assert_memory_equal(x, copy, sizeof x);
  /* token 1 was just generated: 2.9 / 1.5 = 1.93 < token 0's 2.0 */
  assert_int_equal(sample1(&f, x), 0);
  unmake(&f);

  /* Frequency penalty: the same token loses after being repeated. */
  twin_sampling_params_default(&p);
  p.temperature = 0.0f;
  p.frequency_penalty = 0.4f;
  make(&f, &p, 2);
  const float z[2] = {1.0f, 0.0f};
  int32_t seq[5];
  for (int i = 0; i < 5; i++) seq[i] = sample1(&f, z);
  /* token 0 scores 1, 0.6, 0.2, then 1 - 3 x 0.4 = -0.2 < 0: token 1; then token 0 again,
   * since -0.2 > token 1's 0 - 0.4. */
  const int32_t want[5] = {0, 0, 0, 1, 0};
  assert_memory_equal(seq, want, sizeof want);
  unmake(&f);
}

/* ==== distributions ======================================================================== */

static void test_temperature_one_matches_softmax(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.has_seed = 1;
  p.seed = 2024;
  double chi = draw_chi(&p, P5, N_DRAWS);
  if (chi > CHI_BOUND) fail_msg("temperature 1: chi-square %.1f", chi);

  /* A deliberately wrong expectation must fail the same bound: the check has teeth. */
  const double wrong[5] = {0.38, 0.32, 0.15, 0.1, 0.05};
  assert_true(draw_chi(&p, wrong, N_DRAWS) > CHI_BOUND);
}

static void test_temperature_half_squares_probabilities(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.temperature = 0.5f;
  p.has_seed = 1;
  p.seed = 99;
  double q[5], z = 0.0;
  for (int i = 0; i < 5; i++) z += P5[i] * P5[i];
  for (int i = 0; i < 5; i++) q[i] = P5[i] * P5[i] / z;
  double chi = draw_chi(&p, q, N_DRAWS);
  if (chi > CHI_BOUND) fail_msg("temperature 0.5: chi-square %.1f", chi);
}

static void test_top_k_and_top_p_distributions(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.has_seed = 1;
  p.seed = 5;
  /* top_k 3: the top three renormalized. */
  p.top_k = 3;
  double k3[5] = {0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0};
  double chi = draw_chi(&p, k3, N_DRAWS);
  if (chi > CHI_BOUND) fail_msg("top_k 3: chi-square %.1f", chi);
  /* top_p 0.8 alone: mass before each token 0, 0.4, 0.7, 0.85 -> keeps 0, 1, 2. */
  p.top_k = 0;
  p.top_p = 0.8f;
  chi = draw_chi(&p, k3, N_DRAWS);
  if (chi > CHI_BOUND) fail_msg("top_p 0.8: chi-square %.1f", chi);
  /* top_k 3 then top_p 0.8 over the renormalized top three (0.47, 0.35, 0.18): mass before
   * token 2 is 0.82 >= 0.8 -> keeps 0, 1. Top-p must see top-k's renormalization. */
  p.top_k = 3;
  double k3p8[5] = {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0};
  chi = draw_chi(&p, k3p8, N_DRAWS);
  if (chi > CHI_BOUND) fail_msg("top_k 3 + top_p 0.8: chi-square %.1f", chi);
  /* top_k 3 then top_p 0.5: the mass before token 1 is 0.47 < 0.5 -> keeps 0, 1. */
  p.top_p = 0.5f;
  chi = draw_chi(&p, k3p8, N_DRAWS);
  if (chi > CHI_BOUND) fail_msg("top_k 3 + top_p 0.5: chi-square %.1f", chi);
  /* top_p 0.39: the mass before token 1 is 0.4 -> token 0 only. */
  p.top_k = 0;
  p.top_p = 0.39f;
  double only0[5] = {1, 0, 0, 0, 0};
  assert_true(draw_chi(&p, only0, 2000) == 0.0);
}

/* Large vocabulary: top-p's chunked selection and top-k's quickselect against a reference
 * computed here with a full sort. */
static int cmp_desc(const void *a, const void *b, void *logits) {
  const float *x = logits;
  int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
  if (x[i] != x[j]) return x[i] > x[j] ? -1 : 1;
  return i - j;
}

static void test_large_vocab_nucleus(void **state) {
  (void)state;
  const int n = 128256;
  float *x = malloc(n * sizeof *x);
  int32_t *order = malloc(n * sizeof *order);
  char *in_set = calloc(n, 1);
  uint64_t rs = 4;
  random_logits(&rs, x, n, 3.0f);
  for (int i = 0; i < n; i++) order[i] = i;
  qsort_r(order, n, sizeof *order, cmp_desc, x);
  double m = x[order[0]], total = 0.0;
  for (int i = 0; i < n; i++) total += exp(x[i] - m);

  /* top_p 0.9 */
  int nucleus = 0;
  double before = 0.0;
  while (nucleus < n && before < 0.9 * total) before += exp(x[order[nucleus++]] - m);
  for (int j = 0; j < nucleus; j++) in_set[order[j]] = 1;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.top_p = 0.9f;
  p.has_seed = 1;
  p.seed = 3;
  fixture f;
  make(&f, &p, n);
  int top_hits = 0;
  for (int t = 0; t < 3000; t++) {
    int32_t tok = sample1(&f, x);
    if (!in_set[tok])
      fail_msg("draw %d: token %d is outside the 0.9 nucleus (%d tokens)", t, tok, nucleus);
    top_hits += tok == order[0];
  }
  unmake(&f);
  /* The top token's share: exp(0) / (nucleus mass); 3000 draws, 6 sigma. */
  double p0 = 1.0 / before, sd = sqrt(3000 * p0 * (1 - p0));
  assert_true(fabs(top_hits - 3000 * p0) < 6 * sd + 1);

  /* top_k 40 at temperature 0.7 */
  memset(in_set, 0, n);
  for (int j = 0; j < 40; j++) in_set[order[j]] = 1;
  twin_sampling_params_default(&p);
  p.top_k = 40;
  p.temperature = 0.7f;
  p.has_seed = 1;
  p.seed = 4;
  make(&f, &p, n);
  for (int t = 0; t < 2000; t++) {
    int32_t tok = sample1(&f, x);
    if (!in_set[tok]) fail_msg("draw %d: token %d is outside the top 40", t, tok);
  }
  unmake(&f);
  free(x);
  free(order);
  free(in_set);
}

/* ==== logprobs ============================================================================= */

static void test_logprobs_are_raw(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  p.temperature = 0.0f;
  p.logprobs = 1;
  p.top_logprobs = 3;
  p.repetition_penalty = 1.3f; /* does not change the reported log-probabilities */
  fixture f;
  make(&f, &p, 4);
  const float x[4] = {1.0f, 2.0f, 3.0f, 0.5f};
  double lse = log(exp(1.0) + exp(2.0) + exp(3.0) + exp(0.5));
  twin_sample_result r;
  twin_err err = {0};
  assert_int_equal(twin_sampler_sample(f.sampler, f.scratch, x, &r, &err), 0);
  assert_int_equal(r.token, 2);
  assert_true(fabs(r.logprob - (3.0 - lse)) < 1e-5);
  assert_int_equal(r.n_top, 3);
  const int32_t ids[3] = {2, 1, 0};
  const double lp[3] = {3.0 - lse, 2.0 - lse, 1.0 - lse};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r.top_tokens[i], ids[i]);
    assert_true(fabs(r.top_logprobs[i] - lp[i]) < 1e-5);
  }
  /* Token 2 is now penalized (3 / 1.3 = 2.31 > 2): still chosen, same raw logprob. */
  assert_int_equal(twin_sampler_sample(f.sampler, f.scratch, x, &r, &err), 0);
  assert_int_equal(r.token, 2);
  assert_true(fabs(r.logprob - (3.0 - lse)) < 1e-5);
  unmake(&f);
}

/* ==== bad inputs =========================================================================== */

static void test_bad_inputs(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  fixture f;
  make(&f, &p, 4);
  twin_sample_result r;
  twin_err err = {0};
  const float nan_row[4] = {0.0f, NAN, 1.0f, 2.0f};
  assert_int_equal(twin_sampler_sample(f.sampler, f.scratch, nan_row, &r, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "logits[1] is NaN"));
  const float inf_row[4] = {0.0f, 1.0f, 1.0f, INFINITY};
  assert_int_equal(twin_sampler_sample(f.sampler, f.scratch, inf_row, &r, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "logits[3] is +inf"));
  const float masked[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  assert_int_equal(twin_sampler_sample(f.sampler, f.scratch, masked, &r, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "-inf"));
  const float one_left[4] = {-INFINITY, -INFINITY, 0.0f, -INFINITY};
  assert_int_equal(sample1(&f, one_left), 2);
  const int32_t bad_prompt[3] = {1, 4, 0};
  assert_int_equal(twin_sampler_add_prompt(f.sampler, bad_prompt, 3, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "prompt token 1 is 4"));
  assert_int_equal(twin_sampler_accept(f.sampler, -1, &err), TWIN_EINVAL);
  twin_sampler_scratch *small = NULL;
  assert_int_equal(twin_sampler_scratch_create(2, &small, &err), 0);
  const float ok[4] = {0, 1, 2, 3};
  assert_int_equal(twin_sampler_sample(f.sampler, small, ok, &r, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "scratch"));
  twin_sampler_scratch_destroy(small);
  unmake(&f);
}

static void test_memory_stays_small(void **state) {
  (void)state;
  twin_sampling_params p;
  twin_sampling_params_default(&p);
  twin_sampler *plain = NULL, *pen = NULL;
  twin_err err = {0};
  assert_int_equal(twin_sampler_create(&p, 128256, &plain, &err), 0);
  p.repetition_penalty = 1.1f;
  assert_int_equal(twin_sampler_create(&p, 128256, &pen, &err), 0);
  int32_t prompt[4096];
  for (int i = 0; i < 4096; i++) prompt[i] = (i * 7919) % 128256; /* 4096 distinct */
  assert_int_equal(twin_sampler_add_prompt(plain, prompt, 4096, &err), 0);
  assert_int_equal(twin_sampler_add_prompt(pen, prompt, 4096, &err), 0);
  assert_true(twin_sampler_memory_bytes(plain) < 1024);      /* no table without penalties */
  assert_true(twin_sampler_memory_bytes(pen) < 128 * 1024);  /* vs 512 KiB of dense counts */
  /* Every one of them is found again: each prompt token's logit is penalized, others not. */
  float *x = malloc(128256 * sizeof *x);
  for (int i = 0; i < 128256; i++) x[i] = 1.1f;
  twin_sampler_apply_penalties(pen, x);
  int changed = 0;
  for (int i = 0; i < 128256; i++) changed += x[i] != 1.1f;
  assert_int_equal(changed, 4096);
  for (int i = 0; i < 4096; i++) assert_true(fabsf(x[prompt[i]] - 1.0f) < 1e-6f);
  free(x);
  twin_sampler_destroy(plain);
  twin_sampler_destroy(pen);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validation_names_field),
      cmocka_unit_test(test_greedy_is_argmax),
      cmocka_unit_test(test_seed_reproduces),
      cmocka_unit_test(test_topk1_and_tiny_topp_are_greedy),
      cmocka_unit_test(test_min_p_filters),
      cmocka_unit_test(test_penalty_amounts),
      cmocka_unit_test(test_penalties_steer_greedy_without_touching_caller),
      cmocka_unit_test(test_temperature_one_matches_softmax),
      cmocka_unit_test(test_temperature_half_squares_probabilities),
      cmocka_unit_test(test_top_k_and_top_p_distributions),
      cmocka_unit_test(test_large_vocab_nucleus),
      cmocka_unit_test(test_logprobs_are_raw),
      cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_memory_stays_small),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
