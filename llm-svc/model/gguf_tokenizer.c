/* llm-svc/model/gguf_tokenizer.c — the tokenizer of a GGUF file from its tokenizer.ggml.*
 * metadata, through twin_tokenizer_create_from_vocab: "gpt2" (byte-level BPE with merges; the
 * pre-tokenizer of the family's tokenizer.json, chosen by tokenizer.ggml.pre) or "llama"
 * (SentencePiece BPE ranked by scores, byte fallback, add_space_prefix). Control tokens become
 * special tokens. smollm's digit split has no field in the vocabulary spec, so it is put in front
 * of the pre-tokenizers here, through tokenizer_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm-svc/model/gguf.h"
#include "llm-svc/model/tokenizer_internal.h"

/* The split regexes of the published tokenizer.json files of these families. */
static const char LLAMA3_SPLIT_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_SPLIT_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef enum { PRE_GPT2 = 0, PRE_SMOLLM, PRE_LLAMA3, PRE_QWEN2 } pre_kind;

static const struct {
  const char *name;
  pre_kind kind;
} pre_names[] = {
    {"default", PRE_GPT2}, {"gpt2", PRE_GPT2},       {"smollm", PRE_SMOLLM},
    {"llama-bpe", PRE_LLAMA3}, {"llama3", PRE_LLAMA3}, {"qwen2", PRE_QWEN2},
};

/* An optional bool key; fallback when absent. */
static int optional_bool(const twin_gguf *g, const char *key, int fallback, int *out,
                         twin_err *err) {
  int rc = twin_gguf_get_bool(g, key, out, err);
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(err);
    *out = fallback;
    return 0;
  }
  return rc;
}

/* An optional token id key, checked against the vocabulary; -1 when absent. */
static int optional_id(const twin_gguf *g, const char *key, size_t n_tokens, int32_t *out,
                       twin_err *err) {
  int64_t v;
  int rc = twin_gguf_get_int(g, key, 0, (int64_t)n_tokens - 1, &v, err);
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(err);
    *out = -1;
    return 0;
  }
  if (rc) return rc;
  *out = (int32_t)v;
  return 0;
}

static int read_pre_kind(const twin_gguf *g, pre_kind *out, twin_err *err) {
  const char *pre;
  size_t len;
  int rc = twin_gguf_get_string(g, "tokenizer.ggml.pre", &pre, &len, err);
  *out = PRE_GPT2;
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(err);
    return 0;
  }
  if (rc) return rc;
  for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
    if (strlen(pre_names[i].name) == len && memcmp(pre_names[i].name, pre, len) == 0) {
      *out = pre_names[i].kind;
      return 0;
    }
  return twin_err_set(err, TWIN_EUNSUPPORTED,
                      "%s: tokenizer.ggml.pre '%.*s' is not a pre-tokenizer we know (default, "
                      "gpt2, smollm, llama-bpe, llama3, qwen2)",
                      twin_gguf_path(g), (int)(len > 40 ? 40 : len), pre);
}

/* Puts "split every digit on its own" before the other pre-tokenizers. */
static int prepend_digit_split(twin_tokenizer *t, twin_err *err) {
  if (t->n_pretoks >= TOK_MAX_STEPS)
    return twin_err_set(err, TWIN_EINTERNAL, "%s: too many pre-tokenizer steps", t->name);
  memmove(&t->pretoks[1], &t->pretoks[0], (size_t)t->n_pretoks * sizeof t->pretoks[0]);
  memset(&t->pretoks[0], 0, sizeof t->pretoks[0]);
  t->pretoks[0].kind = TOK_PRE_DIGITS;
  t->pretoks[0].individual_digits = 1;
  t->n_pretoks++;
  return 0;
}

int twin_gguf_tokenizer_create(const twin_gguf *g, twin_tokenizer **out, twin_err *err) {
  *out = NULL;
  const char *path = twin_gguf_path(g);
  const char *model;
  size_t model_len;
  int rc = twin_gguf_get_string(g, "tokenizer.ggml.model", &model, &model_len, err);
  if (rc == TWIN_ENOTFOUND) return twin_err_set(err, rc, "%s: no tokenizer (tokenizer.ggml.model)", path);
  if (rc) return rc;
  const int is_gpt2 = model_len == 4 && memcmp(model, "gpt2", 4) == 0;
  const int is_llama = model_len == 5 && memcmp(model, "llama", 5) == 0;
  if (!is_gpt2 && !is_llama)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "%s: tokenizer.ggml.model '%.*s' is not supported (gpt2, llama)", path,
                        (int)(model_len > 40 ? 40 : model_len), model);

  twin_tokenizer_vocab_spec spec = {.kind = is_gpt2 ? TWIN_TOKENIZER_BYTE_BPE : TWIN_TOKENIZER_SP_BPE};
  char **tokens = NULL, **merges = NULL;
  float *scores = NULL;
  int32_t *types = NULL;
  size_t n_tokens = 0, n_merges = 0, n_scores = 0, n_types = 0;
  pre_kind pre = PRE_GPT2;
  rc = twin_gguf_get_string_array(g, "tokenizer.ggml.tokens", &tokens, &n_tokens, err);
  if (rc == 0 && n_tokens == 0)
    rc = twin_err_set(err, TWIN_EFORMAT, "%s: tokenizer.ggml.tokens is empty", path);
  if (rc == 0) {
    rc = twin_gguf_get_i32_array(g, "tokenizer.ggml.token_type", &types, &n_types, err);
    if (rc == TWIN_ENOTFOUND) {
      twin_err_clear(err);
      rc = 0;
    } else if (rc == 0 && n_types != n_tokens)
      rc = twin_err_set(err, TWIN_EFORMAT, "%s: tokenizer.ggml.token_type has %zu entries for %zu "
                        "tokens", path, n_types, n_tokens);
  }
  if (rc == 0 && is_gpt2) {
    rc = twin_gguf_get_string_array(g, "tokenizer.ggml.merges", &merges, &n_merges, err);
    if (rc == TWIN_ENOTFOUND) twin_err_wrap(err, "a gpt2 tokenizer needs its merges");
    if (rc == 0) rc = read_pre_kind(g, &pre, err);
  }
  if (rc == 0 && is_llama) {
    rc = twin_gguf_get_f32_array(g, "tokenizer.ggml.scores", &scores, &n_scores, err);
    if (rc == TWIN_ENOTFOUND) twin_err_wrap(err, "a llama (SentencePiece) tokenizer needs scores");
    else if (rc == 0 && n_scores != n_tokens)
      rc = twin_err_set(err, TWIN_EFORMAT, "%s: tokenizer.ggml.scores has %zu entries for %zu "
                        "tokens", path, n_scores, n_tokens);
  }
  int add_bos = 0, add_eos = 0, add_space_prefix = 0;
  if (rc == 0) {
    spec.n_tokens = n_tokens;
    spec.tokens = (const char *const *)tokens;
    spec.scores = scores;
    spec.token_types = types;
    spec.n_merges = n_merges;
    spec.merges = (const char *const *)merges;
    spec.split_regex = pre == PRE_LLAMA3 ? LLAMA3_SPLIT_REGEX : pre == PRE_QWEN2 ? QWEN2_SPLIT_REGEX
                                                                                 : NULL;
    rc = optional_bool(g, "tokenizer.ggml.add_bos_token", is_llama, &add_bos, err);
    if (rc == 0) rc = optional_bool(g, "tokenizer.ggml.add_eos_token", 0, &add_eos, err);
    if (rc == 0)
      rc = optional_bool(g, "tokenizer.ggml.add_space_prefix", is_llama, &add_space_prefix, err);
    if (rc == 0) rc = optional_id(g, "tokenizer.ggml.bos_token_id", n_tokens, &spec.bos_id, err);
    if (rc == 0) rc = optional_id(g, "tokenizer.ggml.eos_token_id", n_tokens, &spec.eos_id, err);
    if (rc == 0) rc = optional_id(g, "tokenizer.ggml.unknown_token_id", n_tokens, &spec.unk_id, err);
    spec.add_bos = add_bos;
    spec.add_eos = add_eos;
    spec.add_space_prefix = is_llama && add_space_prefix;
  }
  twin_tokenizer *t = NULL;
  if (rc == 0) rc = twin_tokenizer_create_from_vocab(&t, &spec, err);
  if (rc == 0) snprintf(t->name, sizeof t->name, "%s", path);
  if (rc == 0 && pre == PRE_SMOLLM) rc = prepend_digit_split(t, err);
  if (rc) {
    if (err && err->code != TWIN_ENOTFOUND && !strstr(err->msg, path)) twin_err_wrap(err, "%s", path);
    twin_tokenizer_destroy(t);
  } else {
    *out = t;
  }
  free(tokens);
  free(merges);
  free(scores);
  free(types);
  return rc;
}
