/* tests/unit/test_common_config.c — common/config: precedence (defaults < environment <
 * command line), every value type and spelling, positional arguments, --help, the usage
 * text, and errors that name the flag and the source of the bad value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/config.h"

/* The destinations of the test table, reset before each test. */
typedef struct settings {
  const char *model;
  const char *backend;
  int port;
  double temperature;
  bool verbose;
  bool cache;
  uint64_t cache_size;
  int64_t timeout_ms;
  const char *redis_url;
} settings;

static settings S;

static const twin_option OPTIONS[] = {
    {"model", "TT_MODEL", TWIN_OPT_STRING, NULL, "Model directory or GGUF file.", &S.model, NULL, "PATH"},
    {"backend", "TT_BACKEND", TWIN_OPT_STRING, "auto", "Compute backend.", &S.backend, "auto|cpu|cuda", NULL},
    {"port", "TT_PORT", TWIN_OPT_INT, "50051", "gRPC port.", &S.port, NULL, NULL},
    {"temperature", "TT_TEMPERATURE", TWIN_OPT_DOUBLE, "0.7", "Sampling temperature.", &S.temperature, NULL, NULL},
    {"verbose", "TT_VERBOSE", TWIN_OPT_BOOL, "false", "Log more.", &S.verbose, NULL, NULL},
    {"cache", "TT_CACHE", TWIN_OPT_BOOL, "true", "Use the prefix cache.", &S.cache, NULL, NULL},
    {"cache-size", "TT_CACHE_SIZE", TWIN_OPT_SIZE, "64M", "KV cache budget.", &S.cache_size, NULL, NULL},
    {"timeout", NULL, TWIN_OPT_DURATION, "30s", "Request deadline.", &S.timeout_ms, NULL, NULL},
    {"redis-url", "TT_REDIS_URL", TWIN_OPT_STRING, "redis://127.0.0.1:6379", "Redis.", &S.redis_url, NULL, NULL},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static const char *const ENV_NAMES[] = {"TT_MODEL", "TT_BACKEND", "TT_PORT", "TT_TEMPERATURE",
                                        "TT_VERBOSE", "TT_CACHE", "TT_CACHE_SIZE", "TT_REDIS_URL"};

static int reset(void **state) {
  (void)state;
  memset(&S, 0, sizeof S);
  for (size_t i = 0; i < sizeof ENV_NAMES / sizeof ENV_NAMES[0]; i++) unsetenv(ENV_NAMES[i]);
  return 0;
}

/* Parses argv (NULL-terminated, argv[0] included) with a fresh config. */
static int parse(twin_config **cfg, twin_err *err, char **argv) {
  int argc = 0;
  while (argv[argc]) argc++;
  *cfg = twin_config_create("tt-svc", "A test service.", OPTIONS, N_OPTIONS);
  assert_non_null(*cfg);
  return twin_config_parse(*cfg, argc, argv, err);
}

static void test_defaults(void **state) {
  (void)state;
  twin_config *cfg;
  twin_err err = {0};
  assert_int_equal(parse(&cfg, &err, (char *[]){"tt", NULL}), 0);
  assert_null(S.model);
  assert_string_equal(S.backend, "auto");
  assert_int_equal(S.port, 50051);
  assert_true(S.temperature == 0.7);
  assert_false(S.verbose);
  assert_true(S.cache);
  assert_true(S.cache_size == 64u << 20);
  assert_int_equal(S.timeout_ms, 30000);
  assert_string_equal(twin_config_source(cfg, "port"), "default");
  assert_null(twin_config_source(cfg, "nope"));
  assert_int_equal(twin_config_n_positional(cfg), 0);
  assert_false(twin_config_help_requested(cfg));
  twin_config_destroy(cfg);
}

static void test_precedence(void **state) {
  (void)state;
  setenv("TT_PORT", "6000", 1);
  setenv("TT_BACKEND", "cpu", 1);
  setenv("TT_CACHE_SIZE", "1G", 1);
  setenv("TT_MODEL", "", 1); /* empty counts as unset */
  twin_config *cfg;
  twin_err err = {0};
  assert_int_equal(parse(&cfg, &err, (char *[]){"tt", "--port", "7000", NULL}), 0);
  assert_int_equal(S.port, 7000);                /* command line beats environment */
  assert_string_equal(S.backend, "cpu");         /* environment beats default */
  assert_true(S.cache_size == 1ull << 30);
  assert_null(S.model);
  assert_string_equal(twin_config_source(cfg, "port"), "command line");
  assert_string_equal(twin_config_source(cfg, "backend"), "environment");
  assert_string_equal(twin_config_source(cfg, "temperature"), "default");
  twin_config_destroy(cfg);
}

static void test_spellings_and_positional(void **state) {
  (void)state;
  setenv("TT_VERBOSE", "yes", 1);
  twin_config *cfg;
  twin_err err = {0};
  char *argv[] = {"tt",         "first",        "--port=8080",   "--temperature", "-0.5",
                  "--no-verbose", "--no-cache", "--cache=on",    "--timeout",     "1.5s",
                  "--model",    "/m/llama",     "-",             "--cache-size=512K",
                  "--",         "--port",       "last",          NULL};
  assert_int_equal(parse(&cfg, &err, argv), 0);
  assert_int_equal(S.port, 8080);
  assert_true(S.temperature == -0.5); /* a value may start with '-' */
  assert_false(S.verbose);            /* --no-verbose beats TT_VERBOSE=yes */
  assert_true(S.cache);               /* later flags win */
  assert_int_equal(S.timeout_ms, 1500);
  assert_string_equal(S.model, "/m/llama");
  assert_true(S.cache_size == 512u * 1024);
  assert_int_equal(twin_config_n_positional(cfg), 4);
  assert_string_equal(twin_config_positional(cfg, 0), "first");
  assert_string_equal(twin_config_positional(cfg, 1), "-");
  assert_string_equal(twin_config_positional(cfg, 2), "--port"); /* after "--" */
  assert_string_equal(twin_config_positional(cfg, 3), "last");
  assert_null(twin_config_positional(cfg, 4));
  twin_config_destroy(cfg);
}

/* Strings are copies owned by the config: argv and the environment may change later. */
static void test_strings_are_copied(void **state) {
  (void)state;
  char value[] = "/models/a";
  setenv("TT_REDIS_URL", "redis://h:1/2", 1);
  twin_config *cfg;
  twin_err err = {0};
  assert_int_equal(parse(&cfg, &err, (char *[]){"tt", "--model", value, NULL}), 0);
  value[1] = 'X';
  setenv("TT_REDIS_URL", "redis://other:1/2", 1);
  assert_string_equal(S.model, "/models/a");
  assert_string_equal(S.redis_url, "redis://h:1/2");
  twin_config_destroy(cfg);
}

static void expect_error(char **argv, const char *message) {
  twin_config *cfg;
  twin_err err = {0};
  assert_int_equal(parse(&cfg, &err, argv), TWIN_EINVAL);
  assert_int_equal(err.code, TWIN_EINVAL);
  assert_string_equal(err.msg, message);
  twin_config_destroy(cfg);
}

static void test_errors(void **state) {
  (void)state;
  expect_error((char *[]){"tt", "--bogus", NULL}, "unknown flag --bogus");
  expect_error((char *[]){"tt", "--bogus=3", NULL}, "unknown flag --bogus");
  expect_error((char *[]){"tt", "-p", "3", NULL}, "unknown flag -p (flags are spelled --name)");
  expect_error((char *[]){"tt", "--port", NULL}, "--port needs a value");
  expect_error((char *[]){"tt", "--model", "--port", "5", NULL}, "--model needs a value");
  expect_error((char *[]){"tt", "--port", "abc", NULL}, "--port: 'abc' is not an integer");
  expect_error((char *[]){"tt", "--port=99999999999", NULL},
               "--port: '99999999999' is out of range for an int");
  expect_error((char *[]){"tt", "--temperature=hot", NULL}, "--temperature: 'hot' is not a finite number");
  expect_error((char *[]){"tt", "--verbose=maybe", NULL},
               "--verbose: 'maybe' is not a boolean (true/false, 1/0, yes/no, on/off)");
  expect_error((char *[]){"tt", "--no-verbose=1", NULL}, "--no-verbose takes no value");
  expect_error((char *[]){"tt", "--no-port", NULL}, "unknown flag --no-port");
  expect_error((char *[]){"tt", "--backend", "tpu", NULL}, "--backend: 'tpu' is not one of auto|cpu|cuda");
  expect_error((char *[]){"tt", "--cache-size", "12Q", NULL},
               "--cache-size: '12Q': unknown size unit 'Q' (B, K, M, G, T)");
  expect_error((char *[]){"tt", "--timeout", "5d", NULL},
               "--timeout: '5d': unknown duration unit 'd' (ms, s, m, h)");
  setenv("TT_PORT", "x1", 1);
  expect_error((char *[]){"tt", NULL}, "TT_PORT (environment, for --port): 'x1' is not an integer");
  /* the command line would override it, but a broken environment is still reported */
  expect_error((char *[]){"tt", "--port", "1", NULL},
               "TT_PORT (environment, for --port): 'x1' is not an integer");
  unsetenv("TT_PORT");
  setenv("TT_BACKEND", "gpu", 1);
  expect_error((char *[]){"tt", NULL}, "TT_BACKEND (environment, for --backend): 'gpu' is not one of auto|cpu|cuda");
}

static void test_table_errors(void **state) {
  (void)state;
  int a = 0, b = 0;
  twin_option dup[] = {{"n", NULL, TWIN_OPT_INT, "1", "", &a, NULL, NULL},
                       {"n", NULL, TWIN_OPT_INT, "2", "", &b, NULL, NULL}};
  twin_err err = {0};
  twin_config *cfg = twin_config_create("x", NULL, dup, 2);
  assert_int_equal(twin_config_parse(cfg, 1, (char *[]){"x", NULL}, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "option --n is declared twice");
  twin_config_destroy(cfg);
  twin_option bad_default[] = {{"n", NULL, TWIN_OPT_INT, "one", "", &a, NULL, NULL}};
  cfg = twin_config_create("x", NULL, bad_default, 1);
  assert_int_equal(twin_config_parse(cfg, 1, (char *[]){"x", NULL}, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "option --n: default: 'one' is not an integer");
  twin_config_destroy(cfg);
}

static void test_help(void **state) {
  (void)state;
  setenv("TT_PORT", "not-a-number", 1); /* --help works even when the rest is broken */
  twin_config *cfg;
  twin_err err = {0};
  assert_int_equal(parse(&cfg, &err, (char *[]){"tt", "--bogus", "--help", NULL}), 0);
  assert_true(twin_config_help_requested(cfg));
  twin_buf out = {0};
  assert_int_equal(twin_config_usage(cfg, &out), 0);
  const char *u = twin_buf_cstr(&out);
  assert_true(twin_str_has_prefix(u, "Usage: tt-svc [options] [args...]\nA test service.\n"));
  assert_non_null(strstr(u, "  --port=INT\n      gRPC port.\n      env: TT_PORT  default: 50051\n"));
  assert_non_null(strstr(u, "  --[no-]verbose\n      Log more.\n      env: TT_VERBOSE  default: false\n"));
  assert_non_null(strstr(u, "  --backend=auto|cpu|cuda\n"));
  assert_non_null(strstr(u, "  --model=PATH\n      Model directory or GGUF file.\n      env: TT_MODEL  default: (none)\n"));
  assert_non_null(strstr(u, "  --timeout=DURATION\n      Request deadline.\n      env: (none)  default: 30s\n"));
  assert_non_null(strstr(u, "  -h, --help\n"));
  /* the FILE form writes the same text */
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  twin_config_print_usage(cfg, tmp);
  rewind(tmp);
  char *printed = calloc(1, out.len + 2);
  assert_int_equal(fread(printed, 1, out.len + 1, tmp), out.len);
  assert_string_equal(printed, u);
  free(printed);
  fclose(tmp);
  twin_buf_free(&out);
  twin_config_destroy(cfg);
  /* -h too, but not after "--" */
  unsetenv("TT_PORT");
  assert_int_equal(parse(&cfg, &err, (char *[]){"tt", "-h", NULL}), 0);
  assert_true(twin_config_help_requested(cfg));
  twin_config_destroy(cfg);
  assert_int_equal(parse(&cfg, &err, (char *[]){"tt", "--", "--help", NULL}), 0);
  assert_false(twin_config_help_requested(cfg));
  assert_string_equal(twin_config_positional(cfg, 0), "--help");
  twin_config_destroy(cfg);
}

static void test_describe_masks_secrets(void **state) {
  (void)state;
  setenv("TT_REDIS_URL", "redis://app:s3cret@redis:6379/1", 1);
  twin_config *cfg;
  twin_err err = {0};
  assert_int_equal(parse(&cfg, &err, (char *[]){"tt", "--verbose", NULL}), 0);
  twin_buf out = {0};
  assert_int_equal(twin_config_describe(cfg, &out), 0);
  const char *d = twin_buf_cstr(&out);
  assert_null(strstr(d, "s3cret"));
  assert_non_null(strstr(d, "redis-url=redis://app:***@redis:6379/1 (environment)\n"));
  assert_non_null(strstr(d, "model=(unset) (default)\n"));
  assert_non_null(strstr(d, "verbose=true (command line)\n"));
  assert_non_null(strstr(d, "cache-size=67108864 (default)\n"));
  assert_non_null(strstr(d, "timeout=30000ms (default)\n"));
  twin_buf_free(&out);
  twin_config_destroy(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_defaults, reset),
      cmocka_unit_test_setup(test_precedence, reset),
      cmocka_unit_test_setup(test_spellings_and_positional, reset),
      cmocka_unit_test_setup(test_strings_are_copied, reset),
      cmocka_unit_test_setup(test_errors, reset),
      cmocka_unit_test_setup(test_table_errors, reset),
      cmocka_unit_test_setup(test_help, reset),
      cmocka_unit_test_setup(test_describe_masks_secrets, reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
