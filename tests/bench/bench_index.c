/* tests/bench/bench_index.c — bench-index: business-svc's vector index and feature pipeline.
 * Index: synthetic unit vectors (dim 384 by default, in clusters of about 100 around random
 * centroids, as embeddings of related texts are) at each size, exact and HNSW: build time,
 * single-query search latency p50/p99 without and with an author filter (1 of 4 authors), and
 * HNSW recall@k against the exact results. Ingestion (with --redis URL): synthetic articles
 * through clean -> chunk -> embed -> Redis, chunks per second, with the hashing encoder and,
 * given --encoder MODEL_DIR, the sentence embedder too; a second pass over the same documents
 * shows the cost of an ingest that finds everything unchanged. Prints figures, asserts nothing.
 * Usage: bench-index [--dim N] [--sizes 10000,100000] [--queries N] [--k N]
 *                    [--redis URL] [--docs N] [--encoder MODEL_DIR] [--skip-index] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/chunk_store.h"
#include "business-svc/rag/embedder.h"
#include "business-svc/rag/ingest.h"
#include "business-svc/rag/text_encoder.h"
#include "business-svc/rag/vector_index.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/util.h"

typedef struct rng { uint64_t s; } rng;
static uint64_t rng_next(rng *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}
static float rng_gauss(rng *r) {
  double u = ((double)(rng_next(r) >> 11) + 1.0) / 9007199254740993.0;
  double v = (double)(rng_next(r) >> 11) / 9007199254740992.0;
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void random_unit(rng *r, float *v, int dim) {
  double n = 0;
  for (int i = 0; i < dim; i++) {
    v[i] = rng_gauss(r);
    n += (double)v[i] * v[i];
  }
  for (int i = 0; i < dim; i++) v[i] = (float)(v[i] / sqrt(n));
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted[n]. */
static double percentile(const double *sorted, size_t n, double p) {
  size_t rank = (size_t)ceil(p / 100.0 * (double)n);
  if (rank < 1) rank = 1;
  return sorted[rank - 1];
}

static const char *const authors[] = {"alice", "bob", "carol", "dave"};

/* ============================================================================================
 * index
 * ========================================================================================== */

typedef struct search_run {
  double p50_ms, p99_ms;
  twin_index_hit *hits; /* [nq][k] */
} search_run;

static int time_searches(twin_vector_index *ix, const float *queries, size_t nq, int dim, size_t k,
                         const twin_index_filter *filter, search_run *out) {
  double *ms = malloc(nq * sizeof *ms);
  out->hits = calloc(nq * k, sizeof *out->hits);
  twin_err err = {0};
  for (size_t q = 0; q < nq; q++) {
    size_t n_hits = 0;
    int64_t t0 = twin_time_mono_ns();
    if (twin_vector_index_search(ix, queries + q * (size_t)dim, 1, k, filter, out->hits + q * k, &n_hits, &err)) {
      fprintf(stderr, "bench-index: %s\n", err.msg);
      free(ms);
      return -1;
    }
    ms[q] = (double)(twin_time_mono_ns() - t0) / 1e6;
  }
  qsort(ms, nq, sizeof *ms, cmp_double);
  out->p50_ms = percentile(ms, nq, 50);
  out->p99_ms = percentile(ms, nq, 99);
  free(ms);
  return 0;
}

static double recall(const search_run *exact, const search_run *approx, size_t nq, size_t k) {
  size_t found = 0;
  for (size_t q = 0; q < nq; q++)
    for (size_t i = 0; i < k; i++)
      for (size_t j = 0; j < k; j++)
        if (strcmp(exact->hits[q * k + i].chunk_id, approx->hits[q * k + j].chunk_id) == 0) {
          found++;
          break;
        }
  return (double)found / (double)(nq * k);
}

/* A unit vector near one of the centroids [n_centroids][dim]: real embeddings cluster by
 * topic, while vectors uniform on the sphere are all about equally far from each other (a case
 * where no index, and no retrieval, is meaningful). */
static void clustered_unit(rng *r, const float *centroids, size_t n_centroids, float *v, int dim) {
  const float *c = centroids + (rng_next(r) % n_centroids) * (size_t)dim;
  float sigma = 0.7f / sqrtf((float)dim); /* noise of norm ~0.7 around a unit centroid */
  double norm = 0;
  for (int i = 0; i < dim; i++) {
    v[i] = c[i] + sigma * rng_gauss(r);
    norm += (double)v[i] * v[i];
  }
  for (int i = 0; i < dim; i++) v[i] = (float)(v[i] / sqrt(norm));
}

static int bench_size(size_t n, int dim, size_t nq, size_t k) {
  rng r = {n * 7919 + 17};
  size_t n_centroids = n / 100 > 16 ? n / 100 : 16;
  float *centroids = malloc(n_centroids * (size_t)dim * sizeof *centroids);
  float *vectors = malloc(n * (size_t)dim * sizeof *vectors);
  twin_index_entry *entries = malloc(n * sizeof *entries);
  char (*ids)[24] = malloc(n * sizeof *ids);
  float *queries = malloc(nq * (size_t)dim * sizeof *queries);
  for (size_t c = 0; c < n_centroids; c++) random_unit(&r, centroids + c * (size_t)dim, dim);
  for (size_t i = 0; i < n; i++) {
    clustered_unit(&r, centroids, n_centroids, vectors + i * (size_t)dim, dim);
    snprintf(ids[i], sizeof ids[i], "c%zu", i);
    entries[i] = (twin_index_entry){ids[i], authors[rng_next(&r) % 4], (twin_doc_type)(rng_next(&r) % 3)};
  }
  for (size_t q = 0; q < nq; q++) clustered_unit(&r, centroids, n_centroids, queries + q * (size_t)dim, dim);
  const char *bob[] = {"bob"};
  twin_index_filter by_author = {bob, 1, 0};
  search_run runs[2][2];
  for (int kind = 0; kind < 2; kind++) {
    twin_vector_index_options o = {.dim = dim, .kind = kind ? TWIN_INDEX_HNSW : TWIN_INDEX_EXACT};
    twin_vector_index *ix = NULL;
    twin_err err = {0};
    if (twin_vector_index_create(&ix, &o, &err)) {
      fprintf(stderr, "bench-index: %s\n", err.msg);
      return -1;
    }
    int64_t t0 = twin_time_mono_ms();
    for (size_t i = 0; i < n; i += 10000) {
      size_t m = n - i < 10000 ? n - i : 10000;
      if (twin_vector_index_add(ix, entries + i, vectors + i * (size_t)dim, m, NULL, &err)) {
        fprintf(stderr, "bench-index: %s\n", err.msg);
        return -1;
      }
    }
    double build_s = (double)(twin_time_mono_ms() - t0) / 1000.0;
    if (time_searches(ix, queries, nq, dim, k, NULL, &runs[kind][0]) ||
        time_searches(ix, queries, nq, dim, k, &by_author, &runs[kind][1]))
      return -1;
    printf("%-6s n=%-7zu dim=%d  build %7.2f s  search k=%zu: p50 %7.3f ms  p99 %7.3f ms  |  "
           "author filter (1/4): p50 %7.3f ms  p99 %7.3f ms",
           kind ? "hnsw" : "exact", n, dim, build_s, k, runs[kind][0].p50_ms, runs[kind][0].p99_ms,
           runs[kind][1].p50_ms, runs[kind][1].p99_ms);
    if (kind)
      printf("  |  recall@%zu %.3f, filtered %.3f", k, recall(&runs[0][0], &runs[1][0], nq, k),
             recall(&runs[0][1], &runs[1][1], nq, k));
    printf("\n");
    fflush(stdout);
    twin_vector_index_destroy(ix);
  }
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++) free(runs[a][b].hits);
  free(centroids);
  free(vectors);
  free(entries);
  free(ids);
  free(queries);
  return 0;
}

/* ============================================================================================
 * ingestion
 * ========================================================================================== */

static const char *const words[] = {
    "cache", "block", "token", "model", "layer", "vector", "index", "query", "stream", "redis",
    "batch", "prompt", "kernel", "memory", "latency", "replica", "chunk", "document", "author",
    "search", "graph", "filter", "server", "client", "thread", "request", "answer", "question",
    "the", "a", "of", "and", "to", "in", "is", "for", "with", "on", "that", "by"};

static twin_document *make_documents(size_t n_docs, uint64_t seed) {
  twin_document *docs = calloc(n_docs, sizeof *docs);
  rng r = {seed};
  for (size_t d = 0; d < n_docs; d++) {
    twin_buf b;
    twin_buf_init(&b);
    twin_buf_printf(&b, "# Synthetic document %zu\n\n", d);
    for (int p = 0; p < 8; p++) {
      for (int s = 0; s < 5; s++) {
        int nw = 8 + (int)(rng_next(&r) % 14);
        for (int w = 0; w < nw; w++)
          twin_buf_printf(&b, "%s%s", w ? " " : (s ? " " : ""), words[rng_next(&r) % (sizeof words / sizeof *words)]);
        twin_buf_printf(&b, " %zu.", rng_next(&r) % 1000);
      }
      twin_buf_puts(&b, "\n\n");
    }
    char id[32], title[48];
    snprintf(id, sizeof id, "bench-doc-%zu", d);
    snprintf(title, sizeof title, "Synthetic document %zu", d);
    twin_document_init(&docs[d], id, "bench", b.data, b.len, authors[d % 4], title, "", TWIN_DOC_ARTICLE, NULL);
    twin_buf_free(&b);
  }
  return docs;
}

static int bench_ingest(const char *url, size_t n_docs, const char *model_dir) {
  twin_redis *r = NULL;
  twin_redis_options ro = {.url = url, .require_connection = true};
  twin_err err = {0};
  if (twin_redis_open(&r, &ro, &err)) {
    fprintf(stderr, "bench-index: %s\n", err.msg);
    return -1;
  }
  twin_embedder *emb = NULL;
  for (int pass = 0; pass < (model_dir ? 2 : 1); pass++) {
    twin_text_encoder enc;
    const char *name = "hashing encoder (no model)";
    size_t docs_here = n_docs;
    if (pass == 0) {
      twin_text_encoder_hashing(384, &enc, &err);
    } else {
      if (twin_embedder_open(&emb, model_dir, &err)) {
        fprintf(stderr, "bench-index: %s\n", err.msg);
        break;
      }
      enc = twin_text_encoder_from_embedder(emb);
      name = "sentence embedder";
      docs_here = n_docs < 20 ? n_docs : 20; /* CPU embedding is the slow part: fewer documents */
    }
    redisReply *rep = NULL;
    if (twin_redis_command(r, &rep, &err, "FLUSHDB") == 0) freeReplyObject(rep);
    twin_document *docs = make_documents(docs_here, 42 + (uint64_t)pass);
    twin_ingest_options o = twin_ingest_default_options();
    o.encoder = &enc;
    o.redis = r;
    for (int round = 0; round < 2; round++) {
      twin_ingest_report rep_ingest;
      int64_t t0 = twin_time_mono_us();
      if (twin_ingest_documents(&o, docs, docs_here, &rep_ingest, &err)) {
        fprintf(stderr, "bench-index: %s\n", err.msg);
        break;
      }
      double s = (double)(twin_time_mono_us() - t0) / 1e6;
      size_t chunks = rep_ingest.chunks_new + rep_ingest.chunks_unchanged;
      printf("ingest %-27s %s: %zu documents, %zu chunks (%zu new) in %.2f s = %.0f chunks/s, "
             "%zu errors\n",
             name, round ? "again (unchanged)" : "first time       ", rep_ingest.documents, chunks,
             rep_ingest.chunks_new, s, (double)chunks / s, rep_ingest.errors);
      fflush(stdout);
      twin_ingest_report_free(&rep_ingest);
    }
    for (size_t d = 0; d < docs_here; d++) twin_document_free(&docs[d]);
    free(docs);
    if (twin_redis_command(r, &rep, &err, "FLUSHDB") == 0) freeReplyObject(rep);
  }
  twin_embedder_destroy(emb);
  twin_redis_close(r);
  return 0;
}

int main(int argc, char **argv) {
  twin_log_init("bench-index", TWIN_LOG_WARN, 0);
  int dim = 384;
  size_t nq = 200, k = 10, n_docs = 200;
  const char *sizes = "10000,100000", *redis_url = NULL, *model_dir = NULL;
  int skip_index = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : "";
    if (strcmp(argv[i], "--dim") == 0) dim = atoi(v), i++;
    else if (strcmp(argv[i], "--sizes") == 0) sizes = v, i++;
    else if (strcmp(argv[i], "--queries") == 0) nq = strtoull(v, NULL, 10), i++;
    else if (strcmp(argv[i], "--k") == 0) k = strtoull(v, NULL, 10), i++;
    else if (strcmp(argv[i], "--redis") == 0) redis_url = v, i++;
    else if (strcmp(argv[i], "--docs") == 0) n_docs = strtoull(v, NULL, 10), i++;
    else if (strcmp(argv[i], "--encoder") == 0) model_dir = v, i++;
    else if (strcmp(argv[i], "--skip-index") == 0) skip_index = 1;
    else {
      fprintf(stderr, "usage: bench-index [--dim N] [--sizes A,B] [--queries N] [--k N] [--redis URL] "
                      "[--docs N] [--encoder MODEL_DIR] [--skip-index]\n");
      return 2;
    }
  }
  if (dim <= 0 || nq == 0 || k == 0) return 2;
  if (!skip_index) {
    char *list = strdup(sizes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
      size_t n = strtoull(tok, NULL, 10);
      if (n && bench_size(n, dim, nq, k)) {
        free(list);
        return 1;
      }
    }
    free(list);
  }
  if (redis_url && bench_ingest(redis_url, n_docs, model_dir)) return 1;
  return 0;
}
