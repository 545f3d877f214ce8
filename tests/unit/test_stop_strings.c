/* tests/unit/test_stop_strings.c — the incremental stop-string matcher
 * (llm-svc/engine/stop_strings.h): stops spanning deltas, partial matches released, several
 * stops, a stop at the very start, UTF-8 characters split across deltas, flush, and a
 * randomized check that any cutting of a text into deltas gives what a direct search of the
 * whole text says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm-svc/engine/stop_strings.h"

/* ==== helpers ============================================================================== */

static twin_stop_matcher *make(const char *const *stops, int n) {
  twin_stop_matcher *m = NULL;
  twin_err err = {0};
  if (twin_stop_matcher_create(stops, n, &m, &err)) fail_msg("create: %s", err.msg);
  return m;
}

/* Feeds one delta, checks what it emits (exactly) and whether it stopped. */
static void feed_expect(twin_stop_matcher *m, const char *delta, const char *want_emit,
                        int want_stop_index) {
  twin_stop_output out;
  twin_err err = {0};
  if (twin_stop_matcher_feed(m, delta, strlen(delta), &out, &err)) fail_msg("feed: %s", err.msg);
  if (out.len != strlen(want_emit) || memcmp(out.text, want_emit, out.len) != 0)
    fail_msg("feeding '%s': emitted '%.*s', want '%s'", delta, (int)out.len, out.text, want_emit);
  assert_int_equal(out.stopped, want_stop_index >= 0);
  assert_int_equal(out.stop_index, want_stop_index);
}

static void flush_expect(twin_stop_matcher *m, const char *want) {
  twin_stop_output out;
  twin_stop_matcher_flush(m, &out);
  if (out.len != strlen(want) || memcmp(out.text, want, out.len) != 0)
    fail_msg("flush emitted '%.*s', want '%s'", (int)out.len, out.text, want);
  assert_int_equal(twin_stop_matcher_held(m), 0);
}

/* ==== cases ================================================================================ */

static void test_no_stops_passes_through(void **state) {
  (void)state;
  twin_stop_matcher *m = make(NULL, 0);
  feed_expect(m, "Hello", "Hello", -1);
  feed_expect(m, ", world", ", world", -1);
  feed_expect(m, "", "", -1);
  flush_expect(m, "");
  twin_stop_matcher_destroy(m);
}

static void test_stop_spans_deltas(void **state) {
  (void)state;
  const char *stops[] = {"###"};
  twin_stop_matcher *m = make(stops, 1);
  feed_expect(m, "abc#", "abc", -1);
  assert_int_equal(twin_stop_matcher_held(m), 1);
  feed_expect(m, "#", "", -1);
  assert_int_equal(twin_stop_matcher_held(m), 2);
  feed_expect(m, "#tail", "", 0); /* the stop and what follows it are never emitted */
  feed_expect(m, "more", "", 0);  /* after a stop: nothing, same stop */
  flush_expect(m, "");
  twin_stop_matcher_destroy(m);

  /* A stop completed over four one-character tokens, text before it in the first one. */
  const char *stops2[] = {"</end>"};
  m = make(stops2, 1);
  feed_expect(m, "done.</", "done.", -1);
  feed_expect(m, "e", "", -1);
  feed_expect(m, "n", "", -1);
  feed_expect(m, "d>", "", 0);
  twin_stop_matcher_destroy(m);
}

static void test_partial_match_released(void **state) {
  (void)state;
  const char *stops[] = {"STOP"};
  twin_stop_matcher *m = make(stops, 1);
  feed_expect(m, "xST", "x", -1);
  feed_expect(m, "Ox", "STOx", -1); /* "STOx" can no longer become "STOP" */
  feed_expect(m, "S", "", -1);
  feed_expect(m, "S", "S", -1);     /* "SS": only the last S may still start a stop */
  feed_expect(m, "TO", "", -1);
  feed_expect(m, "PS", "", 0);
  twin_stop_matcher_destroy(m);

  /* A stop that begins inside a held partial match of itself: "abac" in "ababac". */
  const char *stops2[] = {"abac"};
  m = make(stops2, 1);
  feed_expect(m, "aba", "", -1);
  feed_expect(m, "bac", "ab", 0);
  twin_stop_matcher_destroy(m);
}

static void test_multiple_stops(void **state) {
  (void)state;
  const char *stops[] = {"</s>", "\n\nUser:"};
  twin_stop_matcher *m = make(stops, 2);
  feed_expect(m, "Answer.\n\nUs", "Answer.", -1);
  feed_expect(m, "er: hi", "", 1);
  twin_stop_matcher_destroy(m);

  /* The first to complete wins, whatever the chunking: "bc" ends before "abcd" would. */
  const char *stops2[] = {"abcd", "bc"};
  m = make(stops2, 2);
  feed_expect(m, "xabcd", "xa", 1);
  twin_stop_matcher_destroy(m);
  m = make(stops2, 2);
  feed_expect(m, "xab", "x", -1);
  feed_expect(m, "cd", "a", 1);
  twin_stop_matcher_destroy(m);

  /* Ending at the same byte: the longer one (it started first). */
  const char *stops3[] = {"c", "abc"};
  m = make(stops3, 2);
  feed_expect(m, "xabc", "x", 1);
  twin_stop_matcher_destroy(m);
}

static void test_stop_at_start(void **state) {
  (void)state;
  const char *stops[] = {"<|end|>"};
  twin_stop_matcher *m = make(stops, 1);
  feed_expect(m, "<|end|>rest", "", 0);
  flush_expect(m, "");
  twin_stop_matcher_destroy(m);
  m = make(stops, 1);
  feed_expect(m, "<|", "", -1);
  feed_expect(m, "end|>", "", 0);
  twin_stop_matcher_destroy(m);
}

static void test_utf8_split_across_deltas(void **state) {
  (void)state;
  twin_stop_matcher *m = make(NULL, 0);
  feed_expect(m, "caf\xC3", "caf", -1); /* é = C3 A9 */
  feed_expect(m, "\xA9!", "\xC3\xA9!", -1);
  /* 🦙 = F0 9F A6 99, one byte per delta */
  feed_expect(m, "\xF0", "", -1);
  feed_expect(m, "\x9F", "", -1);
  feed_expect(m, "\xA6", "", -1);
  feed_expect(m, "\x99 ok", "\xF0\x9F\xA6\x99 ok", -1);
  twin_stop_matcher_destroy(m);

  /* A multi-byte stop string, and a near miss that differs only in its last byte. */
  const char *stops[] = {"\xC3\xA9t\xC3\xA9"}; /* "été" */
  m = make(stops, 1);
  feed_expect(m, "l'\xC3", "l'", -1);
  feed_expect(m, "\xA9t\xC3", "", -1);
  feed_expect(m, "\xA8", "\xC3\xA9t\xC3\xA8", -1); /* "étè" is not "été" */
  feed_expect(m, " \xC3\xA9t", " ", -1);
  feed_expect(m, "\xC3\xA9 fin", "", 0);
  twin_stop_matcher_destroy(m);

  /* Holding for a stop never cuts inside a character: "€" (E2 82 AC) then a stop on "x". */
  const char *stops2[] = {"\xE2\x82\xACx"};
  m = make(stops2, 1);
  feed_expect(m, "a\xE2\x82", "a", -1);
  feed_expect(m, "\xAC", "", -1);
  feed_expect(m, "y", "\xE2\x82\xACy", -1);
  twin_stop_matcher_destroy(m);
}

static void test_flush_returns_held(void **state) {
  (void)state;
  const char *stops[] = {"###", "END"};
  twin_stop_matcher *m = make(stops, 2);
  feed_expect(m, "the E", "the ", -1);
  feed_expect(m, "N", "", -1);
  flush_expect(m, "EN");
  twin_stop_matcher_destroy(m);
  m = make(NULL, 0);
  feed_expect(m, "x\xE2\x82", "x", -1);
  flush_expect(m, "\xE2\x82"); /* an unfinished character still comes out at the end */
  twin_stop_matcher_reset(m);
  feed_expect(m, "again", "again", -1);
  twin_stop_matcher_destroy(m);
}

static void test_bad_stop_strings(void **state) {
  (void)state;
  twin_stop_matcher *m = NULL;
  twin_err err = {0};
  const char *empty[] = {"ok", ""};
  assert_int_equal(twin_stop_matcher_create(empty, 2, &m, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "stop[1] is empty"));
  const char *bad_utf8[] = {"\xC3("};
  assert_int_equal(twin_stop_matcher_create(bad_utf8, 1, &m, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "stop[0] is not valid UTF-8"));
  const char *many[TWIN_STOP_MAX_STRINGS + 1];
  for (int i = 0; i <= TWIN_STOP_MAX_STRINGS; i++) many[i] = "x";
  assert_int_equal(twin_stop_matcher_create(many, TWIN_STOP_MAX_STRINGS + 1, &m, &err),
                   TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "at most"));
  char *longstop = malloc(TWIN_STOP_MAX_BYTES + 2);
  memset(longstop, 'a', TWIN_STOP_MAX_BYTES + 1);
  longstop[TWIN_STOP_MAX_BYTES + 1] = 0;
  const char *toolong[] = {longstop};
  assert_int_equal(twin_stop_matcher_create(toolong, 1, &m, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "stop[0] is"));
  free(longstop);
  assert_null(m);
}

/* ==== randomized: any chunking equals a direct search ===================================== */

static uint32_t next_rand(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint32_t)(*s >> 33);
}

/* Reference on the whole text: for every end position, in order, does a stop end there? The
 * first such end, with the longest stop among those ending there, wins. */
static int reference_stop(const char *text, size_t len, const char *const *stops, int n,
                          size_t *cut) {
  for (size_t end = 1; end <= len; end++) {
    int best = -1;
    for (int i = 0; i < n; i++) {
      size_t l = strlen(stops[i]);
      if (l <= end && memcmp(text + end - l, stops[i], l) == 0 &&
          (best < 0 || l > strlen(stops[best])))
        best = i;
    }
    if (best >= 0) {
      *cut = end - strlen(stops[best]);
      return best;
    }
  }
  *cut = len;
  return -1;
}

static int is_char_start(const char *text, size_t at, size_t len) {
  return at == len || ((unsigned char)text[at] & 0xC0) != 0x80;
}

static void test_random_chunkings(void **state) {
  (void)state;
  static const char *pieces[] = {"a", "b", "c", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\xA6\x99"};
  uint64_t rs = 77;
  for (int trial = 0; trial < 3000; trial++) {
    /* a text of 0-40 characters over a small alphabet */
    char text[256];
    size_t len = 0;
    int chars = (int)(next_rand(&rs) % 41);
    for (int i = 0; i < chars; i++) {
      const char *p = pieces[next_rand(&rs) % 6];
      memcpy(text + len, p, strlen(p));
      len += strlen(p);
    }
    /* 1-3 stop strings of 1-4 characters */
    char stop_buf[3][32];
    const char *stops[3];
    int n_stops = 1 + (int)(next_rand(&rs) % 3);
    for (int s = 0; s < n_stops; s++) {
      size_t sl = 0;
      int sc = 1 + (int)(next_rand(&rs) % 4);
      for (int i = 0; i < sc; i++) {
        const char *p = pieces[next_rand(&rs) % (trial % 2 ? 3 : 6)];
        memcpy(stop_buf[s] + sl, p, strlen(p));
        sl += strlen(p);
      }
      stop_buf[s][sl] = 0;
      stops[s] = stop_buf[s];
    }
    size_t want_cut;
    int want = reference_stop(text, len, stops, n_stops, &want_cut);

    /* feed in random byte-level cuts (characters split freely) */
    twin_stop_matcher *m = make(stops, n_stops);
    char got[256];
    size_t got_len = 0, at = 0;
    int stopped = -1;
    twin_err err = {0};
    while (at < len) {
      size_t step = 1 + next_rand(&rs) % 6;
      if (step > len - at) step = len - at;
      twin_stop_output out;
      if (twin_stop_matcher_feed(m, text + at, step, &out, &err)) fail_msg("%s", err.msg);
      /* never a partial character: what was emitted so far ends on a character boundary */
      memcpy(got + got_len, out.text, out.len);
      got_len += out.len;
      if (!is_char_start(text, got_len, len))
        fail_msg("trial %d: emitted up to byte %zu, inside a character", trial, got_len);
      at += step;
      if (out.stopped) {
        stopped = out.stop_index;
        break;
      }
    }
    if (stopped < 0) {
      twin_stop_output out;
      twin_stop_matcher_flush(m, &out);
      memcpy(got + got_len, out.text, out.len);
      got_len += out.len;
    }
    twin_stop_matcher_destroy(m);
    if (stopped != want) fail_msg("trial %d: stop %d, want %d", trial, stopped, want);
    if (got_len != want_cut || memcmp(got, text, want_cut) != 0)
      fail_msg("trial %d: emitted %zu bytes, want the first %zu", trial, got_len, want_cut);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_stops_passes_through),
      cmocka_unit_test(test_stop_spans_deltas),
      cmocka_unit_test(test_partial_match_released),
      cmocka_unit_test(test_multiple_stops),
      cmocka_unit_test(test_stop_at_start),
      cmocka_unit_test(test_utf8_split_across_deltas),
      cmocka_unit_test(test_flush_returns_held),
      cmocka_unit_test(test_bad_stop_strings),
      cmocka_unit_test(test_random_chunkings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
