/* llm-svc/cli/llm_run.c — llm-run, the command-line way into a model without the server.
 * Modes: --prompt TEXT / --chat TEXT generate through the engine (the server's scheduler, in
 * process) and stream the text to stdout; --tokenize TEXT prints the ids as a JSON array;
 * --logits FILE runs one forward over --tokens and writes little-endian float32 logits
 * [n_tokens][vocab] (--chunk N feeds them N at a time through the paged KV cache, with a block
 * table that is deliberately not the identity). main() parses into llm_run_args, then runs one
 * mode function. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "llm-svc/engine/backend.h"
#include "llm-svc/engine/engine.h"
#include "llm-svc/model/model.h"

/* ---- arguments ----------------------------------------------------------------------------- */

typedef enum { MODE_NONE = 0, MODE_LOGITS, MODE_TOKENIZE, MODE_PROMPT, MODE_CHAT } llm_run_mode;

#define MAX_STOPS 16

typedef struct llm_run_args {
  llm_run_mode mode;
  const char *model_dir;   /* --model */
  const char *tokens;      /* --tokens "1,2,3" */
  const char *logits_path; /* --logits FILE */
  const char *text;        /* --prompt / --chat / --tokenize TEXT */
  const char *system;      /* --system TEXT (chat) */
  const char *chat_template; /* --chat-template NAME */
  const char *backend;     /* --backend cpu|cuda */
  int chunk;               /* --chunk N: tokens per forward step; 0 = all at once */
  int threads;             /* --threads N; 0 = all cores */
  int max_new_tokens;      /* --max-new-tokens */
  int no_special;          /* --no-special: tokenize without BOS/EOS */
  int verbose;             /* --verbose: timings on stderr */
  const char *stops[MAX_STOPS];
  int n_stops;
  twin_sampling_params sampling;
} llm_run_args;

static void usage(FILE *out) {
  fprintf(out,
          "usage: llm-run --model PATH (--prompt TEXT | --chat TEXT | --tokenize TEXT |\n"
          "                             --tokens ID,ID,... --logits FILE) [options]\n"
          "\n"
          "Loads a model (a Hugging Face directory, a .gguf file or hf://org/name@rev) and runs it.\n"
          "\n"
          "  --model PATH      the model (env LLM_MODEL)\n"
          "  --prompt TEXT     generate a continuation of TEXT; the text streams to stdout\n"
          "  --chat TEXT       one user message through the model's chat template; the answer streams\n"
          "  --system TEXT     a system message for --chat\n"
          "  --chat-template NAME  override the detected chat template\n"
          "  --tokenize TEXT   print the token ids of TEXT as a JSON array\n"
          "  --no-special      --tokenize without BOS/EOS\n"
          "  --tokens LIST     comma-separated token ids of one sequence\n"
          "  --logits FILE     run one forward over the tokens and write float32 logits,\n"
          "                    little-endian, [n_tokens][vocab_size], to FILE ('-': stdout)\n"
          "  --chunk N         feed the tokens N at a time through the paged KV cache\n"
          "                    (1 = token by token); default: all in one step\n"
          "sampling (--prompt, --chat):\n"
          "  --max-new-tokens N (default 256)  --temperature T (default 0.7; 0 = greedy)\n"
          "  --top-p P  --top-k K  --min-p P  --repetition-penalty R  --presence-penalty P\n"
          "  --frequency-penalty F  --seed N  --stop TEXT (repeatable, up to 16)\n"
          "  --backend cpu|cuda  (env LLM_BACKEND; default cpu)\n"
          "  --threads N       CPU threads (env LLM_THREADS); default: all cores\n"
          "  --verbose         timings and token counts on stderr\n"
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
  enum { OPT_MODEL = 1000, OPT_TOKENS, OPT_LOGITS, OPT_CHUNK, OPT_THREADS, OPT_PROMPT, OPT_CHAT,
         OPT_TOKENIZE, OPT_SYSTEM, OPT_TEMPLATE, OPT_BACKEND, OPT_MAX_NEW, OPT_NO_SPECIAL,
         OPT_VERBOSE, OPT_STOP, OPT_TEMP, OPT_TOP_P, OPT_TOP_K, OPT_MIN_P, OPT_REP, OPT_PRES,
         OPT_FREQ, OPT_SEED };
  static const struct option options[] = {
      {"model", required_argument, NULL, OPT_MODEL},
      {"tokens", required_argument, NULL, OPT_TOKENS},
      {"logits", required_argument, NULL, OPT_LOGITS},
      {"chunk", required_argument, NULL, OPT_CHUNK},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"prompt", required_argument, NULL, OPT_PROMPT},
      {"chat", required_argument, NULL, OPT_CHAT},
      {"tokenize", required_argument, NULL, OPT_TOKENIZE},
      {"system", required_argument, NULL, OPT_SYSTEM},
      {"chat-template", required_argument, NULL, OPT_TEMPLATE},
      {"backend", required_argument, NULL, OPT_BACKEND},
      {"max-new-tokens", required_argument, NULL, OPT_MAX_NEW},
      {"no-special", no_argument, NULL, OPT_NO_SPECIAL},
      {"verbose", no_argument, NULL, OPT_VERBOSE},
      {"stop", required_argument, NULL, OPT_STOP},
      {"temperature", required_argument, NULL, OPT_TEMP},
      {"top-p", required_argument, NULL, OPT_TOP_P},
      {"top-k", required_argument, NULL, OPT_TOP_K},
      {"min-p", required_argument, NULL, OPT_MIN_P},
      {"repetition-penalty", required_argument, NULL, OPT_REP},
      {"presence-penalty", required_argument, NULL, OPT_PRES},
      {"frequency-penalty", required_argument, NULL, OPT_FREQ},
      {"seed", required_argument, NULL, OPT_SEED},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  memset(a, 0, sizeof *a);
  twin_sampling_params_default(&a->sampling);
  a->sampling.temperature = 0.7f;
  a->max_new_tokens = 256;
  a->model_dir = getenv("LLM_MODEL");
  a->backend = getenv("LLM_BACKEND");
  if (!a->backend || !*a->backend || !strcmp(a->backend, "auto")) a->backend = "cpu";
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
      case OPT_PROMPT: a->text = optarg; a->mode = MODE_PROMPT; break;
      case OPT_CHAT: a->text = optarg; a->mode = MODE_CHAT; break;
      case OPT_TOKENIZE: a->text = optarg; a->mode = MODE_TOKENIZE; break;
      case OPT_SYSTEM: a->system = optarg; break;
      case OPT_TEMPLATE: a->chat_template = optarg; break;
      case OPT_BACKEND: a->backend = optarg; break;
      case OPT_NO_SPECIAL: a->no_special = 1; break;
      case OPT_VERBOSE: a->verbose = 1; break;
      case OPT_MAX_NEW:
        if ((rc = parse_positive("--max-new-tokens", optarg, &a->max_new_tokens, err))) return rc;
        break;
      case OPT_STOP:
        if (a->n_stops == MAX_STOPS) return twin_err_set(err, TWIN_EINVAL, "--stop: at most %d", MAX_STOPS);
        a->stops[a->n_stops++] = optarg;
        break;
      case OPT_TEMP: case OPT_TOP_P: case OPT_MIN_P: case OPT_REP: case OPT_PRES: case OPT_FREQ: {
        double v;
        if (twin_parse_double(optarg, &v, NULL))
          return twin_err_set(err, TWIN_EINVAL, "%s: '%s' is not a number", argv[optind - 2], optarg);
        float *dst = opt == OPT_TEMP ? &a->sampling.temperature : opt == OPT_TOP_P ? &a->sampling.top_p
                   : opt == OPT_MIN_P ? &a->sampling.min_p : opt == OPT_REP ? &a->sampling.repetition_penalty
                   : opt == OPT_PRES ? &a->sampling.presence_penalty : &a->sampling.frequency_penalty;
        *dst = (float)v;
        break;
      }
      case OPT_TOP_K: {
        int64_t v;
        if (twin_parse_int64(optarg, &v, NULL) || v < 0 || v > INT_MAX)
          return twin_err_set(err, TWIN_EINVAL, "--top-k: '%s' is not a count", optarg);
        a->sampling.top_k = (int)v;
        break;
      }
      case OPT_SEED: {
        uint64_t v;
        if (twin_parse_uint64(optarg, &v, NULL))
          return twin_err_set(err, TWIN_EINVAL, "--seed: '%s' is not an unsigned integer", optarg);
        a->sampling.seed = v;
        a->sampling.has_seed = 1;
        break;
      }
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
    return twin_err_set(err, TWIN_EINVAL, "nothing to do: give --prompt, --chat, --tokenize or --logits");
  if (a->mode == MODE_LOGITS && !a->tokens)
    return twin_err_set(err, TWIN_EINVAL, "--logits needs --tokens");
  if ((a->mode == MODE_PROMPT || a->mode == MODE_CHAT) && !*a->text)
    return twin_err_set(err, TWIN_EINVAL, "%s: empty text", a->mode == MODE_PROMPT ? "--prompt" : "--chat");
  if (a->text && twin_utf8_validate(a->text, strlen(a->text)) != strlen(a->text))
    return twin_err_set(err, TWIN_EINVAL, "the text is not valid UTF-8 (byte %zu)",
                        twin_utf8_validate(a->text, strlen(a->text)));
  if (strcmp(a->backend, "cpu") && strcmp(a->backend, "cuda"))
    return twin_err_set(err, TWIN_EINVAL, "--backend: '%s' is not cpu or cuda", a->backend);
  return twin_sampling_params_validate(&a->sampling, err);
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
  twin_model *model;       /* config, mapped weights, tokenizer, chat template */
  twin_model_config cfg;
  twin_backend *backend;
} loaded_model;

/* Opens the model (directory, .gguf or hf://). */
static int model_open(loaded_model *m, const char *path, const char *chat_template, twin_err *err) {
  memset(m, 0, sizeof *m);
  twin_model_open_opts o = {.chat_template = chat_template};
  int rc = twin_model_open(path, &o, &m->model, err);
  if (rc == 0) m->cfg = m->model->cfg;
  return rc;
}

static int model_start_backend(loaded_model *m, const char *backend, const twin_backend_opts *opts,
                               twin_err *err) {
  int rc;
  if (!strcmp(backend, "cuda")) {
#ifdef TWIN_HAVE_CUDA
    rc = twin_backend_cuda_create(&m->cfg, m->model->weights, opts, &m->backend, err);
#else
    rc = twin_err_set(err, TWIN_EUNSUPPORTED, "--backend cuda: this build has no CUDA backend");
#endif
  } else {
    rc = twin_backend_cpu_create(&m->cfg, m->model->weights, opts, &m->backend, err);
  }
  if (rc) return rc;
  LOG_INFO("model %s: %s, %d layers, dim %d, %d heads (%d kv, head_dim %d), vocab %d; %d KV "
           "blocks on %s", m->model->name, m->cfg.arch_name, m->cfg.n_layers, m->cfg.dim, m->cfg.n_heads,
           m->cfg.n_kv_heads, m->cfg.head_dim, m->cfg.vocab_size, m->backend->num_blocks,
           m->backend->name);
  return 0;
}

static void model_close(loaded_model *m) {
  twin_backend_destroy(m->backend);
  twin_model_destroy(m->model);
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
  int rc = model_open(&model, a->model_dir, NULL, err);
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
  if ((rc = model_start_backend(&model, a->backend, &opts, err))) goto done;
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

/* ---- --tokenize ---------------------------------------------------------------------------- */

static int run_tokenize(const llm_run_args *a, twin_err *err) {
  loaded_model model;
  int rc = model_open(&model, a->model_dir, NULL, err);
  if (rc == 0 && !model.model->tok)
    rc = twin_err_set(err, TWIN_ENOTFOUND, "%s has no tokenizer", a->model_dir);
  int32_t *ids = NULL;
  size_t n = 0;
  if (rc == 0) rc = twin_tokenizer_encode(model.model->tok, a->text, strlen(a->text), !a->no_special, &ids, &n, err);
  if (rc == 0) {
    putchar('[');
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("]\n");
  }
  free(ids);
  model_close(&model);
  return rc;
}

/* ---- --prompt / --chat ---------------------------------------------------------------------- */

typedef struct gen_wait {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  twin_gen_event last;
  char error[512];
} gen_wait;

/* Engine callback (its loop thread): stream the text, remember the end. */
static void on_event(void *user, const twin_gen_event *ev) {
  gen_wait *w = user;
  if (ev->text_len) {
    fwrite(ev->text, 1, ev->text_len, stdout);
    fflush(stdout);
  }
  if (ev->finish == TWIN_FINISH_NONE) return;
  pthread_mutex_lock(&w->mu);
  w->last = *ev;
  snprintf(w->error, sizeof w->error, "%s", ev->error ? ev->error : "");
  w->done = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static int run_generate(const llm_run_args *a, twin_err *err) {
  loaded_model model;
  twin_engine *engine = NULL;
  int32_t *ids = NULL;
  size_t n_ids = 0;
  int rc = model_open(&model, a->model_dir, a->chat_template, err);
  if (rc) return rc;
  if (!model.model->tok) {
    rc = twin_err_set(err, TWIN_ENOTFOUND, "%s has no tokenizer: use --tokens/--logits", a->model_dir);
    goto done;
  }
  if (a->mode == MODE_CHAT) {
    twin_chat_message msgs[2];
    int n = 0;
    if (a->system) msgs[n++] = (twin_chat_message){"system", a->system};
    msgs[n++] = (twin_chat_message){"user", a->text};
    rc = twin_model_encode_chat(model.model, msgs, n, &ids, &n_ids, err);
  } else {
    rc = twin_tokenizer_encode(model.model->tok, a->text, strlen(a->text), 1, &ids, &n_ids, err);
  }
  if (rc) goto done;
  int context = (int)n_ids + a->max_new_tokens + 1;
  if (context > model.cfg.max_seq_len) context = model.cfg.max_seq_len;
  int step = (int)n_ids > 512 ? 512 : (int)n_ids < 64 ? 64 : (int)n_ids;
  twin_backend_opts bo = {.kv_bytes = 0, .kv_fraction = 0, .max_tokens_per_step = step, .max_seqs = 1,
                          .threads = a->threads};
  /* blocks for one sequence of the whole context, plus slack */
  bo.kv_bytes = kv_bytes_for(&model.cfg, (context + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE + 2);
  if ((rc = model_start_backend(&model, a->backend, &bo, err))) goto done;
  twin_engine_opts eo = {.max_batch = 1, .max_queue = 1, .max_context = context,
                         .max_tokens_per_step = step};
  if ((rc = twin_engine_create(model.backend, model.model->tok, model.model->eos_ids,
                               model.model->n_eos, &eo, &engine, err)))
    goto done;
  gen_wait w = {.done = 0};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  twin_gen_request g = {.prompt = ids, .n_prompt = (int)n_ids, .sampling = a->sampling,
                        .max_new_tokens = a->max_new_tokens, .stop = a->stops, .n_stop = a->n_stops,
                        .callback = on_event, .user = &w};
  if (g.max_new_tokens > context - (int)n_ids) g.max_new_tokens = context - (int)n_ids;
  int64_t t0 = twin_time_mono_us();
  if ((rc = twin_engine_submit(engine, &g, NULL, err)) == 0) {
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    printf("\n");
    double total = (twin_time_mono_us() - t0) / 1e6;
    if (w.last.finish == TWIN_FINISH_ERROR) rc = twin_err_set(err, TWIN_EINTERNAL, "%s", w.error);
    if (a->verbose) {
      double decode_s = (w.last.total_ms - w.last.ttft_ms) / 1e3;
      fprintf(stderr, "llm-run: %d prompt tokens, %d generated (%s); prefill %.1f tok/s, decode %.1f tok/s; %.2f s\n",
              w.last.prompt_tokens, w.last.completion_tokens,
              w.last.finish == TWIN_FINISH_STOP ? "stop" : w.last.finish == TWIN_FINISH_LENGTH ? "length" : "other",
              w.last.ttft_ms > 0 ? w.last.prompt_tokens / (w.last.ttft_ms / 1e3) : 0,
              decode_s > 0 && w.last.completion_tokens > 1 ? (w.last.completion_tokens - 1) / decode_s : 0, total);
    }
  }
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
done:
  twin_engine_destroy(engine);
  model_close(&model);
  free(ids);
  return rc;
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  twin_log_init("llm-run", TWIN_LOG_WARN, 0);
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
    case MODE_TOKENIZE: rc = run_tokenize(&args, &err); break;
    case MODE_PROMPT:
    case MODE_CHAT: rc = run_generate(&args, &err); break;
    default: rc = twin_err_set(&err, TWIN_EINTERNAL, "no mode"); break;
  }
  if (rc) {
    fprintf(stderr, "llm-run: error: %s (%s)\n", err.msg, twin_err_name(rc));
    return 1;
  }
  return 0;
}
