/* business-svc/rag/reader.h — turns sources into documents: files (plain text, markdown with
 * an optional front matter, JSONL with one document per line, code by extension), directories
 * (walked in name order, hidden entries skipped), and http(s) URLs (rag/fetch.h; HTML goes
 * through rag/html_text.h). A file that is binary — a NUL byte, or invalid UTF-8 in more than
 * a small share of its bytes — is refused with an error naming it; a few stray invalid bytes
 * become U+FFFD. A document's id is the one its source gives (front matter "id:", a JSONL
 * "id"), else a hash of its source: the file's absolute path, the URL, a JSONL line's "link",
 * or "<absolute path>:<line>".
 *
 * Markdown front matter: the file starts with a line "---", then "key: value" lines (id,
 * author, type, title, link; values may be quoted; other keys are ignored), then "---".
 * JSONL: each non-blank line is an object with "text" (required), "author", "type"
 * (post|article|code), "title", "link", "id" (all strings); a bad line is reported with the
 * file and line number and reading goes on with the next. */
#ifndef TWIN_RAG_READER_H
#define TWIN_RAG_READER_H

#include <stdbool.h>
#include <stddef.h>

#include "business-svc/rag/document.h"
#include "business-svc/rag/fetch.h"
#include "common/error.h"

typedef struct twin_reader_options {
  const char *default_author;    /* when the source names none; NULL = "" */
  bool type_given;               /* false: code files (by extension) are code, everything
                                    else an article, unless the source names a type */
  twin_doc_type default_type;    /* with type_given: the type of sources that name none */
  size_t max_file_bytes;         /* 0 = 64 MiB */
  double max_invalid_ratio;      /* share of invalid UTF-8 bytes tolerated; 0 = 0.01 */
  twin_fetch_options fetch;      /* for URLs */
} twin_reader_options;

/* One result of reading: a document (doc non-NULL; the callee owns it from now on and frees
 * it with twin_document_free), or a failed part (doc NULL; code < 0 and a message naming
 * where: "notes.jsonl:17: ..."). `where` names the part ("path", "path:LINE", URL). A non-zero
 * return stops reading and becomes twin_read_source's result. */
typedef int (*twin_reader_emit_fn)(void *ctx, twin_document *doc, const char *where, int code,
                                   const char *message);

/* Reads a source: a file, a directory or an http(s) URL. Returns 0 once the source was read
 * (some parts may have been emitted as errors), or a negative code when the source as a whole
 * cannot be read (missing, unreadable, binary, fetch failure), with err naming it. In a
 * directory each file that fails as a whole is emitted as an error and the walk goes on. */
int twin_read_source(const char *source, const twin_reader_options *opts,
                     twin_reader_emit_fn emit, void *ctx, twin_err *err);

typedef enum twin_source_format {
  TWIN_FORMAT_TEXT = 0,
  TWIN_FORMAT_MARKDOWN,
  TWIN_FORMAT_JSONL,
  TWIN_FORMAT_HTML,
  TWIN_FORMAT_CODE,
} twin_source_format;

/* The format a file name implies (by extension; TEXT when unknown). */
twin_source_format twin_format_of_path(const char *path);

/* Reads data[0..len) as if it came from a source named `name` (used for ids and messages),
 * e.g. an upload. id_base is what derived ids hash ("" = name). */
int twin_read_buffer(const char *name, const char *id_base, const char *data, size_t len,
                     twin_source_format format, const twin_reader_options *opts,
                     twin_reader_emit_fn emit, void *ctx, twin_err *err);

/* The binary test: 0 when data[0..len) is text; *fixed is then NULL (data is valid UTF-8) or
 * a malloc'ed copy with invalid bytes replaced by U+FFFD (*fixed_len bytes). TWIN_EFORMAT
 * naming `name` and the offset otherwise. */
int twin_check_text(const char *name, const char *data, size_t len, double max_invalid_ratio,
                    char **fixed, size_t *fixed_len, twin_err *err);

#endif
