/* business-svc/rag/chunk_store.h — the Redis layout of the knowledge base (Redis is its source
 * of truth; every replica's vector index is rebuilt from it):
 *   twin:chunk:<chunk_id>  hash: text, doc_id, author, type, title, link, source, position,
 *                          tokens, vector (raw little-endian float32 bytes, dim * 4)
 *   twin:doc:<doc_id>      set of the document's chunk ids
 *   twin:docs              set of the ids of documents that have chunks
 *   twin:chunks:changes    stream of changes, one entry per chunk: op add|delete, chunk, doc
 * A document's changes are written in one MULTI/EXEC, under a WATCH of its chunk set: Redis
 * applies all of them or none, so a crash or a dropped connection never leaves a document
 * half-written, and a retry sees exactly what is stored. The commands of one call go out
 * pipelined (one round trip). Functions use one twin_redis from the calling thread. */
#ifndef TWIN_RAG_CHUNK_STORE_H
#define TWIN_RAG_CHUNK_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "business-svc/rag/document.h"
#include "common/error.h"
#include "common/redis.h"

#define TWIN_KEY_CHUNK_PREFIX "twin:chunk:"
#define TWIN_KEY_DOC_PREFIX "twin:doc:"
#define TWIN_KEY_DOCS "twin:docs"
#define TWIN_KEY_CHANGES "twin:chunks:changes"

/* One chunk to write. Everything is borrowed for the call. */
typedef struct twin_chunk_record {
  const char *chunk_id;
  const char *text;
  size_t text_len;
  const char *doc_id, *author, *title, *link, *source;
  twin_doc_type type;
  int position;
  int n_tokens;
  const float *vector; /* [dim] */
  int dim;
} twin_chunk_record;

/* The chunk ids stored for doc_id now (*ids: n malloc'ed strings and the array; free with
 * twin_chunk_store_free_ids). watch = true WATCHes the set first, for a commit that follows;
 * end such a read with twin_chunk_store_commit or twin_chunk_store_unwatch. */
int twin_chunk_store_doc_chunks(twin_redis *r, const char *doc_id, bool watch, char ***ids,
                                size_t *n, twin_err *err);
int twin_chunk_store_unwatch(twin_redis *r, twin_err *err);
void twin_chunk_store_free_ids(char **ids, size_t n);

/* In one MULTI/EXEC: writes the add records (hash, set member, an "add" stream entry each),
 * deletes the remove ids (hash, set member, a "delete" entry each) and keeps twin:docs in step
 * (n_after = the document's chunk count once this commits). stream_maxlen > 0 trims the stream
 * to about that many entries. *conflict is set (and nothing written) when the watched set
 * changed since twin_chunk_store_doc_chunks: read again and retry. On an error (Redis down,
 * timeout) the transaction either ran whole or not at all. */
int twin_chunk_store_commit(twin_redis *r, const char *doc_id, const twin_chunk_record *add,
                            size_t n_add, const char *const *remove, size_t n_remove,
                            size_t n_after, size_t stream_maxlen, bool *conflict, twin_err *err);

/* Deletes a document: its chunks, its set, its twin:docs entry, with a "delete" stream entry per
 * chunk, in one transaction (retried on a WATCH conflict). TWIN_ENOTFOUND when it has no
 * chunks. *removed may be NULL. */
int twin_chunk_store_delete_document(twin_redis *r, const char *doc_id, size_t stream_maxlen,
                                     size_t *removed, twin_err *err);

/* A chunk as the vector index needs it, read back from its hash. */
typedef struct twin_stored_chunk {
  bool found;           /* false: no such chunk (deleted since), or a field is missing/bad */
  char author[256];
  twin_doc_type type;
  float *vector;        /* [dim] owned by the caller's array (see twin_chunk_store_fetch) */
  char problem[160];    /* why found is false when the hash exists but is unusable */
} twin_stored_chunk;

/* Reads author, type and vector of n chunks in one pipelined round trip; vectors is the
 * caller's [n][dim] and out[i].vector points into it. A chunk whose vector is not dim floats
 * comes back with found = false and problem set. */
int twin_chunk_store_fetch(twin_redis *r, const char *const *chunk_ids, size_t n, int dim,
                           float *vectors, twin_stored_chunk *out, twin_err *err);

#endif
