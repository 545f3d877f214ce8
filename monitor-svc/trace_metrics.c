/* monitor-svc/trace_metrics.c — metric families for traces and the consumer, and a small cache
 * of the per-(model, template) children so that the hot path does no registry lookups. */
#include "monitor-svc/trace_metrics.h"

#include <stdlib.h>
#include <string.h>

#include "monitor-svc/trace_format.h"

typedef struct series {
  char *model, *template_name; /* owned */
  twin_metric *requests, *errors, *cache_hits, *prompt_tokens, *completion_tokens, *cost, *latency, *ttft;
} series;

typedef struct stage_series {
  char *stage; /* owned */
  twin_metric *seconds;
} stage_series;

struct monitor_metrics {
  twin_metric_family *requests, *errors, *cache_hits, *prompt_tokens, *completion_tokens, *cost, *latency, *ttft,
      *stage;
  series *series; /* [n_series] */
  size_t n_series;
  series other;
  stage_series *stages; /* [n_stages] */
  size_t n_stages;
  twin_metric *stage_other;
  monitor_consumer_metrics consumer;
};

#define MAX_STAGES 64

static int counter(twin_metrics *reg, const char *name, const char *help, const char *labels, twin_metric_family **f,
                   twin_err *err) {
  return twin_metrics_counter(reg, name, help, labels, f, err);
}

static int unlabeled_counter(twin_metrics *reg, const char *name, const char *help, twin_metric **out, twin_err *err) {
  twin_metric_family *f;
  int rc = twin_metrics_counter(reg, name, help, NULL, &f, err);
  if (rc == 0) *out = twin_metric_get(f);
  return rc;
}

static int unlabeled_gauge(twin_metrics *reg, const char *name, const char *help, twin_metric **out, twin_err *err) {
  twin_metric_family *f;
  int rc = twin_metrics_gauge(reg, name, help, NULL, &f, err);
  if (rc == 0) *out = twin_metric_get(f);
  return rc;
}

int monitor_metrics_create(twin_metrics *reg, monitor_metrics **out, twin_err *err) {
  monitor_metrics *m = calloc(1, sizeof *m);
  if (!m) return twin_err_set(err, TWIN_ENOMEM, "metrics: out of memory");
  double lat_bounds[16], ttft_bounds[16], stage_bounds[16];
  twin_metrics_buckets_exponential(0.005, 2, 16, lat_bounds);   /* 5 ms .. 164 s */
  twin_metrics_buckets_exponential(0.001, 2, 16, ttft_bounds);  /* 1 ms .. 33 s */
  twin_metrics_buckets_exponential(0.0005, 2, 16, stage_bounds); /* 0.5 ms .. 16 s */
  const char *mt = "model,template";
  monitor_consumer_metrics *c = &m->consumer;
  twin_metric_family *dead;
  int rc = 0;
  if ((rc = counter(reg, "monitor_trace_requests_total", "Requests seen in traces", mt, &m->requests, err)) ||
      (rc = counter(reg, "monitor_trace_errors_total", "Requests whose trace carries an error", mt, &m->errors, err)) ||
      (rc = counter(reg, "monitor_trace_cache_hits_total", "Requests answered from the response cache", mt,
                    &m->cache_hits, err)) ||
      (rc = counter(reg, "monitor_trace_prompt_tokens_total", "Prompt tokens in traces", mt, &m->prompt_tokens, err)) ||
      (rc = counter(reg, "monitor_trace_completion_tokens_total", "Completion tokens in traces", mt,
                    &m->completion_tokens, err)) ||
      (rc = counter(reg, "monitor_trace_cost_usd_total", "Cost of the traced requests, US dollars", mt, &m->cost, err)) ||
      (rc = twin_metrics_histogram(reg, "monitor_trace_latency_seconds", "End-to-end latency of traced requests", mt,
                                   lat_bounds, 16, &m->latency, err)) ||
      (rc = twin_metrics_histogram(reg, "monitor_trace_ttft_seconds", "Time to first token of traced requests", mt,
                                   ttft_bounds, 16, &m->ttft, err)) ||
      (rc = twin_metrics_histogram(reg, "monitor_trace_stage_seconds", "Time spent per pipeline stage", "stage",
                                   stage_bounds, 16, &m->stage, err)) ||
      (rc = unlabeled_counter(reg, "monitor_consumer_entries_read_total", "Stream entries read (new and claimed)",
                              &c->entries_read, err)) ||
      (rc = unlabeled_counter(reg, "monitor_consumer_traces_stored_total", "Traces stored for the first time",
                              &c->traces_stored, err)) ||
      (rc = unlabeled_counter(reg, "monitor_consumer_duplicates_total",
                              "Entries whose trace was already stored (redelivery, republish)", &c->duplicates, err)) ||
      (rc = unlabeled_counter(reg, "monitor_consumer_expired_total", "Traces older than the retention, not stored",
                              &c->expired, err)) ||
      (rc = unlabeled_counter(reg, "monitor_consumer_claimed_total",
                              "Pending entries claimed from idle consumers (XAUTOCLAIM)", &c->claimed, err)) ||
      (rc = unlabeled_counter(reg, "monitor_consumer_acked_total", "Entries acknowledged", &c->acked, err)) ||
      (rc = unlabeled_counter(reg, "monitor_consumer_redis_errors_total", "Failed Redis round trips of the consumer",
                              &c->redis_errors, err)) ||
      (rc = unlabeled_counter(reg, "monitor_store_trimmed_total", "Traces removed by the retention policy", &c->trimmed,
                              err)) ||
      (rc = counter(reg, "monitor_consumer_dead_lettered_total", "Malformed entries moved to the dead-letter stream",
                    "reason", &dead, err)) ||
      (rc = unlabeled_gauge(reg, "monitor_consumer_lag", "Stream entries not yet delivered to the consumer group",
                            &c->lag, err)) ||
      (rc = unlabeled_gauge(reg, "monitor_consumer_pending", "Entries delivered to the group and not yet acknowledged",
                            &c->pending, err)) ||
      (rc = unlabeled_gauge(reg, "monitor_stream_length", "Entries in the trace stream", &c->stream_length, err)) ||
      (rc = unlabeled_gauge(reg, "monitor_store_traces", "Traces in the store", &c->stored_traces, err)) ||
      (rc = unlabeled_gauge(reg, "monitor_redis_up", "1 while the consumer reaches Redis", &c->redis_up, err))) {
    monitor_metrics_destroy(m);
    return rc;
  }
  for (int r = 1; r < MONITOR_REJECT_COUNT; r++)
    c->dead_lettered[r] = twin_metric_with(dead, monitor_reject_name((monitor_reject_reason)r));
  m->other.requests = twin_metric_with(m->requests, "other", "other");
  m->other.errors = twin_metric_with(m->errors, "other", "other");
  m->other.cache_hits = twin_metric_with(m->cache_hits, "other", "other");
  m->other.prompt_tokens = twin_metric_with(m->prompt_tokens, "other", "other");
  m->other.completion_tokens = twin_metric_with(m->completion_tokens, "other", "other");
  m->other.cost = twin_metric_with(m->cost, "other", "other");
  m->other.latency = twin_metric_with(m->latency, "other", "other");
  m->other.ttft = twin_metric_with(m->ttft, "other", "other");
  m->stage_other = twin_metric_with(m->stage, "other");
  *out = m;
  return 0;
}

void monitor_metrics_destroy(monitor_metrics *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n_series; i++) {
    free(m->series[i].model);
    free(m->series[i].template_name);
  }
  free(m->series);
  for (size_t i = 0; i < m->n_stages; i++) free(m->stages[i].stage);
  free(m->stages);
  free(m);
}

const monitor_consumer_metrics *monitor_metrics_consumer(const monitor_metrics *m) { return &m->consumer; }

static series *series_for(monitor_metrics *m, const char *model, const char *tmpl) {
  for (size_t i = 0; i < m->n_series; i++)
    if (strcmp(m->series[i].model, model) == 0 && strcmp(m->series[i].template_name, tmpl) == 0) return &m->series[i];
  if (m->n_series >= MONITOR_METRICS_MAX_SERIES) return &m->other;
  if (!m->series) {
    m->series = calloc(MONITOR_METRICS_MAX_SERIES, sizeof *m->series);
    if (!m->series) return &m->other;
  }
  series *s = &m->series[m->n_series];
  s->model = strdup(model);
  s->template_name = strdup(tmpl);
  if (!s->model || !s->template_name) {
    free(s->model);
    free(s->template_name);
    memset(s, 0, sizeof *s);
    return &m->other;
  }
  s->requests = twin_metric_with(m->requests, model, tmpl);
  s->errors = twin_metric_with(m->errors, model, tmpl);
  s->cache_hits = twin_metric_with(m->cache_hits, model, tmpl);
  s->prompt_tokens = twin_metric_with(m->prompt_tokens, model, tmpl);
  s->completion_tokens = twin_metric_with(m->completion_tokens, model, tmpl);
  s->cost = twin_metric_with(m->cost, model, tmpl);
  s->latency = twin_metric_with(m->latency, model, tmpl);
  s->ttft = twin_metric_with(m->ttft, model, tmpl);
  m->n_series++;
  return s;
}

static twin_metric *stage_for(monitor_metrics *m, const char *stage) {
  for (size_t i = 0; i < m->n_stages; i++)
    if (strcmp(m->stages[i].stage, stage) == 0) return m->stages[i].seconds;
  if (m->n_stages >= MAX_STAGES) return m->stage_other;
  if (!m->stages) {
    m->stages = calloc(MAX_STAGES, sizeof *m->stages);
    if (!m->stages) return m->stage_other;
  }
  char *name = strdup(stage);
  if (!name) return m->stage_other;
  m->stages[m->n_stages].stage = name;
  m->stages[m->n_stages].seconds = twin_metric_with(m->stage, stage);
  return m->stages[m->n_stages++].seconds;
}

void monitor_metrics_observe(monitor_metrics *m, const monitor_trace *t) {
  series *s = series_for(m, t->model, t->template_name);
  twin_counter_inc(s->requests);
  if (*t->error) twin_counter_inc(s->errors);
  if (t->cache_hit) twin_counter_inc(s->cache_hits);
  twin_counter_add(s->prompt_tokens, t->prompt_tokens);
  twin_counter_add(s->completion_tokens, t->completion_tokens);
  twin_counter_add(s->cost, t->cost_usd);
  twin_histogram_observe(s->latency, t->total_ms / 1000.0);
  if (t->ttft_ms > 0) twin_histogram_observe(s->ttft, t->ttft_ms / 1000.0);
  const cJSON *st;
  if (t->stages)
    cJSON_ArrayForEach(st, t->stages) {
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(st, TWIN_TRACE_KEY_STAGE_NAME);
      const cJSON *ms = cJSON_GetObjectItemCaseSensitive(st, TWIN_TRACE_KEY_STAGE_MS);
      if (cJSON_IsString(name) && cJSON_IsNumber(ms)) twin_histogram_observe(stage_for(m, name->valuestring), ms->valuedouble / 1000.0);
    }
}
