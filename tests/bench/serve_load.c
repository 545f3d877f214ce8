/* tests/bench/serve_load.c — a load generator for llm-svc over gRPC (our C client): N client
 * threads each send Generate requests back to back (random token-id prompts of P tokens, M new
 * tokens, greedy, EOS ignored) until R requests are done or the time bound passes. Prints output
 * tokens/s, time to first token p50/p99 and inter-token latency p50/p99 (per token: the gap
 * between two messages divided among the tokens of the later one).
 * Usage: serve-load TARGET [--concurrency N] [--requests R] [--prompt-len P] [--new M]
 *                          [--vocab V] [--max-seconds S] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rpc/client.h"
#include "common/util.h"
#include "proto/llm.pb-c.h"

typedef struct load {
  twin_rpc_channel *ch;
  int prompt_len, n_new, vocab;
  int64_t deadline_us;
  pthread_mutex_t mu;
  int requests_left;
  long tokens, failures;
  double *ttft;  int n_ttft, cap_ttft;   /* ms */
  double *itl;   int n_itl, cap_itl;     /* ms */
} load;

static void push(double **arr, int *n, int *cap, double v) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 1024;
    *arr = realloc(*arr, (size_t)*cap * sizeof **arr);
  }
  (*arr)[(*n)++] = v;
}

static void *client_main(void *arg) {
  load *L = arg;
  uint64_t seed = (uint64_t)(uintptr_t)&seed;
  int32_t *ids = malloc((size_t)L->prompt_len * sizeof *ids);
  for (;;) {
    pthread_mutex_lock(&L->mu);
    int go = L->requests_left > 0 && twin_time_mono_us() < L->deadline_us;
    if (go) L->requests_left--;
    pthread_mutex_unlock(&L->mu);
    if (!go) break;
    for (int i = 0; i < L->prompt_len; i++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      ids[i] = (int32_t)((seed >> 33) % (uint64_t)L->vocab);
    }
    Twin__Llm__V1__TokenIds t = TWIN__LLM__V1__TOKEN_IDS__INIT;
    t.n_ids = (size_t)L->prompt_len;
    t.ids = ids;
    Twin__Llm__V1__SamplingParams sp = TWIN__LLM__V1__SAMPLING_PARAMS__INIT;
    sp.temperature_opt_case = TWIN__LLM__V1__SAMPLING_PARAMS__TEMPERATURE_OPT_TEMPERATURE;
    sp.temperature = 0;
    Twin__Llm__V1__GenerateRequest req = TWIN__LLM__V1__GENERATE_REQUEST__INIT;
    req.input_case = TWIN__LLM__V1__GENERATE_REQUEST__INPUT_TOKEN_IDS;
    req.token_ids = &t;
    req.sampling = &sp;
    req.max_new_tokens = (uint32_t)L->n_new;
    req.ignore_eos = 1;
    size_t n = twin__llm__v1__generate_request__get_packed_size(&req);
    uint8_t *buf = malloc(n);
    twin__llm__v1__generate_request__pack(&req, buf);
    int64_t t0 = twin_time_mono_us(), last = 0;
    twin_rpc_stream *s;
    twin_err err;
    int rc = twin_rpc_stream_start(L->ch, "/twin.llm.v1.LlmService/Generate", buf, n, 600000, NULL, 0, &s, &err);
    free(buf);
    if (rc) {
      pthread_mutex_lock(&L->mu);
      L->failures++;
      pthread_mutex_unlock(&L->mu);
      continue;
    }
    long got = 0;
    double local_itl[4096];
    int n_local = 0;
    double ttft = -1;
    uint8_t *msg;
    size_t mlen;
    while (twin_rpc_stream_next(s, &msg, &mlen) == 1) {
      Twin__Llm__V1__GenerateResponse *r = twin__llm__v1__generate_response__unpack(NULL, mlen, msg);
      free(msg);
      if (!r) continue;
      int64_t now = twin_time_mono_us();
      size_t k = r->n_token_ids;
      if (k) {
        if (ttft < 0) ttft = (now - t0) / 1e3;
        else
          for (size_t j = 0; j < k && n_local < 4096; j++) local_itl[n_local++] = (now - last) / 1e3 / (double)k;
        last = now;
        got += (long)k;
      }
      twin__llm__v1__generate_response__free_unpacked(r, NULL);
    }
    int ok = twin_rpc_stream_status(s)->code == TWIN_RPC_OK;
    twin_rpc_stream_destroy(s);
    pthread_mutex_lock(&L->mu);
    if (!ok) L->failures++;
    L->tokens += got;
    if (ttft >= 0) push(&L->ttft, &L->n_ttft, &L->cap_ttft, ttft);
    for (int j = 0; j < n_local; j++) push(&L->itl, &L->n_itl, &L->cap_itl, local_itl[j]);
    pthread_mutex_unlock(&L->mu);
  }
  free(ids);
  return NULL;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(double *v, int n, double p) {
  if (n == 0) return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return v[(int)((n - 1) * p)];
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: serve-load TARGET [--concurrency N] [--requests R] [--prompt-len P] [--new M] [--vocab V] [--max-seconds S]\n");
    return 2;
  }
  int conc = 16, requests = 64, max_s = 300;
  load L = {.prompt_len = 128, .n_new = 128, .vocab = 1000};
  for (int i = 2; i + 1 < argc; i += 2) {
    const char *a = argv[i];
    int v = atoi(argv[i + 1]);
    if (!strcmp(a, "--concurrency")) conc = v;
    else if (!strcmp(a, "--requests")) requests = v;
    else if (!strcmp(a, "--prompt-len")) L.prompt_len = v;
    else if (!strcmp(a, "--new")) L.n_new = v;
    else if (!strcmp(a, "--vocab")) L.vocab = v;
    else if (!strcmp(a, "--max-seconds")) max_s = v;
    else {
      fprintf(stderr, "serve-load: unknown flag %s\n", a);
      return 2;
    }
  }
  twin_err err;
  if (twin_rpc_channel_create(argv[1], NULL, &L.ch, &err)) {
    fprintf(stderr, "serve-load: %s\n", err.msg);
    return 1;
  }
  if (twin_rpc_channel_wait_ready(L.ch, 10000)) {
    fprintf(stderr, "serve-load: %s not reachable\n", argv[1]);
    return 1;
  }
  pthread_mutex_init(&L.mu, NULL);
  L.requests_left = requests;
  L.deadline_us = twin_time_mono_us() + (int64_t)max_s * 1000000;
  pthread_t *th = malloc((size_t)conc * sizeof *th);
  int64_t t0 = twin_time_mono_us();
  for (int i = 0; i < conc; i++) pthread_create(&th[i], NULL, client_main, &L);
  for (int i = 0; i < conc; i++) pthread_join(th[i], NULL);
  double dt = (twin_time_mono_us() - t0) / 1e6;
  printf("served over gRPC: concurrency %d, %d requests (prompt %d, new %d), %ld failed: "
         "%.0f output tok/s, %.2f s, ttft p50 %.1f ms p99 %.1f ms, itl p50 %.2f ms p99 %.2f ms\n",
         conc, requests - L.requests_left, L.prompt_len, L.n_new, L.failures, L.tokens / dt, dt,
         pct(L.ttft, L.n_ttft, 0.5), pct(L.ttft, L.n_ttft, 0.99), pct(L.itl, L.n_itl, 0.5),
         pct(L.itl, L.n_itl, 0.99));
  free(L.ttft);
  free(L.itl);
  free(th);
  twin_rpc_channel_destroy(L.ch);
  return L.failures ? 1 : 0;
}
