/* business-svc/clients/trace_publisher.c — a ring of queued traces and one sender thread with
 * its own Redis connection. */
#include "business-svc/clients/trace_publisher.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/redis.h"
#include "common/util.h"

typedef struct queued {
  char *json;
  size_t len;
} queued;

struct twin_trace_publisher {
  char stream[128];
  long max_len;
  twin_redis *redis;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  queued *ring;              /* [cap] */
  size_t cap, head, count;   /* oldest at head */
  int stopping;
  int64_t stop_by_ms;        /* give up delivering after this (monotonic) */
  twin_metric *m_published, *m_dropped, *m_failures, *m_pending;
};

static int send_one(twin_trace_publisher *p, const queued *q, twin_err *err) {
  char maxlen[32];
  snprintf(maxlen, sizeof maxlen, "%ld", p->max_len);
  const char *argv[] = {"XADD", p->stream, "MAXLEN", "~", maxlen, "*", "trace", q->json};
  size_t lens[] = {4, strlen(p->stream), 6, 1, strlen(maxlen), 1, 5, q->len};
  redisReply *r = NULL;
  int rc = twin_redis_command_argv(p->redis, 8, argv, lens, &r, err);
  if (r) freeReplyObject(r);
  return rc;
}

static void *sender_main(void *arg) {
  twin_trace_publisher *p = arg;
  int backoff = 50;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->count && !p->stopping) pthread_cond_wait(&p->cv, &p->mu);
    if (!p->count) break;
    if (p->stopping && twin_time_mono_ms() >= p->stop_by_ms) break;
    queued q = p->ring[p->head]; /* stays queued until delivered */
    pthread_mutex_unlock(&p->mu);
    twin_err err;
    int rc = send_one(p, &q, &err);
    pthread_mutex_lock(&p->mu);
    if (rc == 0) {
      backoff = 50;
      /* drop it unless publish() already evicted it while we were sending */
      if (p->count && p->ring[p->head].json == q.json) {
        free(q.json);
        p->head = (p->head + 1) % p->cap;
        p->count--;
      }
      twin_counter_inc(p->m_published);
    } else {
      twin_counter_inc(p->m_failures);
      LOG_DEBUG("trace publisher: %s (retrying in %d ms)", err.msg, backoff);
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += (long)backoff * 1000000L;
      ts.tv_sec += ts.tv_nsec / 1000000000L;
      ts.tv_nsec %= 1000000000L;
      pthread_cond_timedwait(&p->cv, &p->mu, &ts);
      backoff = backoff < 2000 ? backoff * 2 : 2000;
    }
    twin_gauge_set(p->m_pending, (double)p->count);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int twin_trace_publisher_create(const twin_trace_publisher_opts *o, twin_trace_publisher **out,
                                twin_err *err) {
  *out = NULL;
  twin_trace_publisher *p = calloc(1, sizeof *p);
  if (!p) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  snprintf(p->stream, sizeof p->stream, "%s", o->stream ? o->stream : "twin:traces");
  p->cap = o->capacity ? o->capacity : 10000;
  p->max_len = o->max_stream_len > 0 ? o->max_stream_len : 1000000;
  p->ring = calloc(p->cap, sizeof *p->ring);
  twin_redis_options ro = {.url = o->redis_url, .connect_timeout_ms = 1000, .command_timeout_ms = 2000,
                           .backoff_initial_ms = 100, .backoff_max_ms = 2000};
  int rc = p->ring ? twin_redis_open(&p->redis, &ro, err) : twin_err_set(err, TWIN_ENOMEM, "out of memory");
  if (rc) {
    free(p->ring);
    free(p);
    return rc;
  }
  if (o->metrics) {
    twin_metric_family *f;
    twin_err e;
    if (!twin_metrics_counter(o->metrics, "business_traces_published_total", "Traces delivered to Redis.", NULL, &f, &e))
      p->m_published = twin_metric_get(f);
    if (!twin_metrics_counter(o->metrics, "business_traces_dropped_total", "Traces dropped because the queue was full.", NULL, &f, &e))
      p->m_dropped = twin_metric_get(f);
    if (!twin_metrics_counter(o->metrics, "business_trace_publish_failures_total", "Failed XADD attempts (retried).", NULL, &f, &e))
      p->m_failures = twin_metric_get(f);
    if (!twin_metrics_gauge(o->metrics, "business_traces_pending", "Traces waiting for Redis.", NULL, &f, &e))
      p->m_pending = twin_metric_get(f);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  if (pthread_create(&p->thread, NULL, sender_main, p) != 0) {
    twin_redis_close(p->redis);
    free(p->ring);
    free(p);
    return twin_err_set(err, TWIN_EINTERNAL, "trace publisher: cannot start its thread");
  }
  *out = p;
  return 0;
}

void twin_trace_publisher_publish(twin_trace_publisher *p, const char *json, size_t len) {
  char *copy = malloc(len + 1);
  if (!copy) return;
  memcpy(copy, json, len);
  copy[len] = 0;
  pthread_mutex_lock(&p->mu);
  if (p->count == p->cap) { /* full: forget the oldest */
    free(p->ring[p->head].json);
    p->head = (p->head + 1) % p->cap;
    p->count--;
    twin_counter_inc(p->m_dropped);
  }
  p->ring[(p->head + p->count) % p->cap] = (queued){copy, len};
  p->count++;
  twin_gauge_set(p->m_pending, (double)p->count);
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

size_t twin_trace_publisher_pending(twin_trace_publisher *p) {
  pthread_mutex_lock(&p->mu);
  size_t n = p->count;
  pthread_mutex_unlock(&p->mu);
  return n;
}

void twin_trace_publisher_destroy(twin_trace_publisher *p, int flush_ms) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  p->stop_by_ms = twin_time_mono_ms() + flush_ms;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  if (p->count) LOG_WARN("trace publisher: %zu trace(s) not delivered at shutdown", p->count);
  for (size_t i = 0; i < p->count; i++) free(p->ring[(p->head + i) % p->cap].json);
  twin_redis_close(p->redis);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->ring);
  free(p);
}
