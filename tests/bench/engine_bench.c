/* tests/bench/engine_bench.c — the offline engine's throughput: N concurrent requests of P
 * random prompt tokens and M new tokens each (greedy, EOS ignored) submitted at once to the
 * engine in-process, no gRPC. --batch takes a list (1,16,64): one model load and one engine
 * serve every size, each after a warm-up round of its own size (CUDA graphs of its buckets
 * captured). Prints, per size, output tokens/s (prompt processing included), decode tokens/s
 * (from the moment every request has its first token), the decode step time, TTFT p50/p99 and
 * the step count; with --ttft-prompt T, also the time to first token of single requests of T
 * tokens (fresh random prompts, so the prefix cache never helps). Each figure also goes out as
 * one "RESULT key=value ..." line for scripts (tests/bench/gpu/gpu_bench.py).
 * Usage: engine-bench --model DIR [--backend cpu|cuda] [--batch N[,N...]] [--prompt-len P]
 *                     [--new M] [--kv-cache BYTES] [--threads T] [--rounds R]
 *                     [--ttft-prompt T] [--ttft-reps R] [--host-sampling] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "llm-svc/engine/engine.h"
#include "llm-svc/model/model.h"

#define MAX_SIZES 16

typedef struct bench_state {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  double *ttft_ms;      /* [n] */
  int next_ttft;
  int64_t *tok_time_us; /* [n * new] when each token arrived */
  int n_tok, cap_tok;
  int64_t last_first_us; /* the latest first token of the round */
  int64_t end_us;
} bench_state;

typedef struct bench_request {
  bench_state *b;
  int got_first;
} bench_request;

static void on_event(void *user, const twin_gen_event *ev) {
  bench_request *r = user;
  bench_state *b = r->b;
  int64_t now = twin_time_mono_us();
  pthread_mutex_lock(&b->mu);
  for (int i = 0; i < ev->n_tokens && b->n_tok < b->cap_tok; i++) b->tok_time_us[b->n_tok++] = now;
  if (ev->n_tokens && !r->got_first) {
    r->got_first = 1;
    if (now > b->last_first_us) b->last_first_us = now;
  }
  if (ev->finish != TWIN_FINISH_NONE) {
    b->ttft_ms[b->next_ttft++] = ev->ttft_ms;
    b->done++;
    b->end_us = now;
    pthread_cond_signal(&b->cv);
  }
  pthread_mutex_unlock(&b->mu);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void random_prompt(int32_t *prompt, int n, int vocab, uint64_t *seed) {
  for (int i = 0; i < n; i++) {
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    prompt[i] = (int32_t)((*seed >> 33) % (uint64_t)vocab);
  }
}

/* Submits n requests at once and waits for all; fills b. Returns 0 or 1 (message printed). */
static int run_round(twin_engine *e, bench_state *b, bench_request *reqs, int n, int prompt_len,
                     int n_new, int vocab, int32_t *prompt, uint64_t *seed) {
  b->done = 0;
  b->next_ttft = 0;
  b->n_tok = 0;
  b->last_first_us = 0;
  twin_err err;
  for (int r = 0; r < n; r++) {
    random_prompt(prompt, prompt_len, vocab, seed);
    reqs[r] = (bench_request){.b = b};
    twin_gen_request g = {.prompt = prompt, .n_prompt = prompt_len, .max_new_tokens = n_new,
                          .ignore_eos = 1, .callback = on_event, .user = &reqs[r]};
    twin_sampling_params_default(&g.sampling);
    g.sampling.temperature = 0;
    if (twin_engine_submit(e, &g, NULL, &err)) {
      fprintf(stderr, "engine-bench: %s\n", err.msg);
      return 1;
    }
  }
  pthread_mutex_lock(&b->mu);
  while (b->done < n) pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
  return 0;
}

static int parse_sizes(const char *s, int *sizes) {
  int n = 0;
  while (*s && n < MAX_SIZES) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 1 || v > 4096) return -1;
    sizes[n++] = (int)v;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return -1;
  }
  return n;
}

int main(int argc, char **argv) {
  const char *model_dir = NULL, *backend_name = "cpu", *batch_list = "16";
  int prompt_len = 128, n_new = 128, threads = 0, rounds = 1, ttft_prompt = 0, ttft_reps = 5;
  int host_sampling = 0;
  size_t kv_bytes = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--host-sampling")) {
      host_sampling = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "engine-bench: %s needs a value\n", a);
      return 2;
    }
    if (!strcmp(a, "--model")) model_dir = v;
    else if (!strcmp(a, "--backend")) backend_name = v;
    else if (!strcmp(a, "--batch")) batch_list = v;
    else if (!strcmp(a, "--prompt-len")) prompt_len = atoi(v);
    else if (!strcmp(a, "--new")) n_new = atoi(v);
    else if (!strcmp(a, "--threads")) threads = atoi(v);
    else if (!strcmp(a, "--rounds")) rounds = atoi(v);
    else if (!strcmp(a, "--kv-cache")) kv_bytes = (size_t)strtoull(v, NULL, 10);
    else if (!strcmp(a, "--ttft-prompt")) ttft_prompt = atoi(v);
    else if (!strcmp(a, "--ttft-reps")) ttft_reps = atoi(v);
    else {
      fprintf(stderr, "engine-bench: unknown flag %s\n", a);
      return 2;
    }
    i++;
  }
  int sizes[MAX_SIZES];
  int n_sizes = parse_sizes(batch_list, sizes);
  if (!model_dir || n_sizes <= 0 || prompt_len < 1 || n_new < 1 || ttft_prompt < 0 ||
      ttft_reps < 1 || rounds < 1) {
    fprintf(stderr, "usage: engine-bench --model DIR [--backend cpu|cuda] [--batch N[,N...]] "
                    "[--prompt-len P] [--new M] [--kv-cache BYTES] [--threads T] [--rounds R] "
                    "[--ttft-prompt T] [--ttft-reps R] [--host-sampling]\n");
    return 2;
  }
  int max_batch = 1;
  for (int i = 0; i < n_sizes; i++)
    if (sizes[i] > max_batch) max_batch = sizes[i];
  if (host_sampling) setenv("TWIN_DEVICE_SAMPLING", "0", 1);
  twin_log_init("engine-bench", TWIN_LOG_WARN, 0);
  twin_err err;
  twin_model *m;
  int64_t t_load = twin_time_mono_us();
  if (twin_model_open(model_dir, NULL, &m, &err)) {
    fprintf(stderr, "engine-bench: %s\n", err.msg);
    return 1;
  }
  twin_backend_opts bo = {.kv_bytes = kv_bytes, .kv_fraction = kv_bytes ? 0 : 0.3,
                          .max_tokens_per_step = prompt_len > 512 ? prompt_len : 512,
                          .max_seqs = max_batch, .threads = threads};
  if (bo.max_tokens_per_step < ttft_prompt) bo.max_tokens_per_step = ttft_prompt;
  twin_backend *be = NULL;
  int rc;
  if (!strcmp(backend_name, "cuda")) {
#ifdef TWIN_HAVE_CUDA
    long step = (long)prompt_len * max_batch;
    bo.max_tokens_per_step = step < 512 ? 512 : step > 8192 ? 8192 : (int)step;
    if (bo.max_tokens_per_step < ttft_prompt) bo.max_tokens_per_step = ttft_prompt;
    rc = twin_backend_cuda_create(&m->cfg, m->weights, &bo, &be, &err);
#else
    rc = twin_err_set(&err, TWIN_EUNSUPPORTED, "built without CUDA");
#endif
  } else {
    rc = twin_backend_cpu_create(&m->cfg, m->weights, &bo, &be, &err);
  }
  if (rc) {
    fprintf(stderr, "engine-bench: %s\n", err.msg);
    return 1;
  }
  if (ttft_prompt > be->max_tokens_per_step) {
    fprintf(stderr, "engine-bench: --ttft-prompt %d exceeds the backend's %d tokens a step\n",
            ttft_prompt, be->max_tokens_per_step);
    return 1;
  }
  printf("engine-bench: %s backend, %s (%s weights), loaded in %.1f s, %d KV blocks, %s sampling\n",
         be->name, m->name, be->weights_dtype, (twin_time_mono_us() - t_load) / 1e6,
         be->num_blocks, twin_backend_can_sample(be) && !host_sampling ? "device" : "host");
  int ctx = prompt_len + n_new > ttft_prompt + 1 ? prompt_len + n_new : ttft_prompt + 1;
  twin_engine_opts eo = {.max_batch = max_batch, .max_queue = max_batch * 2 + 8,
                         .max_tokens_per_step = bo.max_tokens_per_step, .max_context = ctx + 16};
  twin_engine *e;
  if (twin_engine_create(be, m->tok, m->eos_ids, m->n_eos, &eo, &e, &err)) {
    fprintf(stderr, "engine-bench: %s\n", err.msg);
    return 1;
  }
  int longest = prompt_len > ttft_prompt ? prompt_len : ttft_prompt;
  int32_t *prompt = malloc((size_t)longest * sizeof *prompt);
  uint64_t seed = 42;
  bench_state b = {.ttft_ms = malloc((size_t)max_batch * sizeof(double)),
                   .cap_tok = max_batch * n_new};
  b.tok_time_us = malloc((size_t)b.cap_tok * sizeof *b.tok_time_us);
  bench_request *reqs = calloc((size_t)max_batch, sizeof *reqs);
  pthread_mutex_init(&b.mu, NULL);
  pthread_cond_init(&b.cv, NULL);
  const int vocab = m->cfg.vocab_size;
  int failed = 0;

  for (int si = 0; si < n_sizes && !failed; si++) {
    const int n = sizes[si];
    /* warm-up at this size: its prefill shapes and decode buckets run once (graphs captured) */
    failed = run_round(e, &b, reqs, n, prompt_len, 4, vocab, prompt, &seed);
    for (int round = 0; round < rounds && !failed; round++) {
      twin_engine_stats st0, st1;
      twin_engine_get_stats(e, &st0);
      int64_t t0 = twin_time_mono_us();
      failed = run_round(e, &b, reqs, n, prompt_len, n_new, vocab, prompt, &seed);
      if (failed) break;
      twin_engine_get_stats(e, &st1);
      double dt = (b.end_us - t0) / 1e6;
      int after_first = 0; /* tokens that arrived after every request had its first */
      for (int k = 0; k < b.n_tok; k++) after_first += b.tok_time_us[k] > b.last_first_us;
      double decode_s = (b.end_us - b.last_first_us) / 1e6;
      double decode_tps = decode_s > 0 ? after_first / decode_s : 0;
      /* steps that decoded: the decode window holds n_new - 1 tokens of each sequence */
      double step_ms = n_new > 1 ? decode_s * 1e3 / (n_new - 1) : 0;
      qsort(b.ttft_ms, (size_t)n, sizeof(double), cmp_d);
      double p50 = b.ttft_ms[n / 2], p99 = b.ttft_ms[(int)((n - 1) * 0.99)];
      unsigned long long steps = (unsigned long long)(st1.steps - st0.steps);
      printf("offline engine (%s, %s): batch %d, prompt %d, new %d: %.0f output tok/s, %.0f decode "
             "tok/s (%.2f ms a step), %.2f s, ttft p50 %.1f ms p99 %.1f ms, steps %llu\n",
             be->name, m->name, n, prompt_len, n_new, (double)n * n_new / dt, decode_tps, step_ms,
             dt, p50, p99, steps);
      printf("RESULT engine batch=%d prompt=%d new=%d output_tok_s=%.1f decode_tok_s=%.1f "
             "step_ms=%.3f seconds=%.3f ttft_p50_ms=%.2f ttft_p99_ms=%.2f steps=%llu\n",
             n, prompt_len, n_new, (double)n * n_new / dt, decode_tps, step_ms, dt, p50, p99, steps);
      fflush(stdout);
    }
  }

  if (ttft_prompt > 0 && !failed) {
    double *t = malloc((size_t)ttft_reps * sizeof *t);
    for (int r = -1; r < ttft_reps && !failed; r++) { /* r = -1 warms up */
      failed = run_round(e, &b, reqs, 1, ttft_prompt, 1, vocab, prompt, &seed);
      if (r >= 0) t[r] = b.ttft_ms[0];
    }
    if (!failed) {
      qsort(t, (size_t)ttft_reps, sizeof *t, cmp_d);
      printf("time to first token (%s, %s): prompt %d, %d runs: p50 %.1f ms, min %.1f ms, max %.1f ms\n",
             be->name, m->name, ttft_prompt, ttft_reps, t[ttft_reps / 2], t[0], t[ttft_reps - 1]);
      printf("RESULT ttft prompt=%d runs=%d p50_ms=%.2f min_ms=%.2f max_ms=%.2f\n", ttft_prompt,
             ttft_reps, t[ttft_reps / 2], t[0], t[ttft_reps - 1]);
    }
    free(t);
  }
  twin_engine_destroy(e);
  twin_backend_destroy(be);
  twin_model_destroy(m);
  free(prompt);
  free(b.ttft_ms);
  free(b.tok_time_us);
  free(reqs);
  return failed;
}
