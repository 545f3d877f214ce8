/* llm-svc/model/tokenizer_decode.c — token ids -> bytes through the decoder section of
 * tokenizer.json (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, or none), one token
 * at a time. Every decoder the model files use is prefix-stable (decoding one more token only
 * appends bytes), so one state machine serves both the full decode and the incremental
 * detokenizer: Metaspace and a Strip after Fuse only touch the start of the text, which the
 * state remembers. Byte-fallback and byte-level tokens give raw bytes; the incremental
 * detokenizer is the place that holds back incomplete UTF-8. */
#include <stdlib.h>
#include <string.h>

#include "llm-svc/model/tokenizer_internal.h"

void tok_decode_state_init(const twin_tokenizer *t, tok_decode_state *st) {
  memset(st, 0, sizeof *st);
  int fused = 0;
  for (int i = 0; i < t->n_decoders; i++) {
    const tok_decoder *d = &t->decoders[i];
    if (d->kind == TOK_DEC_FUSE) fused = 1;
    if (d->kind == TOK_DEC_STRIP && fused) {
      st->strip_budget = d->strip_start;
      break;
    }
  }
}

void tok_decode_state_free(tok_decode_state *st) {
  tok_buf_free(&st->a);
  tok_buf_free(&st->b);
}

void tok_decoder_free(tok_decoder *d) {
  free(d->pattern);
  free(d->content);
  memset(d, 0, sizeof *d);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The scratch buffer that cur does not live in. */
static tok_buf *other(tok_decode_state *st, const char *cur) {
  return (st->a.data && cur == st->a.data) ? &st->b : &st->a;
}

int tok_decode_one(const twin_tokenizer *t, tok_decode_state *st, int32_t id, int flags,
                   tok_buf *out, twin_err *err) {
  if (id < 0 || id >= t->vocab_size || t->piece_off[id] == UINT32_MAX) return 0;
  if ((flags & TWIN_DECODE_SKIP_SPECIAL) && (t->id_flags[id] & TOK_ID_SPECIAL)) return 0;
  const char *cur = t->strings.data + t->piece_off[id];
  size_t n = t->piece_len[id];
  if (!t->has_decoder) {
    /* No decoder: the Python package joins the token strings with spaces. */
    if ((st->token_index++ > 0 && tok_buf_append(out, " ", 1)) || tok_buf_append(out, cur, n))
      return twin_err_set(err, TWIN_ENOMEM, "decode: out of memory");
    return 0;
  }
  int fused = 0;
  for (int i = 0; i < t->n_decoders; i++) {
    const tok_decoder *d = &t->decoders[i];
    tok_buf *o = NULL;
    switch (d->kind) {
      case TOK_DEC_FUSE:
        fused = 1;
        break;
      case TOK_DEC_REPLACE: {
        if (!d->pattern_len || n < d->pattern_len || !memmem(cur, n, d->pattern, d->pattern_len)) break;
        o = other(st, cur);
        o->len = 0;
        size_t pos = 0;
        for (;;) {
          const char *hit = n - pos >= d->pattern_len ? memmem(cur + pos, n - pos, d->pattern, d->pattern_len) : NULL;
          if (!hit) break;
          size_t at = (size_t)(hit - cur);
          if (tok_buf_append(o, cur + pos, at - pos) || tok_buf_append(o, d->content, d->content_len)) goto nomem;
          pos = at + d->pattern_len;
        }
        if (tok_buf_append(o, cur + pos, n - pos)) goto nomem;
        break;
      }
      case TOK_DEC_BYTEFALLBACK: {
        if (n != 6 || memcmp(cur, "<0x", 3) != 0 || cur[5] != '>') break;
        int hi = hexval(cur[3]), lo = hexval(cur[4]);
        if (hi < 0 || lo < 0) break;
        char byte = (char)(hi * 16 + lo);
        o = other(st, cur);
        o->len = 0;
        if (tok_buf_append(o, &byte, 1)) goto nomem;
        break;
      }
      case TOK_DEC_BYTELEVEL: {
        /* All characters in the byte-level alphabet -> their bytes; otherwise the token's own
         * UTF-8 (an added token such as "<｜end▁of▁sentence｜>"). */
        o = other(st, cur);
        o->len = 0;
        if (tok_buf_reserve(o, n)) goto nomem;
        size_t j = 0;
        for (; j < n;) {
          uint32_t cp;
          int len = tok_utf8_decode(cur + j, n - j, &cp);
          int b = cp < 324 ? t->cp_to_byte[cp] : -1;
          if (b < 0 || (len == 1 && ((unsigned char)cur[j] & 0x80))) break;
          o->data[o->len++] = (char)b;
          j += (size_t)len;
        }
        if (j < n) o = NULL; /* keep cur as it is */
        break;
      }
      case TOK_DEC_METASPACE: {
        if (n < d->replacement_len || !memmem(cur, n, d->replacement, d->replacement_len)) break;
        int drop = st->token_index == 0 && d->prepend_scheme != TOK_PREPEND_NEVER;
        o = other(st, cur);
        o->len = 0;
        for (size_t j = 0; j < n;) {
          if (n - j >= d->replacement_len && memcmp(cur + j, d->replacement, d->replacement_len) == 0) {
            if (!drop && tok_buf_append(o, " ", 1)) goto nomem;
            j += d->replacement_len;
          } else {
            if (tok_buf_append(o, cur + j, 1)) goto nomem;
            j++;
          }
        }
        if (!o->data && tok_buf_append(o, "", 0)) goto nomem;
        break;
      }
      case TOK_DEC_STRIP: {
        size_t start = 0, end = n;
        const char *c = d->strip_utf8;
        size_t cl = d->strip_utf8_len;
        if (fused) {
          if (st->strip_done) break;
          while (st->strip_budget > 0 && end - start >= cl && memcmp(cur + start, c, cl) == 0) {
            start += cl;
            st->strip_budget--;
          }
          if (start < end || st->strip_budget == 0) st->strip_done = 1;
        } else {
          for (int k = 0; k < d->strip_start && end - start >= cl && memcmp(cur + start, c, cl) == 0; k++)
            start += cl;
          for (int k = 0; k < d->strip_stop && end - start >= cl && memcmp(cur + end - cl, c, cl) == 0; k++)
            end -= cl;
        }
        if (start == 0 && end == n) break;
        o = other(st, cur);
        o->len = 0;
        if (tok_buf_append(o, cur + start, end - start)) goto nomem;
        break;
      }
    }
    if (o) {
      cur = o->data;
      n = o->len;
    }
  }
  st->token_index++;
  if (tok_buf_append(out, cur, n)) goto nomem;
  return 0;
nomem:
  return twin_err_set(err, TWIN_ENOMEM, "decode: out of memory");
}
