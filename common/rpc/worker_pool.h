/* common/rpc/worker_pool.h — threads that run RPC handlers off the I/O thread. The pool keeps
 * min_threads alive and grows up to max_threads while every thread is busy (handlers may block
 * for a whole stream); jobs beyond that wait in FIFO order. */
#ifndef TWIN_RPC_WORKER_POOL_H
#define TWIN_RPC_WORKER_POOL_H

typedef struct twin_worker_pool twin_worker_pool;

twin_worker_pool *twin_worker_pool_create(int min_threads, int max_threads);
/* fn(arg) runs on a pool thread. Returns 0, or -1 after stop. */
int twin_worker_pool_submit(twin_worker_pool *p, void (*fn)(void *), void *arg);
/* Runs the queued jobs, then joins every thread. */
void twin_worker_pool_destroy(twin_worker_pool *p);

#endif
