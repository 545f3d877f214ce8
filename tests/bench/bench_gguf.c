/* tests/bench/bench_gguf.c — bench-gguf: prefill and decode speed of a model (a .gguf file or
 * a model directory) on the CPU backend, measured the way llama-bench measures them, so the two
 * can be printed side by side: prefill = one forward over P prompt tokens (tokens/s = P / time);
 * decode = N forwards of one token each, starting from an empty context (tokens/s = N / time).
 * Each is run --repeat times on a fresh sequence; prints the median, min and max, then one
 * machine-readable line: "bench-gguf prefill_tps=<median> decode_tps=<median> ...".
 *   bench-gguf --model PATH [--threads N] [--prompt P] [--gen N] [--repeat R] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "llm-svc/engine/backend.h"
#include "llm-svc/model/model.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* One sequence in blocks num_blocks-1, num_blocks-2, ... fed n tokens from position start. */
static int forward(twin_backend *be, const int32_t *tokens, int n, int start, int32_t *table,
                   int max_blocks, float *logits, twin_err *err) {
  int32_t positions[4096];
  for (int i = 0; i < n; i++) positions[i] = start + i;
  int32_t seq_start[2] = {0, n}, seq_len[1] = {start + n};
  twin_batch batch = {.n_tokens = n, .n_seqs = 1, .tokens = tokens, .positions = positions,
                      .seq_start = seq_start, .seq_len = seq_len, .block_tables = table,
                      .max_blocks = max_blocks, .all_logits = 0};
  return twin_backend_forward(be, &batch, logits, err);
}

int main(int argc, char **argv) {
  static const struct option options[] = {
      {"model", required_argument, NULL, 'm'},  {"threads", required_argument, NULL, 't'},
      {"prompt", required_argument, NULL, 'p'}, {"gen", required_argument, NULL, 'n'},
      {"repeat", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0},
  };
  const char *model_path = NULL;
  int threads = 0, prompt = 128, gen = 64, repeat = 3, opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
      case 'm': model_path = optarg; break;
      case 't': threads = atoi(optarg); break;
      case 'p': prompt = atoi(optarg); break;
      case 'n': gen = atoi(optarg); break;
      case 'r': repeat = atoi(optarg); break;
      default: model_path = NULL; break;
    }
  }
  if (!model_path || prompt < 1 || prompt > 4096 || gen < 1 || repeat < 1 || repeat > 100) {
    fprintf(stderr, "usage: bench-gguf --model PATH [--threads N] [--prompt P (<= 4096)] "
                    "[--gen N] [--repeat R]\n");
    return 2;
  }
  twin_err err = {0};
  twin_model *m = NULL;
  twin_backend *be = NULL;
  int rc = twin_model_open(model_path, NULL, &m, &err);
  const int max_len = (prompt > gen ? prompt : gen) + 1;
  const int max_blocks = max_len / TWIN_KV_BLOCK_SIZE + 2;
  if (rc == 0) {
    const twin_model_config *c = &m->cfg;
    twin_backend_opts opts = {
        .kv_bytes = (size_t)max_blocks * c->n_layers * 2 * TWIN_KV_BLOCK_SIZE * c->n_kv_heads *
                    c->head_dim * sizeof(float),
        .max_tokens_per_step = prompt, .max_seqs = 1, .threads = threads};
    double t0 = now_s();
    rc = twin_backend_cpu_create(c, m->weights, &opts, &be, &err);
    if (rc == 0) fprintf(stderr, "loaded in %.2f s, weights %s\n", now_s() - t0, be->weights_dtype);
  }
  if (rc) {
    fprintf(stderr, "bench-gguf: %s\n", err.msg);
    twin_model_destroy(m);
    return 1;
  }
  int32_t *table = malloc((size_t)max_blocks * sizeof *table);
  for (int i = 0; i < max_blocks; i++) table[i] = be->num_blocks - 1 - i;
  int32_t *tokens = malloc((size_t)prompt * sizeof *tokens);
  uint64_t lcg = 7;
  for (int i = 0; i < prompt; i++) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    tokens[i] = (int32_t)((lcg >> 33) % (uint64_t)m->cfg.vocab_size);
  }
  float *logits = malloc((size_t)m->cfg.vocab_size * sizeof *logits);
  double *pp = calloc((size_t)repeat, sizeof *pp), *tg = calloc((size_t)repeat, sizeof *tg);

  /* warm-up: one short step so page faults and thread start-up are not timed */
  rc = forward(be, tokens, prompt < 8 ? prompt : 8, 0, table, max_blocks, logits, &err);
  for (int r = 0; rc == 0 && r < repeat; r++) {
    double t0 = now_s();
    rc = forward(be, tokens, prompt, 0, table, max_blocks, logits, &err);
    pp[r] = prompt / (now_s() - t0);
    int32_t next = tokens[0];
    t0 = now_s();
    for (int i = 0; rc == 0 && i < gen; i++) {
      rc = forward(be, &next, 1, i, table, max_blocks, logits, &err);
      next = (int32_t)((next + 1) % m->cfg.vocab_size);
    }
    tg[r] = gen / (now_s() - t0);
  }
  if (rc == 0) {
    qsort(pp, (size_t)repeat, sizeof *pp, compare_double);
    qsort(tg, (size_t)repeat, sizeof *tg, compare_double);
    printf("model %s, %d threads, kernels %s\n", m->name, threads,
           be->weights_dtype);
    printf("prefill %d tokens: %.1f tokens/s (min %.1f, max %.1f, %d runs)\n", prompt,
           pp[repeat / 2], pp[0], pp[repeat - 1], repeat);
    printf("decode %d tokens: %.1f tokens/s (min %.1f, max %.1f, %d runs)\n", gen,
           tg[repeat / 2], tg[0], tg[repeat - 1], repeat);
    printf("bench-gguf prefill_tps=%.2f prefill_min=%.2f prefill_max=%.2f decode_tps=%.2f "
           "decode_min=%.2f decode_max=%.2f\n", pp[repeat / 2], pp[0], pp[repeat - 1],
           tg[repeat / 2], tg[0], tg[repeat - 1]);
  } else {
    fprintf(stderr, "bench-gguf: %s\n", err.msg);
  }
  free(pp);
  free(tg);
  free(table);
  free(tokens);
  free(logits);
  twin_backend_destroy(be);
  twin_model_destroy(m);
  return rc ? 1 : 0;
}
