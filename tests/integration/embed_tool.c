/* tests/integration/embed_tool.c — embed-tool: loads a sentence-embedding model directory,
 * reads a JSON array of texts on stdin and prints, as one JSON object on stdout, each text's
 * token ids and vector. The Python parity test drives it. --batch N embeds N texts per call;
 * --threads N runs N threads that each embed every text at the same time and prints each
 * thread's vectors, to show that concurrent calls agree; --ids-only prints the token ids alone.
 * Errors go to stderr, exit status 1. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/embedder.h"

typedef struct embed_job {
  const twin_embedder *embedder;
  const char *const *texts; /* [n] borrowed */
  size_t n, batch;
  float *vectors;           /* [n][dim] owned by the caller */
  int rc;
  twin_err err;
} embed_job;

static void *run_job(void *arg) {
  embed_job *job = arg;
  size_t dim = (size_t)twin_embedder_dim(job->embedder);
  for (size_t i = 0; i < job->n && !job->rc; i += job->batch) {
    size_t count = job->n - i < job->batch ? job->n - i : job->batch;
    job->rc = twin_embedder_embed(job->embedder, job->texts + i, count, job->vectors + i * dim, &job->err);
  }
  return NULL;
}

static char *read_stdin(size_t *len) {
  size_t cap = 1 << 16;
  char *buf = malloc(cap);
  *len = 0;
  while (buf) {
    if (*len == cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) { free(buf); return NULL; }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + *len, 1, cap - *len, stdin);
    *len += got;
    if (got == 0) break;
  }
  return buf;
}

static void print_vectors(const float *v, size_t n, size_t dim) {
  putchar('[');
  for (size_t i = 0; i < n; i++) {
    printf("%s[", i ? "," : "");
    for (size_t j = 0; j < dim; j++) printf("%s%.9g", j ? "," : "", v[i * dim + j]);
    putchar(']');
  }
  putchar(']');
}

int main(int argc, char **argv) {
  const char *model_dir = NULL;
  size_t batch = 0;
  int n_threads = 1, ids_only = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) batch = (size_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) n_threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--ids-only") == 0) ids_only = 1;
    else if (argv[i][0] != '-' && !model_dir) model_dir = argv[i];
    else { fprintf(stderr, "embed-tool: unknown argument %s\n", argv[i]); return 2; }
  }
  if (!model_dir || n_threads < 1 || n_threads > 64) {
    fprintf(stderr, "usage: embed-tool MODEL_DIR [--batch N] [--threads N] [--ids-only] < texts.json\n");
    return 2;
  }
  size_t len = 0;
  char *input = read_stdin(&len);
  cJSON *root = input ? cJSON_ParseWithLength(input, len) : NULL;
  free(input);
  if (!cJSON_IsArray(root)) {
    fprintf(stderr, "embed-tool: stdin is not a JSON array of strings\n");
    cJSON_Delete(root);
    return 1;
  }
  size_t n = (size_t)cJSON_GetArraySize(root);
  const char **texts = calloc(n ? n : 1, sizeof *texts);
  size_t k = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, root) {
    if (!cJSON_IsString(it)) {
      fprintf(stderr, "embed-tool: element %zu is not a string\n", k);
      free(texts);
      cJSON_Delete(root);
      return 1;
    }
    texts[k++] = it->valuestring;
  }

  twin_err err = {0};
  twin_embedder *e = NULL;
  if (twin_embedder_open(&e, model_dir, &err) != 0) {
    fprintf(stderr, "embed-tool: %s\n", err.msg);
    free(texts);
    cJSON_Delete(root);
    return 1;
  }
  size_t dim = (size_t)twin_embedder_dim(e);
  int max_len = twin_embedder_max_len(e);
  embed_job *jobs = calloc((size_t)n_threads, sizeof *jobs);
  pthread_t *threads = calloc((size_t)n_threads, sizeof *threads);
  for (int t = 0; t < n_threads; t++) {
    jobs[t] = (embed_job){.embedder = e, .texts = texts, .n = ids_only ? 0 : n, .batch = batch ? batch : (n ? n : 1)};
    jobs[t].vectors = malloc((n ? n : 1) * dim * sizeof(float));
    pthread_create(&threads[t], NULL, run_job, &jobs[t]);
  }
  int failed = 0;
  for (int t = 0; t < n_threads; t++) {
    pthread_join(threads[t], NULL);
    if (jobs[t].rc && !failed) { fprintf(stderr, "embed-tool: %s\n", jobs[t].err.msg); failed = 1; }
  }
  if (!failed) {
    printf("{\"dim\":%zu,\"max_len\":%d,\"ids\":[", dim, max_len);
    int32_t *ids = malloc((size_t)max_len * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
      int n_ids = 0;
      if (twin_wordpiece_encode(twin_embedder_tokenizer(e), texts[i], strlen(texts[i]), max_len, ids, &n_ids, &err) != 0) {
        fprintf(stderr, "embed-tool: text %zu: %s\n", i, err.msg);
        failed = 1;
        break;
      }
      printf("%s[", i ? "," : "");
      for (int j = 0; j < n_ids; j++) printf("%s%d", j ? "," : "", ids[j]);
      putchar(']');
    }
    free(ids);
    if (ids_only) {
      printf("]}\n");
      goto done;
    }
    printf("],\"vectors\":");
    print_vectors(jobs[0].vectors, n, dim);
    printf(",\"thread_vectors\":[");
    for (int t = 1; t < n_threads; t++) {
      if (t > 1) putchar(',');
      print_vectors(jobs[t].vectors, n, dim);
    }
    printf("]}\n");
  }
done:
  for (int t = 0; t < n_threads; t++) free(jobs[t].vectors);
  free(jobs);
  free(threads);
  free(texts);
  cJSON_Delete(root);
  twin_embedder_destroy(e);
  return failed;
}
