/* business-svc/rag/embedder.c — BERT sentence embedder on the CPU: model directory -> float32
 * weights in one allocation; encoder with OpenBLAS sgemm; mean pooling; L2 normalization. Batches
 * are packed (tokens back to back, attention per text over its own tokens): the same result as
 * padding to the longest text with an attention mask, minus the padded rows. Weights come
 * through the model layer's safetensors reader (llm-svc/model/weights.h). */
#include "business-svc/rag/embedder.h"
#include "llm-svc/model/weights.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#include <immintrin.h>
/* glibc libmvec's erff over 4 float lanes (x86-64 vector function ABI name; SSE2, any x86-64). */
__m128 _ZGVbN4v_erff(__m128 x);
#define EMB_HAVE_LIBMVEC_ERFF 1
#endif

/* Tokens run through the encoder together; bounds a call's scratch (~16 KB per token). */
#define EMB_TOKENS_PER_BATCH 2048

typedef enum { POOL_MEAN = 0, POOL_CLS } pooling_mode;

typedef struct bert_config {
  int vocab_size, dim, n_layers, n_heads, head_dim, ffn_dim, max_positions, type_vocab_size;
  float ln_eps;
} bert_config;

typedef struct bert_layer {
  const float *w_qkv;      /* [3*dim][dim] query, key, value projections stacked */
  const float *b_qkv;      /* [3*dim] */
  const float *w_attn_out; /* [dim][dim] */
  const float *b_attn_out; /* [dim] */
  const float *ln_attn_w;  /* [dim] */
  const float *ln_attn_b;  /* [dim] */
  const float *w_ffn_in;   /* [ffn_dim][dim] */
  const float *b_ffn_in;   /* [ffn_dim] */
  const float *w_ffn_out;  /* [dim][ffn_dim] */
  const float *b_ffn_out;  /* [dim] */
  const float *ln_ffn_w;   /* [dim] */
  const float *ln_ffn_b;   /* [dim] */
} bert_layer;

struct twin_embedder {
  bert_config cfg;
  int max_len;
  pooling_mode pooling;
  twin_wordpiece *tokenizer;
  float *arena;                 /* every weight below points into this one allocation */
  const float *word_emb;        /* [vocab_size][dim] */
  const float *pos_emb;         /* [max_positions][dim] */
  const float *type_emb;        /* [type_vocab_size][dim]; row 0 is used */
  const float *ln_emb_w;        /* [dim] */
  const float *ln_emb_b;        /* [dim] */
  bert_layer *layers;           /* [n_layers] */
};

/* ------------------------------------------------------------------------------------------ */
/* Small JSON helpers                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* Parses path into *out (caller frees with cJSON_Delete). Missing file: TWIN_ENOTFOUND. */
static int json_load(const char *path, cJSON **out, twin_err *err) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return twin_err_set(err, errno == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  int rc = buf ? 0 : TWIN_ENOMEM;
  while (!rc) {
    if (len == cap) {
      char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
      if (!nb) { rc = TWIN_ENOMEM; break; }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  if (!rc && ferror(f)) rc = TWIN_EIO;
  fclose(f);
  if (rc) { free(buf); return twin_err_set(err, rc, "%s: cannot read", path); }
  *out = cJSON_ParseWithLength(buf, len);
  free(buf);
  if (!*out) return twin_err_set(err, TWIN_EFORMAT, "%s: not valid JSON", path);
  return 0;
}

/* A positive integer member; *v is left alone when the member is absent and not required. */
static int json_int(const cJSON *obj, const char *key, int required, int *v, const char *src, twin_err *err) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!it || cJSON_IsNull(it)) return required ? twin_err_set(err, TWIN_EFORMAT, "%s: \"%s\" is missing", src, key) : 0;
  if (!cJSON_IsNumber(it) || it->valuedouble != (double)it->valueint || it->valueint <= 0)
    return twin_err_set(err, TWIN_EFORMAT, "%s: \"%s\" must be a positive integer", src, key);
  *v = it->valueint;
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Model description: config.json, sentence_bert_config.json, modules.json, pooling           */
/* ------------------------------------------------------------------------------------------ */

static int read_bert_config(bert_config *c, const char *dir, twin_err *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  cJSON *root;
  int rc = json_load(path, &root, err);
  if (rc) return rc;
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
  const cJSON *pos_type = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
  const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_eps");
  c->type_vocab_size = 2;
  c->ln_eps = 1e-12f;
  if (!cJSON_IsString(type) || strcmp(type->valuestring, "bert") != 0)
    rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: model_type %s is not bert", path, cJSON_IsString(type) ? type->valuestring : "(missing)");
  else if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu") != 0))
    rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: hidden_act %s is not supported (gelu is)", path, cJSON_IsString(act) ? act->valuestring : "(not a string)");
  else if (pos_type && !cJSON_IsNull(pos_type) && (!cJSON_IsString(pos_type) || strcmp(pos_type->valuestring, "absolute") != 0))
    rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: position_embedding_type must be absolute", path);
  else if (eps && (!cJSON_IsNumber(eps) || eps->valuedouble <= 0))
    rc = twin_err_set(err, TWIN_EFORMAT, "%s: layer_norm_eps must be a positive number", path);
  if (!rc && eps) c->ln_eps = (float)eps->valuedouble;
  if (!rc) rc = json_int(root, "vocab_size", 1, &c->vocab_size, path, err);
  if (!rc) rc = json_int(root, "hidden_size", 1, &c->dim, path, err);
  if (!rc) rc = json_int(root, "num_hidden_layers", 1, &c->n_layers, path, err);
  if (!rc) rc = json_int(root, "num_attention_heads", 1, &c->n_heads, path, err);
  if (!rc) rc = json_int(root, "intermediate_size", 1, &c->ffn_dim, path, err);
  if (!rc) rc = json_int(root, "max_position_embeddings", 1, &c->max_positions, path, err);
  if (!rc) rc = json_int(root, "type_vocab_size", 0, &c->type_vocab_size, path, err);
  cJSON_Delete(root);
  if (rc) return rc;
  if (c->dim % c->n_heads != 0)
    return twin_err_set(err, TWIN_EFORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->dim, c->n_heads);
  if (c->dim > 16384 || c->ffn_dim > 65536 || c->n_layers > 128 || c->vocab_size > (1 << 24) || c->max_positions > 65536)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: sizes are implausibly large for a sentence embedder", path);
  c->head_dim = c->dim / c->n_heads;
  return 0;
}

/* The pooling module's config (1_Pooling/config.json or where modules.json points). */
static int read_pooling(pooling_mode *mode, const char *dir, twin_err *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/modules.json", dir);
  cJSON *modules;
  int rc = json_load(path, &modules, err);
  char pool_dir[1024] = "1_Pooling";
  if (rc == TWIN_ENOTFOUND) {
    modules = NULL;
  } else if (rc) {
    return rc;
  } else {
    const cJSON *m;
    cJSON_ArrayForEach(m, modules) {
      const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
      const cJSON *mpath = cJSON_GetObjectItemCaseSensitive(m, "path");
      const char *t = cJSON_IsString(type) ? type->valuestring : "";
      const char *leaf = strrchr(t, '.') ? strrchr(t, '.') + 1 : t;
      if (strcmp(leaf, "Pooling") == 0 && cJSON_IsString(mpath)) {
        snprintf(pool_dir, sizeof pool_dir, "%s", mpath->valuestring);
      } else if (strcmp(leaf, "Transformer") != 0 && strcmp(leaf, "Normalize") != 0 && strcmp(leaf, "Pooling") != 0) {
        rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: module %s is not supported (Transformer, Pooling, Normalize are)", path, t[0] ? t : "(no type)");
        break;
      }
    }
    cJSON_Delete(modules);
    if (rc) return rc;
  }
  snprintf(path, sizeof path, "%s/%s/config.json", dir, pool_dir);
  cJSON *pool;
  rc = json_load(path, &pool, err);
  *mode = POOL_MEAN;
  if (rc == TWIN_ENOTFOUND) { twin_err_clear(err); return 0; } /* no pooling config: mean */
  if (rc) return rc;
  int n_modes = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, pool) {
    if (strncmp(it->string, "pooling_mode_", 13) != 0 || !cJSON_IsTrue(it)) continue;
    n_modes++;
    if (strcmp(it->string, "pooling_mode_mean_tokens") == 0) *mode = POOL_MEAN;
    else if (strcmp(it->string, "pooling_mode_cls_token") == 0) *mode = POOL_CLS;
    else rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: %s is not supported (mean_tokens and cls_token are)", path, it->string);
  }
  cJSON_Delete(pool);
  if (!rc && n_modes != 1) rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: exactly one pooling mode must be on, found %d", path, n_modes);
  return rc;
}

/* Longest input: sentence_bert_config.json's max_seq_length, else the positions the model has. */
static int read_max_len(int *max_len, const bert_config *c, const char *dir, twin_err *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/sentence_bert_config.json", dir);
  cJSON *root;
  int rc = json_load(path, &root, err);
  *max_len = c->max_positions;
  if (rc == TWIN_ENOTFOUND) { twin_err_clear(err); return 0; }
  if (rc) return rc;
  rc = json_int(root, "max_seq_length", 0, max_len, path, err);
  cJSON_Delete(root);
  if (rc) return rc;
  if (*max_len > c->max_positions) *max_len = c->max_positions;
  if (*max_len < 2) return twin_err_set(err, TWIN_EFORMAT, "%s: max_seq_length %d is below 2", path, *max_len);
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Weights (the model layer's safetensors reader: llm-svc/model/weights.h)                    */
/* ------------------------------------------------------------------------------------------ */

/* Copies tensor `name` (shape [rows][cols], or [cols] when rows == 0) as float32 into dst,
 * after checking its shape. Names with a "bert." prefix are accepted. */
static int st_read(const twin_weights *wts, const char *path, const char *name, int64_t rows, int64_t cols,
                   float *dst, twin_err *err) {
  const twin_tensor *t = twin_weights_get(wts, name);
  char prefixed[256];
  if (!t) {
    snprintf(prefixed, sizeof prefixed, "bert.%s", name);
    t = twin_weights_get(wts, prefixed);
  }
  if (!t) return twin_err_set(err, TWIN_EFORMAT, "%s: tensor %s is missing", path, name);
  int want_ndim = rows ? 2 : 1;
  int64_t want[2] = {rows ? rows : cols, cols};
  int shape_ok = t->ndim == want_ndim;
  for (int i = 0; shape_ok && i < want_ndim; i++) shape_ok = t->shape[i] == want[i];
  if (!shape_ok) {
    char got[96] = "[";
    for (int i = 0; i < t->ndim; i++)
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
    strncat(got, "]", sizeof got - strlen(got) - 1);
    return rows ? twin_err_set(err, TWIN_EFORMAT, "%s: tensor %s has shape %s, config.json says [%lld, %lld]", path, name, got, (long long)rows, (long long)cols)
                : twin_err_set(err, TWIN_EFORMAT, "%s: tensor %s has shape %s, config.json says [%lld]", path, name, got, (long long)cols);
  }
  size_t numel = (size_t)(rows ? rows : 1) * (size_t)cols;
  if (twin_tensor_to_f32(t, 0, (int64_t)numel, dst) != 0)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: tensor %s has dtype %s (F32, F16 and BF16 are read)", path, name,
                        twin_dtype_name(t->dtype));
  for (size_t i = 0; i < numel; i++)
    if (!isfinite(dst[i])) return twin_err_set(err, TWIN_EFORMAT, "%s: tensor %s holds a non-finite value at element %zu", path, name, i);
  return 0;
}

/* Lays out every weight in one arena and fills it from the file. */
static int load_weights(twin_embedder *e, const char *dir, twin_err *err) {
  const bert_config *c = &e->cfg;
  size_t D = (size_t)c->dim, F = (size_t)c->ffn_dim;
  size_t per_layer = 3 * D * D + 3 * D + D * D + D + 2 * D + F * D + F + D * F + D + 2 * D;
  size_t total = (size_t)c->vocab_size * D + (size_t)c->max_positions * D + (size_t)c->type_vocab_size * D + 2 * D +
                 (size_t)c->n_layers * per_layer;
  e->arena = malloc(total * sizeof(float));
  e->layers = calloc((size_t)c->n_layers, sizeof *e->layers);
  if (!e->arena || !e->layers) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory for %zu weights", dir, total);
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  twin_weights *wts = NULL;
  int rc = twin_weights_open_safetensors_file(&wts, path, err);
  if (rc) return rc;
  float *p = e->arena;
#define TAKE(ptr, count) do { (ptr) = p; p += (count); } while (0)
  float *w;
  TAKE(w, (size_t)c->vocab_size * D); e->word_emb = w;
  if (!rc) rc = st_read(wts, path, "embeddings.word_embeddings.weight", c->vocab_size, c->dim, w, err);
  TAKE(w, (size_t)c->max_positions * D); e->pos_emb = w;
  if (!rc) rc = st_read(wts, path, "embeddings.position_embeddings.weight", c->max_positions, c->dim, w, err);
  TAKE(w, (size_t)c->type_vocab_size * D); e->type_emb = w;
  if (!rc) rc = st_read(wts, path, "embeddings.token_type_embeddings.weight", c->type_vocab_size, c->dim, w, err);
  TAKE(w, D); e->ln_emb_w = w;
  if (!rc) rc = st_read(wts, path, "embeddings.LayerNorm.weight", 0, c->dim, w, err);
  TAKE(w, D); e->ln_emb_b = w;
  if (!rc) rc = st_read(wts, path, "embeddings.LayerNorm.bias", 0, c->dim, w, err);
  char name[256];
  for (int l = 0; l < c->n_layers && !rc; l++) {
    bert_layer *L = &e->layers[l];
    static const char *const qkv[3] = {"query", "key", "value"};
    TAKE(w, 3 * D * D); L->w_qkv = w;
    for (int k = 0; k < 3 && !rc; k++) {
      snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.weight", l, qkv[k]);
      rc = st_read(wts, path, name, c->dim, c->dim, w + (size_t)k * D * D, err);
    }
    TAKE(w, 3 * D); L->b_qkv = w;
    for (int k = 0; k < 3 && !rc; k++) {
      snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.bias", l, qkv[k]);
      rc = st_read(wts, path, name, 0, c->dim, w + (size_t)k * D, err);
    }
#define LAYER_TENSOR(field, suffix, rows, cols, count)                                       \
    TAKE(w, count); L->field = w;                                                            \
    if (!rc) {                                                                               \
      snprintf(name, sizeof name, "encoder.layer.%d.%s", l, suffix);                         \
      rc = st_read(wts, path, name, rows, cols, w, err);                                            \
    }
    LAYER_TENSOR(w_attn_out, "attention.output.dense.weight", c->dim, c->dim, D * D)
    LAYER_TENSOR(b_attn_out, "attention.output.dense.bias", 0, c->dim, D)
    LAYER_TENSOR(ln_attn_w, "attention.output.LayerNorm.weight", 0, c->dim, D)
    LAYER_TENSOR(ln_attn_b, "attention.output.LayerNorm.bias", 0, c->dim, D)
    LAYER_TENSOR(w_ffn_in, "intermediate.dense.weight", c->ffn_dim, c->dim, F * D)
    LAYER_TENSOR(b_ffn_in, "intermediate.dense.bias", 0, c->ffn_dim, F)
    LAYER_TENSOR(w_ffn_out, "output.dense.weight", c->dim, c->ffn_dim, D * F)
    LAYER_TENSOR(b_ffn_out, "output.dense.bias", 0, c->dim, D)
    LAYER_TENSOR(ln_ffn_w, "output.LayerNorm.weight", 0, c->dim, D)
    LAYER_TENSOR(ln_ffn_b, "output.LayerNorm.bias", 0, c->dim, D)
#undef LAYER_TENSOR
  }
#undef TAKE
  twin_weights_destroy(wts);
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward pass                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Per-call scratch, grown to the largest batch of the call (a short query needs little). */
typedef struct bert_scratch {
  float *hidden;   /* [cap_tokens][dim] the residual stream */
  float *qkv;      /* [cap_tokens][3*dim] */
  float *context;  /* [cap_tokens][dim] attention output before its projection */
  float *proj;     /* [cap_tokens][dim] a projection before residual + LayerNorm */
  float *ffn;      /* [cap_tokens][ffn_dim] */
  float *scores;   /* [longest][longest] one head of one text */
  int cap_tokens;  /* rows the buffers above hold */
  int cap_len;     /* longest text the scores buffer holds */
} bert_scratch;

/* out[t][:] = in[t][:] @ W^T + bias: W is [n_out][n_in] row-major (a Hugging Face linear). */
static void linear(const float *in, int n_tokens, int n_in, const float *W, const float *bias, int n_out, float *out) {
  for (int t = 0; t < n_tokens; t++) memcpy(out + (size_t)t * n_out, bias, (size_t)n_out * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tokens, n_out, n_in, 1.0f, in, n_in, W, n_in, 1.0f, out, n_out);
}

/* hidden[t] = LayerNorm(hidden[t] + delta[t]) over dim, in place. */
static void add_layer_norm(float *hidden, const float *delta, int n_tokens, int dim, const float *gamma,
                           const float *beta, float eps) {
  for (int t = 0; t < n_tokens; t++) {
    float *h = hidden + (size_t)t * dim;
    const float *d = delta ? delta + (size_t)t * dim : NULL;
    float mean = 0.0f;
    for (int i = 0; i < dim; i++) {
      if (d) h[i] += d[i];
      mean += h[i];
    }
    mean /= (float)dim;
    float var = 0.0f;
    for (int i = 0; i < dim; i++) var += (h[i] - mean) * (h[i] - mean);
    float inv = 1.0f / sqrtf(var / (float)dim + eps);
    for (int i = 0; i < dim; i++) h[i] = (h[i] - mean) * inv * gamma[i] + beta[i];
  }
}

/* GELU in its exact form, x * (1 + erf(x / sqrt 2)) / 2. On x86-64 glibc (2.35+) the erf comes
 * four lanes at a time from libmvec (the vector twin of erff, same accuracy class); scalar erff
 * elsewhere and for the tail. */
static void gelu_erf(float *x, size_t n) {
  size_t i = 0;
#ifdef EMB_HAVE_LIBMVEC_ERFF
  const __m128 half = _mm_set1_ps(0.5f), one = _mm_set1_ps(1.0f), inv_sqrt2 = _mm_set1_ps(0.70710678118654752f);
  for (; i + 4 <= n; i += 4) {
    __m128 v = _mm_loadu_ps(x + i);
    __m128 erf = _ZGVbN4v_erff(_mm_mul_ps(v, inv_sqrt2));
    _mm_storeu_ps(x + i, _mm_mul_ps(_mm_mul_ps(half, v), _mm_add_ps(one, erf)));
  }
#endif
  for (; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

/* Self-attention of one text (tokens [0, n) of qkv), every head, into context. All n keys are
 * real tokens, so the attention mask is all ones inside a text and nothing crosses texts. */
static void attend_one_text(const bert_config *c, const float *qkv, int n, float *context, float *scores) {
  int D = c->dim, dh = c->head_dim;
  float scale = 1.0f / sqrtf((float)dh);
  for (int h = 0; h < c->n_heads; h++) {
    const float *q = qkv + h * dh, *k = qkv + D + h * dh, *v = qkv + 2 * D + h * dh; /* [n][3D] strided */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, dh, scale, q, 3 * D, k, 3 * D, 0.0f, scores, n);
    for (int i = 0; i < n; i++) {
      float *row = scores + (size_t)i * n;
      float mx = row[0];
      for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
      float sum = 0.0f;
      for (int j = 0; j < n; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
      float inv = 1.0f / sum;
      for (int j = 0; j < n; j++) row[j] *= inv;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dh, n, 1.0f, scores, n, v, 3 * D, 0.0f, context + h * dh, D);
  }
}

/* Runs the encoder over n_texts packed texts (ids back to back, lengths lens) and writes one
 * pooled, normalized vector per text into out [n_texts][dim]. */
static void encode_batch(const twin_embedder *e, const int32_t *ids, const int *lens, int n_texts, int n_tokens,
                         bert_scratch *s, float *out) {
  const bert_config *c = &e->cfg;
  int D = c->dim, F = c->ffn_dim;
  /* embeddings: word + position + token type 0, then LayerNorm */
  for (int b = 0, t = 0; b < n_texts; b++) {
    for (int p = 0; p < lens[b]; p++, t++) {
      const float *we = e->word_emb + (size_t)ids[t] * D, *pe = e->pos_emb + (size_t)p * D;
      float *h = s->hidden + (size_t)t * D;
      for (int i = 0; i < D; i++) h[i] = we[i] + pe[i] + e->type_emb[i];
    }
  }
  add_layer_norm(s->hidden, NULL, n_tokens, D, e->ln_emb_w, e->ln_emb_b, c->ln_eps);

  for (int l = 0; l < c->n_layers; l++) {
    const bert_layer *L = &e->layers[l];
    linear(s->hidden, n_tokens, D, L->w_qkv, L->b_qkv, 3 * D, s->qkv);
    for (int b = 0, t = 0; b < n_texts; t += lens[b], b++)
      attend_one_text(c, s->qkv + (size_t)t * 3 * D, lens[b], s->context + (size_t)t * D, s->scores);
    linear(s->context, n_tokens, D, L->w_attn_out, L->b_attn_out, D, s->proj);
    add_layer_norm(s->hidden, s->proj, n_tokens, D, L->ln_attn_w, L->ln_attn_b, c->ln_eps);
    linear(s->hidden, n_tokens, D, L->w_ffn_in, L->b_ffn_in, F, s->ffn);
    gelu_erf(s->ffn, (size_t)n_tokens * F);
    linear(s->ffn, n_tokens, F, L->w_ffn_out, L->b_ffn_out, D, s->proj);
    add_layer_norm(s->hidden, s->proj, n_tokens, D, L->ln_ffn_w, L->ln_ffn_b, c->ln_eps);
  }

  /* pooling over the text's tokens, then L2 normalization */
  for (int b = 0, t = 0; b < n_texts; t += lens[b], b++) {
    float *v = out + (size_t)b * D;
    if (e->pooling == POOL_CLS) {
      memcpy(v, s->hidden + (size_t)t * D, (size_t)D * sizeof(float));
    } else {
      memset(v, 0, (size_t)D * sizeof(float));
      for (int p = 0; p < lens[b]; p++)
        for (int i = 0; i < D; i++) v[i] += s->hidden[(size_t)(t + p) * D + i];
      for (int i = 0; i < D; i++) v[i] /= (float)lens[b];
    }
    double norm = 0.0;
    for (int i = 0; i < D; i++) norm += (double)v[i] * v[i];
    float inv = 1.0f / (float)fmax(sqrt(norm), 1e-12);
    for (int i = 0; i < D; i++) v[i] *= inv;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Public API                                                                                 */
/* ------------------------------------------------------------------------------------------ */

int twin_embedder_open(twin_embedder **out, const char *model_dir, twin_err *err) {
  *out = NULL;
  twin_embedder *e = calloc(1, sizeof *e);
  if (!e) return twin_err_set(err, TWIN_ENOMEM, "embedder: out of memory");
  int rc = read_bert_config(&e->cfg, model_dir, err);
  if (!rc) rc = read_max_len(&e->max_len, &e->cfg, model_dir, err);
  if (!rc) rc = read_pooling(&e->pooling, model_dir, err);
  if (!rc) rc = twin_wordpiece_open(&e->tokenizer, model_dir, err);
  if (!rc && twin_wordpiece_vocab_size(e->tokenizer) > e->cfg.vocab_size)
    rc = twin_err_set(err, TWIN_EFORMAT, "%s: the tokenizer has %d ids but config.json's vocab_size is %d", model_dir,
                      twin_wordpiece_vocab_size(e->tokenizer), e->cfg.vocab_size);
  if (!rc) rc = load_weights(e, model_dir, err);
  if (rc) { twin_embedder_destroy(e); return rc; }
  *out = e;
  return 0;
}

void twin_embedder_destroy(twin_embedder *e) {
  if (!e) return;
  twin_wordpiece_destroy(e->tokenizer);
  free(e->arena);
  free(e->layers);
  free(e);
}

int twin_embedder_dim(const twin_embedder *e) { return e->cfg.dim; }
int twin_embedder_max_len(const twin_embedder *e) { return e->max_len; }
const twin_wordpiece *twin_embedder_tokenizer(const twin_embedder *e) { return e->tokenizer; }

/* Grows every scratch buffer to hold n_tokens packed tokens and texts of up to longest tokens. */
static int scratch_reserve(bert_scratch *s, const bert_config *c, int n_tokens, int longest) {
  if (n_tokens > s->cap_tokens) {
    size_t T = (size_t)n_tokens, D = (size_t)c->dim;
    float **bufs[5] = {&s->hidden, &s->qkv, &s->context, &s->proj, &s->ffn};
    size_t widths[5] = {D, 3 * D, D, D, (size_t)c->ffn_dim};
    for (int i = 0; i < 5; i++) {
      float *nb = realloc(*bufs[i], T * widths[i] * sizeof(float));
      if (!nb) return TWIN_ENOMEM;
      *bufs[i] = nb;
    }
    s->cap_tokens = n_tokens;
  }
  if (longest > s->cap_len) {
    float *nb = realloc(s->scores, (size_t)longest * (size_t)longest * sizeof(float));
    if (!nb) return TWIN_ENOMEM;
    s->scores = nb;
    s->cap_len = longest;
  }
  return 0;
}

int twin_embedder_embed(const twin_embedder *e, const char *const *texts, size_t n, float *out, twin_err *err) {
  if (n == 0) return 0;
  if (!texts || !out) return twin_err_set(err, TWIN_EINVAL, "embedder: texts and out must not be NULL");
  int max_tokens = EMB_TOKENS_PER_BATCH > e->max_len ? EMB_TOKENS_PER_BATCH : e->max_len;
  size_t D = (size_t)e->cfg.dim;
  int32_t *ids = malloc(((size_t)max_tokens + (size_t)e->max_len) * sizeof *ids); /* packed, + one text */
  int *lens = malloc((size_t)max_tokens * sizeof *lens);                           /* one per text */
  bert_scratch s = {0};
  int rc = ids && lens ? 0 : twin_err_set(err, TWIN_ENOMEM, "embedder: out of memory");

  size_t next = 0;   /* first text not yet in a batch */
  int pending = 0;   /* ids[0 .. pending) hold text `next`, tokenized but not yet batched */
  while (!rc && next < n) {
    int n_texts = 0, n_tokens = 0, longest = 0;
    size_t first = next;
    if (pending) { lens[n_texts++] = pending; n_tokens = longest = pending; next++; pending = 0; }
    while (next < n) {
      if (!texts[next]) { rc = twin_err_set(err, TWIN_EINVAL, "embedder: text %zu is NULL", next); break; }
      int got = 0;
      rc = twin_wordpiece_encode(e->tokenizer, texts[next], strlen(texts[next]), e->max_len, ids + n_tokens, &got, err);
      if (rc) { twin_err_wrap(err, "embedder: text %zu", next); break; }
      if (n_tokens + got > max_tokens) { /* it starts the next batch */
        pending = got;
        break;
      }
      lens[n_texts++] = got;
      n_tokens += got;
      if (got > longest) longest = got;
      next++;
    }
    if (!rc && scratch_reserve(&s, &e->cfg, n_tokens, longest))
      rc = twin_err_set(err, TWIN_ENOMEM, "embedder: out of memory for a batch of %d tokens", n_tokens);
    if (!rc) encode_batch(e, ids, lens, n_texts, n_tokens, &s, out + first * D);
    if (pending) memmove(ids, ids + n_tokens, (size_t)pending * sizeof *ids);
  }
  free(ids);
  free(lens);
  free(s.hidden);
  free(s.qkv);
  free(s.context);
  free(s.proj);
  free(s.ffn);
  free(s.scores);
  return rc;
}
