/* monitor-svc/http_api.c — the dashboard's JSON API and static files.
 *   GET /api/traces?since_ms&until_ms&model&template_name&text&errors_only&page_size&page_token
 *       -> {"traces": [row...], "next_page_token", "total", "total_partial"}  (rows: the list
 *          columns, query and answer cut to 240 bytes)
 *   GET /api/traces/{id}  -> the stored trace record (the contract's JSON object)
 *   GET /api/stats?window_ms&until_ms&model&template_name&buckets -> statistics and series
 *   GET /api/facets       -> {"models": [...], "templates": [...]}
 *   GET /api/status       -> the consumer's state (redis, lag, pending, stream, stored)
 * Parameters are named as in monitor.proto, so errors ("page_size: ...", HTTP 400) match. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "monitor-svc/api.h"
#include "monitor-svc/query.h"
#include "monitor-svc/trace_format.h"

#define ROW_TEXT_MAX 240

/* ============================================================================================
 * parameters
 * ========================================================================================== */

static int arg_int64(const twin_http_request *req, const char *name, int64_t *out, twin_err *err) {
  const char *v = twin_http_request_arg(req, name);
  *out = 0;
  if (!v || !*v) return 0;
  if (twin_parse_int64(v, out, NULL) != 0)
    return twin_err_set(err, TWIN_EINVAL, "%s: '%.64s' is not an integer", name, v);
  return 0;
}

static int arg_uint32(const twin_http_request *req, const char *name, uint32_t *out, twin_err *err) {
  int64_t v;
  int rc = arg_int64(req, name, &v, err);
  if (rc) return rc;
  if (v < 0 || v > UINT32_MAX) return twin_err_set(err, TWIN_EINVAL, "%s: %lld is out of range", name, (long long)v);
  *out = (uint32_t)v;
  return 0;
}

static int arg_bool(const twin_http_request *req, const char *name, bool *out, twin_err *err) {
  const char *v = twin_http_request_arg(req, name);
  *out = false;
  if (!v) return 0;
  if (!*v) {
    *out = true; /* a bare "?errors_only" */
    return 0;
  }
  if (twin_parse_bool(v, out, NULL) != 0)
    return twin_err_set(err, TWIN_EINVAL, "%s: '%.64s' is not a boolean", name, v);
  return 0;
}

static const char *arg_str(const twin_http_request *req, const char *name) {
  const char *v = twin_http_request_arg(req, name);
  return v ? v : "";
}

static int borrow(monitor_api *api, twin_redis **r, twin_err *err) {
  int rc = twin_redis_pool_acquire(api->pool, api->pool_wait_ms, r, err);
  if (rc == TWIN_EFULL) rc = err->code = TWIN_EUNAVAILABLE;
  return rc;
}

static int send_json(twin_http_response *resp, twin_buf *b, twin_err *err) {
  if (b->failed) {
    twin_buf_free(b);
    return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  }
  int rc = twin_http_response_set(resp, 200, "application/json", b->data ? b->data : "{}", b->len);
  twin_buf_free(b);
  if (rc) return twin_err_set(err, rc, "out of memory");
  twin_http_response_header(resp, "Cache-Control", "no-store", NULL);
  return 0;
}

static void json_key(twin_buf *b, const char *k) {
  twin_buf_append_json_string(b, k, strlen(k));
  twin_buf_putc(b, ':');
}

static void json_str(twin_buf *b, const char *k, const char *v) {
  json_key(b, k);
  twin_buf_append_json_string(b, v ? v : "", v ? strlen(v) : 0);
}

/* A prefix of at most max bytes that ends on a character boundary. */
static void json_str_cut(twin_buf *b, const char *k, const char *v, size_t max) {
  size_t n = strlen(v);
  if (n > max) n = twin_utf8_complete_len(v, max);
  json_key(b, k);
  twin_buf_append_json_string(b, v, n);
}

/* Appends ,"key":v with v in the shortest form that reads back exactly. */
static void num_field(twin_buf *b, const char *key, double v) {
  char tmp[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  twin_buf_printf(b, ",\"%s\":%s", key, tmp);
}

static void uint_field(twin_buf *b, const char *key, unsigned long long v) {
  twin_buf_printf(b, ",\"%s\":%llu", key, v);
}

/* ============================================================================================
 * /api/traces
 * ========================================================================================== */

static void append_row(twin_buf *b, const monitor_trace *t) {
  twin_buf_putc(b, '{');
  json_str(b, "trace_id", t->trace_id);
  twin_buf_printf(b, ",\"time_ms\":%lld,", (long long)t->time_ms);
  json_str(b, "model", t->model);
  twin_buf_putc(b, ',');
  json_str(b, "template_name", t->template_name);
  twin_buf_putc(b, ',');
  json_str(b, "template_version", t->template_version);
  twin_buf_putc(b, ',');
  json_str_cut(b, "query", t->query, ROW_TEXT_MAX);
  twin_buf_putc(b, ',');
  json_str_cut(b, "answer", t->answer, ROW_TEXT_MAX);
  twin_buf_putc(b, ',');
  json_str(b, "error", t->error);
  num_field(b, "total_ms", t->total_ms);
  num_field(b, "ttft_ms", t->ttft_ms);
  uint_field(b, "prompt_tokens", t->prompt_tokens);
  uint_field(b, "completion_tokens", t->completion_tokens);
  num_field(b, "cost_usd", t->cost_usd);
  twin_buf_printf(b, ",\"cache_hit\":%s,\"n_sources\":%d}", t->cache_hit ? "true" : "false",
                  t->sources ? cJSON_GetArraySize(t->sources) : 0);
}

static int list_handler(monitor_api *api, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  monitor_list_query q = {0};
  int rc;
  if ((rc = arg_int64(req, "since_ms", &q.since_ms, err)) || (rc = arg_int64(req, "until_ms", &q.until_ms, err)) ||
      (rc = arg_uint32(req, "page_size", &q.page_size, err)) || (rc = arg_bool(req, "errors_only", &q.errors_only, err)))
    return rc;
  q.model = arg_str(req, "model");
  q.template_name = arg_str(req, "template_name");
  q.text = arg_str(req, "text");
  q.page_token = arg_str(req, "page_token");
  if ((rc = monitor_list_validate(&q, err)) != 0) return rc;
  twin_redis *r;
  if ((rc = borrow(api, &r, err)) != 0) return rc;
  monitor_list_page page;
  rc = monitor_list(r, api->store, &q, api->max_scan, &page, err);
  twin_redis_pool_release(api->pool, r);
  if (rc) return rc;
  twin_buf b = {0};
  twin_buf_puts(&b, "{\"traces\":[");
  size_t shown = 0;
  for (size_t i = 0; i < page.n; i++) {
    monitor_trace t;
    twin_err perr;
    if (monitor_trace_parse(page.docs[i], page.doc_lens[i], &t, NULL, &perr) != 0) {
      LOG_WARN("/api/traces: skipping a record: %s", perr.msg);
      continue;
    }
    if (shown++) twin_buf_putc(&b, ',');
    append_row(&b, &t);
    monitor_trace_free(&t);
  }
  twin_buf_puts(&b, "],");
  json_str(&b, "next_page_token", page.next_page_token);
  twin_buf_printf(&b, ",\"total\":%llu,\"total_partial\":%s}", (unsigned long long)page.total,
                  page.total_partial ? "true" : "false");
  monitor_list_page_free(&page);
  return send_json(resp, &b, err);
}

static int get_handler(monitor_api *api, const char *id, twin_http_response *resp, twin_err *err) {
  if (!monitor_trace_id_valid(id, strlen(id)))
    return twin_err_set(err, TWIN_EINVAL, "trace_id: must be 1-%d characters of A-Z a-z 0-9 . _ : -",
                        TWIN_TRACE_ID_MAX_LEN);
  twin_redis *r;
  int rc = borrow(api, &r, err);
  if (rc) return rc;
  char *doc = NULL;
  size_t len = 0;
  rc = monitor_store_get(r, api->store, id, &doc, &len, err);
  twin_redis_pool_release(api->pool, r);
  if (rc) return rc;
  rc = twin_http_response_set(resp, 200, "application/json", doc, len);
  free(doc);
  if (rc) return twin_err_set(err, rc, "out of memory");
  twin_http_response_header(resp, "Cache-Control", "no-store", NULL);
  return 0;
}

static int traces_route(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  monitor_api *api = user;
  const char *rest = req->path + strlen("/api/traces");
  if (*rest == 0 || strcmp(rest, "/") == 0) return list_handler(api, req, resp, err);
  return get_handler(api, rest + 1, resp, err);
}

/* ============================================================================================
 * /api/stats
 * ========================================================================================== */

static void append_group(twin_buf *b, const monitor_group_stats *g) {
  twin_buf_putc(b, '{');
  json_str(b, "key", g->key);
  uint_field(b, "count", g->count);
  uint_field(b, "errors", g->errors);
  num_field(b, "error_rate", g->error_rate);
  num_field(b, "latency_p50_ms", g->latency_p50_ms);
  num_field(b, "latency_p90_ms", g->latency_p90_ms);
  num_field(b, "latency_p99_ms", g->latency_p99_ms);
  num_field(b, "ttft_p50_ms", g->ttft_p50_ms);
  num_field(b, "ttft_p90_ms", g->ttft_p90_ms);
  num_field(b, "ttft_p99_ms", g->ttft_p99_ms);
  uint_field(b, "prompt_tokens", g->prompt_tokens);
  uint_field(b, "completion_tokens", g->completion_tokens);
  num_field(b, "cost_usd", g->cost_usd);
  num_field(b, "cache_hit_rate", g->cache_hit_rate);
  twin_buf_putc(b, '}');
}

static int stats_route(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  monitor_api *api = user;
  monitor_stats_query q = {0};
  int rc;
  if ((rc = arg_int64(req, "window_ms", &q.window_ms, err)) || (rc = arg_int64(req, "until_ms", &q.until_ms, err)) ||
      (rc = arg_uint32(req, "buckets", &q.buckets, err)))
    return rc;
  q.model = arg_str(req, "model");
  q.template_name = arg_str(req, "template_name");
  if ((rc = monitor_stats_validate(&q, err)) != 0) return rc;
  twin_redis *r;
  if ((rc = borrow(api, &r, err)) != 0) return rc;
  monitor_stats st;
  rc = monitor_stats_run(r, api->store, &q, twin_time_wall_ms(), &st, err);
  twin_redis_pool_release(api->pool, r);
  if (rc) return rc;
  twin_buf b = {0};
  twin_buf_printf(&b, "{\"since_ms\":%lld,\"until_ms\":%lld,\"window_ms\":%lld,\"bucket_ms\":%lld,\"overall\":",
                  (long long)st.since_ms, (long long)st.until_ms, (long long)(st.until_ms - st.since_ms),
                  (long long)st.bucket_ms);
  append_group(&b, &st.overall);
  twin_buf_puts(&b, ",\"per_model\":[");
  for (size_t i = 0; i < st.n_per_model; i++) {
    if (i) twin_buf_putc(&b, ',');
    append_group(&b, &st.per_model[i]);
  }
  twin_buf_puts(&b, "],\"per_template\":[");
  for (size_t i = 0; i < st.n_per_template; i++) {
    if (i) twin_buf_putc(&b, ',');
    append_group(&b, &st.per_template[i]);
  }
  twin_buf_puts(&b, "],\"series\":[");
  for (size_t i = 0; i < st.n_series; i++) {
    const monitor_bucket_stats *k = &st.series[i];
    twin_buf_printf(&b, "%s{\"start_ms\":%lld", i ? "," : "", (long long)k->start_ms);
    uint_field(&b, "count", k->count);
    uint_field(&b, "errors", k->errors);
    num_field(&b, "latency_p50_ms", k->latency_p50_ms);
    num_field(&b, "latency_p90_ms", k->latency_p90_ms);
    num_field(&b, "latency_p99_ms", k->latency_p99_ms);
    num_field(&b, "ttft_p50_ms", k->ttft_p50_ms);
    num_field(&b, "ttft_p99_ms", k->ttft_p99_ms);
    uint_field(&b, "prompt_tokens", k->prompt_tokens);
    uint_field(&b, "completion_tokens", k->completion_tokens);
    num_field(&b, "cost_usd", k->cost_usd);
    twin_buf_putc(&b, '}');
  }
  twin_buf_puts(&b, "]}");
  monitor_stats_free(&st);
  return send_json(resp, &b, err);
}

/* ============================================================================================
 * /api/facets, /api/status
 * ========================================================================================== */

static void append_names(twin_buf *b, char **names, size_t n) {
  twin_buf_putc(b, '[');
  for (size_t i = 0; i < n; i++) {
    if (i) twin_buf_putc(b, ',');
    twin_buf_append_json_string(b, names[i], strlen(names[i]));
  }
  twin_buf_putc(b, ']');
}

static int facets_route(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  (void)req;
  monitor_api *api = user;
  twin_redis *r;
  int rc = borrow(api, &r, err);
  if (rc) return rc;
  char **models = NULL, **templates = NULL;
  size_t n_models = 0, n_templates = 0;
  rc = monitor_store_names(r, api->store, false, &models, &n_models, err);
  if (!rc) rc = monitor_store_names(r, api->store, true, &templates, &n_templates, err);
  twin_redis_pool_release(api->pool, r);
  if (rc) {
    monitor_store_free_names(models, n_models);
    return rc;
  }
  twin_buf b = {0};
  twin_buf_puts(&b, "{\"models\":");
  append_names(&b, models, n_models);
  twin_buf_puts(&b, ",\"templates\":");
  append_names(&b, templates, n_templates);
  twin_buf_putc(&b, '}');
  monitor_store_free_names(models, n_models);
  monitor_store_free_names(templates, n_templates);
  return send_json(resp, &b, err);
}

static int status_route(void *user, const twin_http_request *req, twin_http_response *resp, twin_err *err) {
  (void)req;
  monitor_api *api = user;
  monitor_consumer_status st = {.lag = -1};
  if (api->consumer) monitor_consumer_get_status(api->consumer, &st);
  twin_buf b = {0};
  twin_buf_putc(&b, '{');
  json_str(&b, "stream", api->stream);
  twin_buf_putc(&b, ',');
  json_str(&b, "group", api->group);
  twin_buf_putc(&b, ',');
  json_str(&b, "consumer", api->consumer_name);
  twin_buf_printf(&b,
                  ",\"redis_up\":%s,\"lag\":%lld,\"pending\":%lld,\"stream_length\":%lld,\"stored_traces\":%lld,"
                  "\"last_entry_ms\":%lld,\"now_ms\":%lld}",
                  st.redis_up ? "true" : "false", (long long)st.lag, (long long)st.pending, (long long)st.stream_length,
                  (long long)st.stored_traces, (long long)st.last_entry_ms, (long long)twin_time_wall_ms());
  return send_json(resp, &b, err);
}

int monitor_http_register(twin_http_server *s, monitor_api *api, const char *web_dir, twin_err *err) {
  int rc;
  if ((rc = twin_http_server_route(s, "GET", "/api/traces", traces_route, api, err)) ||
      (rc = twin_http_server_route(s, "GET", "/api/stats", stats_route, api, err)) ||
      (rc = twin_http_server_route(s, "GET", "/api/facets", facets_route, api, err)) ||
      (rc = twin_http_server_route(s, "GET", "/api/status", status_route, api, err)))
    return rc;
  if (web_dir && (rc = twin_http_server_static(s, "/", web_dir, err)) != 0) return rc;
  return 0;
}
