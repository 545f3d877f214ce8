/* tests/bench/engine_bench.c — the offline engine's throughput: N concurrent requests of P
 * random prompt tokens and M new tokens each (greedy, EOS ignored) submitted at once to the
 * engine in-process, no gRPC. Prints output tokens/s, TTFT p50/p99 and the step count.
 * Usage: engine-bench --model DIR [--backend cpu|cuda] [--batch N] [--prompt-len P] [--new M]
 *                     [--kv-cache BYTES] [--threads T] [--rounds R] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "llm-svc/engine/engine.h"
#include "llm-svc/model/model.h"

typedef struct bench_state {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int64_t t_submit_us;
  double *ttft_ms;   /* [n] */
  int next_ttft;
} bench_state;

static void on_event(void *user, const twin_gen_event *ev) {
  bench_state *b = user;
  if (ev->finish == TWIN_FINISH_NONE) return;
  pthread_mutex_lock(&b->mu);
  b->ttft_ms[b->next_ttft++] = ev->ttft_ms;
  b->done++;
  pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *model_dir = NULL, *backend_name = "cpu";
  int batch = 16, prompt_len = 128, n_new = 128, threads = 0, rounds = 1;
  size_t kv_bytes = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) break;
    if (!strcmp(a, "--model")) model_dir = v;
    else if (!strcmp(a, "--backend")) backend_name = v;
    else if (!strcmp(a, "--batch")) batch = atoi(v);
    else if (!strcmp(a, "--prompt-len")) prompt_len = atoi(v);
    else if (!strcmp(a, "--new")) n_new = atoi(v);
    else if (!strcmp(a, "--threads")) threads = atoi(v);
    else if (!strcmp(a, "--rounds")) rounds = atoi(v);
    else if (!strcmp(a, "--kv-cache")) kv_bytes = (size_t)strtoull(v, NULL, 10);
    else {
      fprintf(stderr, "engine-bench: unknown flag %s\n", a);
      return 2;
    }
    i++;
  }
  if (!model_dir) {
    fprintf(stderr, "usage: engine-bench --model DIR [--backend cpu|cuda] [--batch N] [--prompt-len P] [--new M]\n");
    return 2;
  }
  twin_log_init("engine-bench", TWIN_LOG_WARN, 0);
  twin_err err;
  twin_model *m;
  if (twin_model_open(model_dir, NULL, &m, &err)) {
    fprintf(stderr, "engine-bench: %s\n", err.msg);
    return 1;
  }
  twin_backend_opts bo = {.kv_bytes = kv_bytes, .kv_fraction = kv_bytes ? 0 : 0.3,
                          .max_tokens_per_step = prompt_len > 512 ? prompt_len : 512,
                          .max_seqs = batch, .threads = threads};
  twin_backend *be = NULL;
  int rc;
  if (!strcmp(backend_name, "cuda")) {
#ifdef TWIN_HAVE_CUDA
    bo.max_tokens_per_step = prompt_len * batch < 8192 ? (prompt_len * batch > 512 ? prompt_len * batch : 512) : 8192;
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
  twin_engine_opts eo = {.max_batch = batch, .max_queue = batch * 2, .max_tokens_per_step = bo.max_tokens_per_step,
                         .max_context = prompt_len + n_new + 16};
  twin_engine *e;
  if (twin_engine_create(be, m->tok, m->eos_ids, m->n_eos, &eo, &e, &err)) {
    fprintf(stderr, "engine-bench: %s\n", err.msg);
    return 1;
  }
  int32_t *prompt = malloc((size_t)prompt_len * sizeof *prompt);
  uint64_t seed = 42;
  bench_state b = {.ttft_ms = malloc((size_t)batch * sizeof(double))};
  pthread_mutex_init(&b.mu, NULL);
  pthread_cond_init(&b.cv, NULL);
  for (int round = 0; round <= rounds; round++) { /* round 0 warms up with a smaller load */
    int n = round == 0 ? (batch < 2 ? 1 : 2) : batch;
    b.done = 0;
    b.next_ttft = 0;
    int64_t t0 = twin_time_mono_us();
    for (int r = 0; r < n; r++) {
      for (int i = 0; i < prompt_len; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        prompt[i] = (int32_t)((seed >> 33) % (uint64_t)m->cfg.vocab_size);
      }
      twin_gen_request g = {.prompt = prompt, .n_prompt = prompt_len, .max_new_tokens = round == 0 ? 4 : n_new,
                            .ignore_eos = 1, .callback = on_event, .user = &b};
      twin_sampling_params_default(&g.sampling);
      g.sampling.temperature = 0;
      if (twin_engine_submit(e, &g, NULL, &err)) {
        fprintf(stderr, "engine-bench: %s\n", err.msg);
        return 1;
      }
    }
    pthread_mutex_lock(&b.mu);
    while (b.done < n) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    double dt = (twin_time_mono_us() - t0) / 1e6;
    if (round == 0) continue;
    qsort(b.ttft_ms, (size_t)n, sizeof(double), cmp_d);
    twin_engine_stats st;
    twin_engine_get_stats(e, &st);
    printf("offline engine (%s, %s): batch %d, prompt %d, new %d: %.0f output tok/s, %.2f s, "
           "ttft p50 %.1f ms p99 %.1f ms, steps %llu\n",
           be->name, m->name, n, prompt_len, n_new, (double)n * n_new / dt, dt, b.ttft_ms[n / 2],
           b.ttft_ms[(int)((n - 1) * 0.99)], (unsigned long long)st.steps);
  }
  twin_engine_destroy(e);
  twin_backend_destroy(be);
  twin_model_destroy(m);
  free(prompt);
  free(b.ttft_ms);
  return 0;
}
