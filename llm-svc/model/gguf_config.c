/* llm-svc/model/gguf_config.c — a twin_model_config from GGUF metadata: general.architecture
 * picks the key prefix ("llama.embedding_length", "gemma3.attention.sliding_window"...), the
 * tokenizer.ggml.* ids give BOS / EOS, and the tensor list says whether the output matrix is
 * tied to the embeddings. As with config.json, what we cannot run (another rope scaling, partial
 * rotary dimensions, per-layer head counts) is refused by name. Gemma 3 files leave some of its
 * constants to the reader; they are filled with the values of the published configs: one global
 * layer in 6, local rope base 10000, attention scaled by head_dim^-1/2 (the 27B shape, 62 layers,
 * by (dim / heads)^-1/2), norm weights already stored as 1 + w. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "llm-svc/model/gguf.h"

typedef struct cfg_reader {
  const twin_gguf *g;
  const char *arch;
  twin_err *err;
} cfg_reader;

/* {arch}.<suffix> as an integer in [lo, hi]; fallback when absent (required: error). */
static int arch_int(cfg_reader *r, const char *suffix, int required, int64_t fallback,
                    int64_t lo, int64_t hi, int *out) {
  char key[160];
  snprintf(key, sizeof key, "%s.%s", r->arch, suffix);
  int64_t v;
  int rc = twin_gguf_get_int(r->g, key, lo, hi, &v, r->err);
  if (rc == TWIN_ENOTFOUND && !required) {
    twin_err_clear(r->err);
    v = fallback;
    rc = 0;
  }
  if (rc) return rc;
  *out = (int)v;
  return 0;
}

/* {arch}.<suffix> as a positive number; fallback when absent. */
static int arch_positive(cfg_reader *r, const char *suffix, double fallback, float *out) {
  char key[160];
  snprintf(key, sizeof key, "%s.%s", r->arch, suffix);
  double v;
  int rc = twin_gguf_get_float(r->g, key, &v, r->err);
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(r->err);
    *out = (float)fallback;
    return 0;
  }
  if (rc) return rc;
  if (!(v > 0))
    return twin_err_set(r->err, TWIN_EFORMAT, "%s: metadata key '%s' must be positive (is %g)",
                        twin_gguf_path(r->g), key, v);
  *out = (float)v;
  return 0;
}

/* tokenizer.ggml.<name>_token_id, -1 when absent. */
static int token_id(cfg_reader *r, const char *name, int vocab, int *out) {
  char key[96];
  snprintf(key, sizeof key, "tokenizer.ggml.%s_token_id", name);
  int64_t v;
  int rc = twin_gguf_get_int(r->g, key, 0, vocab - 1, &v, r->err);
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(r->err);
    *out = -1;
    return 0;
  }
  if (rc) return rc;
  *out = (int)v;
  return 0;
}

static void add_eos(twin_model_config *cfg, int id) {
  if (id < 0) return;
  for (int i = 0; i < cfg->n_eos; i++)
    if (cfg->eos_ids[i] == id) return;
  if (cfg->n_eos < TWIN_MAX_EOS) cfg->eos_ids[cfg->n_eos++] = id;
}

static int read_rope_scaling(cfg_reader *r, twin_model_config *cfg) {
  const char *path = twin_gguf_path(r->g);
  char key[160];
  snprintf(key, sizeof key, "%s.rope.scaling.type", r->arch);
  const char *type;
  size_t len;
  int rc = twin_gguf_get_string(r->g, key, &type, &len, r->err);
  float factor = 0.0f;
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(r->err);
    /* older files: {arch}.rope.scale_linear */
    if ((rc = arch_positive(r, "rope.scale_linear", 1.0, &factor))) return rc;
    if (factor != 1.0f && cfg->arch != TWIN_ARCH_GEMMA3)
      return twin_err_set(r->err, TWIN_EUNSUPPORTED, "%s: %s.rope.scale_linear %g: linear rope "
                          "scaling is supported for gemma3 only", path, r->arch, factor);
    cfg->rope_linear_factor = factor == 1.0f ? 0.0f : factor;
    return 0;
  }
  if (rc) return rc;
  if (len == 4 && memcmp(type, "none", 4) == 0) return 0;
  if (len != 6 || memcmp(type, "linear", 6) != 0 || cfg->arch != TWIN_ARCH_GEMMA3)
    return twin_err_set(r->err, TWIN_EUNSUPPORTED,
                        "%s: metadata key '%s' is '%.*s'; only none (and linear for gemma3) rope "
                        "scaling is supported", path, key, (int)(len > 40 ? 40 : len), type);
  if ((rc = arch_positive(r, "rope.scaling.factor", 1.0, &factor))) return rc;
  cfg->rope_linear_factor = factor == 1.0f ? 0.0f : factor;
  return 0;
}

static int read_gemma3(cfg_reader *r, twin_model_config *cfg) {
  int rc;
  if ((rc = arch_int(r, "attention.sliding_window", 0, 4096, 1, 1 << 30, &cfg->sliding_window)) ||
      (rc = arch_int(r, "attention.sliding_window_pattern", 0, 6, 1, 1024,
                     &cfg->sliding_window_pattern)) ||
      (rc = arch_positive(r, "rope.freq_base_swa", 10000.0, &cfg->rope_local_theta)) ||
      (rc = arch_positive(r, "final_logit_softcapping", 0.0, &cfg->final_logit_softcap)) ||
      (rc = arch_positive(r, "attn_logit_softcapping", 0.0, &cfg->attn_logit_softcap)))
    return rc;
  cfg->query_pre_attn_scalar = cfg->n_layers == 62 ? (float)(cfg->dim / cfg->n_heads)
                                                   : (float)cfg->head_dim;
  cfg->embed_scale = sqrtf((float)cfg->dim);
  cfg->mlp_act = TWIN_MLP_GELU_TANH;
  cfg->norm_weight_offset = 0.0f;
  return 0;
}

int twin_gguf_read_config(const twin_gguf *g, twin_model_config *cfg, twin_err *err) {
  memset(cfg, 0, sizeof *cfg);
  cfg->bos_id = -1;
  const char *path = twin_gguf_path(g);
  const char *arch_text;
  size_t arch_len;
  int rc = twin_gguf_get_string(g, "general.architecture", &arch_text, &arch_len, err);
  if (rc) return rc;
  static const struct { const char *name; twin_arch arch; } archs[] = {
      {"llama", TWIN_ARCH_LLAMA}, {"qwen2", TWIN_ARCH_QWEN2}, {"gemma3", TWIN_ARCH_GEMMA3}};
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
    if (strlen(archs[i].name) == arch_len && memcmp(archs[i].name, arch_text, arch_len) == 0) {
      cfg->arch = archs[i].arch;
      snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", archs[i].name);
    }
  if (!cfg->arch)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "%s: general.architecture '%.*s' is not supported (llama, qwen2, gemma3)",
                        path, (int)(arch_len > 40 ? 40 : arch_len), arch_text);
  cfg_reader r = {.g = g, .arch = cfg->arch_name, .err = err};
  const int gemma3 = cfg->arch == TWIN_ARCH_GEMMA3;

  if ((rc = arch_int(&r, "embedding_length", 1, 0, 1, 1 << 16, &cfg->dim)) ||
      (rc = arch_int(&r, "block_count", 1, 0, 1, 1024, &cfg->n_layers)) ||
      (rc = arch_int(&r, "feed_forward_length", 1, 0, 1, 1 << 20, &cfg->hidden_dim)) ||
      (rc = arch_int(&r, "attention.head_count", 1, 0, 1, 1024, &cfg->n_heads)) ||
      (rc = arch_int(&r, "attention.head_count_kv", 0, cfg->n_heads, 1, 1024, &cfg->n_kv_heads)) ||
      (rc = arch_int(&r, "context_length", 0, 2048, 1, 1 << 24, &cfg->max_seq_len)))
    return rc;
  int default_head_dim = cfg->dim % cfg->n_heads == 0 ? cfg->dim / cfg->n_heads : 0;
  int value_dim, rope_dims;
  if ((rc = arch_int(&r, "attention.key_length", default_head_dim == 0, default_head_dim, 2, 1024,
                     &cfg->head_dim)) ||
      (rc = arch_int(&r, "attention.value_length", 0, cfg->head_dim, 1, 1024, &value_dim)) ||
      (rc = arch_int(&r, "rope.dimension_count", 0, cfg->head_dim, 1, 1024, &rope_dims)))
    return rc;
  if (value_dim != cfg->head_dim)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: %s.attention.value_length %d differs from "
                        "key_length %d", path, r.arch, value_dim, cfg->head_dim);
  if (rope_dims != cfg->head_dim)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: %s.rope.dimension_count %d: rotary "
                        "embeddings over part of a head (%d) are not supported", path, r.arch,
                        rope_dims, cfg->head_dim);
  if (cfg->head_dim % 2 != 0 || cfg->n_heads % cfg->n_kv_heads != 0)
    return twin_err_set(err, TWIN_EFORMAT, "%s: head_dim %d must be even and head_count %d a "
                        "multiple of head_count_kv %d", path, cfg->head_dim, cfg->n_heads,
                        cfg->n_kv_heads);
  if ((rc = arch_positive(&r, "rope.freq_base", gemma3 ? 1000000.0 : 10000.0, &cfg->rope_theta)) ||
      (rc = arch_positive(&r, "attention.layer_norm_rms_epsilon", gemma3 ? 1e-6 : 1e-5,
                          &cfg->norm_eps)) ||
      (rc = read_rope_scaling(&r, cfg)))
    return rc;
  if (twin_gguf_tensor_find(g, "rope_freqs.weight"))
    return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: tensor 'rope_freqs.weight' (per-frequency "
                        "rope factors, Llama 3.1 style) is not supported", path);

  /* vocabulary: the key, else the token list, else the embedding rows */
  const twin_tensor *embed = twin_gguf_tensor_find(g, "token_embd.weight");
  const twin_gguf_kv *tokens = twin_gguf_find(g, "tokenizer.ggml.tokens");
  int64_t fallback_vocab = tokens && tokens->type == TWIN_GGUF_ARRAY ? (int64_t)tokens->count
                           : embed && embed->ndim == 2 ? embed->shape[0] : 0;
  if ((rc = arch_int(&r, "vocab_size", fallback_vocab == 0, fallback_vocab, 1, 1 << 24,
                     &cfg->vocab_size)))
    return rc;
  if (fallback_vocab > 1 << 24 || fallback_vocab < 0)
    return twin_err_set(err, TWIN_EFORMAT, "%s: vocabulary of %lld tokens", path,
                        (long long)fallback_vocab);
  cfg->tie_embeddings = twin_gguf_tensor_find(g, "output.weight") == NULL;
  cfg->attn_bias = cfg->arch == TWIN_ARCH_QWEN2;
  cfg->mlp_act = TWIN_MLP_SILU;
  if (gemma3 && (rc = read_gemma3(&r, cfg))) return rc;

  int eos, eot;
  if ((rc = token_id(&r, "bos", cfg->vocab_size, &cfg->bos_id)) ||
      (rc = token_id(&r, "eos", cfg->vocab_size, &eos)) ||
      (rc = token_id(&r, "eot", cfg->vocab_size, &eot)))
    return rc;
  add_eos(cfg, eos);
  add_eos(cfg, eot);

  /* the dtype the file mostly holds: its first attention matrix's */
  const twin_tensor *q = twin_gguf_tensor_find(g, "blk.0.attn_q.weight");
  cfg->dtype = q ? q->dtype : TWIN_DT_F32;
  return 0;
}
