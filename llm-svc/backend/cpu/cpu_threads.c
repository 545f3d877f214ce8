/* llm-svc/backend/cpu/cpu_threads.c — the CPU backend's persistent thread pool. Items are
 * claimed through one 64-bit ticket (job << 32 | next item) by compare-and-swap, each job's fields
 * in one of two slots, so a late worker never claims for the wrong job; the caller waits for the
 * items only, never for a worker to notice the job. Waiting threads poll TWIN_CPU_SPIN times
 * (default 200, a few microseconds) before sleeping: longer polling costs decode up to 2x on an
 * oversubscribed machine. Ours because OpenMP would fight OpenBLAS's threads over the cores. */
#include "llm-svc/backend/cpu/cpu_threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SPIN_ROUNDS 200

struct cpu_pool {
  int n_workers;               /* including the caller */
  int spin_rounds;             /* polls before sleeping */
  pthread_t *threads;          /* [n_workers - 1] */
  int n_started;
  pthread_mutex_t mutex;
  pthread_cond_t start_cond;   /* a new job, or stop */
  pthread_cond_t done_cond;    /* the last item of the job is done */
  /* job g's fields live in slot g % 2, written before the ticket that announces g: while
   * the ticket says g, the next job's fields go to the other slot, so a claim on g (a
   * compare-and-swap on the ticket) always pairs with g's own fields */
  struct {
    _Atomic(cpu_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_int n_items;
  } slot[2];
  atomic_uint_fast64_t ticket; /* job << 32 | next unclaimed item */
  atomic_int done_items;       /* items of the current job finished */
  atomic_int stopping;
  atomic_int sleeping;         /* workers asleep (or about to be) on start_cond */
  atomic_int caller_waiting;   /* the caller sleeps on done_cond */
  uint32_t job;                /* the caller's count of jobs published */
};

typedef struct worker_start {
  cpu_pool *pool;
  int index;
} worker_start;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Claims and runs items of job `job` until none is left (or the job is no longer current). */
static void run_items(cpu_pool *pool, uint32_t job, int worker) {
  for (;;) {
    uint64_t t = atomic_load(&pool->ticket);
    if ((uint32_t)(t >> 32) != job) return;
    const int n_items = atomic_load_explicit(&pool->slot[job % 2].n_items, memory_order_relaxed);
    const cpu_task_fn fn = atomic_load_explicit(&pool->slot[job % 2].fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&pool->slot[job % 2].ctx, memory_order_relaxed);
    const int item = (int)(uint32_t)t;
    if (item >= n_items) return;
    /* the claim succeeds only while the ticket is unchanged, i.e. while job is current, and
     * then the slot read above holds its fields */
    if (!atomic_compare_exchange_weak(&pool->ticket, &t, t + 1)) continue;
    fn(ctx, item, worker);
    if (atomic_fetch_add(&pool->done_items, 1) + 1 == n_items && atomic_load(&pool->caller_waiting)) {
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_signal(&pool->done_cond);
      pthread_mutex_unlock(&pool->mutex);
    }
  }
}

/* The job number after `seen`, once published (polling, then sleeping); -1 when stopping. */
static int64_t wait_for_job(cpu_pool *pool, uint32_t seen) {
  for (int i = 0; i < pool->spin_rounds; i++) {
    uint32_t job = (uint32_t)(atomic_load(&pool->ticket) >> 32);
    if (atomic_load(&pool->stopping)) return -1;
    if (job != seen) return job;
    cpu_relax();
  }
  pthread_mutex_lock(&pool->mutex);
  atomic_fetch_add(&pool->sleeping, 1);
  while ((uint32_t)(atomic_load(&pool->ticket) >> 32) == seen && !atomic_load(&pool->stopping))
    pthread_cond_wait(&pool->start_cond, &pool->mutex);
  atomic_fetch_sub(&pool->sleeping, 1);
  pthread_mutex_unlock(&pool->mutex);
  if (atomic_load(&pool->stopping)) return -1;
  return (uint32_t)(atomic_load(&pool->ticket) >> 32);
}

static void *worker_main(void *arg) {
  worker_start start = *(worker_start *)arg;
  free(arg);
  cpu_pool *pool = start.pool;
  uint32_t seen = 0;
  for (;;) {
    int64_t job = wait_for_job(pool, seen);
    if (job < 0) break;
    seen = (uint32_t)job;
    run_items(pool, seen, start.index);
  }
  return NULL;
}

int cpu_pool_create(cpu_pool **out, int n_workers, twin_err *err) {
  *out = NULL;
  if (n_workers < 1) n_workers = 1;
  cpu_pool *pool = calloc(1, sizeof *pool);
  if (!pool) return twin_err_set(err, TWIN_ENOMEM, "cpu backend: out of memory for threads");
  pool->n_workers = n_workers;
  const char *spin = getenv("TWIN_CPU_SPIN");
  pool->spin_rounds = spin ? atoi(spin) : DEFAULT_SPIN_ROUNDS;
  if (pool->spin_rounds < 0 || pool->spin_rounds > 10000000) pool->spin_rounds = DEFAULT_SPIN_ROUNDS;
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->start_cond, NULL);
  pthread_cond_init(&pool->done_cond, NULL);
  for (int i = 0; i < 2; i++) {
    atomic_init(&pool->slot[i].fn, NULL);
    atomic_init(&pool->slot[i].ctx, NULL);
    atomic_init(&pool->slot[i].n_items, 0);
  }
  atomic_init(&pool->ticket, 0);
  atomic_init(&pool->done_items, 0);
  atomic_init(&pool->stopping, 0);
  atomic_init(&pool->sleeping, 0);
  atomic_init(&pool->caller_waiting, 0);
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
  /* the fields, then the ticket that announces them (sequentially consistent: a worker that
   * sees the ticket sees the fields; one asleep before is counted in `sleeping`) */
  const uint32_t job = ++pool->job;
  atomic_store_explicit(&pool->slot[job % 2].fn, fn, memory_order_relaxed);
  atomic_store_explicit(&pool->slot[job % 2].ctx, ctx, memory_order_relaxed);
  atomic_store_explicit(&pool->slot[job % 2].n_items, n_items, memory_order_relaxed);
  atomic_store(&pool->done_items, 0);
  atomic_store(&pool->ticket, (uint64_t)job << 32);
  if (atomic_load(&pool->sleeping) > 0) {
    pthread_mutex_lock(&pool->mutex);
    pthread_cond_broadcast(&pool->start_cond);
    pthread_mutex_unlock(&pool->mutex);
  }

  run_items(pool, job, 0);

  for (int i = 0; i < pool->spin_rounds && atomic_load(&pool->done_items) < n_items; i++)
    cpu_relax();
  if (atomic_load(&pool->done_items) < n_items) {
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->caller_waiting, 1);
    while (atomic_load(&pool->done_items) < n_items) pthread_cond_wait(&pool->done_cond, &pool->mutex);
    atomic_store(&pool->caller_waiting, 0);
    pthread_mutex_unlock(&pool->mutex);
  }
}

int cpu_pool_size(const cpu_pool *pool) { return pool->n_workers; }

void cpu_pool_destroy(cpu_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->mutex);
  atomic_store(&pool->stopping, 1);
  pthread_cond_broadcast(&pool->start_cond);
  pthread_mutex_unlock(&pool->mutex);
  for (int i = 0; i < pool->n_started; i++) pthread_join(pool->threads[i], NULL);
  pthread_cond_destroy(&pool->start_cond);
  pthread_cond_destroy(&pool->done_cond);
  pthread_mutex_destroy(&pool->mutex);
  free(pool->threads);
  free(pool);
}
