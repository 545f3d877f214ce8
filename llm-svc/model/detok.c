/* llm-svc/model/detok.c — the incremental detokenizer: each id is decoded with the shared
 * decoder state machine of tokenizer_decode.c into a pending byte buffer, and the longest
 * prefix of whole UTF-8 characters is handed out; an unfinished character waits for the next
 * token, a byte that cannot start or continue one becomes U+FFFD. */
#include <stdlib.h>
#include <string.h>

#include "llm-svc/model/detok.h"
#include "llm-svc/model/tokenizer_internal.h"

struct twin_detok {
  const twin_tokenizer *tok; /* borrowed */
  int flags;
  tok_decode_state state;
  tok_buf pending;           /* decoded bytes not yet handed out */
  tok_buf out;               /* the text handed out by the last call */
};

int twin_detok_create(twin_detok **out, const twin_tokenizer *tok, int flags, twin_err *err) {
  *out = NULL;
  if (!tok) return twin_err_set(err, TWIN_EINVAL, "detok: no tokenizer");
  twin_detok *d = calloc(1, sizeof *d);
  if (!d) return twin_err_set(err, TWIN_ENOMEM, "detok: out of memory");
  d->tok = tok;
  d->flags = flags;
  tok_decode_state_init(tok, &d->state);
  *out = d;
  return 0;
}

void twin_detok_destroy(twin_detok *d) {
  if (!d) return;
  tok_decode_state_free(&d->state);
  tok_buf_free(&d->pending);
  tok_buf_free(&d->out);
  free(d);
}

void twin_detok_reset(twin_detok *d) {
  tok_decode_state_free(&d->state);
  tok_decode_state_init(d->tok, &d->state);
  d->pending.len = 0;
  d->out.len = 0;
}

int twin_detok_prime(twin_detok *d, const int32_t *ids, size_t n, twin_err *err) {
  tok_buf scratch = {0};
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) rc = tok_decode_one(d->tok, &d->state, ids[i], d->flags, &scratch, err);
  tok_buf_free(&scratch);
  d->pending.len = 0;
  return rc;
}

/* Bytes a character starting with lead byte b needs (0: b cannot start one). */
static int utf8_need(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

/* Whether byte c may follow lead byte b as the second byte of a character. */
static int second_ok(unsigned char b, unsigned char c) {
  if ((c & 0xC0) != 0x80) return 0;
  if (b == 0xE0) return c >= 0xA0;
  if (b == 0xED) return c <= 0x9F;
  if (b == 0xF0) return c >= 0x90;
  if (b == 0xF4) return c <= 0x8F;
  return 1;
}

/* Moves whole characters from pending to out; at_end: nothing more will come. */
static int drain(twin_detok *d, int at_end) {
  const unsigned char *p = (const unsigned char *)d->pending.data;
  size_t n = d->pending.len, i = 0;
  d->out.len = 0;
  if (tok_buf_reserve(&d->out, n + 8)) return TWIN_ENOMEM;
  while (i < n) {
    size_t valid = tok_utf8_valid_prefix((const char *)p + i, n - i);
    if (valid) {
      tok_buf_append(&d->out, p + i, valid);
      i += valid;
      continue;
    }
    /* p[i] starts something that is not a whole valid character. */
    int need = utf8_need(p[i]);
    size_t have = 1;
    while (need > 1 && have < (size_t)need && i + have < n &&
           (have == 1 ? second_ok(p[i], p[i + have]) : (p[i + have] & 0xC0) == 0x80))
      have++;
    if (need > 1 && i + have == n && !at_end) break; /* unfinished: wait for more bytes */
    if (tok_buf_append(&d->out, "\xEF\xBF\xBD", 3)) return TWIN_ENOMEM;
    i += have;
  }
  if (i > 0 && i < n) memmove(d->pending.data, d->pending.data + i, n - i);
  d->pending.len = n - i;
  return 0;
}

int twin_detok_push(twin_detok *d, int32_t id, const char **text, size_t *len, twin_err *err) {
  *text = "";
  *len = 0;
  int rc = tok_decode_one(d->tok, &d->state, id, d->flags, &d->pending, err);
  if (rc) return rc;
  if (drain(d, 0)) return twin_err_set(err, TWIN_ENOMEM, "detok: out of memory");
  *text = d->out.data ? d->out.data : "";
  *len = d->out.len;
  return 0;
}

int twin_detok_flush(twin_detok *d, const char **text, size_t *len, twin_err *err) {
  *text = "";
  *len = 0;
  if (drain(d, 1)) return twin_err_set(err, TWIN_ENOMEM, "detok: out of memory");
  *text = d->out.data ? d->out.data : "";
  *len = d->out.len;
  /* reset the decoder state but keep the text just handed out */
  tok_decode_state_free(&d->state);
  tok_decode_state_init(d->tok, &d->state);
  d->pending.len = 0;
  return 0;
}
