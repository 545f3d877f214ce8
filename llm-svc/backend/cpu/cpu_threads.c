/* llm-svc/backend/cpu/cpu_threads.c — the CPU backend's persistent thread pool. Workers sleep on
 * a condition variable between jobs; a job is published under the mutex with a generation
 * number, items are claimed with an atomic counter, and the caller works too, then waits for
 * the others to finish. Written here because the job is tiny and OpenMP would fight OpenBLAS's
 * own thread pool over the same cores. */
#include "llm-svc/backend/cpu/cpu_threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cpu_pool {
  int n_workers;               /* including the caller */
  pthread_t *threads;          /* [n_workers - 1] */
  int n_started;
  pthread_mutex_t mutex;
  pthread_cond_t start_cond;   /* a new job, or stop */
  pthread_cond_t done_cond;    /* the last worker finished the job */
  uint64_t generation;         /* bumped per job */
  int stopping;
  cpu_task_fn fn;
  void *ctx;
  int n_items;
  atomic_int next_item;
  int busy;                    /* threads still working on the current job */
};

typedef struct worker_start {
  cpu_pool *pool;
  int index;
} worker_start;

static void run_items(cpu_pool *pool, cpu_task_fn fn, void *ctx, int n_items, int worker) {
  for (;;) {
    int item = atomic_fetch_add(&pool->next_item, 1);
    if (item >= n_items) break;
    fn(ctx, item, worker);
  }
}

static void *worker_main(void *arg) {
  worker_start start = *(worker_start *)arg;
  free(arg);
  cpu_pool *pool = start.pool;
  uint64_t seen = 0;
  pthread_mutex_lock(&pool->mutex);
  for (;;) {
    while (!pool->stopping && pool->generation == seen)
      pthread_cond_wait(&pool->start_cond, &pool->mutex);
    if (pool->stopping) break;
    seen = pool->generation;
    cpu_task_fn fn = pool->fn;
    void *ctx = pool->ctx;
    int n_items = pool->n_items;
    pthread_mutex_unlock(&pool->mutex);
    run_items(pool, fn, ctx, n_items, start.index);
    pthread_mutex_lock(&pool->mutex);
    if (--pool->busy == 0) pthread_cond_signal(&pool->done_cond);
  }
  pthread_mutex_unlock(&pool->mutex);
  return NULL;
}

int cpu_pool_create(cpu_pool **out, int n_workers, twin_err *err) {
  *out = NULL;
  if (n_workers < 1) n_workers = 1;
  cpu_pool *pool = calloc(1, sizeof *pool);
  if (!pool) return twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory for threads");
  pool->n_workers = n_workers;
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->start_cond, NULL);
  pthread_cond_init(&pool->done_cond, NULL);
  atomic_init(&pool->next_item, 0);
  if (n_workers > 1) {
    pool->threads = calloc((size_t)n_workers - 1, sizeof *pool->threads);
    if (!pool->threads) {
      cpu_pool_destroy(pool);
      return twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory for threads");
    }
  }
  for (int i = 1; i < n_workers; i++) {
    worker_start *start = malloc(sizeof *start);
    int rc = start ? 0 : -1;
    if (start) {
      start->pool = pool;
      start->index = i;
      rc = pthread_create(&pool->threads[i - 1], NULL, worker_main, start);
      if (rc != 0) free(start);
    }
    if (rc != 0) {
      cpu_pool_destroy(pool);
      return twin_err_set(err, TWIN_ENOMEM, "cpu backend: cannot start worker thread %d of %d",
                          i, n_workers - 1);
    }
    pool->n_started++;
  }
  *out = pool;
  return 0;
}

void cpu_pool_run(cpu_pool *pool, cpu_task_fn fn, void *ctx, int n_items) {
  if (n_items <= 0) return;
  if (pool->n_started == 0 || n_items == 1) {
    for (int i = 0; i < n_items; i++) fn(ctx, i, 0);
    return;
  }
  pthread_mutex_lock(&pool->mutex);
  pool->fn = fn;
  pool->ctx = ctx;
  pool->n_items = n_items;
  atomic_store(&pool->next_item, 0);
  pool->busy = pool->n_started;
  pool->generation++;
  pthread_cond_broadcast(&pool->start_cond);
  pthread_mutex_unlock(&pool->mutex);

  run_items(pool, fn, ctx, n_items, 0);

  pthread_mutex_lock(&pool->mutex);
  while (pool->busy > 0) pthread_cond_wait(&pool->done_cond, &pool->mutex);
  pthread_mutex_unlock(&pool->mutex);
}

int cpu_pool_size(const cpu_pool *pool) { return pool->n_workers; }

void cpu_pool_destroy(cpu_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->mutex);
  pool->stopping = 1;
  pthread_cond_broadcast(&pool->start_cond);
  pthread_mutex_unlock(&pool->mutex);
  for (int i = 0; i < pool->n_started; i++) pthread_join(pool->threads[i], NULL);
  pthread_cond_destroy(&pool->start_cond);
  pthread_cond_destroy(&pool->done_cond);
  pthread_mutex_destroy(&pool->mutex);
  free(pool->threads);
  free(pool);
}
