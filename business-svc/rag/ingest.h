/* business-svc/rag/ingest.h — the feature pipeline: sources (files, directories, URLs) or
 * documents in; read (rag/reader.h) -> clean (rag/cleaner.h) -> chunk by type (rag/chunker.h,
 * token counts from the encoder's tokenizer) -> embed the chunks Redis does not have yet ->
 * write them (rag/chunk_store.h), one MULTI/EXEC per document. Every replica's vector index
 * follows from the change stream (rag/index_follower.h).
 *
 * A chunk's id is the first 16 bytes (32 hex digits) of SHA-256 over its document id, author,
 * type, title, link and text: ingesting an unchanged document again writes nothing (its
 * chunks count as unchanged), editing its text replaces only the chunks that changed (the
 * ones no longer produced are deleted), editing its metadata replaces all of them.
 * Failures are per input: a bad JSONL line, a binary file or Redis going away fails that
 * document, with a message naming it, and ingestion goes on; a document is written whole or
 * not at all, so running the same ingest again after a failure completes it without
 * duplicating anything. */
#ifndef TWIN_RAG_INGEST_H
#define TWIN_RAG_INGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "business-svc/rag/chunker.h"
#include "business-svc/rag/document.h"
#include "business-svc/rag/reader.h"
#include "business-svc/rag/text_encoder.h"
#include "common/error.h"
#include "common/redis.h"

/* What happened to one document, or to one input part that failed before it was a document. */
typedef struct twin_ingest_item {
  char *source;             /* path, "path:LINE", URL or "inline" (owned) */
  char doc_id[TWIN_ID_CAP]; /* "" when the input failed before having one */
  char *title;              /* owned, "" when unknown */
  int status;               /* 0 or a TWIN_E* code */
  char *error;              /* owned message when status != 0, else NULL */
  size_t chunks;            /* chunks the document has now */
  size_t chunks_new, chunks_unchanged, chunks_removed;
} twin_ingest_item;

typedef struct twin_ingest_report {
  twin_ingest_item *items; /* [n_items] owned, in input order */
  size_t n_items;
  size_t documents;        /* documents written or found unchanged */
  size_t chunks_new, chunks_unchanged, chunks_removed;
  size_t errors;           /* items with status != 0 */
} twin_ingest_report;

void twin_ingest_report_free(twin_ingest_report *r);

/* Called after each item (borrowed pointers, valid during the call): for a CLI's progress. */
typedef void (*twin_ingest_progress_fn)(void *ctx, const twin_ingest_item *item,
                                        const twin_ingest_report *so_far);

typedef struct twin_ingest_options {
  const twin_text_encoder *encoder; /* borrowed, required */
  twin_redis *redis;                /* borrowed, required; used from the calling thread only */
  twin_chunker_options chunker;     /* sizes per type; its counter is the encoder's, and
                                       max_tokens is capped at the encoder's limit */
  twin_reader_options reader;
  size_t stream_maxlen;             /* trim twin:chunks:changes to ~N entries; 0 = never */
  int embed_batch;                  /* texts per embed call; 0 = 32 */
  twin_ingest_progress_fn progress; /* may be NULL */
  void *progress_ctx;
} twin_ingest_options;

/* Default chunk sizes and reader settings; encoder and redis are left NULL. */
twin_ingest_options twin_ingest_default_options(void);

/* Ingests sources[0..n). Fills *report (free with twin_ingest_report_free) and returns 0 once
 * every input was tried, whatever failed (see report->errors); a negative code only for bad
 * options or out of memory. */
int twin_ingest_sources(const twin_ingest_options *opts, const char *const *sources, size_t n,
                        twin_ingest_report *report, twin_err *err);

/* The same for documents already in memory (borrowed). */
int twin_ingest_documents(const twin_ingest_options *opts, const twin_document *docs, size_t n,
                          twin_ingest_report *report, twin_err *err);

/* The chunk id of a chunk text of doc (out: TWIN_ID_CAP bytes). */
int twin_ingest_chunk_id(const twin_document *doc, const char *text, size_t len,
                         char out[TWIN_ID_CAP], twin_err *err);

/* Removes a document and its chunks (rag/chunk_store.h); TWIN_ENOTFOUND when unknown. */
int twin_ingest_delete_document(const twin_ingest_options *opts, const char *doc_id,
                                size_t *chunks_removed, twin_err *err);

#endif
