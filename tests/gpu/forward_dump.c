/* tests/gpu/forward_dump.c — runs one backend (cuda or cpu) of a model directory over a batch
 * of prompts, a prefill and then greedy decode steps, and writes what came out, for
 * tests/gpu/e2e_check.py to compare with Hugging Face transformers, with the other backend and
 * with other batch compositions. It drives the backend directly through twin_batch steps (no
 * engine): blocks come from a shuffled free list, the prefill runs in chunks of --chunk tokens
 * per sequence (default: whole prompts in one step), then every sequence decodes together, one
 * token a step, the next token being the argmax of its logits on the host (or, with
 * --device-sample, the token forward_sample picks on the device at temperature 0).
 *
 * Input (--prompts FILE), int32 little-endian: n, then n lengths, then the n prompts' tokens.
 * Output (--out PREFIX):
 *   PREFIX.tokens        int32 [n][steps + 1]: the greedy tokens, prefill's first
 *   PREFIX.logits        f32 [k][steps + 1][vocab]: the logits each token was chosen from,
 *                        for the first k = min(n, --keep-logits K) prompts (all by default;
 *                        not with --device-sample)
 *   PREFIX.prompt_logits f32 [sum of lengths][vocab] with --prompt-logits: every prompt
 *                        position's logits (all_logits steps)
 * Prints one summary line; exits 1 with a message naming the problem on any error.
 * Usage: forward-dump --model DIR --backend cuda|cpu --prompts FILE --out PREFIX [--steps N]
 *                     [--chunk C] [--keep-logits K] [--device-sample] [--prompt-logits]
 *                     [--threads T] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "llm-svc/engine/backend.h"
#include "llm-svc/model/model.h"

typedef struct dump_opts {
  const char *model, *backend, *prompts, *out;
  int steps, chunk, keep_logits, device_sample, prompt_logits, threads;
} dump_opts;

typedef struct dump_seq {
  int32_t *tokens;       /* [cap] prompt, then generated */
  int n_prompt, n_tokens, n_computed;
  int32_t *blocks;       /* [max_blocks] */
} dump_seq;

static int die(const char *what, const char *msg) {
  fprintf(stderr, "forward-dump: %s: %s\n", what, msg);
  return 1;
}

/* ---- input / output ---------------------------------------------------------------------- */

static int read_prompts(const char *path, int *n_out, int **lens_out, int32_t **toks_out) {
  FILE *f = fopen(path, "rb");
  if (!f) return die(path, "cannot open the prompts file");
  int32_t n = 0;
  int rc = 1;
  int *lens = NULL;
  int32_t *toks = NULL;
  if (fread(&n, 4, 1, f) != 1 || n < 1 || n > 4096) {
    die(path, "the first int32 (prompt count) is missing or outside [1, 4096]");
    goto done;
  }
  lens = calloc((size_t)n, sizeof *lens);
  long total = 0;
  for (int i = 0; i < n; i++) {
    int32_t len;
    if (fread(&len, 4, 1, f) != 1 || len < 1 || len > 1 << 20) {
      fprintf(stderr, "forward-dump: %s: length of prompt %d missing or outside [1, 2^20]\n", path, i);
      goto done;
    }
    lens[i] = len;
    total += len;
  }
  toks = malloc((size_t)total * sizeof *toks);
  if (fread(toks, 4, (size_t)total, f) != (size_t)total) {
    fprintf(stderr, "forward-dump: %s: %ld prompt tokens announced, fewer present\n", path, total);
    goto done;
  }
  *n_out = n;
  *lens_out = lens;
  *toks_out = toks;
  lens = NULL;
  toks = NULL;
  rc = 0;
done:
  fclose(f);
  free(lens);
  free(toks);
  return rc;
}

static FILE *open_out(const char *prefix, const char *suffix) {
  char path[4096];
  snprintf(path, sizeof path, "%s.%s", prefix, suffix);
  FILE *f = fopen(path, "wb");
  if (!f) fprintf(stderr, "forward-dump: cannot write %s\n", path);
  return f;
}

/* ---- the run --------------------------------------------------------------------------------- */

typedef struct step_buffers {
  int32_t *tokens, *positions, *seq_start, *seq_len, *tables; /* batch arrays */
  int *which;            /* [n] the dump_seq of each batch row */
} step_buffers;

/* Fills a batch from the sequences whose take[i] > 0 (take[i] new tokens each). */
static void lay_out(twin_batch *b, step_buffers *sb, dump_seq *seqs, int n, const int *take,
                    int max_blocks, int all_logits) {
  int t = 0, s = 0;
  for (int i = 0; i < n; i++) {
    if (take[i] <= 0) continue;
    dump_seq *q = &seqs[i];
    sb->seq_start[s] = t;
    for (int j = 0; j < take[i]; j++, t++) {
      sb->tokens[t] = q->tokens[q->n_computed + j];
      sb->positions[t] = q->n_computed + j;
    }
    sb->seq_len[s] = q->n_computed + take[i];
    memcpy(sb->tables + (size_t)s * max_blocks, q->blocks, (size_t)max_blocks * sizeof(int32_t));
    sb->which[s] = i;
    s++;
  }
  sb->seq_start[s] = t;
  *b = (twin_batch){.n_tokens = t, .n_seqs = s, .tokens = sb->tokens, .positions = sb->positions,
                    .seq_start = sb->seq_start, .seq_len = sb->seq_len,
                    .block_tables = sb->tables, .max_blocks = max_blocks,
                    .all_logits = all_logits};
}

static int32_t argmax_row(const float *row, int vocab) {
  int32_t best = 0;
  for (int v = 1; v < vocab; v++)
    if (row[v] > row[best]) best = v;
  return best;
}

/* Working memory of one run; every pointer NULL until allocated, freed by work_free. */
typedef struct dump_work {
  int32_t *free_list;           /* [num_blocks] shuffled block ids */
  dump_seq *seqs;               /* [n] */
  step_buffers sb;
  float *logits;                /* [rows_cap][vocab] one step's output */
  int32_t *ids;                 /* [n] device-sampled tokens */
  int *take;                    /* [n] tokens each sequence brings this step */
  int *n_gen;                   /* [n] tokens generated so far */
  int32_t *out_tokens;          /* [n][gen] */
  twin_backend_sampling *greedy;/* [n] */
  float *gen_logits;            /* [kept][gen][vocab] */
  float *prompt_rows;           /* [total_prompt][vocab] */
  long *prompt_row0;            /* [n] each prompt's first row in prompt_rows */
} dump_work;

static void work_free(dump_work *w, int n) {
  for (int i = 0; w->seqs && i < n; i++) {
    free(w->seqs[i].tokens);
    free(w->seqs[i].blocks);
  }
  free(w->seqs);
  free(w->free_list);
  free(w->sb.tokens);
  free(w->sb.positions);
  free(w->sb.seq_start);
  free(w->sb.seq_len);
  free(w->sb.tables);
  free(w->sb.which);
  free(w->logits);
  free(w->ids);
  free(w->take);
  free(w->n_gen);
  free(w->out_tokens);
  free(w->greedy);
  free(w->gen_logits);
  free(w->prompt_rows);
  free(w->prompt_row0);
}

/* Writes n_items items of size bytes to PREFIX.suffix; 0 or 1 (message printed). */
static int write_out(const char *prefix, const char *suffix, const void *data, size_t size,
                     size_t n_items) {
  FILE *f = open_out(prefix, suffix);
  if (!f) return 1;
  int bad = fwrite(data, size, n_items, f) != n_items;
  bad |= fclose(f) != 0;
  if (bad) fprintf(stderr, "forward-dump: writing %s.%s failed (disk full?)\n", prefix, suffix);
  return bad;
}

/* The prefill and decode steps of n prompts (lens, toks) on be; writes the outputs. */
static int run_steps(const dump_opts *o, twin_backend *be, int n, const int *lens,
                     const int32_t *toks, dump_work *w) {
  const int vocab = be->cfg.vocab_size, gen = o->steps + 1;
  long total_prompt = 0;
  int longest = 0;
  for (int i = 0; i < n; i++) {
    total_prompt += lens[i];
    if (lens[i] > longest) longest = lens[i];
  }
  const int chunk = o->chunk > 0 ? o->chunk : longest;
  const int ctx = longest + gen;
  const int max_blocks = (ctx + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE;
  long step_tokens = 0;
  for (int i = 0; i < n; i++) step_tokens += lens[i] < chunk ? lens[i] : chunk;
  if (step_tokens < n) step_tokens = n;
  const int kept = o->keep_logits > 0 && o->keep_logits < n ? o->keep_logits : n;
  const size_t rows_cap = o->prompt_logits ? (size_t)step_tokens : (size_t)n;

  w->free_list = malloc((size_t)be->num_blocks * sizeof *w->free_list);
  w->seqs = calloc((size_t)n, sizeof *w->seqs);
  w->sb = (step_buffers){
      .tokens = malloc((size_t)step_tokens * sizeof(int32_t)),
      .positions = malloc((size_t)step_tokens * sizeof(int32_t)),
      .seq_start = malloc((size_t)(n + 1) * sizeof(int32_t)),
      .seq_len = malloc((size_t)n * sizeof(int32_t)),
      .tables = malloc((size_t)n * max_blocks * sizeof(int32_t)),
      .which = malloc((size_t)n * sizeof(int)),
  };
  w->logits = malloc(rows_cap * (size_t)vocab * sizeof(float));
  w->ids = malloc((size_t)n * sizeof(int32_t));
  w->take = calloc((size_t)n, sizeof *w->take);
  w->n_gen = calloc((size_t)n, sizeof *w->n_gen);
  w->out_tokens = calloc((size_t)n * gen, sizeof(int32_t));
  w->greedy = calloc((size_t)n, sizeof *w->greedy);
  w->prompt_row0 = calloc((size_t)n, sizeof *w->prompt_row0);
  if (!o->device_sample) w->gen_logits = calloc((size_t)kept * gen * vocab, sizeof(float));
  if (o->prompt_logits) w->prompt_rows = malloc((size_t)total_prompt * vocab * sizeof(float));
  if (!w->free_list || !w->seqs || !w->sb.tokens || !w->sb.positions || !w->sb.seq_start ||
      !w->sb.seq_len || !w->sb.tables || !w->sb.which || !w->logits || !w->ids || !w->take ||
      !w->n_gen || !w->out_tokens || !w->greedy || !w->prompt_row0 ||
      (!o->device_sample && !w->gen_logits) || (o->prompt_logits && !w->prompt_rows))
    return die("memory", "out of memory for the run's buffers");
  for (int i = 0; i < n; i++) w->greedy[i].top_p = 1.0f;
  for (int i = 1; i < n; i++) w->prompt_row0[i] = w->prompt_row0[i - 1] + lens[i - 1];

  /* sequences, with blocks from a shuffled free list (fixed seed: the same layout every run) */
  for (int i = 0; i < be->num_blocks; i++) w->free_list[i] = i;
  uint64_t lcg = 12345;
  for (int i = be->num_blocks - 1; i > 0; i--) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    int j = (int)((lcg >> 33) % (uint64_t)(i + 1));
    int32_t t = w->free_list[i];
    w->free_list[i] = w->free_list[j];
    w->free_list[j] = t;
  }
  for (int i = 0, off = 0, fb = 0; i < n; i++) {
    dump_seq *q = &w->seqs[i];
    q->tokens = malloc((size_t)ctx * sizeof(int32_t));
    q->blocks = malloc((size_t)max_blocks * sizeof(int32_t));
    if (!q->tokens || !q->blocks) return die("memory", "out of memory for the sequences");
    memcpy(q->tokens, toks + off, (size_t)lens[i] * sizeof(int32_t));
    off += lens[i];
    q->n_prompt = q->n_tokens = lens[i];
    for (int b = 0; b < max_blocks; b++) q->blocks[b] = w->free_list[fb++];
  }

  const int64_t t_start = twin_time_mono_us();
  int64_t t_prefill_end = 0;
  int n_steps = 0;
  twin_err err;
  for (;;) {
    int prefilling = 0, any = 0;
    for (int i = 0; i < n; i++) {
      const dump_seq *q = &w->seqs[i];
      int left = q->n_tokens - q->n_computed;
      w->take[i] = 0;
      if (w->n_gen[i] < gen && q->n_computed < q->n_prompt) {
        w->take[i] = left < chunk ? left : chunk;
        prefilling = 1;
      }
    }
    if (!prefilling) { /* everyone decodes together once every prompt is in */
      if (!t_prefill_end) t_prefill_end = twin_time_mono_us();
      for (int i = 0; i < n; i++) w->take[i] = w->n_gen[i] < gen ? 1 : 0;
    }
    for (int i = 0; i < n; i++) any |= w->take[i] > 0;
    if (!any) break;
    twin_batch b;
    const int all_logits = prefilling && o->prompt_logits;
    lay_out(&b, &w->sb, w->seqs, n, w->take, max_blocks, all_logits);
    int rc = o->device_sample ? twin_backend_forward_sample(be, &b, w->greedy, w->ids, &err)
                              : twin_backend_forward(be, &b, w->logits, &err);
    if (rc) {
      fprintf(stderr, "forward-dump: step %d (%d tokens, %d sequences): %s\n", n_steps, b.n_tokens,
              b.n_seqs, err.msg);
      return 1;
    }
    n_steps++;
    for (int s = 0; s < b.n_seqs; s++) {
      const int i = w->sb.which[s];
      dump_seq *q = &w->seqs[i];
      const int first_row = b.seq_start[s], n_new = b.seq_start[s + 1] - first_row;
      if (all_logits) /* rows of every new prompt token */
        memcpy(w->prompt_rows + (size_t)(w->prompt_row0[i] + q->n_computed) * vocab,
               w->logits + (size_t)first_row * vocab, (size_t)n_new * vocab * sizeof(float));
      q->n_computed += n_new;
      if (q->n_computed < q->n_tokens) continue; /* mid-prompt */
      const float *row = w->logits + (size_t)(all_logits ? b.seq_start[s + 1] - 1 : s) * vocab;
      int32_t next = o->device_sample ? w->ids[s] : argmax_row(row, vocab);
      if (!o->device_sample && i < kept)
        memcpy(w->gen_logits + ((size_t)i * gen + w->n_gen[i]) * vocab, row,
               (size_t)vocab * sizeof(float));
      w->out_tokens[(size_t)i * gen + w->n_gen[i]] = next;
      w->n_gen[i]++;
      if (w->n_gen[i] < gen) q->tokens[q->n_tokens++] = next;
    }
  }
  const int64_t t_end = twin_time_mono_us();

  if (write_out(o->out, "tokens", w->out_tokens, sizeof(int32_t), (size_t)n * gen) ||
      (!o->device_sample &&
       write_out(o->out, "logits", w->gen_logits, sizeof(float), (size_t)kept * gen * vocab)) ||
      (o->prompt_logits &&
       write_out(o->out, "prompt_logits", w->prompt_rows, sizeof(float),
                 (size_t)total_prompt * vocab)))
    return 1;
  printf("forward-dump: %s backend (%s weights), %d prompts (%ld tokens, chunk %d), %d steps, "
         "%d tokens each; prefill %.1f ms, decode %.1f ms\n",
         be->name, be->weights_dtype, n, total_prompt, chunk, n_steps, gen,
         (t_prefill_end - t_start) / 1e3, (t_end - t_prefill_end) / 1e3);
  return 0;
}

/* Checks the prompts against the model, creates the backend with a KV pool that holds them. */
static int create_backend(const dump_opts *o, const twin_model *m, int n, const int *lens,
                          const int32_t *toks, twin_backend **be) {
  const int vocab = m->cfg.vocab_size, gen = o->steps + 1;
  long off = 0, step_tokens = 0;
  int longest = 0;
  for (int i = 0; i < n; i++) {
    if (lens[i] > longest) longest = lens[i];
    for (int j = 0; j < lens[i]; j++, off++)
      if (toks[off] < 0 || toks[off] >= vocab) {
        fprintf(stderr, "forward-dump: prompt %d token %d is %d, outside the vocabulary [0, %d)\n",
                i, j, toks[off], vocab);
        return 1;
      }
  }
  const int chunk = o->chunk > 0 ? o->chunk : longest;
  for (int i = 0; i < n; i++) step_tokens += lens[i] < chunk ? lens[i] : chunk;
  if (step_tokens < n) step_tokens = n;
  const int ctx = longest + gen;
  if (ctx > m->cfg.max_seq_len) {
    fprintf(stderr, "forward-dump: prompts of %d tokens + %d generated exceed max_seq_len %d\n",
            longest, gen, m->cfg.max_seq_len);
    return 1;
  }
  const long need_blocks = (long)n * ((ctx + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE);
  /* K and V of every layer at fp32 (an upper bound for both backends), +25% and 8 MiB spare */
  const size_t block_bytes = (size_t)m->cfg.n_layers * 2 * TWIN_KV_BLOCK_SIZE *
                             (size_t)m->cfg.n_kv_heads * (size_t)m->cfg.head_dim * 4;
  twin_backend_opts bo = {.kv_bytes = (size_t)need_blocks * block_bytes * 5 / 4 + ((size_t)8 << 20),
                          .max_tokens_per_step = (int)step_tokens, .max_seqs = n,
                          .threads = o->threads};
  twin_err err;
  int rc;
  if (!strcmp(o->backend, "cuda")) {
#ifdef TWIN_HAVE_CUDA
    rc = twin_backend_cuda_create(&m->cfg, m->weights, &bo, be, &err);
#else
    rc = twin_err_set(&err, TWIN_EUNSUPPORTED, "this build has no CUDA backend");
#endif
  } else if (!strcmp(o->backend, "cpu")) {
    rc = twin_backend_cpu_create(&m->cfg, m->weights, &bo, be, &err);
  } else {
    rc = twin_err_set(&err, TWIN_EINVAL, "--backend must be cuda or cpu (got %s)", o->backend);
  }
  if (rc) return die("backend", err.msg);
  if ((*be)->num_blocks < need_blocks) {
    fprintf(stderr, "forward-dump: the KV pool has %d blocks, the run needs %ld\n",
            (*be)->num_blocks, need_blocks);
    return 1;
  }
  if (o->device_sample && !twin_backend_can_sample(*be))
    return die("--device-sample", "this backend has no forward_sample");
  return 0;
}

static int run(const dump_opts *o) {
  int n = 0, *lens = NULL;
  int32_t *toks = NULL;
  if (read_prompts(o->prompts, &n, &lens, &toks)) return 1;
  twin_log_init("forward-dump", TWIN_LOG_WARN, 0);
  twin_err err;
  twin_model *m = NULL;
  twin_backend *be = NULL;
  dump_work w;
  memset(&w, 0, sizeof w);
  int rc = 1;
  const int64_t t0 = twin_time_mono_us();
  if (twin_model_open(o->model, NULL, &m, &err)) {
    die(o->model, err.msg);
  } else if (create_backend(o, m, n, lens, toks, &be) == 0) {
    printf("forward-dump: %s loaded in %.2f s\n", o->model, (twin_time_mono_us() - t0) / 1e6);
    rc = run_steps(o, be, n, lens, toks, &w);
  }
  work_free(&w, n);
  twin_backend_destroy(be);
  twin_model_destroy(m);
  free(lens);
  free(toks);
  return rc;
}

int main(int argc, char **argv) {
  dump_opts o = {.steps = 64};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--device-sample")) { o.device_sample = 1; continue; }
    if (!strcmp(a, "--prompt-logits")) { o.prompt_logits = 1; continue; }
    if (!v) return die(a, "needs a value");
    if (!strcmp(a, "--model")) o.model = v;
    else if (!strcmp(a, "--backend")) o.backend = v;
    else if (!strcmp(a, "--prompts")) o.prompts = v;
    else if (!strcmp(a, "--out")) o.out = v;
    else if (!strcmp(a, "--steps")) o.steps = atoi(v);
    else if (!strcmp(a, "--chunk")) o.chunk = atoi(v);
    else if (!strcmp(a, "--keep-logits")) o.keep_logits = atoi(v);
    else if (!strcmp(a, "--threads")) o.threads = atoi(v);
    else return die(a, "unknown flag");
    i++;
  }
  if (o.device_sample && o.prompt_logits) return die("--prompt-logits", "not with --device-sample");
  if (!o.model || !o.backend || !o.prompts || !o.out || o.steps < 0) {
    fprintf(stderr, "usage: forward-dump --model DIR --backend cuda|cpu --prompts FILE --out PREFIX "
                    "[--steps N] [--chunk C] [--keep-logits K] [--device-sample] [--prompt-logits] "
                    "[--threads T]\n");
    return 2;
  }
  return run(&o);
}
