/* common/redis_pool.h — a fixed set of Redis connections shared by the query threads
 * (gRPC workers, HTTP connections): a twin_redis is not thread-safe, so each call borrows one
 * for its whole duration. Connections open lazily and reconnect on their own (common/redis.h);
 * while Redis is down, commands on them fail at once with TWIN_EUNAVAILABLE. */
#ifndef TWIN_COMMON_REDIS_POOL_H
#define TWIN_COMMON_REDIS_POOL_H

#include "common/error.h"
#include "common/redis.h"

typedef struct twin_redis_pool twin_redis_pool;

/* size connections with the given options (copied; url copied too). TWIN_EINVAL for a bad
 * URL. Nothing connects yet. */
int twin_redis_pool_create(const twin_redis_options *opts, int size, twin_redis_pool **out,
                              twin_err *err);
void twin_redis_pool_destroy(twin_redis_pool *p);

/* Borrows a connection, waiting up to timeout_ms for one to come back (TWIN_EFULL after). */
int twin_redis_pool_acquire(twin_redis_pool *p, int timeout_ms, twin_redis **out, twin_err *err);
/* Gives it back. */
void twin_redis_pool_release(twin_redis_pool *p, twin_redis *r);

#endif
