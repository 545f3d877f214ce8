/* llm-svc/engine/seq_text.c — detokenizer then stop-string matcher, per sequence. */
#include "llm-svc/engine/seq_text.h"

#include <stdlib.h>

#include "llm-svc/engine/stop_strings.h"
#include "llm-svc/model/detok.h"

struct twin_seq_text {
  twin_detok *detok;          /* NULL without a tokenizer */
  twin_stop_matcher *stops;
};

/* Enough prompt context for any tokenizer's continuation rules. */
#define PRIME_TOKENS 8

int twin_seq_text_create(const twin_tokenizer *tok, const int32_t *prompt, int n_prompt,
                         const char *const *stops, int n_stops, twin_seq_text **out, twin_err *err) {
  *out = NULL;
  twin_seq_text *t = calloc(1, sizeof *t);
  if (!t) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  int rc = 0;
  if (tok) {
    rc = twin_detok_create(&t->detok, tok, TWIN_DECODE_SKIP_SPECIAL, err);
    int k = n_prompt < PRIME_TOKENS ? n_prompt : PRIME_TOKENS;
    if (!rc && k > 0) rc = twin_detok_prime(t->detok, prompt + n_prompt - k, (size_t)k, err);
  }
  if (!rc) rc = twin_stop_matcher_create(stops, n_stops, &t->stops, err);
  if (rc) {
    twin_seq_text_destroy(t);
    return rc;
  }
  *out = t;
  return 0;
}

void twin_seq_text_destroy(twin_seq_text *t) {
  if (!t) return;
  twin_detok_destroy(t->detok);
  twin_stop_matcher_destroy(t->stops);
  free(t);
}

int twin_seq_text_push(twin_seq_text *t, int32_t token, twin_buf *out, twin_err *err) {
  if (!t->detok) return 0;
  const char *text;
  size_t len;
  int rc = twin_detok_push(t->detok, token, &text, &len, err);
  if (rc) return rc;
  twin_stop_output so;
  rc = twin_stop_matcher_feed(t->stops, text, len, &so, err);
  if (rc) return rc;
  twin_buf_append(out, so.text, so.len);
  return so.stopped ? 1 : 0;
}

void twin_seq_text_flush(twin_seq_text *t, twin_buf *out) {
  if (!t->detok) return;
  const char *text = NULL;
  size_t len = 0;
  twin_stop_output so;
  if (twin_detok_flush(t->detok, &text, &len, NULL) == 0 && len) {
    if (twin_stop_matcher_feed(t->stops, text, len, &so, NULL) == 0) twin_buf_append(out, so.text, so.len);
    if (so.stopped) return;
  }
  twin_stop_matcher_flush(t->stops, &so);
  twin_buf_append(out, so.text, so.len);
}
