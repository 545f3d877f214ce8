/* tests/unit/test_config.c — config.json / generation_config.json loading: llama, mistral and
 * qwen2 configs as Hugging Face writes them (defaults, GQA, explicit head_dim, llama3 rope
 * scaling, tied embeddings, biases, sliding windows, eos ids merged from both files) and the
 * refusals: unknown architectures, missing or malformed files and fields, and settings that
 * would change the math (rope types, activations, biases) — each error naming file and field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llm-svc/model/config.h"

typedef struct test_dir {
  char path[64];
} test_dir;

static int setup_dir(void **state) {
  test_dir *d = calloc(1, sizeof *d);
  snprintf(d->path, sizeof d->path, "/tmp/twin-cfg-XXXXXX");
  if (!mkdtemp(d->path)) return -1;
  *state = d;
  return 0;
}

static int teardown_dir(void **state) {
  test_dir *d = *state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->path);
  int rc = system(cmd);
  free(d);
  return rc == 0 ? 0 : -1;
}

static void write_file(const test_dir *d, const char *name, const char *text) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", d->path, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void remove_file(const test_dir *d, const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", d->path, name);
  unlink(path);
}

/* Loads d, expecting code; checks the message holds each needle. */
static void expect_error(const test_dir *d, int code, const char *needle1, const char *needle2) {
  twin_model_config cfg;
  twin_err err = {0};
  int rc = twin_config_load_hf(&cfg, d->path, &err);
  if (rc != code) fail_msg("expected %d, got %d: %s", code, rc, err.msg);
  if (needle1 && !strstr(err.msg, needle1)) fail_msg("'%s' not in: %s", needle1, err.msg);
  if (needle2 && !strstr(err.msg, needle2)) fail_msg("'%s' not in: %s", needle2, err.msg);
}

static void load_ok(const test_dir *d, twin_model_config *cfg) {
  twin_err err = {0};
  int rc = twin_config_load_hf(cfg, d->path, &err);
  if (rc != 0) fail_msg("load failed (%d): %s", rc, err.msg);
}

#define LLAMA_BASE                                                                          \
  "\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":64,"  \
  "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"           \
  "\"vocab_size\":1000"

/* ---- accepted configs ---------------------------------------------------------------------- */

static void test_llama_defaults(void **state) {
  write_file(*state, "config.json", "{" LLAMA_BASE "}");
  twin_model_config cfg;
  load_ok(*state, &cfg);
  assert_int_equal(cfg.arch, TWIN_ARCH_LLAMA);
  assert_string_equal(cfg.arch_name, "llama");
  assert_int_equal(cfg.dim, 64);
  assert_int_equal(cfg.hidden_dim, 128);
  assert_int_equal(cfg.n_layers, 2);
  assert_int_equal(cfg.n_heads, 4);
  assert_int_equal(cfg.n_kv_heads, 4);    /* no num_key_value_heads: multi-head */
  assert_int_equal(cfg.head_dim, 16);     /* 64 / 4 */
  assert_int_equal(cfg.max_seq_len, 2048);
  assert_true(cfg.rope_theta == 10000.0f);
  assert_true(cfg.norm_eps == 1e-6f);
  assert_int_equal(cfg.rope_llama3, 0);
  assert_int_equal(cfg.tie_embeddings, 0);
  assert_int_equal(cfg.attn_bias, 0);
  assert_int_equal(cfg.sliding_window, 0);
  assert_int_equal(cfg.bos_id, -1);
  assert_int_equal(cfg.n_eos, 0);
  assert_int_equal(cfg.dtype, TWIN_DT_F32);
}

static void test_llama3_config(void **state) {
  write_file(*state, "config.json",
             "{" LLAMA_BASE ",\"num_key_value_heads\":2,\"head_dim\":32,\"rope_theta\":500000.0,"
             "\"rms_norm_eps\":1e-05,\"max_position_embeddings\":131072,"
             "\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\",\"hidden_act\":\"silu\","
             "\"attention_bias\":false,\"mlp_bias\":false,\"bos_token_id\":128,"
             "\"eos_token_id\":[129,130],\"rope_scaling\":{\"factor\":32.0,"
             "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
             "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}");
  write_file(*state, "generation_config.json",
             "{\"bos_token_id\":1,\"eos_token_id\":[130,131,129],\"temperature\":0.6}");
  twin_model_config cfg;
  load_ok(*state, &cfg);
  assert_int_equal(cfg.n_kv_heads, 2);
  assert_int_equal(cfg.head_dim, 32); /* given, not 64/4 */
  assert_true(cfg.rope_theta == 500000.0f);
  assert_true(cfg.norm_eps == 1e-5f);
  assert_int_equal(cfg.max_seq_len, 131072);
  assert_int_equal(cfg.tie_embeddings, 1);
  assert_int_equal(cfg.dtype, TWIN_DT_BF16);
  assert_int_equal(cfg.rope_llama3, 1);
  assert_true(cfg.rope_factor == 32.0f);
  assert_true(cfg.rope_low_freq_factor == 1.0f);
  assert_true(cfg.rope_high_freq_factor == 4.0f);
  assert_int_equal(cfg.rope_original_max_pos, 8192);
  assert_int_equal(cfg.bos_id, 128); /* config.json's wins */
  assert_int_equal(cfg.n_eos, 3);    /* merged, no repeats, in order of appearance */
  assert_int_equal(cfg.eos_ids[0], 129);
  assert_int_equal(cfg.eos_ids[1], 130);
  assert_int_equal(cfg.eos_ids[2], 131);
}

static void test_rope_parameters_form(void **state) {
  write_file(*state, "config.json",
             "{" LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":250000.0,"
             "\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
             "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":1024}}");
  twin_model_config cfg;
  load_ok(*state, &cfg);
  assert_true(cfg.rope_theta == 250000.0f);
  assert_int_equal(cfg.rope_llama3, 1);
  assert_int_equal(cfg.rope_original_max_pos, 1024);
  write_file(*state, "config.json",
             "{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"default\"}}");
  load_ok(*state, &cfg);
  assert_int_equal(cfg.rope_llama3, 0);
}

static void test_qwen2(void **state) {
  write_file(*state, "config.json",
             "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\","
             "\"hidden_size\":64,\"intermediate_size\":96,\"num_hidden_layers\":3,"
             "\"num_attention_heads\":8,\"num_key_value_heads\":2,\"vocab_size\":500,"
             "\"rope_theta\":1000000.0,\"use_sliding_window\":false,\"sliding_window\":4096,"
             "\"max_window_layers\":21,\"tie_word_embeddings\":true,\"eos_token_id\":7,"
             "\"bos_token_id\":null,\"rope_scaling\":null}");
  twin_model_config cfg;
  load_ok(*state, &cfg);
  assert_int_equal(cfg.arch, TWIN_ARCH_QWEN2);
  assert_int_equal(cfg.attn_bias, 1);
  assert_int_equal(cfg.sliding_window, 0); /* use_sliding_window is false */
  assert_int_equal(cfg.head_dim, 8);
  assert_int_equal(cfg.max_seq_len, 32768);
  assert_int_equal(cfg.n_eos, 1);
  assert_int_equal(cfg.eos_ids[0], 7);
  assert_int_equal(cfg.bos_id, -1);
}

static void test_mistral(void **state) {
  write_file(*state, "config.json",
             "{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\","
             "\"hidden_size\":64,\"intermediate_size\":96,\"num_hidden_layers\":1,"
             "\"num_attention_heads\":4,\"num_key_value_heads\":1,\"vocab_size\":300,"
             "\"sliding_window\":4096,\"head_dim\":null}");
  twin_model_config cfg;
  load_ok(*state, &cfg);
  assert_int_equal(cfg.arch, TWIN_ARCH_MISTRAL);
  assert_int_equal(cfg.sliding_window, 4096);
  assert_int_equal(cfg.head_dim, 16);
  assert_int_equal(cfg.n_kv_heads, 1);
  assert_int_equal(cfg.attn_bias, 0);
  write_file(*state, "config.json",
             "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":96,"
             "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":300,"
             "\"sliding_window\":null}");
  load_ok(*state, &cfg);
  assert_int_equal(cfg.sliding_window, 0);
}

static void test_architecture_only(void **state) {
  write_file(*state, "config.json",
             "{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":64,"
             "\"intermediate_size\":96,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
             "\"vocab_size\":300}");
  twin_model_config cfg;
  load_ok(*state, &cfg);
  assert_int_equal(cfg.arch, TWIN_ARCH_MISTRAL);
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void test_unknown_architecture(void **state) {
  write_file(*state, "config.json",
             "{\"architectures\":[\"GPT2LMHeadModel\"],\"model_type\":\"gpt2\",\"n_embd\":64}");
  expect_error(*state, TWIN_EUNSUPPORTED, "'gpt2'", "'GPT2LMHeadModel'");
  write_file(*state, "config.json",
             "{\"architectures\":[\"LlamaForSequenceClassification\"],\"model_type\":\"llama\","
             "\"hidden_size\":64}");
  expect_error(*state, TWIN_EUNSUPPORTED, "'LlamaForSequenceClassification'", "'llama'");
  write_file(*state, "config.json", "{\"model_type\":\"gemma3\"}");
  expect_error(*state, TWIN_EUNSUPPORTED, "'gemma3'", "config.json");
  write_file(*state, "config.json", "{\"hidden_size\":64}");
  expect_error(*state, TWIN_EFORMAT, "model_type", NULL);
}

static void test_missing_and_malformed_files(void **state) {
  expect_error(*state, TWIN_ENOTFOUND, "config.json", "cannot open");
  write_file(*state, "config.json", "{\"model_type\": \"llama\", ");
  expect_error(*state, TWIN_EFORMAT, "config.json", "malformed");
  write_file(*state, "config.json", "[1]");
  expect_error(*state, TWIN_EFORMAT, "not a JSON object", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE "}");
  write_file(*state, "generation_config.json", "{\"eos_token_id\": [1,");
  expect_error(*state, TWIN_EFORMAT, "generation_config.json", "malformed");
  write_file(*state, "generation_config.json", "{\"eos_token_id\": [1, 5000]}");
  expect_error(*state, TWIN_EFORMAT, "generation_config.json", "eos_token_id");
  remove_file(*state, "generation_config.json");
}

static void test_bad_fields(void **state) {
  write_file(*state, "config.json",
             "{\"model_type\":\"llama\",\"intermediate_size\":128,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":4,\"vocab_size\":1000}");
  expect_error(*state, TWIN_EFORMAT, "missing field 'hidden_size'", "config.json");
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"num_key_value_heads\":3}");
  expect_error(*state, TWIN_EFORMAT, "num_key_value_heads 3", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"num_key_value_heads\":0}");
  expect_error(*state, TWIN_EFORMAT, "'num_key_value_heads'", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"max_position_embeddings\":\"2\"}");
  expect_error(*state, TWIN_EFORMAT, "'max_position_embeddings'", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"head_dim\":15}");
  expect_error(*state, TWIN_EFORMAT, "head_dim 15", "even");
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"rope_theta\":-1}");
  expect_error(*state, TWIN_EFORMAT, "'rope_theta'", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"tie_word_embeddings\":1}");
  expect_error(*state, TWIN_EFORMAT, "'tie_word_embeddings'", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"eos_token_id\":1000}");
  expect_error(*state, TWIN_EFORMAT, "'eos_token_id'", NULL);
  write_file(*state, "config.json",
             "{\"model_type\":\"llama\",\"hidden_size\":66,\"intermediate_size\":128,"
             "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":1000}");
  expect_error(*state, TWIN_EFORMAT, "hidden_size 66", "head_dim");
}

static void test_unsupported_math(void **state) {
  write_file(*state, "config.json",
             "{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}}");
  expect_error(*state, TWIN_EUNSUPPORTED, "'yarn'", NULL);
  write_file(*state, "config.json",
             "{" LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}");
  expect_error(*state, TWIN_EUNSUPPORTED, "'linear'", NULL);
  write_file(*state, "config.json",
             "{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}}");
  expect_error(*state, TWIN_EFORMAT, "original_max_position_embeddings", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"hidden_act\":\"gelu\"}");
  expect_error(*state, TWIN_EUNSUPPORTED, "'gelu'", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"attention_bias\":true}");
  expect_error(*state, TWIN_EUNSUPPORTED, "attention_bias", NULL);
  write_file(*state, "config.json", "{" LLAMA_BASE ",\"mlp_bias\":true}");
  expect_error(*state, TWIN_EUNSUPPORTED, "mlp_bias", NULL);
  write_file(*state, "config.json",
             "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":96,"
             "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":300,"
             "\"use_sliding_window\":true}");
  expect_error(*state, TWIN_EUNSUPPORTED, "use_sliding_window", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_llama_defaults, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_llama3_config, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_rope_parameters_form, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_qwen2, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_mistral, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_architecture_only, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_unknown_architecture, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_missing_and_malformed_files, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_bad_fields, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_unsupported_math, setup_dir, teardown_dir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
