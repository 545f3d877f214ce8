/* business-svc/rag/document.h — a document on its way into the index: its id, where it came
 * from, its text and the metadata that retrieval filters on (author, type). Types decide how a
 * document is cleaned and chunked: a post is short prose, an article long prose, code is
 * split at definitions and never rewritten. Ids are given by the caller or derived from the
 * source (a hash of the path or URL), so the same source always maps to the same id. */
#ifndef TWIN_RAG_DOCUMENT_H
#define TWIN_RAG_DOCUMENT_H

#include <stddef.h>

#include "common/error.h"

typedef enum twin_doc_type {
  TWIN_DOC_POST = 0,
  TWIN_DOC_ARTICLE = 1,
  TWIN_DOC_CODE = 2,
} twin_doc_type;
#define TWIN_DOC_TYPE_COUNT 3

/* "post" | "article" | "code"; NULL for an out-of-range value. */
const char *twin_doc_type_name(twin_doc_type type);
/* Parses a type name (exact, lower case); TWIN_EINVAL quoting s otherwise. */
int twin_doc_type_parse(const char *s, twin_doc_type *out, twin_err *err);

/* Ids (document and chunk ids) are 1..128 bytes of printable ASCII without spaces, so they can
 * sit in Redis keys, JSON and log lines unescaped. */
#define TWIN_ID_MAX 128
#define TWIN_ID_CAP (TWIN_ID_MAX + 1)
int twin_id_validate(const char *id, const char *what, twin_err *err);

/* A document id derived from its source: the first 16 bytes of SHA-256(source) as 32 hex
 * digits. out has TWIN_ID_CAP bytes. */
int twin_doc_id_from_source(const char *source, char out[TWIN_ID_CAP], twin_err *err);

/* A document. Every string is owned by the document (malloc'ed; free with
 * twin_document_free); author, title and link may be "" but are never NULL once a reader or
 * twin_document_init filled them. text is valid UTF-8 of text_len bytes plus a NUL. */
typedef struct twin_document {
  char *id;
  char *source; /* path, "path:LINE" for a JSONL line, URL, or "inline" */
  char *text;
  size_t text_len;
  char *author;
  char *title;
  char *link;
  twin_doc_type type;
} twin_document;

/* Fills d with copies of the given strings (NULL -> "" for author/title/link/source; id NULL
 * -> derived from source). text must be valid UTF-8 (TWIN_EINVAL naming the byte offset). On
 * failure d holds nothing to free. */
int twin_document_init(twin_document *d, const char *id, const char *source, const char *text,
                       size_t text_len, const char *author, const char *title, const char *link,
                       twin_doc_type type, twin_err *err);
void twin_document_free(twin_document *d);

#endif
