/* monitor-svc/stats.h — statistics over trace summaries: counts, error and cache-hit rates,
 * latency and TTFT percentiles, tokens and cost, overall, per model, per template and as a time
 * series of buckets. Pure computation (no Redis): feed summaries to an accumulator, then finish.
 * Percentiles interpolate linearly between closest ranks (numpy.percentile's default). */
#ifndef TWIN_MONITOR_STATS_H
#define TWIN_MONITOR_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "monitor-svc/trace.h"

typedef struct monitor_group_stats {
  char *key; /* owned; "" for the overall group */
  uint64_t count, errors, prompt_tokens, completion_tokens;
  double error_rate, cache_hit_rate, cost_usd;
  double latency_p50_ms, latency_p90_ms, latency_p99_ms; /* over every trace */
  double ttft_p50_ms, ttft_p90_ms, ttft_p99_ms;          /* over traces with ttft_ms > 0 */
} monitor_group_stats;

typedef struct monitor_bucket_stats {
  int64_t start_ms;
  uint64_t count, errors, prompt_tokens, completion_tokens;
  double cost_usd;
  double latency_p50_ms, latency_p90_ms, latency_p99_ms, ttft_p50_ms, ttft_p99_ms;
} monitor_bucket_stats;

typedef struct monitor_stats {
  monitor_group_stats overall;
  monitor_group_stats *per_model;    /* [n_per_model] owned, most traces first */
  size_t n_per_model;
  monitor_group_stats *per_template; /* [n_per_template] owned, most traces first */
  size_t n_per_template;
  monitor_bucket_stats *series;      /* [n_series] owned, oldest first */
  size_t n_series;
  int64_t since_ms, until_ms, bucket_ms;
} monitor_stats;

void monitor_stats_free(monitor_stats *s);

typedef struct monitor_stats_acc monitor_stats_acc;

/* Window [since_ms, until_ms]; buckets: number of time-series points (0 = none). */
int monitor_stats_acc_create(int64_t since_ms, int64_t until_ms, uint32_t buckets, monitor_stats_acc **out,
                             twin_err *err);
void monitor_stats_acc_destroy(monitor_stats_acc *a);
/* Adds one trace (summaries outside the window are ignored). */
int monitor_stats_acc_add(monitor_stats_acc *a, const monitor_summary *s, twin_err *err);
/* Computes everything into *out (zeroed first; free with monitor_stats_free). */
int monitor_stats_acc_finish(monitor_stats_acc *a, monitor_stats *out, twin_err *err);

#endif
