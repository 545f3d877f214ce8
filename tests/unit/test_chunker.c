/* tests/unit/test_chunker.c — rag/chunker with a counter whose answer the test knows (one
 * token per whitespace-separated word): chunk sizes, overlap, sentence and paragraph
 * boundaries, headings, coverage of the text, cutting of over-long sentences and words, code
 * split at definitions and blank lines, definition detection, the approximate counter and a
 * WordPiece counter over a tiny vocabulary, and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "business-svc/rag/chunker.h"
#include "common/util.h"

/* ============================================================================================
 * helpers
 * ========================================================================================== */

static int count_words(const char *s, size_t n) {
  int words = 0;
  bool in = false;
  for (size_t i = 0; i < n; i++) {
    bool space = s[i] == ' ' || s[i] == '\n' || s[i] == '\t';
    if (!space && !in) words++;
    in = !space;
  }
  return words;
}

static int word_counter(void *ctx, const char *text, size_t len) {
  (*(int *)ctx)++;
  return count_words(text, len);
}

static twin_chunker_options word_options(int *calls, int max, int overlap) {
  twin_chunker_options o = twin_chunker_default_options();
  for (int t = 0; t < TWIN_DOC_TYPE_COUNT; t++) o.by_type[t] = (twin_chunk_size){max, overlap};
  o.counter.count = word_counter;
  o.counter.ctx = calls;
  return o;
}

typedef struct rng { uint64_t s; } rng;
static uint64_t rng_next(rng *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

/* An article: paragraphs of sentences of words w<paragraph>_<sentence>_<word>. */
static char *make_article(int paragraphs, uint64_t seed) {
  twin_buf b;
  twin_buf_init(&b);
  rng r = {seed};
  for (int p = 0; p < paragraphs; p++) {
    if (p) twin_buf_puts(&b, "\n\n");
    int sentences = 2 + (int)(rng_next(&r) % 6);
    for (int s = 0; s < sentences; s++) {
      if (s) twin_buf_putc(&b, ' ');
      int words = 4 + (int)(rng_next(&r) % 14);
      for (int w = 0; w < words; w++) twin_buf_printf(&b, "%sw%d_%d_%d", w ? " " : "", p, s, w);
      twin_buf_putc(&b, '.');
    }
  }
  return twin_buf_detach(&b, NULL);
}

static void chunk_ok(const char *text, twin_doc_type type, const twin_chunker_options *o,
                     twin_chunk_list *list) {
  twin_err err = {0};
  int rc = twin_chunk_text(text, strlen(text), type, o, list, &err);
  if (rc) fail_msg("chunking failed: %s", err.msg);
}

/* ============================================================================================
 * prose
 * ========================================================================================== */

static void test_sizes_overlap_coverage(void **state) {
  (void)state;
  char *text = make_article(40, 99);
  size_t len = strlen(text);
  int calls = 0;
  twin_chunker_options o = word_options(&calls, 50, 8);
  twin_chunk_list list;
  chunk_ok(text, TWIN_DOC_ARTICLE, &o, &list);
  assert_true(list.n > 10);
  assert_true(calls > 0);
  bool *covered = calloc(len, 1);
  for (size_t i = 0; i < list.n; i++) {
    const twin_chunk *c = &list.items[i];
    assert_int_equal(c->position, (int)i);
    assert_true(c->offset + c->len <= len);
    int words = count_words(text + c->offset, c->len);
    assert_true(words <= 50);
    assert_int_equal(c->n_tokens, words);
    /* every chunk ends a sentence (no sentence here is longer than a chunk) */
    assert_int_equal(text[c->offset + c->len - 1], '.');
    /* and starts one: at the text start or after ". " or a blank line */
    assert_true(c->offset == 0 || text[c->offset - 1] == ' ' || text[c->offset - 1] == '\n');
    if (c->offset) assert_true(text[c->offset - 2] == '.' || text[c->offset - 2] == '\n');
    for (size_t k = 0; k < c->len; k++) covered[c->offset + k] = true;
    if (i) {
      const twin_chunk *p = &list.items[i - 1];
      assert_true(c->offset > p->offset);                /* progress */
      size_t p_end = p->offset + p->len;
      if (c->offset < p_end) assert_true(count_words(text + c->offset, p_end - c->offset) <= 8);
      assert_true(c->offset + c->len > p_end);            /* new text in every chunk */
    }
  }
  for (size_t k = 0; k < len; k++)
    if (text[k] != ' ' && text[k] != '\n') assert_true(covered[k]);
  /* at least some chunks overlap their predecessor */
  int overlapping = 0;
  for (size_t i = 1; i < list.n; i++)
    overlapping += list.items[i].offset < list.items[i - 1].offset + list.items[i - 1].len;
  assert_true(overlapping > 0);
  /* deterministic */
  twin_chunk_list again;
  chunk_ok(text, TWIN_DOC_ARTICLE, &o, &again);
  assert_int_equal(again.n, list.n);
  assert_memory_equal(again.items, list.items, list.n * sizeof *list.items);
  twin_chunk_list_free(&again);
  twin_chunk_list_free(&list);
  free(covered);
  free(text);
}

static void test_no_overlap(void **state) {
  (void)state;
  char *text = make_article(10, 7);
  int calls = 0;
  twin_chunker_options o = word_options(&calls, 40, 0);
  twin_chunk_list list;
  chunk_ok(text, TWIN_DOC_POST, &o, &list);
  for (size_t i = 1; i < list.n; i++)
    assert_true(list.items[i].offset >= list.items[i - 1].offset + list.items[i - 1].len);
  twin_chunk_list_free(&list);
  free(text);
}

static void test_paragraph_boundary_preferred(void **state) {
  (void)state;
  /* two paragraphs of 30 words: with room for 50, the first chunk is the first paragraph */
  twin_buf b;
  twin_buf_init(&b);
  for (int p = 0; p < 2; p++) {
    if (p) twin_buf_puts(&b, "\n\n");
    for (int s = 0; s < 3; s++)
      twin_buf_printf(&b, "%sone two three four five six seven eight nine ten.", s ? " " : "");
  }
  const char *text = twin_buf_cstr(&b);
  int calls = 0;
  twin_chunker_options o = word_options(&calls, 50, 0);
  twin_chunk_list list;
  chunk_ok(text, TWIN_DOC_ARTICLE, &o, &list);
  assert_int_equal(list.n, 2);
  assert_int_equal(list.items[0].n_tokens, 30);
  assert_int_equal(text[list.items[0].offset + list.items[0].len], '\n');
  assert_int_equal(list.items[1].offset, list.items[0].len + 2);
  twin_chunk_list_free(&list);
  twin_buf_free(&b);
}

static void test_headings_stay_with_their_text(void **state) {
  (void)state;
  twin_buf b;
  twin_buf_init(&b);
  for (int sec = 0; sec < 6; sec++) {
    twin_buf_printf(&b, "%s## Section %d\n\n", sec ? "\n\n" : "", sec);
    for (int s = 0; s < 4; s++) twin_buf_printf(&b, "%sa b c d e f g h i.", s ? " " : "");
  }
  const char *text = twin_buf_cstr(&b);
  int calls = 0;
  twin_chunker_options o = word_options(&calls, 30, 0);
  twin_chunk_list list;
  chunk_ok(text, TWIN_DOC_ARTICLE, &o, &list);
  for (size_t i = 0; i < list.n; i++) {
    const twin_chunk *c = &list.items[i];
    /* the last line of a chunk is never a heading */
    const char *end = text + c->offset + c->len;
    const char *line = end;
    while (line > text + c->offset && line[-1] != '\n') line--;
    assert_true(line[0] != '#');
  }
  /* "#hashtag" in a post is not a heading: the text stays one chunk */
  twin_chunk_list post;
  chunk_ok("#hashtag first. second sentence.", TWIN_DOC_POST, &o, &post);
  assert_int_equal(post.n, 1);
  twin_chunk_list_free(&post);
  twin_chunk_list_free(&list);
  twin_buf_free(&b);
}

static void test_long_sentence_and_word(void **state) {
  (void)state;
  /* one sentence of 130 words: cut at word boundaries into pieces of at most 50 */
  twin_buf b;
  twin_buf_init(&b);
  for (int w = 0; w < 130; w++) twin_buf_printf(&b, "%sword%d", w ? " " : "", w);
  twin_buf_putc(&b, '.');
  const char *text = twin_buf_cstr(&b);
  int calls = 0;
  twin_chunker_options o = word_options(&calls, 50, 0);
  twin_chunk_list list;
  chunk_ok(text, TWIN_DOC_ARTICLE, &o, &list);
  assert_int_equal(list.n, 3);
  int total = 0;
  for (size_t i = 0; i < list.n; i++) {
    int words = count_words(text + list.items[i].offset, list.items[i].len);
    assert_true(words <= 50);
    total += words;
    char before = list.items[i].offset ? text[list.items[i].offset - 1] : ' ';
    assert_int_equal(before, ' '); /* cut between words */
  }
  assert_int_equal(total, 130);
  twin_chunk_list_free(&list);
  /* a "word" of 300 comma-separated letters is ~600 approximate tokens: cut hard */
  twin_buf_reset(&b);
  for (int i = 0; i < 300; i++) twin_buf_puts(&b, "x,");
  twin_chunker_options approx = twin_chunker_default_options();
  approx.by_type[TWIN_DOC_ARTICLE] = (twin_chunk_size){64, 0};
  chunk_ok(twin_buf_cstr(&b), TWIN_DOC_ARTICLE, &approx, &list);
  assert_true(list.n >= 10);
  size_t covered = 0;
  for (size_t i = 0; i < list.n; i++) {
    assert_true(twin_token_count_approx(b.data + list.items[i].offset, list.items[i].len) <= 64);
    assert_int_equal(list.items[i].offset, covered);
    covered += list.items[i].len;
  }
  assert_int_equal(covered, b.len);
  twin_chunk_list_free(&list);
  twin_buf_free(&b);
}

static void test_fenced_block_in_prose(void **state) {
  (void)state;
  const char *text =
      "Intro sentence here.\n\n"
      "```\n"
      "line one of code\n"
      "\n"
      "line two of code\n"
      "```\n\n"
      "Closing words.";
  int calls = 0;
  twin_chunker_options o = word_options(&calls, 100, 0);
  twin_chunk_list list;
  chunk_ok(text, TWIN_DOC_ARTICLE, &o, &list);
  assert_int_equal(list.n, 1);
  assert_int_equal(list.items[0].len, strlen(text));
  twin_chunk_list_free(&list);
}

/* ============================================================================================
 * code
 * ========================================================================================== */

static void test_code_split_at_definitions(void **state) {
  (void)state;
  twin_buf b;
  twin_buf_init(&b);
  twin_buf_puts(&b, "import os\nimport sys\n\n");
  for (int f = 0; f < 3; f++) {
    twin_buf_printf(&b, "%s@decorator%d\ndef function_%d(a, b):\n", f ? "\n" : "", f, f);
    for (int l = 0; l < 8; l++) twin_buf_printf(&b, "    x%d = a + b + %d\n", l, l);
  }
  const char *text = twin_buf_cstr(&b);
  int calls = 0;
  twin_chunker_options o = word_options(&calls, 100, 0);
  twin_chunk_list list;
  chunk_ok(text, TWIN_DOC_CODE, &o, &list);
  assert_int_equal(list.n, 3);
  /* the imports are too small for a chunk of their own: they join the first function */
  assert_true(twin_str_has_prefix(text + list.items[0].offset, "import os"));
  assert_true(twin_str_has_prefix(text + list.items[1].offset, "@decorator1\ndef function_1"));
  assert_true(twin_str_has_prefix(text + list.items[2].offset, "@decorator2\ndef function_2"));
  /* code keeps its indentation: the chunk text is the source lines */
  assert_non_null(strstr(text + list.items[2].offset, "\n    x7 = a + b + 7"));
  twin_chunk_list_free(&list);
  /* one long function: cut at blank lines, never inside a block */
  twin_buf_reset(&b);
  twin_buf_puts(&b, "int long_function(void) {\n");
  for (int blk = 0; blk < 6; blk++) {
    for (int l = 0; l < 4; l++) twin_buf_printf(&b, "  value_%d_%d = compute(%d, %d);\n", blk, l, blk, l);
    twin_buf_puts(&b, "\n");
  }
  twin_buf_puts(&b, "}\n");
  text = twin_buf_cstr(&b);
  o = word_options(&calls, 40, 0);
  chunk_ok(text, TWIN_DOC_CODE, &o, &list);
  assert_true(list.n >= 3);
  for (size_t i = 0; i < list.n; i++) {
    assert_true(list.items[i].n_tokens <= 40);
    size_t end = list.items[i].offset + list.items[i].len;
    if (i + 1 < list.n) assert_true(twin_str_has_prefix(text + end, "\n\n")); /* a blank line follows */
  }
  twin_chunk_list_free(&list);
  twin_buf_free(&b);
}

static void test_definition_detection(void **state) {
  (void)state;
  const char *yes[] = {"def f(x):", "async def g():", "class A(B):", "fn main() {", "pub fn new() -> Self {",
                       "func (s *S) Run() error {", "function go() {", "struct point {", "impl Foo for Bar {",
                       "int main(int argc, char **argv) {", "static void helper(void)",
                       "const char *name_of(int x)", "export function f() {", "typedef struct x {"};
  const char *no[] = {"    def indented(self):", "x = f(y)", "if (a) {", "return f(x);", "foo(bar);",
                      "", "# comment", "int x;", "for (i = 0; i < n; i++) {", "} else {", "printf(\"x\")"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
    if (!twin_chunk_is_definition(yes[i], strlen(yes[i]))) fail_msg("not seen as a definition: %s", yes[i]);
  for (size_t i = 0; i < sizeof no / sizeof *no; i++)
    if (twin_chunk_is_definition(no[i], strlen(no[i]))) fail_msg("seen as a definition: %s", no[i]);
}

/* ============================================================================================
 * counters and bad input
 * ========================================================================================== */

static void test_approx_counter(void **state) {
  (void)state;
  assert_int_equal(twin_token_count_approx("", 0), 0);
  assert_int_equal(twin_token_count_approx("hello world", 11), 2);
  assert_int_equal(twin_token_count_approx("retrieval", 9), 2); /* 9 letters: 2 pieces of 6 */
  assert_int_equal(twin_token_count_approx("a,b", 3), 3);
  assert_int_equal(twin_token_count_approx("\xE4\xB8\xAD\xE6\x96\x87", 6), 2); /* 中文 */
  assert_int_equal(twin_token_count_approx("caf\xC3\xA9 au lait", 13), 3);
  assert_int_equal(twin_token_count_approx("  \n\t ", 5), 0);
}

static void test_wordpiece_counter(void **state) {
  (void)state;
  char dir[] = "/tmp/twin-chunker-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\nthe\n.\n", f);
  fclose(f);
  twin_wordpiece *wp = NULL;
  twin_err err = {0};
  assert_int_equal(twin_wordpiece_open_vocab(&wp, path, NULL, &err), 0);
  twin_token_counter c = twin_token_counter_wordpiece(wp);
  /* hello | world ##s | . | the | [UNK] */
  const char *text = "Hello worlds. The zebra";
  assert_int_equal(c.count(c.ctx, text, strlen(text)), 6);
  assert_int_equal(c.count(c.ctx, "", 0), 0);
  /* the chunker with it: sentences of 4 (hello world ##s .), 3 and 3 pieces, max 6 */
  twin_chunker_options o = twin_chunker_default_options();
  o.by_type[TWIN_DOC_POST] = (twin_chunk_size){6, 0};
  o.counter = c;
  twin_chunk_list list;
  chunk_ok("hello worlds. the world. hello hello.", TWIN_DOC_POST, &o, &list);
  assert_int_equal(list.n, 2);
  assert_int_equal(list.items[0].n_tokens, 4);
  assert_int_equal(list.items[1].n_tokens, 6);
  twin_chunk_list_free(&list);
  twin_wordpiece_destroy(wp);
  unlink(path);
  rmdir(dir);
}

static int failing_counter(void *ctx, const char *text, size_t len) {
  (void)ctx;
  (void)text;
  (void)len;
  return TWIN_EIO;
}

static void test_bad_input(void **state) {
  (void)state;
  twin_chunk_list list;
  twin_err err = {0};
  twin_chunker_options o = twin_chunker_default_options();
  assert_int_equal(twin_chunk_text("", 0, TWIN_DOC_POST, &o, &list, &err), 0);
  assert_int_equal(list.n, 0);
  assert_int_equal(twin_chunk_text(" \n\n \t", 5, TWIN_DOC_ARTICLE, &o, &list, &err), 0);
  assert_int_equal(list.n, 0);
  assert_int_equal(twin_chunk_text("ab\xFF", 3, TWIN_DOC_POST, &o, &list, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "byte 2"));
  o.by_type[TWIN_DOC_CODE] = (twin_chunk_size){10, 5};
  assert_int_equal(twin_chunk_text("x", 1, TWIN_DOC_CODE, &o, &list, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "code"));
  assert_int_equal(twin_chunk_text("x", 1, (twin_doc_type)5, &o, &list, &err), TWIN_EINVAL);
  /* a counter that fails: its code comes back */
  twin_chunker_options failing = twin_chunker_default_options();
  failing.counter.count = failing_counter;
  assert_int_equal(twin_chunk_text("fine.", 5, TWIN_DOC_POST, &failing, &list, &err), TWIN_EIO);
  assert_non_null(strstr(err.msg, "counting tokens"));
  assert_null(list.items);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_overlap_coverage),
      cmocka_unit_test(test_no_overlap),
      cmocka_unit_test(test_paragraph_boundary_preferred),
      cmocka_unit_test(test_headings_stay_with_their_text),
      cmocka_unit_test(test_long_sentence_and_word),
      cmocka_unit_test(test_fenced_block_in_prose),
      cmocka_unit_test(test_code_split_at_definitions),
      cmocka_unit_test(test_definition_detection),
      cmocka_unit_test(test_approx_counter),
      cmocka_unit_test(test_wordpiece_counter),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
