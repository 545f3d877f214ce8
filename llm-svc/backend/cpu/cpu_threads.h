/* llm-svc/backend/cpu/cpu_threads.h — a small persistent pthread pool for the CPU backend's own
 * parallel loops (attention over tokens x kv heads, weight conversion, elementwise ops over
 * rows). OpenBLAS threads its matrix products itself; this pool covers the rest. One thread
 * drives a pool at a time: cpu_pool_run is not reentrant. */
#ifndef TWIN_BACKEND_CPU_THREADS_H
#define TWIN_BACKEND_CPU_THREADS_H

#include "common/error.h"

/* Runs item `item` of a job on worker `worker` (0 .. cpu_pool_size()-1; 0 is the caller). */
typedef void (*cpu_task_fn)(void *ctx, int item, int worker);

typedef struct cpu_pool cpu_pool;

/* n_workers counts the calling thread, so n_workers - 1 threads are started. */
int cpu_pool_create(cpu_pool **out, int n_workers, twin_err *err);
/* Calls fn(ctx, i, worker) once for every i in [0, n_items), spread over the workers (items
 * handed out dynamically), and returns when all are done. ctx is borrowed for the call. */
void cpu_pool_run(cpu_pool *pool, cpu_task_fn fn, void *ctx, int n_items);
int cpu_pool_size(const cpu_pool *pool);
/* Stops and joins the threads. NULL is fine. */
void cpu_pool_destroy(cpu_pool *pool);

#endif
