/* business-svc/clients/llm_client.h — business-svc's client of llm-svc: streamed generation of
 * chat messages with a deadline, a retry on another replica only before the first token (the
 * channel round-robins over every address of the target), cancellation, and Tokenize and
 * GetModelInfo. Thread-safe: one client serves every request. */
#ifndef TWIN_CLIENTS_LLM_CLIENT_H
#define TWIN_CLIENTS_LLM_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/rpc/status.h"

typedef struct twin_llm_client twin_llm_client;

typedef struct twin_llm_message {
  const char *role;
  const char *content;
} twin_llm_message;

typedef struct twin_llm_sampling {
  int has_temperature, has_top_p, has_top_k, has_seed;
  float temperature, top_p;
  int top_k;
  uint64_t seed;
} twin_llm_sampling;

typedef struct twin_llm_request {
  const twin_llm_message *messages;  /* [n_messages] */
  int n_messages;
  twin_llm_sampling sampling;
  int max_new_tokens;                /* 0 = the server's default */
  const char *const *stop;           /* [n_stop] */
  int n_stop;
  int64_t deadline_ms;               /* budget for the whole call; <= 0 = none */
  const char *request_id;            /* may be NULL */
} twin_llm_request;

typedef struct twin_llm_result {
  char finish_reason[16];            /* "stop" | "length" | "cancelled" | "error" */
  int prompt_tokens, completion_tokens, cached_tokens;
  double ttft_ms, total_ms;          /* as llm-svc measured them */
  int attempts;                      /* 2 when the first replica failed before any token */
  twin_rpc_status status;
} twin_llm_result;

/* Called for every text delta as it arrives; return non-zero to cancel the generation. */
typedef int (*twin_llm_on_text)(void *user, const char *text, size_t len);

/* target: "dns:///llm-svc:50051", "host:port", "ipv4:a:p,b:p". */
int twin_llm_client_create(const char *target, twin_llm_client **out, twin_err *err);
void twin_llm_client_destroy(twin_llm_client *c);

/* Streams one generation. Returns 0 when it ended normally (finish stop/length), else an error
 * (TWIN_EUNAVAILABLE when no replica answered, TWIN_ETIMEOUT at the deadline, TWIN_ECANCELLED
 * when on_text asked, TWIN_EINVAL when llm-svc refused the request) with result->status. */
int twin_llm_generate(twin_llm_client *c, const twin_llm_request *req, twin_llm_on_text on_text,
                      void *user, twin_llm_result *result, twin_err *err);
/* The same, collecting the text (*text malloc'd, caller frees). */
int twin_llm_complete(twin_llm_client *c, const twin_llm_request *req, char **text,
                      twin_llm_result *result, twin_err *err);
/* Token count of text under the model's tokenizer (no special tokens); < 0 on error. */
int twin_llm_count_tokens(twin_llm_client *c, const char *text, size_t len, int64_t deadline_ms);
/* Model name and context length from GetModelInfo. */
int twin_llm_model_info(twin_llm_client *c, char *model, size_t cap, int *context_length,
                        int64_t deadline_ms, twin_err *err);

#endif
