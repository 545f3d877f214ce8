/* tests/integration/forward_tool.c — forward-tool, drives the CPU backend the way the engine
 * will: several sequences at once, joining at different steps, each fed in its own chunk size
 * (so batches mix prefill chunks with one-token decodes), with KV blocks handed out on demand
 * from a shuffled free list. Writes the logits so a test can compare them with an independent
 * reference: by default every token's row ([sum of lengths][vocab], sequences in order); with
 * --last-only the batches ask for last-token logits only and the file holds each sequence's
 * final row ([n_seqs][vocab]). Little-endian float32. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "llm-svc/engine/backend.h"
#include "llm-svc/model/config.h"
#include "llm-svc/model/weights.h"

#define MAX_SEQS 16

typedef struct tool_seq {
  int32_t *tokens;   /* [n] */
  int n;
  int done;          /* tokens already fed */
  int chunk;         /* tokens per step */
  int join_step;     /* first step it takes part in */
  int32_t *blocks;   /* [max_blocks] its block table */
  int n_blocks;
  size_t out_row;    /* first row of its logits in the output */
} tool_seq;

static int parse_ids(const char *text, tool_seq *s) {
  size_t cap = 1;
  for (const char *p = text; *p; p++) cap += *p == ',';
  s->tokens = malloc(cap * sizeof *s->tokens);
  if (!s->tokens) return -1;
  const char *p = text;
  for (;;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 0 || (*end != ',' && *end)) return -1;
    s->tokens[s->n++] = (int32_t)v;
    if (!*end) return 0;
    p = end + 1;
  }
}

static void usage(void) {
  fprintf(stderr, "usage: forward-tool --model DIR --seq IDS [--seq IDS ...] --out FILE "
                  "[--chunk N] [--last-only] [--threads N]\n");
}

int main(int argc, char **argv) {
  static const struct option options[] = {
      {"model", required_argument, NULL, 'm'}, {"seq", required_argument, NULL, 's'},
      {"out", required_argument, NULL, 'o'},   {"chunk", required_argument, NULL, 'c'},
      {"last-only", no_argument, NULL, 'l'},   {"threads", required_argument, NULL, 't'},
      {NULL, 0, NULL, 0},
  };
  const char *model_dir = NULL, *out_path = NULL;
  tool_seq seqs[MAX_SEQS];
  memset(seqs, 0, sizeof seqs);
  int n_seqs = 0, chunk = 4, last_only = 0, threads = 0, opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
      case 'm': model_dir = optarg; break;
      case 'o': out_path = optarg; break;
      case 'c': chunk = atoi(optarg); break;
      case 'l': last_only = 1; break;
      case 't': threads = atoi(optarg); break;
      case 's':
        if (n_seqs == MAX_SEQS || parse_ids(optarg, &seqs[n_seqs]) != 0) {
          fprintf(stderr, "forward-tool: bad --seq '%s' (or more than %d)\n", optarg, MAX_SEQS);
          return 2;
        }
        n_seqs++;
        break;
      default: usage(); return 2;
    }
  }
  if (!model_dir || !out_path || n_seqs == 0 || chunk < 1) {
    usage();
    return 2;
  }

  twin_err err = {0};
  twin_model_config cfg;
  twin_weights *weights = NULL;
  twin_backend *backend = NULL;
  int rc = twin_config_load_hf(&cfg, model_dir, &err);
  if (rc == 0) rc = twin_weights_open_safetensors_dir(&weights, model_dir, &err);

  /* chunk sizes cycle through chunk, 1 (decode-like) and chunk + 3; sequence i joins at step i */
  int max_blocks = 0, total_blocks = 0, total_tokens = 0;
  for (int i = 0; i < n_seqs; i++) {
    tool_seq *s = &seqs[i];
    s->chunk = i % 3 == 0 ? chunk : i % 3 == 1 ? 1 : chunk + 3;
    s->join_step = i;
    int need = (s->n + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE;
    if (need > max_blocks) max_blocks = need;
    total_blocks += need;
    s->out_row = last_only ? (size_t)i : (size_t)total_tokens;
    total_tokens += s->n;
  }
  const int pool_blocks = total_blocks + 5;
  int max_step_tokens = 0;
  for (int i = 0; i < n_seqs; i++) max_step_tokens += seqs[i].chunk;
  if (max_step_tokens > 4096 || max_blocks > 64) {
    fprintf(stderr, "forward-tool: at most 4096 tokens per step and 1024 per sequence\n");
    return 2;
  }
  twin_backend_opts opts = {
      .kv_bytes = (size_t)pool_blocks * cfg.n_layers * 2 * TWIN_KV_BLOCK_SIZE * cfg.n_kv_heads *
                  cfg.head_dim * sizeof(float),
      .max_tokens_per_step = max_step_tokens,
      .max_seqs = n_seqs,
      .threads = threads,
  };
  if (rc == 0) rc = twin_backend_cpu_create(&cfg, weights, &opts, &backend, &err);
  twin_weights_destroy(weights);
  if (rc) {
    fprintf(stderr, "forward-tool: error: %s\n", err.msg);
    return 1;
  }

  if (backend->num_blocks < total_blocks) {
    fprintf(stderr, "forward-tool: the backend made %d KV blocks, %d needed\n",
            backend->num_blocks, total_blocks);
    twin_backend_destroy(backend);
    return 1;
  }
  /* free list: every pool block, shuffled by a fixed linear congruential sequence */
  int32_t *free_list = malloc((size_t)backend->num_blocks * sizeof *free_list);
  int n_free = backend->num_blocks;
  uint64_t lcg = 12345;
  for (int i = 0; i < n_free; i++) free_list[i] = i;
  for (int i = n_free - 1; i > 0; i--) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    int j = (int)((lcg >> 33) % (uint64_t)(i + 1));
    int32_t tmp = free_list[i];
    free_list[i] = free_list[j];
    free_list[j] = tmp;
  }
  int32_t *tables = calloc((size_t)n_seqs * max_blocks, sizeof *tables);
  for (int i = 0; i < n_seqs; i++) seqs[i].blocks = tables + (size_t)i * max_blocks;

  const size_t vocab = (size_t)cfg.vocab_size;
  float *result = calloc((last_only ? (size_t)n_seqs : (size_t)total_tokens) * vocab,
                         sizeof *result);
  float *logits = malloc((size_t)max_step_tokens * vocab * sizeof *logits);
  int32_t tokens[4096], positions[4096], seq_start[MAX_SEQS + 1], seq_len[MAX_SEQS];
  int32_t step_tables[MAX_SEQS * 64];
  int member[MAX_SEQS];

  for (int step = 0; rc == 0; step++) {
    int n_tokens = 0, n_in = 0;
    for (int i = 0; i < n_seqs; i++) {
      tool_seq *s = &seqs[i];
      if (step < s->join_step || s->done == s->n) continue;
      int take = s->n - s->done < s->chunk ? s->n - s->done : s->chunk;
      int len = s->done + take;
      while (s->n_blocks * TWIN_KV_BLOCK_SIZE < len) s->blocks[s->n_blocks++] = free_list[--n_free];
      seq_start[n_in] = n_tokens;
      seq_len[n_in] = len;
      memcpy(step_tables + (size_t)n_in * max_blocks, s->blocks, (size_t)max_blocks * sizeof(int32_t));
      for (int k = 0; k < take; k++) {
        tokens[n_tokens] = s->tokens[s->done + k];
        positions[n_tokens] = s->done + k;
        n_tokens++;
      }
      member[n_in++] = i;
    }
    if (n_in == 0) {
      int pending = 0;
      for (int i = 0; i < n_seqs; i++) pending |= seqs[i].done < seqs[i].n;
      if (!pending) break;
      continue;
    }
    seq_start[n_in] = n_tokens;
    twin_batch batch = {
        .n_tokens = n_tokens, .n_seqs = n_in, .tokens = tokens, .positions = positions,
        .seq_start = seq_start, .seq_len = seq_len, .block_tables = step_tables,
        .max_blocks = max_blocks, .all_logits = !last_only,
    };
    rc = twin_backend_forward(backend, &batch, logits, &err);
    if (rc) break;
    for (int b = 0; b < n_in; b++) {
      tool_seq *s = &seqs[member[b]];
      int take = seq_start[b + 1] - seq_start[b];
      if (last_only) {
        memcpy(result + s->out_row * vocab, logits + (size_t)b * vocab, vocab * sizeof *logits);
      } else {
        memcpy(result + (s->out_row + (size_t)s->done) * vocab,
               logits + (size_t)seq_start[b] * vocab, (size_t)take * vocab * sizeof *logits);
      }
      s->done += take;
    }
  }
  if (rc == 0) {
    FILE *f = fopen(out_path, "wb");
    size_t rows = last_only ? (size_t)n_seqs : (size_t)total_tokens;
    if (!f || fwrite(result, vocab * sizeof *result, rows, f) != rows || fclose(f) != 0) {
      fprintf(stderr, "forward-tool: %s: write failed: %s\n", out_path, strerror(errno));
      rc = 1;
    }
  } else {
    fprintf(stderr, "forward-tool: error: %s\n", err.msg);
  }
  twin_backend_destroy(backend);
  for (int i = 0; i < n_seqs; i++) free(seqs[i].tokens);
  free(free_list);
  free(tables);
  free(result);
  free(logits);
  return rc ? 1 : 0;
}
