/* llm-svc/engine/kv_block_pool.c — block refcounts, a free stack of uncached blocks, an LRU list
 * of cached free blocks, and an open-addressing table from content hash to block. */
#include "llm-svc/engine/kv_block_pool.h"

#include <stdlib.h>
#include <string.h>

typedef struct kv_block {
  int refcount;
  int hashed;                      /* committed under `hash` */
  uint64_t hash;
  int32_t tokens[TWIN_KV_BLOCK_SIZE];
  int32_t lru_prev, lru_next;      /* in the cached-free list when hashed && refcount == 0 */
} kv_block;

struct twin_kv_pool {
  int n;
  kv_block *blocks;                /* [n] */
  int32_t *free_stack;             /* [n] uncached free blocks */
  int n_free;
  int32_t lru_head, lru_tail;      /* oldest at head */
  int n_lru;
  int32_t *table;                  /* [table_cap] block id or -1; tombstone -2 */
  int table_cap;
  int tombstones;
  twin_kv_pool_stats stats;
};

/* ==== hashing =============================================================================== */

static uint64_t mix64(uint64_t x) { /* splitmix64 finalizer */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t twin_kv_block_hash(uint64_t parent, const int32_t *tokens) {
  uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ULL);
  for (int i = 0; i < TWIN_KV_BLOCK_SIZE; i++) h = mix64(h ^ (uint32_t)tokens[i]) + (uint64_t)i;
  return h ? h : 1; /* 0 is reserved for "no parent" */
}

/* ==== table ================================================================================= */

static int table_find(const twin_kv_pool *p, uint64_t hash, const int32_t *tokens) {
  int mask = p->table_cap - 1;
  for (int i = (int)(hash & (uint64_t)mask), k = 0; k < p->table_cap; i = (i + 1) & mask, k++) {
    int32_t b = p->table[i];
    if (b == -1) return -1;
    if (b >= 0 && p->blocks[b].hash == hash &&
        memcmp(p->blocks[b].tokens, tokens, sizeof p->blocks[b].tokens) == 0)
      return i;
  }
  return -1;
}

static void table_insert(twin_kv_pool *p, uint64_t hash, int32_t block) {
  int mask = p->table_cap - 1;
  for (int i = (int)(hash & (uint64_t)mask);; i = (i + 1) & mask) {
    if (p->table[i] < 0) {
      if (p->table[i] == -2) p->tombstones--;
      p->table[i] = block;
      return;
    }
  }
}

/* Re-inserts every committed block, dropping tombstones (which lengthen every miss). */
static void table_rebuild(twin_kv_pool *p) {
  for (int i = 0; i < p->table_cap; i++) p->table[i] = -1;
  p->tombstones = 0;
  for (int32_t id = 0; id < p->n; id++)
    if (p->blocks[id].hashed) table_insert(p, p->blocks[id].hash, id);
}

static void table_remove(twin_kv_pool *p, int32_t block) {
  kv_block *b = &p->blocks[block];
  int slot = table_find(p, b->hash, b->tokens);
  if (slot >= 0 && p->table[slot] == block) {
    p->table[slot] = -2;
    if (++p->tombstones > p->table_cap / 4) {
      b->hashed = 0;
      table_rebuild(p);
    }
  }
}

/* ==== LRU of cached free blocks ============================================================= */

static void lru_push_tail(twin_kv_pool *p, int32_t id) {
  kv_block *b = &p->blocks[id];
  b->lru_prev = p->lru_tail;
  b->lru_next = -1;
  if (p->lru_tail >= 0) p->blocks[p->lru_tail].lru_next = id; else p->lru_head = id;
  p->lru_tail = id;
  p->n_lru++;
}

static void lru_unlink(twin_kv_pool *p, int32_t id) {
  kv_block *b = &p->blocks[id];
  if (b->lru_prev >= 0) p->blocks[b->lru_prev].lru_next = b->lru_next; else p->lru_head = b->lru_next;
  if (b->lru_next >= 0) p->blocks[b->lru_next].lru_prev = b->lru_prev; else p->lru_tail = b->lru_prev;
  b->lru_prev = b->lru_next = -1;
  p->n_lru--;
}

/* ==== API =================================================================================== */

twin_kv_pool *twin_kv_pool_create(int num_blocks) {
  if (num_blocks <= 0) return NULL;
  twin_kv_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = num_blocks;
  p->blocks = calloc((size_t)num_blocks, sizeof *p->blocks);
  p->free_stack = malloc((size_t)num_blocks * sizeof *p->free_stack);
  p->table_cap = 16;
  while (p->table_cap < 2 * num_blocks) p->table_cap *= 2;
  p->table = malloc((size_t)p->table_cap * sizeof *p->table);
  if (!p->blocks || !p->free_stack || !p->table) {
    twin_kv_pool_destroy(p);
    return NULL;
  }
  for (int i = 0; i < p->table_cap; i++) p->table[i] = -1;
  /* Lowest ids handed out first. */
  for (int i = 0; i < num_blocks; i++) {
    p->free_stack[i] = num_blocks - 1 - i;
    p->blocks[i].lru_prev = p->blocks[i].lru_next = -1;
  }
  p->n_free = num_blocks;
  p->lru_head = p->lru_tail = -1;
  p->stats.total = num_blocks;
  return p;
}

void twin_kv_pool_destroy(twin_kv_pool *p) {
  if (!p) return;
  free(p->blocks);
  free(p->free_stack);
  free(p->table);
  free(p);
}

int32_t twin_kv_pool_alloc(twin_kv_pool *p) {
  int32_t id;
  if (p->n_free > 0) {
    id = p->free_stack[--p->n_free];
  } else if (p->lru_head >= 0) {
    id = p->lru_head;
    lru_unlink(p, id);
    table_remove(p, id);
    p->blocks[id].hashed = 0;
    p->stats.evictions++;
  } else {
    return -1;
  }
  p->blocks[id].refcount = 1;
  p->stats.used++;
  return id;
}

void twin_kv_pool_release(twin_kv_pool *p, int32_t id) {
  kv_block *b = &p->blocks[id];
  if (b->refcount <= 0) abort(); /* broken invariant: a double release */
  if (--b->refcount > 0) return;
  p->stats.used--;
  if (b->hashed) lru_push_tail(p, id);
  else p->free_stack[p->n_free++] = id;
}

int twin_kv_pool_available(const twin_kv_pool *p) { return p->n_free + p->n_lru; }

int32_t twin_kv_pool_lookup(twin_kv_pool *p, uint64_t hash, const int32_t *tokens) {
  p->stats.queries++;
  int slot = table_find(p, hash, tokens);
  if (slot < 0) return -1;
  int32_t id = p->table[slot];
  kv_block *b = &p->blocks[id];
  if (b->refcount == 0) {
    lru_unlink(p, id);
    p->stats.used++;
  }
  b->refcount++;
  p->stats.hits++;
  return id;
}

void twin_kv_pool_commit(twin_kv_pool *p, int32_t id, uint64_t hash, const int32_t *tokens) {
  kv_block *b = &p->blocks[id];
  if (b->hashed) return;
  if (table_find(p, hash, tokens) >= 0) return; /* the same content lives in another block */
  b->hashed = 1;
  b->hash = hash;
  memcpy(b->tokens, tokens, sizeof b->tokens);
  table_insert(p, hash, id);
}

void twin_kv_pool_get_stats(const twin_kv_pool *p, twin_kv_pool_stats *out) {
  *out = p->stats;
  out->cached_free = p->n_lru;
}
