/* business-svc/rag/cleaner.c — the cleaner of rag/cleaner.h: line endings first, then the text
 * is cut into prose and fenced-code segments by lines; prose goes through utf8proc's NFKC and a
 * per-code-point filter that also collapses whitespace, code is copied as it is. The whitespace
 * state (a pending space, pending newlines) runs across segments so breaks around a code block
 * come out the same as anywhere else. */
#include "business-svc/rag/cleaner.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ============================================================================================
 * character classes
 * ========================================================================================== */

int twin_clean_is_emoji(int cp) {
  if (cp >= 0x1F3FB && cp <= 0x1F3FF) return 1; /* skin-tone modifiers */
  if (cp >= 0x1F1E6 && cp <= 0x1F1FF) return 1; /* regional indicators (flags) */
  if (cp == 0xFE0F || cp == 0xFE0E) return 1;   /* emoji / text presentation selectors */
  if (cp == 0x20E3) return 1;                   /* combining enclosing keycap */
  if (cp >= 0xE0020 && cp <= 0xE007F) return 1; /* tag characters (subdivision flags) */
  if (cp < 0 || cp > 0x10FFFF) return 0;
  int bc = utf8proc_get_property(cp)->boundclass;
  if (bc == UTF8PROC_BOUNDCLASS_EXTENDED_PICTOGRAPHIC || bc == UTF8PROC_BOUNDCLASS_E_ZWG ||
      bc == UTF8PROC_BOUNDCLASS_E_BASE || bc == UTF8PROC_BOUNDCLASS_E_BASE_GAZ ||
      bc == UTF8PROC_BOUNDCLASS_GLUE_AFTER_ZWJ) {
    /* Extended_Pictographic also holds symbols that are ordinary text: (c), (R) in Latin-1,
     * the letterlike symbols (TM) and the arrows. Those stay. */
    if (cp < 0x2000) return 0;
    if (cp >= 0x2100 && cp <= 0x21FF) return 0;
    return 1;
  }
  return 0;
}

static bool is_letter_or_mark(int32_t cp) {
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
      return true;
    default:
      return false;
  }
}

/* ============================================================================================
 * whitespace state shared by all segments of one text
 * ========================================================================================== */

typedef struct clean_state {
  twin_buf *out;
  size_t out_start;     /* where this text's output begins in out */
  bool pending_space;   /* a space/tab run was seen since the last visible character */
  int pending_newlines; /* newlines seen since the last visible character */
} clean_state;

static size_t trailing_newlines(const clean_state *st) {
  size_t t = 0;
  while (st->out->len - t > st->out_start && st->out->data[st->out->len - t - 1] == '\n') t++;
  return t;
}

/* Emits what is pending before a visible character (or a code block). */
static void flush_pending(clean_state *st, bool before_code) {
  bool empty = st->out->len == st->out_start;
  if (!empty) {
    int want = st->pending_newlines > 2 ? 2 : st->pending_newlines;
    if (before_code && want == 0) want = 1; /* a fence always starts on its own line */
    int have = (int)trailing_newlines(st);
    for (int i = have; i < want; i++) twin_buf_putc(st->out, '\n');
    if (want == 0 && st->pending_space && have == 0) twin_buf_putc(st->out, ' ');
  }
  st->pending_space = false;
  st->pending_newlines = 0;
}

/* ============================================================================================
 * prose
 * ========================================================================================== */

static int clean_prose(clean_state *st, const char *seg, size_t len, twin_err *err) {
  if (len == 0) return 0;
  utf8proc_uint8_t *nfkc = NULL;
  utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)seg, (utf8proc_ssize_t)len, &nfkc,
                                    UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (n < 0)
    return twin_err_set(err, n == UTF8PROC_ERROR_NOMEM ? TWIN_ENOMEM : TWIN_EINVAL,
                        "NFKC normalization failed: %s", utf8proc_errmsg(n));
  int32_t prev_kept = 0;   /* last code point written (0 at a break) */
  bool prev_emoji = false; /* the previous code point was dropped as an emoji */
  utf8proc_ssize_t i = 0;
  while (i < n) {
    int32_t cp;
    utf8proc_ssize_t step = utf8proc_iterate(nfkc + i, n - i, &cp);
    if (step <= 0) { /* cannot happen on utf8proc's own output; stop rather than loop */
      free(nfkc);
      return twin_err_set(err, TWIN_EINTERNAL, "NFKC output is not UTF-8 at byte %zd", i);
    }
    const utf8proc_uint8_t *here = nfkc + i;
    i += step;
    bool emoji = twin_clean_is_emoji(cp);
    if (cp == '\n' || cp == 0x85 || cp == 0x2028) {
      st->pending_newlines++;
      st->pending_space = false;
      prev_kept = 0;
    } else if (cp == 0x2029) {
      st->pending_newlines += 2;
      st->pending_space = false;
      prev_kept = 0;
    } else if (cp == '\t' || cp == '\v' || cp == '\f' ||
               utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS) {
      if (st->pending_newlines == 0) st->pending_space = true;
      prev_kept = 0;
    } else if (emoji) {
      /* dropped; a space stands for it so "ok🙂fine" does not become one word */
      if (st->pending_newlines == 0 && prev_kept) st->pending_space = true;
    } else if (cp == 0x200C || cp == 0x200D) {
      /* joiners stay only inside words of scripts that use them (between letters/marks) */
      int32_t next = 0;
      if (i < n) utf8proc_iterate(nfkc + i, n - i, &next);
      if (!prev_emoji && prev_kept && is_letter_or_mark(prev_kept) && next &&
          is_letter_or_mark(next) && !twin_clean_is_emoji(next)) {
        twin_buf_append(st->out, here, (size_t)step);
        prev_kept = cp;
      }
    } else {
      utf8proc_category_t cat = utf8proc_category(cp);
      if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cp == 0xFFFD) {
        /* control and format characters (soft hyphen, BOM, bidi marks...) go */
      } else {
        if (st->pending_space || st->pending_newlines) flush_pending(st, false);
        twin_buf_append(st->out, here, (size_t)step);
        prev_kept = cp;
      }
    }
    prev_emoji = emoji;
  }
  free(nfkc);
  if (st->out->failed) return twin_err_set(err, TWIN_ENOMEM, "out of memory cleaning text");
  return 0;
}

/* ============================================================================================
 * fences and the driver
 * ========================================================================================== */

/* A fence line: up to 3 spaces, then 3+ backticks or tildes. Sets *ch and *count. */
static bool fence_open(const char *line, size_t len, char *ch, size_t *count) {
  size_t i = 0;
  while (i < len && i < 3 && line[i] == ' ') i++;
  if (i >= len || (line[i] != '`' && line[i] != '~')) return false;
  char c = line[i];
  size_t k = 0;
  while (i + k < len && line[i + k] == c) k++;
  if (k < 3) return false;
  if (c == '`' && memchr(line + i + k, '`', len - i - k)) return false; /* inline code */
  *ch = c;
  *count = k;
  return true;
}

static bool fence_close(const char *line, size_t len, char ch, size_t count) {
  size_t i = 0;
  while (i < len && i < 3 && line[i] == ' ') i++;
  size_t k = 0;
  while (i + k < len && line[i + k] == ch) k++;
  if (k < count) return false;
  for (size_t j = i + k; j < len; j++)
    if (line[j] != ' ' && line[j] != '\t') return false;
  return true;
}

/* CR LF and lone CR -> LF; a leading UTF-8 BOM is dropped. */
static int normalize_line_endings(const char *text, size_t len, twin_buf *norm, twin_err *err) {
  size_t i = 0;
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) i = 3;
  if (twin_buf_reserve(norm, len - i + 1))
    return twin_err_set(err, TWIN_ENOMEM, "out of memory cleaning %zu bytes", len);
  for (; i < len; i++) {
    if (text[i] == '\r') {
      twin_buf_putc(norm, '\n');
      if (i + 1 < len && text[i + 1] == '\n') i++;
    } else {
      twin_buf_putc(norm, text[i]);
    }
  }
  return 0;
}

int twin_clean_text(const char *text, size_t len, twin_doc_type type, twin_buf *out, twin_err *err) {
  if (!text && len) return twin_err_set(err, TWIN_EINVAL, "text is NULL");
  size_t bad = twin_utf8_validate(text ? text : "", len);
  if (bad != len) return twin_err_set(err, TWIN_EINVAL, "text is not valid UTF-8 at byte %zu", bad);
  twin_buf norm;
  twin_buf_init(&norm);
  int rc = normalize_line_endings(text, len, &norm, err);
  if (rc) {
    twin_buf_free(&norm);
    return rc;
  }
  if (type == TWIN_DOC_CODE) {
    rc = twin_buf_append(out, norm.data ? norm.data : "", norm.len);
    twin_buf_free(&norm);
    return rc ? twin_err_set(err, TWIN_ENOMEM, "out of memory cleaning code") : 0;
  }
  clean_state st = {.out = out, .out_start = out->len};
  const char *s = norm.data ? norm.data : "";
  size_t n = norm.len, pos = 0, prose_start = 0;
  while (pos < n && !rc) {
    const char *nl = memchr(s + pos, '\n', n - pos);
    size_t eol = nl ? (size_t)(nl - s) : n, next = nl ? eol + 1 : n;
    char ch;
    size_t count;
    if (!fence_open(s + pos, eol - pos, &ch, &count)) {
      pos = next;
      continue;
    }
    rc = clean_prose(&st, s + prose_start, pos - prose_start, err);
    if (rc) break;
    size_t q = next, end = n; /* an unclosed fence runs to the end */
    while (q < n) {
      const char *nl2 = memchr(s + q, '\n', n - q);
      size_t eol2 = nl2 ? (size_t)(nl2 - s) : n, next2 = nl2 ? eol2 + 1 : n;
      if (fence_close(s + q, eol2 - q, ch, count)) {
        end = next2;
        break;
      }
      q = next2;
    }
    flush_pending(&st, true);
    twin_buf_append(out, s + pos, end - pos);
    /* the newline that ends the closing fence counts toward the break after the block */
    if (end > pos && s[end - 1] == '\n') st.pending_newlines = 1;
    pos = prose_start = end;
  }
  if (!rc) rc = clean_prose(&st, s + prose_start, n - prose_start, err);
  twin_buf_free(&norm);
  if (!rc && out->failed) rc = twin_err_set(err, TWIN_ENOMEM, "out of memory cleaning text");
  return rc;
}
