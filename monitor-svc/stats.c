/* monitor-svc/stats.c — the statistics accumulator: per group (overall, each model, each
 * template, each time bucket) the latencies and TTFTs seen, sorted at the end for exact
 * percentiles, and the running sums. Groups are found by name through a small open-addressing
 * table (written here: a few lines, and no hash map is in the project's link set). */
#include "monitor-svc/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ============================================================================================
 * groups
 * ========================================================================================== */

typedef struct dvec {
  double *v; /* [n] */
  size_t n, cap;
} dvec;

static int dvec_push(dvec *d, double x) {
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 64;
    double *v = realloc(d->v, cap * sizeof *v);
    if (!v) return TWIN_ENOMEM;
    d->v = v;
    d->cap = cap;
  }
  d->v[d->n++] = x;
  return 0;
}

typedef struct group_acc {
  char *key; /* owned */
  uint64_t count, errors, hits, prompt_tokens, completion_tokens;
  double cost_usd;
  dvec latency, ttft;
} group_acc;

static int group_add(group_acc *g, const monitor_summary *s) {
  g->count++;
  g->errors += s->is_error;
  g->hits += s->cache_hit;
  g->prompt_tokens += s->prompt_tokens;
  g->completion_tokens += s->completion_tokens;
  g->cost_usd += s->cost_usd;
  if (dvec_push(&g->latency, s->total_ms)) return TWIN_ENOMEM;
  if (s->ttft_ms > 0 && dvec_push(&g->ttft, s->ttft_ms)) return TWIN_ENOMEM;
  return 0;
}

static void group_free(group_acc *g) {
  free(g->key);
  free(g->latency.v);
  free(g->ttft.v);
}

/* Moves the k-th smallest of a[0..n) to a[k], smaller ones before it, larger ones after
 * (quickselect, median-of-three pivots): O(n) on average, where sorting would be O(n log n). */
static void select_kth(double *a, size_t n, size_t k) {
  size_t lo = 0, hi = n - 1;
  while (hi > lo) {
    size_t mid = lo + (hi - lo) / 2;
    if (a[mid] < a[lo]) { double t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
    if (a[hi] < a[lo]) { double t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
    if (a[hi] < a[mid]) { double t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
    double pivot = a[mid];
    size_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        double t = a[i]; a[i] = a[j]; a[j] = t;
        i++;
        if (j == 0) break;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

/* Linear interpolation between the closest ranks (numpy.percentile's default) over a[0..n),
 * q in [0, 1]; 0 when n == 0. Reorders a. */
static double percentile_unsorted(double *a, size_t n, double q) {
  if (n == 0) return 0;
  double h = (double)(n - 1) * q;
  size_t lo = (size_t)floor(h);
  if (lo >= n - 1) lo = n - 1;
  select_kth(a, n, lo);
  if (lo + 1 >= n || h == (double)lo) return a[lo];
  double next = a[lo + 1];
  for (size_t i = lo + 2; i < n; i++)
    if (a[i] < next) next = a[i];
  return a[lo] + (h - (double)lo) * (next - a[lo]);
}

static int group_finish(group_acc *g, monitor_group_stats *out) {
  memset(out, 0, sizeof *out);
  out->key = strdup(g->key ? g->key : "");
  if (!out->key) return TWIN_ENOMEM;
  out->count = g->count;
  out->errors = g->errors;
  out->prompt_tokens = g->prompt_tokens;
  out->completion_tokens = g->completion_tokens;
  out->cost_usd = g->cost_usd;
  out->error_rate = g->count ? (double)g->errors / (double)g->count : 0;
  out->cache_hit_rate = g->count ? (double)g->hits / (double)g->count : 0;
  out->latency_p50_ms = percentile_unsorted(g->latency.v, g->latency.n, 0.50);
  out->latency_p90_ms = percentile_unsorted(g->latency.v, g->latency.n, 0.90);
  out->latency_p99_ms = percentile_unsorted(g->latency.v, g->latency.n, 0.99);
  out->ttft_p50_ms = percentile_unsorted(g->ttft.v, g->ttft.n, 0.50);
  out->ttft_p90_ms = percentile_unsorted(g->ttft.v, g->ttft.n, 0.90);
  out->ttft_p99_ms = percentile_unsorted(g->ttft.v, g->ttft.n, 0.99);
  return 0;
}

/* name -> group, open addressing on twin_hash64, grows at 1/2 load. */
typedef struct group_table {
  group_acc *groups; /* [n] in insertion order */
  size_t n, cap;
  int32_t *slots;    /* [n_slots] index into groups or -1 */
  size_t n_slots;
} group_table;

static int table_grow_slots(group_table *t) {
  size_t n_slots = t->n_slots ? t->n_slots * 2 : 16;
  int32_t *slots = malloc(n_slots * sizeof *slots);
  if (!slots) return TWIN_ENOMEM;
  for (size_t i = 0; i < n_slots; i++) slots[i] = -1;
  for (size_t g = 0; g < t->n; g++) {
    size_t h = twin_hash64(t->groups[g].key, strlen(t->groups[g].key), 0) & (n_slots - 1);
    while (slots[h] >= 0) h = (h + 1) & (n_slots - 1);
    slots[h] = (int32_t)g;
  }
  free(t->slots);
  t->slots = slots;
  t->n_slots = n_slots;
  return 0;
}

static group_acc *table_get(group_table *t, const char *key) {
  if ((t->n + 1) * 2 > t->n_slots && table_grow_slots(t)) return NULL;
  size_t h = twin_hash64(key, strlen(key), 0) & (t->n_slots - 1);
  while (t->slots[h] >= 0) {
    group_acc *g = &t->groups[t->slots[h]];
    if (strcmp(g->key, key) == 0) return g;
    h = (h + 1) & (t->n_slots - 1);
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 8;
    group_acc *gs = realloc(t->groups, cap * sizeof *gs);
    if (!gs) return NULL;
    t->groups = gs;
    t->cap = cap;
  }
  group_acc *g = &t->groups[t->n];
  memset(g, 0, sizeof *g);
  g->key = strdup(key);
  if (!g->key) return NULL;
  t->slots[h] = (int32_t)t->n++;
  return g;
}

static void table_free(group_table *t) {
  for (size_t i = 0; i < t->n; i++) group_free(&t->groups[i]);
  free(t->groups);
  free(t->slots);
}

/* ============================================================================================
 * the accumulator
 * ========================================================================================== */

struct monitor_stats_acc {
  int64_t since_ms, until_ms, bucket_ms;
  group_acc overall;
  group_table models, templates;
  group_acc *buckets; /* [n_buckets] */
  uint32_t n_buckets;
};

int monitor_stats_acc_create(int64_t since_ms, int64_t until_ms, uint32_t buckets, monitor_stats_acc **out,
                             twin_err *err) {
  monitor_stats_acc *a = calloc(1, sizeof *a);
  if (!a) return twin_err_set(err, TWIN_ENOMEM, "stats: out of memory");
  a->since_ms = since_ms;
  a->until_ms = until_ms;
  if (buckets > 0) {
    int64_t span = until_ms - since_ms;
    if (span < (int64_t)buckets) span = buckets; /* at least 1 ms per bucket */
    a->bucket_ms = (span + buckets - 1) / buckets;
    a->buckets = calloc(buckets, sizeof *a->buckets);
    if (!a->buckets) {
      free(a);
      return twin_err_set(err, TWIN_ENOMEM, "stats: out of memory");
    }
    a->n_buckets = buckets;
  }
  *out = a;
  return 0;
}

void monitor_stats_acc_destroy(monitor_stats_acc *a) {
  if (!a) return;
  group_free(&a->overall);
  table_free(&a->models);
  table_free(&a->templates);
  for (uint32_t i = 0; i < a->n_buckets; i++) group_free(&a->buckets[i]);
  free(a->buckets);
  free(a);
}

int monitor_stats_acc_add(monitor_stats_acc *a, const monitor_summary *s, twin_err *err) {
  if (s->time_ms < a->since_ms || s->time_ms > a->until_ms) return 0;
  group_acc *m = table_get(&a->models, s->model);
  group_acc *t = table_get(&a->templates, s->template_name);
  if (!m || !t || group_add(&a->overall, s) || group_add(m, s) || group_add(t, s))
    return twin_err_set(err, TWIN_ENOMEM, "stats: out of memory");
  if (a->n_buckets) {
    int64_t i = (s->time_ms - a->since_ms) / a->bucket_ms;
    if (i >= a->n_buckets) i = a->n_buckets - 1;
    if (group_add(&a->buckets[i], s)) return twin_err_set(err, TWIN_ENOMEM, "stats: out of memory");
  }
  return 0;
}

static int cmp_group_by_count(const void *a, const void *b) {
  const monitor_group_stats *x = a, *y = b;
  if (x->count != y->count) return x->count > y->count ? -1 : 1;
  return strcmp(x->key, y->key);
}

static int finish_table(group_table *t, monitor_group_stats **out, size_t *n) {
  *n = 0;
  *out = NULL;
  if (t->n == 0) return 0;
  *out = calloc(t->n, sizeof **out);
  if (!*out) return TWIN_ENOMEM;
  for (size_t i = 0; i < t->n; i++) {
    if (group_finish(&t->groups[i], &(*out)[i])) return TWIN_ENOMEM;
    (*n)++;
  }
  qsort(*out, *n, sizeof **out, cmp_group_by_count);
  return 0;
}

int monitor_stats_acc_finish(monitor_stats_acc *a, monitor_stats *out, twin_err *err) {
  memset(out, 0, sizeof *out);
  out->since_ms = a->since_ms;
  out->until_ms = a->until_ms;
  out->bucket_ms = a->bucket_ms;
  int rc = group_finish(&a->overall, &out->overall);
  if (!rc) rc = finish_table(&a->models, &out->per_model, &out->n_per_model);
  if (!rc) rc = finish_table(&a->templates, &out->per_template, &out->n_per_template);
  if (!rc && a->n_buckets) {
    out->series = calloc(a->n_buckets, sizeof *out->series);
    if (!out->series) rc = TWIN_ENOMEM;
    for (uint32_t i = 0; !rc && i < a->n_buckets; i++) {
      monitor_group_stats g;
      if (group_finish(&a->buckets[i], &g)) {
        rc = TWIN_ENOMEM;
        break;
      }
      monitor_bucket_stats *b = &out->series[i];
      b->start_ms = a->since_ms + (int64_t)i * a->bucket_ms;
      b->count = g.count;
      b->errors = g.errors;
      b->prompt_tokens = g.prompt_tokens;
      b->completion_tokens = g.completion_tokens;
      b->cost_usd = g.cost_usd;
      b->latency_p50_ms = g.latency_p50_ms;
      b->latency_p90_ms = g.latency_p90_ms;
      b->latency_p99_ms = g.latency_p99_ms;
      b->ttft_p50_ms = g.ttft_p50_ms;
      b->ttft_p99_ms = g.ttft_p99_ms;
      free(g.key);
      out->n_series++;
    }
  }
  if (rc) {
    monitor_stats_free(out);
    return twin_err_set(err, TWIN_ENOMEM, "stats: out of memory");
  }
  return 0;
}

void monitor_stats_free(monitor_stats *s) {
  if (!s) return;
  free(s->overall.key);
  for (size_t i = 0; i < s->n_per_model; i++) free(s->per_model[i].key);
  for (size_t i = 0; i < s->n_per_template; i++) free(s->per_template[i].key);
  free(s->per_model);
  free(s->per_template);
  free(s->series);
  memset(s, 0, sizeof *s);
}
