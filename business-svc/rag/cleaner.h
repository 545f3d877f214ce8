/* business-svc/rag/cleaner.h — text cleaning before chunking and embedding. Prose gets Unicode
 * NFKC normalization (utf8proc), loses emoji (pictographs, skin-tone modifiers, flags, keycaps,
 * emoji variation selectors and the joiners between them), control and format characters and
 * U+FFFD, and has its whitespace collapsed: runs of spaces/tabs become one space, lines lose
 * leading and trailing spaces, and runs of blank lines become one paragraph break ("\n\n").
 * Fenced code blocks (``` or ~~~, up to the matching closing fence) and whole code documents
 * are kept byte for byte; everywhere, CR LF and lone CR become LF and a leading BOM goes. */
#ifndef TWIN_RAG_CLEANER_H
#define TWIN_RAG_CLEANER_H

#include <stddef.h>

#include "business-svc/rag/document.h"
#include "common/error.h"
#include "common/util.h"

/* Appends the cleaned form of text[0..len) (UTF-8) to out (borrowed; the caller owns and frees
 * it). type TWIN_DOC_CODE keeps the text as it is (line endings aside). Invalid UTF-8 is
 * TWIN_EINVAL naming the byte offset; out then holds whatever was appended before. */
int twin_clean_text(const char *text, size_t len, twin_doc_type type, twin_buf *out, twin_err *err);

/* Whether code point cp is one the cleaner drops as an emoji (exposed for tests). */
int twin_clean_is_emoji(int cp);

#endif
