/* business-svc/rag/index_follower.h — keeps one replica's vector index in step with Redis. A
 * thread with its own connection first loads every chunk (noting the change stream's last id
 * before it starts, building into a fresh index that is then swapped in), then replays
 * twin:chunks:changes with XREAD BLOCK from the last id it applied: "add" fetches the chunk's
 * author, type and vector and adds it, "delete" removes it; both are idempotent, so entries
 * seen twice change nothing. When Redis goes away it reconnects (with backoff) and goes on
 * from the last id; when the stream was deleted or recreated (its last id is behind ours), or
 * trimmed past what it applied, it loads everything again. */
#ifndef TWIN_RAG_INDEX_FOLLOWER_H
#define TWIN_RAG_INDEX_FOLLOWER_H

#include <stdbool.h>
#include <stdint.h>

#include "business-svc/rag/vector_index.h"
#include "common/error.h"

typedef struct twin_index_follower_options {
  const char *redis_url;  /* NULL = redis://127.0.0.1:6379 (copied) */
  int block_ms;           /* XREAD BLOCK; 0 = 1000 */
  int batch;              /* stream entries per read, chunks per load step; 0 = 512 */
  int backoff_max_ms;     /* reconnect backoff cap; 0 = 2000 */
} twin_index_follower_options;

typedef struct twin_index_follower twin_index_follower;

/* Starts the thread. index is borrowed (it must outlive the follower) and is written only by
 * the follower from now on. TWIN_EINVAL for a bad URL; a Redis that is down is not an error
 * (the thread keeps trying; see twin_index_follower_wait_synced). */
int twin_index_follower_start(twin_index_follower **out, twin_vector_index *index,
                              const twin_index_follower_options *opts, twin_err *err);
/* Stops and joins the thread (within about block_ms), frees the follower. NULL is a no-op. */
void twin_index_follower_stop(twin_index_follower *f);

/* Waits until the follower has loaded and applied the stream up to the last entry it holds
 * at the time of the call (read on a connection of its own). TWIN_ETIMEOUT after timeout_ms,
 * TWIN_EUNAVAILABLE when Redis cannot be reached for that read. */
int twin_index_follower_wait_synced(twin_index_follower *f, int timeout_ms, twin_err *err);

typedef struct twin_index_follower_stats {
  bool loaded;          /* the first full load is done */
  bool connected;
  char last_id[48];     /* last stream entry applied ("0-0" before any) */
  uint64_t loads;       /* full loads (the first, then after resets) */
  uint64_t adds, deletes; /* stream entries that changed the index */
  uint64_t skipped;     /* entries for chunks gone since, or unusable (see last_error) */
  uint64_t errors;      /* Redis errors met (each followed by a retry) */
  char last_error[256];
} twin_index_follower_stats;

void twin_index_follower_get_stats(twin_index_follower *f, twin_index_follower_stats *out);

/* Stream ids "ms-seq": negative, 0 or positive like strcmp; a malformed id sorts first. */
int twin_stream_id_compare(const char *a, const char *b);

#endif
