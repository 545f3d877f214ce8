/* common/rpc/worker_pool.c — a growing pool of handler threads over one mutex-guarded FIFO. */
#include "common/rpc/worker_pool.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct job {
  void (*fn)(void *);
  void *arg;
  struct job *next;
} job;

struct twin_worker_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job *head, *tail;
  int threads, idle, max_threads, stopping;
  pthread_t *tids;   /* [max_threads] */
};

static void *worker_main(void *arg) {
  twin_worker_pool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->head && !p->stopping) {
      p->idle++;
      pthread_cond_wait(&p->cv, &p->mu);
      p->idle--;
    }
    if (!p->head) break; /* stopping and drained */
    job *j = p->head;
    p->head = j->next;
    if (!p->head) p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    j->fn(j->arg);
    free(j);
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static int spawn_locked(twin_worker_pool *p) {
  if (p->threads >= p->max_threads) return -1;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1 << 20);
  int rc = pthread_create(&p->tids[p->threads], &attr, worker_main, p);
  pthread_attr_destroy(&attr);
  if (rc != 0) return -1;
  p->threads++;
  return 0;
}

twin_worker_pool *twin_worker_pool_create(int min_threads, int max_threads) {
  if (min_threads < 1) min_threads = 1;
  if (max_threads < min_threads) max_threads = min_threads;
  twin_worker_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->tids = calloc((size_t)max_threads, sizeof *p->tids);
  if (!p->tids) { free(p); return NULL; }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->max_threads = max_threads;
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < min_threads; i++) spawn_locked(p);
  pthread_mutex_unlock(&p->mu);
  return p;
}

int twin_worker_pool_submit(twin_worker_pool *p, void (*fn)(void *), void *arg) {
  job *j = malloc(sizeof *j);
  if (!j) return -1;
  j->fn = fn;
  j->arg = arg;
  j->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    free(j);
    return -1;
  }
  if (p->tail) p->tail->next = j; else p->head = j;
  p->tail = j;
  /* Jobs already waiting count against idle threads; grow when none will be free for this one. */
  int waiting = 0;
  for (job *k = p->head; k && waiting <= p->idle; k = k->next) waiting++;
  if (waiting > p->idle) spawn_locked(p);
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void twin_worker_pool_destroy(twin_worker_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  pthread_cond_broadcast(&p->cv);
  int n = p->threads;
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < n; i++) pthread_join(p->tids[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->tids);
  free(p);
}
