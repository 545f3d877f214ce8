/* tests/unit/test_common_metrics.c — common/metrics: the exposition text compared byte for
 * byte with text written by hand from the Prometheus text format 0.0.4 spec (HELP/TYPE lines,
 * label and HELP escaping, cumulative le buckets, _sum/_count, float spellings), registration
 * errors, and concurrent updates and child creation from threads summing exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/metrics.h"

static double free_blocks(void *user) { return *(const double *)user; }

static void set_workers(void *user) {
  twin_metric_family *fam = user;
  twin_gauge_set(twin_metric_with(fam, "cpu"), 2);
}

static void test_exposition_text(void **state) {
  (void)state;
  twin_metrics *reg = twin_metrics_create();
  assert_non_null(reg);
  twin_err err = {0};
  twin_metric_family *requests, *depth, *latency, *ttft, *unused, *workers;
  assert_int_equal(twin_metrics_counter(reg, "twin_requests_total", "Requests handled.", "method,code",
                                        &requests, &err), 0);
  assert_int_equal(twin_metrics_gauge(reg, "twin_queue_depth",
                                      "Waiting requests.\nSecond line with a \\ backslash.", NULL,
                                      &depth, &err), 0);
  const double bounds[] = {0.25, 0.5, 1, 2.5};
  assert_int_equal(twin_metrics_histogram(reg, "twin_latency_seconds", "Latency.", "route", bounds, 4,
                                          &latency, &err), 0);
  const double one[] = {1, INFINITY}; /* a trailing +Inf is dropped: it is always there */
  assert_int_equal(twin_metrics_histogram(reg, "twin_ttft_seconds", "TTFT.", "", one, 2, &ttft, &err), 0);
  assert_int_equal(twin_metrics_gauge(reg, "twin_unused", "Never used.", "x", &unused, &err), 0);
  double blocks = 42.5;
  assert_int_equal(twin_metrics_gauge_fn(reg, "twin_pool_free_blocks", "Free KV blocks.", free_blocks,
                                         &blocks, &err), 0);
  assert_int_equal(twin_metrics_gauge(reg, "twin_workers", "Workers by backend.", "backend", &workers, &err), 0);
  assert_int_equal(twin_metrics_on_scrape(reg, set_workers, workers, &err), 0);

  twin_metric *get200 = twin_metric_with(requests, "GET", "200");
  assert_non_null(get200);
  twin_counter_inc(get200);
  twin_counter_inc(get200);
  assert_ptr_equal(twin_metric_with(requests, "GET", "200"), get200); /* same child */
  twin_counter_inc(twin_metric_with(requests, "GET", "200"));
  twin_counter_add(twin_metric_with(requests, "POST", "500"), 2.5);
  twin_counter_add(twin_metric_with(requests, "POST", "500"), -7); /* ignored */
  twin_counter_add(twin_metric_with(requests, "a\"b\\c\nd", "x"), 1e20);
  assert_null(twin_metric_get(requests)); /* labeled: no single child */

  twin_metric *d = twin_metric_get(depth);
  twin_gauge_set(d, 7);
  twin_gauge_dec(d);
  assert_true(twin_metric_value(d) == 6);

  twin_metric *v1 = twin_metric_with(latency, "/v1");
  const double obs[] = {0.25, 0.375, 0.75, 3, 100};
  for (int i = 0; i < 5; i++) twin_histogram_observe(v1, obs[i]);
  twin_histogram_observe(v1, NAN); /* ignored */
  assert_int_equal(twin_histogram_count(v1), 5);
  assert_true(twin_histogram_sum(v1) == 104.375);
  assert_int_equal(twin_histogram_bucket(v1, 0), 1); /* le is inclusive: 0.25 lands in le="0.25" */
  assert_int_equal(twin_histogram_bucket(v1, 4), 2); /* +Inf */

  twin_buf out = {0};
  assert_int_equal(twin_metrics_render(reg, &out, &err), 0);
  const char *expected =
      "# HELP twin_requests_total Requests handled.\n"
      "# TYPE twin_requests_total counter\n"
      "twin_requests_total{method=\"GET\",code=\"200\"} 3\n"
      "twin_requests_total{method=\"POST\",code=\"500\"} 2.5\n"
      "twin_requests_total{method=\"a\\\"b\\\\c\\nd\",code=\"x\"} 1e+20\n"
      "# HELP twin_queue_depth Waiting requests.\\nSecond line with a \\\\ backslash.\n"
      "# TYPE twin_queue_depth gauge\n"
      "twin_queue_depth 6\n"
      "# HELP twin_latency_seconds Latency.\n"
      "# TYPE twin_latency_seconds histogram\n"
      "twin_latency_seconds_bucket{route=\"/v1\",le=\"0.25\"} 1\n"
      "twin_latency_seconds_bucket{route=\"/v1\",le=\"0.5\"} 2\n"
      "twin_latency_seconds_bucket{route=\"/v1\",le=\"1\"} 3\n"
      "twin_latency_seconds_bucket{route=\"/v1\",le=\"2.5\"} 3\n"
      "twin_latency_seconds_bucket{route=\"/v1\",le=\"+Inf\"} 5\n"
      "twin_latency_seconds_sum{route=\"/v1\"} 104.375\n"
      "twin_latency_seconds_count{route=\"/v1\"} 5\n"
      "# HELP twin_ttft_seconds TTFT.\n"
      "# TYPE twin_ttft_seconds histogram\n"
      "twin_ttft_seconds_bucket{le=\"1\"} 0\n"
      "twin_ttft_seconds_bucket{le=\"+Inf\"} 0\n"
      "twin_ttft_seconds_sum 0\n"
      "twin_ttft_seconds_count 0\n"
      "# HELP twin_pool_free_blocks Free KV blocks.\n"
      "# TYPE twin_pool_free_blocks gauge\n"
      "twin_pool_free_blocks 42.5\n"
      "# HELP twin_workers Workers by backend.\n"
      "# TYPE twin_workers gauge\n"
      "twin_workers{backend=\"cpu\"} 2\n";
  assert_string_equal(twin_buf_cstr(&out), expected);

  /* the callback is read at each scrape */
  blocks = 0.1;
  twin_buf_reset(&out);
  assert_int_equal(twin_metrics_render(reg, &out, &err), 0);
  assert_non_null(strstr(twin_buf_cstr(&out), "\ntwin_pool_free_blocks 0.1\n"));
  twin_buf_free(&out);
  twin_metrics_destroy(reg);
}

static void test_special_values(void **state) {
  (void)state;
  twin_metrics *reg = twin_metrics_create();
  twin_err err = {0};
  twin_metric_family *g;
  assert_int_equal(twin_metrics_gauge(reg, "g", "", "k", &g, &err), 0);
  twin_gauge_set(twin_metric_with(g, "inf"), INFINITY);
  twin_gauge_set(twin_metric_with(g, "ninf"), -INFINITY);
  twin_gauge_set(twin_metric_with(g, "nan"), NAN);
  twin_gauge_set(twin_metric_with(g, "neg"), -1.5);
  twin_gauge_set(twin_metric_with(g, "third"), 1.0 / 3.0);
  twin_gauge_set(twin_metric_with(g, "big"), 123456789012.0);
  twin_gauge_set(twin_metric_with(g, "small"), 1e-7);
  twin_gauge_set(twin_metric_with(g, "caf\xC3\xA9"), 1);
  twin_buf out = {0};
  assert_int_equal(twin_metrics_render(reg, &out, &err), 0);
  assert_string_equal(twin_buf_cstr(&out),
                      "# HELP g \n"
                      "# TYPE g gauge\n"
                      "g{k=\"inf\"} +Inf\n"
                      "g{k=\"ninf\"} -Inf\n"
                      "g{k=\"nan\"} NaN\n"
                      "g{k=\"neg\"} -1.5\n"
                      "g{k=\"third\"} 0.3333333333333333\n"
                      "g{k=\"big\"} 123456789012\n"
                      "g{k=\"small\"} 1e-07\n"
                      "g{k=\"caf\xC3\xA9\"} 1\n");
  twin_buf_free(&out);
  twin_metrics_destroy(reg);
}

static void test_registration_errors(void **state) {
  (void)state;
  twin_metrics *reg = twin_metrics_create();
  twin_err err = {0};
  twin_metric_family *f = NULL;
  assert_int_equal(twin_metrics_counter(reg, "ok_total", "", NULL, &f, &err), 0);
  assert_int_equal(twin_metrics_counter(reg, "ok_total", "", NULL, &f, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "metric ok_total is already registered");
  assert_null(f);
  assert_int_equal(twin_metrics_gauge(reg, "1abc", "", NULL, &f, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "bad metric name '1abc'");
  assert_int_equal(twin_metrics_gauge(reg, "a-b", "", NULL, &f, &err), TWIN_EINVAL);
  assert_int_equal(twin_metrics_gauge(reg, "g1", "", "ok,__reserved", &f, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "metric g1: bad label name '__reserved' in \"ok,__reserved\"");
  assert_int_equal(twin_metrics_gauge(reg, "g2", "", "a,a", &f, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "metric g2: label 'a' appears twice");
  assert_int_equal(twin_metrics_gauge(reg, "g3", "", "a,", &f, &err), TWIN_EINVAL);
  const double b[] = {1, 1};
  assert_int_equal(twin_metrics_histogram(reg, "h1", "", "le", b, 1, &f, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "metric h1: label name 'le' is reserved in histograms");
  assert_int_equal(twin_metrics_histogram(reg, "h2", "", NULL, b, 2, &f, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "metric h2: bucket bound 1"));
  const double nan_bound[] = {NAN};
  assert_int_equal(twin_metrics_histogram(reg, "h3", "", NULL, nan_bound, 1, &f, &err), TWIN_EINVAL);
  /* a failed registration leaves the name free */
  assert_int_equal(twin_metrics_gauge(reg, "g1", "", "ok", &f, &err), 0);

  /* children: wrong count and bad UTF-8 give NULL, and updates on NULL are harmless */
  assert_null(twin_metric_child(f, (const char *const[]){"a", "b"}, 2, &err));
  assert_string_equal(err.msg, "metric g1: 2 label values given, it has 1 labels");
  assert_null(twin_metric_with(f, "a", "b"));
  assert_null(twin_metric_child(f, (const char *const[]){"\xC3("}, 1, &err));
  assert_string_equal(err.msg, "metric g1: value of label ok is not valid UTF-8");
  twin_counter_inc(NULL);
  twin_gauge_set(NULL, 1);
  twin_histogram_observe(NULL, 1);
  assert_int_equal(twin_metrics_gauge_fn(reg, "fn", "", NULL, NULL, &err), TWIN_EINVAL);
  twin_metrics_destroy(reg);
}

/* ---- concurrency ------------------------------------------------------------------------------ */

#define N_THREADS 8
#define N_ITERS 100000

typedef struct worker_args {
  twin_metric_family *counter_fam;
  twin_metric_family *hist_fam;
  twin_metric *gauge;
  twin_metrics *reg;
  int id;
} worker_args;

static void *worker(void *arg) {
  worker_args *a = arg;
  char own[16];
  snprintf(own, sizeof own, "t%d", a->id);
  /* every thread races to create the same "shared" children */
  twin_metric *shared = twin_metric_with(a->counter_fam, "shared");
  twin_metric *mine = twin_metric_with(a->counter_fam, own);
  twin_metric *h = twin_metric_with(a->hist_fam, "shared");
  for (int i = 0; i < N_ITERS; i++) {
    twin_counter_inc(shared);
    twin_counter_add(mine, 0.5);
    twin_histogram_observe(h, (i % 4) * 0.5); /* 0, 0.5, 1, 1.5: all exact */
    twin_gauge_inc(a->gauge);
    twin_gauge_dec(a->gauge);
    if (i % 20000 == 0) { /* scrapes interleave with updates */
      twin_buf out = {0};
      twin_metrics_render(a->reg, &out, NULL);
      twin_buf_free(&out);
    }
  }
  return NULL;
}

static void test_concurrent_updates(void **state) {
  (void)state;
  twin_metrics *reg = twin_metrics_create();
  twin_err err = {0};
  twin_metric_family *cf, *hf, *gf;
  const double bounds[] = {0.25, 1};
  assert_int_equal(twin_metrics_counter(reg, "ops_total", "", "who", &cf, &err), 0);
  assert_int_equal(twin_metrics_histogram(reg, "op_size", "", "who", bounds, 2, &hf, &err), 0);
  assert_int_equal(twin_metrics_gauge(reg, "in_flight", "", NULL, &gf, &err), 0);
  pthread_t th[N_THREADS];
  worker_args args[N_THREADS];
  for (int t = 0; t < N_THREADS; t++) {
    args[t] = (worker_args){cf, hf, twin_metric_get(gf), reg, t};
    assert_int_equal(pthread_create(&th[t], NULL, worker, &args[t]), 0);
  }
  for (int t = 0; t < N_THREADS; t++) pthread_join(th[t], NULL);

  const double total = (double)N_THREADS * N_ITERS;
  assert_true(twin_metric_value(twin_metric_with(cf, "shared")) == total);
  for (int t = 0; t < N_THREADS; t++) {
    char own[16];
    snprintf(own, sizeof own, "t%d", t);
    assert_true(twin_metric_value(twin_metric_with(cf, own)) == N_ITERS * 0.5);
  }
  twin_metric *h = twin_metric_with(hf, "shared");
  assert_int_equal(twin_histogram_count(h), (uint64_t)total);
  assert_true(twin_histogram_sum(h) == total / 4 * (0 + 0.5 + 1 + 1.5));
  assert_int_equal(twin_histogram_bucket(h, 0), (uint64_t)total / 4);     /* 0 */
  assert_int_equal(twin_histogram_bucket(h, 1), (uint64_t)total / 2);     /* 0.5, 1 */
  assert_int_equal(twin_histogram_bucket(h, 2), (uint64_t)total / 4);     /* 1.5 */
  assert_true(twin_metric_value(twin_metric_get(gf)) == 0);

  /* exactly one "shared" series despite the race: N_THREADS + 1 counter lines */
  twin_buf out = {0};
  assert_int_equal(twin_metrics_render(reg, &out, &err), 0);
  int lines = 0;
  for (const char *p = twin_buf_cstr(&out); (p = strstr(p, "\nops_total{")); p++) lines++;
  assert_int_equal(lines, N_THREADS + 1);
  assert_non_null(strstr(twin_buf_cstr(&out), "\nops_total{who=\"shared\"} 800000\n"));
  assert_non_null(strstr(twin_buf_cstr(&out), "\nop_size_bucket{who=\"shared\",le=\"1\"} 600000\n"));
  assert_non_null(strstr(twin_buf_cstr(&out), "\nop_size_count{who=\"shared\"} 800000\n"));
  assert_non_null(strstr(twin_buf_cstr(&out), "\nop_size_sum{who=\"shared\"} 600000\n"));
  twin_buf_free(&out);
  twin_metrics_destroy(reg);
}

static void test_bucket_helpers(void **state) {
  (void)state;
  double e[4], l[3];
  twin_metrics_buckets_exponential(0.001, 10, 4, e);
  assert_true(e[0] == 0.001 && e[3] == 0.001 * 10 * 10 * 10);
  twin_metrics_buckets_linear(5, 2.5, 3, l);
  assert_true(l[0] == 5 && l[1] == 7.5 && l[2] == 10);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exposition_text),
      cmocka_unit_test(test_special_values),
      cmocka_unit_test(test_registration_errors),
      cmocka_unit_test(test_concurrent_updates),
      cmocka_unit_test(test_bucket_helpers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
