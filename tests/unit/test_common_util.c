/* tests/unit/test_common_util.c — common/util: clocks, the string buffer and its JSON escaping
 * (checked by hand and by parsing back with cJSON), UTF-8 validation against hand-worked
 * cases and every code point, XXH64 against the reference implementation's outputs (Python
 * xxhash 4.1.0), hex, strict number/size/duration parsing, random ids and file reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

/* ---- clocks ---------------------------------------------------------------------------------- */

static void test_clocks(void **state) {
  (void)state;
  int64_t m0 = twin_time_mono_ms(), u0 = twin_time_mono_us();
  twin_sleep_ms(30);
  int64_t m1 = twin_time_mono_ms(), u1 = twin_time_mono_us();
  assert_true(m1 - m0 >= 30);
  assert_true(u1 - u0 >= 30000);
  /* wall clock agrees with time(2) to within two seconds */
  int64_t wall = twin_time_wall_ms();
  int64_t t = (int64_t)time(NULL) * 1000;
  assert_true(wall > t - 2000 && wall < t + 2000);
  assert_true(twin_time_wall_us() / 1000 >= wall);
}

/* ---- string buffer ------------------------------------------------------------------------- */

static void test_buf_append_printf(void **state) {
  (void)state;
  twin_buf b = {0};
  assert_string_equal(twin_buf_cstr(&b), "");
  assert_int_equal(twin_buf_puts(&b, "hello"), 0);
  assert_int_equal(twin_buf_putc(&b, ' '), 0);
  assert_int_equal(twin_buf_printf(&b, "%d-%s", 42, "x"), 0);
  assert_string_equal(twin_buf_cstr(&b), "hello 42-x");
  assert_int_equal(b.len, 10);
  /* grow well past the first allocation through printf */
  char big[1000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = 0;
  assert_int_equal(twin_buf_printf(&b, "[%s]", big), 0);
  assert_int_equal(b.len, 10 + 1 + 999 + 1);
  assert_int_equal(b.data[10], '[');
  assert_int_equal(b.data[b.len - 1], ']');
  assert_int_equal(b.data[b.len], 0);
  assert_false(b.failed);
  twin_buf_reset(&b);
  assert_string_equal(twin_buf_cstr(&b), "");
  twin_buf_append(&b, "a\0b", 3); /* binary safe */
  assert_int_equal(b.len, 3);
  assert_memory_equal(b.data, "a\0b", 3);
  size_t len = 0;
  char *owned = twin_buf_detach(&b, &len);
  assert_int_equal(len, 3);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  free(owned);
  owned = twin_buf_detach(&b, &len); /* an empty buffer still gives a string */
  assert_non_null(owned);
  assert_string_equal(owned, "");
  free(owned);
  twin_buf_free(&b);
}

static void test_buf_json_string(void **state) {
  (void)state;
  twin_buf b = {0};
  const char in[] = "say \"hi\"\\\n\t\x01 caf\xC3\xA9 \xF0\x9F\x98\x80";
  twin_buf_append_json_string(&b, in, sizeof in - 1);
  assert_string_equal(twin_buf_cstr(&b),
                      "\"say \\\"hi\\\"\\\\\\n\\t\\u0001 caf\xC3\xA9 \xF0\x9F\x98\x80\"");
  /* cJSON reads it back as the original */
  cJSON *j = cJSON_Parse(twin_buf_cstr(&b));
  assert_non_null(j);
  assert_true(cJSON_IsString(j));
  assert_string_equal(j->valuestring, in);
  cJSON_Delete(j);

  /* invalid UTF-8 (a lone continuation byte, a truncated sequence) becomes U+FFFD */
  twin_buf_reset(&b);
  twin_buf_append_json_string(&b, "a\x80" "b\xE2\x82", 5);
  assert_string_equal(twin_buf_cstr(&b), "\"a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\"");
  /* an embedded NUL is escaped, not a terminator */
  twin_buf_reset(&b);
  twin_buf_append_json_string(&b, "x\0y", 3);
  assert_string_equal(twin_buf_cstr(&b), "\"x\\u0000y\"");
  twin_buf_free(&b);
}

/* ---- UTF-8 ----------------------------------------------------------------------------------- */

static void test_utf8_validate_cases(void **state) {
  (void)state;
  static const struct { const char *s; size_t n, bad; } cases[] = {
      {"abc", 3, 3},
      {"caf\xC3\xA9", 5, 5},
      {"\xE2\x82\xAC", 3, 3},           /* U+20AC */
      {"\xF0\x9F\x98\x80", 4, 4},       /* U+1F600 */
      {"\xF4\x8F\xBF\xBF", 4, 4},       /* U+10FFFF, the last code point */
      {"a\xC0\xAF", 3, 1},              /* overlong '/' */
      {"a\xC1\xBF", 3, 1},              /* overlong */
      {"\xE0\x80\xAF", 3, 0},           /* overlong 3-byte */
      {"\xF0\x80\x80\xAF", 4, 0},       /* overlong 4-byte */
      {"\xED\xA0\x80", 3, 0},           /* surrogate U+D800 */
      {"ok\xED\xBF\xBF", 5, 2},         /* surrogate U+DFFF */
      {"\xF4\x90\x80\x80", 4, 0},       /* U+110000 */
      {"\xF5\x80\x80\x80", 4, 0},
      {"ab\x80", 3, 2},                 /* lone continuation */
      {"ab\xFF", 3, 2},
      {"ab\xE2\x82", 4, 2},             /* truncated at the end */
      {"\xC3" "A", 2, 0},               /* lead byte then ASCII */
      {"\xE2\x82" "A", 3, 0},
      {"x\0y", 3, 3},                   /* NUL is valid UTF-8 */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t got = twin_utf8_validate(cases[i].s, cases[i].n);
    if (got != cases[i].bad) fail_msg("case %zu: offset %zu, expected %zu", i, got, cases[i].bad);
  }
}

/* Every scalar value, encoded by hand from the bit layout, validates and decodes back; every
 * surrogate, encoded the same way, is rejected. */
static void test_utf8_all_code_points(void **state) {
  (void)state;
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) {
      b[0] = (unsigned char)cp;
      n = 1;
    } else if (cp < 0x800) {
      b[0] = (unsigned char)(0xC0 | (cp >> 6)), b[1] = (unsigned char)(0x80 | (cp & 0x3F));
      n = 2;
    } else if (cp < 0x10000) {
      b[0] = (unsigned char)(0xE0 | (cp >> 12)), b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
      b[2] = (unsigned char)(0x80 | (cp & 0x3F));
      n = 3;
    } else {
      b[0] = (unsigned char)(0xF0 | (cp >> 18)), b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
      b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)), b[3] = (unsigned char)(0x80 | (cp & 0x3F));
      n = 4;
    }
    bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    size_t v = twin_utf8_validate((const char *)b, n);
    if (surrogate) {
      if (v != 0) fail_msg("surrogate U+%04X accepted", cp);
      continue;
    }
    if (v != n) fail_msg("U+%04X rejected at %zu", cp, v);
    uint32_t back = 0;
    if (twin_utf8_decode((const char *)b, n, &back) != n || back != cp) fail_msg("U+%04X decode", cp);
    char enc[4];
    if (twin_utf8_encode(cp, enc) != n || memcmp(enc, b, n) != 0) fail_msg("U+%04X encode", cp);
    /* every proper prefix of a multi-byte sequence is "incomplete", not invalid */
    for (size_t k = 1; k < n; k++)
      if (twin_utf8_complete_len((const char *)b, k) != 0) fail_msg("U+%04X prefix %zu", cp, k);
  }
  char enc[4];
  assert_int_equal(twin_utf8_encode(0xD800, enc), 0);
  assert_int_equal(twin_utf8_encode(0x110000, enc), 0);
}

static void test_utf8_complete_len(void **state) {
  (void)state;
  assert_int_equal(twin_utf8_complete_len("ab\xE2\x82", 4), 2);
  assert_int_equal(twin_utf8_complete_len("ab\xE2\x82\xAC", 5), 5);
  assert_int_equal(twin_utf8_complete_len("ab\xC3", 3), 2);
  assert_int_equal(twin_utf8_complete_len("ab\xF0\x9F\x98", 5), 2);
  assert_int_equal(twin_utf8_complete_len("ab\x80", 3), 3);     /* invalid, not incomplete */
  assert_int_equal(twin_utf8_complete_len("ab\xE2" "A", 4), 4); /* no trailing sequence */
  assert_int_equal(twin_utf8_complete_len("ab\xED\xA0", 4), 4); /* a surrogate's start: invalid */
  assert_int_equal(twin_utf8_complete_len("", 0), 0);
}

/* ---- hashing and hex ------------------------------------------------------------------------- */

static void test_hash64_reference_vectors(void **state) {
  (void)state;
  /* expected values: xxhash.xxh64_intdigest(data, seed=...) from Python xxhash 4.1.0 */
  unsigned char long_input[259];
  for (int i = 0; i < 256; i++) long_input[i] = (unsigned char)i;
  memcpy(long_input + 256, "xyz", 3);
  assert_true(twin_hash64("", 0, 0) == 0xef46db3751d8e999ULL);
  assert_true(twin_hash64("a", 1, 0) == 0xd24ec4f1a98c6e5bULL);
  assert_true(twin_hash64("abc", 3, 0) == 0x44bc2cf5ad770999ULL);
  assert_true(twin_hash64("abc", 3, 1) == 0xbea9ca8199328908ULL);
  assert_true(twin_hash64("0123456789abcdef0123456789abcdef", 32, 0) == 0x642a94958e71e6c5ULL);
  assert_true(twin_hash64("The quick brown fox jumps over the lazy dog", 43, 0) == 0x0b242d361fda71bcULL);
  assert_true(twin_hash64(long_input, sizeof long_input, 0x9E3779B97F4A7C15ULL) == 0xf00eed6a75a66500ULL);
  assert_true(twin_hash64("abcdefg", 7, 123) == 0xca4cc26ccfb6418aULL);
}

static void test_hex(void **state) {
  (void)state;
  char out[9];
  const unsigned char raw[4] = {0x00, 0xAB, 0x7F, 0xFF};
  assert_string_equal(twin_hex_encode(raw, 4, out), "00ab7fff");
  unsigned char back[4];
  twin_err err = {0};
  assert_int_equal(twin_hex_decode("00AB7fff", back, 4, &err), 0);
  assert_memory_equal(back, raw, 4);
  assert_int_equal(twin_hex_decode("00ab7ff", back, 4, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "7 digits"));
  assert_int_equal(twin_hex_decode("00ag7fff", back, 4, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "offset 3"));
}

static void test_sha256(void **state) {
  (void)state;
  uint8_t d[32];
  twin_err err = {0};
  if (!twin_sha256_available()) {
    assert_int_equal(twin_sha256("abc", 3, d, &err), TWIN_EUNSUPPORTED);
    return;
  }
  char hex[65];
  assert_int_equal(twin_sha256("abc", 3, d, &err), 0);
  assert_string_equal(twin_hex_encode(d, 32, hex),
                      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"); /* FIPS 180-2 */
}

static void test_random_id(void **state) {
  (void)state;
  char a[33], b[33];
  twin_err err = {0};
  assert_int_equal(twin_random_id(a, &err), 0);
  assert_int_equal(twin_random_id(b, &err), 0);
  assert_int_equal(strlen(a), 32);
  assert_int_equal(strspn(a, "0123456789abcdef"), 32);
  assert_string_not_equal(a, b);
}

/* ---- parsing ----------------------------------------------------------------------------------- */

static void test_parse_numbers(void **state) {
  (void)state;
  twin_err err = {0};
  int64_t i;
  uint64_t u;
  double d;
  bool b;
  assert_int_equal(twin_parse_int64("-42", &i, &err), 0);
  assert_int_equal(i, -42);
  assert_int_equal(twin_parse_int64("9223372036854775807", &i, &err), 0);
  assert_true(i == INT64_MAX);
  assert_int_equal(twin_parse_int64("9223372036854775808", &i, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "out of range"));
  assert_int_equal(twin_parse_int64("12x", &i, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "'12x' is not an integer");
  assert_int_equal(twin_parse_int64(" 1", &i, &err), TWIN_EINVAL);
  assert_int_equal(twin_parse_int64("", &i, &err), TWIN_EINVAL);
  assert_int_equal(twin_parse_uint64("-1", &u, &err), TWIN_EINVAL);
  assert_int_equal(twin_parse_uint64("18446744073709551615", &u, &err), 0);
  assert_true(u == UINT64_MAX);
  assert_int_equal(twin_parse_double("0.25", &d, &err), 0);
  assert_true(d == 0.25);
  assert_int_equal(twin_parse_double("nan", &d, &err), TWIN_EINVAL);
  assert_int_equal(twin_parse_double("1e999", &d, &err), TWIN_EINVAL);
  assert_int_equal(twin_parse_bool("YES", &b, &err), 0);
  assert_true(b);
  assert_int_equal(twin_parse_bool("off", &b, &err), 0);
  assert_false(b);
  assert_int_equal(twin_parse_bool("maybe", &b, &err), TWIN_EINVAL);
}

static void test_parse_size(void **state) {
  (void)state;
  static const struct { const char *s; uint64_t v; } ok[] = {
      {"512", 512}, {"0", 0}, {"64K", 65536}, {"64k", 65536}, {"64KiB", 65536}, {"2kb", 2048},
      {"10M", 10485760}, {"1.5G", 1610612736}, {"3GiB", 3221225472ULL}, {"1T", 1099511627776ULL},
      {"100B", 100}, {"0.5K", 512}};
  twin_err err = {0};
  for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
    uint64_t v = 0;
    if (twin_parse_size(ok[k].s, &v, &err) != 0 || v != ok[k].v)
      fail_msg("%s -> %llu (%s)", ok[k].s, (unsigned long long)v, err.msg);
  }
  static const char *bad[] = {"", "-1", "12Q", "K", "0.1K", " 5", "5 K", "99999999999T", "1.2.3"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    uint64_t v;
    if (twin_parse_size(bad[k], &v, &err) != TWIN_EINVAL) fail_msg("'%s' accepted", bad[k]);
  }
  uint64_t v;
  twin_parse_size("12Q", &v, &err);
  assert_string_equal(err.msg, "'12Q': unknown size unit 'Q' (B, K, M, G, T)");
}

static void test_parse_duration(void **state) {
  (void)state;
  static const struct { const char *s; int64_t ms; } ok[] = {
      {"250", 250}, {"250ms", 250}, {"2s", 2000}, {"1.5s", 1500}, {"1.5m", 90000},
      {"1h", 3600000}, {"0", 0}, {"0.001s", 1}};
  twin_err err = {0};
  for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
    int64_t v = -1;
    if (twin_parse_duration_ms(ok[k].s, &v, &err) != 0 || v != ok[k].ms)
      fail_msg("%s -> %lld (%s)", ok[k].s, (long long)v, err.msg);
  }
  static const char *bad[] = {"", "-1s", "5d", "0.5ms", "s", "2S", "1e400s"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    int64_t v;
    if (twin_parse_duration_ms(bad[k], &v, &err) != TWIN_EINVAL) fail_msg("'%s' accepted", bad[k]);
  }
}

static void test_strings(void **state) {
  (void)state;
  assert_true(twin_str_has_prefix("/v1/chat", "/v1/"));
  assert_false(twin_str_has_prefix("/v", "/v1/"));
  assert_true(twin_str_has_suffix("index.html", ".html"));
  assert_false(twin_str_has_suffix("html", ".html"));
  char small[4];
  assert_int_equal(twin_strlcpy(small, "abcdef", sizeof small), 6);
  assert_string_equal(small, "abc");
  assert_null(twin_strdup(NULL));
}

/* ---- files ----------------------------------------------------------------------------------- */

static void test_read_file(void **state) {
  (void)state;
  char path[] = "/tmp/twin_util_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char content[] = "line one\nline\0two\n";
  assert_int_equal(write(fd, content, sizeof content - 1), (ssize_t)(sizeof content - 1));
  close(fd);
  char *data = NULL;
  size_t len = 0;
  twin_err err = {0};
  assert_int_equal(twin_read_file(path, 0, &data, &len, &err), 0);
  assert_int_equal(len, sizeof content - 1);
  assert_memory_equal(data, content, len);
  assert_int_equal(data[len], 0);
  free(data);
  assert_int_equal(twin_read_file(path, 4, &data, &len, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, path));
  assert_null(data);
  unlink(path);
  assert_int_equal(twin_read_file(path, 0, &data, &len, &err), TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, path));
  assert_int_equal(twin_read_file("/tmp", 0, &data, &len, &err), TWIN_EIO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clocks),
      cmocka_unit_test(test_buf_append_printf),
      cmocka_unit_test(test_buf_json_string),
      cmocka_unit_test(test_utf8_validate_cases),
      cmocka_unit_test(test_utf8_all_code_points),
      cmocka_unit_test(test_utf8_complete_len),
      cmocka_unit_test(test_hash64_reference_vectors),
      cmocka_unit_test(test_hex),
      cmocka_unit_test(test_sha256),
      cmocka_unit_test(test_random_id),
      cmocka_unit_test(test_parse_numbers),
      cmocka_unit_test(test_parse_size),
      cmocka_unit_test(test_parse_duration),
      cmocka_unit_test(test_strings),
      cmocka_unit_test(test_read_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
