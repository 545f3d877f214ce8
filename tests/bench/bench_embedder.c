/* tests/bench/bench_embedder.c — bench-embedder: throughput of the CPU sentence embedder.
 * Embeds batches of 32 sentences of 20 words (made from a fixed word list, so runs compare) and
 * prints sentences/s, tokens/s, wall and CPU ms per batch; --batch and --words change the shape,
 * --iters the number of timed batches. Usage: bench-embedder [MODEL_DIR] [--batch N]
 * [--words N] [--iters N]   (MODEL_DIR defaults to $TWIN_EMBEDDER_DIR, then models/embedder). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "business-svc/rag/embedder.h"

static const char *const WORDS[] = {
  "the", "model", "retrieves", "relevant", "passages", "from", "a", "large", "collection", "of",
  "documents", "and", "ranks", "them", "by", "similarity", "to", "each", "query", "before",
  "writing", "an", "answer", "that", "cites", "its", "sources", "while", "engineers", "measure",
  "latency", "throughput", "memory", "use", "on", "small", "machines", "with", "two", "cores",
};

static double clock_s(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

int main(int argc, char **argv) {
  const char *model_dir = getenv("TWIN_EMBEDDER_DIR");
  int batch = 32, words = 20, iters = 20;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) batch = atoi(argv[++i]);
    else if (strcmp(argv[i], "--words") == 0 && i + 1 < argc) words = atoi(argv[++i]);
    else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) iters = atoi(argv[++i]);
    else if (argv[i][0] != '-') model_dir = argv[i];
    else { fprintf(stderr, "bench-embedder: unknown argument %s\n", argv[i]); return 2; }
  }
  if (!model_dir) model_dir = "models/embedder";
  if (batch < 1 || words < 1 || iters < 1) { fprintf(stderr, "bench-embedder: sizes must be >= 1\n"); return 2; }

  twin_err err = {0};
  twin_embedder *e = NULL;
  double t0 = now_s();
  if (twin_embedder_open(&e, model_dir, &err) != 0) {
    fprintf(stderr, "bench-embedder: %s (fetch it with deploy/fetch-embedder.sh)\n", err.msg);
    return 1;
  }
  double load_s = now_s() - t0;

  size_t n_words = sizeof WORDS / sizeof WORDS[0];
  char **texts = calloc((size_t)batch, sizeof *texts);
  long tokens = 0;
  int32_t *ids = malloc((size_t)twin_embedder_max_len(e) * sizeof *ids);
  for (int s = 0; s < batch; s++) {
    texts[s] = calloc((size_t)words, 16);
    for (int w = 0; w < words; w++) {
      if (w) strcat(texts[s], " ");
      strcat(texts[s], WORDS[((size_t)s * 7 + (size_t)w * 13 + (size_t)(s * w)) % n_words]);
    }
    strcat(texts[s], ".");
    int n = 0;
    twin_wordpiece_encode(twin_embedder_tokenizer(e), texts[s], strlen(texts[s]), twin_embedder_max_len(e), ids, &n, NULL);
    tokens += n;
  }
  free(ids);
  float *out = malloc((size_t)batch * (size_t)twin_embedder_dim(e) * sizeof(float));

  if (twin_embedder_embed(e, (const char *const *)texts, (size_t)batch, out, &err) != 0) { /* warm-up */
    fprintf(stderr, "bench-embedder: %s\n", err.msg);
    return 1;
  }
  double best = 1e30, total = 0.0, cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
  for (int it = 0; it < iters; it++) {
    double start = now_s();
    twin_embedder_embed(e, (const char *const *)texts, (size_t)batch, out, NULL);
    double dt = now_s() - start;
    total += dt;
    if (dt < best) best = dt;
  }
  double cpu = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0) / iters;
  double mean = total / iters;
  printf("bench-embedder: model %s (dim %d), load %.2f s, OpenBLAS threads %d\n", model_dir,
         twin_embedder_dim(e), load_s, openblas_get_num_threads());
  printf("bench-embedder: batch %d sentences x %d words = %ld tokens, %d timed batches\n", batch, words, tokens, iters);
  printf("bench-embedder: mean %.1f ms/batch (best %.1f), %.1f sentences/s, %.0f tokens/s\n", mean * 1e3,
         best * 1e3, batch / mean, tokens / mean);
  printf("bench-embedder: %.1f CPU ms/batch (all threads, spinning included), %.1f sentences per CPU second\n",
         cpu * 1e3, batch / cpu);

  for (int s = 0; s < batch; s++) free(texts[s]);
  free(texts);
  free(out);
  twin_embedder_destroy(e);
  return 0;
}
