/* tests/bench/bench_cpu_forward.c — bench-cpu-forward, the CPU backend's speed on one model
 * directory: load time (map + convert to fp32), prefill tokens/s (one step over a prompt of
 * --prompt tokens), decode tokens/s (--decode steps of --batch sequences, one token each, after
 * their prefill), and resident memory (after load, and the process's peak). Token ids are
 * pseudo-random; only the timings matter. Prints figures, asserts nothing about speed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/error.h"
#include "llm-svc/engine/backend.h"
#include "llm-svc/model/config.h"
#include "llm-svc/model/weights.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* VmRSS (or VmHWM) of this process in MiB, from /proc/self/status. */
static double proc_status_mib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double mib = -1;
  size_t key_len = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, key, key_len) == 0 && line[key_len] == ':')
      mib = strtod(line + key_len + 1, NULL) / 1024.0;
  if (f) fclose(f);
  return mib;
}

int main(int argc, char **argv) {
  static const struct option options[] = {
      {"model", required_argument, NULL, 'm'}, {"prompt", required_argument, NULL, 'p'},
      {"decode", required_argument, NULL, 'd'}, {"batch", required_argument, NULL, 'b'},
      {"threads", required_argument, NULL, 't'}, {NULL, 0, NULL, 0},
  };
  const char *model_dir = NULL;
  int prompt = 128, decode = 32, batch_seqs = 1, threads = 0, opt;
  while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
    switch (opt) {
      case 'm': model_dir = optarg; break;
      case 'p': prompt = atoi(optarg); break;
      case 'd': decode = atoi(optarg); break;
      case 'b': batch_seqs = atoi(optarg); break;
      case 't': threads = atoi(optarg); break;
      default: goto usage;
    }
  }
  if (!model_dir || prompt < 1 || decode < 1 || batch_seqs < 1 || batch_seqs > 256) {
  usage:
    fprintf(stderr, "usage: bench-cpu-forward --model DIR [--prompt 128] [--decode 32] "
                    "[--batch 1] [--threads N]\n");
    return 2;
  }

  twin_err err = {0};
  twin_model_config cfg;
  twin_weights *weights = NULL;
  twin_backend *backend = NULL;
  const int context = prompt + decode;
  const int blocks_per_seq = (context + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE;
  double t0 = now_seconds();
  int rc = twin_config_load_hf(&cfg, model_dir, &err);
  if (rc == 0) rc = twin_weights_open_safetensors_dir(&weights, model_dir, &err);
  twin_backend_opts opts = {
      .kv_bytes = (size_t)blocks_per_seq * batch_seqs * cfg.n_layers * 2 * TWIN_KV_BLOCK_SIZE *
                  cfg.n_kv_heads * cfg.head_dim * sizeof(float),
      .max_tokens_per_step = prompt > batch_seqs ? prompt : batch_seqs,
      .max_seqs = batch_seqs,
      .threads = threads,
  };
  if (rc == 0) rc = twin_backend_cpu_create(&cfg, weights, &opts, &backend, &err);
  twin_weights_destroy(weights);
  if (rc) {
    fprintf(stderr, "bench-cpu-forward: %s\n", err.msg);
    return 1;
  }
  const double load_s = now_seconds() - t0;
  const double rss_after_load = proc_status_mib("VmRSS");

  int32_t *tables = malloc((size_t)batch_seqs * blocks_per_seq * sizeof *tables);
  int32_t *tokens = malloc((size_t)prompt * sizeof *tokens);
  int32_t *positions = malloc((size_t)(prompt > batch_seqs ? prompt : batch_seqs) *
                              sizeof *positions);
  int32_t *seq_start = malloc((size_t)(batch_seqs + 1) * sizeof *seq_start);
  int32_t *seq_len = malloc((size_t)batch_seqs * sizeof *seq_len);
  float *logits = malloc((size_t)batch_seqs * cfg.vocab_size * sizeof *logits);
  for (int i = 0; i < batch_seqs * blocks_per_seq; i++) tables[i] = i;
  uint32_t lcg = 2024;
  for (int t = 0; t < prompt; t++) {
    lcg = lcg * 1664525u + 1013904223u;
    tokens[t] = (int32_t)(lcg % (uint32_t)cfg.vocab_size);
    positions[t] = t;
  }

  /* prefill: each sequence's prompt in one step (last-token logits only) */
  double prefill_s = 0;
  for (int s = 0; s < batch_seqs && rc == 0; s++) {
    const int32_t one_start[2] = {0, prompt}, one_len[1] = {prompt};
    twin_batch b = {.n_tokens = prompt, .n_seqs = 1, .tokens = tokens, .positions = positions,
                    .seq_start = one_start, .seq_len = one_len,
                    .block_tables = tables + (size_t)s * blocks_per_seq,
                    .max_blocks = blocks_per_seq, .all_logits = 0};
    double t = now_seconds();
    rc = twin_backend_forward(backend, &b, logits, &err);
    prefill_s += now_seconds() - t;
  }

  /* decode: every sequence one token per step, greedy on its own logits */
  int32_t *step_tokens = malloc((size_t)batch_seqs * sizeof *step_tokens);
  for (int s = 0; s < batch_seqs; s++) step_tokens[s] = tokens[prompt - 1];
  double decode_s = 0;
  for (int step = 0; step < decode && rc == 0; step++) {
    for (int s = 0; s < batch_seqs; s++) {
      seq_start[s] = s;
      seq_len[s] = prompt + step + 1;
      positions[s] = prompt + step;
    }
    seq_start[batch_seqs] = batch_seqs;
    twin_batch b = {.n_tokens = batch_seqs, .n_seqs = batch_seqs, .tokens = step_tokens,
                    .positions = positions, .seq_start = seq_start, .seq_len = seq_len,
                    .block_tables = tables, .max_blocks = blocks_per_seq, .all_logits = 0};
    double t = now_seconds();
    rc = twin_backend_forward(backend, &b, logits, &err);
    decode_s += now_seconds() - t;
    for (int s = 0; s < batch_seqs && rc == 0; s++) {
      const float *row = logits + (size_t)s * cfg.vocab_size;
      int best = 0;
      for (int v = 1; v < cfg.vocab_size; v++)
        if (row[v] > row[best]) best = v;
      step_tokens[s] = best;
    }
  }
  if (rc) {
    fprintf(stderr, "bench-cpu-forward: %s\n", err.msg);
  } else {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("model            %s (%s, %d layers, dim %d, vocab %d, weights %s on the backend)\n",
           model_dir, cfg.arch_name, cfg.n_layers, cfg.dim, cfg.vocab_size,
           backend->weights_dtype);
    printf("load             %.2f s (map + convert)\n", load_s);
    printf("prefill          %d x %d tokens in %.3f s: %.1f tokens/s\n", batch_seqs, prompt,
           prefill_s, (double)prompt * batch_seqs / prefill_s);
    printf("decode           batch %d, %d steps in %.3f s: %.2f tokens/s (%.1f ms/step)\n",
           batch_seqs, decode, decode_s, (double)decode * batch_seqs / decode_s,
           1e3 * decode_s / decode);
    printf("rss after load   %.0f MiB\n", rss_after_load);
    printf("peak rss         %.0f MiB\n", (double)ru.ru_maxrss / 1024.0);
  }
  twin_backend_destroy(backend);
  free(tables);
  free(tokens);
  free(positions);
  free(seq_start);
  free(seq_len);
  free(logits);
  free(step_tokens);
  return rc ? 1 : 0;
}
