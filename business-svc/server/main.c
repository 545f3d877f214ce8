/* business-svc/server/main.c — the user-facing service process. Flags (each with an environment
 * twin); gRPC + HTTP up first with health NOT_SERVING; then the embedder, the vector index and
 * its follower (the whole index loaded from Redis), the trace publisher and the llm-svc client;
 * SERVING once the index is in step with Redis. SIGTERM/SIGINT: NOT_SERVING, calls in flight get
 * the grace period, traces still queued get a last chance to reach Redis. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/clients/llm_client.h"
#include "business-svc/clients/trace_publisher.h"
#include "business-svc/prompt/template.h"
#include "business-svc/rag/embedder.h"
#include "business-svc/rag/index_follower.h"
#include "business-svc/rag/text_encoder.h"
#include "business-svc/rag/vector_index.h"
#include "business-svc/server/business_service.h"
#include "common/config.h"
#include "common/log.h"
#include "common/redis_pool.h"
#include "common/rpc/service.h"
#include "common/signals.h"
#include "common/util.h"

#ifndef TWIN_BUSINESS_TEMPLATES_DIR
#define TWIN_BUSINESS_TEMPLATES_DIR "business-svc/prompt/templates"
#endif

typedef struct business_flags {
  const char *host, *llm_target, *redis_url, *trace_redis_url, *log_level, *embedder, *templates;
  const char *index_kind, *rerank;
  const char *prices;
  int port, http_port, hnsw_threshold, max_query_bytes, memory_turns, cache_ttl_s, memory_ttl_s;
  int default_max_new_tokens, redis_pool, context_tokens;
  int64_t grace_ms, llm_stage_timeout_ms;
  double temperature, top_p;
  bool log_json;
} business_flags;

static const char *const k_services[] = {TWIN_BUSINESS_SERVICE_NAME, NULL};

int main(int argc, char **argv) {
  twin_signals_block();
  business_flags f = {0};
  const twin_option opts[] = {
      {"host", "BUSINESS_HOST", TWIN_OPT_STRING, "0.0.0.0", "address to listen on (gRPC and HTTP)", &f.host, NULL, "ADDR"},
      {"port", "BUSINESS_PORT", TWIN_OPT_INT, "50052", "gRPC port (0 = any free port)", &f.port, NULL, NULL},
      {"http-port", "BUSINESS_HTTP_PORT", TWIN_OPT_INT, "8080", "HTTP port: /metrics, /healthz (0 = any)", &f.http_port, NULL, NULL},
      {"llm-target", "BUSINESS_LLM_TARGET", TWIN_OPT_STRING, "dns:///127.0.0.1:50051", "llm-svc gRPC target (round-robin over its addresses)", &f.llm_target, NULL, "TARGET"},
      {"redis-url", "REDIS_URL", TWIN_OPT_STRING, "redis://127.0.0.1:6379", "Redis: chunks, vectors, cache, memory, traces", &f.redis_url, NULL, "URL"},
      {"trace-redis-url", "BUSINESS_TRACE_REDIS_URL", TWIN_OPT_STRING, NULL, "Redis for the trace stream (default: --redis-url)", &f.trace_redis_url, NULL, "URL"},
      {"embedder", "BUSINESS_EMBEDDER", TWIN_OPT_STRING, "models/embedder", "sentence-embedding model directory (all-MiniLM-L6-v2 class)", &f.embedder, NULL, "DIR"},
      {"templates", "BUSINESS_TEMPLATES", TWIN_OPT_STRING, TWIN_BUSINESS_TEMPLATES_DIR, "directory of prompt templates (*.tmpl)", &f.templates, NULL, "DIR"},
      {"index", "BUSINESS_INDEX", TWIN_OPT_STRING, "auto", "vector index: exact, hnsw, or exact turning into HNSW past --hnsw-threshold", &f.index_kind, "exact|hnsw|auto", NULL},
      {"hnsw-threshold", "BUSINESS_HNSW_THRESHOLD", TWIN_OPT_INT, "50000", "vectors at which the auto index builds HNSW", &f.hnsw_threshold, NULL, NULL},
      {"rerank", "BUSINESS_RERANK", TWIN_OPT_STRING, "llm", "how candidates are reranked (when a request asks)", &f.rerank, "llm|embedding|none", NULL},
      {"llm-stage-timeout", "BUSINESS_LLM_STAGE_TIMEOUT", TWIN_OPT_DURATION, "3s", "budget of each LLM helper stage (self-query, expansion, rerank); skipped past it", &f.llm_stage_timeout_ms, NULL, NULL},
      {"max-query-bytes", "BUSINESS_MAX_QUERY_BYTES", TWIN_OPT_INT, "4096", "longest query accepted", &f.max_query_bytes, NULL, NULL},
      {"memory-turns", "BUSINESS_MEMORY_TURNS", TWIN_OPT_INT, "4", "question/answer pairs remembered per session", &f.memory_turns, NULL, NULL},
      {"memory-ttl", "BUSINESS_MEMORY_TTL", TWIN_OPT_INT, "3600", "seconds a session's memory lives", &f.memory_ttl_s, NULL, NULL},
      {"cache-ttl", "BUSINESS_CACHE_TTL", TWIN_OPT_INT, "86400", "seconds a cached answer lives (0 = no response cache)", &f.cache_ttl_s, NULL, NULL},
      {"default-max-new-tokens", "BUSINESS_MAX_NEW_TOKENS", TWIN_OPT_INT, "256", "answer length when a request gives none", &f.default_max_new_tokens, NULL, NULL},
      {"temperature", "BUSINESS_TEMPERATURE", TWIN_OPT_DOUBLE, "0.2", "sampling temperature when a request gives none (-1 = llm-svc's default)", &f.temperature, NULL, NULL},
      {"top-p", "BUSINESS_TOP_P", TWIN_OPT_DOUBLE, "0.9", "top_p when a request gives none (0 = llm-svc's default)", &f.top_p, NULL, NULL},
      {"context-tokens", "BUSINESS_CONTEXT_TOKENS", TWIN_OPT_INT, "0", "prompt budget: the model's context (0 = ask llm-svc)", &f.context_tokens, NULL, NULL},
      {"prices", "BUSINESS_PRICES", TWIN_OPT_STRING, "*=0.10/0.40", "cost table, USD per million tokens: model=input/output,... (* = any)", &f.prices, NULL, "TABLE"},
      {"redis-pool", "BUSINESS_REDIS_POOL", TWIN_OPT_INT, "16", "Redis connections shared by requests", &f.redis_pool, NULL, NULL},
      {"grace-period", "BUSINESS_GRACE_PERIOD", TWIN_OPT_DURATION, "30s", "on SIGTERM, time calls in flight get to finish", &f.grace_ms, NULL, NULL},
      {"log-level", "LOG_LEVEL", TWIN_OPT_STRING, "info", "log level", &f.log_level, "debug|info|warn|error", NULL},
      {"log-json", "LOG_JSON", TWIN_OPT_BOOL, "false", "log JSON lines", &f.log_json, NULL, NULL},
  };
  twin_config *cfg = twin_config_create("business-svc", "Twin's RAG service: retrieval, prompts, streamed answers.",
                                        opts, sizeof opts / sizeof opts[0]);
  int early = twin_service_parse_flags(cfg, "business-svc", argc, argv);
  if (early >= 0) {
    twin_config_destroy(cfg);
    return early;
  }
  twin_err err = {0};
  int exit_code = 1;
  twin_service *svc = NULL;
  twin_business_service *biz = NULL;
  twin_embedder *embedder = NULL;
  twin_vector_index *index = NULL;
  twin_index_follower *follower = NULL;
  twin_redis_pool *pool = NULL;
  twin_llm_client *llm = NULL;
  twin_trace_publisher *traces = NULL;
  twin_prompt_registry *templates = NULL;
  if (twin_service_logging("business-svc", f.log_level, f.log_json, &err) != 0) {
    fprintf(stderr, "business-svc: %s\n", err.msg);
    twin_config_destroy(cfg);
    return 2;
  }
  twin_index_kind kind;
  twin_rerank_mode rerank = !strcmp(f.rerank, "llm") ? TWIN_RERANK_LLM : !strcmp(f.rerank, "embedding") ? TWIN_RERANK_EMBEDDING : TWIN_RERANK_NONE;
  if (twin_index_kind_parse(f.index_kind, &kind, &err) ||
      twin_prompt_registry_load(f.templates, &templates, &err)) {
    fprintf(stderr, "business-svc: %s\n", err.msg);
    exit_code = 2;
    goto out;
  }

  twin_service_opts so = {.name = "business-svc", .host = f.host, .grpc_port = f.port, .http_port = f.http_port};
  if (twin_service_create(&so, &svc, &err)) goto fail;
  twin_redis_options ro = {.url = f.redis_url, .connect_timeout_ms = 1000, .command_timeout_ms = 5000};
  if (twin_redis_pool_create(&ro, f.redis_pool, &pool, &err)) goto fail;
  if (twin_llm_client_create(f.llm_target, &llm, &err)) goto fail;
  twin_trace_publisher_opts to = {.redis_url = f.trace_redis_url && *f.trace_redis_url ? f.trace_redis_url : f.redis_url,
                                  .metrics = svc->metrics};
  if (twin_trace_publisher_create(&to, &traces, &err)) goto fail;
  twin_business_config bc = {
      .retriever = {.redis = pool, .llm = llm, .rerank = rerank, .llm_stage_timeout_ms = (int)f.llm_stage_timeout_ms},
      .templates = templates,
      .traces = traces,
      .max_query_bytes = f.max_query_bytes,
      .memory_turns = f.memory_turns,
      .memory_ttl_s = f.memory_ttl_s,
      .cache_ttl_s = f.cache_ttl_s,
      .default_max_new_tokens = f.default_max_new_tokens,
      .default_temperature = (float)f.temperature,
      .default_top_p = (float)f.top_p,
      .context_tokens = f.context_tokens,
      .prices = f.prices,
      .metrics = svc->metrics,
  };
  /* the embedder and index are filled in below; the service reads them only once ready */
  if (twin_embedder_open(&embedder, f.embedder, &err)) goto fail;
  twin_vector_index_options io = {.dim = twin_embedder_dim(embedder), .kind = kind,
                                  .hnsw_threshold = (size_t)f.hnsw_threshold};
  if (twin_vector_index_create(&index, &io, &err)) goto fail;
  bc.retriever.embedder = embedder;
  bc.retriever.index = index;
  bc.encoder = twin_text_encoder_from_embedder(embedder);
  if (twin_business_service_create(svc->rpc, &bc, &biz, &err)) goto fail;
  twin_service_set_serving(svc, k_services, 0, "loading the vector index from Redis");
  if (twin_service_start(svc, &err)) goto fail;

  twin_index_follower_options fo = {.redis_url = f.redis_url};
  if (twin_index_follower_start(&follower, index, &fo, &err)) goto fail;
  /* wait for the index, still answering signals */
  int sig = 0;
  for (;;) {
    twin_err werr;
    if (twin_index_follower_wait_synced(follower, 200, &werr) == 0) break;
    if ((sig = twin_signals_wait(200)) != 0) break;
  }
  if (!sig) {
    twin_business_service_ready(biz);
    twin_service_set_serving(svc, k_services, 1, NULL);
    LOG_INFO("ready: %zu chunks in the %s index; LLM at %s", twin_vector_index_size(index),
             twin_index_kind_name(twin_vector_index_current_kind(index)), f.llm_target);
    sig = twin_signals_wait(0);
  }
  LOG_INFO("signal %d: shutting down (grace period %lld ms)", sig, (long long)f.grace_ms);
  twin_service_set_serving(svc, k_services, 0, "shutting down");
  twin_service_stop(svc, (int)f.grace_ms);
  exit_code = 0;
  goto out;

fail:
  LOG_ERROR("%s", err.msg);
  fprintf(stderr, "business-svc: %s\n", err.msg);
  if (svc) twin_service_stop(svc, 0);
out:
  twin_index_follower_stop(follower);
  /* the server has stopped: the handlers' state, then the trace publisher (whose thread sets
   * gauges in the service's metrics), then the service */
  twin_business_service_destroy(biz);
  twin_trace_publisher_destroy(traces, 2000);
  twin_service_destroy(svc);
  twin_llm_client_destroy(llm);
  twin_vector_index_destroy(index);
  twin_embedder_destroy(embedder);
  twin_redis_pool_destroy(pool);
  twin_prompt_registry_destroy(templates);
  twin_config_destroy(cfg);
  return exit_code;
}
