/* llm-svc/model/tokenizer_pretok.c — normalizers (NFC/NFD/NFKC/NFKD through utf8proc,
 * Lowercase, Prepend, Replace, Strip) and pre-tokenizers (ByteLevel, Split with a PCRE2 regex
 * or a literal, Metaspace, Digits), with the splitting rules of the Python `tokenizers`
 * package (Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous, invert).
 * Pre-tokenizers run depth first: each piece one step makes goes through the next steps and
 * then to BPE, so no list of pieces is ever built. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "llm-svc/model/tokenizer_internal.h"

/* ============================================================================================
 * Byte-level alphabet: the GPT-2 map of the 256 bytes to printable characters
 * ========================================================================================== */

void tok_bytelevel_tables(uint32_t byte_to_cp[256]) {
  /* Printable bytes keep their code point; the others, in byte order, take 256, 257, ... */
  uint32_t next = 256;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    byte_to_cp[b] = printable ? (uint32_t)b : next++;
  }
}

/* ============================================================================================
 * Normalizers
 * ========================================================================================== */

static int replace_all(const tok_normalizer *nm, tok_encode_ctx *ctx, const char *s, size_t n,
                       tok_buf *out, twin_err *err) {
  out->len = 0;
  size_t pos = 0;
  if (tok_buf_reserve(out, n)) return TWIN_ENOMEM;
  if (!nm->re.code) {
    if (nm->text_len == 0) return tok_buf_append(out, s, n);
    while (pos < n) {
      const char *hit = n - pos >= nm->text_len ? memmem(s + pos, n - pos, nm->text, nm->text_len) : NULL;
      if (!hit) break;
      size_t at = (size_t)(hit - s);
      if (tok_buf_append(out, s + pos, at - pos) || tok_buf_append(out, nm->content, nm->content_len))
        return TWIN_ENOMEM;
      pos = at + nm->text_len;
    }
    return tok_buf_append(out, s + pos, n - pos);
  }
  size_t search = 0;
  while (search <= n) {
    size_t ms, me;
    int rc = tok_regex_find(&nm->re, &ctx->match, s, n, search, &ms, &me, err);
    if (rc < 0) return rc;
    if (rc == 0) break;
    if (tok_buf_append(out, s + pos, ms - pos) || tok_buf_append(out, nm->content, nm->content_len))
      return TWIN_ENOMEM;
    pos = me;
    search = me;
    if (me == ms) {
      if (me >= n) break;
      search = me + (size_t)tok_utf8_len((unsigned char)s[me]);
    }
  }
  return tok_buf_append(out, s + pos, n - pos);
}

static int lowercase(const char *s, size_t n, tok_buf *out) {
  out->len = 0;
  if (tok_buf_reserve(out, n)) return TWIN_ENOMEM;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = tok_utf8_decode(s + i, n - i, &cp);
    char enc[8];
    int m;
    if (cp == 0x130) { /* 'İ' lowercases to "i" + U+0307, the one unconditional 1->2 mapping */
      memcpy(enc, "i\xCC\x87", 3);
      m = 3;
    } else {
      m = tok_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc);
    }
    if (tok_buf_append(out, enc, (size_t)m)) return TWIN_ENOMEM;
    i += (size_t)len;
  }
  return 0;
}

static int strip(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out) {
  size_t start = 0, end = n;
  if (nm->strip_left) {
    while (start < end) {
      uint32_t cp;
      int len = tok_utf8_decode(s + start, end - start, &cp);
      if (!tok_is_unicode_space(cp)) break;
      start += (size_t)len;
    }
  }
  if (nm->strip_right) {
    while (end > start) {
      size_t k = end - 1;
      while (k > start && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
      uint32_t cp;
      tok_utf8_decode(s + k, end - k, &cp);
      if (!tok_is_unicode_space(cp)) break;
      end = k;
    }
  }
  out->len = 0;
  return tok_buf_append(out, s + start, end - start);
}

static int unicode_form(tok_norm_kind kind, const char *s, size_t n, tok_buf *out, twin_err *err) {
  int opts = UTF8PROC_STABLE;
  switch (kind) {
    case TOK_NORM_NFC: opts |= UTF8PROC_COMPOSE; break;
    case TOK_NORM_NFD: opts |= UTF8PROC_DECOMPOSE; break;
    case TOK_NORM_NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    default: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  out->len = 0;
  if (n == 0) return tok_buf_append(out, "", 0);
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                    (utf8proc_option_t)opts);
  if (m < 0) {
    free(dst);
    return twin_err_set(err, TWIN_EINVAL, "normalizer: %s", utf8proc_errmsg(m));
  }
  int rc = tok_buf_append(out, dst, (size_t)m);
  free(dst);
  return rc;
}

int tok_normalize(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *s, size_t n,
                  const char **res, size_t *res_len, twin_err *err) {
  const char *cur = s;
  size_t cur_len = n;
  for (int i = 0; i < t->n_norms; i++) {
    const tok_normalizer *nm = &t->norms[i];
    tok_buf *out = (cur == ctx->norm_a.data) ? &ctx->norm_b : &ctx->norm_a;
    int rc = 0;
    switch (nm->kind) {
      case TOK_NORM_NFC: case TOK_NORM_NFD: case TOK_NORM_NFKC: case TOK_NORM_NFKD:
        rc = unicode_form(nm->kind, cur, cur_len, out, err);
        break;
      case TOK_NORM_LOWERCASE:
        rc = lowercase(cur, cur_len, out);
        break;
      case TOK_NORM_PREPEND:
        out->len = 0;
        if (cur_len) rc = tok_buf_append(out, nm->text, nm->text_len);
        if (!rc) rc = tok_buf_append(out, cur, cur_len);
        break;
      case TOK_NORM_REPLACE:
        rc = replace_all(nm, ctx, cur, cur_len, out, err);
        break;
      case TOK_NORM_STRIP:
        rc = strip(nm, cur, cur_len, out);
        break;
    }
    if (rc == TWIN_ENOMEM) return twin_err_set(err, TWIN_ENOMEM, "normalize: out of memory");
    if (rc) return rc;
    cur = out->data;
    cur_len = out->len;
  }
  *res = cur;
  *res_len = cur_len;
  return 0;
}

void tok_normalizer_free(tok_normalizer *nm) {
  free(nm->text);
  free(nm->content);
  tok_regex_free(&nm->re);
  memset(nm, 0, sizeof *nm);
}

/* ============================================================================================
 * Segments: a piece cut into (start, end, is_match) spans that cover it
 * ========================================================================================== */

static int seg_push(tok_segs *v, size_t start, size_t end, int is_match) {
  if (v->len == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    tok_seg *p = realloc(v->data, cap * sizeof *p);
    if (!p) return TWIN_ENOMEM;
    v->data = p;
    v->cap = cap;
  }
  v->data[v->len++] = (tok_seg){start, end, is_match};
  return 0;
}

static int segs_by_regex(const tok_regex *re, tok_encode_ctx *ctx, tok_segs *v, const char *s,
                         size_t n, twin_err *err) {
  size_t prev = 0, search = 0;
  while (search <= n) {
    size_t ms, me;
    int rc = tok_regex_find(re, &ctx->match, s, n, search, &ms, &me, err);
    if (rc < 0) return rc;
    if (rc == 0) break;
    if (prev != ms && seg_push(v, prev, ms, 0)) return TWIN_ENOMEM;
    if (seg_push(v, ms, me, 1)) return TWIN_ENOMEM;
    prev = me;
    search = me;
    if (me == ms) {
      if (me >= n) break;
      search = me + (size_t)tok_utf8_len((unsigned char)s[me]);
    }
  }
  if (prev != n && seg_push(v, prev, n, 0)) return TWIN_ENOMEM;
  return 0;
}

static int segs_by_literal(const char *lit, size_t lit_len, tok_segs *v, const char *s, size_t n) {
  size_t prev = 0, pos = 0;
  if (lit_len) {
    while (pos < n) {
      const char *hit = n - pos >= lit_len ? memmem(s + pos, n - pos, lit, lit_len) : NULL;
      if (!hit) break;
      size_t at = (size_t)(hit - s);
      if (prev != at && seg_push(v, prev, at, 0)) return TWIN_ENOMEM;
      if (seg_push(v, at, at + lit_len, 1)) return TWIN_ENOMEM;
      prev = pos = at + lit_len;
    }
  }
  if (prev != n && seg_push(v, prev, n, 0)) return TWIN_ENOMEM;
  return 0;
}

static int segs_by_numeric(tok_segs *v, const char *s, size_t n) {
  size_t prev = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = tok_utf8_decode(s + i, n - i, &cp);
    if (tok_is_unicode_numeric(cp)) {
      if (prev < i && seg_push(v, prev, i, 0)) return TWIN_ENOMEM;
      if (seg_push(v, i, i + (size_t)len, 1)) return TWIN_ENOMEM;
      prev = i + (size_t)len;
    }
    i += (size_t)len;
  }
  if (prev < n && seg_push(v, prev, n, 0)) return TWIN_ENOMEM;
  return 0;
}

/* Applies a split behaviour in place: the segments become the pieces to keep. */
static void apply_behavior(tok_segs *v, tok_split_behavior behavior) {
  size_t w = 0;
  int previous_match = 0;
  switch (behavior) {
    case TOK_SPLIT_ISOLATED:
      return;
    case TOK_SPLIT_REMOVED:
      for (size_t r = 0; r < v->len; r++)
        if (!v->data[r].is_match) v->data[w++] = v->data[r];
      break;
    case TOK_SPLIT_CONTIGUOUS:
      for (size_t r = 0; r < v->len; r++) {
        tok_seg s = v->data[r];
        if (s.is_match == previous_match && w > 0) v->data[w - 1].end = s.end;
        else v->data[w++] = s;
        previous_match = s.is_match;
      }
      break;
    case TOK_SPLIT_MERGED_WITH_PREVIOUS:
      for (size_t r = 0; r < v->len; r++) {
        tok_seg s = v->data[r];
        if (s.is_match && !previous_match && w > 0) v->data[w - 1].end = s.end;
        else v->data[w++] = s;
        previous_match = s.is_match;
      }
      break;
    case TOK_SPLIT_MERGED_WITH_NEXT:
      for (size_t r = 0; r < v->len;) {
        tok_seg s = v->data[r];
        if (s.is_match && r + 1 < v->len && !v->data[r + 1].is_match) {
          s.end = v->data[r + 1].end;
          r += 2;
        } else {
          r++;
        }
        v->data[w++] = s;
      }
      break;
  }
  v->len = w;
}

/* ============================================================================================
 * Pre-tokenizers
 * ========================================================================================== */

static int pretok_step(const twin_tokenizer *t, tok_encode_ctx *ctx, int k, const char *s, size_t n,
                       int at_origin, twin_err *err);

/* Sends each non-empty segment of ctx->segs[k] (over s) to step k + 1. */
static int forward_segments(const twin_tokenizer *t, tok_encode_ctx *ctx, int k, const char *s,
                            int at_origin, twin_err *err) {
  tok_segs *v = &ctx->segs[k];
  for (size_t i = 0; i < v->len; i++) {
    tok_seg sg = v->data[i];
    if (sg.end == sg.start) continue;
    int rc = pretok_step(t, ctx, k + 1, s + sg.start, sg.end - sg.start, at_origin && sg.start == 0, err);
    if (rc) return rc;
  }
  return 0;
}

static int oom(twin_err *err) { return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory"); }

static int byte_level(const twin_tokenizer *t, tok_encode_ctx *ctx, int k, const char *s, size_t n,
                      int at_origin, twin_err *err) {
  const tok_pretok *p = &t->pretoks[k];
  tok_buf *a = &ctx->level_a[k], *b = &ctx->level_b[k];
  if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
    a->len = 0;
    if (tok_buf_append(a, " ", 1) || tok_buf_append(a, s, n)) return oom(err);
    s = a->data;
    n = a->len;
  }
  tok_segs *v = &ctx->segs[k];
  v->len = 0;
  if (p->use_regex) {
    int rc = segs_by_regex(&p->re, ctx, v, s, n, err);
    if (rc) return rc == TWIN_ENOMEM ? oom(err) : rc;
  } else if (seg_push(v, 0, n, 0)) {
    return oom(err);
  }
  const uint32_t *map = t->byte_to_cp;
  for (size_t i = 0; i < v->len; i++) {
    tok_seg sg = v->data[i];
    if (sg.end == sg.start) continue;
    b->len = 0;
    if (tok_buf_reserve(b, 2 * (sg.end - sg.start))) return oom(err);
    for (size_t j = sg.start; j < sg.end; j++) {
      char enc[4];
      int m = tok_utf8_encode(map[(unsigned char)s[j]], enc);
      memcpy(b->data + b->len, enc, (size_t)m);
      b->len += (size_t)m;
    }
    int rc = pretok_step(t, ctx, k + 1, b->data, b->len, at_origin && sg.start == 0, err);
    if (rc) return rc;
  }
  return 0;
}

static int metaspace(const twin_tokenizer *t, tok_encode_ctx *ctx, int k, const char *s, size_t n,
                     int at_origin, twin_err *err) {
  const tok_pretok *p = &t->pretoks[k];
  tok_buf *a = &ctx->level_a[k];
  a->len = 0;
  int starts_with_rep = 0;
  /* The replacement goes in first when asked, unless the text (spaces already replaced)
   * starts with it. */
  starts_with_rep = (n > 0 && s[0] == ' ') ||
                    (n >= p->replacement_len && memcmp(s, p->replacement, p->replacement_len) == 0);
  int prepend = !starts_with_rep && (p->prepend_scheme == TOK_PREPEND_ALWAYS ||
                                     (p->prepend_scheme == TOK_PREPEND_FIRST && at_origin));
  if (tok_buf_reserve(a, n * p->replacement_len + p->replacement_len)) return oom(err);
  if (prepend) tok_buf_append(a, p->replacement, p->replacement_len);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == ' ') tok_buf_append(a, p->replacement, p->replacement_len);
    else tok_buf_append(a, s + i, 1);
  }
  tok_segs *v = &ctx->segs[k];
  v->len = 0;
  if (p->split) {
    if (segs_by_literal(p->replacement, p->replacement_len, v, a->data, a->len)) return oom(err);
    apply_behavior(v, TOK_SPLIT_MERGED_WITH_NEXT);
  } else if (seg_push(v, 0, a->len, 0)) {
    return oom(err);
  }
  return forward_segments(t, ctx, k, a->data, at_origin, err);
}

static int pretok_step(const twin_tokenizer *t, tok_encode_ctx *ctx, int k, const char *s, size_t n,
                       int at_origin, twin_err *err) {
  if (k == t->n_pretoks) return tok_bpe_word(t, ctx, s, n, err);
  const tok_pretok *p = &t->pretoks[k];
  tok_segs *v = &ctx->segs[k];
  int rc;
  switch (p->kind) {
    case TOK_PRE_BYTELEVEL:
      return byte_level(t, ctx, k, s, n, at_origin, err);
    case TOK_PRE_METASPACE:
      return metaspace(t, ctx, k, s, n, at_origin, err);
    case TOK_PRE_SPLIT:
      v->len = 0;
      rc = p->re.code ? segs_by_regex(&p->re, ctx, v, s, n, err)
                      : segs_by_literal(p->literal, p->literal_len, v, s, n);
      if (rc) return rc == TWIN_ENOMEM ? oom(err) : rc;
      if (p->invert)
        for (size_t i = 0; i < v->len; i++) v->data[i].is_match = !v->data[i].is_match;
      apply_behavior(v, p->behavior);
      return forward_segments(t, ctx, k, s, at_origin, err);
    case TOK_PRE_DIGITS:
      v->len = 0;
      if (segs_by_numeric(v, s, n)) return oom(err);
      apply_behavior(v, p->individual_digits ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS);
      return forward_segments(t, ctx, k, s, at_origin, err);
  }
  return twin_err_set(err, TWIN_EINTERNAL, "pre-tokenizer %d has unknown kind %d", k, (int)p->kind);
}

int tok_pretokenize(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *s, size_t n,
                    int at_origin, twin_err *err) {
  if (n == 0) return 0;
  return pretok_step(t, ctx, 0, s, n, at_origin, err);
}

void tok_pretok_free(tok_pretok *p) {
  tok_regex_free(&p->re);
  free(p->literal);
  memset(p, 0, sizeof *p);
}
