/* tests/unit/test_cpu_backend.c — the CPU backend's contract at its edges, on a one-layer model
 * written here: KV pool sizing from kv_bytes (and refusal of a budget below one block), and
 * every malformed batch (token ids, positions, seq_len, block ids, sizes, NULL arrays) refused
 * with TWIN_EINVAL and a message naming the problem, before anything is read or written. The
 * numbers of the forward itself are checked against numpy in tests/python/test_cpu_forward.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llm-svc/engine/backend.h"

enum { VOCAB = 7, DIM = 8, HIDDEN = 12, HEADS = 2, KV_HEADS = 1, HEAD_DIM = 4 };

typedef struct fixture {
  char dir[64];
  twin_model_config cfg;
  twin_weights *weights;
} fixture;

/* One-layer llama with small pseudo-random f32 weights. */
static void write_model(const char *dir) {
  static const struct { const char *name; int rows, cols; } tensors[] = {
      {"model.embed_tokens.weight", VOCAB, DIM},
      {"model.norm.weight", DIM, 0},
      {"lm_head.weight", VOCAB, DIM},
      {"model.layers.0.input_layernorm.weight", DIM, 0},
      {"model.layers.0.self_attn.q_proj.weight", HEADS * HEAD_DIM, DIM},
      {"model.layers.0.self_attn.k_proj.weight", KV_HEADS * HEAD_DIM, DIM},
      {"model.layers.0.self_attn.v_proj.weight", KV_HEADS * HEAD_DIM, DIM},
      {"model.layers.0.self_attn.o_proj.weight", DIM, HEADS * HEAD_DIM},
      {"model.layers.0.post_attention_layernorm.weight", DIM, 0},
      {"model.layers.0.mlp.gate_proj.weight", HIDDEN, DIM},
      {"model.layers.0.mlp.up_proj.weight", HIDDEN, DIM},
      {"model.layers.0.mlp.down_proj.weight", DIM, HIDDEN},
  };
  const int n = (int)(sizeof tensors / sizeof tensors[0]);
  char header[4096], path[128];
  size_t used = (size_t)snprintf(header, sizeof header, "{"), offset = 0;
  for (int i = 0; i < n; i++) {
    size_t count = (size_t)tensors[i].rows * (tensors[i].cols ? tensors[i].cols : 1);
    char shape[32];
    if (tensors[i].cols) snprintf(shape, sizeof shape, "[%d,%d]", tensors[i].rows, tensors[i].cols);
    else snprintf(shape, sizeof shape, "[%d]", tensors[i].rows);
    used += (size_t)snprintf(header + used, sizeof header - used,
                             "%s\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                             i ? "," : "", tensors[i].name, shape, offset, offset + 4 * count);
    offset += 4 * count;
  }
  snprintf(header + used, sizeof header - used, "}");
  float *data = malloc(offset);
  uint32_t lcg = 1;
  for (size_t i = 0; i < offset / 4; i++) {
    lcg = lcg * 1664525u + 1013904223u;
    data[i] = (float)(lcg >> 8) / (float)(1u << 24) - 0.5f;
  }
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  uint64_t len = strlen(header);
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)(len >> (8 * i));
  fwrite(len_bytes, 1, 8, f);
  fwrite(header, 1, len, f);
  fwrite(data, 1, offset, f);
  assert_int_equal(fclose(f), 0);
  free(data);

  snprintf(path, sizeof path, "%s/config.json", dir);
  f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "{\"model_type\":\"llama\",\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":1,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
             "\"vocab_size\":%d,\"rms_norm_eps\":1e-5}", DIM, HIDDEN, HEADS, KV_HEADS, VOCAB);
  assert_int_equal(fclose(f), 0);
}

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  snprintf(fx->dir, sizeof fx->dir, "/tmp/twin-cpu-XXXXXX");
  if (!mkdtemp(fx->dir)) return -1;
  write_model(fx->dir);
  twin_err err = {0};
  if (twin_config_load_hf(&fx->cfg, fx->dir, &err) != 0 ||
      twin_weights_open_safetensors_dir(&fx->weights, fx->dir, &err) != 0) {
    fprintf(stderr, "setup: %s\n", err.msg);
    return -1;
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  twin_weights_destroy(fx->weights);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
  int rc = system(cmd);
  free(fx);
  return rc == 0 ? 0 : -1;
}

/* bytes of one block: 1 layer x K,V x 16 tokens x KV_HEADS*HEAD_DIM floats */
static const size_t BLOCK_BYTES = 1 * 2 * TWIN_KV_BLOCK_SIZE * KV_HEADS * HEAD_DIM * 4;

static twin_backend *create(fixture *fx, int blocks) {
  twin_backend_opts opts = {.kv_bytes = (size_t)blocks * BLOCK_BYTES + BLOCK_BYTES / 2,
                            .max_tokens_per_step = 8, .max_seqs = 2, .threads = 2};
  twin_backend *b = NULL;
  twin_err err = {0};
  int rc = twin_backend_cpu_create(&fx->cfg, fx->weights, &opts, &b, &err);
  if (rc) fail_msg("create: %s", err.msg);
  return b;
}

static void test_kv_sizing(void **state) {
  fixture *fx = *state;
  twin_backend *b = create(fx, 5);
  assert_string_equal(b->name, "cpu");
  assert_string_equal(b->weights_dtype, "f32");
  assert_int_equal(b->num_blocks, 5); /* the half block left over is not a block */
  assert_int_equal(b->kv_bytes_per_block, BLOCK_BYTES);
  assert_int_equal(b->max_tokens_per_step, 8);
  assert_int_equal(b->max_seqs, 2);
  twin_backend_destroy(b);

  twin_backend_opts opts = {.kv_bytes = BLOCK_BYTES - 1};
  twin_err err = {0};
  assert_int_equal(twin_backend_cpu_create(&fx->cfg, fx->weights, &opts, &b, &err), TWIN_EINVAL);
  assert_null(b);
  assert_non_null(strstr(err.msg, "holds no block"));
}

/* A valid two-sequence batch the cases below break one field of. */
typedef struct batch_parts {
  int32_t tokens[4], positions[4], seq_start[3], seq_len[2], tables[2][2];
  twin_batch batch;
} batch_parts;

static void valid_batch(batch_parts *p) {
  /* sequence 0: a 3-token prefill at 0..2; sequence 1: one decode token at position 17 */
  const int32_t tokens[4] = {1, 2, 3, 6}, positions[4] = {0, 1, 2, 17};
  memcpy(p->tokens, tokens, sizeof tokens);
  memcpy(p->positions, positions, sizeof positions);
  p->seq_start[0] = 0, p->seq_start[1] = 3, p->seq_start[2] = 4;
  p->seq_len[0] = 3, p->seq_len[1] = 18;
  p->tables[0][0] = 4, p->tables[0][1] = 0;
  p->tables[1][0] = 1, p->tables[1][1] = 3;
  p->batch = (twin_batch){.n_tokens = 4, .n_seqs = 2, .tokens = p->tokens,
                          .positions = p->positions, .seq_start = p->seq_start,
                          .seq_len = p->seq_len, .block_tables = &p->tables[0][0],
                          .max_blocks = 2, .all_logits = 1};
}

static void expect_refused(twin_backend *b, const batch_parts *p, const char *needle) {
  float logits[8 * VOCAB];
  twin_err err = {0};
  int rc = twin_backend_forward(b, &p->batch, logits, &err);
  if (rc != TWIN_EINVAL) fail_msg("expected EINVAL for '%s', got %d: %s", needle, rc, err.msg);
  if (!strstr(err.msg, needle)) fail_msg("'%s' not in: %s", needle, err.msg);
}

static void test_batch_checks(void **state) {
  fixture *fx = *state;
  twin_backend *b = create(fx, 5);
  batch_parts p;
  float logits[8 * VOCAB];
  twin_err err = {0};

  /* accepted as is (sequence 1's cached prefix, positions 0..16, holds whatever the pool
   * held: only acceptance is checked here) */
  valid_batch(&p);
  assert_int_equal(twin_backend_forward(b, &p.batch, logits, &err), 0);
  p.batch.all_logits = 0;
  assert_int_equal(twin_backend_forward(b, &p.batch, logits, &err), 0);

  valid_batch(&p); p.tokens[2] = VOCAB;
  expect_refused(b, &p, "id 7 outside the vocabulary");
  valid_batch(&p); p.tokens[0] = -1;
  expect_refused(b, &p, "id -1");
  valid_batch(&p); p.positions[1] = 2;
  expect_refused(b, &p, "token 1 (sequence 0) has position 2");
  valid_batch(&p); p.seq_len[1] = 33; p.positions[3] = 32;
  expect_refused(b, &p, "seq_len 33");
  valid_batch(&p); p.seq_len[0] = 2;
  expect_refused(b, &p, "seq_len 2");
  valid_batch(&p); p.tables[1][1] = 5;
  expect_refused(b, &p, "block_tables[1] = 5");
  valid_batch(&p); p.tables[0][0] = -3;
  expect_refused(b, &p, "block_tables[0] = -3");
  valid_batch(&p); p.batch.n_tokens = 9;
  expect_refused(b, &p, "n_tokens 9");
  valid_batch(&p); p.batch.n_seqs = 3;
  expect_refused(b, &p, "n_seqs 3");
  valid_batch(&p); p.batch.n_seqs = 0;
  expect_refused(b, &p, "n_seqs 0");
  valid_batch(&p); p.seq_start[2] = 3;
  expect_refused(b, &p, "seq_start");
  valid_batch(&p); p.seq_start[2] = 3; p.batch.n_tokens = 3;
  expect_refused(b, &p, "sequence 1 has no tokens");
  valid_batch(&p); p.batch.max_blocks = 0;
  expect_refused(b, &p, "max_blocks 0");
  valid_batch(&p); p.batch.block_tables = NULL;
  expect_refused(b, &p, "NULL");
  valid_batch(&p);
  assert_int_equal(twin_backend_forward(b, &p.batch, NULL, &err), TWIN_EINVAL);
  twin_backend_destroy(b);
}

/* The forward is deterministic and a step's K/V land in the cache: a decode step after a
 * prefill gives the same logits whichever free blocks the sequence was given. */
static void test_block_placement_does_not_matter(void **state) {
  fixture *fx = *state;
  float first[VOCAB], second[VOCAB];
  for (int run = 0; run < 2; run++) {
    twin_backend *b = create(fx, 6);
    const int32_t table[2] = {run ? 5 : 0, run ? 2 : 1};
    int32_t prompt[17], positions[17];
    for (int t = 0; t < 17; t++) prompt[t] = (t * 3) % VOCAB, positions[t] = t;
    int32_t start[2] = {0, 8}, len[1] = {8};
    twin_batch batch = {.n_tokens = 8, .n_seqs = 1, .tokens = prompt, .positions = positions,
                        .seq_start = start, .seq_len = len, .block_tables = table,
                        .max_blocks = 2, .all_logits = 0};
    float logits[8 * VOCAB];
    twin_err err = {0};
    assert_int_equal(twin_backend_forward(b, &batch, logits, &err), 0);
    start[1] = 8, len[0] = 16;
    batch.tokens = prompt + 8, batch.positions = positions + 8;
    assert_int_equal(twin_backend_forward(b, &batch, logits, &err), 0);
    start[1] = 1, len[0] = 17;
    batch.n_tokens = 1, batch.tokens = prompt + 16, batch.positions = positions + 16;
    assert_int_equal(twin_backend_forward(b, &batch, run ? second : first, &err), 0);
    twin_backend_destroy(b);
  }
  for (int v = 0; v < VOCAB; v++) assert_float_equal(first[v], second[v], 1e-6);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_kv_sizing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_block_placement_does_not_matter, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
