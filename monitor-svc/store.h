/* monitor-svc/store.h — the trace store in Redis. Layout under a key prefix P ("twin:monitor:"):
 *   P trace:<id>            string  the trace JSON as received (the record)
 *   P summary               hash    id -> summary array (trace.h), for filters and statistics
 *   P by_time               zset    id scored by time_ms (every trace)
 *   P by_model:<model>      zset    the same, per model
 *   P by_template:<name>    zset    the same, per template name
 *   P errors                zset    the traces whose error is not ""
 *   P models, P templates   sets    the names that have traces (for the dashboard's filters)
 * A trace is written by one Lua script that creates the record with SET NX and adds the
 * indexes only when it did, so storing the same trace twice (any replica, any time) stores it
 * once. Retention removes traces (record, summary, every index) by another script.
 * A monitor_store holds only names and script hashes: immutable after init, shareable by
 * threads; every call borrows a twin_redis the caller owns for the call. */
#ifndef TWIN_MONITOR_STORE_H
#define TWIN_MONITOR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/redis.h"
#include "monitor-svc/trace.h"

#define MONITOR_KEY_MAX 640

typedef struct monitor_store {
  char prefix[128];
  char store_sha[41]; /* SHA-1 of the store script, hex */
  char trim_sha[41];
} monitor_store;

/* prefix: at most 127 bytes. TWIN_EINVAL otherwise. */
int monitor_store_init(monitor_store *s, const char *prefix, twin_err *err);

/* P<kind> or P<kind><name> into out[MONITOR_KEY_MAX] (kind: "trace:", "summary", "by_time",
 * "by_model:", "by_template:", "errors", "models", "templates"). */
void monitor_store_key(const monitor_store *s, char out[MONITOR_KEY_MAX], const char *kind, const char *name);

/* Stores traces[0..n) (raw[i] = the JSON as received, raw_len[i] its length) in one pipeline.
 * results[i]: 1 stored, 0 already there, or a negative TWIN_E* code when Redis refused that
 * one (an error reply; the entry should stay pending). Returns 0, or the connection error
 * (TWIN_EUNAVAILABLE / TWIN_ETIMEOUT: nothing is known about what ran). */
int monitor_store_put(twin_redis *r, const monitor_store *s, const monitor_trace *const *traces,
                      const char *const *raw, const size_t *raw_len, size_t n, int *results,
                      twin_err *err);

/* The stored JSON of one trace (malloc'd, caller frees); TWIN_ENOTFOUND when absent. */
int monitor_store_get(twin_redis *r, const monitor_store *s, const char *trace_id, char **json,
                      size_t *len, twin_err *err);

/* Retention: removes traces older than min_time_ms (0 = no age limit), then the oldest ones
 * beyond max_count (0 = no cap), at most max_remove per call. *removed gets the number of
 * traces deleted. */
int monitor_store_trim(twin_redis *r, const monitor_store *s, int64_t min_time_ms, uint64_t max_count,
                       size_t max_remove, uint64_t *removed, twin_err *err);

/* Number of stored traces. */
int monitor_store_count(twin_redis *r, const monitor_store *s, uint64_t *n, twin_err *err);

/* The model names (templates false) or template names (true) that have traces, sorted;
 * *names is a malloc'd array of malloc'd strings (free with monitor_store_free_names). */
int monitor_store_names(twin_redis *r, const monitor_store *s, bool templates, char ***names,
                        size_t *n, twin_err *err);
void monitor_store_free_names(char **names, size_t n);

#endif
