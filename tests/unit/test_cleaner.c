/* tests/unit/test_cleaner.c — rag/cleaner: NFKC normalization, emoji (pictographs, ZWJ
 * sequences, skin tones, flags, keycaps) and control/format characters dropped, whitespace
 * collapsed to single spaces and single blank lines, fenced code blocks and code documents
 * kept byte for byte, line endings, invalid UTF-8. Expected strings are written out by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/cleaner.h"

/* Cleans in as type and checks the result equals want. */
static void expect_clean(const char *in, twin_doc_type type, const char *want) {
  twin_buf out;
  twin_buf_init(&out);
  twin_err err = {0};
  assert_int_equal(twin_clean_text(in, strlen(in), type, &out, &err), 0);
  assert_string_equal(twin_buf_cstr(&out), want);
  twin_buf_free(&out);
}

static void test_nfkc(void **state) {
  (void)state;
  expect_clean("Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", TWIN_DOC_ARTICLE, "Fullwidth ABC 123");
  expect_clean("the \xEF\xAC\x81nal o\xEF\xAC\x80\x65r", TWIN_DOC_ARTICLE, "the final offer"); /* ﬁ ﬀ ligatures */
  expect_clean("x\xC2\xB2 \xE2\x85\xA8 \xE2\x91\xA0", TWIN_DOC_ARTICLE, "x2 IX 1");         /* ² Ⅸ ① */
  /* e + combining acute composes to é (U+00E9) */
  expect_clean("cafe\xCC\x81", TWIN_DOC_ARTICLE, "caf\xC3\xA9");
  /* text that needs nothing stays */
  expect_clean("Plain text, nothing to do.", TWIN_DOC_POST, "Plain text, nothing to do.");
}

static void test_emoji_dropped(void **state) {
  (void)state;
  expect_clean("I love \xF0\x9F\x8D\x95 and \xF0\x9F\x9A\x80!", TWIN_DOC_POST, "I love and !"); /* 🍕 🚀 */
  /* a family: man ZWJ woman ZWJ girl; a thumbs up with a skin tone; a flag; a keycap */
  expect_clean("a\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 b", TWIN_DOC_POST, "a b");
  expect_clean("ok \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD done", TWIN_DOC_POST, "ok done");
  expect_clean("go \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7 team", TWIN_DOC_POST, "go team");
  expect_clean("press 1\xEF\xB8\x8F\xE2\x83\xA3 now", TWIN_DOC_POST, "press 1 now");
  expect_clean("smile\xE2\x98\xBA\xEF\xB8\x8F", TWIN_DOC_POST, "smile"); /* ☺️ */
  expect_clean("ok\xF0\x9F\x99\x82" "fine", TWIN_DOC_POST, "ok fine"); /* an emoji between words splits them */
  /* ordinary symbols stay: © ® ™ arrows, and math */
  expect_clean("\xC2\xA9 2024 Acme\xC2\xAE \xE2\x84\xA2 a \xE2\x86\x92 b, 3 \xC3\x97 4", TWIN_DOC_ARTICLE,
               "\xC2\xA9 2024 Acme\xC2\xAE TM a \xE2\x86\x92 b, 3 \xC3\x97 4");
  assert_true(twin_clean_is_emoji(0x1F600));
  assert_true(twin_clean_is_emoji(0x2764)); /* heavy black heart */
  assert_false(twin_clean_is_emoji('A'));
  assert_false(twin_clean_is_emoji(0x00A9));
  assert_false(twin_clean_is_emoji(0x4E2D)); /* 中 */
}

static void test_control_and_format_dropped(void **state) {
  (void)state;
  /* BEL, unit separator, soft hyphen, zero width space, BOM inside, U+FFFD, bidi mark */
  expect_clean("abc\x07" "def\x1Fghi\xC2\xAD" "jkl\xE2\x80\x8Bmno\xEF\xBB\xBFpqr\xEF\xBF\xBDstu\xE2\x80\x8Fvwx",
               TWIN_DOC_ARTICLE, "abcdefghijklmnopqrstuvwx");
  /* a joiner between letters of a script that uses it stays (Persian ZWNJ) */
  expect_clean("\xD9\x85\xDB\x8C\xE2\x80\x8C\xD8\xAE\xD9\x88\xD8\xA7\xD9\x87\xD9\x85", TWIN_DOC_ARTICLE,
               "\xD9\x85\xDB\x8C\xE2\x80\x8C\xD8\xAE\xD9\x88\xD8\xA7\xD9\x87\xD9\x85");
  /* a leading BOM goes for every type, code included */
  expect_clean("\xEF\xBB\xBFint x;", TWIN_DOC_CODE, "int x;");
}

static void test_whitespace(void **state) {
  (void)state;
  expect_clean("  a \t  b\xC2\xA0\xC2\xA0" "c\xE3\x80\x80" "d  ", TWIN_DOC_ARTICLE, "a b c d");
  expect_clean("line one   \n   line two\n\n\n\n\nnext para  \n", TWIN_DOC_ARTICLE,
               "line one\nline two\n\nnext para");
  expect_clean("\n\n\n  lead\r\nCRLF\rCR", TWIN_DOC_ARTICLE, "lead\nCRLF\nCR");
  expect_clean("a\xE2\x80\xA8" "b\xE2\x80\xA9" "c", TWIN_DOC_ARTICLE, "a\nb\n\nc"); /* LS, PS */
  expect_clean(" \t\n\n ", TWIN_DOC_ARTICLE, "");
  expect_clean("", TWIN_DOC_POST, "");
}

static void test_fenced_code_kept(void **state) {
  (void)state;
  const char *in =
      "Intro   text\xEF\xBC\xA1.\n\n\n"
      "```c\n"
      "int  main(void) {\t// \xF0\x9F\x9A\x80 \xEF\xBC\xA1  \n"
      "\n\n\n"
      "    return 0;   \n"
      "}\n"
      "```\n"
      "After   the \xF0\x9F\x9A\x80 block.\n"
      "~~~~\n"
      "  tilde   fence\n"
      "```\n"
      "still inside\n"
      "~~~~\n"
      "\n\n"
      "End.";
  const char *want =
      "Intro textA.\n\n"
      "```c\n"
      "int  main(void) {\t// \xF0\x9F\x9A\x80 \xEF\xBC\xA1  \n"
      "\n\n\n"
      "    return 0;   \n"
      "}\n"
      "```\n"
      "After the block.\n"
      "~~~~\n"
      "  tilde   fence\n"
      "```\n"
      "still inside\n"
      "~~~~\n"
      "\n"
      "End.";
  expect_clean(in, TWIN_DOC_ARTICLE, want);
  /* an unclosed fence runs to the end, kept */
  expect_clean("text\n```\ncode   \xF0\x9F\x9A\x80\n", TWIN_DOC_POST, "text\n```\ncode   \xF0\x9F\x9A\x80\n");
  /* inline triple backticks are not a fence */
  expect_clean("use ```x```   here", TWIN_DOC_POST, "use ```x``` here");
}

static void test_code_document_intact(void **state) {
  (void)state;
  const char *code = "def f(x):\r\n    return  x  # \xF0\x9F\x9A\x80 \xEF\xBC\xA1\r\n\r\n\r\n\r\nclass A:\t pass\n";
  expect_clean(code, TWIN_DOC_CODE,
               "def f(x):\n    return  x  # \xF0\x9F\x9A\x80 \xEF\xBC\xA1\n\n\n\nclass A:\t pass\n");
}

static void test_invalid_utf8(void **state) {
  (void)state;
  twin_buf out;
  twin_buf_init(&out);
  twin_err err = {0};
  const char bad[] = "good \xC3\x28 bad";
  assert_int_equal(twin_clean_text(bad, sizeof bad - 1, TWIN_DOC_ARTICLE, &out, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "byte 5"));
  /* NUL bytes are valid UTF-8 and go as control characters */
  const char nul[] = "a\0b";
  twin_buf_reset(&out);
  assert_int_equal(twin_clean_text(nul, 3, TWIN_DOC_ARTICLE, &out, &err), 0);
  assert_string_equal(twin_buf_cstr(&out), "ab");
  twin_buf_free(&out);
}

static void test_appends(void **state) {
  (void)state;
  twin_buf out;
  twin_buf_init(&out);
  twin_buf_puts(&out, "prefix|");
  twin_err err = {0};
  assert_int_equal(twin_clean_text("\n\n  x  y", 8, TWIN_DOC_POST, &out, &err), 0);
  assert_string_equal(twin_buf_cstr(&out), "prefix|x y");
  twin_buf_free(&out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nfkc),
      cmocka_unit_test(test_emoji_dropped),
      cmocka_unit_test(test_control_and_format_dropped),
      cmocka_unit_test(test_whitespace),
      cmocka_unit_test(test_fenced_code_kept),
      cmocka_unit_test(test_code_document_intact),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_appends),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
