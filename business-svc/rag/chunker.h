/* business-svc/rag/chunker.h — cuts a cleaned document into chunks sized in tokens, by type.
 * Prose (posts, articles) is cut into units at paragraphs, then sentences and list lines, then
 * words when a sentence alone is too long; units are packed greedily up to max_tokens, a chunk
 * prefers to end at a paragraph break once it is half full, never ends on a heading, and the
 * next chunk starts with the last units of the previous one that fit in overlap_tokens. Code
 * is cut at definitions (a line at column 0 that starts a function, class, def, fn, struct...)
 * and blank lines; each definition starts a new chunk unless the current one is still small.
 * A chunk is a contiguous span of the text, so its text is text[offset .. offset + len).
 * Tokens are counted by a caller-given counter (the embedder's WordPiece tokenizer), or by
 * twin_token_count_approx when none is given. */
#ifndef TWIN_RAG_CHUNKER_H
#define TWIN_RAG_CHUNKER_H

#include <stddef.h>

#include "business-svc/rag/document.h"
#include "business-svc/rag/wordpiece.h"
#include "common/error.h"

/* Counts the tokens of text[0..len) (no special tokens); returns the count (>= 0) or a
 * negative TWIN_E* code. Must be additive over pieces cut at whitespace (WordPiece is). */
typedef int (*twin_token_count_fn)(void *ctx, const char *text, size_t len);

typedef struct twin_token_counter {
  twin_token_count_fn count; /* NULL = twin_token_count_approx */
  void *ctx;                 /* borrowed, passed to count */
} twin_token_counter;

/* Without a tokenizer: each whitespace-separated word counts its punctuation marks and CJK /
 * other ideographic characters one token each, and each run of other letters and digits one
 * token per started 6 characters (BERT's English vocabulary averages about 1.3 pieces per
 * word, so this errs on the high side and chunks come out a little smaller than asked). */
int twin_token_count_approx(const char *text, size_t len);

/* A counter that runs WordPiece (borrowed; must outlive the counter's use). */
twin_token_counter twin_token_counter_wordpiece(const twin_wordpiece *wp);

typedef struct twin_chunk_size {
  int max_tokens;     /* > 0 */
  int overlap_tokens; /* 0 <= overlap < max_tokens / 2 */
} twin_chunk_size;

typedef struct twin_chunker_options {
  twin_chunk_size by_type[TWIN_DOC_TYPE_COUNT]; /* indexed by twin_doc_type */
  twin_token_counter counter;
} twin_chunker_options;

/* Posts 128 tokens with 16 overlap, articles 256 with 32, code 256 with none; approximate
 * counting. */
twin_chunker_options twin_chunker_default_options(void);

typedef struct twin_chunk {
  size_t offset;   /* into the chunked text */
  size_t len;      /* bytes */
  int n_tokens;    /* sum of its units' counts */
  int position;    /* 0, 1, 2... in document order */
} twin_chunk;

typedef struct twin_chunk_list {
  twin_chunk *items; /* [n] owned */
  size_t n;
} twin_chunk_list;

/* Chunks text[0..len) (valid UTF-8, normally the cleaner's output) as a document of type.
 * Text that is empty or only whitespace gives no chunks. Fills *out (the caller frees it with
 * twin_chunk_list_free). TWIN_EINVAL for bad sizes or invalid UTF-8; a counter's error code
 * is passed on. */
int twin_chunk_text(const char *text, size_t len, twin_doc_type type,
                    const twin_chunker_options *opts, twin_chunk_list *out, twin_err *err);
void twin_chunk_list_free(twin_chunk_list *list);

/* Whether line[0..len) starts a definition at column 0 (exposed for tests). */
int twin_chunk_is_definition(const char *line, size_t len);

#endif
