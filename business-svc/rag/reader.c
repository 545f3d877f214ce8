/* business-svc/rag/reader.c — the readers of rag/reader.h: the binary test, markdown front
 * matter, JSONL lines (cJSON), HTML pages (rag/html_text.h), the directory walk and URLs.
 * Every document leaves through the caller's emit callback, so a JSONL file of a million
 * lines never sits in memory as documents. */
#include "business-svc/rag/reader.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "business-svc/rag/html_text.h"
#include "common/util.h"

/* ============================================================================================
 * formats and options
 * ========================================================================================== */

static const char *const code_extensions[] = {
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cu", ".cuh", ".py", ".go", ".rs",
    ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".scala", ".rb", ".php", ".sh",
    ".bash", ".lua", ".swift", ".sql", ".cs", ".pl", ".jl", ".zig", ".hs", ".ml", ".ex",
    ".exs", ".erl", ".cmake", ".proto", ".toml", ".yaml", ".yml", NULL};
static const char *const markdown_extensions[] = {".md", ".markdown", ".mdx", NULL};
static const char *const jsonl_extensions[] = {".jsonl", ".ndjson", NULL};
static const char *const html_extensions[] = {".html", ".htm", NULL};
static const char *const text_extensions[] = {".txt", ".text", ".rst", NULL};

static bool has_extension(const char *path, const char *const *exts) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  if (!dot) return false;
  for (; *exts; exts++)
    if (strcasecmp(dot, *exts) == 0) return true;
  return false;
}

twin_source_format twin_format_of_path(const char *path) {
  if (has_extension(path, markdown_extensions)) return TWIN_FORMAT_MARKDOWN;
  if (has_extension(path, jsonl_extensions)) return TWIN_FORMAT_JSONL;
  if (has_extension(path, html_extensions)) return TWIN_FORMAT_HTML;
  if (has_extension(path, code_extensions)) return TWIN_FORMAT_CODE;
  return TWIN_FORMAT_TEXT;
}

static bool is_known_file(const char *path) {
  return has_extension(path, markdown_extensions) || has_extension(path, jsonl_extensions) ||
         has_extension(path, html_extensions) || has_extension(path, code_extensions) ||
         has_extension(path, text_extensions);
}

static twin_reader_options resolved(const twin_reader_options *opts) {
  twin_reader_options o;
  if (opts) {
    o = *opts;
  } else {
    memset(&o, 0, sizeof o);
  }
  if (!o.default_author) o.default_author = "";
  if (o.max_file_bytes == 0) o.max_file_bytes = 64u << 20;
  if (o.max_invalid_ratio <= 0) o.max_invalid_ratio = 0.01;
  return o;
}

/* The type for a document of this format when the source names none. */
static twin_doc_type type_for(const twin_reader_options *o, twin_source_format f) {
  if (o->type_given && twin_doc_type_name(o->default_type)) return o->default_type;
  return f == TWIN_FORMAT_CODE ? TWIN_DOC_CODE : TWIN_DOC_ARTICLE;
}

/* ============================================================================================
 * the binary test
 * ========================================================================================== */

int twin_check_text(const char *name, const char *data, size_t len, double max_invalid_ratio,
                    char **fixed, size_t *fixed_len, twin_err *err) {
  *fixed = NULL;
  *fixed_len = 0;
  const char *nul = memchr(data, '\0', len);
  if (nul)
    return twin_err_set(err, TWIN_EFORMAT, "%s: binary file (NUL byte at offset %zu), not ingested",
                        name, (size_t)(nul - data));
  size_t invalid = 0, first_bad = len, pos = 0;
  while (pos < len) {
    size_t ok = twin_utf8_validate(data + pos, len - pos);
    pos += ok;
    if (pos >= len) break;
    if (first_bad == len) first_bad = pos;
    invalid++;
    pos++;
  }
  if (invalid == 0) return 0;
  if ((double)invalid > max_invalid_ratio * (double)len)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: not UTF-8 text (%zu of %zu bytes invalid, the first at offset %zu), "
                        "not ingested",
                        name, invalid, len, first_bad);
  twin_buf b;
  twin_buf_init(&b);
  twin_buf_reserve(&b, len + invalid * 2 + 1);
  pos = 0;
  while (pos < len) {
    size_t ok = twin_utf8_validate(data + pos, len - pos);
    twin_buf_append(&b, data + pos, ok);
    pos += ok;
    if (pos >= len) break;
    twin_buf_append(&b, "\xEF\xBF\xBD", 3);
    pos++;
  }
  if (b.failed) {
    twin_buf_free(&b);
    return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", name);
  }
  *fixed = twin_buf_detach(&b, fixed_len);
  return 0;
}

/* ============================================================================================
 * documents out
 * ========================================================================================== */

typedef struct read_ctx {
  const twin_reader_options *opts;
  twin_reader_emit_fn emit;
  void *emit_ctx;
} read_ctx;

static int emit_error(read_ctx *rc, const char *where, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int emit_error(read_ctx *rc, const char *where, int code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return rc->emit(rc->emit_ctx, NULL, where, code, msg);
}

/* Builds a document and hands it to emit; a failure to build is emitted as an error. */
static int emit_document(read_ctx *rc, const char *where, const char *id, const char *id_base,
                         const char *text, size_t len, const char *author, const char *title,
                         const char *link, twin_doc_type type) {
  twin_document *doc = malloc(sizeof *doc);
  if (!doc) return emit_error(rc, where, TWIN_ENOMEM, "%s: out of memory", where);
  twin_err err = {0};
  int r = twin_document_init(doc, id, id_base, text, len, author, title, link, type, &err);
  if (r) {
    free(doc);
    return emit_error(rc, where, r, "%s: %s", where, err.msg);
  }
  /* the stored source is where it came from, not the hashed base */
  free(doc->source);
  doc->source = strdup(where);
  if (!doc->source) {
    twin_document_free(doc);
    free(doc);
    return emit_error(rc, where, TWIN_ENOMEM, "%s: out of memory", where);
  }
  return rc->emit(rc->emit_ctx, doc, where, 0, NULL);
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash && slash[1] ? slash + 1 : path;
}

/* ============================================================================================
 * markdown front matter
 * ========================================================================================== */

typedef struct front_matter {
  char id[TWIN_ID_CAP + 8], author[256], type[32], title[512], link[2048];
  bool has_type;
} front_matter;

/* Copies a value, trimmed and unquoted, into out[cap]. */
static void fm_value(const char *s, size_t n, char *out, size_t cap) {
  while (n && (*s == ' ' || *s == '\t')) { s++; n--; }
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
  if (n >= 2 && ((s[0] == '"' && s[n - 1] == '"') || (s[0] == '\'' && s[n - 1] == '\''))) {
    s++;
    n -= 2;
  }
  if (n >= cap) n = cap - 1;
  memcpy(out, s, n);
  out[n] = '\0';
}

/* Parses a front matter at the start of text; returns the offset of the body (0: none). */
static size_t parse_front_matter(const char *text, size_t len, front_matter *fm) {
  memset(fm, 0, sizeof *fm);
  if (len < 4 || memcmp(text, "---", 3) != 0 || (text[3] != '\n' && text[3] != '\r')) return 0;
  size_t pos = text[3] == '\r' && len > 4 && text[4] == '\n' ? 5 : 4;
  while (pos < len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t eol = nl ? (size_t)(nl - text) : len, next = nl ? eol + 1 : len;
    size_t n = eol - pos;
    if (n && text[eol - 1] == '\r') n--;
    const char *line = text + pos;
    if ((n == 3 && (memcmp(line, "---", 3) == 0 || memcmp(line, "...", 3) == 0)))
      return next;
    const char *colon = memchr(line, ':', n);
    if (colon) {
      size_t kn = (size_t)(colon - line);
      const char *v = colon + 1;
      size_t vn = n - kn - 1;
#define FM_KEY(k) (kn == strlen(k) && memcmp(line, k, kn) == 0)
      if (FM_KEY("id")) fm_value(v, vn, fm->id, sizeof fm->id);
      else if (FM_KEY("author")) fm_value(v, vn, fm->author, sizeof fm->author);
      else if (FM_KEY("type")) { fm_value(v, vn, fm->type, sizeof fm->type); fm->has_type = true; }
      else if (FM_KEY("title")) fm_value(v, vn, fm->title, sizeof fm->title);
      else if (FM_KEY("link") || FM_KEY("url")) fm_value(v, vn, fm->link, sizeof fm->link);
#undef FM_KEY
    }
    pos = next;
  }
  memset(fm, 0, sizeof *fm); /* no closing line: not a front matter */
  return 0;
}

/* The text of the first "# heading" line, into out[cap]; false when there is none. */
static bool first_heading(const char *text, size_t len, char *out, size_t cap) {
  size_t pos = 0;
  bool in_fence = false;
  while (pos < len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t eol = nl ? (size_t)(nl - text) : len;
    const char *line = text + pos;
    size_t n = eol - pos;
    if (n >= 3 && (memcmp(line, "```", 3) == 0 || memcmp(line, "~~~", 3) == 0)) in_fence = !in_fence;
    if (!in_fence && n >= 2 && line[0] == '#') {
      size_t h = 0;
      while (h < n && line[h] == '#') h++;
      if (h <= 6 && h < n && line[h] == ' ') {
        fm_value(line + h, n - h, out, cap);
        if (out[0]) return true;
      }
    }
    pos = nl ? eol + 1 : len;
  }
  return false;
}

/* ============================================================================================
 * one buffer, by format
 * ========================================================================================== */

static int read_markdown(read_ctx *rc, const char *name, const char *id_base, const char *text,
                         size_t len) {
  front_matter fm;
  size_t body = parse_front_matter(text, len, &fm);
  twin_doc_type type = type_for(rc->opts, TWIN_FORMAT_MARKDOWN);
  if (fm.has_type) {
    twin_err err = {0};
    if (twin_doc_type_parse(fm.type, &type, &err))
      return emit_error(rc, name, TWIN_EINVAL, "%s: front matter: %s", name, err.msg);
  }
  char title[512];
  if (fm.title[0]) twin_strlcpy(title, fm.title, sizeof title);
  else if (!first_heading(text + body, len - body, title, sizeof title))
    twin_strlcpy(title, base_name(name), sizeof title);
  return emit_document(rc, name, fm.id[0] ? fm.id : NULL, id_base, text + body, len - body,
                       fm.author[0] ? fm.author : rc->opts->default_author, title, fm.link, type);
}

static const char *json_string_field(const cJSON *obj, const char *key, bool *wrong_type) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v || cJSON_IsNull(v)) return NULL;
  if (!cJSON_IsString(v)) {
    *wrong_type = true;
    return NULL;
  }
  return v->valuestring;
}

static int read_jsonl_line(read_ctx *rc, const char *name, const char *id_base, size_t line_no,
                           const char *line, size_t n) {
  char where[PATH_MAX + 32];
  snprintf(where, sizeof where, "%s:%zu", name, line_no);
  cJSON *obj = cJSON_ParseWithLength(line, n);
  if (!obj) return emit_error(rc, where, TWIN_EFORMAT, "%s: not valid JSON", where);
  int r = 0;
  if (!cJSON_IsObject(obj)) {
    r = emit_error(rc, where, TWIN_EFORMAT, "%s: a JSON object is expected", where);
    cJSON_Delete(obj);
    return r;
  }
  static const char *const keys[] = {"text", "author", "type", "title", "link", "id"};
  const char *vals[6];
  for (int k = 0; k < 6; k++) {
    bool wrong = false;
    vals[k] = json_string_field(obj, keys[k], &wrong);
    if (wrong) {
      r = emit_error(rc, where, TWIN_EINVAL, "%s: field \"%s\" must be a string", where, keys[k]);
      cJSON_Delete(obj);
      return r;
    }
  }
  const char *text = vals[0], *type_s = vals[2], *link = vals[4], *id = vals[5];
  bool blank = true;
  for (const char *p = text; p && *p; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') { blank = false; break; }
  if (!text || blank) {
    r = emit_error(rc, where, TWIN_EINVAL, "%s: field \"text\" is missing or empty", where);
    cJSON_Delete(obj);
    return r;
  }
  twin_doc_type type = type_for(rc->opts, TWIN_FORMAT_JSONL);
  twin_err err = {0};
  if (type_s && twin_doc_type_parse(type_s, &type, &err)) {
    r = emit_error(rc, where, TWIN_EINVAL, "%s: field \"type\": %s", where, err.msg);
    cJSON_Delete(obj);
    return r;
  }
  char base[PATH_MAX + 32];
  if (link && link[0]) twin_strlcpy(base, link, sizeof base);
  else snprintf(base, sizeof base, "%s:%zu", id_base, line_no);
  r = emit_document(rc, where, id, base, text, strlen(text), vals[1] ? vals[1] : rc->opts->default_author,
                    vals[3] ? vals[3] : "", link, type);
  cJSON_Delete(obj);
  return r;
}

static int read_jsonl(read_ctx *rc, const char *name, const char *id_base, const char *text,
                      size_t len) {
  size_t pos = 0, line_no = 0;
  while (pos < len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t eol = nl ? (size_t)(nl - text) : len;
    line_no++;
    bool blank = true;
    for (size_t i = pos; i < eol; i++)
      if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r') { blank = false; break; }
    if (!blank) {
      int r = read_jsonl_line(rc, name, id_base, line_no, text + pos, eol - pos);
      if (r) return r;
    }
    pos = nl ? eol + 1 : len;
  }
  return 0;
}

static int read_html(read_ctx *rc, const char *name, const char *id_base, const char *html,
                     size_t len, const char *charset, const char *link) {
  twin_buf text;
  twin_buf_init(&text);
  char *title = NULL;
  twin_err err = {0};
  int r = twin_html_to_text(html, len, charset, &text, &title, &err);
  if (r) {
    twin_buf_free(&text);
    return emit_error(rc, name, r, "%s: %s", name, err.msg);
  }
  r = emit_document(rc, name, NULL, id_base, twin_buf_cstr(&text), text.len, rc->opts->default_author,
                    title[0] ? title : base_name(name), link, type_for(rc->opts, TWIN_FORMAT_HTML));
  free(title);
  twin_buf_free(&text);
  return r;
}

static int read_buffer(read_ctx *rc, const char *name, const char *id_base, const char *data,
                       size_t len, twin_source_format format, const char *link, twin_err *err) {
  char *fixed = NULL;
  size_t fixed_len = 0;
  int r = twin_check_text(name, data, len, rc->opts->max_invalid_ratio, &fixed, &fixed_len, err);
  if (r) return r;
  if (fixed) {
    data = fixed;
    len = fixed_len;
  }
  switch (format) {
    case TWIN_FORMAT_MARKDOWN: r = read_markdown(rc, name, id_base, data, len); break;
    case TWIN_FORMAT_JSONL: r = read_jsonl(rc, name, id_base, data, len); break;
    case TWIN_FORMAT_HTML: r = read_html(rc, name, id_base, data, len, NULL, link); break;
    case TWIN_FORMAT_CODE:
    case TWIN_FORMAT_TEXT:
      r = emit_document(rc, name, NULL, id_base, data, len, rc->opts->default_author, base_name(name),
                        link, type_for(rc->opts, format));
      break;
  }
  free(fixed);
  return r;
}

int twin_read_buffer(const char *name, const char *id_base, const char *data, size_t len,
                     twin_source_format format, const twin_reader_options *opts,
                     twin_reader_emit_fn emit, void *ctx, twin_err *err) {
  twin_reader_options o = resolved(opts);
  read_ctx rc = {&o, emit, ctx};
  if (!name) name = "inline";
  return read_buffer(&rc, name, id_base && id_base[0] ? id_base : name, data ? data : "",
                     data ? len : 0, format, "", err);
}

/* ============================================================================================
 * files, directories, URLs
 * ========================================================================================== */

static int read_file(read_ctx *rc, const char *path, twin_err *err) {
  char abs[PATH_MAX];
  if (!realpath(path, abs)) {
    int e = errno;
    return twin_err_set(err, e == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: %s", path, strerror(e));
  }
  char *data = NULL;
  size_t len = 0;
  int r = twin_read_file(path, rc->opts->max_file_bytes, &data, &len, err);
  if (r) return r;
  r = read_buffer(rc, path, abs, data, len, twin_format_of_path(path), "", err);
  free(data);
  return r;
}

static int name_order(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int read_directory(read_ctx *rc, const char *dir, int depth, twin_err *err) {
  if (depth > 32) return emit_error(rc, dir, TWIN_EINVAL, "%s: directories nested too deep", dir);
  struct dirent **entries = NULL;
  int n = scandir(dir, &entries, NULL, name_order);
  if (n < 0) return twin_err_set(err, TWIN_EIO, "%s: %s", dir, strerror(errno));
  int r = 0;
  for (int i = 0; i < n; i++) {
    const char *nm = entries[i]->d_name;
    if (!r && nm[0] != '.') {
      char path[PATH_MAX];
      snprintf(path, sizeof path, "%s%s%s", dir, twin_str_has_suffix(dir, "/") ? "" : "/", nm);
      struct stat st;
      if (stat(path, &st) != 0) {
        r = emit_error(rc, path, TWIN_EIO, "%s: %s", path, strerror(errno));
      } else if (S_ISDIR(st.st_mode)) {
        twin_err sub = {0};
        int s = read_directory(rc, path, depth + 1, &sub);
        if (s) r = emit_error(rc, path, s, "%s", sub.msg);
      } else if (S_ISREG(st.st_mode) && is_known_file(path)) {
        twin_err sub = {0};
        int s = read_file(rc, path, &sub);
        if (s) r = emit_error(rc, path, s, "%s", sub.msg);
      }
    }
    free(entries[i]);
  }
  free(entries);
  (void)err;
  return r;
}

static bool accepted_text_type(const char *ct) {
  return strcmp(ct, "text/plain") == 0 || strcmp(ct, "text/markdown") == 0 ||
         strcmp(ct, "text/x-markdown") == 0;
}

static int read_url(read_ctx *rc, const char *url, twin_err *err) {
  twin_fetch_result fr;
  int r = twin_fetch_url(url, &rc->opts->fetch, &fr, err);
  if (r) return r;
  bool html = strcmp(fr.content_type, "text/html") == 0 ||
              strcmp(fr.content_type, "application/xhtml+xml") == 0;
  if (!html && !accepted_text_type(fr.content_type)) {
    r = twin_err_set(err, TWIN_EUNSUPPORTED,
                     "%s: content type \"%s\" is not ingested (text/html, application/xhtml+xml, "
                     "text/plain, text/markdown are)",
                     url, fr.content_type[0] ? fr.content_type : "(none)");
  } else if (html) {
    r = read_html(rc, url, url, fr.body, fr.len, fr.charset, url);
  } else if (fr.charset[0] && strcmp(fr.charset, "utf-8") != 0 && strcmp(fr.charset, "us-ascii") != 0) {
    r = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: charset \"%s\" is not read (UTF-8 only)", url, fr.charset);
  } else {
    twin_source_format f = strcmp(fr.content_type, "text/plain") == 0 ? TWIN_FORMAT_TEXT : TWIN_FORMAT_MARKDOWN;
    r = read_buffer(rc, url, url, fr.body, fr.len, f, url, err);
  }
  twin_fetch_result_free(&fr);
  return r;
}

int twin_read_source(const char *source, const twin_reader_options *opts,
                     twin_reader_emit_fn emit, void *ctx, twin_err *err) {
  if (!source || !source[0]) return twin_err_set(err, TWIN_EINVAL, "empty source");
  twin_reader_options o = resolved(opts);
  read_ctx rc = {&o, emit, ctx};
  if (strstr(source, "://")) {
    if (!twin_str_has_prefix(source, "http://") && !twin_str_has_prefix(source, "https://"))
      return twin_err_set(err, TWIN_EINVAL, "%s: only http:// and https:// URLs are read", source);
    return read_url(&rc, source, err);
  }
  struct stat st;
  if (stat(source, &st) != 0) {
    int e = errno;
    return twin_err_set(err, e == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: %s", source, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) return read_directory(&rc, source, 0, err);
  if (!S_ISREG(st.st_mode)) return twin_err_set(err, TWIN_EINVAL, "%s: not a regular file", source);
  return read_file(&rc, source, err);
}
