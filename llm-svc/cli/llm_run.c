/* llm-svc/cli/llm_run.c — llm-run, the command-line way into a model without the server.
 * Today it has one mode: --logits, one forward over the given token ids on the CPU backend,
 * writing little-endian float32 logits [n_tokens][vocab]; --chunk N feeds the tokens N at a
 * time through the paged KV cache instead (N = 1: token by token), with a block table that
 * is deliberately not the identity. main() parses into llm_run_args, then runs one mode
 * function; a new mode (--prompt, --chat, --tokenize) is one more enum value and function. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "llm-svc/engine/backend.h"
#include "llm-svc/model/config.h"
#include "llm-svc/model/weights.h"

/* ---- arguments ----------------------------------------------------------------------------- */

typedef enum { MODE_NONE = 0, MODE_LOGITS } llm_run_mode;

typedef struct llm_run_args {
  llm_run_mode mode;
  const char *model_dir;   /* --model */
  const char *tokens;      /* --tokens "1,2,3" */
  const char *logits_path; /* --logits FILE */
  int chunk;               /* --chunk N: tokens per forward step; 0 = all at once */
  int threads;             /* --threads N; 0 = all cores */
} llm_run_args;

static void usage(FILE *out) {
  fprintf(out,
          "usage: llm-run --model DIR --tokens ID,ID,... --logits FILE [options]\n"
          "\n"
          "Loads a Hugging Face model directory (config.json, *.safetensors) on the CPU\n"
          "backend and runs it.\n"
          "\n"
          "  --model DIR       model directory (env LLM_MODEL)\n"
          "  --tokens LIST     comma-separated token ids of one sequence\n"
          "  --logits FILE     run one forward over the tokens and write float32 logits,\n"
          "                    little-endian, [n_tokens][vocab_size], to FILE ('-': stdout)\n"
          "  --chunk N         feed the tokens N at a time through the paged KV cache\n"
          "                    (1 = token by token); default: all in one step\n"
          "  --threads N       CPU threads (env LLM_THREADS); default: all cores\n"
          "  -h, --help        this text\n"
          "\n"
          "Exit status: 0 on success, 1 when the model or the run fails, 2 on bad usage.\n");
}

static int parse_positive(const char *flag, const char *text, int *out, twin_err *err) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < 1 || v > INT_MAX)
    return twin_err_set(err, TWIN_EINVAL, "%s: '%s' is not a positive integer", flag, text);
  *out = (int)v;
  return 0;
}

/* Returns 0, 1 for --help, or a negative code with err filled. */
static int parse_args(int argc, char **argv, llm_run_args *a, twin_err *err) {
  enum { OPT_MODEL = 1000, OPT_TOKENS, OPT_LOGITS, OPT_CHUNK, OPT_THREADS };
  static const struct option options[] = {
      {"model", required_argument, NULL, OPT_MODEL},
      {"tokens", required_argument, NULL, OPT_TOKENS},
      {"logits", required_argument, NULL, OPT_LOGITS},
      {"chunk", required_argument, NULL, OPT_CHUNK},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  memset(a, 0, sizeof *a);
  a->model_dir = getenv("LLM_MODEL");
  const char *env_threads = getenv("LLM_THREADS");
  int rc;
  if (env_threads && *env_threads &&
      (rc = parse_positive("LLM_THREADS", env_threads, &a->threads, err)))
    return rc;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
    switch (opt) {
      case OPT_MODEL: a->model_dir = optarg; break;
      case OPT_TOKENS: a->tokens = optarg; break;
      case OPT_LOGITS: a->logits_path = optarg; a->mode = MODE_LOGITS; break;
      case OPT_CHUNK:
        if ((rc = parse_positive("--chunk", optarg, &a->chunk, err))) return rc;
        break;
      case OPT_THREADS:
        if ((rc = parse_positive("--threads", optarg, &a->threads, err))) return rc;
        break;
      case 'h': return 1;
      case ':':
        return twin_err_set(err, TWIN_EINVAL, "%s needs a value", argv[optind - 1]);
      default:
        return twin_err_set(err, TWIN_EINVAL, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return twin_err_set(err, TWIN_EINVAL, "unexpected argument '%s'", argv[optind]);
  if (!a->model_dir || !*a->model_dir)
    return twin_err_set(err, TWIN_EINVAL, "--model DIR is required");
  if (a->mode == MODE_NONE)
    return twin_err_set(err, TWIN_EINVAL, "nothing to do: give --logits FILE");
  if (a->mode == MODE_LOGITS && !a->tokens)
    return twin_err_set(err, TWIN_EINVAL, "--logits needs --tokens");
  return 0;
}

/* "1, 2,3" -> ids, each checked against the vocabulary. *out is malloc'd. */
static int parse_token_list(const char *text, int vocab_size, int32_t **out, int *n_out,
                            twin_err *err) {
  size_t cap = 1;
  for (const char *p = text; *p; p++) cap += *p == ',';
  int32_t *ids = malloc(cap * sizeof *ids);
  if (!ids) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  int n = 0;
  const char *p = text;
  for (;;) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    while (*end == ' ') end++;
    if (end == p || errno || (*end != ',' && *end != 0)) {
      free(ids);
      return twin_err_set(err, TWIN_EINVAL, "--tokens: item %d ('%.20s') is not an integer", n,
                          p);
    }
    if (v < 0 || v >= vocab_size) {
      free(ids);
      return twin_err_set(err, TWIN_EINVAL, "--tokens: id %ld (item %d) is outside the "
                          "vocabulary [0, %d)", v, n, vocab_size);
    }
    ids[n++] = (int32_t)v;
    if (*end == 0) break;
    p = end + 1;
  }
  *out = ids;
  *n_out = n;
  return 0;
}

/* ---- the model ----------------------------------------------------------------------------- */

typedef struct loaded_model {
  twin_model_config cfg;
  twin_weights *weights;   /* the mapped checkpoint, until the backend holds its own copy */
  twin_backend *backend;
} loaded_model;

/* Reads dir's config and maps its weights. */
static int model_open(loaded_model *m, const char *dir, twin_err *err) {
  memset(m, 0, sizeof *m);
  int rc = twin_config_load_hf(&m->cfg, dir, err);
  if (rc == 0) rc = twin_weights_open_safetensors_dir(&m->weights, dir, err);
  return rc;
}

/* Converts the weights into a CPU backend, then releases the mapping. */
static int model_start_backend(loaded_model *m, const char *dir, const twin_backend_opts *opts,
                               twin_err *err) {
  int rc = twin_backend_cpu_create(&m->cfg, m->weights, opts, &m->backend, err);
  twin_weights_destroy(m->weights);
  m->weights = NULL;
  if (rc) return rc;
  LOG_INFO("model %s: %s, %d layers, dim %d, %d heads (%d kv, head_dim %d), vocab %d; %d KV "
           "blocks on %s", dir, m->cfg.arch_name, m->cfg.n_layers, m->cfg.dim, m->cfg.n_heads,
           m->cfg.n_kv_heads, m->cfg.head_dim, m->cfg.vocab_size, m->backend->num_blocks,
           m->backend->name);
  return 0;
}

static void model_close(loaded_model *m) {
  twin_backend_destroy(m->backend);
  twin_weights_destroy(m->weights);
  memset(m, 0, sizeof *m);
}

/* KV bytes for n_blocks blocks of fp32 K and V in every layer (the CPU backend's layout). */
static size_t kv_bytes_for(const twin_model_config *cfg, int n_blocks) {
  return (size_t)n_blocks * cfg->n_layers * 2 * TWIN_KV_BLOCK_SIZE * cfg->n_kv_heads *
         cfg->head_dim * sizeof(float);
}

/* ---- --logits ------------------------------------------------------------------------------ */

/* Writes rows [n][vocab] of float32 logits to out. */
static int write_logits(FILE *out, const char *path, const float *logits, int n, int vocab,
                        twin_err *err) {
  if (fwrite(logits, sizeof *logits * (size_t)vocab, (size_t)n, out) != (size_t)n)
    return twin_err_set(err, TWIN_EIO, "%s: write failed: %s", path, strerror(errno));
  return 0;
}

static int run_logits(const llm_run_args *a, twin_err *err) {
  loaded_model model;
  int32_t *tokens = NULL, *positions = NULL, *block_table = NULL;
  float *logits = NULL;
  FILE *out = NULL;
  int n_tokens = 0;
  int rc = model_open(&model, a->model_dir, err);
  if (rc == 0) rc = parse_token_list(a->tokens, model.cfg.vocab_size, &tokens, &n_tokens, err);
  if (rc) goto done;

  /* one sequence; its blocks plus two spare, so block ids need not start at 0 */
  const int step = a->chunk > 0 && a->chunk < n_tokens ? a->chunk : n_tokens;
  const int n_blocks = (n_tokens + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE + 2;
  const twin_backend_opts opts = {
      .kv_bytes = kv_bytes_for(&model.cfg, n_blocks),
      .max_tokens_per_step = step,
      .max_seqs = 1,
      .threads = a->threads,
  };
  if ((rc = model_start_backend(&model, a->model_dir, &opts, err))) goto done;
  if (model.backend->num_blocks < n_blocks) {
    rc = twin_err_set(err, TWIN_EINTERNAL, "backend made %d KV blocks, %d needed",
                      model.backend->num_blocks, n_blocks);
    goto done;
  }

  /* the sequence's block i is pool block num_blocks-1-i: reversed, never the identity */
  block_table = malloc((size_t)n_blocks * sizeof *block_table);
  positions = malloc((size_t)n_tokens * sizeof *positions);
  logits = malloc((size_t)step * model.cfg.vocab_size * sizeof *logits);
  if (!block_table || !positions || !logits) {
    rc = twin_err_set(err, TWIN_ENOMEM, "out of memory for %d tokens", n_tokens);
    goto done;
  }
  for (int i = 0; i < n_blocks; i++) block_table[i] = model.backend->num_blocks - 1 - i;
  for (int t = 0; t < n_tokens; t++) positions[t] = t;

  out = strcmp(a->logits_path, "-") == 0 ? stdout : fopen(a->logits_path, "wb");
  if (!out) {
    rc = twin_err_set(err, TWIN_EIO, "%s: cannot write: %s", a->logits_path, strerror(errno));
    goto done;
  }
  for (int first = 0; first < n_tokens && rc == 0; first += step) {
    const int n = n_tokens - first < step ? n_tokens - first : step;
    const int32_t seq_start[2] = {0, n}, seq_len[1] = {first + n};
    const twin_batch batch = {
        .n_tokens = n,
        .n_seqs = 1,
        .tokens = tokens + first,
        .positions = positions + first,
        .seq_start = seq_start,
        .seq_len = seq_len,
        .block_tables = block_table,
        .max_blocks = n_blocks,
        .all_logits = 1,
    };
    rc = twin_backend_forward(model.backend, &batch, logits, err);
    if (rc == 0) rc = write_logits(out, a->logits_path, logits, n, model.cfg.vocab_size, err);
  }
  if (out != stdout && fclose(out) != 0 && rc == 0)
    rc = twin_err_set(err, TWIN_EIO, "%s: write failed: %s", a->logits_path, strerror(errno));
done:
  model_close(&model);
  free(block_table);
  free(positions);
  free(logits);
  free(tokens);
  return rc;
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  twin_log_init("llm-run", TWIN_LOG_INFO, 0);
  llm_run_args args;
  twin_err err = {0};
  int rc = parse_args(argc, argv, &args, &err);
  if (rc == 1) {
    usage(stdout);
    return 0;
  }
  if (rc) {
    fprintf(stderr, "llm-run: %s\n(try llm-run --help)\n", err.msg);
    return 2;
  }
  switch (args.mode) {
    case MODE_LOGITS: rc = run_logits(&args, &err); break;
    default: rc = twin_err_set(&err, TWIN_EINTERNAL, "no mode"); break;
  }
  if (rc) {
    fprintf(stderr, "llm-run: error: %s (%s)\n", err.msg, twin_err_name(rc));
    return 1;
  }
  return 0;
}
