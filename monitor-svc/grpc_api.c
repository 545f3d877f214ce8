/* monitor-svc/grpc_api.c — twin.monitor.v1.MonitorService over the rpc server: unpack the
 * request, validate (INVALID_ARGUMENT naming the field), borrow a Redis connection, run the
 * query (query.h), turn stored trace records into Trace messages, reply. Redis down is
 * UNAVAILABLE; an absent trace NOT_FOUND. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "monitor-svc/api.h"
#include "monitor-svc/query.h"
#include "monitor-svc/trace_format.h"
#include "proto/monitor.pb-c.h"

/* A ListTraces response stays under this (clients' default receive limit is 4 MiB); a page of
 * large traces ends early with a token that continues it. */
#define MONITOR_LIST_MAX_BYTES (3u << 20)

/* ============================================================================================
 * a stored record -> a Trace message
 * ========================================================================================== */

/* A Trace message and what it points into (the parsed record, the arrays, printed JSON). */
typedef struct trace_msg {
  Twin__Monitor__V1__Trace m;
  monitor_trace t;
  Twin__Monitor__V1__TraceSource *sources;      /* [n_sources] */
  Twin__Monitor__V1__TraceSource **source_ptrs; /* [n_sources] */
  Twin__Monitor__V1__StageLatency *stages;      /* [n_stages] */
  Twin__Monitor__V1__StageLatency **stage_ptrs; /* [n_stages] */
  char *variables_json, *sampling_json;
} trace_msg;

static char *str_or_empty(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) && v->valuestring ? v->valuestring : (char *)"";
}

static void trace_msg_free(trace_msg *tm) {
  monitor_trace_free(&tm->t);
  free(tm->sources);
  free(tm->source_ptrs);
  free(tm->stages);
  free(tm->stage_ptrs);
  cJSON_free(tm->variables_json);
  cJSON_free(tm->sampling_json);
  memset(tm, 0, sizeof *tm);
}

static int trace_msg_build(trace_msg *tm, const char *doc, size_t len, twin_err *err) {
  memset(tm, 0, sizeof *tm);
  if (monitor_trace_parse(doc, len, &tm->t, NULL, err) != 0) return twin_err_wrap(err, "stored trace");
  monitor_trace *t = &tm->t;
  Twin__Monitor__V1__Trace *m = &tm->m;
  twin__monitor__v1__trace__init(m);
  m->trace_id = (char *)t->trace_id;
  m->time_ms = t->time_ms;
  m->query = (char *)t->query;
  m->template_name = (char *)t->template_name;
  m->template_version = (char *)t->template_version;
  m->prompt = (char *)t->prompt;
  m->answer = (char *)t->answer;
  m->model = (char *)t->model;
  m->error = (char *)t->error;
  m->prompt_tokens = t->prompt_tokens;
  m->completion_tokens = t->completion_tokens;
  m->ttft_ms = t->ttft_ms;
  m->total_ms = t->total_ms;
  m->cost_usd = t->cost_usd;
  m->cache_hit = t->cache_hit;
  tm->variables_json = t->variables ? cJSON_PrintUnformatted(t->variables) : NULL;
  tm->sampling_json = t->sampling ? cJSON_PrintUnformatted(t->sampling) : NULL;
  m->variables_json = tm->variables_json ? tm->variables_json : (char *)"{}";
  m->sampling_json = tm->sampling_json ? tm->sampling_json : (char *)"{}";
  int n_src = t->sources ? cJSON_GetArraySize(t->sources) : 0;
  int n_stg = t->stages ? cJSON_GetArraySize(t->stages) : 0;
  if (n_src > 0) {
    tm->sources = calloc((size_t)n_src, sizeof *tm->sources);
    tm->source_ptrs = calloc((size_t)n_src, sizeof *tm->source_ptrs);
    if (!tm->sources || !tm->source_ptrs) goto nomem;
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, t->sources) {
      Twin__Monitor__V1__TraceSource *src = &tm->sources[i];
      twin__monitor__v1__trace_source__init(src);
      src->chunk_id = str_or_empty(s, TWIN_TRACE_KEY_SOURCE_CHUNK_ID);
      src->doc_id = str_or_empty(s, TWIN_TRACE_KEY_SOURCE_DOC_ID);
      src->snippet = str_or_empty(s, TWIN_TRACE_KEY_SOURCE_SNIPPET);
      const cJSON *score = cJSON_GetObjectItemCaseSensitive(s, TWIN_TRACE_KEY_SOURCE_SCORE);
      src->score = cJSON_IsNumber(score) ? (float)score->valuedouble : 0.0f;
      tm->source_ptrs[i++] = src;
    }
    m->n_sources = (size_t)i;
    m->sources = tm->source_ptrs;
  }
  if (n_stg > 0) {
    tm->stages = calloc((size_t)n_stg, sizeof *tm->stages);
    tm->stage_ptrs = calloc((size_t)n_stg, sizeof *tm->stage_ptrs);
    if (!tm->stages || !tm->stage_ptrs) goto nomem;
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, t->stages) {
      Twin__Monitor__V1__StageLatency *st = &tm->stages[i];
      twin__monitor__v1__stage_latency__init(st);
      st->stage = str_or_empty(s, TWIN_TRACE_KEY_STAGE_NAME);
      const cJSON *ms = cJSON_GetObjectItemCaseSensitive(s, TWIN_TRACE_KEY_STAGE_MS);
      st->ms = cJSON_IsNumber(ms) ? ms->valuedouble : 0;
      tm->stage_ptrs[i++] = st;
    }
    m->n_stages = (size_t)i;
    m->stages = tm->stage_ptrs;
  }
  return 0;
nomem:
  trace_msg_free(tm);
  return twin_err_set(err, TWIN_ENOMEM, "out of memory");
}

/* ============================================================================================
 * helpers
 * ========================================================================================== */

static void reply_message(twin_rpc_call *call, const ProtobufCMessage *msg) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    twin_rpc_call_fail(call, TWIN_RPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  protobuf_c_message_pack(msg, buf);
  twin_rpc_call_reply(call, buf, n);
  free(buf);
}

static void fail_with(twin_rpc_call *call, int code, const twin_err *err) {
  twin_rpc_code c = twin_rpc_code_from_err(code);
  if (code == TWIN_EFULL) c = TWIN_RPC_UNAVAILABLE; /* every pooled connection busy: try again */
  if (c == TWIN_RPC_INTERNAL || c == TWIN_RPC_UNKNOWN) LOG_ERROR("%s: %s", twin_rpc_call_method(call), err->msg);
  twin_rpc_call_finish(call, c, err->msg);
}

static char *nz(char *s) { return s ? s : (char *)""; }

/* ============================================================================================
 * ListTraces
 * ========================================================================================== */

static void list_traces(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  monitor_api *api = user;
  Twin__Monitor__V1__ListTracesRequest *r = twin__monitor__v1__list_traces_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "request: not a ListTracesRequest");
    return;
  }
  monitor_list_query q = {.since_ms = r->since_ms, .until_ms = r->until_ms, .model = nz(r->model),
                          .template_name = nz(r->template_name), .text = nz(r->text), .errors_only = r->errors_only,
                          .page_size = r->page_size, .page_token = nz(r->page_token)};
  twin_err err = {0};
  twin_redis *redis = NULL;
  monitor_list_page page = {0};
  trace_msg *msgs = NULL;
  int rc = monitor_list_validate(&q, &err);
  if (!rc) rc = twin_redis_pool_acquire(api->pool, api->pool_wait_ms, &redis, &err);
  if (!rc) {
    rc = monitor_list(redis, api->store, &q, api->max_scan, &page, &err);
    twin_redis_pool_release(api->pool, redis);
  }
  if (rc) {
    fail_with(call, rc, &err);
    goto out;
  }
  msgs = calloc(page.n ? page.n : 1, sizeof *msgs);
  Twin__Monitor__V1__Trace **ptrs = calloc(page.n ? page.n : 1, sizeof *ptrs);
  if (!msgs || !ptrs) {
    free(ptrs);
    twin_rpc_call_fail(call, TWIN_RPC_RESOURCE_EXHAUSTED, "out of memory");
    goto out;
  }
  size_t n = 0, bytes = 0;
  char cut_token[MONITOR_TOKEN_MAX] = "";
  for (size_t i = 0; i < page.n; i++) {
    if (trace_msg_build(&msgs[n], page.docs[i], page.doc_lens[i], &err) != 0) {
      LOG_WARN("ListTraces: skipping a record: %s", err.msg);
      continue;
    }
    size_t size = twin__monitor__v1__trace__get_packed_size(&msgs[n].m) + 8;
    if (n > 0 && bytes + size > MONITOR_LIST_MAX_BYTES) {
      /* large traces: end the page here, the token continues after the last one sent */
      trace_msg_free(&msgs[n]);
      monitor_list_token(msgs[n - 1].m.time_ms, msgs[n - 1].m.trace_id, page.total, page.total_partial, cut_token);
      break;
    }
    bytes += size;
    ptrs[n] = &msgs[n].m;
    n++;
  }
  Twin__Monitor__V1__ListTracesResponse resp = TWIN__MONITOR__V1__LIST_TRACES_RESPONSE__INIT;
  resp.n_traces = n;
  resp.traces = ptrs;
  resp.next_page_token = *cut_token ? cut_token : page.next_page_token;
  resp.total = page.total;
  resp.total_partial = page.total_partial;
  reply_message(call, &resp.base);
  for (size_t i = 0; i < n; i++) trace_msg_free(&msgs[i]);
  free(ptrs);
out:
  free(msgs);
  monitor_list_page_free(&page);
  twin__monitor__v1__list_traces_request__free_unpacked(r, NULL);
}

/* ============================================================================================
 * GetTrace
 * ========================================================================================== */

static void get_trace(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  monitor_api *api = user;
  Twin__Monitor__V1__GetTraceRequest *r = twin__monitor__v1__get_trace_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "request: not a GetTraceRequest");
    return;
  }
  const char *id = nz(r->trace_id);
  twin_err err = {0};
  int rc = 0;
  if (!*id)
    rc = twin_err_set(&err, TWIN_EINVAL, "trace_id: empty");
  else if (!monitor_trace_id_valid(id, strlen(id)))
    rc = twin_err_set(&err, TWIN_EINVAL, "trace_id: must be 1-%d characters of A-Z a-z 0-9 . _ : -",
                      TWIN_TRACE_ID_MAX_LEN);
  twin_redis *redis = NULL;
  char *doc = NULL;
  size_t doc_len = 0;
  if (!rc) rc = twin_redis_pool_acquire(api->pool, api->pool_wait_ms, &redis, &err);
  if (!rc) {
    rc = monitor_store_get(redis, api->store, id, &doc, &doc_len, &err);
    twin_redis_pool_release(api->pool, redis);
  }
  trace_msg tm;
  if (!rc) rc = trace_msg_build(&tm, doc, doc_len, &err);
  if (rc) {
    if (rc == TWIN_EFORMAT) rc = TWIN_EINTERNAL; /* a record we wrote does not read back */
    fail_with(call, rc, &err);
  } else {
    reply_message(call, &tm.m.base);
    trace_msg_free(&tm);
  }
  free(doc);
  twin__monitor__v1__get_trace_request__free_unpacked(r, NULL);
}

/* ============================================================================================
 * GetStats
 * ========================================================================================== */

static void group_to_proto(const monitor_group_stats *g, Twin__Monitor__V1__GroupStats *p) {
  twin__monitor__v1__group_stats__init(p);
  p->key = g->key ? g->key : (char *)"";
  p->count = g->count;
  p->errors = g->errors;
  p->error_rate = g->error_rate;
  p->latency_p50_ms = g->latency_p50_ms;
  p->latency_p90_ms = g->latency_p90_ms;
  p->latency_p99_ms = g->latency_p99_ms;
  p->ttft_p50_ms = g->ttft_p50_ms;
  p->ttft_p90_ms = g->ttft_p90_ms;
  p->ttft_p99_ms = g->ttft_p99_ms;
  p->prompt_tokens = g->prompt_tokens;
  p->completion_tokens = g->completion_tokens;
  p->cost_usd = g->cost_usd;
  p->cache_hit_rate = g->cache_hit_rate;
}

static void get_stats(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  monitor_api *api = user;
  Twin__Monitor__V1__GetStatsRequest *r = twin__monitor__v1__get_stats_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "request: not a GetStatsRequest");
    return;
  }
  monitor_stats_query q = {.window_ms = r->window_ms, .until_ms = r->until_ms, .model = nz(r->model),
                           .template_name = nz(r->template_name), .buckets = r->buckets};
  twin_err err = {0};
  twin_redis *redis = NULL;
  monitor_stats st = {0};
  int rc = monitor_stats_validate(&q, &err);
  if (!rc) rc = twin_redis_pool_acquire(api->pool, api->pool_wait_ms, &redis, &err);
  if (!rc) {
    rc = monitor_stats_run(redis, api->store, &q, twin_time_wall_ms(), &st, &err);
    twin_redis_pool_release(api->pool, redis);
  }
  if (rc) {
    fail_with(call, rc, &err);
    twin__monitor__v1__get_stats_request__free_unpacked(r, NULL);
    return;
  }
  Twin__Monitor__V1__GroupStats overall;
  Twin__Monitor__V1__GroupStats *pm = calloc(st.n_per_model + 1, sizeof *pm);
  Twin__Monitor__V1__GroupStats **pm_p = calloc(st.n_per_model + 1, sizeof *pm_p);
  Twin__Monitor__V1__GroupStats *pt = calloc(st.n_per_template + 1, sizeof *pt);
  Twin__Monitor__V1__GroupStats **pt_p = calloc(st.n_per_template + 1, sizeof *pt_p);
  Twin__Monitor__V1__StatsBucket *bk = calloc(st.n_series + 1, sizeof *bk);
  Twin__Monitor__V1__StatsBucket **bk_p = calloc(st.n_series + 1, sizeof *bk_p);
  if (!pm || !pm_p || !pt || !pt_p || !bk || !bk_p) {
    twin_rpc_call_fail(call, TWIN_RPC_RESOURCE_EXHAUSTED, "out of memory");
  } else {
    Twin__Monitor__V1__Stats resp = TWIN__MONITOR__V1__STATS__INIT;
    group_to_proto(&st.overall, &overall);
    resp.overall = &overall;
    for (size_t i = 0; i < st.n_per_model; i++) {
      group_to_proto(&st.per_model[i], &pm[i]);
      pm_p[i] = &pm[i];
    }
    for (size_t i = 0; i < st.n_per_template; i++) {
      group_to_proto(&st.per_template[i], &pt[i]);
      pt_p[i] = &pt[i];
    }
    for (size_t i = 0; i < st.n_series; i++) {
      const monitor_bucket_stats *b = &st.series[i];
      Twin__Monitor__V1__StatsBucket *p = &bk[i];
      twin__monitor__v1__stats_bucket__init(p);
      p->start_ms = b->start_ms;
      p->count = b->count;
      p->errors = b->errors;
      p->latency_p50_ms = b->latency_p50_ms;
      p->latency_p90_ms = b->latency_p90_ms;
      p->latency_p99_ms = b->latency_p99_ms;
      p->ttft_p50_ms = b->ttft_p50_ms;
      p->ttft_p99_ms = b->ttft_p99_ms;
      p->prompt_tokens = b->prompt_tokens;
      p->completion_tokens = b->completion_tokens;
      p->cost_usd = b->cost_usd;
      bk_p[i] = p;
    }
    resp.n_per_model = st.n_per_model;
    resp.per_model = pm_p;
    resp.n_per_template = st.n_per_template;
    resp.per_template = pt_p;
    resp.n_series = st.n_series;
    resp.series = bk_p;
    resp.window_ms = st.until_ms - st.since_ms;
    resp.bucket_ms = st.bucket_ms;
    resp.until_ms = st.until_ms;
    reply_message(call, &resp.base);
  }
  free(pm);
  free(pm_p);
  free(pt);
  free(pt_p);
  free(bk);
  free(bk_p);
  monitor_stats_free(&st);
  twin__monitor__v1__get_stats_request__free_unpacked(r, NULL);
}

int monitor_grpc_register(twin_rpc_server *s, monitor_api *api, twin_err *err) {
  if (twin_rpc_server_add_method(s, "/" MONITOR_SERVICE_NAME "/ListTraces", TWIN_RPC_UNARY, list_traces, NULL, api, err) ||
      twin_rpc_server_add_method(s, "/" MONITOR_SERVICE_NAME "/GetTrace", TWIN_RPC_UNARY, get_trace, NULL, api, err) ||
      twin_rpc_server_add_method(s, "/" MONITOR_SERVICE_NAME "/GetStats", TWIN_RPC_UNARY, get_stats, NULL, api, err))
    return err ? err->code : TWIN_EINVAL;
  return 0;
}
