/* tests/integration/gguf_tool.c — gguf-tool: a model (a .gguf file or a model directory)
 * opened through twin_model_open and run on the CPU backend, for the GGUF and Gemma 3 tests
 * and the llama.cpp comparison:
 *   --info                      config, tokenizer, chat template and tensor types, as JSON
 *   --tokenize TEXT             the ids of TEXT (with BOS etc. unless --no-special)
 *   --tokenize-lines FILE       each line of FILE is a text in hex; prints for each its ids
 *                               (comma-separated), a tab, and the hex of their decoding
 *   --vocab-only                with a .gguf file: build only its tokenizer (no config or
 *                               weights needed), for --tokenize / --tokenize-lines
 *   --logits FILE --tokens IDS  float32 logits [n][vocab] of one forward (or --chunk N steps)
 *   --generate N (--tokens IDS | --prompt TEXT | --chat TEXT)
 *                               greedy generation of N tokens (stopping at an end-of-sequence
 *                               id; with --ignore-eos those ids are never picked, as with
 *                               llama.cpp's --ignore-eos); prints "prompt_ids:", "ids:" and
 *                               "text:" lines, and the prefill / decode speed on stderr.
 * A model that fails to open prints the error on stderr and exits 1 (bad usage: 2). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "llm-svc/engine/backend.h"
#include "llm-svc/model/gguf.h"
#include "llm-svc/model/model.h"

typedef struct tool_args {
  const char *model, *tokens, *logits_path, *prompt, *chat, *tokenize, *tokenize_lines;
  int info, generate, chunk, threads, ignore_eos, no_special, vocab_only;
} tool_args;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(void) {
  fprintf(stderr,
          "usage: gguf-tool --model PATH [--threads N] (--info | --tokenize TEXT [--no-special] |\n"
          "       --tokenize-lines FILE [--no-special] [--vocab-only] |\n"
          "       --logits FILE --tokens IDS [--chunk N] |\n"
          "       --generate N (--tokens IDS | --prompt TEXT [--no-special] | --chat TEXT)\n"
          "       [--ignore-eos] [--chunk N])\n");
}

static int parse_ids(const char *text, int vocab, int32_t **out, int *n_out) {
  size_t cap = 1;
  for (const char *p = text; *p; p++) cap += *p == ',';
  int32_t *ids = malloc(cap * sizeof *ids);
  int n = 0;
  const char *p = text;
  for (;;) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < 0 || v >= vocab || (*end != ',' && *end)) {
      free(ids);
      return -1;
    }
    ids[n++] = (int32_t)v;
    if (!*end) break;
    p = end + 1;
  }
  *out = ids;
  *n_out = n;
  return 0;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
  printf("%s", label);
  for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : " ", ids[i]);
  printf("\n");
}

/* ---- tokenizing lines -------------------------------------------------------------------- */

static int hex_digit(int c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Each line: hex of a UTF-8 text -> "ids<TAB>hex of the decoded ids". */
static int tokenize_lines(const twin_tokenizer *tok, const char *path, int add_special,
                          twin_err *err) {
  FILE *f = fopen(path, "r");
  if (!f) return twin_err_set(err, TWIN_EIO, "%s: cannot open", path);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int rc = 0;
  while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    char *text = malloc((size_t)n / 2 + 1);
    size_t len = 0;
    for (ssize_t i = 0; i + 1 < n; i += 2) {
      int hi = hex_digit(line[i]), lo = hex_digit(line[i + 1]);
      if (hi < 0 || lo < 0) rc = twin_err_set(err, TWIN_EINVAL, "%s: not hex", path);
      text[len++] = (char)(hi * 16 + lo);
    }
    int32_t *ids = NULL;
    size_t count = 0;
    char *decoded = NULL;
    size_t decoded_len = 0;
    if (rc == 0) rc = twin_tokenizer_encode(tok, text, len, add_special, &ids, &count, err);
    if (rc == 0) rc = twin_tokenizer_decode(tok, ids, count, 0, &decoded, &decoded_len, err);
    if (rc == 0) {
      for (size_t i = 0; i < count; i++) printf("%s%d", i ? "," : "", ids[i]);
      printf("\t");
      for (size_t i = 0; i < decoded_len; i++) printf("%02x", (unsigned char)decoded[i]);
      printf("\n");
    }
    free(text);
    free(ids);
    free(decoded);
  }
  free(line);
  fclose(f);
  return rc;
}

/* --vocab-only: the tokenizer of a .gguf file without the rest of the model. */
static int vocab_only(const tool_args *a, twin_err *err) {
  twin_gguf *g = NULL;
  twin_tokenizer *tok = NULL;
  int rc = twin_gguf_open(&g, a->model, err);
  if (rc == 0) rc = twin_gguf_tokenizer_create(g, &tok, err);
  if (rc == 0 && a->tokenize_lines) rc = tokenize_lines(tok, a->tokenize_lines, !a->no_special, err);
  if (rc == 0 && a->tokenize) {
    int32_t *ids = NULL;
    size_t count = 0;
    rc = twin_tokenizer_encode(tok, a->tokenize, strlen(a->tokenize), !a->no_special, &ids,
                               &count, err);
    if (rc == 0) print_ids("ids:", ids, count);
    free(ids);
  }
  twin_tokenizer_destroy(tok);
  twin_gguf_close(g);
  return rc;
}

/* ---- --info --------------------------------------------------------------------------------- */

static void print_info(const twin_model *m) {
  const twin_model_config *c = &m->cfg;
  printf("{\"arch\": \"%s\", \"vocab_size\": %d, \"dim\": %d, \"hidden_dim\": %d, "
         "\"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, \"head_dim\": %d, "
         "\"max_seq_len\": %d, \"rope_theta\": %g, \"rope_local_theta\": %g, \"norm_eps\": %g, "
         "\"tie_embeddings\": %d, \"attn_bias\": %d, \"sliding_window\": %d, "
         "\"sliding_window_pattern\": %d, \"query_pre_attn_scalar\": %g, "
         "\"final_logit_softcap\": %g, \"attn_logit_softcap\": %g, \"embed_scale\": %g, "
         "\"mlp_act\": %d, \"norm_weight_offset\": %g, \"bos_id\": %d, \"eos_ids\": [",
         c->arch_name, c->vocab_size, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
         c->n_kv_heads, c->head_dim, c->max_seq_len, c->rope_theta, c->rope_local_theta,
         c->norm_eps, c->tie_embeddings, c->attn_bias, c->sliding_window,
         c->sliding_window_pattern, c->query_pre_attn_scalar, c->final_logit_softcap,
         c->attn_logit_softcap, c->embed_scale, (int)c->mlp_act, c->norm_weight_offset,
         c->bos_id);
  for (int i = 0; i < m->n_eos; i++) printf("%s%d", i ? ", " : "", m->eos_ids[i]);
  printf("], \"tokenizer\": \"%s\", \"chat_template\": \"%s\", \"tensors\": {",
         m->tok ? twin_tokenizer_kind_name(m->tok) : "",
         m->has_chat_template ? m->chat.name : "");
  size_t n = twin_weights_count(m->weights);
  for (size_t i = 0; i < n; i++) {
    const twin_tensor *t = twin_weights_at(m->weights, i);
    printf("%s\"%s\": [\"%s\"", i ? ", " : "", t->name, twin_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) printf(", %lld", (long long)t->shape[d]);
    printf("]");
  }
  printf("}}\n");
}

/* ---- running the backend -------------------------------------------------------------------- */

typedef struct runner {
  twin_backend *backend;
  int32_t *blocks;     /* [max_blocks] the sequence's block table: blocks in reverse order */
  int max_blocks, len, step_tokens;
  int32_t *positions;  /* [step_tokens] */
} runner;

static int runner_init(runner *r, const twin_model *m, int max_len, int step_tokens, int threads,
                       twin_err *err) {
  memset(r, 0, sizeof *r);
  r->max_blocks = (max_len + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE + 1;
  r->step_tokens = step_tokens;
  const twin_model_config *c = &m->cfg;
  twin_backend_opts opts = {
      .kv_bytes = (size_t)r->max_blocks * c->n_layers * 2 * TWIN_KV_BLOCK_SIZE * c->n_kv_heads *
                  c->head_dim * sizeof(float),
      .max_tokens_per_step = step_tokens,
      .max_seqs = 1,
      .threads = threads,
  };
  int rc = twin_backend_cpu_create(c, m->weights, &opts, &r->backend, err);
  if (rc) return rc;
  r->blocks = malloc((size_t)r->max_blocks * sizeof *r->blocks);
  r->positions = malloc((size_t)step_tokens * sizeof *r->positions);
  for (int i = 0; i < r->max_blocks; i++) r->blocks[i] = r->backend->num_blocks - 1 - i;
  return 0;
}

static void runner_free(runner *r) {
  twin_backend_destroy(r->backend);
  free(r->blocks);
  free(r->positions);
}

/* Feeds ids[n] (n <= step_tokens) after what is cached; logits of every token or the last. */
static int runner_step(runner *r, const int32_t *ids, int n, int all_logits, float *logits,
                       twin_err *err) {
  for (int i = 0; i < n; i++) r->positions[i] = r->len + i;
  int32_t seq_start[2] = {0, n}, seq_len[1] = {r->len + n};
  twin_batch batch = {.n_tokens = n, .n_seqs = 1, .tokens = ids, .positions = r->positions,
                      .seq_start = seq_start, .seq_len = seq_len, .block_tables = r->blocks,
                      .max_blocks = r->max_blocks, .all_logits = all_logits};
  int rc = twin_backend_forward(r->backend, &batch, logits, err);
  if (rc == 0) r->len += n;
  return rc;
}

static int argmax(const float *v, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return best;
}

static int run_logits(const twin_model *m, const tool_args *a, const int32_t *ids, int n,
                      twin_err *err) {
  const int chunk = a->chunk ? a->chunk : n;
  runner r;
  int rc = runner_init(&r, m, n, chunk, a->threads, err);
  if (rc) return rc;
  const size_t vocab = (size_t)m->cfg.vocab_size;
  float *logits = malloc((size_t)n * vocab * sizeof *logits);
  for (int done = 0; rc == 0 && done < n; done += chunk) {
    int take = n - done < chunk ? n - done : chunk;
    rc = runner_step(&r, ids + done, take, 1, logits + (size_t)done * vocab, err);
  }
  if (rc == 0) {
    FILE *f = fopen(a->logits_path, "wb");
    if (!f || fwrite(logits, vocab * sizeof *logits, (size_t)n, f) != (size_t)n || fclose(f))
      rc = twin_err_set(err, TWIN_EIO, "%s: cannot write", a->logits_path);
  }
  free(logits);
  runner_free(&r);
  return rc;
}

static int run_generate(const twin_model *m, const tool_args *a, const int32_t *prompt, int n,
                        twin_err *err) {
  const int steps = a->generate, chunk = a->chunk ? a->chunk : (n < 512 ? n : 512);
  runner r;
  int rc = runner_init(&r, m, n + steps, chunk, a->threads, err);
  if (rc) return rc;
  const int vocab = m->cfg.vocab_size;
  float *logits = malloc((size_t)vocab * sizeof *logits);
  int32_t *out = malloc((size_t)(steps > 0 ? steps : 1) * sizeof *out);
  int n_out = 0;
  double t0 = now_s();
  for (int done = 0; rc == 0 && done < n; done += chunk) {
    int take = n - done < chunk ? n - done : chunk;
    rc = runner_step(&r, prompt + done, take, 0, logits, err);
  }
  double t1 = now_s();
  while (rc == 0 && n_out < steps) {
    if (a->ignore_eos) /* as llama.cpp's --ignore-eos: end-of-sequence ids never picked */
      for (int i = 0; i < m->n_eos; i++) logits[m->eos_ids[i]] = -INFINITY;
    int32_t next = argmax(logits, vocab);
    out[n_out++] = next;
    int is_eos = 0;
    for (int i = 0; i < m->n_eos; i++) is_eos |= m->eos_ids[i] == next;
    if (is_eos && !a->ignore_eos) break;
    if (n_out == steps) break;
    rc = runner_step(&r, &next, 1, 0, logits, err);
  }
  double t2 = now_s();
  if (rc == 0) {
    print_ids("prompt_ids:", prompt, (size_t)n);
    print_ids("ids:", out, (size_t)n_out);
    if (m->tok) {
      char *text = NULL;
      size_t len = 0;
      if (twin_tokenizer_decode(m->tok, out, (size_t)n_out, 0, &text, &len, err) == 0) {
        printf("text: ");
        for (size_t i = 0; i < len; i++) {
          unsigned char ch = (unsigned char)text[i];
          if (ch == '\\') printf("\\\\");
          else if (ch == '\n') printf("\\n");
          else if (ch < 0x20) printf("\\x%02x", ch);
          else putchar(ch);
        }
        printf("\n");
        free(text);
      }
    }
    int decoded = n_out > 1 ? n_out - 1 : 0;
    fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tokens/s); decode: %d tokens in %.3f s "
            "(%.1f tokens/s); weights %s\n", n, t1 - t0, n / (t1 - t0), decoded, t2 - t1,
            decoded ? decoded / (t2 - t1) : 0.0, r.backend->weights_dtype);
  }
  free(logits);
  free(out);
  runner_free(&r);
  return rc;
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  static const struct option options[] = {
      {"model", required_argument, NULL, 'm'},    {"tokens", required_argument, NULL, 't'},
      {"logits", required_argument, NULL, 'l'},   {"prompt", required_argument, NULL, 'p'},
      {"chat", required_argument, NULL, 'c'},     {"tokenize", required_argument, NULL, 'k'},
      {"info", no_argument, NULL, 'i'},           {"generate", required_argument, NULL, 'g'},
      {"chunk", required_argument, NULL, 'n'},    {"threads", required_argument, NULL, 'j'},
      {"ignore-eos", no_argument, NULL, 'e'},     {"no-special", no_argument, NULL, 's'},
      {"tokenize-lines", required_argument, NULL, 'L'}, {"vocab-only", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  tool_args a = {0};
  int opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
      case 'm': a.model = optarg; break;
      case 't': a.tokens = optarg; break;
      case 'l': a.logits_path = optarg; break;
      case 'p': a.prompt = optarg; break;
      case 'c': a.chat = optarg; break;
      case 'k': a.tokenize = optarg; break;
      case 'i': a.info = 1; break;
      case 'g': a.generate = atoi(optarg); break;
      case 'n': a.chunk = atoi(optarg); break;
      case 'j': a.threads = atoi(optarg); break;
      case 'e': a.ignore_eos = 1; break;
      case 's': a.no_special = 1; break;
      case 'L': a.tokenize_lines = optarg; break;
      case 'V': a.vocab_only = 1; break;
      default: usage(); return 2;
    }
  }
  if (!a.model || a.chunk < 0 || a.threads < 0 || a.generate < 0 ||
      !(a.info || a.tokenize || a.tokenize_lines || a.logits_path || a.generate) ||
      (a.logits_path && !a.tokens) || (a.generate && !a.tokens && !a.prompt && !a.chat)) {
    usage();
    return 2;
  }
  twin_err err = {0};
  if (a.vocab_only) {
    int rc = vocab_only(&a, &err);
    if (rc) fprintf(stderr, "gguf-tool: %s\n", err.msg);
    return rc ? 1 : 0;
  }
  twin_model *m = NULL;
  int rc = twin_model_open(a.model, NULL, &m, &err);
  if (rc) {
    fprintf(stderr, "gguf-tool: %s\n", err.msg);
    return 1;
  }
  int32_t *ids = NULL;
  int n = 0;
  if (a.tokens && parse_ids(a.tokens, m->cfg.vocab_size, &ids, &n) != 0) {
    fprintf(stderr, "gguf-tool: --tokens: not a list of ids below %d\n", m->cfg.vocab_size);
    twin_model_destroy(m);
    return 2;
  }
  const char *text = a.tokenize ? a.tokenize : a.prompt;
  if (rc == 0 && !ids && (text || a.chat)) {
    size_t count = 0;
    if (!m->tok) {
      rc = twin_err_set(&err, TWIN_EUNSUPPORTED, "the model has no tokenizer");
    } else if (a.chat) {
      twin_chat_message msg = {.role = "user", .content = a.chat};
      rc = twin_model_encode_chat(m, &msg, 1, &ids, &count, &err);
    } else {
      rc = twin_tokenizer_encode(m->tok, text, strlen(text), !a.no_special, &ids, &count, &err);
    }
    n = (int)count;
  }
  if (rc == 0 && a.info) print_info(m);
  if (rc == 0 && a.tokenize_lines) {
    rc = m->tok ? tokenize_lines(m->tok, a.tokenize_lines, !a.no_special, &err)
                : twin_err_set(&err, TWIN_EUNSUPPORTED, "the model has no tokenizer");
  }
  if (rc == 0 && a.tokenize) print_ids("ids:", ids, (size_t)n);
  if (rc == 0 && (a.logits_path || a.generate) && n == 0)
    rc = twin_err_set(&err, TWIN_EINVAL, "no prompt tokens");
  if (rc == 0 && a.logits_path) rc = run_logits(m, &a, ids, n, &err);
  if (rc == 0 && a.generate) rc = run_generate(m, &a, ids, n, &err);
  if (rc) fprintf(stderr, "gguf-tool: %s\n", err.msg);
  free(ids);
  twin_model_destroy(m);
  return rc ? 1 : 0;
}
