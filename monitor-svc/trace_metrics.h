/* monitor-svc/trace_metrics.h — Prometheus metrics derived from the traces this process stored
 * (requests, errors, cache hits, tokens, cost, latency and TTFT histograms per model and
 * template; stage latency per stage) and the consumer's own counters and gauges. With several
 * replicas each counts the traces it stored, so sums over replicas count every trace once.
 * Label sets per model/template are capped (MONITOR_METRICS_MAX_SERIES): later combinations
 * are counted under model="other", template="other". */
#ifndef TWIN_MONITOR_TRACE_METRICS_H
#define TWIN_MONITOR_TRACE_METRICS_H

#include "common/error.h"
#include "common/metrics.h"
#include "monitor-svc/trace.h"

#define MONITOR_METRICS_MAX_SERIES 256

typedef struct monitor_metrics monitor_metrics;

/* The consumer's metrics, looked up once (updates are lock-free on these). */
typedef struct monitor_consumer_metrics {
  twin_metric *entries_read, *traces_stored, *duplicates, *expired, *claimed, *acked, *redis_errors,
      *trimmed;
  twin_metric *dead_lettered[MONITOR_REJECT_COUNT]; /* by reason */
  twin_metric *lag, *pending, *stream_length, *stored_traces, *redis_up;
} monitor_consumer_metrics;

/* Registers every family in reg (borrowed; must outlive the object). */
int monitor_metrics_create(twin_metrics *reg, monitor_metrics **out, twin_err *err);
void monitor_metrics_destroy(monitor_metrics *m);

/* Counts one newly stored trace. Not thread-safe: called by the one consumer thread. */
void monitor_metrics_observe(monitor_metrics *m, const monitor_trace *t);
const monitor_consumer_metrics *monitor_metrics_consumer(const monitor_metrics *m);

#endif
