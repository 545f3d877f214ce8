/* llm-svc/server/main.c — the LLM service process: flags (each with an environment twin),
 * gRPC + HTTP up first (health NOT_SERVING), then the model, the backend and the engine, a
 * warm-up generation, SERVING; on SIGTERM/SIGINT: stop admitting, let running requests finish
 * for the grace period, cancel the rest, exit 0. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "common/config.h"
#include "common/log.h"
#include "common/rpc/service.h"
#include "common/signals.h"
#include "common/util.h"
#include "llm-svc/engine/engine.h"
#include "llm-svc/model/model.h"
#include "llm-svc/server/llm_service.h"

typedef struct llm_flags {
  const char *model, *backend, *host, *kv_cache, *chat_template, *log_level;
  int port, http_port, max_batch, max_queue, max_context, max_new_tokens, default_max_new_tokens;
  int max_tokens_per_step, threads;
  int64_t grace_ms;
  bool log_json;
} llm_flags;

static const char *const k_services[] = {TWIN_LLM_SERVICE_NAME, NULL};

/* "0.5" (fraction of free memory) or "2G" (bytes). */
static int parse_kv_cache(const char *s, size_t *bytes, double *fraction, twin_err *err) {
  *bytes = 0;
  *fraction = 0;
  double f;
  if (strchr(s, '.') && twin_parse_double(s, &f, NULL) == 0) {
    if (!(f > 0 && f <= 0.95))
      return twin_err_set(err, TWIN_EINVAL, "--kv-cache: fraction %s must be in (0, 0.95]", s);
    *fraction = f;
    return 0;
  }
  uint64_t b;
  if (twin_parse_size(s, &b, NULL) != 0 || b == 0)
    return twin_err_set(err, TWIN_EINVAL,
                        "--kv-cache: '%s' is neither a fraction (0.5) nor a size (512M, 2G)", s);
  *bytes = (size_t)b;
  return 0;
}

typedef struct warmup_wait {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  twin_finish_reason why;
  char error[256];
} warmup_wait;

static void warmup_event(void *user, const twin_gen_event *ev) {
  warmup_wait *w = user;
  if (ev->finish == TWIN_FINISH_NONE) return;
  pthread_mutex_lock(&w->mu);
  w->done = 1;
  w->why = ev->finish;
  snprintf(w->error, sizeof w->error, "%s", ev->error ? ev->error : "");
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

/* One short greedy generation through the whole path before declaring the service healthy. */
static int warm_up(twin_engine *engine, const twin_model *model, twin_err *err) {
  warmup_wait w = {.done = 0};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  int32_t prompt[2] = {model->tok && twin_tokenizer_bos_id(model->tok) >= 0 ? twin_tokenizer_bos_id(model->tok) : 1, 2};
  if (prompt[0] >= model->cfg.vocab_size) prompt[0] = 0;
  twin_gen_request g = {.prompt = prompt, .n_prompt = 2, .max_new_tokens = 2, .callback = warmup_event, .user = &w, .ignore_eos = 1};
  twin_sampling_params_default(&g.sampling);
  g.sampling.temperature = 0;
  int rc = twin_engine_submit(engine, &g, NULL, err);
  if (rc == 0) {
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    if (w.why == TWIN_FINISH_ERROR) rc = twin_err_set(err, TWIN_EINTERNAL, "warm-up failed: %s", w.error);
  }
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  return rc;
}

static int create_backend(const llm_flags *f, const twin_model *m, twin_backend **out, twin_err *err) {
  twin_backend_opts bo = {0};
  int rc = parse_kv_cache(f->kv_cache, &bo.kv_bytes, &bo.kv_fraction, err);
  if (rc) return rc;
  bo.max_tokens_per_step = f->max_tokens_per_step;
  bo.max_seqs = f->max_batch;
  bo.threads = f->threads;
  int want_cuda = strcmp(f->backend, "cuda") == 0;
  int want_auto = strcmp(f->backend, "auto") == 0;
#ifdef TWIN_HAVE_CUDA
  if (want_cuda || want_auto) {
    rc = twin_backend_cuda_create(&m->cfg, m->weights, &bo, out, err);
    if (rc == 0 || want_cuda) return rc;
    LOG_INFO("backend auto: CUDA unavailable (%s); using the CPU", err->msg);
  }
#else
  if (want_cuda)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "--backend cuda: this build has no CUDA backend");
  (void)want_auto;
#endif
  return twin_backend_cpu_create(&m->cfg, m->weights, &bo, out, err);
}

int main(int argc, char **argv) {
  twin_signals_block();
  llm_flags f = {0};
  const twin_option opts[] = {
      {"model", "LLM_MODEL", TWIN_OPT_STRING, NULL, "model directory (config.json, *.safetensors, tokenizer.json)", &f.model, NULL, "PATH"},
      {"backend", "LLM_BACKEND", TWIN_OPT_STRING, "auto", "compute backend", &f.backend, "auto|cpu|cuda", NULL},
      {"host", "LLM_HOST", TWIN_OPT_STRING, "0.0.0.0", "address to listen on (gRPC and HTTP)", &f.host, NULL, "ADDR"},
      {"port", "LLM_PORT", TWIN_OPT_INT, "50051", "gRPC port (0 = any free port)", &f.port, NULL, NULL},
      {"http-port", "LLM_HTTP_PORT", TWIN_OPT_INT, "9101", "HTTP port for /metrics and /healthz (0 = any)", &f.http_port, NULL, NULL},
      {"max-batch", "LLM_MAX_BATCH", TWIN_OPT_INT, "64", "sequences decoded together", &f.max_batch, NULL, NULL},
      {"max-queue", "LLM_MAX_QUEUE", TWIN_OPT_INT, "256", "requests waiting before RESOURCE_EXHAUSTED", &f.max_queue, NULL, NULL},
      {"kv-cache", "LLM_KV_CACHE", TWIN_OPT_STRING, "0.3", "KV cache size: bytes (2G) or a fraction of free memory (0.3)", &f.kv_cache, NULL, "SIZE|FRACTION"},
      {"max-context", "LLM_MAX_CONTEXT", TWIN_OPT_INT, "0", "tokens per sequence, prompt + generated (0 = the model's)", &f.max_context, NULL, NULL},
      {"max-new-tokens", "LLM_MAX_NEW_TOKENS", TWIN_OPT_INT, "0", "largest max_new_tokens a request may ask (0 = the context)", &f.max_new_tokens, NULL, NULL},
      {"default-max-new-tokens", "LLM_DEFAULT_MAX_NEW_TOKENS", TWIN_OPT_INT, "256", "max_new_tokens when a request leaves it 0", &f.default_max_new_tokens, NULL, NULL},
      {"max-tokens-per-step", "LLM_MAX_TOKENS_PER_STEP", TWIN_OPT_INT, "512", "token budget of one batched forward (prefill chunking)", &f.max_tokens_per_step, NULL, NULL},
      {"threads", "LLM_THREADS", TWIN_OPT_INT, "0", "CPU backend threads (0 = all cores)", &f.threads, NULL, NULL},
      {"chat-template", "LLM_CHAT_TEMPLATE", TWIN_OPT_STRING, NULL, "chat template name, overriding detection", &f.chat_template, NULL, "NAME"},
      {"grace-period", "LLM_GRACE_PERIOD", TWIN_OPT_DURATION, "30s", "on SIGTERM, time running requests get to finish", &f.grace_ms, NULL, NULL},
      {"log-level", "LOG_LEVEL", TWIN_OPT_STRING, "info", "log level", &f.log_level, "debug|info|warn|error", NULL},
      {"log-json", "LOG_JSON", TWIN_OPT_BOOL, "false", "log JSON lines", &f.log_json, NULL, NULL},
  };
  twin_config *cfg = twin_config_create("llm-svc", "Twin's LLM service: streamed generation over gRPC.",
                                        opts, sizeof opts / sizeof opts[0]);
  int early = twin_service_parse_flags(cfg, "llm-svc", argc, argv);
  if (early >= 0) {
    twin_config_destroy(cfg);
    return early;
  }
  twin_err err = {0};
  int exit_code = 1;
  twin_service *svc = NULL;
  twin_llm_service *llm = NULL;
  twin_model *model = NULL;
  twin_backend *backend = NULL;
  twin_engine *engine = NULL;
  if (twin_service_logging("llm-svc", f.log_level, f.log_json, &err) != 0) {
    fprintf(stderr, "llm-svc: %s\n", err.msg);
    exit_code = 2;
    goto out;
  }
  if (!f.model || !*f.model) {
    fprintf(stderr, "llm-svc: no model: pass --model PATH or set LLM_MODEL\n");
    exit_code = 2;
    goto out;
  }
  size_t kvb;
  double kvf;
  if (parse_kv_cache(f.kv_cache, &kvb, &kvf, &err) != 0) {
    fprintf(stderr, "llm-svc: %s\n", err.msg);
    exit_code = 2;
    goto out;
  }

  twin_service_opts so = {.name = "llm-svc", .host = f.host, .grpc_port = f.port, .http_port = f.http_port};
  if (twin_service_create(&so, &svc, &err) || twin_llm_service_create(svc->rpc, &llm, &err)) goto fail;
  twin_service_set_serving(svc, k_services, 0, "loading the model");
  if (twin_service_start(svc, &err)) goto fail;

  int64_t t0 = twin_time_mono_ms();
  twin_model_open_opts mo = {.chat_template = f.chat_template};
  if (twin_model_open(f.model, &mo, &model, &err)) goto fail;
  if (create_backend(&f, model, &backend, &err)) goto fail;
  twin_engine_opts eo = {
      .max_batch = f.max_batch,
      .max_queue = f.max_queue,
      .max_context = f.max_context,
      .max_new_tokens_limit = f.max_new_tokens,
      .default_max_new_tokens = f.default_max_new_tokens,
      .max_tokens_per_step = f.max_tokens_per_step,
      .metrics = svc->metrics,
  };
  if (twin_engine_create(backend, model->tok, model->eos_ids, model->n_eos, &eo, &engine, &err)) goto fail;
  if (warm_up(engine, model, &err)) goto fail;
  twin_llm_service_info info = {.backend = backend->name, .dtype = backend->weights_dtype};
  twin_llm_service_ready(llm, model, engine, &info);
  twin_service_set_serving(svc, k_services, 1, NULL);
  LOG_INFO("model %s (%s, %d layers, vocab %d) ready on %s in %lld ms; KV pool %d blocks",
           model->name, model->cfg.arch_name, model->cfg.n_layers, model->cfg.vocab_size,
           backend->name, (long long)(twin_time_mono_ms() - t0), backend->num_blocks);

  int sig = twin_signals_wait(0);
  LOG_INFO("signal %d: draining (grace period %lld ms)", sig, (long long)f.grace_ms);
  twin_llm_service_drain(llm);
  twin_engine_drain(engine);
  twin_service_set_serving(svc, k_services, 0, "shutting down");
  int64_t deadline = twin_time_mono_ms() + f.grace_ms;
  for (;;) {
    twin_engine_stats st;
    twin_engine_get_stats(engine, &st);
    if (st.running == 0 && st.waiting == 0) break;
    if (twin_time_mono_ms() >= deadline) {
      LOG_WARN("grace period over: cancelling %d running and %d waiting requests", st.running, st.waiting);
      break;
    }
    twin_sleep_ms(20);
  }
  int64_t left = deadline - twin_time_mono_ms();
  twin_service_stop(svc, left > 0 ? (int)left : 0);
  exit_code = 0;
  goto out;

fail:
  LOG_ERROR("%s", err.msg);
  fprintf(stderr, "llm-svc: %s\n", err.msg);
  if (svc) twin_service_stop(svc, 0);
out:
  twin_engine_destroy(engine);
  twin_backend_destroy(backend);
  twin_model_destroy(model);
  twin_service_destroy(svc);
  twin_llm_service_destroy(llm);
  twin_config_destroy(cfg);
  return exit_code;
}
