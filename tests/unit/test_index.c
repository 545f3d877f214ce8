/* tests/unit/test_index.c — rag/vector_index against a brute force computed here in double
 * precision: exact search results and scores, author/type filters, removal and re-adding,
 * HNSW recall on random vectors (printed, asserted above a loose bound) with and without
 * filters and tombstones, the AUTO switch to HNSW, bad inputs, and searches running in
 * threads while another thread adds and removes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/vector_index.h"

/* ============================================================================================
 * random data and the brute-force reference
 * ========================================================================================== */

typedef struct rng { uint64_t s; } rng;

static uint64_t rng_next(rng *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}
static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) / 9007199254740992.0; }
static float rng_gauss(rng *r) {
  double u = rng_unit(r), v = rng_unit(r);
  if (u < 1e-12) u = 1e-12;
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static const char *const authors[] = {"alice", "bob", "carol", "dave"};

typedef struct dataset {
  int dim;
  size_t n;
  float *vectors;    /* [n][dim] not normalized */
  char (*ids)[24];   /* [n] */
  int *author;       /* [n] into authors */
  twin_doc_type *type;
  bool *removed;
} dataset;

static dataset make_dataset(size_t n, int dim, uint64_t seed) {
  dataset d = {.dim = dim, .n = n};
  rng r = {seed * 2654435761u + 1};
  d.vectors = malloc(n * (size_t)dim * sizeof(float));
  d.ids = malloc(n * sizeof *d.ids);
  d.author = malloc(n * sizeof(int));
  d.type = malloc(n * sizeof(twin_doc_type));
  d.removed = calloc(n, sizeof(bool));
  for (size_t i = 0; i < n; i++) {
    for (int j = 0; j < dim; j++) d.vectors[i * dim + j] = rng_gauss(&r) * 3.0f; /* not unit */
    snprintf(d.ids[i], sizeof d.ids[i], "chunk-%05zu", i);
    d.author[i] = (int)(rng_next(&r) % 4);
    d.type[i] = (twin_doc_type)(rng_next(&r) % 3);
  }
  return d;
}

static void free_dataset(dataset *d) {
  free(d->vectors);
  free(d->ids);
  free(d->author);
  free(d->type);
  free(d->removed);
}

static void add_all(twin_vector_index *ix, const dataset *d, size_t from, size_t to) {
  size_t n = to - from;
  twin_index_entry *e = calloc(n, sizeof *e);
  for (size_t i = 0; i < n; i++)
    e[i] = (twin_index_entry){d->ids[from + i], authors[d->author[from + i]], d->type[from + i]};
  size_t added = 0;
  twin_err err = {0};
  assert_int_equal(twin_vector_index_add(ix, e, d->vectors + from * d->dim, n, &added, &err), 0);
  assert_int_equal(added, n);
  free(e);
}

static double cosine(const float *a, const float *b, int dim) {
  double ab = 0, aa = 0, bb = 0;
  for (int j = 0; j < dim; j++) {
    ab += (double)a[j] * b[j];
    aa += (double)a[j] * a[j];
    bb += (double)b[j] * b[j];
  }
  return ab / sqrt(aa * bb);
}

typedef struct ref_hit { size_t i; double score; } ref_hit;

static int by_score_desc(const void *a, const void *b) {
  const ref_hit *x = a, *y = b;
  return x->score < y->score ? 1 : x->score > y->score ? -1 : 0;
}

/* The k best of d (not removed, passing the filter) for query q; returns how many. */
static size_t brute_force(const dataset *d, const float *q, size_t k, int author_only,
                          unsigned type_mask, ref_hit *out) {
  ref_hit *all = malloc(d->n * sizeof *all);
  size_t m = 0;
  for (size_t i = 0; i < d->n; i++) {
    if (d->removed[i]) continue;
    if (author_only >= 0 && d->author[i] != author_only) continue;
    if (type_mask && !(type_mask & (1u << d->type[i]))) continue;
    all[m++] = (ref_hit){i, cosine(q, d->vectors + i * d->dim, d->dim)};
  }
  qsort(all, m, sizeof *all, by_score_desc);
  size_t r = m < k ? m : k;
  memcpy(out, all, r * sizeof *out);
  free(all);
  return r;
}

static size_t id_index(const char *id) { return (size_t)strtoul(id + 6, NULL, 10); }

/* Checks an exact search against the brute force: same ids in the same order, same scores. */
static void check_exact(twin_vector_index *ix, const dataset *d, const float *queries, size_t nq,
                        size_t k, int author_only, unsigned type_mask) {
  twin_index_hit *hits = calloc(nq * k, sizeof *hits);
  size_t *n_hits = calloc(nq, sizeof *n_hits);
  ref_hit *ref = calloc(k, sizeof *ref);
  const char *author_list[1] = {author_only >= 0 ? authors[author_only] : NULL};
  twin_index_filter f = {author_only >= 0 ? author_list : NULL, author_only >= 0 ? 1 : 0, type_mask};
  twin_err err = {0};
  assert_int_equal(twin_vector_index_search(ix, queries, nq, k, &f, hits, n_hits, &err), 0);
  for (size_t q = 0; q < nq; q++) {
    size_t m = brute_force(d, queries + q * d->dim, k, author_only, type_mask, ref);
    assert_int_equal(n_hits[q], m);
    for (size_t j = 0; j < m; j++) {
      twin_index_hit *h = &hits[q * k + j];
      if (id_index(h->chunk_id) != ref[j].i) {
        /* only a tie may reorder: the scores must then agree */
        assert_true(fabs(h->score - ref[j].score) < 1e-5);
      }
      assert_true(fabs(h->score - ref[j].score) < 1e-4);
    }
  }
  free(hits);
  free(n_hits);
  free(ref);
}

static twin_vector_index *make_index(int dim, twin_index_kind kind, size_t threshold) {
  twin_vector_index_options o = {.dim = dim, .kind = kind, .hnsw_threshold = threshold};
  twin_vector_index *ix = NULL;
  twin_err err = {0};
  assert_int_equal(twin_vector_index_create(&ix, &o, &err), 0);
  return ix;
}

static float *make_queries(size_t nq, int dim, uint64_t seed) {
  rng r = {seed};
  float *q = malloc(nq * (size_t)dim * sizeof(float));
  for (size_t i = 0; i < nq * (size_t)dim; i++) q[i] = rng_gauss(&r);
  return q;
}

/* ============================================================================================
 * exact
 * ========================================================================================== */

static void test_exact_matches_brute_force(void **state) {
  (void)state;
  dataset d = make_dataset(800, 48, 1);
  twin_vector_index *ix = make_index(48, TWIN_INDEX_EXACT, 0);
  add_all(ix, &d, 0, 500);
  add_all(ix, &d, 500, 800);
  assert_int_equal(twin_vector_index_size(ix), 800);
  assert_int_equal(twin_vector_index_current_kind(ix), TWIN_INDEX_EXACT);
  float *q = make_queries(25, 48, 7);
  check_exact(ix, &d, q, 25, 10, -1, 0);
  check_exact(ix, &d, q, 3, 1, -1, 0);
  /* k larger than the index: everything, ranked */
  dataset small = make_dataset(5, 48, 3);
  twin_vector_index *ix2 = make_index(48, TWIN_INDEX_EXACT, 0);
  add_all(ix2, &small, 0, 5);
  check_exact(ix2, &small, q, 4, 50, -1, 0);
  /* stored vectors are normalized */
  float v[48];
  twin_err err = {0};
  assert_int_equal(twin_vector_index_get(ix, d.ids[17], v, &err), 0);
  double norm = 0;
  for (int j = 0; j < 48; j++) norm += (double)v[j] * v[j];
  assert_true(fabs(norm - 1.0) < 1e-5);
  assert_int_equal(twin_vector_index_get(ix, "nope", v, &err), TWIN_ENOTFOUND);
  twin_vector_index_destroy(ix2);
  free_dataset(&small);
  free(q);
  twin_vector_index_destroy(ix);
  free_dataset(&d);
}

static void test_exact_filters(void **state) {
  (void)state;
  dataset d = make_dataset(1000, 32, 2);
  twin_vector_index *ix = make_index(32, TWIN_INDEX_EXACT, 0);
  add_all(ix, &d, 0, 1000);
  float *q = make_queries(15, 32, 11);
  check_exact(ix, &d, q, 15, 10, 1, 0);                                  /* author bob */
  check_exact(ix, &d, q, 15, 10, -1, 1u << TWIN_DOC_CODE);               /* code only */
  check_exact(ix, &d, q, 15, 10, 2, (1u << TWIN_DOC_POST) | (1u << TWIN_DOC_ARTICLE));
  /* two authors: every hit is one of them, and the best of both is found */
  const char *two[] = {"alice", "dave"};
  twin_index_filter f = {two, 2, 0};
  twin_index_hit hits[10];
  size_t n_hits = 0;
  twin_err err = {0};
  assert_int_equal(twin_vector_index_search(ix, q, 1, 10, &f, hits, &n_hits, &err), 0);
  assert_int_equal(n_hits, 10);
  for (size_t j = 0; j < n_hits; j++) {
    int a = d.author[id_index(hits[j].chunk_id)];
    assert_true(a == 0 || a == 3);
  }
  /* unknown author, and a type mask with no known type: nothing */
  const char *ghost[] = {"mallory"};
  twin_index_filter g = {ghost, 1, 0};
  assert_int_equal(twin_vector_index_search(ix, q, 1, 10, &g, hits, &n_hits, &err), 0);
  assert_int_equal(n_hits, 0);
  twin_index_filter h = {NULL, 0, 1u << 7};
  assert_int_equal(twin_vector_index_search(ix, q, 1, 10, &h, hits, &n_hits, &err), 0);
  assert_int_equal(n_hits, 0);
  free(q);
  twin_vector_index_destroy(ix);
  free_dataset(&d);
}

static void test_exact_removal(void **state) {
  (void)state;
  dataset d = make_dataset(600, 24, 3);
  twin_vector_index *ix = make_index(24, TWIN_INDEX_EXACT, 0);
  add_all(ix, &d, 0, 600);
  const char *gone[201];
  size_t n_gone = 0;
  for (size_t i = 0; i < 600; i += 3) {
    gone[n_gone++] = d.ids[i];
    d.removed[i] = true;
  }
  gone[n_gone++] = "never-added";
  size_t removed = 0;
  twin_err err = {0};
  assert_int_equal(twin_vector_index_remove(ix, gone, n_gone, &removed, &err), 0);
  assert_int_equal(removed, 200);
  assert_int_equal(twin_vector_index_size(ix), 400);
  assert_false(twin_vector_index_contains(ix, d.ids[0]));
  assert_true(twin_vector_index_contains(ix, d.ids[1]));
  float *q = make_queries(20, 24, 5);
  check_exact(ix, &d, q, 20, 10, -1, 0);
  check_exact(ix, &d, q, 20, 5, 0, 1u << TWIN_DOC_ARTICLE);
  /* removing again changes nothing; re-adding brings a chunk back */
  assert_int_equal(twin_vector_index_remove(ix, gone, 1, &removed, &err), 0);
  assert_int_equal(removed, 0);
  d.removed[0] = false;
  add_all(ix, &d, 0, 1);
  assert_true(twin_vector_index_contains(ix, d.ids[0]));
  check_exact(ix, &d, q, 20, 10, -1, 0);
  /* adding an id that is there already is skipped */
  size_t added = 99;
  twin_index_entry e[2] = {{d.ids[1], "bob", TWIN_DOC_POST}, {d.ids[1], "bob", TWIN_DOC_POST}};
  float two[48] = {1};
  assert_int_equal(twin_vector_index_add(ix, e, two, 2, &added, &err), 0);
  assert_int_equal(added, 0);
  /* list: sorted live ids */
  char **ids = NULL;
  size_t n = 0;
  assert_int_equal(twin_vector_index_list(ix, &ids, &n, &err), 0);
  assert_int_equal(n, 401);
  for (size_t i = 1; i < n; i++) assert_true(strcmp(ids[i - 1], ids[i]) < 0);
  twin_vector_index_free_ids(ids, n);
  free(q);
  twin_vector_index_destroy(ix);
  free_dataset(&d);
}

/* ============================================================================================
 * HNSW
 * ========================================================================================== */

/* Recall@k of an index against the brute force over nq queries. */
static double recall_at(twin_vector_index *ix, const dataset *d, const float *q, size_t nq,
                        size_t k, int author_only, unsigned type_mask) {
  twin_index_hit *hits = calloc(nq * k, sizeof *hits);
  size_t *n_hits = calloc(nq, sizeof *n_hits);
  ref_hit *ref = calloc(k, sizeof *ref);
  const char *author_list[1] = {author_only >= 0 ? authors[author_only] : NULL};
  twin_index_filter f = {author_only >= 0 ? author_list : NULL, author_only >= 0 ? 1 : 0, type_mask};
  twin_err err = {0};
  assert_int_equal(twin_vector_index_search(ix, q, nq, k, &f, hits, n_hits, &err), 0);
  size_t found = 0, total = 0;
  for (size_t i = 0; i < nq; i++) {
    size_t m = brute_force(d, q + i * d->dim, k, author_only, type_mask, ref);
    total += m;
    for (size_t j = 0; j < n_hits[i]; j++) {
      size_t got = id_index(hits[i * k + j].chunk_id);
      /* every hit must pass the filter and be live, whatever the recall */
      assert_false(d->removed[got]);
      if (author_only >= 0) assert_int_equal(d->author[got], author_only);
      if (type_mask) assert_true(type_mask & (1u << d->type[got]));
      for (size_t r = 0; r < m; r++)
        if (ref[r].i == got) { found++; break; }
    }
  }
  free(hits);
  free(n_hits);
  free(ref);
  return total ? (double)found / (double)total : 1.0;
}

static void test_hnsw_recall(void **state) {
  (void)state;
  const int dim = 64;
  dataset d = make_dataset(6000, dim, 4);
  twin_vector_index *ix = make_index(dim, TWIN_INDEX_HNSW, 0);
  add_all(ix, &d, 0, 3000);
  add_all(ix, &d, 3000, 6000);
  assert_int_equal(twin_vector_index_current_kind(ix), TWIN_INDEX_HNSW);
  float *q = make_queries(100, dim, 13);
  double r_all = recall_at(ix, &d, q, 100, 10, -1, 0);
  double r_type = recall_at(ix, &d, q, 100, 10, -1, 1u << TWIN_DOC_CODE);
  double r_narrow = recall_at(ix, &d, q, 100, 10, 2, 1u << TWIN_DOC_POST); /* ~1/12: exact scan */
  printf("hnsw recall@10 on 6000 x %d: all %.3f, type filter %.3f, author+type filter %.3f\n",
         dim, r_all, r_type, r_narrow);
  assert_true(r_all > 0.8);
  assert_true(r_type > 0.8);
  assert_true(r_narrow > 0.8);
  /* tombstones: removed chunks never come back, recall holds */
  const char **gone = malloc(6000 * sizeof *gone);
  size_t n_gone = 0;
  for (size_t i = 0; i < 6000; i += 10) {
    gone[n_gone++] = d.ids[i];
    d.removed[i] = true;
  }
  size_t removed = 0;
  twin_err err = {0};
  assert_int_equal(twin_vector_index_remove(ix, gone, n_gone, &removed, &err), 0);
  assert_int_equal(removed, 600);
  twin_vector_index_stats st;
  twin_vector_index_get_stats(ix, &st);
  assert_int_equal(st.live, 5400);
  assert_int_equal(st.tombstones, 600);
  assert_int_equal(st.rebuilds, 0);
  double r_tomb = recall_at(ix, &d, q, 100, 10, -1, 0);
  printf("hnsw recall@10 with 10%% tombstones: %.3f\n", r_tomb);
  assert_true(r_tomb > 0.8);
  /* past the tombstone ratio (0.25) the graph is rebuilt from the live vectors */
  n_gone = 0;
  for (size_t i = 1; i < 6000; i += 4) {
    if (d.removed[i]) continue;
    gone[n_gone++] = d.ids[i];
    d.removed[i] = true;
  }
  assert_int_equal(twin_vector_index_remove(ix, gone, n_gone, &removed, &err), 0);
  twin_vector_index_get_stats(ix, &st);
  assert_int_equal(st.rebuilds, 1);
  assert_int_equal(st.tombstones, 0);
  assert_int_equal(st.stored, st.live);
  assert_int_equal(st.live, 5400 - n_gone);
  double r_rebuilt = recall_at(ix, &d, q, 100, 10, -1, 0);
  printf("hnsw recall@10 after the rebuild: %.3f\n", r_rebuilt);
  assert_true(r_rebuilt > 0.8);
  free(gone);
  free(q);
  twin_vector_index_destroy(ix);
  free_dataset(&d);
}

static void test_auto_switches_to_hnsw(void **state) {
  (void)state;
  dataset d = make_dataset(900, 32, 5);
  twin_vector_index *ix = make_index(32, TWIN_INDEX_AUTO, 500);
  add_all(ix, &d, 0, 400);
  assert_int_equal(twin_vector_index_current_kind(ix), TWIN_INDEX_EXACT);
  float *q = make_queries(30, 32, 17);
  dataset first400 = d;
  first400.n = 400;
  check_exact(ix, &first400, q, 30, 10, -1, 0);
  add_all(ix, &d, 400, 900);
  assert_int_equal(twin_vector_index_current_kind(ix), TWIN_INDEX_HNSW);
  assert_int_equal(twin_vector_index_size(ix), 900);
  double r = recall_at(ix, &d, q, 30, 10, -1, 0);
  printf("auto index after the switch: recall@10 %.3f\n", r);
  assert_true(r > 0.8);
  twin_vector_index_clear(ix);
  assert_int_equal(twin_vector_index_size(ix), 0);
  assert_int_equal(twin_vector_index_current_kind(ix), TWIN_INDEX_EXACT);
  free(q);
  twin_vector_index_destroy(ix);
  free_dataset(&d);
}

/* ============================================================================================
 * inputs, swap, threads
 * ========================================================================================== */

static void test_bad_inputs(void **state) {
  (void)state;
  twin_err err = {0};
  twin_vector_index *ix = NULL;
  twin_vector_index_options o = {.dim = 0};
  assert_int_equal(twin_vector_index_create(&ix, &o, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "dim"));
  o = (twin_vector_index_options){.dim = 4, .max_tombstone_ratio = 1.5};
  assert_int_equal(twin_vector_index_create(&ix, &o, &err), TWIN_EINVAL);
  ix = make_index(4, TWIN_INDEX_EXACT, 0);
  float v[8] = {1, 2, 3, 4, NAN, 0, 0, 1};
  twin_index_entry e[2] = {{"a", "x", TWIN_DOC_POST}, {"b", "x", TWIN_DOC_POST}};
  assert_int_equal(twin_vector_index_add(ix, e, v, 2, NULL, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "vector 1 (b)"));
  assert_int_equal(twin_vector_index_size(ix), 0); /* nothing of the batch went in */
  twin_index_entry bad_id[1] = {{"has space", "x", TWIN_DOC_POST}};
  assert_int_equal(twin_vector_index_add(ix, bad_id, v, 1, NULL, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "entry 0"));
  twin_index_entry bad_type[1] = {{"c", "x", (twin_doc_type)9}};
  assert_int_equal(twin_vector_index_add(ix, bad_type, v, 1, NULL, &err), TWIN_EINVAL);
  assert_int_equal(twin_vector_index_add(ix, e, v, 1, NULL, &err), 0);
  twin_index_hit hits[2];
  size_t n_hits;
  assert_int_equal(twin_vector_index_search(ix, v, 1, 0, NULL, hits, &n_hits, &err), TWIN_EINVAL);
  assert_int_equal(twin_vector_index_search(ix, v + 4, 1, 1, NULL, hits, &n_hits, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "not finite"));
  /* an all-zero query scores 0 against everything; an all-zero vector is stored as is */
  float zero[4] = {0, 0, 0, 0};
  assert_int_equal(twin_vector_index_search(ix, zero, 1, 2, NULL, hits, &n_hits, &err), 0);
  assert_int_equal(n_hits, 1);
  assert_true(fabsf(hits[0].score) < 1e-6f);
  twin_index_kind k;
  assert_int_equal(twin_index_kind_parse("hnsw", &k, &err), 0);
  assert_int_equal(k, TWIN_INDEX_HNSW);
  assert_int_equal(twin_index_kind_parse("ivf", &k, &err), TWIN_EINVAL);
  twin_vector_index_destroy(ix);
}

static void test_swap(void **state) {
  (void)state;
  dataset d = make_dataset(50, 8, 6);
  twin_vector_index *a = make_index(8, TWIN_INDEX_EXACT, 0), *b = make_index(8, TWIN_INDEX_EXACT, 0);
  add_all(a, &d, 0, 10);
  add_all(b, &d, 10, 50);
  twin_vector_index_swap(a, b);
  assert_int_equal(twin_vector_index_size(a), 40);
  assert_int_equal(twin_vector_index_size(b), 10);
  assert_true(twin_vector_index_contains(a, d.ids[10]));
  assert_false(twin_vector_index_contains(a, d.ids[0]));
  twin_vector_index_destroy(a);
  twin_vector_index_destroy(b);
  free_dataset(&d);
}

typedef struct reader_job {
  twin_vector_index *ix;
  const float *queries; /* [50][dim] */
  int dim;
  int rc;
  size_t searches;
} reader_job;

static void *reader_main(void *arg) {
  reader_job *job = arg;
  twin_index_hit hits[10];
  size_t n_hits;
  twin_err err = {0};
  for (int round = 0; round < 60 && !job->rc; round++) {
    for (int q = 0; q < 50 && !job->rc; q++) {
      job->rc = twin_vector_index_search(job->ix, job->queries + q * job->dim, 1, 10, NULL, hits,
                                         &n_hits, &err);
      for (size_t j = 1; j < n_hits; j++)
        if (hits[j].score > hits[j - 1].score + 1e-6f) job->rc = -100; /* not ranked */
      job->searches++;
    }
  }
  return NULL;
}

static void test_concurrent_reads_and_writes(void **state) {
  (void)state;
  const int dim = 32;
  dataset d = make_dataset(3000, dim, 8);
  for (int kind = 0; kind < 2; kind++) {
    twin_vector_index *ix = make_index(dim, kind == 0 ? TWIN_INDEX_EXACT : TWIN_INDEX_AUTO, 1500);
    add_all(ix, &d, 0, 1000);
    float *q = make_queries(50, dim, 21);
    reader_job jobs[3];
    pthread_t threads[3];
    for (int t = 0; t < 3; t++) {
      jobs[t] = (reader_job){ix, q, dim, 0, 0};
      pthread_create(&threads[t], NULL, reader_main, &jobs[t]);
    }
    /* the writer: adds (crossing the AUTO threshold) and removes while the readers search */
    twin_err err = {0};
    for (size_t from = 1000; from < 3000; from += 250) {
      add_all(ix, &d, from, from + 250);
      const char *gone[25];
      for (int i = 0; i < 25; i++) gone[i] = d.ids[from + (size_t)i * 10];
      size_t removed = 0;
      assert_int_equal(twin_vector_index_remove(ix, gone, 25, &removed, &err), 0);
      assert_int_equal(removed, 25);
    }
    for (int t = 0; t < 3; t++) {
      pthread_join(threads[t], NULL);
      assert_int_equal(jobs[t].rc, 0);
      assert_true(jobs[t].searches > 0);
    }
    assert_int_equal(twin_vector_index_size(ix), 3000 - 8 * 25);
    if (kind == 1) assert_int_equal(twin_vector_index_current_kind(ix), TWIN_INDEX_HNSW);
    free(q);
    twin_vector_index_destroy(ix);
  }
  free_dataset(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_matches_brute_force),
      cmocka_unit_test(test_exact_filters),
      cmocka_unit_test(test_exact_removal),
      cmocka_unit_test(test_hnsw_recall),
      cmocka_unit_test(test_auto_switches_to_hnsw),
      cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_swap),
      cmocka_unit_test(test_concurrent_reads_and_writes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
