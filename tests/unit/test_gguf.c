/* tests/unit/test_gguf.c — the GGUF reader on files written here byte by byte: every metadata
 * value type (scalars, strings, arrays of numbers, strings and arrays) read back through the
 * typed getters; tensor infos (shapes reversed, offsets, alignment from general.alignment);
 * every lie we check (magic, version, truncation at each byte of the header and metadata,
 * counts, string lengths, value and tensor types, dimensions, offsets past the end, overlaps,
 * misalignment, duplicates) refused with a message naming the file, the key or tensor and the
 * offset, and no read outside the file (run under ASan too); the GGUF -> Hugging Face names;
 * the config of a llama and a gemma3 file; and the llama q/k row order restored by the weight
 * set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llm-svc/model/gguf.h"
#include "llm-svc/model/weights.h"

/* ---- a byte buffer writer ------------------------------------------------------------------ */

typedef struct wbuf {
  uint8_t *data;
  size_t len, cap;
} wbuf;

static void put(wbuf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 64;
    b->data = realloc(b->data, b->cap);
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}
static void put_u32(wbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(wbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(wbuf *b, const char *s) {
  put_u64(b, strlen(s));
  put(b, s, strlen(s));
}
static void put_key(wbuf *b, const char *key, uint32_t type) {
  put_str(b, key);
  put_u32(b, type);
}
static void pad_to(wbuf *b, size_t align) {
  static const uint8_t zero[64] = {0};
  while (b->len % align) put(b, zero, 1);
}

/* ---- a small valid file -------------------------------------------------------------------- */

typedef struct test_file {
  char dir[64], path[128];
  wbuf b;
  size_t kv_name_at;      /* offset of general.name's entry */
  size_t kv_array_at;     /* offset of the u32 array entry */
  size_t info_at[3];      /* offsets of the tensor infos */
  size_t data_at;
} test_file;

enum { DIM = 32, ROWS = 4 };

/* A llama file with 3 tensors: token_embd [ROWS][DIM] q8_0, blk.0.attn_q.weight [DIM][DIM] f32,
 * output_norm [DIM] f32, and metadata of every type. alignment 0 = default (32). */
static void build(test_file *f, uint32_t alignment) {
  wbuf *b = &f->b;
  b->len = 0;
  put(b, "GGUF", 4);
  put_u32(b, 3);
  put_u64(b, 3);                         /* tensors */
  put_u64(b, alignment ? 13 : 12);       /* metadata entries */
  put_key(b, "general.architecture", 8);
  put_str(b, "llama");
  f->kv_name_at = b->len;
  put_key(b, "general.name", 8);
  put_str(b, "tiny");
  put_key(b, "t.u8", 0); put(b, (uint8_t[]){200}, 1);
  put_key(b, "t.i16", 3); put(b, (int16_t[]){-300}, 2);
  put_key(b, "t.f64", 12); put(b, (double[]){2.5}, 8);
  put_key(b, "t.bool", 7); put(b, (uint8_t[]){1}, 1);
  put_key(b, "t.i64", 11); put(b, (int64_t[]){-5000000000LL}, 8);
  f->kv_array_at = b->len;
  put_key(b, "t.u32s", 9); put_u32(b, 4); put_u64(b, 3);
  put_u32(b, 7); put_u32(b, 8); put_u32(b, 9);
  put_key(b, "t.strings", 9); put_u32(b, 8); put_u64(b, 2);
  put_str(b, "one"); put_str(b, "two!");
  put_key(b, "t.nested", 9); put_u32(b, 9); put_u64(b, 2);  /* array of arrays of f32 */
  put_u32(b, 6); put_u64(b, 1); put(b, (float[]){1.5f}, 4);
  put_u32(b, 6); put_u64(b, 2); put(b, (float[]){2.5f, 3.5f}, 8);
  put_key(b, "llama.attention.head_count", 4); put_u32(b, 2);
  put_key(b, "llama.attention.head_count_kv", 4); put_u32(b, 1);
  if (alignment) {
    put_key(b, "general.alignment", 4);
    put_u32(b, alignment);
  }
  const uint32_t align = alignment ? alignment : 32;
  const size_t embed_bytes = ROWS * (DIM / 32) * 34, q_bytes = DIM * DIM * 4;
  const size_t q_off = (embed_bytes + align - 1) / align * align;
  const size_t norm_off = q_off + (q_bytes + align - 1) / align * align;
  f->info_at[0] = b->len;
  put_str(b, "token_embd.weight"); put_u32(b, 2); put_u64(b, DIM); put_u64(b, ROWS);
  put_u32(b, 8); put_u64(b, 0);
  f->info_at[1] = b->len;
  put_str(b, "blk.0.attn_q.weight"); put_u32(b, 2); put_u64(b, DIM); put_u64(b, DIM);
  put_u32(b, 0); put_u64(b, q_off);
  f->info_at[2] = b->len;
  put_str(b, "output_norm.weight"); put_u32(b, 1); put_u64(b, DIM);
  put_u32(b, 0); put_u64(b, norm_off);
  pad_to(b, align);
  f->data_at = b->len;
  /* token_embd: q8_0 blocks with d = 1.0 and codes row*32 + j - 64 */
  for (int r = 0; r < ROWS; r++) {
    uint16_t d = 0x3c00;
    put(b, &d, 2);
    for (int j = 0; j < 32; j++) {
      int8_t q = (int8_t)(r * 32 + j - 64);
      put(b, &q, 1);
    }
  }
  pad_to(b, align);
  for (int i = 0; i < DIM * DIM; i++) put(b, (float[]){(float)i}, 4); /* row r = values 32r.. */
  pad_to(b, align);
  for (int i = 0; i < DIM; i++) put(b, (float[]){0.5f + i}, 4);
}

static void write_bytes(const char *path, const uint8_t *p, size_t n) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  if (n) assert_int_equal(fwrite(p, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

static int setup(void **state) {
  test_file *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/twin-gguf-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  snprintf(f->path, sizeof f->path, "%s/m.gguf", f->dir);
  build(f, 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  test_file *f = *state;
  unlink(f->path);
  rmdir(f->dir);
  free(f->b.data);
  free(f);
  return 0;
}

/* Writes the file with edits: (offset, bytes) patches, then cut to `length` (0: whole). */
static void write_patched(const test_file *f, size_t at, const void *bytes, size_t n, size_t length) {
  uint8_t *copy = malloc(f->b.len);
  memcpy(copy, f->b.data, f->b.len);
  if (n) memcpy(copy + at, bytes, n);
  write_bytes(f->path, copy, length ? length : f->b.len);
  free(copy);
}

static void expect_open_error(const test_file *f, int code, const char *needle1,
                              const char *needle2) {
  twin_gguf *g = NULL;
  twin_err err = {0};
  int rc = twin_gguf_open(&g, f->path, &err);
  if (rc != code) fail_msg("expected %d, got %d: %s", code, rc, err.msg);
  assert_null(g);
  if (!strstr(err.msg, f->path)) fail_msg("the file is not named: %s", err.msg);
  if (needle1 && !strstr(err.msg, needle1)) fail_msg("'%s' not in: %s", needle1, err.msg);
  if (needle2 && !strstr(err.msg, needle2)) fail_msg("'%s' not in: %s", needle2, err.msg);
}

/* ---- reading a valid file ------------------------------------------------------------------ */

static void test_metadata_values(void **state) {
  test_file *f = *state;
  write_bytes(f->path, f->b.data, f->b.len);
  twin_gguf *g;
  twin_err err = {0};
  assert_int_equal(twin_gguf_open(&g, f->path, &err), 0);
  assert_int_equal(twin_gguf_version(g), 3);
  assert_int_equal(twin_gguf_alignment(g), 32);
  assert_int_equal(twin_gguf_kv_count(g), 12);
  int64_t i;
  double d;
  int flag;
  assert_int_equal(twin_gguf_get_int(g, "t.u8", 0, 255, &i, &err), 0);
  assert_int_equal(i, 200);
  assert_int_equal(twin_gguf_get_int(g, "t.i16", -1000, 0, &i, &err), 0);
  assert_int_equal(i, -300);
  assert_int_equal(twin_gguf_get_int(g, "t.i64", INT64_MIN, 0, &i, &err), 0);
  assert_true(i == -5000000000LL);
  assert_int_equal(twin_gguf_get_int(g, "t.u8", 0, 100, &i, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "t.u8"));
  assert_int_equal(twin_gguf_get_float(g, "t.f64", &d, &err), 0);
  assert_true(d == 2.5);
  assert_int_equal(twin_gguf_get_bool(g, "t.bool", &flag, &err), 0);
  assert_int_equal(flag, 1);
  assert_int_equal(twin_gguf_get_bool(g, "t.u8", &flag, &err), TWIN_EFORMAT);
  assert_non_null(strstr(err.msg, "is u8, not a bool"));
  assert_int_equal(twin_gguf_get_int(g, "absent", 0, 1, &i, &err), TWIN_ENOTFOUND);
  char *s;
  assert_int_equal(twin_gguf_get_string_dup(g, "general.name", &s, &err), 0);
  assert_string_equal(s, "tiny");
  free(s);
  int32_t *a;
  size_t n;
  assert_int_equal(twin_gguf_get_i32_array(g, "t.u32s", &a, &n, &err), 0);
  assert_int_equal(n, 3);
  assert_int_equal(a[0] + a[1] + a[2], 24);
  free(a);
  char **strings;
  assert_int_equal(twin_gguf_get_string_array(g, "t.strings", &strings, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(strings[0], "one");
  assert_string_equal(strings[1], "two!");
  free(strings);
  assert_int_equal(twin_gguf_get_string_array(g, "t.u32s", &strings, &n, &err), TWIN_EFORMAT);
  float *fl;
  assert_int_equal(twin_gguf_get_f32_array(g, "t.nested", &fl, &n, &err), TWIN_EFORMAT);
  const twin_gguf_kv *kv = twin_gguf_find(g, "t.nested");
  assert_non_null(kv);
  assert_int_equal(kv->type, TWIN_GGUF_ARRAY);
  assert_int_equal(kv->elem_type, TWIN_GGUF_ARRAY);
  assert_int_equal(kv->count, 2);
  twin_gguf_close(g);
}

static void test_tensor_infos(void **state) {
  test_file *f = *state;
  for (uint32_t alignment = 0; alignment <= 64; alignment += 64) {
    build(f, alignment);
    write_bytes(f->path, f->b.data, f->b.len);
    twin_gguf *g;
    twin_err err = {0};
    assert_int_equal(twin_gguf_open(&g, f->path, &err), 0);
    assert_int_equal(twin_gguf_alignment(g), alignment ? alignment : 32);
    assert_int_equal(twin_gguf_data_offset(g), f->data_at);
    assert_int_equal(twin_gguf_tensor_count(g), 3);
    const twin_tensor *e = twin_gguf_tensor_find(g, "token_embd.weight");
    assert_non_null(e);
    assert_int_equal(e->dtype, TWIN_DT_Q8_0);
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[0], ROWS); /* outermost first */
    assert_int_equal(e->shape[1], DIM);
    assert_int_equal(e->nbytes, ROWS * 34);
    assert_int_equal(e->file_offset, f->data_at);
    float row[DIM];
    assert_int_equal(twin_tensor_to_f32(e, 2 * DIM, DIM, row), 0);
    for (int j = 0; j < DIM; j++) assert_float_equal(row[j], 2 * 32 + j - 64, 0);
    const twin_tensor *n = twin_gguf_tensor_find(g, "output_norm.weight");
    assert_int_equal(n->ndim, 1);
    assert_int_equal(n->file_offset % (alignment ? alignment : 32), 0);
    twin_gguf_close(g);
  }
  build(f, 0);
}

/* ---- corrupt files ------------------------------------------------------------------------- */

static void test_bad_header(void **state) {
  test_file *f = *state;
  write_patched(f, 0, "GGUX", 4, 0);
  expect_open_error(f, TWIN_EFORMAT, "not a GGUF file", "offset 0");
  write_patched(f, 4, (uint32_t[]){1}, 4, 0);
  expect_open_error(f, TWIN_EUNSUPPORTED, "version 1", NULL);
  write_patched(f, 16, (uint64_t[]){1ull << 40}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "metadata entries", "offset 16");
  write_patched(f, 8, (uint64_t[]){1ull << 40}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "tensors", NULL);
  write_bytes(f->path, f->b.data, 10);
  expect_open_error(f, TWIN_EFORMAT, "too short", NULL);
  write_bytes(f->path, NULL, 0);
  expect_open_error(f, TWIN_EFORMAT, "0 bytes", NULL);
}

/* Every cut through the header, metadata and tensor infos is an error, never a crash. */
static void test_truncated_everywhere(void **state) {
  test_file *f = *state;
  for (size_t len = 24; len < f->data_at; len++) {
    write_bytes(f->path, f->b.data, len);
    twin_gguf *g = NULL;
    twin_err err = {0};
    int rc = twin_gguf_open(&g, f->path, &err);
    if (rc != TWIN_EFORMAT) fail_msg("cut at %zu: rc %d (%s)", len, rc, err.msg);
    if (!strstr(err.msg, "offset")) fail_msg("cut at %zu: no offset in: %s", len, err.msg);
  }
  /* a cut in the data: the tensor whose bytes run out is named */
  write_bytes(f->path, f->b.data, f->b.len - 8);
  expect_open_error(f, TWIN_EFORMAT, "output_norm.weight", "past the end");
}

static void test_lying_lengths_and_types(void **state) {
  test_file *f = *state;
  const size_t name_value = f->kv_name_at + 8 + strlen("general.name") + 4;
  write_patched(f, name_value, (uint64_t[]){1ull << 50}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "general.name", "remain");
  write_patched(f, f->kv_name_at, (uint64_t[]){1ull << 50}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "metadata entry 1", "remain");
  write_patched(f, name_value - 4, (uint32_t[]){13}, 4, 0);
  expect_open_error(f, TWIN_EFORMAT, "general.name", "unknown value type 13");
  const size_t array_elem = f->kv_array_at + 8 + strlen("t.u32s") + 4;
  write_patched(f, array_elem, (uint32_t[]){42}, 4, 0);
  expect_open_error(f, TWIN_EFORMAT, "t.u32s", "unknown element type 42");
  write_patched(f, array_elem + 4, (uint64_t[]){1ull << 60}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "t.u32s", "elements");
  /* a key with a NUL byte */
  write_patched(f, f->kv_name_at + 8 + 3, "\0", 1, 0);
  expect_open_error(f, TWIN_EFORMAT, "NUL", NULL);
}

static void test_lying_tensor_infos(void **state) {
  test_file *f = *state;
  const size_t q = f->info_at[1], q_name = strlen("blk.0.attn_q.weight");
  const size_t ndims = q + 8 + q_name, dims = ndims + 4, type = dims + 16, off = type + 4;
  write_patched(f, ndims, (uint32_t[]){5}, 4, 0);
  expect_open_error(f, TWIN_EFORMAT, "blk.0.attn_q.weight", "5 dimensions");
  write_patched(f, dims, (uint64_t[]){0}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "blk.0.attn_q.weight", "dimension 0");
  write_patched(f, dims + 8, (uint64_t[]){1ull << 40}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "blk.0.attn_q.weight", "past the end");
  write_patched(f, dims, (uint64_t[]){1ull << 62}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "blk.0.attn_q.weight", "overflows");
  write_patched(f, type, (uint32_t[]){77}, 4, 0);
  expect_open_error(f, TWIN_EFORMAT, "blk.0.attn_q.weight", "unknown tensor type 77");
  write_patched(f, type, (uint32_t[]){10}, 4, 0); /* q2_k */
  expect_open_error(f, TWIN_EUNSUPPORTED, "blk.0.attn_q.weight", "q2_k");
  write_patched(f, type, (uint32_t[]){12}, 4, 0); /* q4_k rows of 32: not whole blocks */
  expect_open_error(f, TWIN_EFORMAT, "blk.0.attn_q.weight", "blocks of 256");
  write_patched(f, off, (uint64_t[]){8}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "blk.0.attn_q.weight", "alignment");
  write_patched(f, off, (uint64_t[]){1ull << 40}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "blk.0.attn_q.weight", "past the end");
  write_patched(f, off, (uint64_t[]){0}, 8, 0);
  expect_open_error(f, TWIN_EFORMAT, "overlaps", NULL);
  /* a name with a NUL byte inside */
  write_patched(f, f->info_at[2] + 8 + 6, "\0", 1, 0);
  expect_open_error(f, TWIN_EFORMAT, "NUL", "tensor info 2");
}

static void test_duplicate_key_and_bad_alignment(void **state) {
  test_file *f = *state;
  /* t.f64 renamed t.i64: the same key twice */
  wbuf *b = &f->b;
  uint8_t *hit = memmem(b->data, f->data_at, "t.f64", 5);
  assert_non_null(hit);
  write_patched(f, (size_t)(hit - b->data), "t.i64", 5, 0);
  expect_open_error(f, TWIN_EFORMAT, "t.i64", "twice");
  build(f, 48);
  write_bytes(f->path, f->b.data, f->b.len);
  expect_open_error(f, TWIN_EFORMAT, "general.alignment", "power of two");
  build(f, 0);
}

/* ---- names, config, weights ---------------------------------------------------------------- */

static void test_hf_names(void **state) {
  (void)state;
  static const struct { const char *arch, *gguf, *hf; } cases[] = {
      {"llama", "token_embd.weight", "model.embed_tokens.weight"},
      {"llama", "output.weight", "lm_head.weight"},
      {"llama", "output_norm.weight", "model.norm.weight"},
      {"llama", "blk.12.attn_q.weight", "model.layers.12.self_attn.q_proj.weight"},
      {"qwen2", "blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias"},
      {"llama", "blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"},
      {"llama", "blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
      {"gemma3", "blk.3.ffn_norm.weight", "model.layers.3.pre_feedforward_layernorm.weight"},
      {"gemma3", "blk.3.post_attention_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
      {"gemma3", "blk.3.post_ffw_norm.weight", "model.layers.3.post_feedforward_layernorm.weight"},
      {"gemma3", "blk.0.attn_q_norm.weight", "model.layers.0.self_attn.q_norm.weight"},
      {"llama", "blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight"},
      {"llama", "rope_freqs.weight", "rope_freqs.weight"},
      {"llama", "blk.x.attn_q.weight", "blk.x.attn_q.weight"},
  };
  char out[128];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(twin_gguf_hf_name(cases[i].arch, cases[i].gguf, out, sizeof out), 0);
    assert_string_equal(out, cases[i].hf);
  }
  assert_int_equal(twin_gguf_hf_name("llama", "blk.12.attn_q.weight", out, 10), TWIN_EINVAL);
}

/* blk.0.attn_q.weight (2 heads of 16 rows, f32, row r = values 32r..32r+31) comes back with its
 * rows in Hugging Face order: HF row h*16 + s*8 + i is file row h*16 + 2i + s. */
static void test_weights_restore_row_order(void **state) {
  test_file *f = *state;
  write_bytes(f->path, f->b.data, f->b.len);
  twin_weights *w = NULL;
  twin_err err = {0};
  assert_int_equal(twin_weights_open_gguf(&w, f->path, &err), 0);
  const twin_tensor *q = twin_weights_get(w, "model.layers.0.self_attn.q_proj.weight");
  assert_non_null(q);
  assert_non_null(twin_weights_get(w, "model.embed_tokens.weight"));
  assert_null(twin_weights_get(w, "token_embd.weight"));
  float row[DIM];
  for (int h = 0; h < 2; h++)
    for (int s = 0; s < 2; s++)
      for (int i = 0; i < 8; i++) {
        const int hf_row = h * 16 + s * 8 + i, file_row = h * 16 + 2 * i + s;
        assert_int_equal(twin_tensor_to_f32(q, (int64_t)hf_row * DIM, DIM, row), 0);
        assert_float_equal(row[0], (float)(file_row * DIM), 0);
        assert_float_equal(row[DIM - 1], (float)(file_row * DIM + DIM - 1), 0);
      }
  twin_weights_destroy(w);
}

static void test_config_from_metadata(void **state) {
  test_file *f = *state;
  wbuf *b = &f->b;
  /* a gemma3 header with only metadata */
  b->len = 0;
  put(b, "GGUF", 4);
  put_u32(b, 3);
  put_u64(b, 0);
  put_u64(b, 9);
  put_key(b, "general.architecture", 8); put_str(b, "gemma3");
  put_key(b, "gemma3.embedding_length", 4); put_u32(b, 640);
  put_key(b, "gemma3.block_count", 4); put_u32(b, 18);
  put_key(b, "gemma3.feed_forward_length", 4); put_u32(b, 2048);
  put_key(b, "gemma3.attention.head_count", 4); put_u32(b, 4);
  put_key(b, "gemma3.attention.head_count_kv", 4); put_u32(b, 1);
  put_key(b, "gemma3.attention.key_length", 4); put_u32(b, 256);
  put_key(b, "gemma3.attention.sliding_window", 4); put_u32(b, 512);
  put_key(b, "gemma3.vocab_size", 4); put_u32(b, 1000);
  write_bytes(f->path, b->data, b->len);
  twin_gguf *g;
  twin_err err = {0};
  assert_int_equal(twin_gguf_open(&g, f->path, &err), 0);
  twin_model_config cfg;
  assert_int_equal(twin_gguf_read_config(g, &cfg, &err), 0);
  assert_int_equal(cfg.arch, TWIN_ARCH_GEMMA3);
  assert_int_equal(cfg.head_dim, 256);
  assert_int_equal(cfg.sliding_window, 512);
  assert_int_equal(cfg.sliding_window_pattern, 6);
  assert_float_equal(cfg.rope_theta, 1e6, 1);
  assert_float_equal(cfg.rope_local_theta, 1e4, 1e-3);
  assert_float_equal(cfg.query_pre_attn_scalar, 256, 0);
  assert_float_equal(cfg.embed_scale, 25.298221f, 1e-4);
  assert_int_equal(cfg.mlp_act, TWIN_MLP_GELU_TANH);
  assert_float_equal(cfg.norm_weight_offset, 0, 0);
  assert_true(cfg.tie_embeddings);
  assert_true(twin_layer_is_sliding(&cfg, 0) && !twin_layer_is_sliding(&cfg, 5) &&
              twin_layer_is_sliding(&cfg, 6) && !twin_layer_is_sliding(&cfg, 11));
  twin_gguf_close(g);
  /* the llama file: a required key missing is named */
  build(f, 0);
  write_bytes(f->path, f->b.data, f->b.len);
  assert_int_equal(twin_gguf_open(&g, f->path, &err), 0);
  assert_int_equal(twin_gguf_read_config(g, &cfg, &err), TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "llama.embedding_length"));
  twin_gguf_close(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_metadata_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tensor_infos, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_header, setup, teardown),
      cmocka_unit_test_setup_teardown(test_truncated_everywhere, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lying_lengths_and_types, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lying_tensor_infos, setup, teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_key_and_bad_alignment, setup, teardown),
      cmocka_unit_test(test_hf_names),
      cmocka_unit_test_setup_teardown(test_weights_restore_row_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_from_metadata, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
