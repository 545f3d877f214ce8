/* business-svc/server/business_service.h — twin.business.v1.TwinService: Ask (sources first,
 * then the LLM's text deltas as they arrive, then a summary with finish reason, usage, trace id
 * and stage timings), Search (the ranked chunks alone), Ingest and DeleteDocument. Ask keeps
 * conversation memory per session id in Redis (last N turns, with a TTL), answers deterministic
 * requests from a response cache in Redis (replayed as a stream), propagates the client's
 * deadline to llm-svc, and publishes one trace per request through the trace publisher. */
#ifndef TWIN_BUSINESS_SERVICE_H
#define TWIN_BUSINESS_SERVICE_H

#include "business-svc/clients/trace_publisher.h"
#include "business-svc/prompt/template.h"
#include "business-svc/rag/text_encoder.h"
#include "business-svc/server/retrieval.h"
#include "common/metrics.h"
#include "common/rpc/server.h"

#define TWIN_BUSINESS_SERVICE_NAME "twin.business.v1.TwinService"

typedef struct twin_business_config {
  twin_retriever_config retriever;   /* embedder, index, Redis pool, LLM client, rerank mode */
  const twin_prompt_registry *templates;
  twin_trace_publisher *traces;      /* may be NULL */
  twin_text_encoder encoder;         /* for Ingest */
  int max_query_bytes;               /* default 4096 */
  int memory_turns;                  /* question/answer pairs kept per session (default 4) */
  int memory_ttl_s;                  /* default 3600 */
  int cache_ttl_s;                   /* default 86400; 0 = no response cache */
  int default_max_new_tokens;        /* default 256 */
  float default_temperature;         /* when a request sets none (< 0 = llm-svc's default) */
  float default_top_p;               /* likewise (<= 0 = llm-svc's default) */
  int context_tokens;                /* the model's context; 0 = ask llm-svc (GetModelInfo) */
  const char *prices;                /* "model=in/out,..." USD per million tokens; "*" = any */
  twin_metrics *metrics;             /* borrowed, may be NULL */
} twin_business_config;

typedef struct twin_business_service twin_business_service;

/* Registers the four methods on srv (before it starts); cfg is copied, its pointers borrowed. */
int twin_business_service_create(twin_rpc_server *srv, const twin_business_config *cfg,
                                 twin_business_service **out, twin_err *err);
/* Until called, methods answer UNAVAILABLE ("starting"): the index is still loading. */
void twin_business_service_ready(twin_business_service *s);
void twin_business_service_destroy(twin_business_service *s);

#endif
