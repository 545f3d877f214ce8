/* llm-svc/engine/kv_block_pool.h — the KV cache's block allocator and prefix cache.
 * Block ids index the same slot in every layer's K and V pool (the backend owns the storage).
 * A full block can be committed under a content hash (hash of the parent block's hash and the
 * block's 16 token ids); a later sequence with the same prefix finds it and shares it by
 * refcount. Blocks whose refcount drops to 0 stay findable until evicted, least recently
 * used first, when no uncached block is free. Not thread-safe: the scheduler loop owns it. */
#ifndef TWIN_ENGINE_KV_BLOCK_POOL_H
#define TWIN_ENGINE_KV_BLOCK_POOL_H

#include <stdint.h>

#include "llm-svc/engine/backend.h"

typedef struct twin_kv_pool twin_kv_pool;

typedef struct twin_kv_pool_stats {
  int total;          /* blocks in the pool */
  int used;           /* refcount > 0 */
  int cached_free;    /* refcount 0, still findable by hash */
  uint64_t queries;   /* prefix-cache block lookups */
  uint64_t hits;      /* lookups that found a block */
  uint64_t evictions;
} twin_kv_pool_stats;

twin_kv_pool *twin_kv_pool_create(int num_blocks);
void twin_kv_pool_destroy(twin_kv_pool *p);

/* A fresh block (refcount 1, no hash): an uncached free block if any, else the least recently
 * used cached one (forgetting its hash). -1 when every block is in use. */
int32_t twin_kv_pool_alloc(twin_kv_pool *p);
/* Drops one reference. */
void twin_kv_pool_release(twin_kv_pool *p, int32_t block);
/* Blocks that alloc could hand out now (free + cached free). */
int twin_kv_pool_available(const twin_kv_pool *p);

/* Hash of a full block: parent is the previous block's hash (0 for the first block). */
uint64_t twin_kv_block_hash(uint64_t parent, const int32_t *tokens /* [TWIN_KV_BLOCK_SIZE] */);
/* The block committed under (hash, tokens), with one more reference; -1 when none. Counts a
 * query, and a hit when found. */
int32_t twin_kv_pool_lookup(twin_kv_pool *p, uint64_t hash, const int32_t *tokens);
/* Registers a full block under hash (its tokens copied for verification). When another block
 * already holds that content, the pool keeps the first one and this block stays private. */
void twin_kv_pool_commit(twin_kv_pool *p, int32_t block, uint64_t hash, const int32_t *tokens);

void twin_kv_pool_get_stats(const twin_kv_pool *p, twin_kv_pool_stats *out);

#endif
