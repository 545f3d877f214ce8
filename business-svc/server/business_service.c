/* business-svc/server/business_service.c — the TwinService handlers. Ask, in order: validate ->
 * memory (Redis) -> retrieval -> Sources message -> prompt from the template within the token
 * budget -> response cache (Redis; a hit replays the cached answer as a stream) -> generation on
 * llm-svc, relaying each text delta as it arrives -> Summary message -> cache and memory writes
 * -> one trace. Failures of the cache, the memory or the trace never fail an answer. */
#include "business-svc/server/business_service.h"

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/ingest.h"
#include "common/log.h"
#include "common/util.h"
#include "monitor-svc/trace_format.h"
#include "proto/business.pb-c.h"

struct twin_business_service {
  twin_business_config cfg;
  atomic_int ready;
  pthread_mutex_t mu;
  char model[256];             /* from llm-svc, fetched once */
  int context_tokens;
  twin_metric_family *m_requests, *m_cache;
  twin_metric *m_relay;
};

typedef struct stage_list {
  struct { const char *stage; double ms; } s[16];
  int n;
} stage_list;

static void stage_add(stage_list *l, const char *stage, double ms) {
  if (l->n < 16) {
    l->s[l->n].stage = stage;
    l->s[l->n].ms = ms;
    l->n++;
  }
}

/* ==== helpers =============================================================================== */

static void reply_msg(twin_rpc_call *call, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    twin_rpc_call_fail(call, TWIN_RPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  protobuf_c_message_pack(m, buf);
  twin_rpc_call_reply(call, buf, n);
  free(buf);
}

static int send_msg(twin_rpc_call *call, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return TWIN_ENOMEM;
  protobuf_c_message_pack(m, buf);
  int rc = twin_rpc_call_send(call, buf, n);
  free(buf);
  return rc;
}

static int check_utf8(const char *field, const char *s, twin_err *err) {
  size_t n = strlen(s), bad = twin_utf8_validate(s, n);
  return bad == n ? 0 : twin_err_set(err, TWIN_EINVAL, "%s: invalid UTF-8 at byte %zu", field, bad);
}

static int ensure_model_info(twin_business_service *s, int64_t deadline_ms) {
  pthread_mutex_lock(&s->mu);
  int have = s->model[0] != 0;
  pthread_mutex_unlock(&s->mu);
  if (have || !s->cfg.retriever.llm) return 0;
  char model[256];
  int ctx = 0;
  twin_err err;
  int rc = twin_llm_model_info(s->cfg.retriever.llm, model, sizeof model, &ctx, deadline_ms > 0 ? deadline_ms : 5000, &err);
  if (rc) return rc;
  pthread_mutex_lock(&s->mu);
  snprintf(s->model, sizeof s->model, "%s", model);
  s->context_tokens = s->cfg.context_tokens > 0 ? s->cfg.context_tokens : ctx;
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* USD per million tokens for model from "model=in/out,..." ("*" matches any model). */
static double price_of(const char *table, const char *model, int prompt_tokens, int completion_tokens) {
  if (!table || !*table) return 0;
  double in = 0, out = 0;
  int found = 0;
  const char *p = table;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char item[320];
    snprintf(item, sizeof item, "%.*s", (int)len, p);
    char *eq = strchr(item, '=');
    double a, b;
    if (eq && sscanf(eq + 1, "%lf/%lf", &a, &b) == 2) {
      *eq = 0;
      if (!strcmp(item, model) || (!found && !strcmp(item, "*"))) {
        in = a;
        out = b;
        found = strcmp(item, "*") != 0;
      }
    }
    p += len + (end ? 1 : 0);
  }
  return (prompt_tokens * in + completion_tokens * out) / 1e6;
}

/* Token counts for the prompt budget come from the model's own tokenizer (llm-svc Tokenize);
 * when that fails, a conservative estimate of one token per 3 bytes. */
static int count_llm_tokens(void *user, const char *text, size_t len) {
  twin_business_service *s = user;
  int n = s->cfg.retriever.llm ? twin_llm_count_tokens(s->cfg.retriever.llm, text, len, 2000) : -1;
  return n >= 0 ? n : (int)((len + 2) / 3);
}

/* ==== Redis: memory and cache =============================================================== */

typedef struct turn {
  char *role, *content;
} turn;

/* Last turns of a session (oldest first). Redis trouble means no memory, not an error. */
static int memory_load(twin_business_service *s, const char *session, turn **out) {
  *out = NULL;
  if (!session[0] || s->cfg.memory_turns <= 0) return 0;
  twin_redis *r;
  if (twin_redis_pool_acquire(s->cfg.retriever.redis, 500, &r, NULL)) return 0;
  redisReply *rep = NULL;
  char key[256];
  snprintf(key, sizeof key, "twin:memory:%s", session);
  int n = 0;
  if (twin_redis_command(r, &rep, NULL, "LRANGE %s %d -1", key, -2 * s->cfg.memory_turns) == 0 &&
      rep->type == REDIS_REPLY_ARRAY && rep->elements) {
    *out = calloc(rep->elements, sizeof **out);
    for (size_t i = 0; *out && i < rep->elements; i++) {
      cJSON *j = rep->element[i]->type == REDIS_REPLY_STRING ? cJSON_Parse(rep->element[i]->str) : NULL;
      const cJSON *role = cJSON_GetObjectItemCaseSensitive(j, "role");
      const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
      if (cJSON_IsString(role) && cJSON_IsString(content)) {
        (*out)[n].role = twin_strdup(role->valuestring);
        (*out)[n].content = twin_strdup(content->valuestring);
        n++;
      }
      cJSON_Delete(j);
    }
  }
  if (rep) freeReplyObject(rep);
  twin_redis_pool_release(s->cfg.retriever.redis, r);
  return n;
}

static void memory_save(twin_business_service *s, const char *session, const char *question,
                        const char *answer) {
  if (!session[0] || s->cfg.memory_turns <= 0) return;
  twin_redis *r;
  if (twin_redis_pool_acquire(s->cfg.retriever.redis, 500, &r, NULL)) return;
  char key[256];
  snprintf(key, sizeof key, "twin:memory:%s", session);
  cJSON *u = cJSON_CreateObject(), *a = cJSON_CreateObject();
  cJSON_AddStringToObject(u, "role", "user");
  cJSON_AddStringToObject(u, "content", question);
  cJSON_AddStringToObject(a, "role", "assistant");
  cJSON_AddStringToObject(a, "content", answer);
  char *ju = cJSON_PrintUnformatted(u), *ja = cJSON_PrintUnformatted(a);
  twin_err err;
  int rc = twin_redis_append(r, &err, "RPUSH %s %s %s", key, ju, ja);
  if (!rc) rc = twin_redis_append(r, &err, "LTRIM %s %d -1", key, -2 * s->cfg.memory_turns);
  if (!rc) rc = twin_redis_append(r, &err, "EXPIRE %s %d", key, s->cfg.memory_ttl_s);
  redisReply *reps[3] = {0};
  if (!rc) rc = twin_redis_pipeline_read(r, reps, 3, &err);
  if (rc) LOG_WARN("conversation memory not saved: %s", err.msg);
  twin_redis_free_replies(reps, 3);
  twin_redis_pool_release(s->cfg.retriever.redis, r);
  free(ju);
  free(ja);
  cJSON_Delete(u);
  cJSON_Delete(a);
}

static char *cache_get(twin_business_service *s, const char *key) {
  twin_redis *r;
  if (twin_redis_pool_acquire(s->cfg.retriever.redis, 500, &r, NULL)) return NULL;
  redisReply *rep = NULL;
  char *out = NULL;
  if (twin_redis_command(r, &rep, NULL, "GET twin:cache:%s", key) == 0 && rep->type == REDIS_REPLY_STRING)
    out = twin_strdup(rep->str);
  if (rep) freeReplyObject(rep);
  twin_redis_pool_release(s->cfg.retriever.redis, r);
  return out;
}

static void cache_put(twin_business_service *s, const char *key, const char *json) {
  twin_redis *r;
  if (twin_redis_pool_acquire(s->cfg.retriever.redis, 500, &r, NULL)) return;
  redisReply *rep = NULL;
  twin_err err;
  if (twin_redis_command(r, &rep, &err, "SET twin:cache:%s %s EX %d", key, json, s->cfg.cache_ttl_s))
    LOG_WARN("response cache not written: %s", err.msg);
  if (rep) freeReplyObject(rep);
  twin_redis_pool_release(s->cfg.retriever.redis, r);
}

/* ==== Ask =================================================================================== */

typedef struct ask_state {
  twin_business_service *s;
  twin_rpc_call *call;
  twin_buf answer;
  int64_t t0_us, first_text_us;
  int client_gone;
} ask_state;

static int relay_text(void *user, const char *text, size_t len) {
  ask_state *a = user;
  int64_t t = twin_time_mono_us();
  if (!a->first_text_us) a->first_text_us = t;
  twin_buf_append(&a->answer, text, len);
  char *copy = malloc(len + 1);
  if (!copy) return 1;
  memcpy(copy, text, len);
  copy[len] = 0;
  Twin__Business__V1__AskResponse m = TWIN__BUSINESS__V1__ASK_RESPONSE__INIT;
  m.event_case = TWIN__BUSINESS__V1__ASK_RESPONSE__EVENT_TEXT;
  m.text = copy;
  int rc = send_msg(a->call, &m.base);
  free(copy);
  twin_histogram_observe(a->s->m_relay, (twin_time_mono_us() - t) / 1e6);
  if (rc) a->client_gone = 1; /* cancelled, deadline or a broken stream: stop generating */
  return rc ? 1 : 0;
}

/* Sends the cached answer in pieces of whole characters. */
static void replay(ask_state *a, const char *answer) {
  size_t n = strlen(answer);
  for (size_t off = 0; off < n && !a->client_gone;) {
    size_t len = n - off < 24 ? n - off : twin_utf8_complete_len(answer + off, 24);
    if (len == 0) len = n - off;
    relay_text(a, answer + off, len);
    off += len;
  }
}

static char *hash_hex(const char *text) {
  uint8_t d[32];
  char *hex = malloc(65);
  if (!hex) return NULL;
  if (twin_sha256(text, strlen(text), d, NULL) != 0) {
    snprintf(hex, 65, "%016llx", (unsigned long long)twin_hash64(text, strlen(text), 7));
  } else {
    twin_hex_encode(d, 32, hex);
  }
  return hex;
}

typedef struct ask_trace {
  const char *trace_id, *query, *template_name, *prompt, *answer, *model, *error;
  int template_version;
  int64_t time_ms;
  const twin_retrieval_result *ret;
  const char *author_filter;
  int prompt_tokens, completion_tokens, cache_hit;
  double ttft_ms, total_ms, cost;
  const stage_list *stages;
  const twin_llm_sampling *sampling;
  int max_new_tokens;
} ask_trace;

static void publish_trace(twin_business_service *s, const ask_trace *t) {
  if (!s->cfg.traces) return;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, TWIN_TRACE_KEY_TRACE_ID, t->trace_id);
  cJSON_AddNumberToObject(j, TWIN_TRACE_KEY_TIME_MS, (double)t->time_ms);
  cJSON_AddStringToObject(j, TWIN_TRACE_KEY_QUERY, t->query);
  cJSON_AddStringToObject(j, TWIN_TRACE_KEY_TEMPLATE_NAME, t->template_name ? t->template_name : "");
  char ver[16];
  snprintf(ver, sizeof ver, "%d", t->template_version);
  cJSON_AddStringToObject(j, TWIN_TRACE_KEY_TEMPLATE_VERSION, t->template_name ? ver : "");
  cJSON *vars = cJSON_AddObjectToObject(j, TWIN_TRACE_KEY_VARIABLES);
  cJSON_AddStringToObject(vars, "question", t->query);
  cJSON_AddStringToObject(vars, "author", t->author_filter ? t->author_filter : "");
  cJSON *ctx = cJSON_AddArrayToObject(vars, "context");
  cJSON_AddStringToObject(j, TWIN_TRACE_KEY_PROMPT, t->prompt ? t->prompt : "");
  cJSON *src = cJSON_AddArrayToObject(j, TWIN_TRACE_KEY_SOURCES);
  for (int i = 0; t->ret && i < t->ret->n_chunks; i++) {
    const twin_retrieved_chunk *c = &t->ret->chunks[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, TWIN_TRACE_KEY_SOURCE_CHUNK_ID, c->chunk_id);
    cJSON_AddStringToObject(o, TWIN_TRACE_KEY_SOURCE_DOC_ID, c->doc_id);
    cJSON_AddNumberToObject(o, TWIN_TRACE_KEY_SOURCE_SCORE, c->score);
    size_t sl = strlen(c->text) > 200 ? twin_utf8_complete_len(c->text, 200) : strlen(c->text);
    char *snip = malloc(sl + 1);
    memcpy(snip, c->text, sl);
    snip[sl] = 0;
    cJSON_AddStringToObject(o, TWIN_TRACE_KEY_SOURCE_SNIPPET, snip);
    free(snip);
    cJSON_AddItemToArray(src, o);
    cJSON_AddItemToArray(ctx, cJSON_CreateString(c->chunk_id));
  }
  cJSON_AddStringToObject(j, TWIN_TRACE_KEY_ANSWER, t->answer ? t->answer : "");
  cJSON_AddStringToObject(j, "model", t->model && *t->model ? t->model : "unknown");
  cJSON *samp = cJSON_AddObjectToObject(j, "sampling");
  if (t->sampling->has_temperature) cJSON_AddNumberToObject(samp, "temperature", t->sampling->temperature);
  if (t->sampling->has_top_p) cJSON_AddNumberToObject(samp, "top_p", t->sampling->top_p);
  if (t->sampling->has_top_k) cJSON_AddNumberToObject(samp, "top_k", t->sampling->top_k);
  if (t->sampling->has_seed) cJSON_AddNumberToObject(samp, "seed", (double)t->sampling->seed);
  cJSON_AddNumberToObject(samp, "max_new_tokens", t->max_new_tokens);
  cJSON_AddNumberToObject(j, "prompt_tokens", t->prompt_tokens);
  cJSON_AddNumberToObject(j, "completion_tokens", t->completion_tokens);
  cJSON *st = cJSON_AddArrayToObject(j, "stages");
  for (int i = 0; i < t->stages->n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "stage", t->stages->s[i].stage);
    cJSON_AddNumberToObject(o, "ms", t->stages->s[i].ms);
    cJSON_AddItemToArray(st, o);
  }
  cJSON_AddNumberToObject(j, "ttft_ms", t->ttft_ms);
  cJSON_AddNumberToObject(j, "total_ms", t->total_ms);
  cJSON_AddNumberToObject(j, "cost_usd", t->cost);
  cJSON_AddBoolToObject(j, "cache_hit", t->cache_hit);
  cJSON_AddStringToObject(j, "error", t->error ? t->error : "");
  char *text = cJSON_PrintUnformatted(j);
  if (text) twin_trace_publisher_publish(s->cfg.traces, text, strlen(text));
  free(text);
  cJSON_Delete(j);
}

static void fill_source(Twin__Business__V1__Source *src, const twin_retrieved_chunk *c, char *snippet) {
  twin__business__v1__source__init(src);
  src->chunk_id = (char *)c->chunk_id;
  src->doc_id = (char *)c->doc_id;
  src->score = c->score;
  src->snippet = snippet;
  src->author = (char *)c->author;
  src->title = (char *)c->title;
  src->link = (char *)c->link;
  src->doc_type = (char *)c->doc_type;
}

static void send_sources(twin_rpc_call *call, const twin_retrieval_result *r) {
  int n = r->n_chunks;
  Twin__Business__V1__Source *src = calloc((size_t)(n ? n : 1), sizeof *src);
  Twin__Business__V1__Source **ptrs = calloc((size_t)(n ? n : 1), sizeof *ptrs);
  char **snips = calloc((size_t)(n ? n : 1), sizeof *snips);
  for (int i = 0; src && ptrs && snips && i < n; i++) {
    size_t sl = strlen(r->chunks[i].text);
    if (sl > 240) sl = twin_utf8_complete_len(r->chunks[i].text, 240);
    snips[i] = malloc(sl + 1);
    memcpy(snips[i], r->chunks[i].text, sl);
    snips[i][sl] = 0;
    fill_source(&src[i], &r->chunks[i], snips[i]);
    ptrs[i] = &src[i];
  }
  Twin__Business__V1__Sources list = TWIN__BUSINESS__V1__SOURCES__INIT;
  list.n_items = (size_t)n;
  list.items = ptrs;
  Twin__Business__V1__AskResponse m = TWIN__BUSINESS__V1__ASK_RESPONSE__INIT;
  m.event_case = TWIN__BUSINESS__V1__ASK_RESPONSE__EVENT_SOURCES;
  m.sources = &list;
  send_msg(call, &m.base);
  for (int i = 0; snips && i < n; i++) free(snips[i]);
  free(snips);
  free(src);
  free(ptrs);
}

static void read_sampling(const Twin__Business__V1__Sampling *in, twin_llm_sampling *out) {
  memset(out, 0, sizeof *out);
  if (!in) return;
  if (in->temperature_opt_case) out->has_temperature = 1, out->temperature = in->temperature;
  if (in->top_p_opt_case) out->has_top_p = 1, out->top_p = in->top_p;
  if (in->top_k_opt_case) out->has_top_k = 1, out->top_k = in->top_k;
  if (in->seed_opt_case) out->has_seed = 1, out->seed = in->seed;
}

/* Fills the retrieval request from the proto options and the defaults. */
static void read_retrieval(const Twin__Business__V1__RetrievalOptions *o, const char *query,
                           twin_retrieval_request *r) {
  memset(r, 0, sizeof *r);
  r->query = query;
  r->top_k = 5;
  r->expansions = 3;
  r->keep = 3;
  r->rerank = 1;
  r->self_query = 1;
  r->author = "";
  r->doc_type = "";
  if (!o) return;
  if (o->top_k_opt_case) r->top_k = (int)o->top_k;
  if (o->expansions_opt_case) r->expansions = (int)o->expansions;
  if (o->keep_opt_case) r->keep = (int)o->keep;
  if (o->rerank_opt_case) r->rerank = o->rerank;
  if (o->self_query_opt_case) r->self_query = o->self_query;
  r->author = o->author;
  r->doc_type = o->doc_type;
}

static void count_request(twin_business_service *s, const char *method, twin_rpc_code code) {
  if (s->m_requests) twin_counter_inc(twin_metric_with(s->m_requests, method, twin_rpc_code_name(code)));
}

/* 0 when the service can answer; else the call is failed with UNAVAILABLE. */
static int require_ready(twin_business_service *s, twin_rpc_call *call) {
  if (atomic_load(&s->ready)) return 0;
  twin_rpc_call_fail(call, TWIN_RPC_UNAVAILABLE, "business-svc is starting (loading the index)");
  return -1;
}

/* The checks Ask and Search share: a non-empty query within the size limit, valid UTF-8. */
static int check_query(const twin_business_service *s, const char *query, twin_err *err) {
  size_t qlen = strlen(query);
  if (qlen == 0) return twin_err_set(err, TWIN_EINVAL, "query: empty");
  if ((int)qlen > s->cfg.max_query_bytes)
    return twin_err_set(err, TWIN_EINVAL, "query: %zu bytes, the limit is %d", qlen, s->cfg.max_query_bytes);
  return check_utf8("query", query, err);
}

static void handle_ask(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  twin_business_service *s = user;
  if (require_ready(s, call)) return;
  Twin__Business__V1__AskRequest *r = twin__business__v1__ask_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed AskRequest");
    return;
  }
  int64_t t0 = twin_time_mono_us();
  int64_t wall0 = twin_time_wall_ms();
  int64_t deadline = twin_rpc_call_deadline_left_ms(call);
  twin_err err = {0};
  int rc = check_query(s, r->query, &err);
  if (!rc && strlen(r->session_id) > 128) rc = twin_err_set(&err, TWIN_EINVAL, "session_id: longer than 128 bytes");
  if (!rc) rc = check_utf8("session_id", r->session_id, &err);
  const twin_prompt_template *tmpl = NULL;
  if (!rc) {
    tmpl = twin_prompt_registry_get(s->cfg.templates, r->template_[0] ? r->template_ : "default", &err);
    if (!tmpl) rc = TWIN_EINVAL;
  }
  twin_llm_sampling sampling;
  read_sampling(r->sampling, &sampling);
  if (!sampling.has_temperature && s->cfg.default_temperature >= 0)
    sampling.has_temperature = 1, sampling.temperature = s->cfg.default_temperature;
  if (!sampling.has_top_p && s->cfg.default_top_p > 0) sampling.has_top_p = 1, sampling.top_p = s->cfg.default_top_p;
  int max_new = r->sampling && r->sampling->max_new_tokens ? (int)r->sampling->max_new_tokens : s->cfg.default_max_new_tokens;
  if (rc) {
    twin_rpc_call_fail(call, twin_rpc_code_from_err(rc), "%s", err.msg);
    count_request(s, "Ask", twin_rpc_code_from_err(rc));
    twin__business__v1__ask_request__free_unpacked(r, NULL);
    return;
  }

  char trace_id[33];
  if (twin_random_id(trace_id, NULL) != 0) snprintf(trace_id, sizeof trace_id, "%llx", (unsigned long long)t0);
  stage_list stages = {.n = 0};
  ask_state a = {.s = s, .call = call, .t0_us = t0};
  twin_buf_init(&a.answer);
  twin_retrieval_result ret = {0};
  twin_prompt_render pr = {0};
  char *prompt_text = NULL, *cache_key = NULL, *cached = NULL;
  turn *mem = NULL;
  int n_mem = 0, cache_hit = 0;
  twin_llm_result lr = {0};
  twin_rpc_code code = TWIN_RPC_OK;
  char status_msg[512] = "";

  /* memory and retrieval */
  int64_t t = twin_time_mono_us();
  n_mem = memory_load(s, r->session_id, &mem);
  if (r->session_id[0]) stage_add(&stages, "memory", (twin_time_mono_us() - t) / 1e3);
  twin_retrieval_request rq;
  read_retrieval(r->retrieval, r->query, &rq);
  rq.deadline_ms = deadline > 0 ? deadline : 0;
  rc = check_utf8("retrieval.author", rq.author, &err);
  if (!rc) rc = twin_retrieve(&s->cfg.retriever, &rq, &ret, &err);
  for (int i = 0; !rc && i < ret.n_stages; i++) stage_add(&stages, ret.stages[i].stage, ret.stages[i].ms);
  if (rc) {
    code = twin_rpc_code_from_err(rc);
    snprintf(status_msg, sizeof status_msg, "%s", err.msg);
    goto finish;
  }
  send_sources(call, &ret);

  /* the prompt */
  t = twin_time_mono_us();
  if (ensure_model_info(s, deadline) != 0) {
    code = TWIN_RPC_UNAVAILABLE;
    snprintf(status_msg, sizeof status_msg, "llm-svc is unreachable (GetModelInfo failed)");
    goto finish;
  }
  twin_prompt_chunk *chunks = calloc((size_t)(ret.n_chunks ? ret.n_chunks : 1), sizeof *chunks);
  for (int i = 0; chunks && i < ret.n_chunks; i++)
    chunks[i] = (twin_prompt_chunk){ret.chunks[i].text, ret.chunks[i].title, ret.chunks[i].author};
  int memory_tokens = 0;
  for (int i = 0; i < n_mem; i++) memory_tokens += count_llm_tokens(s, mem[i].content, strlen(mem[i].content)) + 8;
  /* room for the answer, the memory, and the chat template's own tokens */
  int budget = s->context_tokens - max_new - memory_tokens - 48;
  if (budget < 64) budget = 64;
  rc = twin_prompt_render_fill(tmpl, r->query, chunks, ret.n_chunks, budget, count_llm_tokens, s, &pr, &err);
  free(chunks);
  stage_add(&stages, "prompt", (twin_time_mono_us() - t) / 1e3);
  if (rc) {
    code = twin_rpc_code_from_err(rc);
    snprintf(status_msg, sizeof status_msg, "%s", err.msg);
    goto finish;
  }
  twin_buf pbuf;
  twin_buf_init(&pbuf);
  twin_buf_printf(&pbuf, "[system]\n%s\n", pr.system);
  for (int i = 0; i < n_mem; i++) twin_buf_printf(&pbuf, "[%s]\n%s\n", mem[i].role, mem[i].content);
  twin_buf_printf(&pbuf, "[user]\n%s\n", pr.user);
  prompt_text = twin_buf_detach(&pbuf, NULL);

  /* response cache: deterministic requests only (greedy or seeded) */
  int deterministic = (sampling.has_temperature && sampling.temperature == 0) || sampling.has_seed;
  if (deterministic && !r->no_cache && s->cfg.cache_ttl_s > 0) {
    twin_buf key;
    twin_buf_init(&key);
    twin_buf_printf(&key, "%s|%s@%d|%s|t=%d:%g|p=%d:%g|k=%d:%d|s=%d:%llu|n=%d", s->model, tmpl->name,
                    tmpl->version, prompt_text, sampling.has_temperature, sampling.temperature, sampling.has_top_p,
                    sampling.top_p, sampling.has_top_k, sampling.top_k, sampling.has_seed,
                    (unsigned long long)sampling.seed, max_new);
    cache_key = hash_hex(twin_buf_cstr(&key));
    twin_buf_free(&key);
    t = twin_time_mono_us();
    cached = cache_key ? cache_get(s, cache_key) : NULL;
    stage_add(&stages, "cache", (twin_time_mono_us() - t) / 1e3);
  }
  if (cached) {
    cJSON *j = cJSON_Parse(cached);
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(j, "answer");
    if (cJSON_IsString(ans)) {
      cache_hit = 1;
      replay(&a, ans->valuestring);
      const cJSON *fr = cJSON_GetObjectItemCaseSensitive(j, "finish_reason");
      snprintf(lr.finish_reason, sizeof lr.finish_reason, "%s", cJSON_IsString(fr) ? fr->valuestring : "stop");
      lr.prompt_tokens = cJSON_GetObjectItemCaseSensitive(j, "prompt_tokens") ? (int)cJSON_GetObjectItemCaseSensitive(j, "prompt_tokens")->valuedouble : 0;
      lr.completion_tokens = cJSON_GetObjectItemCaseSensitive(j, "completion_tokens") ? (int)cJSON_GetObjectItemCaseSensitive(j, "completion_tokens")->valuedouble : 0;
    }
    cJSON_Delete(j);
    if (s->m_cache) twin_counter_inc(twin_metric_with(s->m_cache, cache_hit ? "hit" : "miss"));
  }
  if (!cache_hit) {
    if (cache_key && s->m_cache) twin_counter_inc(twin_metric_with(s->m_cache, "miss"));
    int n_msgs = 2 + n_mem;
    twin_llm_message *msgs = calloc((size_t)n_msgs, sizeof *msgs);
    msgs[0] = (twin_llm_message){"system", pr.system};
    for (int i = 0; i < n_mem; i++) msgs[1 + i] = (twin_llm_message){mem[i].role, mem[i].content};
    msgs[n_msgs - 1] = (twin_llm_message){"user", pr.user};
    twin_llm_request lq = {.messages = msgs, .n_messages = n_msgs, .sampling = sampling,
                           .max_new_tokens = max_new, .request_id = trace_id};
    if (deadline > 0) {
      int64_t left = deadline - (twin_time_mono_us() - t0) / 1000;
      lq.deadline_ms = left > 1 ? left : 1;
    }
    t = twin_time_mono_us();
    rc = twin_llm_generate(s->cfg.retriever.llm, &lq, relay_text, &a, &lr, &err);
    stage_add(&stages, "generate", (twin_time_mono_us() - t) / 1e3);
    free(msgs);
    if (rc) {
      code = a.client_gone ? TWIN_RPC_CANCELLED : lr.status.code != TWIN_RPC_OK ? lr.status.code : twin_rpc_code_from_err(rc);
      if (code == TWIN_RPC_CANCELLED && twin_rpc_call_cancelled(call) && deadline > 0 &&
          (twin_time_mono_us() - t0) / 1000 >= deadline)
        code = TWIN_RPC_DEADLINE_EXCEEDED;
      snprintf(status_msg, sizeof status_msg, "%s", err.msg);
    } else if (cache_key && (!strcmp(lr.finish_reason, "stop") || !strcmp(lr.finish_reason, "length"))) {
      {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "answer", twin_buf_cstr(&a.answer));
        cJSON_AddStringToObject(j, "finish_reason", lr.finish_reason);
        cJSON_AddNumberToObject(j, "prompt_tokens", lr.prompt_tokens);
        cJSON_AddNumberToObject(j, "completion_tokens", lr.completion_tokens);
        char *text = cJSON_PrintUnformatted(j);
        cache_put(s, cache_key, text);
        free(text);
        cJSON_Delete(j);
      }
    }
  }
  if (code == TWIN_RPC_OK) memory_save(s, r->session_id, r->query, twin_buf_cstr(&a.answer));

finish:;
  double total_ms = (twin_time_mono_us() - t0) / 1e3;
  double ttft_ms = a.first_text_us ? (a.first_text_us - t0) / 1e3 : 0;
  double cost = price_of(s->cfg.prices, s->model, lr.prompt_tokens, lr.completion_tokens);
  if (code == TWIN_RPC_OK && !a.client_gone) {
    Twin__Business__V1__StageTiming *tims = calloc((size_t)(stages.n ? stages.n : 1), sizeof *tims);
    Twin__Business__V1__StageTiming **tp = calloc((size_t)(stages.n ? stages.n : 1), sizeof *tp);
    for (int i = 0; tims && tp && i < stages.n; i++) {
      twin__business__v1__stage_timing__init(&tims[i]);
      tims[i].stage = (char *)stages.s[i].stage;
      tims[i].ms = stages.s[i].ms;
      tp[i] = &tims[i];
    }
    Twin__Business__V1__AskSummary sum = TWIN__BUSINESS__V1__ASK_SUMMARY__INIT;
    sum.finish_reason = lr.finish_reason[0] ? lr.finish_reason : "stop";
    sum.prompt_tokens = (uint32_t)lr.prompt_tokens;
    sum.completion_tokens = (uint32_t)lr.completion_tokens;
    sum.trace_id = trace_id;
    sum.n_timings = (size_t)stages.n;
    sum.timings = tp;
    sum.cache_hit = cache_hit;
    sum.ttft_ms = ttft_ms;
    sum.total_ms = total_ms;
    sum.model = s->model;
    Twin__Business__V1__AskResponse m = TWIN__BUSINESS__V1__ASK_RESPONSE__INIT;
    m.event_case = TWIN__BUSINESS__V1__ASK_RESPONSE__EVENT_SUMMARY;
    m.summary = &sum;
    send_msg(call, &m.base);
    free(tims);
    free(tp);
    twin_rpc_call_finish(call, TWIN_RPC_OK, NULL);
  } else {
    if (code == TWIN_RPC_OK) code = TWIN_RPC_CANCELLED;
    twin_rpc_call_finish(call, code, status_msg[0] ? status_msg : twin_rpc_code_name(code));
  }
  count_request(s, "Ask", code);
  ask_trace tr = {.trace_id = trace_id, .query = r->query, .template_name = tmpl ? tmpl->name : NULL,
                  .template_version = tmpl ? tmpl->version : 0, .prompt = prompt_text,
                  .answer = twin_buf_cstr(&a.answer), .model = s->model,
                  .error = code == TWIN_RPC_OK ? "" : (status_msg[0] ? status_msg : twin_rpc_code_name(code)),
                  .time_ms = wall0, .ret = &ret, .author_filter = ret.author_filter,
                  .prompt_tokens = lr.prompt_tokens, .completion_tokens = lr.completion_tokens,
                  .cache_hit = cache_hit, .ttft_ms = ttft_ms, .total_ms = total_ms, .cost = cost,
                  .stages = &stages, .sampling = &sampling, .max_new_tokens = max_new};
  publish_trace(s, &tr);
  for (int i = 0; i < n_mem; i++) {
    free(mem[i].role);
    free(mem[i].content);
  }
  free(mem);
  free(prompt_text);
  free(cache_key);
  free(cached);
  twin_prompt_render_free(&pr);
  twin_retrieval_result_free(&ret);
  twin_buf_free(&a.answer);
  twin__business__v1__ask_request__free_unpacked(r, NULL);
}

/* ==== Search ================================================================================ */

static void handle_search(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  twin_business_service *s = user;
  if (require_ready(s, call)) return;
  Twin__Business__V1__SearchRequest *r = twin__business__v1__search_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed SearchRequest");
    return;
  }
  twin_err err = {0};
  int rc = check_query(s, r->query, &err);
  twin_retrieval_request rq;
  read_retrieval(r->retrieval, r->query, &rq);
  int64_t d = twin_rpc_call_deadline_left_ms(call);
  rq.deadline_ms = d > 0 ? d : 0;
  twin_retrieval_result ret = {0};
  if (!rc) rc = twin_retrieve(&s->cfg.retriever, &rq, &ret, &err);
  if (rc) {
    twin_rpc_call_fail(call, twin_rpc_code_from_err(rc), "%s", err.msg);
    count_request(s, "Search", twin_rpc_code_from_err(rc));
  } else {
    int n = ret.n_chunks;
    Twin__Business__V1__Source *src = calloc((size_t)(n ? n : 1), sizeof *src);
    Twin__Business__V1__Source **sp = calloc((size_t)(n ? n : 1), sizeof *sp);
    for (int i = 0; i < n; i++) {
      fill_source(&src[i], &ret.chunks[i], ret.chunks[i].text);
      sp[i] = &src[i];
    }
    Twin__Business__V1__StageTiming *tims = calloc((size_t)(ret.n_stages ? ret.n_stages : 1), sizeof *tims);
    Twin__Business__V1__StageTiming **tp = calloc((size_t)(ret.n_stages ? ret.n_stages : 1), sizeof *tp);
    for (int i = 0; i < ret.n_stages; i++) {
      twin__business__v1__stage_timing__init(&tims[i]);
      tims[i].stage = (char *)ret.stages[i].stage;
      tims[i].ms = ret.stages[i].ms;
      tp[i] = &tims[i];
    }
    Twin__Business__V1__SearchResponse resp = TWIN__BUSINESS__V1__SEARCH_RESPONSE__INIT;
    resp.n_results = (size_t)n;
    resp.results = sp;
    resp.n_timings = (size_t)ret.n_stages;
    resp.timings = tp;
    reply_msg(call, &resp.base);
    count_request(s, "Search", TWIN_RPC_OK);
    free(src);
    free(sp);
    free(tims);
    free(tp);
  }
  twin_retrieval_result_free(&ret);
  twin__business__v1__search_request__free_unpacked(r, NULL);
}

/* ==== Ingest / DeleteDocument =============================================================== */

static int ingest_options(twin_business_service *s, twin_redis *redis, twin_ingest_options *o) {
  *o = twin_ingest_default_options();
  o->encoder = &s->cfg.encoder;
  o->redis = redis;
  return 0;
}

static void handle_ingest(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  twin_business_service *s = user;
  Twin__Business__V1__IngestRequest *r = twin__business__v1__ingest_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed IngestRequest");
    return;
  }
  twin_err err = {0};
  int rc = 0;
  if (r->n_documents == 0 && r->n_urls == 0) rc = twin_err_set(&err, TWIN_EINVAL, "documents: nothing to ingest (no documents, no urls)");
  twin_document *docs = calloc(r->n_documents ? r->n_documents : 1, sizeof *docs);
  size_t n_docs = 0;
  for (size_t i = 0; !rc && i < r->n_documents; i++) {
    const Twin__Business__V1__Document *d = r->documents[i];
    twin_doc_type type = TWIN_DOC_ARTICLE;
    char field[64];
    snprintf(field, sizeof field, "documents[%zu].doc_type", i);
    if (d->doc_type[0] && twin_doc_type_parse(d->doc_type, &type, NULL) != 0) {
      rc = twin_err_set(&err, TWIN_EINVAL, "%s: '%s' is not post, article or code", field, d->doc_type);
      break;
    }
    if (!d->text[0]) {
      rc = twin_err_set(&err, TWIN_EINVAL, "documents[%zu].text: empty", i);
      break;
    }
    char source[96];
    snprintf(source, sizeof source, "rpc:%s", d->doc_id[0] ? d->doc_id : d->title);
    rc = twin_document_init(&docs[n_docs], d->doc_id[0] ? d->doc_id : NULL, source, d->text, strlen(d->text),
                            d->author, d->title, d->link, type, &err);
    if (rc) twin_err_wrap(&err, "documents[%zu]", i);
    else n_docs++;
  }
  twin_redis *redis = NULL;
  if (!rc) rc = twin_redis_pool_acquire(s->cfg.retriever.redis, 5000, &redis, &err);
  twin_ingest_report rep_docs = {0}, rep_urls = {0};
  if (!rc) {
    twin_ingest_options o;
    ingest_options(s, redis, &o);
    if (n_docs) rc = twin_ingest_documents(&o, docs, n_docs, &rep_docs, &err);
    if (!rc && r->n_urls) rc = twin_ingest_sources(&o, (const char *const *)r->urls, r->n_urls, &rep_urls, &err);
    twin_redis_pool_release(s->cfg.retriever.redis, redis);
  }
  for (size_t i = 0; i < n_docs; i++) twin_document_free(&docs[i]);
  free(docs);
  if (!rc) {
    /* the first failed input decides the status: the caller must see it */
    twin_ingest_report *reps[2] = {&rep_docs, &rep_urls};
    for (int k = 0; k < 2 && !rc; k++)
      for (size_t i = 0; i < reps[k]->n_items && !rc; i++)
        if (reps[k]->items[i].status)
          rc = twin_err_set(&err, reps[k]->items[i].status, "%s: %s", reps[k]->items[i].source,
                            reps[k]->items[i].error ? reps[k]->items[i].error : "failed");
  }
  if (rc) {
    twin_rpc_call_fail(call, twin_rpc_code_from_err(rc), "%s", err.msg);
  } else {
    Twin__Business__V1__IngestResponse resp = TWIN__BUSINESS__V1__INGEST_RESPONSE__INIT;
    resp.documents = (uint32_t)(rep_docs.documents + rep_urls.documents);
    resp.chunks = (uint32_t)(rep_docs.chunks_new + rep_urls.chunks_new);
    resp.chunks_unchanged = (uint32_t)(rep_docs.chunks_unchanged + rep_urls.chunks_unchanged);
    size_t n_ids = rep_docs.n_items + rep_urls.n_items;
    char **ids = calloc(n_ids ? n_ids : 1, sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; i < rep_docs.n_items; i++) ids[k++] = rep_docs.items[i].doc_id;
    for (size_t i = 0; i < rep_urls.n_items; i++) ids[k++] = rep_urls.items[i].doc_id;
    resp.n_doc_ids = k;
    resp.doc_ids = ids;
    reply_msg(call, &resp.base);
    free(ids);
  }
  count_request(s, "Ingest", twin_rpc_code_from_err(rc));
  twin_ingest_report_free(&rep_docs);
  twin_ingest_report_free(&rep_urls);
  twin__business__v1__ingest_request__free_unpacked(r, NULL);
}

static void handle_delete(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  twin_business_service *s = user;
  Twin__Business__V1__DeleteDocumentRequest *r = twin__business__v1__delete_document_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed DeleteDocumentRequest");
    return;
  }
  twin_err err = {0};
  int rc = r->doc_id[0] ? twin_id_validate(r->doc_id, "doc_id", &err) : twin_err_set(&err, TWIN_EINVAL, "doc_id: empty");
  twin_redis *redis = NULL;
  size_t removed = 0;
  if (!rc) rc = twin_redis_pool_acquire(s->cfg.retriever.redis, 5000, &redis, &err);
  if (!rc) {
    twin_ingest_options o;
    ingest_options(s, redis, &o);
    rc = twin_ingest_delete_document(&o, r->doc_id, &removed, &err);
    twin_redis_pool_release(s->cfg.retriever.redis, redis);
  }
  if (rc) {
    twin_rpc_call_fail(call, twin_rpc_code_from_err(rc), "%s", err.msg);
  } else {
    Twin__Business__V1__DeleteDocumentResponse resp = TWIN__BUSINESS__V1__DELETE_DOCUMENT_RESPONSE__INIT;
    resp.chunks_deleted = (uint32_t)removed;
    reply_msg(call, &resp.base);
  }
  count_request(s, "DeleteDocument", twin_rpc_code_from_err(rc));
  twin__business__v1__delete_document_request__free_unpacked(r, NULL);
}

/* ==== lifetime ============================================================================== */

int twin_business_service_create(twin_rpc_server *srv, const twin_business_config *cfg,
                                 twin_business_service **out, twin_err *err) {
  *out = NULL;
  twin_business_service *s = calloc(1, sizeof *s);
  if (!s) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  s->cfg = *cfg;
  if (s->cfg.max_query_bytes <= 0) s->cfg.max_query_bytes = 4096;
  if (s->cfg.memory_turns < 0) s->cfg.memory_turns = 4;
  if (s->cfg.memory_ttl_s <= 0) s->cfg.memory_ttl_s = 3600;
  if (s->cfg.default_max_new_tokens <= 0) s->cfg.default_max_new_tokens = 256;
  pthread_mutex_init(&s->mu, NULL);
  if (cfg->metrics) {
    twin_err e;
    twin_metrics_counter(cfg->metrics, "business_requests_total", "Requests by method and status.",
                         "method,code", &s->m_requests, &e);
    twin_metrics_counter(cfg->metrics, "business_response_cache_total", "Response cache lookups.",
                         "result", &s->m_cache, &e);
    double b[12];
    twin_metrics_buckets_exponential(0.00001, 2.5, 12, b);
    twin_metric_family *f;
    if (!twin_metrics_histogram(cfg->metrics, "business_relay_seconds", "Time to relay one text delta to the client.",
                                NULL, b, 12, &f, &e))
      s->m_relay = twin_metric_get(f);
  }
  struct { const char *m; twin_rpc_kind k; twin_rpc_handler h; } methods[] = {
      {"/twin.business.v1.TwinService/Ask", TWIN_RPC_SERVER_STREAMING, handle_ask},
      {"/twin.business.v1.TwinService/Search", TWIN_RPC_UNARY, handle_search},
      {"/twin.business.v1.TwinService/Ingest", TWIN_RPC_UNARY, handle_ingest},
      {"/twin.business.v1.TwinService/DeleteDocument", TWIN_RPC_UNARY, handle_delete},
  };
  for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
    int rc = twin_rpc_server_add_method(srv, methods[i].m, methods[i].k, methods[i].h, NULL, s, err);
    if (rc) {
      twin_business_service_destroy(s);
      return rc;
    }
  }
  *out = s;
  return 0;
}

void twin_business_service_ready(twin_business_service *s) { atomic_store(&s->ready, 1); }

void twin_business_service_destroy(twin_business_service *s) {
  if (!s) return;
  pthread_mutex_destroy(&s->mu);
  free(s);
}
