/* llm-svc/engine/stop_strings.c — the incremental stop-string matcher (see stop_strings.h).
 * The matcher keeps the text it has not emitted yet (the held suffix plus the new delta),
 * searches it for every stop string, and otherwise emits all but the longest suffix that is a
 * proper prefix of some stop string or an unfinished UTF-8 character. The held text is never
 * longer than the longest stop string plus 3 bytes, so each feed costs O(stops x stop length)
 * on top of the delta's own length. */
#include "llm-svc/engine/stop_strings.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct twin_stop_matcher {
  int n_stops;
  char **stops;       /* [n_stops] owned copies */
  size_t *stop_len;   /* [n_stops] */
  char *held;         /* [held_cap] text not emitted yet */
  size_t held_len, held_cap;
  char *emit;         /* [emit_cap] the text handed out by the last call */
  size_t emit_cap;
  int stopped;
  int stop_index;
};

/* ==== create / destroy ===================================================================== */

static int utf8_valid(const char *s, size_t len, size_t *bad_at) {
  const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
  size_t i = 0;
  while (i < len) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
    if (n <= 0) {
      *bad_at = i;
      return 0;
    }
    i += (size_t)n;
  }
  return 1;
}

int twin_stop_matcher_create(const char *const *stops, int n_stops, twin_stop_matcher **out,
                             twin_err *err) {
  *out = NULL;
  if (n_stops < 0 || n_stops > TWIN_STOP_MAX_STRINGS)
    return twin_err_set(err, TWIN_EINVAL, "stop: %d stop strings given, at most %d allowed",
                        n_stops, TWIN_STOP_MAX_STRINGS);
  for (int i = 0; i < n_stops; i++) {
    if (!stops[i] || !stops[i][0])
      return twin_err_set(err, TWIN_EINVAL, "stop[%d] is empty", i);
    size_t len = strlen(stops[i]), bad_at = 0;
    if (len > TWIN_STOP_MAX_BYTES)
      return twin_err_set(err, TWIN_EINVAL, "stop[%d] is %zu bytes long, at most %d allowed", i,
                          len, TWIN_STOP_MAX_BYTES);
    if (!utf8_valid(stops[i], len, &bad_at))
      return twin_err_set(err, TWIN_EINVAL, "stop[%d] is not valid UTF-8 (byte %zu)", i, bad_at);
  }
  twin_stop_matcher *m = calloc(1, sizeof *m);
  if (!m) return twin_err_set(err, TWIN_ENOMEM, "stop: out of memory");
  m->stop_index = -1;
  if (n_stops > 0) {
    m->stops = calloc((size_t)n_stops, sizeof *m->stops);
    m->stop_len = calloc((size_t)n_stops, sizeof *m->stop_len);
    if (!m->stops || !m->stop_len) goto oom;
    for (int i = 0; i < n_stops; i++) {
      m->stop_len[i] = strlen(stops[i]);
      m->stops[i] = malloc(m->stop_len[i] + 1);
      if (!m->stops[i]) {
        m->n_stops = i;
        goto oom;
      }
      memcpy(m->stops[i], stops[i], m->stop_len[i] + 1);
    }
    m->n_stops = n_stops;
  }
  *out = m;
  return TWIN_OK;
oom:
  twin_stop_matcher_destroy(m);
  return twin_err_set(err, TWIN_ENOMEM, "stop: out of memory copying stop strings");
}

void twin_stop_matcher_destroy(twin_stop_matcher *m) {
  if (!m) return;
  for (int i = 0; i < m->n_stops; i++) free(m->stops[i]);
  free(m->stops);
  free(m->stop_len);
  free(m->held);
  free(m->emit);
  free(m);
}

void twin_stop_matcher_reset(twin_stop_matcher *m) {
  m->held_len = 0;
  m->stopped = 0;
  m->stop_index = -1;
}

size_t twin_stop_matcher_held(const twin_stop_matcher *m) { return m->held_len; }

/* ==== helpers ============================================================================== */

static int ensure_capacity(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return TWIN_OK;
  size_t new_cap = *cap ? *cap : 64;
  while (new_cap < need) {
    if (new_cap > SIZE_MAX / 2) return TWIN_ENOMEM;
    new_cap *= 2;
  }
  char *p = realloc(*buf, new_cap);
  if (!p) return TWIN_ENOMEM;
  *buf = p;
  *cap = new_cap;
  return TWIN_OK;
}

static inline int utf8_is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

/* Bytes at the end of s[0..n) that begin a UTF-8 character whose remaining bytes have not
 * arrived yet; 0 when the text ends on a complete character (or on bytes that are no valid
 * character start, which waiting would not fix). */
static size_t utf8_unfinished_tail(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t back = 0;
  while (back < n && back < 3 && utf8_is_continuation(u[n - 1 - back])) back++;
  if (back == n) return 0;
  unsigned char lead = u[n - 1 - back];
  size_t need = (lead & 0xE0) == 0xC0   ? 2
                : (lead & 0xF0) == 0xE0 ? 3
                : (lead & 0xF8) == 0xF0 ? 4
                                        : 1;
  return back + 1 < need ? back + 1 : 0;
}

/* Moves held[0..len) into the emit buffer, shifting the rest of held to the front. */
static int emit_prefix(twin_stop_matcher *m, size_t len, twin_stop_output *out) {
  if (ensure_capacity(&m->emit, &m->emit_cap, len ? len : 1)) return TWIN_ENOMEM;
  if (len) memcpy(m->emit, m->held, len); /* held is NULL until the first byte arrives */
  if (m->held_len > len) memmove(m->held, m->held + len, m->held_len - len);
  m->held_len -= len;
  out->text = m->emit;
  out->len = len;
  return TWIN_OK;
}

/* ==== feed / flush ========================================================================= */

int twin_stop_matcher_feed(twin_stop_matcher *m, const char *delta, size_t len,
                           twin_stop_output *out, twin_err *err) {
  out->text = m->emit ? m->emit : "";
  out->len = 0;
  out->stopped = m->stopped;
  out->stop_index = m->stop_index;
  if (m->stopped) return TWIN_OK;
  if (len > SIZE_MAX - m->held_len ||
      ensure_capacity(&m->held, &m->held_cap, m->held_len + len))
    return twin_err_set(err, TWIN_ENOMEM, "stop: out of memory holding %zu bytes",
                        m->held_len + len);
  if (len) memcpy(m->held + m->held_len, delta, len);
  m->held_len += len;

  /* A completed stop string: the one ending first, the longest among equal ends. The held
   * text before this delta held none, so any match ends inside the delta. */
  int best = -1;
  size_t best_start = 0, best_end = 0;
  for (int i = 0; i < m->n_stops; i++) {
    const char *hit = memmem(m->held, m->held_len, m->stops[i], m->stop_len[i]);
    if (!hit) continue;
    size_t start = (size_t)(hit - m->held), end = start + m->stop_len[i];
    if (best < 0 || end < best_end || (end == best_end && start < best_start)) {
      best = i;
      best_start = start;
      best_end = end;
    }
  }
  if (best >= 0) {
    if (emit_prefix(m, best_start, out))
      return twin_err_set(err, TWIN_ENOMEM, "stop: out of memory emitting %zu bytes", best_start);
    m->held_len = 0; /* the stop string and anything after it are dropped */
    m->stopped = 1;
    m->stop_index = best;
    out->stopped = 1;
    out->stop_index = best;
    return TWIN_OK;
  }

  /* No match: hold the longest suffix that is a proper prefix of some stop string, and an
   * unfinished character; never cut inside a character. */
  size_t hold = 0;
  for (int i = 0; i < m->n_stops; i++) {
    size_t max_l = m->stop_len[i] - 1 < m->held_len ? m->stop_len[i] - 1 : m->held_len;
    for (size_t l = max_l; l > hold; l--)
      if (memcmp(m->held + m->held_len - l, m->stops[i], l) == 0) {
        hold = l;
        break;
      }
  }
  size_t tail = utf8_unfinished_tail(m->held, m->held_len);
  if (tail > hold) hold = tail;
  size_t cut = m->held_len - hold;
  for (int steps = 0; steps < 3 && cut > 0 && cut < m->held_len &&
                      utf8_is_continuation((unsigned char)m->held[cut]);
       steps++)
    cut--;
  if (emit_prefix(m, cut, out))
    return twin_err_set(err, TWIN_ENOMEM, "stop: out of memory emitting %zu bytes", cut);
  return TWIN_OK;
}

void twin_stop_matcher_flush(twin_stop_matcher *m, twin_stop_output *out) {
  out->stopped = m->stopped;
  out->stop_index = m->stop_index;
  /* Hand out the held buffer itself: nothing is held afterwards. Swapping the two buffers
   * keeps the text valid until the next call without a copy that could fail. */
  char *t = m->emit;
  size_t tcap = m->emit_cap;
  m->emit = m->held;
  m->emit_cap = m->held_cap;
  m->held = t;
  m->held_cap = tcap;
  out->text = m->emit ? m->emit : "";
  out->len = m->held_len;
  m->held_len = 0;
}
