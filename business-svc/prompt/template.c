/* business-svc/prompt/template.c — template files, the registry, and rendering with a token
 * budget (see template.h). */
#include "business-svc/prompt/template.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct twin_prompt_registry {
  twin_prompt_template *items;  /* [n] */
  int n;
};

/* ==== parsing =============================================================================== */

static char *trim_section(const char *start, const char *end) {
  while (start < end && (*start == '\n' || *start == '\r')) start++;
  while (end > start && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ')) end--;
  size_t n = (size_t)(end - start);
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, start, n);
    s[n] = 0;
  }
  return s;
}

static int parse_template(const char *path, const char *text, twin_prompt_template *t, twin_err *err) {
  memset(t, 0, sizeof *t);
  snprintf(t->path, sizeof t->path, "%s", path);
  const char *sys = NULL, *user = NULL, *sys_end = NULL;
  int line_no = 0;
  for (const char *p = text; *p;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    line_no++;
    if (!sys) {
      if (len == 0 || p[0] == '#') {
      } else if (len > 5 && !strncmp(p, "name:", 5)) {
        const char *v = p + 5;
        while (*v == ' ') v++;
        snprintf(t->name, sizeof t->name, "%.*s", (int)(len - (size_t)(v - p)), v);
      } else if (len > 8 && !strncmp(p, "version:", 8)) {
        t->version = atoi(p + 8);
      } else if (len >= 8 && !strncmp(p, "[system]", 8)) {
        sys = eol ? eol + 1 : p + len;
      } else {
        return twin_err_set(err, TWIN_EFORMAT, "%s:%d: expected name:, version: or [system]", path, line_no);
      }
    } else if (len >= 6 && !strncmp(p, "[user]", 6)) {
      sys_end = p;
      user = eol ? eol + 1 : p + len;
      break;
    }
    p = eol ? eol + 1 : p + len;
  }
  if (!t->name[0]) return twin_err_set(err, TWIN_EFORMAT, "%s: no 'name:' line", path);
  if (t->version <= 0) return twin_err_set(err, TWIN_EFORMAT, "%s: no positive 'version:'", path);
  if (!sys || !user) return twin_err_set(err, TWIN_EFORMAT, "%s: needs a [system] and a [user] section", path);
  t->system = trim_section(sys, sys_end);
  t->user = trim_section(user, user + strlen(user));
  if (!t->system || !t->user) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  if (!strstr(t->user, "{question}"))
    return twin_err_set(err, TWIN_EFORMAT, "%s: the [user] section never uses {question}", path);
  return 0;
}

/* ==== registry ============================================================================== */

int twin_prompt_registry_load(const char *dir, twin_prompt_registry **out, twin_err *err) {
  *out = NULL;
  DIR *d = opendir(dir);
  if (!d) return twin_err_set(err, TWIN_ENOTFOUND, "prompt templates: cannot open directory %s", dir);
  twin_prompt_registry *r = calloc(1, sizeof *r);
  int rc = r ? 0 : twin_err_set(err, TWIN_ENOMEM, "out of memory");
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".tmpl") != 0) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    char *text = NULL;
    size_t len = 0;
    if ((rc = twin_read_file(path, 1 << 20, &text, &len, err))) break;
    twin_prompt_template *items = realloc(r->items, (size_t)(r->n + 1) * sizeof *items);
    if (!items) {
      free(text);
      rc = twin_err_set(err, TWIN_ENOMEM, "out of memory");
      break;
    }
    r->items = items;
    rc = parse_template(path, text, &r->items[r->n], err);
    free(text);
    r->n++;
    for (int i = 0; !rc && i < r->n - 1; i++)
      if (!strcmp(r->items[i].name, r->items[r->n - 1].name) && r->items[i].version == r->items[r->n - 1].version)
        rc = twin_err_set(err, TWIN_EFORMAT, "%s: %s version %d is also defined in %s", path,
                          r->items[i].name, r->items[i].version, r->items[i].path);
  }
  closedir(d);
  if (!rc && r->n == 0) rc = twin_err_set(err, TWIN_ENOTFOUND, "prompt templates: no *.tmpl file in %s", dir);
  if (rc) {
    twin_prompt_registry_destroy(r);
    return rc;
  }
  *out = r;
  return 0;
}

void twin_prompt_registry_destroy(twin_prompt_registry *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) {
    free(r->items[i].system);
    free(r->items[i].user);
  }
  free(r->items);
  free(r);
}

const twin_prompt_template *twin_prompt_registry_get(const twin_prompt_registry *r, const char *ref,
                                                     twin_err *err) {
  char name[64];
  int version = 0;
  const char *at = strchr(ref, '@');
  snprintf(name, sizeof name, "%.*s", at ? (int)(at - ref) : (int)strlen(ref), ref);
  if (at) version = atoi(at + 1);
  const twin_prompt_template *best = NULL;
  for (int i = 0; i < r->n; i++) {
    const twin_prompt_template *t = &r->items[i];
    if (strcmp(t->name, name) != 0) continue;
    if (version ? t->version == version : (!best || t->version > best->version)) best = t;
  }
  if (!best) {
    twin_buf known;
    twin_buf_init(&known);
    for (int i = 0; i < r->n; i++)
      twin_buf_printf(&known, "%s%s@%d", i ? ", " : "", r->items[i].name, r->items[i].version);
    twin_err_set(err, TWIN_ENOTFOUND, "template: no template '%s' (have %s)", ref, twin_buf_cstr(&known));
    twin_buf_free(&known);
  }
  return best;
}

/* ==== rendering ============================================================================= */

static int estimate_tokens(void *user, const char *text, size_t len) {
  (void)user;
  (void)text;
  return (int)((len + 3) / 4);
}

/* Replaces every {name} in tmpl by value. */
static void substitute(twin_buf *out, const char *tmpl, const char *question, const char *context) {
  for (const char *p = tmpl; *p;) {
    if (!strncmp(p, "{question}", 10)) {
      twin_buf_puts(out, question);
      p += 10;
    } else if (!strncmp(p, "{context}", 9)) {
      twin_buf_puts(out, context);
      p += 9;
    } else {
      twin_buf_putc(out, *p++);
    }
  }
}

/* Length of the longest prefix of text[0..len) ending at a sentence end (". ", "! ", "? ",
 * a newline) that keeps count(prefix) <= budget; 0 when no sentence fits. */
static size_t cut_at_sentence(const char *text, size_t len, int budget, twin_prompt_token_fn count, void *cu) {
  size_t best = 0;
  for (size_t i = 0; i < len; i++) {
    int end = text[i] == '\n' || ((text[i] == '.' || text[i] == '!' || text[i] == '?') &&
                                  (i + 1 == len || text[i + 1] == ' ' || text[i + 1] == '\n'));
    if (!end) continue;
    if (count(cu, text, i + 1) > budget) break;
    best = i + 1;
  }
  return best;
}

static void append_chunk_header(twin_buf *b, int n, const twin_prompt_chunk *c) {
  twin_buf_printf(b, "[%d]", n);
  int has_title = c->title && *c->title, has_author = c->author && *c->author;
  if (has_title || has_author)
    twin_buf_printf(b, " (%s%s%s%s)", has_title ? c->title : "", has_title && has_author ? ", " : "",
                    has_author ? "by " : "", has_author ? c->author : "");
  twin_buf_putc(b, ' ');
}

int twin_prompt_render_fill(const twin_prompt_template *t, const char *question,
                            const twin_prompt_chunk *chunks, int n_chunks, int budget_tokens,
                            twin_prompt_token_fn count, void *cu, twin_prompt_render *out,
                            twin_err *err) {
  memset(out, 0, sizeof *out);
  if (!count) count = estimate_tokens;
  twin_buf ctx, sys, user;
  twin_buf_init(&ctx);
  twin_buf_init(&sys);
  twin_buf_init(&user);
  substitute(&sys, t->system, question, "");
  substitute(&user, t->user, question, "");
  int fixed = count(cu, twin_buf_cstr(&sys), sys.len) + count(cu, twin_buf_cstr(&user), user.len);
  if (budget_tokens > 0 && fixed > budget_tokens) {
    twin_buf_free(&ctx);
    twin_buf_free(&sys);
    twin_buf_free(&user);
    return twin_err_set(err, TWIN_EINVAL, "query: the prompt without context already takes %d tokens, over the budget of %d",
                        fixed, budget_tokens);
  }
  int left = budget_tokens > 0 ? budget_tokens - fixed : 1 << 30;
  for (int i = 0; i < n_chunks; i++) {
    twin_buf piece;
    twin_buf_init(&piece);
    if (ctx.len) twin_buf_puts(&piece, "\n\n");
    append_chunk_header(&piece, out->chunks_used + 1, &chunks[i]);
    int head = count(cu, twin_buf_cstr(&piece), piece.len);
    size_t tlen = strlen(chunks[i].text);
    int body = count(cu, chunks[i].text, tlen);
    if (head + body <= left) {
      twin_buf_append(&piece, chunks[i].text, tlen);
      left -= head + body;
      twin_buf_append(&ctx, piece.data, piece.len);
      out->chunks_used++;
    } else {
      size_t cut = left > head ? cut_at_sentence(chunks[i].text, tlen, left - head, count, cu) : 0;
      if (cut > 0) {
        twin_buf_append(&piece, chunks[i].text, cut);
        twin_buf_append(&ctx, piece.data, piece.len);
        out->chunks_used++;
        out->chunks_cut = 1;
      }
      twin_buf_free(&piece);
      break;
    }
    twin_buf_free(&piece);
  }
  twin_buf_reset(&sys);
  twin_buf_reset(&user);
  const char *context = ctx.len ? twin_buf_cstr(&ctx) : "(no sources found)";
  substitute(&sys, t->system, question, context);
  substitute(&user, t->user, question, context);
  out->prompt_tokens = count(cu, twin_buf_cstr(&sys), sys.len) + count(cu, twin_buf_cstr(&user), user.len);
  out->system = twin_buf_detach(&sys, NULL);
  out->user = twin_buf_detach(&user, NULL);
  out->context = twin_buf_detach(&ctx, NULL);
  if (!out->context) out->context = twin_strdup("");
  if (!out->system || !out->user || !out->context) {
    twin_prompt_render_free(out);
    return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  }
  return 0;
}

void twin_prompt_render_free(twin_prompt_render *r) {
  free(r->system);
  free(r->user);
  free(r->context);
  memset(r, 0, sizeof *r);
}
