/* llm-svc/server/llm_service.h — twin.llm.v1.LlmService over the engine: Generate (streamed
 * text deltas with their token ids, then finish reason, usage and timings), Tokenize and
 * GetModelInfo. Requests are validated here (INVALID_ARGUMENT names the field); a client cancel
 * or an expired deadline cancels the engine's sequence at once. */
#ifndef TWIN_LLM_SERVICE_H
#define TWIN_LLM_SERVICE_H

#include "common/rpc/server.h"
#include "llm-svc/engine/engine.h"
#include "llm-svc/model/model.h"

#define TWIN_LLM_SERVICE_NAME "twin.llm.v1.LlmService"

typedef struct twin_llm_service twin_llm_service;

typedef struct twin_llm_service_info {
  const char *backend;       /* "cpu" | "cuda" */
  const char *dtype;         /* weights as the backend holds them */
} twin_llm_service_info;

/* Registers the methods on srv (before it starts). Until twin_llm_service_ready() the methods
 * answer UNAVAILABLE ("model loading"). */
int twin_llm_service_create(twin_rpc_server *srv, twin_llm_service **out, twin_err *err);
/* model and engine are borrowed and must outlive the service's calls. */
void twin_llm_service_ready(twin_llm_service *svc, const twin_model *model, twin_engine *engine,
                            const twin_llm_service_info *info);
/* New Generate calls answer UNAVAILABLE from now on. */
void twin_llm_service_drain(twin_llm_service *svc);
void twin_llm_service_destroy(twin_llm_service *svc);

/* Merges queued GenerateResponse messages into one (text and token ids concatenated, the final
 * fields of the last kept). */
uint8_t *twin_llm_coalesce_responses(const uint8_t *const *msgs, const size_t *lens, size_t n,
                                     size_t *out_len);

#endif
