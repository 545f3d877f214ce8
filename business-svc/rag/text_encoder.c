/* business-svc/rag/text_encoder.c — the two encoders of rag/text_encoder.h. The hashing one
 * folds each word (a run of letters and digits, lower-cased with utf8proc) and each pair of
 * neighbouring words into one of dim buckets with a sign, both from XXH64, weights the counts
 * with 1 + log(count) and normalizes the vector to unit length. */
#include "business-svc/rag/text_encoder.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <utf8proc.h>

#include "common/util.h"

/* ============================================================================================
 * over the sentence embedder
 * ========================================================================================== */

static int embedder_embed(void *ctx, const char *const *texts, size_t n, float *out, twin_err *err) {
  return twin_embedder_embed((const twin_embedder *)ctx, texts, n, out, err);
}

twin_text_encoder twin_text_encoder_from_embedder(const twin_embedder *e) {
  twin_text_encoder enc;
  memset(&enc, 0, sizeof enc);
  enc.dim = twin_embedder_dim(e);
  enc.embed = embedder_embed;
  enc.ctx = (void *)e;
  enc.counter = twin_token_counter_wordpiece(twin_embedder_tokenizer(e));
  int max_len = twin_embedder_max_len(e);
  enc.max_tokens = max_len > 2 ? max_len - 2 : 0;
  enc.name = "embedder";
  return enc;
}

/* ============================================================================================
 * feature hashing
 * ========================================================================================== */

enum { HASH_WORD_MAX = 64 }; /* longer words are hashed on their first 64 bytes */

static void add_feature(float *v, int dim, const char *bytes, size_t n, uint64_t seed) {
  uint64_t h = twin_hash64(bytes, n, seed);
  size_t bucket = (size_t)(h % (uint64_t)dim);
  v[bucket] += (h >> 63) ? 1.0f : -1.0f;
}

void twin_hashing_embed_one(int dim, const char *text, size_t len, float *out) {
  memset(out, 0, (size_t)dim * sizeof *out);
  char word[HASH_WORD_MAX + 4], prev[HASH_WORD_MAX + 4];
  size_t word_len = 0, prev_len = 0;
  size_t i = 0;
  for (;;) {
    int32_t cp = -1;
    if (i < len) {
      utf8proc_ssize_t step = utf8proc_iterate((const utf8proc_uint8_t *)text + i,
                                               (utf8proc_ssize_t)(len - i), &cp);
      if (step <= 0) { cp = ' '; step = 1; }
      i += (size_t)step;
    }
    utf8proc_category_t cat = cp >= 0 ? utf8proc_category(cp) : UTF8PROC_CATEGORY_CN;
    bool alnum = cp >= 0 && ((cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
                             (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) ||
                             (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME));
    if (alnum) {
      char enc[4];
      size_t k = twin_utf8_encode((uint32_t)utf8proc_tolower(cp), enc);
      if (word_len + k <= HASH_WORD_MAX) {
        memcpy(word + word_len, enc, k);
        word_len += k;
      }
      continue;
    }
    if (word_len) {
      add_feature(out, dim, word, word_len, 0x7769);
      if (prev_len) { /* the pair "prev word" */
        char pair[2 * HASH_WORD_MAX + 8];
        memcpy(pair, prev, prev_len);
        pair[prev_len] = ' ';
        memcpy(pair + prev_len + 1, word, word_len);
        add_feature(out, dim, pair, prev_len + 1 + word_len, 0x7061);
      }
      memcpy(prev, word, word_len);
      prev_len = word_len;
      word_len = 0;
    }
    if (cp < 0) break;
  }
  double norm = 0;
  for (int d = 0; d < dim; d++) {
    float c = out[d];
    if (c != 0) out[d] = c > 0 ? 1.0f + logf(c) : -(1.0f + logf(-c));
    norm += (double)out[d] * out[d];
  }
  if (norm > 0) {
    float inv = (float)(1.0 / sqrt(norm));
    for (int d = 0; d < dim; d++) out[d] *= inv;
  }
}

static int hashing_embed(void *ctx, const char *const *texts, size_t n, float *out, twin_err *err) {
  int dim = (int)(intptr_t)ctx;
  for (size_t i = 0; i < n; i++) {
    if (!texts[i]) return twin_err_set(err, TWIN_EINVAL, "text %zu is NULL", i);
    twin_hashing_embed_one(dim, texts[i], strlen(texts[i]), out + i * (size_t)dim);
  }
  return 0;
}

int twin_text_encoder_hashing(int dim, twin_text_encoder *out, twin_err *err) {
  if (dim < 8 || dim > 65536)
    return twin_err_set(err, TWIN_EINVAL, "hashing encoder: dim %d is out of range [8, 65536]", dim);
  memset(out, 0, sizeof *out);
  out->dim = dim;
  out->embed = hashing_embed;
  out->ctx = (void *)(intptr_t)dim;
  out->name = "hashing";
  return 0;
}
