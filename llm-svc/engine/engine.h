/* llm-svc/engine/engine.h — continuous batching over a paged KV cache.
 * One loop thread owns the backend. Each step it takes new requests and cancels from an inbox,
 * schedules every running decode, continues chunked prefills and admits waiting requests
 * first-come first-served under a token budget, preempting the newest sequence (recompute
 * later) when KV blocks run out; runs one batched forward; samples; detokenizes; matches stop
 * strings; and reports each sequence's new tokens through its callback. Callers on other
 * threads only submit and cancel. */
#ifndef TWIN_ENGINE_ENGINE_H
#define TWIN_ENGINE_ENGINE_H

#include <stdint.h>

#include "common/error.h"
#include "common/metrics.h"
#include "llm-svc/engine/backend.h"
#include "llm-svc/engine/sampler.h"
#include "llm-svc/model/tokenizer.h"

/* Numbered as twin.llm.v1.FinishReason. */
typedef enum {
  TWIN_FINISH_NONE = 0,
  TWIN_FINISH_STOP = 1,       /* EOS or a stop string */
  TWIN_FINISH_LENGTH = 2,     /* max_new_tokens or the context limit */
  TWIN_FINISH_CANCELLED = 3,
  TWIN_FINISH_ERROR = 4,
} twin_finish_reason;

typedef struct twin_engine_opts {
  int max_batch;              /* sequences running at once (default 64) */
  int max_queue;              /* requests waiting for admission (default 256) */
  int max_context;            /* prompt + generated tokens per sequence (default: the model's) */
  int max_new_tokens_limit;   /* largest max_new_tokens a request may ask (default max_context) */
  int default_max_new_tokens; /* when a request asks 0 (default 256) */
  int max_tokens_per_step;    /* token budget of one forward (default 512) */
  int prefill_chunk;          /* prompt tokens of one sequence per step (default = budget) */
  twin_metrics *metrics;      /* borrowed; NULL = no metrics */
} twin_engine_opts;

/* One report to a request's callback. finish != NONE marks the last one; after it the engine
 * never touches the request's user pointer again. Pointers are valid during the call only. */
typedef struct twin_gen_event {
  int n_tokens;                       /* tokens produced since the last event */
  const int32_t *tokens;              /* [n_tokens] */
  const twin_sample_result *samples;  /* [n_tokens], logprobs when asked; may be NULL */
  const char *text;                   /* text completed since the last event (whole UTF-8),
                                         NUL-terminated at text_len */
  size_t text_len;
  twin_finish_reason finish;
  const char *error;                  /* with TWIN_FINISH_ERROR */
  int prompt_tokens, completion_tokens, cached_tokens;
  double queue_ms, ttft_ms, total_ms;
} twin_gen_event;

/* Runs on the engine's loop thread: must not block (queue the work elsewhere). */
typedef void (*twin_gen_callback)(void *user, const twin_gen_event *ev);

typedef struct twin_gen_request {
  const int32_t *prompt;              /* [n_prompt], copied */
  int n_prompt;
  twin_sampling_params sampling;
  int max_new_tokens;                 /* 0 = the engine's default */
  const char *const *stop;            /* [n_stop] stop strings, copied */
  int n_stop;
  int ignore_eos;
  twin_gen_callback callback;
  void *user;
} twin_gen_request;

typedef struct twin_engine_stats {
  int running, waiting;
  int blocks_total, blocks_used;
  uint64_t prefix_queries, prefix_hits;
  uint64_t preemptions;
  uint64_t steps;
} twin_engine_stats;

typedef struct twin_engine twin_engine;

/* backend and tok are borrowed and must outlive the engine; tok may be NULL (no text then).
 * eos_ids [n_eos] are copied. Starts the loop thread. */
int twin_engine_create(twin_backend *backend, const twin_tokenizer *tok, const int32_t *eos_ids,
                       int n_eos, const twin_engine_opts *opts, twin_engine **out, twin_err *err);
/* Validates and queues. TWIN_EINVAL naming the field (prompt empty or too long for the
 * context, max_new_tokens over the limit, sampling values), TWIN_EFULL when the waiting queue
 * is full, TWIN_EUNAVAILABLE once draining. *id_out identifies it for cancel. */
int twin_engine_submit(twin_engine *e, const twin_gen_request *req, uint64_t *id_out, twin_err *err);
/* Asks the loop to end the request (its blocks are freed within one step); its callback gets a
 * last event with TWIN_FINISH_CANCELLED unless it finished first. Any thread. */
void twin_engine_cancel(twin_engine *e, uint64_t id);
/* Stops admitting new requests (submit answers TWIN_EUNAVAILABLE). */
void twin_engine_drain(twin_engine *e);
void twin_engine_get_stats(twin_engine *e, twin_engine_stats *out);
const twin_engine_opts *twin_engine_get_opts(const twin_engine *e);
/* Cancels whatever is left, stops the loop, frees everything. */
void twin_engine_destroy(twin_engine *e);

#endif
