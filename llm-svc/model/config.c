/* llm-svc/model/config.c — reads a Hugging Face config.json (llama, mistral, qwen2,
 * gemma3_text) and generation_config.json into a twin_model_config. Each field is checked for type and range,
 * and anything that would change the math in a way we do not implement (another activation,
 * o_proj or MLP biases, a rope scaling other than llama3, qwen2's sliding window) is refused by
 * name rather than run wrongly. Field defaults follow the transformers config classes. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "llm-svc/model/config.h"

#define CONFIG_MAX_BYTES (16u << 20)

/* ---- JSON field helpers -------------------------------------------------------------------- */

static int read_json_file(const char *path, cJSON **out, twin_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return twin_err_set(err, errno == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: cannot open: %s",
                        path, strerror(errno));
  char *text = malloc(CONFIG_MAX_BYTES + 1);
  if (!text) {
    fclose(f);
    return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path);
  }
  size_t n = fread(text, 1, CONFIG_MAX_BYTES + 1, f);
  int failed = ferror(f);
  fclose(f);
  if (failed || n > CONFIG_MAX_BYTES) {
    free(text);
    return twin_err_set(err, failed ? TWIN_EIO : TWIN_EFORMAT,
                        failed ? "%s: read failed" : "%s: larger than 16 MiB", path);
  }
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
  size_t at = end ? (size_t)(end - text) : 0;
  free(text);
  if (!root) return twin_err_set(err, TWIN_EFORMAT, "%s: malformed JSON near byte %zu", path, at);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return twin_err_set(err, TWIN_EFORMAT, "%s: not a JSON object", path);
  }
  *out = root;
  return 0;
}

/* A field that is absent or null. */
static int json_absent(const cJSON *obj, const char *key) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  return !item || cJSON_IsNull(item);
}

/* Integer field in [lo, hi]; `fallback` when absent/null, or an error when required. */
static int json_int(const cJSON *obj, const char *key, int required, int fallback, long lo,
                    long hi, int *out, const char *path, twin_err *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!item || cJSON_IsNull(item)) {
    if (required) return twin_err_set(err, TWIN_EFORMAT, "%s: missing field '%s'", path, key);
    *out = fallback;
    return 0;
  }
  double d = cJSON_IsNumber(item) ? item->valuedouble : NAN;
  if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
    return twin_err_set(err, TWIN_EFORMAT, "%s: field '%s' must be an integer in [%ld, %ld]",
                        path, key, lo, hi);
  *out = (int)d;
  return 0;
}

/* Number field > 0 (and finite). */
static int json_positive(const cJSON *obj, const char *key, double fallback, double *out,
                         const char *path, twin_err *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!item || cJSON_IsNull(item)) {
    *out = fallback;
    return 0;
  }
  if (!cJSON_IsNumber(item) || !(item->valuedouble > 0) || !isfinite(item->valuedouble))
    return twin_err_set(err, TWIN_EFORMAT, "%s: field '%s' must be a positive number", path,
                        key);
  *out = item->valuedouble;
  return 0;
}

static int json_bool(const cJSON *obj, const char *key, int fallback, int *out, const char *path,
                     twin_err *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!item || cJSON_IsNull(item)) {
    *out = fallback;
    return 0;
  }
  if (!cJSON_IsBool(item))
    return twin_err_set(err, TWIN_EFORMAT, "%s: field '%s' must be true or false", path, key);
  *out = cJSON_IsTrue(item);
  return 0;
}

/* eos_token_id: an integer or a list of integers; merged into cfg->eos_ids without repeats. */
static int merge_eos(twin_model_config *cfg, const cJSON *obj, const char *path, twin_err *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "eos_token_id");
  if (!item || cJSON_IsNull(item)) return 0;
  int n = cJSON_IsArray(item) ? cJSON_GetArraySize(item) : 1;
  for (int i = 0; i < n; i++) {
    const cJSON *id = cJSON_IsArray(item) ? cJSON_GetArrayItem(item, i) : item;
    double d = cJSON_IsNumber(id) ? id->valuedouble : -1;
    if (!(d >= 0 && d < cfg->vocab_size) || d != floor(d))
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: 'eos_token_id' must be token ids in [0, %d) (an integer or a list)",
                          path, cfg->vocab_size);
    int seen = 0;
    for (int k = 0; k < cfg->n_eos; k++) seen |= cfg->eos_ids[k] == (int)d;
    if (seen) continue;
    if (cfg->n_eos == TWIN_MAX_EOS)
      return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: more than %d distinct eos_token_id values",
                          path, TWIN_MAX_EOS);
    cfg->eos_ids[cfg->n_eos++] = (int)d;
  }
  return 0;
}

/* ---- architecture ------------------------------------------------------------------------- */

static const struct {
  const char *model_type;
  const char *architecture;
  twin_arch arch;
} known_archs[] = {
    {"llama", "LlamaForCausalLM", TWIN_ARCH_LLAMA},
    {"mistral", "MistralForCausalLM", TWIN_ARCH_MISTRAL},
    {"qwen2", "Qwen2ForCausalLM", TWIN_ARCH_QWEN2},
    {"gemma3_text", "Gemma3ForCausalLM", TWIN_ARCH_GEMMA3},
};
#define N_KNOWN_ARCHS (sizeof known_archs / sizeof known_archs[0])

static int resolve_arch(twin_model_config *cfg, const cJSON *root, const char *path,
                        twin_err *err) {
  const cJSON *model_type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
  const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  const cJSON *arch0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
  const char *type = cJSON_IsString(model_type) ? model_type->valuestring : NULL;
  const char *arch_name = cJSON_IsString(arch0) ? arch0->valuestring : NULL;
  if (!type && !arch_name)
    return twin_err_set(err, TWIN_EFORMAT, "%s: neither 'model_type' nor 'architectures' given",
                        path);
  for (size_t i = 0; i < N_KNOWN_ARCHS; i++) {
    int type_ok = type && strcmp(type, known_archs[i].model_type) == 0;
    int arch_ok = arch_name && strcmp(arch_name, known_archs[i].architecture) == 0;
    if ((type_ok && (!arch_name || arch_ok)) || (!type && arch_ok)) {
      cfg->arch = known_archs[i].arch;
      snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s",
               cfg->arch == TWIN_ARCH_GEMMA3 ? "gemma3" : known_archs[i].model_type);
      return 0;
    }
  }
  return twin_err_set(err, TWIN_EUNSUPPORTED,
                      "%s: model_type '%.40s' (architecture '%.60s') is not supported; this build "
                      "runs llama (LlamaForCausalLM), mistral (MistralForCausalLM), qwen2 "
                      "(Qwen2ForCausalLM) and gemma3_text (Gemma3ForCausalLM)",
                      path, type ? type : "(none)", arch_name ? arch_name : "(none)");
}

/* rope_scaling (or, in newer configs, rope_parameters): none/default, linear or llama3. */
static int read_rope(twin_model_config *cfg, const cJSON *root, const char *path,
                     twin_err *err) {
  const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
  const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
  double theta;
  int rc = json_positive(root, "rope_theta", 10000.0, &theta, path, err);
  if (rc) return rc;
  if (cJSON_IsObject(params) && !json_absent(params, "rope_theta") &&
      (rc = json_positive(params, "rope_theta", theta, &theta, path, err)))
    return rc;
  cfg->rope_theta = (float)theta;
  if (!scaling || cJSON_IsNull(scaling)) scaling = cJSON_IsObject(params) ? params : NULL;
  if (!scaling) return 0;
  if (!cJSON_IsObject(scaling))
    return twin_err_set(err, TWIN_EFORMAT, "%s: 'rope_scaling' must be an object or null", path);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(scaling, "rope_type");
  if (!type) type = cJSON_GetObjectItemCaseSensitive(scaling, "type");
  if (!type || cJSON_IsNull(type)) return 0;
  if (!cJSON_IsString(type))
    return twin_err_set(err, TWIN_EFORMAT, "%s: rope_scaling 'rope_type' must be a string", path);
  if (strcmp(type->valuestring, "default") == 0) return 0;
  double factor, low, high;
  /* linear: Gemma 3's global layers (the other families' backends do not implement it) */
  if (strcmp(type->valuestring, "linear") == 0 && cfg->arch == TWIN_ARCH_GEMMA3) {
    if ((rc = json_positive(scaling, "factor", 1.0, &factor, path, err))) return rc;
    cfg->rope_linear_factor = factor == 1.0 ? 0.0f : (float)factor;
    return 0;
  }
  if (strcmp(type->valuestring, "llama3") != 0)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "%s: rope_scaling type '%.40s' is not supported (llama3 is; linear for "
                        "gemma3)", path, type->valuestring);
  if ((rc = json_positive(scaling, "factor", 8.0, &factor, path, err)) ||
      (rc = json_positive(scaling, "low_freq_factor", 1.0, &low, path, err)) ||
      (rc = json_positive(scaling, "high_freq_factor", 4.0, &high, path, err)) ||
      (rc = json_int(scaling, "original_max_position_embeddings", 1, 0, 1, 1 << 24,
                     &cfg->rope_original_max_pos, path, err)))
    return rc;
  if (!(high > low))
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: rope_scaling needs high_freq_factor > low_freq_factor", path);
  cfg->rope_llama3 = 1;
  cfg->rope_factor = (float)factor;
  cfg->rope_low_freq_factor = (float)low;
  cfg->rope_high_freq_factor = (float)high;
  return 0;
}

/* Things that would change the math and that we do not implement. */
static int refuse_unsupported(const twin_model_config *cfg, const cJSON *root, const char *path,
                              twin_err *err) {
  /* gemma3 names its activation hidden_activation (hidden_act may be there too) */
  const char *act_keys[2] = {"hidden_act", "hidden_activation"};
  const char *want_act = cfg->arch == TWIN_ARCH_GEMMA3 ? "gelu_pytorch_tanh" : "silu";
  for (int i = 0; i < 2; i++) {
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, act_keys[i]);
    if (act && !cJSON_IsNull(act) && (!cJSON_IsString(act) || strcmp(act->valuestring, want_act)))
      return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: %s '%.40s' is not supported for %s (%s)",
                          path, act_keys[i], cJSON_IsString(act) ? act->valuestring : "?",
                          cfg->arch_name, want_act);
  }
  int flag, rc;
  if (cfg->arch == TWIN_ARCH_GEMMA3) {
    if ((rc = json_bool(root, "attention_bias", 0, &flag, path, err))) return rc;
    if (flag)
      return twin_err_set(err, TWIN_EUNSUPPORTED,
                          "%s: gemma3 with attention_bias=true is not supported", path);
    if ((rc = json_bool(root, "use_bidirectional_attention", 0, &flag, path, err))) return rc;
    if (flag)
      return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: gemma3 with bidirectional attention (an "
                          "embedding model) is not supported", path);
  }
  if (cfg->arch == TWIN_ARCH_LLAMA) {
    if ((rc = json_bool(root, "attention_bias", 0, &flag, path, err))) return rc;
    if (flag)
      return twin_err_set(err, TWIN_EUNSUPPORTED,
                          "%s: llama with attention_bias=true is not supported", path);
    if ((rc = json_bool(root, "mlp_bias", 0, &flag, path, err))) return rc;
    if (flag)
      return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: llama with mlp_bias=true is not supported",
                          path);
  }
  if (cfg->arch == TWIN_ARCH_QWEN2) {
    if ((rc = json_bool(root, "use_sliding_window", 0, &flag, path, err))) return rc;
    if (flag)
      return twin_err_set(err, TWIN_EUNSUPPORTED,
                          "%s: qwen2 with use_sliding_window=true is not supported", path);
  }
  return 0;
}

static twin_dtype read_dtype(const cJSON *root) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
  if (!cJSON_IsString(item)) item = cJSON_GetObjectItemCaseSensitive(root, "dtype");
  if (cJSON_IsString(item)) {
    if (strcmp(item->valuestring, "bfloat16") == 0) return TWIN_DT_BF16;
    if (strcmp(item->valuestring, "float16") == 0) return TWIN_DT_F16;
  }
  return TWIN_DT_F32;
}

/* A number field that may be absent or null (0 then); else positive. */
static int json_optional_positive(const cJSON *obj, const char *key, float *out, const char *path,
                                  twin_err *err) {
  double v;
  int rc = json_positive(obj, key, 0.0, &v, path, err);
  if (rc == 0) *out = (float)v;
  return rc;
}

/* Gemma 3: which layers slide, from layer_types (newer configs) or sliding_window_pattern. Only
 * "every Nth layer is global" is supported, as every Gemma 3 config has. */
static int read_gemma3_layers(twin_model_config *cfg, const cJSON *root, const char *path,
                              twin_err *err) {
  int rc;
  if ((rc = json_int(root, "sliding_window", 0, 4096, 1, INT_MAX, &cfg->sliding_window, path,
                     err)) ||
      (rc = json_int(root, "sliding_window_pattern", 0, 6, 1, 1024, &cfg->sliding_window_pattern,
                     path, err)))
    return rc;
  const cJSON *types = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
  if (!types || cJSON_IsNull(types)) return 0;
  if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != cfg->n_layers)
    return twin_err_set(err, TWIN_EFORMAT, "%s: 'layer_types' must be a list of %d strings", path,
                        cfg->n_layers);
  int pattern = 0;
  for (int l = 0; l < cfg->n_layers; l++) {
    const cJSON *t = cJSON_GetArrayItem(types, l);
    int full = cJSON_IsString(t) && strcmp(t->valuestring, "full_attention") == 0;
    if (!full && !(cJSON_IsString(t) && strcmp(t->valuestring, "sliding_attention") == 0))
      return twin_err_set(err, TWIN_EFORMAT, "%s: layer_types[%d] must be \"sliding_attention\" "
                          "or \"full_attention\"", path, l);
    if (full && pattern == 0) pattern = l + 1;
  }
  for (int l = 0; l < cfg->n_layers && pattern; l++) {
    const cJSON *t = cJSON_GetArrayItem(types, l);
    int full = strcmp(t->valuestring, "full_attention") == 0;
    if (full != ((l + 1) % pattern == 0))
      return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: layer_types: layer %d breaks the pattern "
                          "of a global layer every %d (the only layout supported)", path, l,
                          pattern);
  }
  /* all sliding: a pattern longer than the model */
  cfg->sliding_window_pattern = pattern ? pattern : cfg->n_layers + 1;
  return 0;
}

static int read_gemma3(twin_model_config *cfg, const cJSON *root, const char *path,
                       twin_err *err) {
  int rc;
  double local_theta, qpas;
  if ((rc = read_gemma3_layers(cfg, root, path, err)) ||
      (rc = json_positive(root, "rope_local_base_freq", 10000.0, &local_theta, path, err)) ||
      (rc = json_positive(root, "query_pre_attn_scalar", 256.0, &qpas, path, err)) ||
      (rc = json_optional_positive(root, "final_logit_softcapping", &cfg->final_logit_softcap,
                                   path, err)) ||
      (rc = json_optional_positive(root, "attn_logit_softcapping", &cfg->attn_logit_softcap, path,
                                   err)))
    return rc;
  cfg->rope_local_theta = (float)local_theta;
  /* newer configs: rope_parameters {"full_attention": {...}, "sliding_attention": {...}} */
  const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
  const cJSON *full = cJSON_IsObject(params) ? cJSON_GetObjectItemCaseSensitive(params, "full_attention") : NULL;
  const cJSON *sliding = cJSON_IsObject(params) ? cJSON_GetObjectItemCaseSensitive(params, "sliding_attention") : NULL;
  if (cJSON_IsObject(sliding)) {
    if ((rc = json_positive(sliding, "rope_theta", local_theta, &local_theta, path, err))) return rc;
    cfg->rope_local_theta = (float)local_theta;
  }
  if (cJSON_IsObject(full)) {
    double theta;
    if ((rc = json_positive(full, "rope_theta", cfg->rope_theta, &theta, path, err))) return rc;
    cfg->rope_theta = (float)theta;
    cJSON *wrapper = cJSON_CreateObject();
    if (!wrapper) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path);
    cJSON_AddItemReferenceToObject(wrapper, "rope_scaling", (cJSON *)full);
    cJSON_AddNumberToObject(wrapper, "rope_theta", theta);
    rc = read_rope(cfg, wrapper, path, err);
    cJSON_Delete(wrapper);
    if (rc) return rc;
    if (cfg->rope_llama3)
      return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: gemma3 with llama3 rope scaling is not "
                          "supported", path);
  }
  cfg->query_pre_attn_scalar = (float)qpas;
  cfg->embed_scale = sqrtf((float)cfg->dim);
  cfg->mlp_act = TWIN_MLP_GELU_TANH;
  cfg->norm_weight_offset = 1.0f;
  return 0;
}

/* ---- config.json --------------------------------------------------------------------------- */

static int parse_config(twin_model_config *cfg, const cJSON *root, const char *path,
                        twin_err *err) {
  int rc;
  if ((rc = resolve_arch(cfg, root, path, err))) return rc;
  const int gemma3 = cfg->arch == TWIN_ARCH_GEMMA3;
  int default_max_pos = cfg->arch == TWIN_ARCH_LLAMA ? 2048
                        : cfg->arch == TWIN_ARCH_MISTRAL ? 4096 * 32
                        : gemma3 ? 131072 : 32768;
  if ((rc = json_int(root, "vocab_size", 1, 0, 1, 1 << 24, &cfg->vocab_size, path, err)) ||
      (rc = json_int(root, "hidden_size", 1, 0, 1, 1 << 16, &cfg->dim, path, err)) ||
      (rc = json_int(root, "intermediate_size", 1, 0, 1, 1 << 20, &cfg->hidden_dim, path, err)) ||
      (rc = json_int(root, "num_hidden_layers", 1, 0, 1, 1024, &cfg->n_layers, path, err)) ||
      (rc = json_int(root, "num_attention_heads", 1, 0, 1, 1024, &cfg->n_heads, path, err)) ||
      (rc = json_int(root, "num_key_value_heads", 0, cfg->n_heads, 1, 1024, &cfg->n_kv_heads,
                     path, err)) ||
      (rc = json_int(root, "head_dim", 0, gemma3 ? 256 : 0, 2, 1024, &cfg->head_dim, path,
                     err)) ||
      (rc = json_int(root, "max_position_embeddings", 0, default_max_pos, 1, 1 << 24,
                     &cfg->max_seq_len, path, err)))
    return rc;
  if (cfg->head_dim == 0) {
    if (cfg->dim % cfg->n_heads != 0)
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: hidden_size %d is not a multiple of num_attention_heads %d and no "
                          "head_dim is given",
                          path, cfg->dim, cfg->n_heads);
    cfg->head_dim = cfg->dim / cfg->n_heads;
  }
  if (cfg->head_dim % 2 != 0)
    return twin_err_set(err, TWIN_EFORMAT, "%s: head_dim %d must be even for rotary embeddings",
                        path, cfg->head_dim);
  if (cfg->n_heads % cfg->n_kv_heads != 0)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        path, cfg->n_heads, cfg->n_kv_heads);
  double eps;
  if ((rc = json_positive(root, "rms_norm_eps", 1e-6, &eps, path, err))) return rc;
  cfg->norm_eps = (float)eps;
  if ((rc = read_rope(cfg, root, path, err))) return rc;
  if (gemma3 && json_absent(root, "rope_theta")) cfg->rope_theta = 1000000.0f;
  if (gemma3 && (rc = read_gemma3(cfg, root, path, err))) return rc;
  if ((rc = json_bool(root, "tie_word_embeddings", gemma3, &cfg->tie_embeddings, path, err)))
    return rc;
  if ((rc = refuse_unsupported(cfg, root, path, err))) return rc;
  cfg->attn_bias = cfg->arch == TWIN_ARCH_QWEN2;
  if (cfg->arch == TWIN_ARCH_MISTRAL &&
      (rc = json_int(root, "sliding_window", 0, 0, 1, INT_MAX, &cfg->sliding_window, path, err)))
    return rc;
  if ((rc = json_int(root, "bos_token_id", 0, -1, 0, cfg->vocab_size - 1, &cfg->bos_id, path,
                     err)))
    return rc;
  if ((rc = merge_eos(cfg, root, path, err))) return rc;
  cfg->dtype = read_dtype(root);
  return 0;
}

int twin_config_load_hf(twin_model_config *cfg, const char *dir, twin_err *err) {
  memset(cfg, 0, sizeof *cfg);
  cfg->bos_id = -1;
  char path[PATH_MAX];
  int n = snprintf(path, sizeof path, "%s/config.json", dir);
  if (n < 0 || (size_t)n >= sizeof path)
    return twin_err_set(err, TWIN_EINVAL, "%s: path too long", dir);
  cJSON *root = NULL;
  int rc = read_json_file(path, &root, err);
  if (rc) return rc;
  rc = parse_config(cfg, root, path, err);
  cJSON_Delete(root);
  if (rc) return rc;

  /* generation_config.json is optional; its eos ids join config.json's */
  snprintf(path, sizeof path, "%s/generation_config.json", dir);
  rc = read_json_file(path, &root, err);
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(err);
    return 0;
  }
  if (rc) return rc;
  if (cfg->bos_id < 0)
    rc = json_int(root, "bos_token_id", 0, -1, 0, cfg->vocab_size - 1, &cfg->bos_id, path, err);
  if (rc == 0) rc = merge_eos(cfg, root, path, err);
  cJSON_Delete(root);
  return rc;
}

