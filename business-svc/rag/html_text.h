/* business-svc/rag/html_text.h — the readable text of an HTML page, through libxml2's HTML
 * parser (which recovers from broken markup): script, style, nav, noscript, template, svg,
 * iframe, the head and elements marked hidden are dropped; headings become markdown headings
 * ("## Title") in paragraphs of their own; block elements (p, div, li, tr, blockquote...)
 * end paragraphs or lines; list items start with "- "; <pre> becomes a fenced code block with
 * its whitespace kept; elsewhere whitespace collapses as a browser shows it. */
#ifndef TWIN_RAG_HTML_TEXT_H
#define TWIN_RAG_HTML_TEXT_H

#include <stddef.h>

#include "common/error.h"
#include "common/util.h"

/* Appends the text of html[0..len) to text (borrowed) and sets *title to the page's <title>
 * (malloc'ed, whitespace collapsed, "" when there is none; the caller frees it). encoding is
 * the charset from the transport (NULL: the page's <meta> or UTF-8). TWIN_EFORMAT when the
 * page cannot be parsed at all. */
int twin_html_to_text(const char *html, size_t len, const char *encoding, twin_buf *text,
                      char **title, twin_err *err);

#endif
