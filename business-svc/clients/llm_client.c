/* business-svc/clients/llm_client.c — Generate/Tokenize/GetModelInfo calls to llm-svc over the
 * project's gRPC client. A failure before the first token (UNAVAILABLE, a refused connection,
 * RESOURCE_EXHAUSTED from a full replica) is retried once: the round-robin channel sends the
 * retry to the next replica. Once a token has been relayed, nothing is retried. */
#include "business-svc/clients/llm_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rpc/client.h"
#include "common/util.h"
#include "proto/llm.pb-c.h"

struct twin_llm_client {
  twin_rpc_channel *ch;
};

int twin_llm_client_create(const char *target, twin_llm_client **out, twin_err *err) {
  *out = NULL;
  twin_llm_client *c = calloc(1, sizeof *c);
  if (!c) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  int rc = twin_rpc_channel_create(target, NULL, &c->ch, err);
  if (rc) {
    free(c);
    return rc;
  }
  *out = c;
  return 0;
}

void twin_llm_client_destroy(twin_llm_client *c) {
  if (!c) return;
  twin_rpc_channel_destroy(c->ch);
  free(c);
}

static const char *finish_name(Twin__Llm__V1__FinishReason r) {
  switch (r) {
    case TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_STOP: return "stop";
    case TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_LENGTH: return "length";
    case TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_CANCELLED: return "cancelled";
    case TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_ERROR: return "error";
    default: return "";
  }
}

static uint8_t *pack_request(const twin_llm_request *r, size_t *len) {
  Twin__Llm__V1__ChatMessage *msgs = calloc((size_t)r->n_messages, sizeof *msgs);
  Twin__Llm__V1__ChatMessage **ptrs = calloc((size_t)r->n_messages, sizeof *ptrs);
  if (!msgs || !ptrs) {
    free(msgs);
    free(ptrs);
    return NULL;
  }
  for (int i = 0; i < r->n_messages; i++) {
    twin__llm__v1__chat_message__init(&msgs[i]);
    msgs[i].role = (char *)r->messages[i].role;
    msgs[i].content = (char *)r->messages[i].content;
    ptrs[i] = &msgs[i];
  }
  Twin__Llm__V1__ChatMessageList list = TWIN__LLM__V1__CHAT_MESSAGE_LIST__INIT;
  list.n_items = (size_t)r->n_messages;
  list.items = ptrs;
  Twin__Llm__V1__SamplingParams sp = TWIN__LLM__V1__SAMPLING_PARAMS__INIT;
  const twin_llm_sampling *s = &r->sampling;
  if (s->has_temperature) {
    sp.temperature_opt_case = TWIN__LLM__V1__SAMPLING_PARAMS__TEMPERATURE_OPT_TEMPERATURE;
    sp.temperature = s->temperature;
  }
  if (s->has_top_p) {
    sp.top_p_opt_case = TWIN__LLM__V1__SAMPLING_PARAMS__TOP_P_OPT_TOP_P;
    sp.top_p = s->top_p;
  }
  if (s->has_top_k) {
    sp.top_k_opt_case = TWIN__LLM__V1__SAMPLING_PARAMS__TOP_K_OPT_TOP_K;
    sp.top_k = s->top_k;
  }
  if (s->has_seed) {
    sp.seed_opt_case = TWIN__LLM__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
    sp.seed = s->seed;
  }
  Twin__Llm__V1__GenerateRequest g = TWIN__LLM__V1__GENERATE_REQUEST__INIT;
  g.input_case = TWIN__LLM__V1__GENERATE_REQUEST__INPUT_MESSAGES;
  g.messages = &list;
  g.sampling = &sp;
  g.max_new_tokens = r->max_new_tokens > 0 ? (uint32_t)r->max_new_tokens : 0;
  g.n_stop = (size_t)r->n_stop;
  g.stop = (char **)r->stop;
  if (r->request_id) g.request_id = (char *)r->request_id;
  *len = twin__llm__v1__generate_request__get_packed_size(&g);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf) twin__llm__v1__generate_request__pack(&g, buf);
  free(msgs);
  free(ptrs);
  return buf;
}

static int retryable(twin_rpc_code code) {
  return code == TWIN_RPC_UNAVAILABLE || code == TWIN_RPC_RESOURCE_EXHAUSTED;
}

int twin_llm_generate(twin_llm_client *c, const twin_llm_request *req, twin_llm_on_text on_text,
                      void *user, twin_llm_result *res, twin_err *err) {
  memset(res, 0, sizeof *res);
  size_t len;
  uint8_t *buf = pack_request(req, &len);
  if (!buf) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  twin_rpc_metadata md = {"x-request-id", req->request_id ? req->request_id : ""};
  int64_t t0 = twin_time_mono_ms();
  int rc = 0;
  for (int attempt = 1; attempt <= 2; attempt++) {
    res->attempts = attempt;
    int64_t left = req->deadline_ms > 0 ? req->deadline_ms - (twin_time_mono_ms() - t0) : 0;
    if (req->deadline_ms > 0 && left <= 0) {
      rc = twin_err_set(err, TWIN_ETIMEOUT, "llm-svc: the deadline passed before generation started");
      break;
    }
    twin_rpc_stream *s;
    rc = twin_rpc_stream_start(c->ch, "/twin.llm.v1.LlmService/Generate", buf, len, left,
                               &md, req->request_id ? 1 : 0, &s, err);
    if (rc) break;
    int got_token = 0, cancelled = 0;
    uint8_t *msg;
    size_t mlen;
    while (twin_rpc_stream_next(s, &msg, &mlen) == 1) {
      Twin__Llm__V1__GenerateResponse *m = twin__llm__v1__generate_response__unpack(NULL, mlen, msg);
      free(msg);
      if (!m) continue;
      if (m->n_token_ids || m->text[0]) got_token = 1;
      size_t tl = strlen(m->text);
      if (tl && on_text && on_text(user, m->text, tl) != 0) {
        cancelled = 1;
        twin_rpc_stream_cancel(s);
      }
      if (m->finish_reason != TWIN__LLM__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED) {
        snprintf(res->finish_reason, sizeof res->finish_reason, "%s", finish_name(m->finish_reason));
        if (m->usage) {
          res->prompt_tokens = (int)m->usage->prompt_tokens;
          res->completion_tokens = (int)m->usage->completion_tokens;
          res->cached_tokens = (int)m->usage->cached_prompt_tokens;
        }
        if (m->timings) {
          res->ttft_ms = m->timings->ttft_ms;
          res->total_ms = m->timings->total_ms;
        }
      }
      twin__llm__v1__generate_response__free_unpacked(m, NULL);
      if (cancelled) break;
    }
    if (cancelled) while (twin_rpc_stream_next(s, &msg, &mlen) == 1) free(msg);
    res->status = *twin_rpc_stream_status(s);
    twin_rpc_stream_destroy(s);
    if (cancelled) {
      snprintf(res->finish_reason, sizeof res->finish_reason, "cancelled");
      rc = twin_err_set(err, TWIN_ECANCELLED, "generation cancelled");
      break;
    }
    if (res->status.code == TWIN_RPC_OK) {
      rc = 0;
      break;
    }
    rc = twin_err_set(err, twin_rpc_err_from_code(res->status.code), "llm-svc: %s: %s",
                      twin_rpc_code_name(res->status.code), res->status.message);
    if (got_token || !retryable(res->status.code)) break;
  }
  free(buf);
  if (rc && !res->finish_reason[0]) snprintf(res->finish_reason, sizeof res->finish_reason, "error");
  return rc;
}

typedef struct collect {
  twin_buf b;
} collect;

static int collect_text(void *user, const char *text, size_t len) {
  collect *c = user;
  return twin_buf_append(&c->b, text, len) == 0 ? 0 : 1;
}

int twin_llm_complete(twin_llm_client *c, const twin_llm_request *req, char **text,
                      twin_llm_result *res, twin_err *err) {
  collect col;
  twin_buf_init(&col.b);
  int rc = twin_llm_generate(c, req, collect_text, &col, res, err);
  if (rc) {
    twin_buf_free(&col.b);
    *text = NULL;
    return rc;
  }
  *text = twin_buf_detach(&col.b, NULL);
  return *text ? 0 : twin_err_set(err, TWIN_ENOMEM, "out of memory");
}

int twin_llm_count_tokens(twin_llm_client *c, const char *text, size_t len, int64_t deadline_ms) {
  char *copy = malloc(len + 1);
  if (!copy) return -1;
  memcpy(copy, text, len);
  copy[len] = 0;
  Twin__Llm__V1__TokenizeRequest r = TWIN__LLM__V1__TOKENIZE_REQUEST__INIT;
  r.input_case = TWIN__LLM__V1__TOKENIZE_REQUEST__INPUT_TEXT;
  r.text = copy;
  size_t n = twin__llm__v1__tokenize_request__get_packed_size(&r);
  uint8_t *buf = malloc(n ? n : 1);
  twin__llm__v1__tokenize_request__pack(&r, buf);
  free(copy);
  uint8_t *resp;
  size_t rlen;
  twin_rpc_status st;
  int rc = twin_rpc_unary(c->ch, "/twin.llm.v1.LlmService/Tokenize", buf, n, deadline_ms, NULL, 0, &resp, &rlen, &st);
  free(buf);
  if (rc) return -1;
  Twin__Llm__V1__TokenizeResponse *t = twin__llm__v1__tokenize_response__unpack(NULL, rlen, resp);
  free(resp);
  int count = t ? (int)t->n_ids : -1;
  if (t) twin__llm__v1__tokenize_response__free_unpacked(t, NULL);
  return count;
}

int twin_llm_model_info(twin_llm_client *c, char *model, size_t cap, int *context_length,
                        int64_t deadline_ms, twin_err *err) {
  uint8_t *resp;
  size_t rlen;
  twin_rpc_status st;
  int rc = twin_rpc_unary(c->ch, "/twin.llm.v1.LlmService/GetModelInfo", NULL, 0, deadline_ms, NULL, 0, &resp, &rlen, &st);
  if (rc) return twin_err_set(err, rc, "llm-svc GetModelInfo: %s: %s", twin_rpc_code_name(st.code), st.message);
  Twin__Llm__V1__ModelInfo *m = twin__llm__v1__model_info__unpack(NULL, rlen, resp);
  free(resp);
  if (!m) return twin_err_set(err, TWIN_EFORMAT, "llm-svc GetModelInfo: malformed answer");
  snprintf(model, cap, "%s", m->model);
  if (context_length) *context_length = (int)m->context_length;
  twin__llm__v1__model_info__free_unpacked(m, NULL);
  return 0;
}
