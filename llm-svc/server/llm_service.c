/* llm-svc/server/llm_service.c — the gRPC handlers of twin.llm.v1.LlmService.
 * Generate: validate -> tokenize (prompt, chat messages through the template, or ids) -> submit
 * to the engine with a callback that packs each event into a GenerateResponse and queues it on
 * the call. A request context is shared by the handler and the engine's callback (refcount);
 * the call's cancel hook forwards a client cancel or deadline to the engine. */
#include "llm-svc/server/llm_service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proto/llm.pb-c.h"

struct twin_llm_service {
  pthread_mutex_t mu;
  const twin_model *model;
  twin_engine *engine;
  twin_llm_service_info info;
  atomic_int ready, draining;
};

#define MAX_STOP_STRINGS 64

/* ==== coalescing ============================================================================ */

uint8_t *twin_llm_coalesce_responses(const uint8_t *const *msgs, const size_t *lens, size_t n,
                                     size_t *out_len) {
  Twin__Llm__V1__GenerateResponse **parts = calloc(n, sizeof *parts);
  if (!parts) return NULL;
  uint8_t *out = NULL;
  size_t text_len = 0, n_ids = 0, n_lp = 0;
  for (size_t i = 0; i < n; i++) {
    parts[i] = twin__llm__v1__generate_response__unpack(NULL, lens[i], msgs[i]);
    if (!parts[i]) goto done;
    text_len += strlen(parts[i]->text);
    n_ids += parts[i]->n_token_ids;
    n_lp += parts[i]->n_logprobs;
  }
  {
    Twin__Llm__V1__GenerateResponse m = *parts[n - 1]; /* last message's final fields */
    char *text = malloc(text_len + 1);
    int32_t *ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
    Twin__Llm__V1__TokenLogprob **lp = malloc((n_lp ? n_lp : 1) * sizeof *lp);
    if (text && ids && lp) {
      size_t t = 0, k = 0, l = 0;
      for (size_t i = 0; i < n; i++) {
        size_t len = strlen(parts[i]->text);
        memcpy(text + t, parts[i]->text, len);
        t += len;
        if (parts[i]->n_token_ids) /* a message without tokens unpacks with token_ids NULL */
          memcpy(ids + k, parts[i]->token_ids, parts[i]->n_token_ids * sizeof *ids);
        k += parts[i]->n_token_ids;
        for (size_t j = 0; j < parts[i]->n_logprobs; j++) lp[l++] = parts[i]->logprobs[j];
      }
      text[t] = 0;
      m.text = text;
      m.token_ids = ids;
      m.n_token_ids = n_ids;
      m.logprobs = lp;
      m.n_logprobs = n_lp;
      *out_len = twin__llm__v1__generate_response__get_packed_size(&m);
      out = malloc(*out_len ? *out_len : 1);
      if (out) twin__llm__v1__generate_response__pack(&m, out);
    }
    free(text);
    free(ids);
    free(lp);
  }
done:
  for (size_t i = 0; i < n; i++)
    if (parts[i]) twin__llm__v1__generate_response__free_unpacked(parts[i], NULL);
  free(parts);
  return out;
}

/* ==== Generate ============================================================================== */

typedef struct gen_ctx {
  atomic_int refs;              /* handler + engine */
  twin_rpc_call *call;
  twin_engine *engine;
  pthread_mutex_t mu;
  uint64_t id;                  /* engine request id, 0 until submitted */
  int cancelled;
  char request_id[64];
} gen_ctx;

static void gen_ctx_unref(gen_ctx *c) {
  if (atomic_fetch_sub(&c->refs, 1) == 1) {
    pthread_mutex_destroy(&c->mu);
    free(c);
  }
}

/* The call's cancel hook (I/O thread): forward to the engine once the id is known. */
static void gen_on_cancel(void *arg) {
  gen_ctx *c = arg;
  pthread_mutex_lock(&c->mu);
  c->cancelled = 1;
  uint64_t id = c->id;
  pthread_mutex_unlock(&c->mu);
  if (id) twin_engine_cancel(c->engine, id);
}

static Twin__Llm__V1__FinishReason proto_finish(twin_finish_reason r) {
  switch (r) {
    case TWIN_FINISH_STOP: return TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_STOP;
    case TWIN_FINISH_LENGTH: return TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_LENGTH;
    case TWIN_FINISH_CANCELLED: return TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
    case TWIN_FINISH_ERROR: return TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_ERROR;
    default: return TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
  }
}

/* Engine callback (loop thread): one GenerateResponse per event; the last ends the call. */
static void gen_on_event(void *user, const twin_gen_event *ev) {
  gen_ctx *c = user;
  Twin__Llm__V1__GenerateResponse m = TWIN__LLM__V1__GENERATE_RESPONSE__INIT;
  m.text = (char *)(ev->text ? ev->text : ""); /* NUL-terminated at text_len (engine.h) */
  m.n_token_ids = (size_t)ev->n_tokens;
  m.token_ids = (int32_t *)ev->tokens;
  Twin__Llm__V1__TokenLogprob lp[1], *lpp[1];
  if (ev->samples && ev->n_tokens == 1) {
    twin__llm__v1__token_logprob__init(&lp[0]);
    lp[0].id = ev->samples[0].token;
    lp[0].logprob = ev->samples[0].logprob;
    lp[0].n_top_ids = lp[0].n_top_logprobs = (size_t)ev->samples[0].n_top;
    lp[0].top_ids = (int32_t *)ev->samples[0].top_tokens;
    lp[0].top_logprobs = (float *)ev->samples[0].top_logprobs;
    lpp[0] = &lp[0];
    m.n_logprobs = 1;
    m.logprobs = lpp;
  }
  Twin__Llm__V1__Usage usage = TWIN__LLM__V1__USAGE__INIT;
  Twin__Llm__V1__Timings timings = TWIN__LLM__V1__TIMINGS__INIT;
  if (ev->finish != TWIN_FINISH_NONE) {
    m.finish_reason = proto_finish(ev->finish);
    usage.prompt_tokens = (uint32_t)ev->prompt_tokens;
    usage.completion_tokens = (uint32_t)ev->completion_tokens;
    usage.cached_prompt_tokens = (uint32_t)ev->cached_tokens;
    timings.queue_ms = ev->queue_ms;
    timings.ttft_ms = ev->ttft_ms;
    timings.total_ms = ev->total_ms;
    m.usage = &usage;
    m.timings = &timings;
    if (ev->error) m.error = (char *)ev->error;
  }
  /* This runs on the engine's loop thread once per sequence per step: pack on the stack (one
   * copy, into the call's queue) unless the message is large. */
  uint8_t small[512];
  size_t n = twin__llm__v1__generate_response__get_packed_size(&m);
  uint8_t *buf = n <= sizeof small ? small : malloc(n);
  if (buf) {
    twin__llm__v1__generate_response__pack(&m, buf);
    twin_rpc_call_send(c->call, buf, n); /* fails harmlessly once the client is gone */
  }
  if (buf != small) free(buf);
  if (ev->finish == TWIN_FINISH_NONE) return;
  switch (ev->finish) {
    case TWIN_FINISH_CANCELLED: twin_rpc_call_finish(c->call, TWIN_RPC_CANCELLED, ev->error ? ev->error : "cancelled"); break;
    case TWIN_FINISH_ERROR: twin_rpc_call_finish(c->call, TWIN_RPC_INTERNAL, ev->error ? ev->error : "generation failed"); break;
    default: twin_rpc_call_finish(c->call, TWIN_RPC_OK, NULL); break;
  }
  LOG_DEBUG("request %s finished: %d prompt + %d generated tokens, ttft %.1f ms, total %.1f ms",
            c->request_id, ev->prompt_tokens, ev->completion_tokens, ev->ttft_ms, ev->total_ms);
  gen_ctx_unref(c);
}

/* Fills p from the request's sampling message; an error names the field. */
static int read_sampling(const Twin__Llm__V1__SamplingParams *s, uint32_t logprobs,
                         twin_sampling_params *p, twin_err *err) {
  twin_sampling_params_default(p);
  if (s) {
    if (s->temperature_opt_case) p->temperature = s->temperature;
    if (s->top_p_opt_case) p->top_p = s->top_p;
    if (s->top_k_opt_case) p->top_k = s->top_k;
    if (s->min_p_opt_case) p->min_p = s->min_p;
    if (s->repetition_penalty_opt_case) p->repetition_penalty = s->repetition_penalty;
    if (s->presence_penalty_opt_case) p->presence_penalty = s->presence_penalty;
    if (s->frequency_penalty_opt_case) p->frequency_penalty = s->frequency_penalty;
    if (s->seed_opt_case) {
      p->seed = s->seed;
      p->has_seed = 1;
    }
  }
  if (logprobs > TWIN_SAMPLER_MAX_LOGPROBS)
    return twin_err_set(err, TWIN_EINVAL, "logprobs: %u is over the limit of %d", logprobs,
                        TWIN_SAMPLER_MAX_LOGPROBS);
  if (logprobs) {
    p->logprobs = 1;
    p->top_logprobs = (int)logprobs;
  }
  int rc = twin_sampling_params_validate(p, err);
  if (rc) twin_err_wrap(err, "sampling");
  return rc;
}

static int check_utf8(const char *field, const char *s, twin_err *err) {
  size_t n = strlen(s);
  size_t bad = twin_utf8_validate(s, n);
  if (bad != n)
    return twin_err_set(err, TWIN_EINVAL, "%s: invalid UTF-8 at byte %zu", field, bad);
  return 0;
}

/* Turns the request's input into token ids (*ids malloc'd). */
static int tokenize_input(const twin_model *model, const Twin__Llm__V1__GenerateRequest *r,
                          int32_t **ids, size_t *n, twin_err *err) {
  switch (r->input_case) {
    case TWIN__LLM__V1__GENERATE_REQUEST__INPUT_PROMPT: {
      if (!r->prompt[0]) return twin_err_set(err, TWIN_EINVAL, "prompt: empty");
      int rc = check_utf8("prompt", r->prompt, err);
      if (rc) return rc;
      if (!model->tok) return twin_err_set(err, TWIN_EUNSUPPORTED, "prompt: the model has no tokenizer; send token_ids");
      return twin_tokenizer_encode(model->tok, r->prompt, strlen(r->prompt), 1, ids, n, err);
    }
    case TWIN__LLM__V1__GENERATE_REQUEST__INPUT_MESSAGES: {
      size_t nm = r->messages ? r->messages->n_items : 0;
      if (nm == 0) return twin_err_set(err, TWIN_EINVAL, "messages: empty");
      twin_chat_message *msgs = calloc(nm, sizeof *msgs);
      if (!msgs) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
      int rc = 0;
      for (size_t i = 0; i < nm && !rc; i++) {
        char field[64];
        snprintf(field, sizeof field, "messages[%zu].content", i);
        rc = check_utf8(field, r->messages->items[i]->content, err);
        msgs[i].role = r->messages->items[i]->role;
        msgs[i].content = r->messages->items[i]->content;
      }
      if (!rc) rc = twin_model_encode_chat(model, msgs, (int)nm, ids, n, err);
      free(msgs);
      return rc;
    }
    case TWIN__LLM__V1__GENERATE_REQUEST__INPUT_TOKEN_IDS: {
      size_t k = r->token_ids ? r->token_ids->n_ids : 0;
      if (k == 0) return twin_err_set(err, TWIN_EINVAL, "token_ids: empty");
      *ids = malloc(k * sizeof **ids);
      if (!*ids) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
      memcpy(*ids, r->token_ids->ids, k * sizeof **ids);
      *n = k;
      return 0;
    }
    default:
      return twin_err_set(err, TWIN_EINVAL, "input: set one of prompt, messages or token_ids");
  }
}

static void handle_generate(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  twin_llm_service *svc = user;
  if (!atomic_load(&svc->ready)) {
    twin_rpc_call_fail(call, TWIN_RPC_UNAVAILABLE, "the model is still loading");
    return;
  }
  if (atomic_load(&svc->draining)) {
    twin_rpc_call_fail(call, TWIN_RPC_UNAVAILABLE, "the server is shutting down");
    return;
  }
  Twin__Llm__V1__GenerateRequest *r = twin__llm__v1__generate_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed GenerateRequest");
    return;
  }
  twin_err err = {0};
  int32_t *ids = NULL;
  size_t n_ids = 0;
  twin_gen_request g = {0};
  const char *stops[MAX_STOP_STRINGS];
  int rc = 0;
  if (r->adapter[0])
    rc = twin_err_set(&err, TWIN_EINVAL, "adapter: unknown adapter '%s' (none loaded)", r->adapter);
  if (!rc) rc = read_sampling(r->sampling, r->logprobs, &g.sampling, &err);
  if (!rc && r->n_stop > MAX_STOP_STRINGS)
    rc = twin_err_set(&err, TWIN_EINVAL, "stop: %zu strings, at most %d", r->n_stop, MAX_STOP_STRINGS);
  for (size_t i = 0; !rc && i < r->n_stop; i++) {
    char field[32];
    snprintf(field, sizeof field, "stop[%zu]", i);
    rc = check_utf8(field, r->stop[i], &err);
    if (!rc && !r->stop[i][0]) rc = twin_err_set(&err, TWIN_EINVAL, "%s: empty", field);
    stops[i] = r->stop[i];
  }
  if (!rc) rc = check_utf8("request_id", r->request_id, &err);
  if (!rc) rc = tokenize_input(svc->model, r, &ids, &n_ids, &err);
  if (rc) {
    twin_rpc_call_fail(call, twin_rpc_code_from_err(rc), "%s", err.msg);
    free(ids);
    twin__llm__v1__generate_request__free_unpacked(r, NULL);
    return;
  }

  gen_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    twin_rpc_call_fail(call, TWIN_RPC_RESOURCE_EXHAUSTED, "out of memory");
    free(ids);
    twin__llm__v1__generate_request__free_unpacked(r, NULL);
    return;
  }
  atomic_init(&c->refs, 2);
  c->call = call;
  c->engine = svc->engine;
  pthread_mutex_init(&c->mu, NULL);
  snprintf(c->request_id, sizeof c->request_id, "%s", r->request_id);
  twin_rpc_call_on_cancel(call, gen_on_cancel, c);

  g.prompt = ids;
  g.n_prompt = (int)n_ids;
  g.max_new_tokens = (int)(r->max_new_tokens > (uint32_t)INT32_MAX ? INT32_MAX : r->max_new_tokens);
  g.stop = stops;
  g.n_stop = (int)r->n_stop;
  g.ignore_eos = r->ignore_eos;
  g.callback = gen_on_event;
  g.user = c;
  uint64_t id = 0;
  rc = twin_engine_submit(svc->engine, &g, &id, &err);
  free(ids);
  twin__llm__v1__generate_request__free_unpacked(r, NULL);
  if (rc) {
    twin_rpc_call_fail(call, twin_rpc_code_from_err(rc), "%s", err.msg);
    gen_ctx_unref(c); /* the engine never got its reference */
    gen_ctx_unref(c);
    return;
  }
  pthread_mutex_lock(&c->mu);
  c->id = id;
  int cancelled = c->cancelled;
  pthread_mutex_unlock(&c->mu);
  if (cancelled) twin_engine_cancel(svc->engine, id);
  gen_ctx_unref(c);
}

/* ==== Tokenize / GetModelInfo =============================================================== */

static void handle_tokenize(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  twin_llm_service *svc = user;
  if (!atomic_load(&svc->ready)) {
    twin_rpc_call_fail(call, TWIN_RPC_UNAVAILABLE, "the model is still loading");
    return;
  }
  Twin__Llm__V1__TokenizeRequest *r = twin__llm__v1__tokenize_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed TokenizeRequest");
    return;
  }
  const twin_model *model = svc->model;
  twin_err err = {0};
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = 0;
  if (!model->tok) {
    rc = twin_err_set(&err, TWIN_EUNSUPPORTED, "the model has no tokenizer");
  } else if (r->input_case == TWIN__LLM__V1__TOKENIZE_REQUEST__INPUT_TEXT) {
    rc = check_utf8("text", r->text, &err);
    if (!rc) rc = twin_tokenizer_encode(model->tok, r->text, strlen(r->text), r->add_special_tokens, &ids, &n, &err);
  } else if (r->input_case == TWIN__LLM__V1__TOKENIZE_REQUEST__INPUT_MESSAGES) {
    Twin__Llm__V1__GenerateRequest g = TWIN__LLM__V1__GENERATE_REQUEST__INIT;
    g.input_case = TWIN__LLM__V1__GENERATE_REQUEST__INPUT_MESSAGES;
    g.messages = r->messages;
    rc = tokenize_input(model, &g, &ids, &n, &err);
  } else {
    rc = twin_err_set(&err, TWIN_EINVAL, "input: set text or messages");
  }
  if (rc) {
    twin_rpc_call_fail(call, twin_rpc_code_from_err(rc), "%s", err.msg);
    twin__llm__v1__tokenize_request__free_unpacked(r, NULL);
    return;
  }
  Twin__Llm__V1__TokenizeResponse resp = TWIN__LLM__V1__TOKENIZE_RESPONSE__INIT;
  resp.n_ids = n;
  resp.ids = ids;
  char **pieces = calloc(n ? n : 1, sizeof *pieces);
  for (size_t i = 0; pieces && i < n; i++) {
    const char *t = twin_tokenizer_id_to_token(model->tok, ids[i]);
    pieces[i] = (char *)(t ? t : "");
  }
  resp.n_pieces = pieces ? n : 0;
  resp.pieces = pieces;
  size_t sz = twin__llm__v1__tokenize_response__get_packed_size(&resp);
  uint8_t *buf = malloc(sz ? sz : 1);
  if (buf) {
    twin__llm__v1__tokenize_response__pack(&resp, buf);
    twin_rpc_call_reply(call, buf, sz);
  } else {
    twin_rpc_call_fail(call, TWIN_RPC_RESOURCE_EXHAUSTED, "out of memory");
  }
  free(buf);
  free(pieces);
  free(ids);
  twin__llm__v1__tokenize_request__free_unpacked(r, NULL);
}

static void handle_model_info(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  (void)req;
  (void)len;
  twin_llm_service *svc = user;
  if (!atomic_load(&svc->ready)) {
    twin_rpc_call_fail(call, TWIN_RPC_UNAVAILABLE, "the model is still loading");
    return;
  }
  const twin_model *m = svc->model;
  const twin_engine_opts *o = twin_engine_get_opts(svc->engine);
  twin_engine_stats st;
  twin_engine_get_stats(svc->engine, &st);
  Twin__Llm__V1__ModelInfo info = TWIN__LLM__V1__MODEL_INFO__INIT;
  info.model = (char *)m->name;
  info.architecture = (char *)m->cfg.arch_name;
  info.context_length = (uint32_t)o->max_context;
  info.dtype = (char *)svc->info.dtype;
  info.backend = (char *)svc->info.backend;
  info.block_size = TWIN_KV_BLOCK_SIZE;
  info.num_blocks = (uint32_t)st.blocks_total;
  info.max_batch = (uint32_t)o->max_batch;
  info.max_queue = (uint32_t)o->max_queue;
  info.max_new_tokens_limit = (uint32_t)o->max_new_tokens_limit;
  info.vocab_size = (uint32_t)m->cfg.vocab_size;
  info.chat_template = (char *)(m->has_chat_template ? m->chat.name : "");
  size_t sz = twin__llm__v1__model_info__get_packed_size(&info);
  uint8_t *buf = malloc(sz ? sz : 1);
  twin__llm__v1__model_info__pack(&info, buf);
  twin_rpc_call_reply(call, buf, sz);
  free(buf);
}

/* ==== lifetime ============================================================================== */

int twin_llm_service_create(twin_rpc_server *srv, twin_llm_service **out, twin_err *err) {
  *out = NULL;
  twin_llm_service *svc = calloc(1, sizeof *svc);
  if (!svc) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  pthread_mutex_init(&svc->mu, NULL);
  int rc = twin_rpc_server_add_method(srv, "/twin.llm.v1.LlmService/Generate", TWIN_RPC_SERVER_STREAMING,
                                      handle_generate, twin_llm_coalesce_responses, svc, err);
  if (!rc) rc = twin_rpc_server_add_method(srv, "/twin.llm.v1.LlmService/Tokenize", TWIN_RPC_UNARY,
                                           handle_tokenize, NULL, svc, err);
  if (!rc) rc = twin_rpc_server_add_method(srv, "/twin.llm.v1.LlmService/GetModelInfo", TWIN_RPC_UNARY,
                                           handle_model_info, NULL, svc, err);
  if (rc) {
    twin_llm_service_destroy(svc);
    return rc;
  }
  *out = svc;
  return 0;
}

void twin_llm_service_ready(twin_llm_service *svc, const twin_model *model, twin_engine *engine,
                            const twin_llm_service_info *info) {
  svc->model = model;
  svc->engine = engine;
  svc->info = *info;
  atomic_store(&svc->ready, 1);
}

void twin_llm_service_drain(twin_llm_service *svc) { atomic_store(&svc->draining, 1); }

void twin_llm_service_destroy(twin_llm_service *svc) {
  if (!svc) return;
  pthread_mutex_destroy(&svc->mu);
  free(svc);
}
