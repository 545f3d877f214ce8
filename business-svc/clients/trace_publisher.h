/* business-svc/clients/trace_publisher.h — fire-and-forget delivery of traces to the Redis
 * stream twin:traces. publish() only copies the trace into a bounded in-memory queue and
 * returns (microseconds, never blocks on Redis); a background thread XADDs them in order,
 * keeps them while Redis is down (retrying with backoff) and delivers them once it is back.
 * When the queue is full the oldest trace is dropped and counted. */
#ifndef TWIN_CLIENTS_TRACE_PUBLISHER_H
#define TWIN_CLIENTS_TRACE_PUBLISHER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/metrics.h"

typedef struct twin_trace_publisher twin_trace_publisher;

typedef struct twin_trace_publisher_opts {
  const char *redis_url;
  const char *stream;        /* default "twin:traces" */
  size_t capacity;           /* traces held while Redis is away; default 10000 */
  long max_stream_len;       /* XADD MAXLEN ~; default 1000000 */
  twin_metrics *metrics;     /* borrowed, may be NULL */
} twin_trace_publisher_opts;

int twin_trace_publisher_create(const twin_trace_publisher_opts *opts, twin_trace_publisher **out,
                                twin_err *err);
/* Queues a JSON trace (copied). Never blocks on Redis. */
void twin_trace_publisher_publish(twin_trace_publisher *p, const char *json, size_t len);
/* Traces queued and not yet delivered. */
size_t twin_trace_publisher_pending(twin_trace_publisher *p);
/* Tries to deliver what is queued for up to flush_ms, then stops the thread and frees. */
void twin_trace_publisher_destroy(twin_trace_publisher *p, int flush_ms);

#endif
