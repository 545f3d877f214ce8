/* business-svc/rag/html_text.c — twin_html_to_text: parse with htmlReadMemory, then one
 * recursive walk over the tree that writes text and asks for line or paragraph breaks; the
 * writer collapses whitespace and turns break requests into at most one blank line. */
#include "business-svc/rag/html_text.h"

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ============================================================================================
 * the text writer
 * ========================================================================================== */

typedef struct text_writer {
  twin_buf *out;
  size_t start;    /* this page's output starts here */
  int want_break;  /* 0 none, 1 newline, 2 blank line, before the next text */
  bool want_space; /* whitespace was seen since the last text */
} text_writer;

static void request_break(text_writer *w, int kind) {
  if (kind > w->want_break) w->want_break = kind;
}

static size_t trailing_newlines(const text_writer *w) {
  size_t t = 0;
  while (w->out->len - t > w->start && w->out->data[w->out->len - t - 1] == '\n') t++;
  return t;
}

static void flush_breaks(text_writer *w) {
  if (w->out->len > w->start) {
    size_t have = trailing_newlines(w);
    for (size_t i = have; i < (size_t)w->want_break; i++) twin_buf_putc(w->out, '\n');
    if (!w->want_break && w->want_space && have == 0) twin_buf_putc(w->out, ' ');
  }
  w->want_break = 0;
  w->want_space = false;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

/* Inline text: whitespace runs collapse to one space. */
static void write_text(text_writer *w, const char *s) {
  for (const char *p = s; *p;) {
    if (is_ws(*p)) {
      w->want_space = true;
      while (*p && is_ws(*p)) p++;
      continue;
    }
    const char *q = p;
    while (*q && !is_ws(*q)) q++;
    flush_breaks(w);
    twin_buf_append(w->out, p, (size_t)(q - p));
    p = q;
  }
}

/* ============================================================================================
 * the walk
 * ========================================================================================== */

static bool name_is(const xmlNode *n, const char *name) {
  return n->name && strcmp((const char *)n->name, name) == 0;
}

static bool name_in(const xmlNode *n, const char *const *names) {
  for (; *names; names++)
    if (name_is(n, *names)) return true;
  return false;
}

static const char *const dropped[] = {"script", "style", "nav", "noscript", "template", "svg",
                                      "iframe", "head", "object", "canvas", "button", "select",
                                      NULL};
static const char *const blocks[] = {"p", "div", "section", "article", "main", "header",
                                     "footer", "aside", "ul", "ol", "dl", "table", "thead",
                                     "tbody", "blockquote", "figure", "figcaption", "form",
                                     "address", "details", "summary", "body", "hr", NULL};
static const char *const lines[] = {"tr", "dt", "dd", "caption", NULL};

static void walk(text_writer *w, xmlNode *node);

static void walk_children(text_writer *w, xmlNode *node) {
  for (xmlNode *c = node->children; c; c = c->next) walk(w, c);
}

/* <pre>: the text as it is, in a fence. */
static void write_pre(text_writer *w, xmlNode *node) {
  xmlChar *content = xmlNodeGetContent(node);
  const char *s = content ? (const char *)content : "";
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
  if (n && s[0] == '\n') { s++; n--; }
  request_break(w, 2);
  w->want_space = false;
  flush_breaks(w);
  twin_buf_puts(w->out, "```\n");
  twin_buf_append(w->out, s, n);
  twin_buf_puts(w->out, "\n```");
  request_break(w, 2);
  if (content) xmlFree(content);
}

static void walk(text_writer *w, xmlNode *node) {
  if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) {
    if (node->content) write_text(w, (const char *)node->content);
    return;
  }
  if (node->type != XML_ELEMENT_NODE) return;
  if (name_in(node, dropped)) return;
  if (xmlHasProp(node, (const xmlChar *)"hidden")) return;
  xmlChar *aria = xmlGetProp(node, (const xmlChar *)"aria-hidden");
  bool hidden = aria && strcmp((const char *)aria, "true") == 0;
  if (aria) xmlFree(aria);
  if (hidden) return;
  const char *name = (const char *)node->name;
  if (name[0] == 'h' && name[1] >= '1' && name[1] <= '6' && name[2] == '\0') {
    request_break(w, 2);
    w->want_space = false;
    flush_breaks(w);
    for (int i = 0; i < name[1] - '0'; i++) twin_buf_putc(w->out, '#');
    twin_buf_putc(w->out, ' ');
    size_t before = w->out->len;
    walk_children(w, node);
    if (w->out->len == before) w->out->len -= (size_t)(name[1] - '0') + 1; /* empty heading */
    if (w->out->data) w->out->data[w->out->len] = '\0';
    w->want_space = false;
    request_break(w, 2);
    return;
  }
  if (name_is(node, "pre")) {
    write_pre(w, node);
    return;
  }
  if (name_is(node, "br")) {
    request_break(w, 1);
    return;
  }
  if (name_is(node, "li")) {
    request_break(w, 1);
    w->want_space = false;
    flush_breaks(w);
    twin_buf_puts(w->out, "- ");
    walk_children(w, node);
    request_break(w, 1);
    return;
  }
  if (name_is(node, "td") || name_is(node, "th")) {
    w->want_space = true;
    walk_children(w, node);
    w->want_space = true;
    return;
  }
  if (name_in(node, blocks)) {
    request_break(w, 2);
    walk_children(w, node);
    request_break(w, 2);
    return;
  }
  if (name_in(node, lines)) {
    request_break(w, 1);
    walk_children(w, node);
    request_break(w, 1);
    return;
  }
  walk_children(w, node); /* inline: span, a, em, code, strong... */
}

/* The first <title> anywhere in the tree. */
static xmlNode *find_title(xmlNode *node) {
  for (xmlNode *c = node; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    if (name_is(c, "title")) return c;
    if (name_is(c, "svg")) continue; /* an svg's <title> is not the page's */
    xmlNode *t = find_title(c->children);
    if (t) return t;
  }
  return NULL;
}

int twin_html_to_text(const char *html, size_t len, const char *encoding, twin_buf *text,
                      char **title, twin_err *err) {
  *title = NULL;
  if (len > (size_t)INT32_MAX) return twin_err_set(err, TWIN_EINVAL, "HTML page of %zu bytes is too large", len);
  htmlDocPtr doc = htmlReadMemory(html, (int)len, NULL, encoding && encoding[0] ? encoding : NULL,
                                  HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                      HTML_PARSE_NONET | HTML_PARSE_COMPACT);
  if (!doc) return twin_err_set(err, TWIN_EFORMAT, "HTML page (%zu bytes) could not be parsed", len);
  xmlNode *root = xmlDocGetRootElement(doc);
  /* title */
  twin_buf t;
  twin_buf_init(&t);
  xmlNode *title_node = root ? find_title(root) : NULL;
  if (title_node) {
    text_writer tw = {.out = &t, .start = 0};
    walk_children(&tw, title_node);
  }
  *title = twin_buf_detach(&t, NULL);
  /* body */
  text_writer w = {.out = text, .start = text->len};
  if (root) walk(&w, root);
  xmlFreeDoc(doc);
  if (!*title || text->failed) {
    free(*title);
    *title = NULL;
    return twin_err_set(err, TWIN_ENOMEM, "out of memory converting HTML");
  }
  return 0;
}
