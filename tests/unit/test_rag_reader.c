/* tests/unit/test_rag_reader.c — rag/reader, rag/html_text, rag/document and the hashing
 * encoder of rag/text_encoder on files written here: markdown front matter and titles, JSONL
 * with bad lines reported by file and line while the good ones go on, binary files refused
 * (NUL bytes, invalid UTF-8 past the ratio) and stray invalid bytes replaced, document ids
 * from sources (checked against SHA-256 vectors), the directory walk, HTML to text, and
 * refused URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "business-svc/rag/html_text.h"
#include "business-svc/rag/reader.h"
#include "business-svc/rag/text_encoder.h"
#include "common/util.h"

/* ============================================================================================
 * a scratch directory and a collector of emitted results
 * ========================================================================================== */

typedef struct collected {
  twin_document docs[32];
  size_t n_docs;
  char errors[16][512];
  char error_where[16][256];
  int error_codes[16];
  size_t n_errors;
} collected;

static int collect(void *ctx, twin_document *doc, const char *where, int code, const char *message) {
  collected *c = ctx;
  if (doc) {
    assert_true(c->n_docs < 32);
    c->docs[c->n_docs++] = *doc;
    free(doc);
  } else {
    assert_true(c->n_errors < 16);
    twin_strlcpy(c->errors[c->n_errors], message, sizeof c->errors[0]);
    twin_strlcpy(c->error_where[c->n_errors], where, sizeof c->error_where[0]);
    c->error_codes[c->n_errors++] = code;
  }
  return 0;
}

static void collected_free(collected *c) {
  for (size_t i = 0; i < c->n_docs; i++) twin_document_free(&c->docs[i]);
  memset(c, 0, sizeof *c);
}

/* The group state is the scratch directory (malloc'ed by setup). */
static int setup(void **state) {
  char *dir = strdup("/tmp/twin-reader-XXXXXX");
  if (!dir || !mkdtemp(dir)) return -1;
  *state = dir;
  return 0;
}

static int teardown(void **state) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", (char *)*state);
  free(*state);
  return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *scratch, const char *rel, const char *data, size_t len) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", scratch, rel);
  char *slash = strrchr(path, '/');
  *slash = '\0';
  mkdir(path, 0755);
  *slash = '/';
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

static void read_ok(const char *scratch, const char *rel, const twin_reader_options *o, collected *c) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", scratch, rel);
  twin_err err = {0};
  int rc = twin_read_source(path, o, collect, c, &err);
  if (rc) fail_msg("reading %s failed: %s", path, err.msg);
}

/* The expected id: hex of the first 16 bytes of SHA-256(s), computed with sha256sum. */
static void expected_id(const char *s, char out[33]) {
  char cmd[PATH_MAX + 64];
  snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | sha256sum", s);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  assert_non_null(fgets(out, 33, p));
  pclose(p);
  out[32] = '\0';
}

/* ============================================================================================
 * markdown, text, code
 * ========================================================================================== */

static void test_markdown_front_matter(void **state) {
  const char *scratch = *state;
  const char *md =
      "---\n"
      "id: my-doc-1\n"
      "author: \"Maya Lin\"\n"
      "type: post\n"
      "title: 'Quoted: title'\n"
      "link: https://example.org/x\n"
      "unknown: ignored\n"
      "---\n"
      "# Heading\n\nBody text.\n";
  write_file(scratch, "a.md", md, strlen(md));
  collected c = {0};
  read_ok(scratch, "a.md", NULL, &c);
  assert_int_equal(c.n_docs, 1);
  twin_document *d = &c.docs[0];
  assert_string_equal(d->id, "my-doc-1");
  assert_string_equal(d->author, "Maya Lin");
  assert_int_equal(d->type, TWIN_DOC_POST);
  assert_string_equal(d->title, "Quoted: title");
  assert_string_equal(d->link, "https://example.org/x");
  assert_string_equal(d->text, "# Heading\n\nBody text.\n");
  collected_free(&c);
  /* no front matter: title from the first heading, id from the absolute path, defaults */
  const char *md2 = "Intro line\n\n```\n# not a heading\n```\n## Real Title ##x\n\ntext\n";
  write_file(scratch, "b.md", md2, strlen(md2));
  twin_reader_options o = {.default_author = "ines"};
  read_ok(scratch, "b.md", &o, &c);
  assert_int_equal(c.n_docs, 1);
  assert_string_equal(c.docs[0].title, "Real Title ##x");
  assert_string_equal(c.docs[0].author, "ines");
  assert_int_equal(c.docs[0].type, TWIN_DOC_ARTICLE);
  char abs[PATH_MAX], want[33];
  char rel[300];
  snprintf(rel, sizeof rel, "%s/b.md", scratch);
  assert_non_null(realpath(rel, abs));
  expected_id(abs, want);
  assert_string_equal(c.docs[0].id, want);
  assert_string_equal(c.docs[0].source, rel);
  collected_free(&c);
  /* a bad type in the front matter is an error naming the file */
  const char *md3 = "---\ntype: novel\n---\ntext\n";
  write_file(scratch, "c.md", md3, strlen(md3));
  read_ok(scratch, "c.md", NULL, &c);
  assert_int_equal(c.n_docs, 0);
  assert_int_equal(c.n_errors, 1);
  assert_non_null(strstr(c.errors[0], "c.md: front matter"));
  assert_non_null(strstr(c.errors[0], "novel"));
  collected_free(&c);
  /* an unclosed front matter is text */
  const char *md4 = "---\nauthor: x\nno closing line\n";
  write_file(scratch, "d.md", md4, strlen(md4));
  read_ok(scratch, "d.md", NULL, &c);
  assert_int_equal(c.n_docs, 1);
  assert_string_equal(c.docs[0].text, md4);
  assert_string_equal(c.docs[0].author, "");
  collected_free(&c);
}

static void test_code_and_text_by_extension(void **state) {
  const char *scratch = *state;
  write_file(scratch, "tool.py", "def f():\n    pass\n", 18);
  write_file(scratch, "notes.txt", "just text\n", 10);
  collected c = {0};
  read_ok(scratch, "tool.py", NULL, &c);
  read_ok(scratch, "notes.txt", NULL, &c);
  assert_int_equal(c.n_docs, 2);
  assert_int_equal(c.docs[0].type, TWIN_DOC_CODE);
  assert_string_equal(c.docs[0].title, "tool.py");
  assert_int_equal(c.docs[1].type, TWIN_DOC_ARTICLE);
  collected_free(&c);
  /* an explicit default type wins over the extension */
  twin_reader_options o = {.type_given = true, .default_type = TWIN_DOC_POST};
  read_ok(scratch, "tool.py", &o, &c);
  assert_int_equal(c.docs[0].type, TWIN_DOC_POST);
  collected_free(&c);
  assert_int_equal(twin_format_of_path("x/y.MD"), TWIN_FORMAT_MARKDOWN);
  assert_int_equal(twin_format_of_path("y.ndjson"), TWIN_FORMAT_JSONL);
  assert_int_equal(twin_format_of_path("y.cu"), TWIN_FORMAT_CODE);
  assert_int_equal(twin_format_of_path("README"), TWIN_FORMAT_TEXT);
}

/* ============================================================================================
 * JSONL
 * ========================================================================================== */

static void test_jsonl_lines(void **state) {
  const char *scratch = *state;
  const char *jl =
      "{\"text\": \"first post\", \"author\": \"ana\", \"type\": \"post\", \"link\": \"https://s.example/1\"}\n"
      "\n"
      "{\"text\": \"no closing brace\"\n"
      "{\"author\": \"ana\"}\n"
      "{\"text\": \"typed\", \"type\": \"tweet\"}\n"
      "{\"text\": 42}\n"
      "[1, 2]\n"
      "{\"text\": \"with id\", \"id\": \"given-7\", \"title\": \"T\", \"type\": \"code\"}\n"
      "{\"text\": \"   \"}\n"
      "{\"text\": \"last, no link\"}";
  write_file(scratch, "p.jsonl", jl, strlen(jl));
  collected c = {0};
  twin_reader_options o = {.default_author = "nobody"};
  read_ok(scratch, "p.jsonl", &o, &c);
  assert_int_equal(c.n_docs, 3);
  assert_int_equal(c.n_errors, 6);
  char want[33];
  expected_id("https://s.example/1", want);
  assert_string_equal(c.docs[0].id, want);
  assert_string_equal(c.docs[0].author, "ana");
  assert_int_equal(c.docs[0].type, TWIN_DOC_POST);
  assert_string_equal(c.docs[1].id, "given-7");
  assert_int_equal(c.docs[1].type, TWIN_DOC_CODE);
  assert_string_equal(c.docs[1].title, "T");
  assert_string_equal(c.docs[2].author, "nobody");
  assert_int_equal(c.docs[2].type, TWIN_DOC_ARTICLE);
  /* the last line's id hashes "<absolute path>:10" */
  char rel[300], abs[PATH_MAX], base[PATH_MAX + 8];
  snprintf(rel, sizeof rel, "%s/p.jsonl", scratch);
  assert_non_null(realpath(rel, abs));
  snprintf(base, sizeof base, "%s:10", abs);
  expected_id(base, want);
  assert_string_equal(c.docs[2].id, want);
  char where[320];
  snprintf(where, sizeof where, "%s:10", rel);
  assert_string_equal(c.docs[2].source, where);
  /* every bad line is named with its number */
  const int lines[] = {3, 4, 5, 6, 7, 9};
  const char *what[] = {"not valid JSON", "\"text\" is missing", "tweet", "\"text\" must be a string",
                        "JSON object", "\"text\" is missing or empty"};
  for (int i = 0; i < 6; i++) {
    snprintf(where, sizeof where, "%s:%d", rel, lines[i]);
    assert_string_equal(c.error_where[i], where);
    assert_non_null(strstr(c.errors[i], where));
    if (!strstr(c.errors[i], what[i])) fail_msg("error %d: \"%s\" lacks \"%s\"", i, c.errors[i], what[i]);
  }
  collected_free(&c);
}

/* ============================================================================================
 * binary files
 * ========================================================================================== */

static void test_binary_refused(void **state) {
  const char *scratch = *state;
  char path[256];
  twin_err err = {0};
  collected c = {0};
  const char with_nul[] = "text\0more";
  write_file(scratch, "bin.txt", with_nul, sizeof with_nul - 1);
  snprintf(path, sizeof path, "%s/bin.txt", scratch);
  assert_int_equal(twin_read_source(path, NULL, collect, &c, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "binary"));
  assert_non_null(strstr(err.msg, "offset 4"));
  /* 10% invalid bytes: refused */
  char latin[100];
  for (int i = 0; i < 100; i++) latin[i] = i % 10 == 0 ? (char)0xE9 : 'a';
  write_file(scratch, "latin1.md", latin, sizeof latin);
  snprintf(path, sizeof path, "%s/latin1.md", scratch);
  assert_int_equal(twin_read_source(path, NULL, collect, &c, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "not UTF-8"));
  assert_non_null(strstr(err.msg, "10 of 100"));
  assert_int_equal(c.n_docs, 0);
  /* one stray byte in 1000: read, with U+FFFD in its place */
  char mostly[1000];
  memset(mostly, 'b', sizeof mostly);
  mostly[500] = (char)0xFF;
  write_file(scratch, "mostly.txt", mostly, sizeof mostly);
  read_ok(scratch, "mostly.txt", NULL, &c);
  assert_int_equal(c.n_docs, 1);
  assert_int_equal(c.docs[0].text_len, 1002);
  assert_memory_equal(c.docs[0].text + 500, "\xEF\xBF\xBD", 3);
  collected_free(&c);
  /* missing files and non-files */
  snprintf(path, sizeof path, "%s/nope.md", scratch);
  assert_int_equal(twin_read_source(path, NULL, collect, &c, &err), TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "nope.md"));
  assert_int_equal(twin_read_source("", NULL, collect, &c, &err), TWIN_EINVAL);
  assert_int_equal(twin_read_source("ftp://example.org/x", NULL, collect, &c, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "http"));
}

static void test_directory_walk(void **state) {
  const char *scratch = *state;
  write_file(scratch, "tree/b.md", "bee\n", 4);
  write_file(scratch, "tree/a.txt", "ay\n", 3);
  write_file(scratch, "tree/.hidden.md", "no\n", 3);
  write_file(scratch, "tree/image.png", "\x89PNG\0\0", 6); /* unknown extension: skipped */
  write_file(scratch, "tree/sub/c.jsonl", "{\"text\": \"see\"}\n{bad\n", 21);
  write_file(scratch, "tree/sub/z.txt", "z\0z", 3);         /* binary: an error, the walk goes on */
  char path[256];
  snprintf(path, sizeof path, "%s/tree", scratch);
  collected c = {0};
  twin_err err = {0};
  assert_int_equal(twin_read_source(path, NULL, collect, &c, &err), 0);
  assert_int_equal(c.n_docs, 3);
  assert_string_equal(c.docs[0].text, "ay\n");
  assert_string_equal(c.docs[1].text, "bee\n");
  assert_string_equal(c.docs[2].text, "see");
  assert_int_equal(c.n_errors, 2);
  assert_non_null(strstr(c.errors[0], "sub/c.jsonl:2"));
  assert_non_null(strstr(c.errors[1], "sub/z.txt"));
  assert_non_null(strstr(c.errors[1], "binary"));
  collected_free(&c);
}

/* ============================================================================================
 * HTML
 * ========================================================================================== */

static void test_html_to_text(void **state) {
  const char *scratch = *state;
  const char *html =
      "<!DOCTYPE html><html><head><title> The   Page\n Title </title>"
      "<style>body { color: red }</style><script>var x = 1;</script></head>"
      "<body><nav><a href=/>Home</a> <a href=/about>About</a></nav>"
      "<h1>Main heading</h1>"
      "<p>First   paragraph with <b>bold</b> and\n<a href='#'>a link</a>.</p>"
      "<p>Second<br>line two</p>"
      "<div hidden>hidden text</div><span aria-hidden=\"true\">icon</span>"
      "<ul><li>one</li><li>two <em>items</em></li></ul>"
      "<h2>Code</h2><pre><code>int  main() {\n    return 0;\n}\n</code></pre>"
      "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
      "<p>caf&eacute; &amp; cr&egrave;me &#x1F600;</p>"
      "<script>document.write('x')</script><footer>Footer words</footer>"
      "</body></html>";
  twin_buf text;
  twin_buf_init(&text);
  char *title = NULL;
  twin_err err = {0};
  assert_int_equal(twin_html_to_text(html, strlen(html), NULL, &text, &title, &err), 0);
  assert_string_equal(title, "The Page Title");
  const char *want =
      "# Main heading\n\n"
      "First paragraph with bold and a link.\n\n"
      "Second\nline two\n\n"
      "- one\n- two items\n\n"
      "## Code\n\n"
      "```\nint  main() {\n    return 0;\n}\n```\n\n"
      "a b\nc d\n\n"
      "caf\xC3\xA9 & cr\xC3\xA8me \xF0\x9F\x98\x80\n\n"
      "Footer words";
  assert_string_equal(twin_buf_cstr(&text), want);
  free(title);
  /* broken markup still gives text; a page without a title gives "" */
  twin_buf_reset(&text);
  const char *broken = "<p>unclosed <b>bold<p>next <div>inner";
  assert_int_equal(twin_html_to_text(broken, strlen(broken), NULL, &text, &title, &err), 0);
  assert_string_equal(title, "");
  assert_non_null(strstr(twin_buf_cstr(&text), "unclosed bold"));
  assert_non_null(strstr(twin_buf_cstr(&text), "inner"));
  free(title);
  /* an explicit charset from the transport */
  twin_buf_reset(&text);
  const char latin1[] = "<p>caf\xE9</p>";
  assert_int_equal(twin_html_to_text(latin1, sizeof latin1 - 1, "iso-8859-1", &text, &title, &err), 0);
  assert_string_equal(twin_buf_cstr(&text), "caf\xC3\xA9");
  free(title);
  twin_buf_free(&text);
  /* an .html file is read through the same path */
  write_file(scratch, "page.html", html, strlen(html));
  collected c = {0};
  read_ok(scratch, "page.html", NULL, &c);
  assert_int_equal(c.n_docs, 1);
  assert_string_equal(c.docs[0].title, "The Page Title");
  assert_string_equal(c.docs[0].text, want);
  collected_free(&c);
}

/* ============================================================================================
 * buffers, document ids, the hashing encoder
 * ========================================================================================== */

static void test_buffer_and_ids(void **state) {
  (void)state;
  collected c = {0};
  twin_err err = {0};
  assert_int_equal(twin_read_buffer("upload-1", "", "hello", 5, TWIN_FORMAT_TEXT, NULL, collect, &c, &err), 0);
  char want[33];
  expected_id("upload-1", want);
  assert_string_equal(c.docs[0].id, want);
  assert_string_equal(c.docs[0].source, "upload-1");
  collected_free(&c);
  assert_int_equal(twin_id_validate("ok-id_1.2:3/4", "id", &err), 0);
  assert_int_equal(twin_id_validate("has space", "document id", &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "document id"));
  char long_id[200];
  memset(long_id, 'x', sizeof long_id - 1);
  long_id[199] = '\0';
  assert_int_equal(twin_id_validate(long_id, "id", &err), TWIN_EINVAL);
  assert_int_equal(twin_id_validate("", "id", &err), TWIN_EINVAL);
  twin_document d;
  assert_int_equal(twin_document_init(&d, "bad id", "s", "t", 1, NULL, NULL, NULL, TWIN_DOC_POST, &err),
                   TWIN_EINVAL);
  assert_int_equal(twin_document_init(&d, NULL, "s", "\xFF", 1, NULL, NULL, NULL, TWIN_DOC_POST, &err),
                   TWIN_EINVAL);
  twin_doc_type t;
  assert_int_equal(twin_doc_type_parse("code", &t, &err), 0);
  assert_int_equal(t, TWIN_DOC_CODE);
  assert_int_equal(twin_doc_type_parse("Code", &t, &err), TWIN_EINVAL);
}

static double dot(const float *a, const float *b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static void test_hashing_encoder(void **state) {
  (void)state;
  twin_text_encoder enc;
  twin_err err = {0};
  assert_int_equal(twin_text_encoder_hashing(4, &enc, &err), TWIN_EINVAL);
  assert_int_equal(twin_text_encoder_hashing(256, &enc, &err), 0);
  const char *texts[] = {"The cache holds keys and values", "the CACHE holds keys, and values!",
                         "Sourdough needs a ripe starter", ""};
  float v[4][256];
  assert_int_equal(enc.embed(enc.ctx, texts, 4, &v[0][0], &err), 0);
  assert_true(fabs(dot(v[0], v[0], 256) - 1.0) < 1e-5);
  assert_true(fabs(dot(v[0], v[1], 256) - 1.0) < 1e-5); /* case and punctuation do not matter */
  assert_true(dot(v[0], v[2], 256) < 0.5);
  assert_true(dot(v[3], v[3], 256) == 0.0); /* nothing to embed: zeros */
  const char *null_text[] = {NULL};
  assert_int_equal(enc.embed(enc.ctx, null_text, 1, &v[0][0], &err), TWIN_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_markdown_front_matter),
      cmocka_unit_test(test_code_and_text_by_extension),
      cmocka_unit_test(test_jsonl_lines),
      cmocka_unit_test(test_binary_refused),
      cmocka_unit_test(test_directory_walk),
      cmocka_unit_test(test_html_to_text),
      cmocka_unit_test(test_buffer_and_ids),
      cmocka_unit_test(test_hashing_encoder),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
