/* tests/unit/test_prompt_template.c — prompt templates: the shipped files load, versions resolve,
 * rendering numbers and attributes chunks, the token budget cuts at a sentence boundary or drops
 * chunks, and malformed files are refused naming the file and line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "business-svc/prompt/template.h"

static twin_prompt_registry *load_shipped(void) {
  const char *src = getenv("TWIN_SOURCE_DIR");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/business-svc/prompt/templates", src ? src : ".");
  twin_prompt_registry *r = NULL;
  twin_err err;
  assert_int_equal(twin_prompt_registry_load(dir, &r, &err), 0);
  return r;
}

static void test_versions(void **state) {
  (void)state;
  twin_prompt_registry *r = load_shipped();
  twin_err err;
  const twin_prompt_template *t = twin_prompt_registry_get(r, "default", &err);
  assert_non_null(t);
  assert_int_equal(t->version, 2);
  t = twin_prompt_registry_get(r, "default@1", &err);
  assert_non_null(t);
  assert_int_equal(t->version, 1);
  assert_null(twin_prompt_registry_get(r, "nope", &err));
  assert_non_null(strstr(err.msg, "nope"));
  assert_non_null(strstr(err.msg, "default@1"));
  twin_prompt_registry_destroy(r);
}

/* One token per word (spaces split), so budgets are easy to reason about. */
static int count_words(void *user, const char *text, size_t len) {
  (void)user;
  int n = 0, in = 0;
  for (size_t i = 0; i < len; i++) {
    int sp = text[i] == ' ' || text[i] == '\n';
    if (!sp && !in) n++;
    in = !sp;
  }
  return n;
}

static void test_render_numbers_and_attributes(void **state) {
  (void)state;
  twin_prompt_registry *r = load_shipped();
  twin_err err;
  const twin_prompt_template *t = twin_prompt_registry_get(r, "default@1", &err);
  twin_prompt_chunk chunks[] = {{"Alpha is first.", "Doc A", "Ann"}, {"Beta is second.", "", "Bob"}, {"Gamma.", "", ""}};
  twin_prompt_render out;
  assert_int_equal(twin_prompt_render_fill(t, "What is beta?", chunks, 3, 0, count_words, NULL, &out, &err), 0);
  assert_int_equal(out.chunks_used, 3);
  assert_string_equal(out.context, "[1] (Doc A, by Ann) Alpha is first.\n\n[2] (by Bob) Beta is second.\n\n[3] Gamma.");
  assert_non_null(strstr(out.user, "Question: What is beta?"));
  assert_non_null(strstr(out.user, "[2] (by Bob) Beta is second."));
  assert_null(strstr(out.user, "{context}"));
  assert_int_equal(out.prompt_tokens, count_words(NULL, out.system, strlen(out.system)) + count_words(NULL, out.user, strlen(out.user)));
  twin_prompt_render_free(&out);
  twin_prompt_registry_destroy(r);
}

static void test_budget_cuts_at_sentence(void **state) {
  (void)state;
  twin_prompt_registry *r = load_shipped();
  twin_err err;
  const twin_prompt_template *t = twin_prompt_registry_get(r, "default@2", &err);
  twin_prompt_chunk chunks[] = {{"One two three. Four five six. Seven eight nine.", "", ""},
                                {"Never included here.", "", ""}};
  twin_prompt_render full;
  assert_int_equal(twin_prompt_render_fill(t, "q?", chunks, 1, 0, count_words, NULL, &full, &err), 0);
  int whole = full.prompt_tokens;
  twin_prompt_render_free(&full);
  /* room for the header "[1]" and two sentences (1 + 6 words) but not the third */
  twin_prompt_render out;
  assert_int_equal(twin_prompt_render_fill(t, "q?", chunks, 2, whole - 3, count_words, NULL, &out, &err), 0);
  assert_int_equal(out.chunks_used, 1);
  assert_int_equal(out.chunks_cut, 1);
  assert_string_equal(out.context, "[1] One two three. Four five six.");
  assert_true(out.prompt_tokens <= whole - 3);
  twin_prompt_render_free(&out);
  /* a budget smaller than the bare prompt is an error naming the query */
  assert_int_equal(twin_prompt_render_fill(t, "q?", chunks, 2, 3, count_words, NULL, &out, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "query"));
  twin_prompt_registry_destroy(r);
}

static void test_malformed_files(void **state) {
  (void)state;
  char dir[] = "/tmp/twin-tmpl-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/bad.v1.tmpl", dir);
  FILE *f = fopen(path, "w");
  fputs("name: bad\nversion: 1\nhello there\n[system]\nx\n[user]\n{question}\n", f);
  fclose(f);
  twin_prompt_registry *r = NULL;
  twin_err err;
  assert_int_equal(twin_prompt_registry_load(dir, &r, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "bad.v1.tmpl:3"));
  f = fopen(path, "w");
  fputs("name: bad\nversion: 1\n[system]\nx\n[user]\nno variable\n", f);
  fclose(f);
  assert_int_equal(twin_prompt_registry_load(dir, &r, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "{question}"));
  unlink(path);
  assert_int_equal(twin_prompt_registry_load(dir, &r, &err), TWIN_ENOTFOUND);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_versions),
      cmocka_unit_test(test_render_numbers_and_attributes),
      cmocka_unit_test(test_budget_cuts_at_sentence),
      cmocka_unit_test(test_malformed_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
