/* business-svc/rag/vector_index.h — the in-memory vector index of one business-svc replica: a
 * plain C face on FAISS (rag/vector_index.cpp). Vectors are L2-normalized on the way in, so
 * inner product is cosine similarity. The index is exact (IndexFlatIP in an IndexIDMap2) by
 * default, or HNSW (IndexHNSWFlat) — always, or once it holds hnsw_threshold vectors (AUTO).
 * Each vector carries its chunk id, author and document type; searches filter on author and
 * type during the search (a faiss::IDSelector), and remove by chunk id. Thread-safe: any number
 * of searches run at once under a read lock; writers are serialized and hold the write lock
 * only for the mutation itself (an HNSW build or rebuild runs beside the searches and is
 * swapped in). An HNSW index cannot delete in place: removed vectors become tombstones that
 * searches skip, and the graph is rebuilt from the live vectors once they pass a ratio. */
#ifndef TWIN_RAG_VECTOR_INDEX_H
#define TWIN_RAG_VECTOR_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "business-svc/rag/document.h"
#include "common/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum twin_index_kind {
  TWIN_INDEX_EXACT = 0,
  TWIN_INDEX_HNSW = 1,
  TWIN_INDEX_AUTO = 2, /* exact, turning into HNSW at hnsw_threshold vectors */
} twin_index_kind;

/* "exact" | "hnsw" | "auto" (both ways). */
const char *twin_index_kind_name(twin_index_kind kind);
int twin_index_kind_parse(const char *s, twin_index_kind *out, twin_err *err);

typedef struct twin_vector_index_options {
  int dim;                    /* > 0 */
  twin_index_kind kind;
  size_t hnsw_threshold;      /* AUTO: vectors at which HNSW takes over; 0 = 50000 */
  int hnsw_m;                 /* graph degree; 0 = 32 */
  int hnsw_ef_construction;   /* 0 = 80 */
  int hnsw_ef_search;         /* 0 = 64 (raised to k, and for selective filters) */
  double max_tombstone_ratio; /* HNSW: rebuild when removed / stored exceeds it; 0 = 0.25 */
  int search_threads;         /* OpenMP threads inside one search call; 0 = 1 (requests run
                                 concurrently on their own threads; builds use every core) */
} twin_vector_index_options;

typedef struct twin_vector_index twin_vector_index;

/* opts is copied. *out is owned by the caller (twin_vector_index_destroy). */
int twin_vector_index_create(twin_vector_index **out, const twin_vector_index_options *opts,
                             twin_err *err);
void twin_vector_index_destroy(twin_vector_index *ix);
/* A new, empty index with the options of `like` (for a reload built aside, then swapped in). */
int twin_vector_index_create_like(twin_vector_index **out, twin_vector_index *like, twin_err *err);

/* What is stored beside a vector. Strings are borrowed for the call (copied). */
typedef struct twin_index_entry {
  const char *chunk_id; /* twin_id_validate rules */
  const char *author;   /* NULL = "" */
  twin_doc_type type;
} twin_index_entry;

/* Adds n vectors, vectors [n][dim] (borrowed; normalized copies are stored; an all-zero
 * vector is stored as it is and scores 0). A chunk id already in the index is left as it is
 * (chunk ids name content) and not counted in *n_added (may be NULL). A bad entry (id, type)
 * or a non-finite vector fails the whole call with TWIN_EINVAL naming its index; nothing is
 * added then. */
int twin_vector_index_add(twin_vector_index *ix, const twin_index_entry *entries,
                          const float *vectors, size_t n, size_t *n_added, twin_err *err);

/* Removes the given chunk ids; ids not in the index are skipped. *n_removed may be NULL. */
int twin_vector_index_remove(twin_vector_index *ix, const char *const *chunk_ids, size_t n,
                             size_t *n_removed, twin_err *err);

/* Empties the index (keeps its options; an AUTO index is exact again). */
void twin_vector_index_clear(twin_vector_index *ix);

/* Exchanges the contents of two indexes (for a reload built aside, then swapped in). */
void twin_vector_index_swap(twin_vector_index *a, twin_vector_index *b);

/* A search filter: vectors whose author is one of authors[0..n_authors) (when n_authors > 0)
 * and whose type bit (1u << type) is in type_mask (when type_mask != 0). */
typedef struct twin_index_filter {
  const char *const *authors; /* [n_authors] borrowed */
  size_t n_authors;
  unsigned type_mask;
} twin_index_filter;

typedef struct twin_index_hit {
  char chunk_id[TWIN_ID_CAP];
  float score; /* inner product of unit vectors, in [-1, 1] */
} twin_index_hit;

/* Searches nq queries, queries [nq][dim] (borrowed, normalized here), for the k best vectors
 * that pass filter (NULL = none). hits [nq][k] and n_hits [nq] are the caller's; row q holds
 * n_hits[q] <= k hits, best first. TWIN_EINVAL for k == 0 or a non-finite query. */
int twin_vector_index_search(twin_vector_index *ix, const float *queries, size_t nq, size_t k,
                             const twin_index_filter *filter, twin_index_hit *hits,
                             size_t *n_hits, twin_err *err);

/* Live vectors (tombstones not counted). */
size_t twin_vector_index_size(twin_vector_index *ix);
bool twin_vector_index_contains(twin_vector_index *ix, const char *chunk_id);
/* The stored (normalized) vector of chunk_id into out[dim]; TWIN_ENOTFOUND when absent. */
int twin_vector_index_get(twin_vector_index *ix, const char *chunk_id, float *out, twin_err *err);
int twin_vector_index_dim(const twin_vector_index *ix);
/* The structure in use now: TWIN_INDEX_EXACT or TWIN_INDEX_HNSW. */
twin_index_kind twin_vector_index_current_kind(twin_vector_index *ix);

typedef struct twin_vector_index_stats {
  size_t live;        /* vectors searchable */
  size_t stored;      /* vectors in the FAISS index, tombstones included */
  size_t tombstones;
  size_t rebuilds;    /* HNSW builds (AUTO switch and tombstone rebuilds) */
  twin_index_kind current;
} twin_vector_index_stats;
void twin_vector_index_get_stats(twin_vector_index *ix, twin_vector_index_stats *out);

/* Every live chunk id, sorted: *ids is an array of n malloc'ed strings plus the array itself
 * (free with twin_vector_index_free_ids). */
int twin_vector_index_list(twin_vector_index *ix, char ***ids, size_t *n, twin_err *err);
void twin_vector_index_free_ids(char **ids, size_t n);

#ifdef __cplusplus
}
#endif

#endif
