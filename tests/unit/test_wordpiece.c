/* tests/unit/test_wordpiece.c — the WordPiece tokenizer on small hand-written vocabularies:
 * BERT normalization (case, accents, CJK spacing, control and whitespace cleanup), punctuation
 * splitting, greedy longest-match pieces, [UNK] rules, truncation, special tokens in text,
 * tokenizer.json settings, and the errors for bad files and bad input. Expected ids are worked
 * out by hand from the vocabulary lines below (id = line number, from 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "business-svc/rag/wordpiece.h"

/* ids:  0 [PAD]  1 [UNK]  2 [CLS]  3 [SEP]  4 [MASK]  5 hello  6 world  7 un  8 una  9 ##ffable
 *      10 ##aff 11 ##able 12 ,  13 !  14 .  15 $  16 5  17 你  18 好  19 a  20 ##a  21 b  22 cafe
 *      23 Hello 24 sep 25 [  26 ] */
static const char *const VOCAB[] = {
  "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "una", "##ffable",
  "##aff", "##able", ",", "!", ".", "$", "5", "你", "好", "a", "##a", "b", "cafe", "Hello", "sep",
  "[", "]",
};
enum { PAD = 0, UNK, CLS, SEP, MASK, HELLO, WORLD, UN, UNA, FFABLE, AFF, ABLE, COMMA, BANG, DOT,
       DOLLAR, FIVE, NI, HAO, A, HASH_A, B, CAFE, HELLO_CAP, SEP_WORD, LBRACKET, RBRACKET };

typedef struct fixture {
  char dir[64];
  twin_wordpiece *wp;
} fixture;

static void write_file(const char *dir, const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void write_vocab(const char *dir, const char *skip) {
  char path[256];
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  for (size_t i = 0; i < sizeof VOCAB / sizeof VOCAB[0]; i++)
    fprintf(f, "%s\n", skip && strcmp(VOCAB[i], skip) == 0 ? "[skipped]" : VOCAB[i]);
  fclose(f);
}

static void remove_dir(const char *dir) {
  static const char *const names[] = {"vocab.txt", "tokenizer.json", "tokenizer_config.json"};
  char path[256];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  strcpy(fx->dir, "/tmp/twin-wordpiece-XXXXXX");
  if (!fx || !mkdtemp(fx->dir)) return -1;
  write_vocab(fx->dir, NULL);
  twin_err err = {0};
  if (twin_wordpiece_open(&fx->wp, fx->dir, &err) != 0) { fprintf(stderr, "%s\n", err.msg); return -1; }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  twin_wordpiece_destroy(fx->wp);
  remove_dir(fx->dir);
  free(fx);
  return 0;
}

/* Encodes text with max_len 256 (or the given) and checks the ids, [CLS] and [SEP] included. */
static void check_ids(const twin_wordpiece *wp, const char *text, int max_len, const int32_t *want, int n_want) {
  int32_t ids[512];
  int n = -1;
  twin_err err = {0};
  assert_int_equal(twin_wordpiece_encode(wp, text, strlen(text), max_len, ids, &n, &err), 0);
  if (n != n_want) fprintf(stderr, "text '%s': got %d ids, want %d\n", text, n, n_want);
  assert_int_equal(n, n_want);
  for (int i = 0; i < n; i++) {
    if (ids[i] != want[i]) fprintf(stderr, "text '%s': id %d is %d, want %d\n", text, i, ids[i], want[i]);
    assert_int_equal(ids[i], want[i]);
  }
}
#define CHECK(wp, text, ...) do { \
    const int32_t want_[] = {__VA_ARGS__}; \
    check_ids(wp, text, 256, want_, (int)(sizeof want_ / sizeof want_[0])); } while (0)

/* ------------------------------------------------------------------------------------------ */

static void test_words_and_punctuation(void **state) {
  fixture *fx = *state;
  CHECK(fx->wp, "Hello, world!", CLS, HELLO, COMMA, WORLD, BANG, SEP);
  CHECK(fx->wp, "hello.world", CLS, HELLO, DOT, WORLD, SEP);
  CHECK(fx->wp, "$5", CLS, DOLLAR, FIVE, SEP);          /* ASCII symbols split like punctuation */
  CHECK(fx->wp, "  hello \t\n world  ", CLS, HELLO, WORLD, SEP);
}

static void test_empty_text(void **state) {
  fixture *fx = *state;
  CHECK(fx->wp, "", CLS, SEP);
  CHECK(fx->wp, " \t\r\n ", CLS, SEP);
}

static void test_greedy_longest_match(void **state) {
  fixture *fx = *state;
  CHECK(fx->wp, "unaffable", CLS, UNA, FFABLE, SEP);    /* "una" is longer than "un" */
  CHECK(fx->wp, "aaa", CLS, A, HASH_A, HASH_A, SEP);
  CHECK(fx->wp, "ab", CLS, UNK, SEP);                   /* no "##b": the whole word is [UNK] */
  CHECK(fx->wp, "unx hello", CLS, UNK, HELLO, SEP);
  CHECK(fx->wp, "zebra", CLS, UNK, SEP);
}

static void test_case_and_accents(void **state) {
  fixture *fx = *state;
  CHECK(fx->wp, "HELLO Wörld", CLS, HELLO, WORLD, SEP);
  CHECK(fx->wp, "Café CAFÉ cafe\xcc\x81", CLS, CAFE, CAFE, CAFE, SEP); /* precomposed and combining */
}

static void test_cjk_split_per_character(void **state) {
  fixture *fx = *state;
  CHECK(fx->wp, "你好", CLS, NI, HAO, SEP);
  CHECK(fx->wp, "a你b", CLS, A, NI, B, SEP);
}

static void test_control_and_whitespace_cleanup(void **state) {
  fixture *fx = *state;
  CHECK(fx->wp, "hel\x07lo", CLS, HELLO, SEP);                        /* BEL dropped */
  CHECK(fx->wp, "hel\xe2\x80\x8blo", CLS, HELLO, SEP);                /* U+200B (Cf) dropped */
  CHECK(fx->wp, "hel\xef\xbf\xbdlo", CLS, HELLO, SEP);                /* U+FFFD dropped */
  CHECK(fx->wp, "hello\xc2\xa0world\xe3\x80\x80" "a", CLS, HELLO, WORLD, A, SEP); /* NBSP, U+3000 */
  int32_t ids[8];
  int n = 0;
  assert_int_equal(twin_wordpiece_encode(fx->wp, "hel\0lo", 6, 8, ids, &n, NULL), 0); /* NUL dropped */
  assert_int_equal(n, 3);
  assert_int_equal(ids[1], HELLO);
}

static void test_word_length_limit(void **state) {
  fixture *fx = *state;
  char word[128];
  int32_t want[104];
  memset(word, 'a', 100);
  word[100] = '\0';
  want[0] = CLS;
  want[1] = A;
  for (int i = 2; i <= 100; i++) want[i] = HASH_A;
  want[101] = SEP;
  check_ids(fx->wp, word, 256, want, 102);          /* 100 chars: pieces */
  strcat(word, "a");
  CHECK(fx->wp, word, CLS, UNK, SEP);               /* 101 chars: [UNK] */
}

static void test_truncation(void **state) {
  fixture *fx = *state;
  const int32_t want4[] = {CLS, HELLO, WORLD, SEP};
  check_ids(fx->wp, "hello world hello world", 4, want4, 4);
  const int32_t want2[] = {CLS, SEP};
  check_ids(fx->wp, "hello world", 2, want2, 2);
  const int32_t want3[] = {CLS, A, SEP};            /* cut inside a word's pieces */
  check_ids(fx->wp, "aaaa", 3, want3, 3);
  int32_t ids[4];
  int n = 0;
  twin_err err = {0};
  assert_int_equal(twin_wordpiece_encode(fx->wp, "x", 1, 1, ids, &n, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "max_len 1"));
}

static void test_special_tokens_in_text(void **state) {
  fixture *fx = *state;
  CHECK(fx->wp, "hello[SEP]world [MASK]", CLS, HELLO, SEP, WORLD, MASK, SEP);
  CHECK(fx->wp, "[sep]", CLS, LBRACKET, SEP_WORD, RBRACKET, SEP); /* only the exact form counts */
}

static void test_invalid_utf8_is_an_error(void **state) {
  fixture *fx = *state;
  int32_t ids[8];
  int n = 7;
  twin_err err = {0};
  assert_int_equal(twin_wordpiece_encode(fx->wp, "abc\xc3(", 5, 8, ids, &n, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "invalid UTF-8 at byte 3"));
  assert_int_equal(n, 0);
  assert_int_equal(twin_wordpiece_encode(fx->wp, "\xed\xa0\x80", 3, 8, ids, &n, &err), TWIN_EINVAL); /* surrogate */
}

static void test_lookups(void **state) {
  fixture *fx = *state;
  assert_int_equal(twin_wordpiece_vocab_size(fx->wp), (int)(sizeof VOCAB / sizeof VOCAB[0]));
  assert_int_equal(twin_wordpiece_token_to_id(fx->wp, "##able"), ABLE);
  assert_int_equal(twin_wordpiece_token_to_id(fx->wp, "nope"), -1);
  assert_string_equal(twin_wordpiece_id_to_token(fx->wp, AFF), "##aff");
  assert_null(twin_wordpiece_id_to_token(fx->wp, 1000));
  assert_int_equal(twin_wordpiece_cls_id(fx->wp), CLS);
  assert_int_equal(twin_wordpiece_sep_id(fx->wp), SEP);
  assert_int_equal(twin_wordpiece_unk_id(fx->wp), UNK);
  assert_int_equal(twin_wordpiece_pad_id(fx->wp), PAD);
}

/* ---- options from files ------------------------------------------------------------------- */

static void test_tokenizer_config_keeps_case(void **state) {
  fixture *fx = *state;
  write_file(fx->dir, "tokenizer_config.json", "{\"do_lower_case\": false}");
  twin_wordpiece *wp = NULL;
  twin_err err = {0};
  assert_int_equal(twin_wordpiece_open(&wp, fx->dir, &err), 0);
  CHECK(wp, "Hello hello HELLO Café", CLS, HELLO_CAP, HELLO, UNK, UNK, SEP); /* accents kept too */
  twin_wordpiece_destroy(wp);
}

/* A tokenizer.json whose vocabulary is VOCAB, with the given normalizer and post-processor. */
static void write_tokenizer_json(const char *dir, const char *normalizer, const char *post) {
  char *json = malloc(16384);
  int len = snprintf(json, 16384,
                     "{\"added_tokens\":[{\"id\":3,\"content\":\"[SEP]\",\"normalized\":false,\"special\":true}],"
                     "\"normalizer\":%s,\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"post_processor\":%s,"
                     "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
                     "\"max_input_chars_per_word\":3,\"vocab\":{",
                     normalizer, post);
  for (size_t i = 0; i < sizeof VOCAB / sizeof VOCAB[0]; i++)
    len += snprintf(json + len, 16384 - (size_t)len, "%s\"%s\":%zu", i ? "," : "", VOCAB[i], i);
  snprintf(json + len, 16384 - (size_t)len, "}}}");
  write_file(dir, "tokenizer.json", json);
  free(json);
}

static void test_tokenizer_json_settings(void **state) {
  fixture *fx = *state;
  /* lowercase without accent stripping; [MASK] is not an added token here; 3 chars per word */
  write_tokenizer_json(fx->dir,
                       "{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
                       "\"strip_accents\":false,\"lowercase\":true}",
                       "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}},"
                       "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}}],"
                       "\"special_tokens\":{\"[CLS]\":{\"id\":\"[CLS]\",\"ids\":[2]},\"[SEP]\":{\"id\":\"[SEP]\",\"ids\":[3]}}}");
  twin_wordpiece *wp = NULL;
  twin_err err = {0};
  assert_int_equal(twin_wordpiece_open(&wp, fx->dir, &err), 0);
  /* the template puts [SEP] first and [CLS] last */
  CHECK(wp, "aaa aaaa UNA[SEP]", SEP, A, HASH_A, HASH_A, UNK, UNA, SEP, CLS);
  CHECK(wp, "b\xc3\xa1 [MASK]", SEP, UNK, LBRACKET, UNK, RBRACKET, CLS); /* "bá" kept: no "##á" */
  twin_wordpiece_destroy(wp);
}

/* ---- bad files ---------------------------------------------------------------------------- */

static void test_missing_files(void **state) {
  (void)state;
  twin_wordpiece *wp = (twin_wordpiece *)0x1;
  twin_err err = {0};
  assert_int_equal(twin_wordpiece_open(&wp, "/nonexistent/model", &err), TWIN_ENOTFOUND);
  assert_null(wp);
  assert_non_null(strstr(err.msg, "/nonexistent/model"));
  assert_int_equal(twin_wordpiece_open_vocab(&wp, "/nonexistent/vocab.txt", NULL, &err), TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "/nonexistent/vocab.txt"));
}

static void test_vocab_without_cls(void **state) {
  fixture *fx = *state;
  write_vocab(fx->dir, "[CLS]");
  twin_wordpiece *wp = NULL;
  twin_err err = {0};
  assert_int_equal(twin_wordpiece_open(&wp, fx->dir, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "[CLS]"));
  assert_non_null(strstr(err.msg, "vocab.txt"));
  write_vocab(fx->dir, NULL);
}

static void test_bad_tokenizer_json(void **state) {
  fixture *fx = *state;
  twin_wordpiece *wp = NULL;
  twin_err err = {0};
  write_file(fx->dir, "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\"");
  assert_int_equal(twin_wordpiece_open(&wp, fx->dir, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "tokenizer.json: not valid JSON"));
  write_file(fx->dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}");
  assert_int_equal(twin_wordpiece_open(&wp, fx->dir, &err), TWIN_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "model type BPE"));
  write_file(fx->dir, "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": \"x\"}}}");
  assert_int_equal(twin_wordpiece_open(&wp, fx->dir, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "model.vocab[\"a\"]"));
  write_tokenizer_json(fx->dir, "{\"type\":\"NFKC\"}", "null");
  assert_int_equal(twin_wordpiece_open(&wp, fx->dir, &err), TWIN_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "normalizer type NFKC"));
  assert_null(wp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_words_and_punctuation, setup, teardown),
    cmocka_unit_test_setup_teardown(test_empty_text, setup, teardown),
    cmocka_unit_test_setup_teardown(test_greedy_longest_match, setup, teardown),
    cmocka_unit_test_setup_teardown(test_case_and_accents, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cjk_split_per_character, setup, teardown),
    cmocka_unit_test_setup_teardown(test_control_and_whitespace_cleanup, setup, teardown),
    cmocka_unit_test_setup_teardown(test_word_length_limit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
    cmocka_unit_test_setup_teardown(test_special_tokens_in_text, setup, teardown),
    cmocka_unit_test_setup_teardown(test_invalid_utf8_is_an_error, setup, teardown),
    cmocka_unit_test_setup_teardown(test_lookups, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tokenizer_config_keeps_case, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tokenizer_json_settings, setup, teardown),
    cmocka_unit_test(test_missing_files),
    cmocka_unit_test_setup_teardown(test_vocab_without_cls, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_tokenizer_json, setup, teardown),
  };
  return cmocka_run_group_tests_name("wordpiece", tests, NULL, NULL);
}
