/* tests/unit/test_safetensors.c — the safetensors reader on files written here byte by byte:
 * a valid file (dtypes, shapes, offsets, values), every header lie we check (length past the
 * file, malformed JSON, offsets out of range, overlapping, not matching shape*dtype, unknown
 * dtype, bad shapes, trailing bytes, duplicates), sharded directories with their index, the
 * Llama tensor binding against a config, and the f16/bf16 scalar conversions against values
 * worked out from the IEEE formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llm-svc/model/tensor.h"
#include "llm-svc/model/weights.h"

/* ---- fixtures: a temp directory and file writers ------------------------------------------- */

typedef struct test_dir {
  char path[64];
} test_dir;

static int setup_dir(void **state) {
  test_dir *d = calloc(1, sizeof *d);
  snprintf(d->path, sizeof d->path, "/tmp/twin-st-XXXXXX");
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

static void path_in(char *out, size_t cap, const test_dir *d, const char *name) {
  snprintf(out, cap, "%s/%s", d->path, name);
}

/* Writes [u64 header_len][header][data] with header_len as given (lies included). */
static void write_raw(const char *path, uint64_t header_len, const char *header,
                      const void *data, size_t data_len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)(header_len >> (8 * i));
  assert_int_equal(fwrite(len_bytes, 1, 8, f), 8);
  size_t hl = strlen(header);
  if (hl) assert_int_equal(fwrite(header, 1, hl, f), hl);
  if (data_len) assert_int_equal(fwrite(data, 1, data_len, f), data_len);
  assert_int_equal(fclose(f), 0);
}

static void write_st(const char *path, const char *header, const void *data, size_t data_len) {
  write_raw(path, strlen(header), header, data, data_len);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

/* Opens path expecting failure with code; checks the message contains each of the needles. */
static void expect_open_error(const char *path, int code, const char *needle1,
                              const char *needle2) {
  twin_weights *w = (twin_weights *)0x1;
  twin_err err = {0};
  int rc = twin_weights_open_safetensors_file(&w, path, &err);
  if (rc != code) fail_msg("expected %d, got %d: %s", code, rc, err.msg);
  assert_null(w);
  assert_non_null(strstr(err.msg, path));
  if (needle1 && !strstr(err.msg, needle1)) fail_msg("'%s' not in: %s", needle1, err.msg);
  if (needle2 && !strstr(err.msg, needle2)) fail_msg("'%s' not in: %s", needle2, err.msg);
}

/* ---- a valid file -------------------------------------------------------------------------- */

static void test_valid_file(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "model.safetensors");
  /* a: F32 [2][3] = 0..5, b: BF16 [4] = 1, -2, 0.5, 3, c: F16 [2] = 1, -0.25 */
  unsigned char data[36];
  for (int i = 0; i < 6; i++) {
    float v = (float)i;
    memcpy(data + 4 * i, &v, 4);
  }
  const uint16_t b[4] = {0x3f80, 0xc000, 0x3f00, 0x4040};
  const uint16_t c[2] = {0x3c00, 0xb400};
  memcpy(data + 24, b, 8);
  memcpy(data + 32, c, 4);
  const char *header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"c\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[32,36]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}   ";
  write_st(path, header, data, sizeof data);

  twin_weights *w;
  twin_err err = {0};
  assert_int_equal(twin_weights_open_safetensors_file(&w, path, &err), 0);
  assert_int_equal(twin_weights_count(w), 3);
  assert_string_equal(twin_weights_at(w, 0)->name, "a"); /* name order */
  assert_string_equal(twin_weights_at(w, 2)->name, "c");
  assert_null(twin_weights_at(w, 3));
  assert_null(twin_weights_get(w, "d"));

  const twin_tensor *a = twin_weights_get(w, "a");
  assert_non_null(a);
  assert_int_equal(a->dtype, TWIN_DT_F32);
  assert_int_equal(a->ndim, 2);
  assert_int_equal(a->shape[0], 2);
  assert_int_equal(a->shape[1], 3);
  assert_int_equal(a->nbytes, 24);
  assert_int_equal(a->file_offset, 8 + strlen(header));
  assert_string_equal(a->file, path);
  float out[6];
  assert_int_equal(twin_tensor_to_f32(a, 1, 5, out), 0);
  for (int i = 0; i < 5; i++) assert_true(out[i] == (float)(i + 1));
  assert_int_equal(twin_tensor_to_f32(a, 2, 5, out), TWIN_EINVAL); /* past the end */

  const twin_tensor *bt = twin_weights_get(w, "b");
  assert_int_equal(bt->dtype, TWIN_DT_BF16);
  assert_int_equal(twin_tensor_to_f32(bt, 0, 4, out), 0);
  assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.5f && out[3] == 3.0f);

  const twin_tensor *ct = twin_weights_get(w, "c");
  assert_int_equal(twin_tensor_to_f32(ct, 0, 2, out), 0);
  assert_true(out[0] == 1.0f && out[1] == -0.25f);
  assert_string_equal(twin_weights_source(w), path);
  twin_weights_destroy(w);
}

/* ---- header lies --------------------------------------------------------------------------- */

static void test_too_short(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "short.safetensors");
  write_text(path, "abc");
  expect_open_error(path, TWIN_EFORMAT, "too short", NULL);
}

static void test_header_length_past_file(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "long.safetensors");
  write_raw(path, 1000, "{}", NULL, 0);
  expect_open_error(path, TWIN_EFORMAT, "header length 1000", "runs past the end");
}

static void test_truncated_data(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "trunc.safetensors");
  const float data[2] = {1, 2}; /* the header promises 6 floats */
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", data,
           sizeof data);
  expect_open_error(path, TWIN_EFORMAT, "'w'", "run past the end");
}

static void test_malformed_json(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "bad.safetensors");
  write_st(path, "{\"w\":{\"dtype\":\"F32\",", NULL, 0);
  expect_open_error(path, TWIN_EFORMAT, "malformed", "offset");
}

static void test_not_an_object(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "array.safetensors");
  write_st(path, "[1,2]", NULL, 0);
  expect_open_error(path, TWIN_EFORMAT, "not an object", NULL);
}

static void test_trailing_bytes(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "trail.safetensors");
  const float data[1] = {1};
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}xyz", data, 4);
  expect_open_error(path, TWIN_EFORMAT, "unexpected bytes", NULL);
}

static void test_size_mismatch(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "size.safetensors");
  float data[6] = {0};
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", data,
           sizeof data);
  expect_open_error(path, TWIN_EFORMAT, "'w'", "needs 24");
}

static void test_offsets_reversed(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "rev.safetensors");
  float data[6] = {0};
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", data,
           sizeof data);
  expect_open_error(path, TWIN_EFORMAT, "'w'", "[8, 4]");
}

static void test_overlap(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "overlap.safetensors");
  float data[10] = {0};
  write_st(path,
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}",
           data, sizeof data);
  expect_open_error(path, TWIN_EFORMAT, "overlaps", "'a'");
}

static void test_unknown_dtype(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "dtype.safetensors");
  float data[1] = {0};
  write_st(path, "{\"w\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}", data, 4);
  expect_open_error(path, TWIN_EFORMAT, "unknown dtype 'Q9'", "'w'");
  write_st(path, "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", data, 4);
  expect_open_error(path, TWIN_EUNSUPPORTED, "'F64'", "not supported");
  write_st(path, "{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", data, 4);
  expect_open_error(path, TWIN_EFORMAT, "'dtype'", NULL);
}

static void test_bad_shapes_and_offsets(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "shape.safetensors");
  float data[4] = {0};
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", data, 16);
  expect_open_error(path, TWIN_EFORMAT, "shape[0]", NULL);
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", data, 16);
  expect_open_error(path, TWIN_EFORMAT, "shape[0]", NULL);
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", data, 16);
  expect_open_error(path, TWIN_EFORMAT, "'shape'", NULL);
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}",
           data, 16);
  expect_open_error(path, TWIN_EUNSUPPORTED, "5 dimensions", NULL);
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", data, 16);
  expect_open_error(path, TWIN_EFORMAT, "data_offsets", NULL);
  write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", data, 16);
  expect_open_error(path, TWIN_EFORMAT, "data_offsets", NULL);
  write_st(path,
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
           "\"data_offsets\":[0,4]}}", data, 16);
  expect_open_error(path, TWIN_EFORMAT, "impossibly large", NULL);
  write_st(path, "{\"w\":[1,2]}", data, 16);
  expect_open_error(path, TWIN_EFORMAT, "not an object", "'w'");
  write_st(path, "{}", data, 16);
  expect_open_error(path, TWIN_EFORMAT, "no tensors", NULL);
}

static void test_duplicate_name(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "dup.safetensors");
  float data[2] = {0};
  write_st(path,
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           data, sizeof data);
  twin_weights *w;
  twin_err err = {0};
  assert_int_equal(twin_weights_open_safetensors_file(&w, path, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "appears twice"));
}

static void test_missing_file(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "nope.safetensors");
  expect_open_error(path, TWIN_ENOTFOUND, "cannot open", NULL);
}

/* ---- directories and shards ---------------------------------------------------------------- */

static void write_two_shards(const test_dir *d) {
  char path[128];
  float data[4] = {1, 2, 3, 4};
  path_in(path, sizeof path, d, "s-1.safetensors");
  write_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8);
  path_in(path, sizeof path, d, "s-2.safetensors");
  write_st(path, "{\"y\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", data, 16);
}

static void test_sharded_dir(void **state) {
  const test_dir *d = *state;
  char path[128];
  write_two_shards(d);
  path_in(path, sizeof path, d, "model.safetensors.index.json");
  write_text(path, "{\"metadata\":{\"total_size\":24},"
                   "\"weight_map\":{\"x\":\"s-1.safetensors\",\"y\":\"s-2.safetensors\"}}");
  twin_weights *w;
  twin_err err = {0};
  assert_int_equal(twin_weights_open_safetensors_dir(&w, d->path, &err), 0);
  assert_int_equal(twin_weights_count(w), 2);
  const twin_tensor *y = twin_weights_get(w, "y");
  assert_non_null(y);
  assert_non_null(strstr(y->file, "s-2.safetensors"));
  float out[4];
  assert_int_equal(twin_tensor_to_f32(y, 0, 4, out), 0);
  assert_true(out[3] == 4.0f);
  twin_weights_destroy(w);
}

static void expect_dir_error(const test_dir *d, int code, const char *needle1,
                             const char *needle2) {
  twin_weights *w = (twin_weights *)0x1;
  twin_err err = {0};
  int rc = twin_weights_open_safetensors_dir(&w, d->path, &err);
  if (rc != code) fail_msg("expected %d, got %d: %s", code, rc, err.msg);
  assert_null(w);
  if (needle1 && !strstr(err.msg, needle1)) fail_msg("'%s' not in: %s", needle1, err.msg);
  if (needle2 && !strstr(err.msg, needle2)) fail_msg("'%s' not in: %s", needle2, err.msg);
}

static void test_sharded_dir_errors(void **state) {
  const test_dir *d = *state;
  char index[128];
  expect_dir_error(d, TWIN_ENOTFOUND, "no model.safetensors", NULL);
  write_two_shards(d);
  path_in(index, sizeof index, d, "model.safetensors.index.json");

  write_text(index, "{\"weight_map\":{\"x\":\"s-1.safetensors\",\"y\":\"s-1.safetensors\"}}");
  expect_dir_error(d, TWIN_EFORMAT, "'y'", "s-1.safetensors");
  write_text(index, "{\"weight_map\":{\"x\":\"s-1.safetensors\",\"z\":\"s-2.safetensors\"}}");
  expect_dir_error(d, TWIN_EFORMAT, "'z'", "no shard");
  write_text(index, "{\"weight_map\":{\"x\":\"s-1.safetensors\",\"y\":\"s-3.safetensors\"}}");
  expect_dir_error(d, TWIN_ENOTFOUND, "s-3.safetensors", "'y'");
  write_text(index, "{\"weight_map\":{\"x\":\"../s-1.safetensors\"}}");
  expect_dir_error(d, TWIN_EFORMAT, "must name a file", NULL);
  write_text(index, "{\"weight_map\":{\"x\":3}}");
  expect_dir_error(d, TWIN_EFORMAT, "'x'", NULL);
  write_text(index, "{\"weight_map\":{}}");
  expect_dir_error(d, TWIN_EFORMAT, "weight_map", NULL);
  write_text(index, "{\"weight_map\":");
  expect_dir_error(d, TWIN_EFORMAT, "malformed", NULL);
}

static void test_not_a_dir(void **state) {
  (void)state;
  twin_weights *w;
  twin_err err = {0};
  assert_int_equal(twin_weights_open_safetensors_dir(&w, "/nonexistent/twin", &err),
                   TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "/nonexistent/twin"));
}

/* ---- the Llama binding --------------------------------------------------------------------- */

/* A header of F32 tensors named and shaped as given; offsets laid out one after another. */
typedef struct st_entry {
  const char *name;
  int rows, cols; /* cols 0: 1-D */
} st_entry;

static void write_model(const char *path, const st_entry *entries, int n) {
  char header[8192];
  size_t used = (size_t)snprintf(header, sizeof header, "{");
  size_t offset = 0;
  for (int i = 0; i < n; i++) {
    size_t bytes = (size_t)entries[i].rows * (entries[i].cols ? entries[i].cols : 1) * 4;
    if (entries[i].cols)
      used += (size_t)snprintf(header + used, sizeof header - used,
                               "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                               "\"data_offsets\":[%zu,%zu]}", i ? "," : "", entries[i].name,
                               entries[i].rows, entries[i].cols, offset, offset + bytes);
    else
      used += (size_t)snprintf(header + used, sizeof header - used,
                               "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],"
                               "\"data_offsets\":[%zu,%zu]}", i ? "," : "", entries[i].name,
                               entries[i].rows, offset, offset + bytes);
    offset += bytes;
  }
  snprintf(header + used, sizeof header - used, "}");
  void *data = calloc(1, offset);
  write_st(path, header, data, offset);
  free(data);
}

static twin_model_config tiny_config(void) {
  twin_model_config cfg = {0};
  cfg.arch = TWIN_ARCH_LLAMA;
  snprintf(cfg.arch_name, sizeof cfg.arch_name, "llama");
  cfg.vocab_size = 5;
  cfg.dim = 4;
  cfg.hidden_dim = 6;
  cfg.n_layers = 1;
  cfg.n_heads = 2;
  cfg.n_kv_heads = 1;
  cfg.head_dim = 2;
  cfg.tie_embeddings = 1;
  return cfg;
}

static void test_llama_binding(void **state) {
  char path[128];
  path_in(path, sizeof path, *state, "model.safetensors");
  st_entry entries[] = {
      {"model.embed_tokens.weight", 5, 4},
      {"model.norm.weight", 4, 0},
      {"model.layers.0.input_layernorm.weight", 4, 0},
      {"model.layers.0.self_attn.q_proj.weight", 4, 4},
      {"model.layers.0.self_attn.k_proj.weight", 2, 4},
      {"model.layers.0.self_attn.v_proj.weight", 2, 4},
      {"model.layers.0.self_attn.o_proj.weight", 4, 4},
      {"model.layers.0.post_attention_layernorm.weight", 4, 0},
      {"model.layers.0.mlp.gate_proj.weight", 6, 4},
      {"model.layers.0.mlp.up_proj.weight", 6, 4},
      {"model.layers.0.mlp.down_proj.weight", 4, 6},
  };
  const int n = (int)(sizeof entries / sizeof entries[0]);
  twin_model_config cfg = tiny_config();
  twin_weights *w;
  twin_err err = {0};
  twin_llama_tensors t;

  write_model(path, entries, n);
  assert_int_equal(twin_weights_open_safetensors_file(&w, path, &err), 0);
  assert_int_equal(twin_llama_tensors_bind(&t, w, &cfg, &err), 0);
  assert_ptr_equal(t.lm_head, t.embed);
  assert_string_equal(t.layers[0].w_down->name, "model.layers.0.mlp.down_proj.weight");
  assert_null(t.layers[0].bq);
  twin_llama_tensors_free(&t);

  cfg.tie_embeddings = 0; /* now lm_head.weight is required */
  assert_int_equal(twin_llama_tensors_bind(&t, w, &cfg, &err), TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "'lm_head.weight'"));
  cfg = tiny_config();
  cfg.n_kv_heads = 2; /* k_proj must now be [4][4] */
  assert_int_equal(twin_llama_tensors_bind(&t, w, &cfg, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "'model.layers.0.self_attn.k_proj.weight'"));
  assert_non_null(strstr(err.msg, "[2, 4]"));
  assert_non_null(strstr(err.msg, "[4, 4]"));
  assert_non_null(strstr(err.msg, "offset"));
  assert_non_null(strstr(err.msg, path));
  cfg = tiny_config();
  cfg.attn_bias = 1;
  assert_int_equal(twin_llama_tensors_bind(&t, w, &cfg, &err), TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "'model.layers.0.self_attn.q_proj.bias'"));
  twin_weights_destroy(w);

  entries[9].name = "model.layers.0.mlp.upp_proj.weight"; /* a misspelt checkpoint */
  write_model(path, entries, n);
  assert_int_equal(twin_weights_open_safetensors_file(&w, path, &err), 0);
  cfg = tiny_config();
  assert_int_equal(twin_llama_tensors_bind(&t, w, &cfg, &err), TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "missing tensor 'model.layers.0.mlp.up_proj.weight'"));
  twin_weights_destroy(w);
}

/* ---- scalar conversions -------------------------------------------------------------------- */

static void test_half_conversions(void **state) {
  (void)state;
  /* f16 -> f32: normal, negative, largest, smallest subnormal, inf, NaN */
  assert_true(twin_f16_to_f32(0x3c00) == 1.0f);
  assert_true(twin_f16_to_f32(0xc000) == -2.0f);
  assert_true(twin_f16_to_f32(0x7bff) == 65504.0f);
  assert_true(twin_f16_to_f32(0x0001) == 5.9604644775390625e-8f); /* 2^-24 */
  assert_true(twin_f16_to_f32(0x0400) == 6.103515625e-5f);        /* 2^-14 */
  assert_true(twin_f16_to_f32(0x7c00) > 3e38f);
  float nan16 = twin_f16_to_f32(0x7e00);
  assert_true(nan16 != nan16);
  /* f32 -> f16: exact, round to nearest even, overflow, underflow, subnormals */
  assert_int_equal(twin_f32_to_f16(1.0f), 0x3c00);
  assert_int_equal(twin_f32_to_f16(-0.25f), 0xb400);
  assert_int_equal(twin_f32_to_f16(65504.0f), 0x7bff);
  assert_int_equal(twin_f32_to_f16(65519.0f), 0x7bff);
  assert_int_equal(twin_f32_to_f16(65520.0f), 0x7c00);
  assert_int_equal(twin_f32_to_f16(1e10f), 0x7c00);
  assert_int_equal(twin_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);       /* tie -> even */
  assert_int_equal(twin_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);       /* tie -> even (up) */
  assert_int_equal(twin_f32_to_f16(5.9604644775390625e-8f), 0x0001);  /* 2^-24 */
  assert_int_equal(twin_f32_to_f16(2.98023223876953125e-8f), 0x0000); /* 2^-25: tie -> 0 */
  assert_int_equal(twin_f32_to_f16(8.940696716308594e-8f), 0x0002);   /* 1.5 * 2^-24 -> 2 */
  assert_int_equal(twin_f32_to_f16(-1e-10f), 0x8000);
  /* bf16 */
  assert_true(twin_bf16_to_f32(0x3f80) == 1.0f);
  assert_true(twin_bf16_to_f32(0xc2f7) == -123.5f);
  assert_int_equal(twin_f32_to_bf16(1.0f), 0x3f80);
  assert_int_equal(twin_f32_to_bf16(1.00390625f), 0x3f80); /* 1 + 2^-8: tie -> even */
  assert_int_equal(twin_f32_to_bf16(1.01171875f), 0x3f82); /* 1 + 3*2^-8: tie -> even (up) */
  assert_int_equal(twin_f32_to_bf16(1.0f + 1.0f / 128 + 1.0f / 1024), 0x3f81);
  float nan = twin_bf16_to_f32(twin_f32_to_bf16(__builtin_nanf("")));
  assert_true(nan != nan);
  /* round trips over every f16 finite value */
  for (uint32_t h = 0; h < 0x7c00; h++) {
    assert_int_equal(twin_f32_to_f16(twin_f16_to_f32((uint16_t)h)), h);
    assert_int_equal(twin_f32_to_f16(twin_f16_to_f32((uint16_t)(h | 0x8000))), h | 0x8000);
  }
  assert_string_equal(twin_dtype_name(TWIN_DT_BF16), "bf16");
  assert_int_equal(twin_dtype_size(TWIN_DT_F16), 2);
  assert_int_equal(twin_dtype_size(TWIN_DT_Q4_K), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_valid_file, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_too_short, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_header_length_past_file, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_truncated_data, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_malformed_json, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_not_an_object, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_trailing_bytes, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_size_mismatch, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_offsets_reversed, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_overlap, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_unknown_dtype, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_bad_shapes_and_offsets, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_duplicate_name, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_missing_file, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_sharded_dir, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_sharded_dir_errors, setup_dir, teardown_dir),
      cmocka_unit_test(test_not_a_dir),
      cmocka_unit_test_setup_teardown(test_llama_binding, setup_dir, teardown_dir),
      cmocka_unit_test(test_half_conversions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
