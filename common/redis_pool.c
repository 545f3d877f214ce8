/* common/redis_pool.c — the query threads' Redis connections: a stack of idle
 * connections under a mutex, with a condition variable for callers waiting for one. */
#include "common/redis_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct twin_redis_pool {
  pthread_mutex_t mu;
  pthread_cond_t returned;
  twin_redis **all;  /* [size] owned */
  twin_redis **idle; /* [size] stack of borrowed pointers into all */
  int size, n_idle;
};

int twin_redis_pool_create(const twin_redis_options *opts, int size, twin_redis_pool **out,
                              twin_err *err) {
  *out = NULL;
  if (size < 1) return twin_err_set(err, TWIN_EINVAL, "redis pool: size %d must be >= 1", size);
  twin_redis_pool *p = calloc(1, sizeof *p);
  if (!p) return twin_err_set(err, TWIN_ENOMEM, "redis pool: out of memory");
  pthread_mutex_init(&p->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->returned, &ca);
  pthread_condattr_destroy(&ca);
  p->all = calloc((size_t)size, sizeof *p->all);
  p->idle = calloc((size_t)size, sizeof *p->idle);
  if (!p->all || !p->idle) {
    twin_redis_pool_destroy(p);
    return twin_err_set(err, TWIN_ENOMEM, "redis pool: out of memory");
  }
  twin_redis_options o = *opts;
  o.require_connection = false;
  for (int i = 0; i < size; i++) {
    int rc = twin_redis_open(&p->all[i], &o, err);
    if (rc) {
      twin_redis_pool_destroy(p);
      return rc;
    }
    p->size++;
    p->idle[p->n_idle++] = p->all[i];
  }
  *out = p;
  return 0;
}

void twin_redis_pool_destroy(twin_redis_pool *p) {
  if (!p) return;
  for (int i = 0; i < p->size; i++) twin_redis_close(p->all[i]);
  free(p->all);
  free(p->idle);
  pthread_cond_destroy(&p->returned);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int twin_redis_pool_acquire(twin_redis_pool *p, int timeout_ms, twin_redis **out, twin_err *err) {
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&p->mu);
  while (p->n_idle == 0) {
    if (pthread_cond_timedwait(&p->returned, &p->mu, &deadline) == ETIMEDOUT && p->n_idle == 0) {
      pthread_mutex_unlock(&p->mu);
      return twin_err_set(err, TWIN_EFULL, "redis pool: all %d connections busy for %d ms", p->size, timeout_ms);
    }
  }
  *out = p->idle[--p->n_idle];
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void twin_redis_pool_release(twin_redis_pool *p, twin_redis *r) {
  if (!r) return;
  pthread_mutex_lock(&p->mu);
  p->idle[p->n_idle++] = r;
  pthread_cond_signal(&p->returned);
  pthread_mutex_unlock(&p->mu);
}
