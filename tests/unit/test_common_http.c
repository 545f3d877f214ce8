/* tests/unit/test_common_http.c — common/http against a real server on a free loopback port,
 * driven with libcurl: /metrics and /healthz, registered routes (query, headers, body, error
 * mapping, 404, 405, 413), static files with their content types and traversal attempts,
 * streamed Server-Sent Events arriving while the producer still runs, cancellation when the
 * client goes away, and a clean stop with a stream open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/http.h"

/* ============================================================================================
 * a tiny libcurl client
 * ========================================================================================== */

typedef struct reply {
  long status;
  twin_buf body;
  twin_buf headers; /* raw header lines */
  char content_type[128];
  CURLcode curl_rc;
} reply;

typedef struct write_ctx {
  twin_buf *body;
  size_t abort_after; /* abort the transfer once this many bytes arrived (0 = never) */
  void (*on_data)(void *user);
  void *user;
} write_ctx;

static size_t on_body(char *data, size_t size, size_t n, void *user) {
  write_ctx *w = user;
  twin_buf_append(w->body, data, size * n);
  if (w->on_data) w->on_data(w->user);
  if (w->abort_after && w->body->len >= w->abort_after) return 0;
  return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *user) {
  twin_buf_append(user, data, size * n);
  return size * n;
}

typedef struct request_opts {
  const char *method;
  const char *body;
  size_t body_len;
  const char *header; /* one extra "Name: value" */
  size_t abort_after;
  void (*on_data)(void *user);
  void *user;
  long timeout_s;
} request_opts;

static void do_request(int port, const char *path, const request_opts *o, reply *r) {
  memset(r, 0, sizeof *r);
  char url[512];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  write_ctx w = {&r->body, o ? o->abort_after : 0, o ? o->on_data : NULL, o ? o->user : NULL};
  struct curl_slist *hdrs = NULL;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* send "../" as written */
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, o && o->timeout_s ? o->timeout_s : 20L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (o && o->method) {
    if (strcmp(o->method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, o->method);
  }
  if (o && o->body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)o->body_len);
  }
  if (o && o->header) {
    hdrs = curl_slist_append(hdrs, o->header);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  }
  r->curl_rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  char *ct = NULL;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
  if (ct) twin_strlcpy(r->content_type, ct, sizeof r->content_type);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
}

static void reply_free(reply *r) {
  twin_buf_free(&r->body);
  twin_buf_free(&r->headers);
}

static reply get(int port, const char *path) {
  reply r;
  do_request(port, path, NULL, &r);
  assert_int_equal(r.curl_rc, CURLE_OK);
  return r;
}

/* ============================================================================================
 * shared state between handlers, writer threads and the test
 * ========================================================================================== */

typedef struct shared {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  bool client_got_data;  /* the client has seen the first bytes of a stream */
  bool producer_late;    /* the producer waited in vain for the client to see them */
  int writer_rc;         /* how the writer thread ended */
  bool writer_done;
  bool idle_writer;      /* the writer stops writing after one event and polls for cancel */
  int64_t cancel_seen_ms;
  pthread_t writer;
  bool writer_started;
} shared;

static void shared_init(shared *s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cond, NULL);
}

static void mark_client_got_data(void *user) {
  shared *s = user;
  pthread_mutex_lock(&s->mu);
  s->client_got_data = true;
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->mu);
}

/* Waits until *flag is true or timeout_ms passes; returns the flag. */
static bool wait_flag(shared *s, bool *flag, int timeout_ms) {
  int64_t deadline = twin_time_mono_ms() + timeout_ms;
  pthread_mutex_lock(&s->mu);
  while (!*flag && twin_time_mono_ms() < deadline) {
    pthread_mutex_unlock(&s->mu);
    twin_sleep_ms(5);
    pthread_mutex_lock(&s->mu);
  }
  bool v = *flag;
  pthread_mutex_unlock(&s->mu);
  return v;
}

/* ============================================================================================
 * handlers
 * ========================================================================================== */

static int echo_handler(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  (void)user;
  (void)err;
  const char *name = twin_http_request_arg(req, "name");
  const char *flag = twin_http_request_arg(req, "flag");
  const char *hdr = twin_http_request_header(req, "x-test");
  twin_http_response_status(resp, strcmp(req->method, "POST") == 0 ? 201 : 200, "text/plain");
  twin_buf_printf(twin_http_response_body(resp), "%s|%s|%s|%s|%s|%s|%s|%zu|", req->method, req->path,
                  req->query, req->route_prefix, name ? name : "(null)", flag ? flag : "(null)",
                  hdr ? hdr : "(null)", req->body_len);
  twin_buf_append(twin_http_response_body(resp), req->body, req->body_len);
  return twin_http_response_header(resp, "X-Echo", "yes", err);
}

static int fail_handler(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  (void)user;
  (void)req;
  (void)resp;
  return twin_err_set(err, TWIN_EUNAVAILABLE, "backend \"llm\" is down");
}

/* Five token events, then a multi-line event and [DONE]. After the first event it waits for
 * the client to have received it: a server that held the body back would make it late. */
static void produce_tokens(twin_http_stream *st, void *user) {
  shared *s = user;
  twin_http_stream_sse(st, "token", "0", 1, NULL);
  if (!wait_flag(s, &s->client_got_data, 5000)) {
    pthread_mutex_lock(&s->mu);
    s->producer_late = true;
    pthread_mutex_unlock(&s->mu);
  }
  for (int i = 1; i < 5; i++) {
    char d[8];
    snprintf(d, sizeof d, "%d", i);
    if (twin_http_stream_sse(st, "token", d, strlen(d), NULL) != 0) return;
  }
  twin_http_stream_sse(st, NULL, "line1\nline2\r\nline3", 18, NULL);
  twin_http_stream_printf(st, NULL, "data: [%s]\n\n", "DONE");
}

static int sse_handler(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  (void)req;
  int rc = twin_http_response_stream_fn(resp, 200, "text/event-stream", produce_tokens, user, err);
  if (rc == 0) rc = twin_http_response_header(resp, "Cache-Control", "no-cache", err);
  return rc;
}

/* A writer of its own: one event every 20 ms until the stream is cancelled (or, idle, one
 * event and then only polling twin_http_stream_cancelled). */
static void *forever_writer(void *arg) {
  twin_http_stream *st = ((void **)arg)[0];
  shared *s = ((void **)arg)[1];
  free(arg);
  int rc = 0;
  twin_err err = {0};
  rc = twin_http_stream_write(st, "data: first\n\n", 13, &err);
  while (rc == 0) {
    twin_sleep_ms(20);
    if (s->idle_writer) {
      if (twin_http_stream_cancelled(st)) rc = TWIN_ECANCELLED;
    } else {
      rc = twin_http_stream_write(st, "data: more\n\n", 12, &err);
    }
  }
  twin_http_stream_close(st);
  pthread_mutex_lock(&s->mu);
  s->writer_rc = rc;
  s->cancel_seen_ms = twin_time_mono_ms();
  s->writer_done = true;
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static int forever_handler(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  (void)req;
  shared *s = user;
  twin_http_stream *st = twin_http_response_stream(resp, 200, "text/event-stream");
  if (!st) return twin_err_set(err, TWIN_ENOMEM, "no stream");
  void **arg = malloc(2 * sizeof *arg);
  arg[0] = st;
  arg[1] = s;
  pthread_mutex_lock(&s->mu);
  s->writer_started = pthread_create(&s->writer, NULL, forever_writer, arg) == 0;
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* Writes the whole stream from the handler itself: fine within stream_max_pending (1 MiB),
 * TWIN_EFULL beyond it (nothing drains the stream before the handler returns); small writes
 * that still fit go through after a refused one. */
static int inline_handler(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  (void)user;
  (void)req;
  twin_http_stream *st = twin_http_response_stream(resp, 202, "text/plain");
  if (!st) return twin_err_set(err, TWIN_ENOMEM, "no stream");
  assert_null(twin_http_response_stream(resp, 200, "text/plain")); /* one per response */
  size_t big_len = 2u << 20;
  char *big = calloc(1, big_len);
  twin_err werr = {0};
  int rc = twin_http_stream_write(st, big, big_len / 2 - 64, &werr); /* fits */
  if (rc == 0) rc = twin_http_stream_write(st, big, big_len / 2, &werr);
  free(big);
  twin_http_stream_write(st, "|", 1, NULL);
  twin_http_stream_printf(st, NULL, "second write: %s", rc == TWIN_EFULL ? "EFULL" : "?");
  twin_http_stream_close(st);
  return 0;
}

/* ============================================================================================
 * fixture: a server with every kind of route, and a static directory
 * ========================================================================================== */

typedef struct fixture {
  twin_metrics *metrics;
  twin_metric *hits;
  twin_http_server *srv;
  int port;
  char dir[64];    /* temp root: web/ is served, secret.txt sits beside it */
  char web[96];
  shared sh;
} fixture;

static void write_file(const char *dir, const char *name, const void *data, size_t n) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static const unsigned char PNG_BYTES[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0x0d};

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  shared_init(&f->sh);
  snprintf(f->dir, sizeof f->dir, "/tmp/twin_http_XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->web, sizeof f->web, "%s/web", f->dir);
  assert_int_equal(mkdir(f->web, 0755), 0);
  char sub[128];
  snprintf(sub, sizeof sub, "%s/sub", f->web);
  assert_int_equal(mkdir(sub, 0755), 0);
  write_file(f->dir, "secret.txt", "TOP-SECRET\n", 11);
  write_file(f->web, "index.html", "<h1>twin</h1>\n", 14);
  write_file(f->web, "app.js", "console.log(1);\n", 16);
  write_file(f->web, "style.css", "body{}\n", 7);
  write_file(f->web, "logo.svg", "<svg/>\n", 7);
  write_file(f->web, "data.json", "{\"a\":1}\n", 8);
  write_file(f->web, "img.png", PNG_BYTES, sizeof PNG_BYTES);
  write_file(f->web, ".hidden", "hidden\n", 7);
  write_file(sub, "index.html", "<p>sub</p>\n", 11);
  char link[160], target[128];
  snprintf(link, sizeof link, "%s/escape.txt", f->web);
  snprintf(target, sizeof target, "%s/secret.txt", f->dir);
  assert_int_equal(symlink(target, link), 0);

  f->metrics = twin_metrics_create();
  twin_err err = {0};
  twin_metric_family *fam;
  assert_int_equal(twin_metrics_counter(f->metrics, "test_hits_total", "Hits.", NULL, &fam, &err), 0);
  f->hits = twin_metric_get(fam);
  twin_counter_add(f->hits, 3);

  twin_http_options o = {.bind_address = "127.0.0.1", .port = 0, .metrics = f->metrics,
                         .max_body_bytes = 4096};
  assert_int_equal(twin_http_server_create(&f->srv, &o, &err), 0);
  assert_int_equal(twin_http_server_route(f->srv, "GET", "/api/echo", echo_handler, NULL, &err), 0);
  assert_int_equal(twin_http_server_route(f->srv, "POST", "/api/echo", echo_handler, NULL, &err), 0);
  assert_int_equal(twin_http_server_route(f->srv, NULL, "/api/any/", echo_handler, NULL, &err), 0);
  assert_int_equal(twin_http_server_route(f->srv, "GET", "/api/fail", fail_handler, NULL, &err), 0);
  assert_int_equal(twin_http_server_route(f->srv, "GET", "/v1/sse", sse_handler, &f->sh, &err), 0);
  assert_int_equal(twin_http_server_route(f->srv, "GET", "/v1/forever", forever_handler, &f->sh, &err), 0);
  assert_int_equal(twin_http_server_route(f->srv, "GET", "/v1/inline", inline_handler, NULL, &err), 0);
  assert_int_equal(twin_http_server_static(f->srv, "/ui/", f->web, &err), 0);
  assert_int_equal(twin_http_server_start(f->srv, &err), 0);
  f->port = twin_http_server_port(f->srv);
  assert_true(f->port > 0 && f->port < 65536);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  twin_http_server_destroy(f->srv);
  if (f->sh.writer_started) pthread_join(f->sh.writer, NULL);
  twin_metrics_destroy(f->metrics);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

/* ============================================================================================
 * tests
 * ========================================================================================== */

static void test_metrics_and_health(void **state) {
  fixture *f = *state;
  reply r = get(f->port, "/metrics");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  assert_string_equal(twin_buf_cstr(&r.body),
                      "# HELP test_hits_total Hits.\n# TYPE test_hits_total counter\ntest_hits_total 3\n");
  reply_free(&r);

  r = get(f->port, "/healthz");
  assert_int_equal(r.status, 200);
  assert_string_equal(twin_buf_cstr(&r.body), "ok\n");
  reply_free(&r);
  twin_http_server_set_health(f->srv, false, "loading model");
  r = get(f->port, "/healthz");
  assert_int_equal(r.status, 503);
  assert_string_equal(twin_buf_cstr(&r.body), "unhealthy: loading model\n");
  reply_free(&r);
  twin_http_server_set_health(f->srv, true, NULL);
  r = get(f->port, "/healthz");
  assert_int_equal(r.status, 200);
  reply_free(&r);

  /* HEAD answers like GET without a body */
  request_opts head = {.method = "HEAD"};
  do_request(f->port, "/healthz", &head, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body.len, 0);
  reply_free(&r);
}

static void test_routes(void **state) {
  fixture *f = *state;
  request_opts o = {.header = "X-Test: hello world"};
  reply r;
  do_request(f->port, "/api/echo?name=a%20b&flag&x=1", &o, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(twin_buf_cstr(&r.body), "GET|/api/echo|name=a%20b&flag&x=1|/api/echo|a b||hello world|0|");
  assert_non_null(strstr(twin_buf_cstr(&r.headers), "X-Echo: yes\r\n"));
  reply_free(&r);

  /* a POST body arrives intact, binary included */
  const char body[] = "{\"q\":\"\xC3\xA9\"}\0tail";
  request_opts post = {.method = "POST", .body = body, .body_len = sizeof body - 1};
  do_request(f->port, "/api/echo", &post, &r);
  assert_int_equal(r.status, 201);
  const char expect_prefix[] = "POST|/api/echo||/api/echo|(null)|(null)|(null)|15|";
  assert_int_equal(r.body.len, sizeof expect_prefix - 1 + sizeof body - 1);
  assert_memory_equal(r.body.data, expect_prefix, sizeof expect_prefix - 1);
  assert_memory_equal(r.body.data + sizeof expect_prefix - 1, body, sizeof body - 1);
  reply_free(&r);

  /* any method under a subtree prefix; the percent-decoded path */
  request_opts del = {.method = "DELETE"};
  do_request(f->port, "/api/any/x%2Fy/z", &del, &r);
  assert_int_equal(r.status, 200);
  assert_true(twin_str_has_prefix(twin_buf_cstr(&r.body), "DELETE|/api/any/x/y/z||/api/any/|"));
  reply_free(&r);

  /* "/api/echo" is exact-or-below: "/api/echoes" is not it */
  r = get(f->port, "/api/echoes");
  assert_int_equal(r.status, 404);
  reply_free(&r);
}

static void test_errors(void **state) {
  fixture *f = *state;
  reply r = get(f->port, "/nope");
  assert_int_equal(r.status, 404);
  assert_string_equal(r.content_type, "application/json");
  assert_string_equal(twin_buf_cstr(&r.body),
                      "{\"error\":{\"message\":\"no route for /nope\",\"type\":\"not_found\",\"code\":404}}\n");
  reply_free(&r);

  r = get(f->port, "/api/fail");
  assert_int_equal(r.status, 503);
  assert_string_equal(twin_buf_cstr(&r.body),
                      "{\"error\":{\"message\":\"backend \\\"llm\\\" is down\",\"type\":\"unavailable\",\"code\":503}}\n");
  reply_free(&r);

  request_opts post = {.method = "POST", .body = "x", .body_len = 1};
  do_request(f->port, "/metrics", &post, &r);
  assert_int_equal(r.status, 405);
  assert_non_null(strstr(twin_buf_cstr(&r.headers), "Allow: GET, HEAD\r\n"));
  reply_free(&r);

  /* bodies over max_body_bytes (4096): declared up front */
  char *big = malloc(5000);
  memset(big, 'b', 5000);
  request_opts too_big = {.method = "POST", .body = big, .body_len = 5000};
  do_request(f->port, "/api/echo", &too_big, &r);
  assert_int_equal(r.status, 413);
  reply_free(&r);
  /* ... and exactly at the limit it passes */
  too_big.body_len = 4096;
  do_request(f->port, "/api/echo", &too_big, &r);
  assert_int_equal(r.status, 201);
  reply_free(&r);
  free(big);
}

static void expect_file(int port, const char *path, const char *ctype, const void *data, size_t n) {
  reply r = get(port, path);
  if (r.status != 200) fail_msg("%s: status %ld", path, r.status);
  assert_string_equal(r.content_type, ctype);
  assert_int_equal(r.body.len, n);
  assert_memory_equal(r.body.data, data, n);
  reply_free(&r);
}

static void test_static_files(void **state) {
  fixture *f = *state;
  expect_file(f->port, "/ui/", "text/html; charset=utf-8", "<h1>twin</h1>\n", 14);
  expect_file(f->port, "/ui/index.html", "text/html; charset=utf-8", "<h1>twin</h1>\n", 14);
  expect_file(f->port, "/ui/app.js", "text/javascript; charset=utf-8", "console.log(1);\n", 16);
  expect_file(f->port, "/ui/style.css", "text/css; charset=utf-8", "body{}\n", 7);
  expect_file(f->port, "/ui/logo.svg", "image/svg+xml", "<svg/>\n", 7);
  expect_file(f->port, "/ui/data.json", "application/json", "{\"a\":1}\n", 8);
  expect_file(f->port, "/ui/img.png", "image/png", PNG_BYTES, sizeof PNG_BYTES);
  expect_file(f->port, "/ui/sub/", "text/html; charset=utf-8", "<p>sub</p>\n", 11);
  expect_file(f->port, "/ui/sub", "text/html; charset=utf-8", "<p>sub</p>\n", 11);

  static const char *refused[] = {
      "/ui/../secret.txt",       "/ui/sub/../../secret.txt", "/ui/%2e%2e/secret.txt",
      "/ui/..%2fsecret.txt",     "/ui/escape.txt",           "/ui/.hidden",
      "/ui/sub/./index.html",    "/ui/missing.html",         "/ui//etc/passwd",
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    reply r = get(f->port, refused[i]);
    if (r.status != 404) fail_msg("%s: status %ld", refused[i], r.status);
    if (strstr(twin_buf_cstr(&r.body), "TOP-SECRET") || strstr(twin_buf_cstr(&r.body), "root:"))
      fail_msg("%s leaked a file", refused[i]);
    reply_free(&r);
  }
  request_opts post = {.method = "POST", .body = "x", .body_len = 1};
  reply r;
  do_request(f->port, "/ui/index.html", &post, &r);
  assert_int_equal(r.status, 405);
  reply_free(&r);
}

static void test_sse_stream(void **state) {
  fixture *f = *state;
  request_opts o = {.on_data = mark_client_got_data, .user = &f->sh};
  reply r;
  do_request(f->port, "/v1/sse", &o, &r);
  assert_int_equal(r.curl_rc, CURLE_OK);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.content_type, "text/event-stream");
  assert_non_null(strstr(twin_buf_cstr(&r.headers), "Cache-Control: no-cache\r\n"));
  assert_non_null(strstr(twin_buf_cstr(&r.headers), "Transfer-Encoding: chunked\r\n"));
  assert_string_equal(twin_buf_cstr(&r.body),
                      "event: token\ndata: 0\n\n"
                      "event: token\ndata: 1\n\n"
                      "event: token\ndata: 2\n\n"
                      "event: token\ndata: 3\n\n"
                      "event: token\ndata: 4\n\n"
                      "data: line1\ndata: line2\ndata: line3\n\n"
                      "data: [DONE]\n\n");
  /* the first event reached the client while the producer was still running */
  assert_false(f->sh.producer_late);
  reply_free(&r);
}

static void test_stream_written_by_handler(void **state) {
  fixture *f = *state;
  reply r = get(f->port, "/v1/inline");
  assert_int_equal(r.status, 202);
  const size_t first = (1u << 20) - 64;
  assert_int_equal(r.body.len, first + strlen("|second write: EFULL"));
  assert_string_equal(r.body.data + first, "|second write: EFULL");
  reply_free(&r);
}

static void run_cancel(fixture *f, bool idle) {
  f->sh.idle_writer = idle;
  request_opts o = {.abort_after = 1}; /* hang up after the first bytes */
  reply r;
  int64_t t0 = twin_time_mono_ms();
  do_request(f->port, "/v1/forever", &o, &r);
  assert_int_equal(r.curl_rc, CURLE_WRITE_ERROR);
  assert_true(twin_str_has_prefix(twin_buf_cstr(&r.body), "data: first\n\n"));
  reply_free(&r);
  assert_true(wait_flag(&f->sh, &f->sh.writer_done, 5000));
  assert_int_equal(f->sh.writer_rc, TWIN_ECANCELLED);
  /* noticed promptly: the poll interval is 200 ms */
  assert_true(f->sh.cancel_seen_ms - t0 < 3000);
  pthread_join(f->sh.writer, NULL);
  f->sh.writer_started = false;
}

static void test_stream_cancelled_by_client(void **state) { run_cancel(*state, false); }
static void test_idle_stream_cancelled_by_client(void **state) { run_cancel(*state, true); }

typedef struct client_args {
  int port;
  reply r;
} client_args;

static void *client_main(void *arg) {
  client_args *c = arg;
  request_opts o = {.timeout_s = 30};
  do_request(c->port, "/v1/forever", &o, &c->r);
  return NULL;
}

static void test_stop_with_open_stream(void **state) {
  fixture *f = *state;
  client_args c = {.port = f->port};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_main, &c), 0);
  /* wait until the stream is flowing */
  int64_t deadline = twin_time_mono_ms() + 5000;
  while (twin_time_mono_ms() < deadline) {
    pthread_mutex_lock(&f->sh.mu);
    bool started = f->sh.writer_started;
    pthread_mutex_unlock(&f->sh.mu);
    if (started) break;
    twin_sleep_ms(5);
  }
  twin_sleep_ms(100);
  int64_t t0 = twin_time_mono_ms();
  twin_http_server_stop(f->srv);
  assert_true(twin_time_mono_ms() - t0 < 5000);
  pthread_join(th, NULL);
  assert_true(wait_flag(&f->sh, &f->sh.writer_done, 5000));
  assert_int_equal(f->sh.writer_rc, TWIN_ECANCELLED);
  assert_true(twin_str_has_prefix(twin_buf_cstr(&c.r.body), "data: first\n\n"));
  assert_int_not_equal(c.r.curl_rc, CURLE_OK); /* cut off, not a clean end */
  reply_free(&c.r);
  twin_http_server_stop(f->srv); /* twice is fine */
}

static void test_server_errors(void **state) {
  fixture *f = *state;
  twin_err err = {0};
  /* the port is taken */
  twin_http_server *other;
  twin_http_options o = {.bind_address = "127.0.0.1", .port = f->port};
  assert_int_equal(twin_http_server_create(&other, &o, &err), 0);
  assert_int_equal(twin_http_server_start(other, &err), TWIN_EIO);
  char want[64];
  snprintf(want, sizeof want, "127.0.0.1:%d", f->port);
  assert_non_null(strstr(err.msg, want));
  /* routes: duplicates, bad prefixes, built-ins */
  assert_int_equal(twin_http_server_route(other, "GET", "/metrics", echo_handler, NULL, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "http route GET /metrics is already registered");
  assert_int_equal(twin_http_server_route(other, "GET", "api", echo_handler, NULL, &err), TWIN_EINVAL);
  assert_int_equal(twin_http_server_static(other, "/s/", "/nonexistent/dir", &err), TWIN_ENOTFOUND);
  twin_http_server_destroy(other);
  /* adding a route after start */
  assert_int_equal(twin_http_server_route(f->srv, "GET", "/late", echo_handler, NULL, &err), TWIN_EINVAL);
  /* bad options */
  o.port = 70000;
  assert_int_equal(twin_http_server_create(&other, &o, &err), TWIN_EINVAL);
  o.port = 0;
  o.bind_address = "not-an-ip";
  assert_int_equal(twin_http_server_create(&other, &o, &err), 0);
  assert_int_equal(twin_http_server_start(other, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "not-an-ip"));
  twin_http_server_destroy(other);
}

static void test_status_mapping(void **state) {
  (void)state;
  assert_int_equal(twin_http_status_for(TWIN_EINVAL), 400);
  assert_int_equal(twin_http_status_for(TWIN_ENOTFOUND), 404);
  assert_int_equal(twin_http_status_for(TWIN_EFULL), 429);
  assert_int_equal(twin_http_status_for(TWIN_EUNAVAILABLE), 503);
  assert_int_equal(twin_http_status_for(TWIN_ETIMEOUT), 504);
  assert_int_equal(twin_http_status_for(TWIN_EIO), 500);
  assert_string_equal(twin_http_content_type_for("a/b.c/file"), "application/octet-stream");
  assert_string_equal(twin_http_content_type_for("x.HTML"), "text/html; charset=utf-8");
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_metrics_and_health, setup, teardown),
      cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_static_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sse_stream, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_written_by_handler, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_cancelled_by_client, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idle_stream_cancelled_by_client, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stop_with_open_stream, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_errors, setup, teardown),
      cmocka_unit_test(test_status_mapping),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
