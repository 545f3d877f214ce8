/* monitor-svc/consumer.h — the trace consumer: one thread reading the trace stream through a
 * Redis consumer group (XREADGROUP), storing each trace (store.h, idempotent by trace_id),
 * acknowledging it (XACK) once stored, moving malformed entries to the dead-letter stream,
 * claiming entries left pending by dead consumers (XAUTOCLAIM after an idle time) and forgetting
 * those consumers once they hold nothing (XGROUP DELCONSUMER), applying
 * the retention policy, and keeping the consumer gauges (lag, pending, stream length) fresh.
 * While Redis is unreachable it retries with backoff and reports "down" through on_health. */
#ifndef TWIN_MONITOR_CONSUMER_H
#define TWIN_MONITOR_CONSUMER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/redis.h"
#include "monitor-svc/store.h"
#include "monitor-svc/trace_metrics.h"

typedef struct monitor_consumer_opts {
  twin_redis_options redis;   /* url etc.; the consumer opens its own connection */
  const char *stream;         /* TWIN_TRACE_STREAM */
  const char *dead_stream;    /* TWIN_TRACE_DEAD_STREAM */
  const char *group;          /* "monitor" */
  const char *consumer;       /* this process's name in the group */
  int batch;                  /* entries per read */
  int64_t block_ms;           /* XREADGROUP BLOCK */
  int64_t claim_idle_ms;      /* claim pending entries idle at least this long */
  int64_t claim_interval_ms;  /* how often to look for them */
  int max_deliveries;         /* a claimed entry delivered more often is dead-lettered */
  int64_t consumer_expiry_ms; /* forget other consumers idle this long with nothing pending (0 = never) */
  int64_t retention_ms;       /* drop traces older than this (0 = keep) */
  int64_t max_traces;         /* keep at most this many (0 = no cap) */
  int64_t trim_interval_ms;
  int64_t dead_maxlen;        /* cap of the dead-letter stream (approximate) */
  const monitor_store *store; /* borrowed */
  monitor_metrics *metrics;   /* borrowed; the consumer thread is its only writer */
  /* Called from the consumer thread when Redis becomes reachable (up) or not; reason says why. */
  void (*on_health)(void *user, bool up, const char *reason);
  void *user;
} monitor_consumer_opts;

typedef struct monitor_consumer monitor_consumer;

/* Copies opts (strings too) and starts the thread. */
int monitor_consumer_start(const monitor_consumer_opts *opts, monitor_consumer **out, twin_err *err);
/* Asks the thread to stop after the batch in hand (it acknowledges what it stored) and joins
 * it. The status stays readable until destroy. NULL is fine; so is a second call. */
void monitor_consumer_stop(monitor_consumer *c);
/* Stops (if needed) and frees. */
void monitor_consumer_destroy(monitor_consumer *c);

/* A snapshot for the dashboard's status line (thread-safe). */
typedef struct monitor_consumer_status {
  bool redis_up;
  int64_t lag;            /* -1 when unknown */
  int64_t pending;
  int64_t stream_length;
  int64_t stored_traces;
  int64_t last_entry_ms;  /* wall time of the last entry read; 0 = none yet */
} monitor_consumer_status;

void monitor_consumer_get_status(monitor_consumer *c, monitor_consumer_status *out);

#endif
