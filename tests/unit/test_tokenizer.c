/* tests/unit/test_tokenizer.c — the tokenizer and incremental detokenizer on small vocabularies
 * written here, whose results are worked out by hand from the BPE rules (merge order, ties,
 * unknown and byte-fallback symbols, decoder steps), and the error paths: missing files,
 * malformed JSON, unknown model types, bad merges, bad configs, invalid UTF-8. Parity with the
 * Python `tokenizers` package on real files is tests/python/test_tokenizer_parity.py. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm-svc/model/detok.h"
#include "llm-svc/model/tokenizer.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static twin_tokenizer *load(const char *json, const char *config) {
  twin_tokenizer *t = NULL;
  twin_err err = {0};
  int rc = twin_tokenizer_load_json(&t, json, strlen(json), config, config ? strlen(config) : 0, "test.json", &err);
  if (rc) fail_msg("load failed: %s", err.msg);
  return t;
}

static int load_fails(const char *json, const char *config, twin_err *err) {
  twin_tokenizer *t = NULL;
  int rc = twin_tokenizer_load_json(&t, json, strlen(json), config, config ? strlen(config) : 0, "test.json", err);
  assert_null(t);
  return rc;
}

/* Encodes text and compares with the expected ids (terminated by -1). */
static void expect_ids(const twin_tokenizer *t, const char *text, int add_special, const int32_t *expected) {
  int32_t *ids = NULL;
  size_t n = 0;
  twin_err err = {0};
  int rc = twin_tokenizer_encode(t, text, strlen(text), add_special, &ids, &n, &err);
  if (rc) fail_msg("encode(%s) failed: %s", text, err.msg);
  size_t want = 0;
  while (expected[want] >= 0) want++;
  if (n != want) {
    fprintf(stderr, "encode(\"%s\"): got", text);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
  }
  assert_int_equal(n, want);
  for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], expected[i]);
  free(ids);
}

static void expect_decode(const twin_tokenizer *t, const int32_t *ids, size_t n, int flags, const char *expected) {
  char *text = NULL;
  size_t len = 0;
  twin_err err = {0};
  assert_int_equal(twin_tokenizer_decode(t, ids, n, flags, &text, &len, &err), 0);
  assert_int_equal(len, strlen(expected));
  assert_memory_equal(text, expected, len);
  assert_int_equal(text[len], 0);
  free(text);
}

/* ---- tokenizers written for these tests --------------------------------------------------- */

/* Plain BPE over characters: no normalizer, no pre-tokenizer, no decoder. The merge "b c"
 * outranks "a b", so "abc" is a + bc, then abc. */
static const char *BPE_ABC =
    "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true,"
    " \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"abc\": 5, \"<unk>\": 6, \"aa\": 7, \"aaaa\": 8},"
    " \"merges\": [\"b c\", \"a b\", \"a bc\", \"a a\", \"aa aa\"]}}";

/* The same vocabulary with "a b" first and the list form of merges, unknown not fused. */
static const char *BPE_ABC_LIST =
    "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": false,"
    " \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"abc\": 5, \"<unk>\": 6},"
    " \"merges\": [[\"a\", \"b\"], [\"b\", \"c\"], [\"ab\", \"c\"]]}}";

/* SentencePiece style: Prepend + Replace, byte fallback for the bytes of one emoji, BOS added
 * by the template, the Llama-2 decoder. */
static const char *SP_TINY =
    "{\"added_tokens\": ["
    "  {\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"normalized\": false},"
    "  {\"id\": 1, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
    "  {\"id\": 2, \"content\": \"</s>\", \"special\": true, \"normalized\": false}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
    "  {\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"},"
    "  {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]},"
    " \"pre_tokenizer\": null,"
    " \"post_processor\": {\"type\": \"TemplateProcessing\","
    "  \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],"
    "  \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
    "  {\"type\": \"Replace\", \"pattern\": {\"String\": \"\xE2\x96\x81\"}, \"content\": \" \"},"
    "  {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"},"
    "  {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},"
    " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true,"
    "  \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0xF0>\": 3, \"<0x9F>\": 4, \"<0x98>\": 5, \"<0x80>\": 6,"
    "   \"\xE2\x96\x81\": 7, \"h\": 8, \"i\": 9, \"\xE2\x96\x81h\": 10, \"\xE2\x96\x81hi\": 11},"
    "  \"merges\": [[\"\xE2\x96\x81\", \"h\"], [\"\xE2\x96\x81h\", \"i\"]]}}";

/* Byte-level with the GPT-2 regex: bytes 'a'..'d' and ' ' (as 'Ġ') only, one added special. */
static const char *BYTE_TINY =
    "{\"added_tokens\": [{\"id\": 7, \"content\": \"<|end|>\", \"special\": true, \"normalized\": false}],"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"d\": 3, \"\xC4\xA0\": 4,"
    "   \"\xC4\xA0" "a\": 5, \"ab\": 6}, \"merges\": [\"\xC4\xA0 a\", \"a b\"]}}";

/* ---- encode ------------------------------------------------------------------------------- */

static void test_merge_order_follows_ranks(void **state) {
  (void)state;
  twin_tokenizer *t = load(BPE_ABC, NULL);
  expect_ids(t, "abc", 0, (const int32_t[]){5, -1});   /* b+c first (rank 0), then a+bc */
  expect_ids(t, "ab", 0, (const int32_t[]){3, -1});
  expect_ids(t, "cab", 0, (const int32_t[]){2, 3, -1});
  /* equal ranks: the leftmost pair first: aaaaa -> aa a a a -> aa aa a -> aaaa a */
  expect_ids(t, "aaaaa", 0, (const int32_t[]){8, 0, -1});
  expect_ids(t, "", 0, (const int32_t[]){-1});
  twin_tokenizer_destroy(t);

  t = load(BPE_ABC_LIST, NULL);
  expect_ids(t, "abc", 0, (const int32_t[]){5, -1}); /* a+b first, then ab+c */
  expect_ids(t, "bc", 0, (const int32_t[]){4, -1});  /* bc is in the vocabulary but "b c" is a merge here too */
  twin_tokenizer_destroy(t);
}

static void test_unknown_symbols(void **state) {
  (void)state;
  twin_tokenizer *t = load(BPE_ABC, NULL); /* fuse_unk: true */
  expect_ids(t, "axyb", 0, (const int32_t[]){0, 6, 1, -1});
  twin_tokenizer_destroy(t);
  t = load(BPE_ABC_LIST, NULL); /* fuse_unk: false */
  expect_ids(t, "axyb", 0, (const int32_t[]){0, 6, 6, 1, -1});
  twin_tokenizer_destroy(t);
}

static void test_long_word(void **state) {
  (void)state;
  /* 200,000 'a': merges pair them up leftmost first, then pairs of pairs: 50,000 x "aaaa". */
  twin_tokenizer *t = load(BPE_ABC, NULL);
  size_t n = 200000;
  char *text = malloc(n);
  memset(text, 'a', n);
  int32_t *ids;
  size_t n_ids;
  twin_err err = {0};
  assert_int_equal(twin_tokenizer_encode(t, text, n, 0, &ids, &n_ids, &err), 0);
  assert_int_equal(n_ids, n / 4);
  for (size_t i = 0; i < n_ids; i++) assert_int_equal(ids[i], 8);
  free(ids);
  free(text);
  twin_tokenizer_destroy(t);
}

static void test_sentencepiece_style(void **state) {
  (void)state;
  twin_tokenizer *t = load(SP_TINY, NULL);
  assert_string_equal(twin_tokenizer_kind_name(t), "sp_bpe");
  assert_int_equal(twin_tokenizer_bos_id(t), 1); /* from the template */
  /* "hi" -> "▁hi" -> ▁ h i -> ▁h i -> ▁hi */
  expect_ids(t, "hi", 0, (const int32_t[]){11, -1});
  expect_ids(t, "hi", 1, (const int32_t[]){1, 11, -1});
  /* the emoji has all four byte tokens; 'x' has none and no single-byte fallback: unknown */
  expect_ids(t, "hi\xF0\x9F\x98\x80", 0, (const int32_t[]){11, 3, 4, 5, 6, -1});
  expect_ids(t, "hixx", 0, (const int32_t[]){11, 0, -1});
  /* text after a special token is normalized on its own, so it gets its own '▁' */
  expect_ids(t, "hi</s>hi", 0, (const int32_t[]){11, 2, 11, -1});
  /* a space before "hi": ▁▁hi -> ▁ then ▁hi */
  expect_ids(t, " hi", 0, (const int32_t[]){7, 11, -1});
  twin_tokenizer_destroy(t);
}

static void test_config_overrides_template(void **state) {
  (void)state;
  twin_tokenizer *t = load(SP_TINY, "{\"add_bos_token\": false, \"add_eos_token\": true,"
                                    " \"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\"}");
  expect_ids(t, "hi", 1, (const int32_t[]){11, 2, -1});
  assert_int_equal(twin_tokenizer_eos_id(t), 2);
  twin_tokenizer_destroy(t);
}

static void test_byte_level(void **state) {
  (void)state;
  twin_tokenizer *t = load(BYTE_TINY, NULL);
  assert_string_equal(twin_tokenizer_kind_name(t), "byte_bpe");
  assert_int_equal(twin_tokenizer_vocab_size(t), 8);
  /* GPT-2 regex: "ab", " abc", " ", "d"; then ' ' -> 'Ġ' and merges Ġ+a, a+b */
  expect_ids(t, "ab abc  d", 0, (const int32_t[]){6, 5, 1, 2, 4, 4, 3, -1});
  expect_ids(t, "a<|end|>b", 0, (const int32_t[]){0, 7, 1, -1});
  const int32_t ids[] = {6, 5, 1, 7, 4, 3};
  expect_decode(t, ids, 6, 0, "ab ab<|end|> d");
  expect_decode(t, ids, 6, TWIN_DECODE_SKIP_SPECIAL, "ab ab d");
  assert_int_equal(twin_tokenizer_token_to_id(t, "<|end|>"), 7);
  assert_int_equal(twin_tokenizer_token_to_id(t, "\xC4\xA0" "a"), 5);
  assert_int_equal(twin_tokenizer_token_to_id(t, "zz"), -1);
  assert_string_equal(twin_tokenizer_id_to_token(t, 5), "\xC4\xA0" "a");
  assert_null(twin_tokenizer_id_to_token(t, 99));
  char piece[8];
  size_t len;
  twin_err err = {0};
  assert_int_equal(twin_tokenizer_token_piece(t, 5, piece, sizeof piece, &len, &err), 0);
  assert_int_equal(len, 2);
  assert_memory_equal(piece, " a", 2);
  assert_int_equal(twin_tokenizer_token_piece(t, 99, piece, sizeof piece, &len, &err), TWIN_ENOTFOUND);
  twin_tokenizer_destroy(t);
}

static void test_encode_into(void **state) {
  (void)state;
  twin_tokenizer *t = load(SP_TINY, NULL);
  int32_t ids[2];
  size_t n;
  twin_err err = {0};
  assert_int_equal(twin_tokenizer_encode_into(t, "hi hi hi", 8, 1, ids, 2, &n, &err), TWIN_EFULL);
  assert_int_equal(n, 4);
  assert_int_equal(ids[0], 1);
  assert_int_equal(ids[1], 11);
  int32_t big[8];
  assert_int_equal(twin_tokenizer_encode_into(t, "hi hi hi", 8, 1, big, 8, &n, &err), 0);
  assert_int_equal(n, 4);
  twin_tokenizer_destroy(t);
}

/* ---- decode and the incremental detokenizer ----------------------------------------------- */

static void test_sp_decode(void **state) {
  (void)state;
  twin_tokenizer *t = load(SP_TINY, NULL);
  const int32_t ids[] = {1, 11, 7, 11, 3, 4, 5, 6, 2};
  expect_decode(t, ids, 9, 0, "<s> hi  hi\xF0\x9F\x98\x80</s>");
  /* skipping <s>: the first token's leading space goes */
  expect_decode(t, ids, 9, TWIN_DECODE_SKIP_SPECIAL, "hi  hi\xF0\x9F\x98\x80");
  const int32_t spaces[] = {7, 7, 11};
  expect_decode(t, spaces, 3, 0, "  hi"); /* ▁▁▁hi: one space stripped */
  const int32_t oob[] = {-5, 11, 1000};
  expect_decode(t, oob, 3, 0, "hi"); /* ids with no token are skipped */
  twin_tokenizer_destroy(t);
}

typedef struct chunk_log {
  char text[256];
  size_t len;
  int calls;
} chunk_log;

static void push_all(twin_detok *d, const int32_t *ids, size_t n, chunk_log *log, const char **expected_chunks) {
  twin_err err = {0};
  for (size_t i = 0; i <= n; i++) {
    const char *text;
    size_t len;
    int rc = i < n ? twin_detok_push(d, ids[i], &text, &len, &err) : twin_detok_flush(d, &text, &len, &err);
    assert_int_equal(rc, 0);
    if (expected_chunks) {
      assert_int_equal(len, strlen(expected_chunks[i]));
      assert_memory_equal(text, expected_chunks[i], len);
    }
    memcpy(log->text + log->len, text, len);
    log->len += len;
    log->calls++;
  }
}

static void test_detok_holds_back_split_characters(void **state) {
  (void)state;
  twin_tokenizer *t = load(SP_TINY, NULL);
  twin_detok *d;
  twin_err err = {0};
  assert_int_equal(twin_detok_create(&d, t, 0, &err), 0);
  const int32_t ids[] = {11, 3, 4, 5, 6, 11};
  const char *chunks[] = {"hi", "", "", "", "\xF0\x9F\x98\x80", " hi", ""};
  chunk_log log = {0};
  push_all(d, ids, 6, &log, chunks);
  assert_int_equal(log.len, strlen("hi\xF0\x9F\x98\x80 hi"));
  /* an unfinished character at the end comes out as U+FFFD on flush */
  twin_detok_reset(d);
  const int32_t cut[] = {11, 3, 4};
  const char *cut_chunks[] = {"hi", "", "", "\xEF\xBF\xBD"};
  chunk_log log2 = {0};
  push_all(d, cut, 3, &log2, cut_chunks);
  /* a byte that cannot continue the character: U+FFFD for the cut part, then the rest */
  twin_detok_reset(d);
  const int32_t bad[] = {3, 11};
  const char *bad_chunks[] = {"", "\xEF\xBF\xBD hi", ""};
  chunk_log log3 = {0};
  push_all(d, bad, 2, &log3, bad_chunks);
  twin_detok_destroy(d);
  twin_tokenizer_destroy(t);
}

static void test_detok_leading_space_and_prime(void **state) {
  (void)state;
  twin_tokenizer *t = load(SP_TINY, NULL);
  twin_detok *d;
  twin_err err = {0};
  /* skipping specials: <s> does not count, so the first "▁hi" loses its space */
  assert_int_equal(twin_detok_create(&d, t, TWIN_DECODE_SKIP_SPECIAL, &err), 0);
  const int32_t ids[] = {1, 11, 11};
  const char *chunks[] = {"", "hi", " hi", ""};
  chunk_log log = {0};
  push_all(d, ids, 3, &log, chunks);
  /* after a prompt, the first generated token keeps its space */
  twin_detok_reset(d);
  const int32_t prompt[] = {1, 11};
  assert_int_equal(twin_detok_prime(d, prompt, 2, &err), 0);
  const int32_t gen[] = {11, 2};
  const char *gen_chunks[] = {" hi", "", ""};
  chunk_log log2 = {0};
  push_all(d, gen, 2, &log2, gen_chunks);
  twin_detok_destroy(d);
  twin_tokenizer_destroy(t);
}

/* ---- building from an in-memory vocabulary ------------------------------------------------ */

static void test_from_vocab_scores(void **state) {
  (void)state;
  /* SentencePiece vocabulary with scores and no merges: "▁hi" outscores "hi" pieces. */
  const char *tokens[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "h", "i", "\xE2\x96\x81h", "\xE2\x96\x81hi", "hi", "<0x21>"};
  const float scores[] = {0, 0, 0, -1, -2, -3, -4, -5, -6, 0};
  const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 6};
  twin_tokenizer_vocab_spec spec = {
      .kind = TWIN_TOKENIZER_SP_BPE, .n_tokens = 10, .tokens = tokens, .scores = scores, .token_types = types,
      .add_space_prefix = 1, .bos_id = 1, .eos_id = 2, .unk_id = 0, .add_bos = 1};
  twin_tokenizer *t;
  twin_err err = {0};
  assert_int_equal(twin_tokenizer_create_from_vocab(&t, &spec, &err), 0);
  /* merges by score: ▁+h (-4) before ▁h+i (-5) before h+i (-6): "hi" -> ▁h i -> ▁hi */
  expect_ids(t, "hi", 1, (const int32_t[]){1, 7, -1});
  /* "ihi": ▁ i h i -> h+i is the only merge not involving ▁i -> ▁ i hi */
  expect_ids(t, "ihi", 0, (const int32_t[]){3, 5, 8, -1});
  expect_ids(t, "hi!</s>", 0, (const int32_t[]){7, 9, 2, -1});
  const int32_t ids[] = {1, 7, 9, 7};
  expect_decode(t, ids, 4, TWIN_DECODE_SKIP_SPECIAL, "hi! hi");
  assert_true(twin_tokenizer_is_special(t, 2));
  assert_false(twin_tokenizer_is_special(t, 7));
  twin_tokenizer_destroy(t);

  spec.scores = NULL;
  assert_int_equal(twin_tokenizer_create_from_vocab(&t, &spec, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "scores"));
}

/* ---- errors ------------------------------------------------------------------------------- */

static void test_missing_file(void **state) {
  (void)state;
  twin_tokenizer *t = NULL;
  twin_err err = {0};
  assert_int_equal(twin_tokenizer_load_dir(&t, "/nonexistent/model", &err), TWIN_ENOTFOUND);
  assert_null(t);
  assert_non_null(strstr(err.msg, "/nonexistent/model/tokenizer.json"));
}

static void test_malformed_json(void **state) {
  (void)state;
  twin_err err = {0};
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\",\n \"vocab\": {\"a\": 0,}}}", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "test.json"));
  assert_non_null(strstr(err.msg, "malformed JSON"));
  assert_non_null(strstr(err.msg, "line 2"));
  assert_int_equal(load_fails("[1, 2]", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "not a JSON object"));
  assert_int_equal(load_fails("", NULL, &err), TWIN_EFORMAT);
}

static void test_unknown_model_type(void **state) {
  (void)state;
  twin_err err = {0};
  assert_int_equal(load_fails("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", NULL, &err), TWIN_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "model.type"));
  assert_non_null(strstr(err.msg, "WordPiece"));
  assert_int_equal(load_fails("{\"normalizer\": null}", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "\"model\""));
}

static void test_bad_model_fields(void **state) {
  (void)state;
  twin_err err = {0};
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},"
                              " \"merges\": [\"a b\"]}}", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "model.merges[0]"));
  assert_non_null(strstr(err.msg, "\"ab\""));
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0},"
                              " \"merges\": [\"a x\"]}}", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "\"x\" is not in the vocabulary"));
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0},"
                              " \"merges\": [\"a a a\"]}}", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "model.merges[0]"));
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", NULL, &err),
                   TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "model.vocab[\"a\"]"));
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [],"
                              " \"unk_token\": \"<unk>\"}}", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "model.unk_token"));
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                              " \"added_tokens\": [{\"id\": \"x\", \"content\": \"<s>\"}]}", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "added_tokens[0].id"));
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                              " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Precompiled\"}]}}",
                              NULL, &err), TWIN_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "normalizer.normalizers[0].type \"Precompiled\""));
  assert_int_equal(load_fails("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                              " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(ab\"},"
                              " \"behavior\": \"Isolated\", \"invert\": false}}", NULL, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "pre_tokenizer.pattern.Regex"));
  assert_non_null(strstr(err.msg, "bad regex"));
}

static void test_bad_config(void **state) {
  (void)state;
  twin_err err = {0};
  assert_int_equal(load_fails(SP_TINY, "{\"bos_token\": \"<nope>\"}", &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "tokenizer_config.json"));
  assert_non_null(strstr(err.msg, "<nope>"));
  assert_int_equal(load_fails(SP_TINY, "{\"add_bos_token\": \"yes\"}", &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "add_bos_token"));
  assert_int_equal(load_fails(SP_TINY, "{\"add_eos_token\": true}", &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "eos_token"));
  assert_int_equal(load_fails(SP_TINY, "{not json", &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "tokenizer_config.json: malformed JSON"));
}

static void test_invalid_utf8(void **state) {
  (void)state;
  twin_tokenizer *t = load(BYTE_TINY, NULL);
  int32_t *ids = NULL;
  size_t n = 0;
  twin_err err = {0};
  const char *cases[] = {"ab\xFF", "ab\xC3", "\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80"};
  const size_t offsets[] = {2, 2, 0, 0, 0};
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(twin_tokenizer_encode(t, cases[i], strlen(cases[i]), 0, &ids, &n, &err), TWIN_EINVAL);
    assert_null(ids);
    char want[64];
    snprintf(want, sizeof want, "byte offset %zu", offsets[i]);
    assert_non_null(strstr(err.msg, want));
  }
  /* NUL is a character: encoded, not rejected (it has no token here and is dropped) */
  assert_int_equal(twin_tokenizer_encode(t, "a\0b", 3, 0, &ids, &n, &err), 0);
  free(ids);
  twin_tokenizer_destroy(t);
}

static void test_load_dir_from_source_tree(void **state) {
  (void)state;
  const char *src = getenv("TWIN_SOURCE_DIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/data/tokenizers/sp_tiny", src ? src : ".");
  twin_tokenizer *t;
  twin_err err = {0};
  if (twin_tokenizer_load_dir(&t, dir, &err)) fail_msg("%s", err.msg);
  assert_int_equal(twin_tokenizer_bos_id(t), twin_tokenizer_token_to_id(t, "<s>"));
  assert_int_equal(twin_tokenizer_eos_id(t), twin_tokenizer_token_to_id(t, "</s>"));
  int32_t *ids;
  size_t n;
  assert_int_equal(twin_tokenizer_encode(t, "the world", 9, 1, &ids, &n, &err), 0);
  assert_true(n >= 3);
  assert_int_equal(ids[0], twin_tokenizer_bos_id(t));
  assert_int_equal(ids[1], twin_tokenizer_token_to_id(t, "\xE2\x96\x81the"));
  assert_int_equal(ids[2], twin_tokenizer_token_to_id(t, "\xE2\x96\x81world"));
  free(ids);
  twin_tokenizer_destroy(t);
}

/* ---- one tokenizer, many threads ---------------------------------------------------------- */

typedef struct encode_job {
  const twin_tokenizer *tok;
  const char *text;
  const int32_t *expected; /* [n_expected] */
  size_t n_expected;
  int mismatches;
} encode_job;

static void *encode_many(void *arg) {
  encode_job *job = arg;
  for (int r = 0; r < 40; r++) {
    int32_t *ids;
    size_t n;
    twin_err err = {0};
    if (twin_tokenizer_encode(job->tok, job->text, strlen(job->text), 1, &ids, &n, &err)) {
      job->mismatches++;
      continue;
    }
    if (n != job->n_expected || memcmp(ids, job->expected, n * sizeof *ids) != 0) job->mismatches++;
    free(ids);
  }
  return NULL;
}

static void test_concurrent_encode(void **state) {
  (void)state;
  twin_tokenizer *t = load(BYTE_TINY, NULL);
  char text[4096];
  size_t len = 0;
  while (len + 24 < sizeof text) len += (size_t)snprintf(text + len, sizeof text - len, "ab abc  d<|end|>cab ");
  int32_t *expected;
  size_t n;
  twin_err err = {0};
  assert_int_equal(twin_tokenizer_encode(t, text, len, 1, &expected, &n, &err), 0);
  encode_job jobs[4];
  pthread_t threads[4];
  for (int i = 0; i < 4; i++) {
    jobs[i] = (encode_job){.tok = t, .text = text, .expected = expected, .n_expected = n};
    assert_int_equal(pthread_create(&threads[i], NULL, encode_many, &jobs[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(threads[i], NULL);
    assert_int_equal(jobs[i].mismatches, 0);
  }
  free(expected);
  twin_tokenizer_destroy(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_merge_order_follows_ranks),
      cmocka_unit_test(test_unknown_symbols),
      cmocka_unit_test(test_long_word),
      cmocka_unit_test(test_sentencepiece_style),
      cmocka_unit_test(test_config_overrides_template),
      cmocka_unit_test(test_byte_level),
      cmocka_unit_test(test_encode_into),
      cmocka_unit_test(test_sp_decode),
      cmocka_unit_test(test_detok_holds_back_split_characters),
      cmocka_unit_test(test_detok_leading_space_and_prime),
      cmocka_unit_test(test_from_vocab_scores),
      cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_malformed_json),
      cmocka_unit_test(test_unknown_model_type),
      cmocka_unit_test(test_bad_model_fields),
      cmocka_unit_test(test_bad_config),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_load_dir_from_source_tree),
      cmocka_unit_test(test_concurrent_encode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
