/* business-svc/rag/wordpiece.c — BERT WordPiece: loading (tokenizer.json or vocab.txt), the BERT
 * normalizer and pre-tokenizer on code points (utf8proc: categories, NFD, case), greedy piece search
 * over a vocab hash. Own code: no C library for Hugging Face tokenizers is packaged; it follows the
 * `tokenizers` Bert* components id for id, except for characters assigned or recategorized since
 * the reference's older Unicode tables (rare scripts, ~0.3% of code points). */
#include "business-svc/rag/wordpiece.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <string.h>
#include <utf8proc.h>

#define WP_MAX_ADDED 4096
#define WP_PREFIX_MAX 16

typedef struct added_token {
  const char *text; /* borrowed from the string arena */
  size_t len;
  int32_t id;
} added_token;

struct twin_wordpiece {
  twin_wordpiece_options opt;
  int n_ids;                /* ids are 0 .. n_ids-1; some may have no string */
  char *arena;              /* every token string, NUL-terminated, back to back */
  const char **id_to_str;   /* [n_ids] into arena, NULL for unused ids */
  uint32_t *id_to_len;      /* [n_ids] */
  int32_t *slots;           /* [n_slots] open-addressing hash: id or -1 */
  size_t n_slots;           /* power of two */
  added_token *added;       /* [n_added] tokens matched verbatim in raw text */
  int n_added;
  int32_t cls_id, sep_id, unk_id, pad_id;
  char prefix[WP_PREFIX_MAX]; /* continuation prefix, "##" */
  size_t prefix_len;
};

/* ------------------------------------------------------------------------------------------ */
/* Vocabulary building                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* A token list gathered from a file before the final tables are built. */
typedef struct token_list {
  char **strs;   /* [n] owned copies */
  int32_t *ids;  /* [n] */
  int n, cap;
} token_list;

static int token_list_push(token_list *tl, const char *s, size_t len, int32_t id) {
  if (tl->n == tl->cap) {
    int cap = tl->cap ? tl->cap * 2 : 1024;
    char **strs = realloc(tl->strs, (size_t)cap * sizeof *strs);
    if (!strs) return TWIN_ENOMEM;
    tl->strs = strs;
    int32_t *ids = realloc(tl->ids, (size_t)cap * sizeof *ids);
    if (!ids) return TWIN_ENOMEM;
    tl->ids = ids;
    tl->cap = cap;
  }
  char *copy = malloc(len + 1);
  if (!copy) return TWIN_ENOMEM;
  memcpy(copy, s, len);
  copy[len] = '\0';
  tl->strs[tl->n] = copy;
  tl->ids[tl->n] = id;
  tl->n++;
  return 0;
}

static void token_list_free(token_list *tl) {
  for (int i = 0; i < tl->n; i++) free(tl->strs[i]);
  free(tl->strs);
  free(tl->ids);
  memset(tl, 0, sizeof *tl);
}

static uint64_t hash_bytes(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

static int32_t lookup(const twin_wordpiece *wp, const char *s, size_t len) {
  size_t mask = wp->n_slots - 1;
  for (size_t i = (size_t)hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
    int32_t id = wp->slots[i];
    if (id < 0) return -1;
    if (wp->id_to_len[id] == len && memcmp(wp->id_to_str[id], s, len) == 0) return id;
  }
}

/* Builds the id tables and hash from the gathered tokens (a later duplicate string wins). */
static int build_tables(twin_wordpiece *wp, const token_list *tl, const char *src, twin_err *err) {
  int32_t max_id = -1;
  size_t bytes = 0;
  for (int i = 0; i < tl->n; i++) {
    if (tl->ids[i] < 0) return twin_err_set(err, TWIN_EFORMAT, "%s: token '%s' has negative id %d", src, tl->strs[i], tl->ids[i]);
    if (tl->ids[i] > max_id) max_id = tl->ids[i];
    bytes += strlen(tl->strs[i]) + 1;
  }
  if (max_id < 0) return twin_err_set(err, TWIN_EFORMAT, "%s: empty vocabulary", src);
  if (max_id >= (1 << 24)) return twin_err_set(err, TWIN_EFORMAT, "%s: token id %d is implausibly large", src, max_id);
  wp->n_ids = max_id + 1;
  wp->arena = malloc(bytes ? bytes : 1);
  wp->id_to_str = calloc((size_t)wp->n_ids, sizeof *wp->id_to_str);
  wp->id_to_len = calloc((size_t)wp->n_ids, sizeof *wp->id_to_len);
  wp->n_slots = 16;
  while (wp->n_slots < (size_t)tl->n * 2) wp->n_slots *= 2;
  wp->slots = malloc(wp->n_slots * sizeof *wp->slots);
  if (!wp->arena || !wp->id_to_str || !wp->id_to_len || !wp->slots)
    return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory for %d tokens", src, tl->n);
  for (size_t i = 0; i < wp->n_slots; i++) wp->slots[i] = -1;

  char *p = wp->arena;
  for (int i = 0; i < tl->n; i++) {
    size_t len = strlen(tl->strs[i]);
    int32_t id = tl->ids[i];
    memcpy(p, tl->strs[i], len + 1);
    if (wp->id_to_str[id] && (wp->id_to_len[id] != len || memcmp(wp->id_to_str[id], p, len) != 0))
      return twin_err_set(err, TWIN_EFORMAT, "%s: id %d is given to both '%s' and '%s'", src, id, wp->id_to_str[id], p);
    wp->id_to_str[id] = p;
    wp->id_to_len[id] = (uint32_t)len;
    size_t mask = wp->n_slots - 1;
    for (size_t s = (size_t)hash_bytes(p, len) & mask;; s = (s + 1) & mask) {
      int32_t other = wp->slots[s];
      if (other < 0) { wp->slots[s] = id; break; }
      if (wp->id_to_len[other] == len && memcmp(wp->id_to_str[other], p, len) == 0) { wp->slots[s] = id; break; }
    }
    p += len + 1;
  }
  return 0;
}

static int add_added_token(twin_wordpiece *wp, const char *text, int32_t id, const char *src, twin_err *err) {
  if (!text[0]) return 0;
  if (wp->n_added >= WP_MAX_ADDED) return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: more than %d added tokens", src, WP_MAX_ADDED);
  if (id < 0 || id >= wp->n_ids || !wp->id_to_str[id] || strcmp(wp->id_to_str[id], text) != 0)
    return twin_err_set(err, TWIN_EFORMAT, "%s: added token '%s' (id %d) does not match the vocabulary", src, text, id);
  if (!wp->added) {
    wp->added = calloc(WP_MAX_ADDED, sizeof *wp->added);
    if (!wp->added) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", src);
  }
  wp->added[wp->n_added++] = (added_token){wp->id_to_str[id], wp->id_to_len[id], id};
  return 0;
}

static int require_special(twin_wordpiece *wp, const char *src, twin_err *err) {
  if (wp->unk_id < 0) return twin_err_set(err, TWIN_EFORMAT, "%s: the unknown token is not in the vocabulary", src);
  if (wp->cls_id < 0) return twin_err_set(err, TWIN_EFORMAT, "%s: [CLS] is not in the vocabulary", src);
  if (wp->sep_id < 0) return twin_err_set(err, TWIN_EFORMAT, "%s: [SEP] is not in the vocabulary", src);
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Opening                                                                                    */
/* ------------------------------------------------------------------------------------------ */

twin_wordpiece_options twin_wordpiece_default_options(void) {
  return (twin_wordpiece_options){.clean_text = 1, .handle_chinese_chars = 1, .strip_accents = 1,
                                  .lowercase = 1, .max_input_chars_per_word = 100};
}

static int read_file(const char *path, char **out, size_t *out_len, twin_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return twin_err_set(err, errno == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: cannot open: %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (cap - len < 65536) {
      cap = cap ? cap * 2 : 1 << 20;
      char *nb = realloc(buf, cap + 1);
      if (!nb) { free(buf); fclose(f); return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path); }
      buf = nb;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) { free(buf); return twin_err_set(err, TWIN_EIO, "%s: read error", path); }
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return 0;
}

static twin_wordpiece *wordpiece_new(void) {
  twin_wordpiece *wp = calloc(1, sizeof *wp);
  if (!wp) return NULL;
  wp->opt = twin_wordpiece_default_options();
  wp->cls_id = wp->sep_id = wp->unk_id = wp->pad_id = -1;
  memcpy(wp->prefix, "##", 3);
  wp->prefix_len = 2;
  return wp;
}

int twin_wordpiece_open_vocab(twin_wordpiece **out, const char *vocab_path,
                              const twin_wordpiece_options *opt, twin_err *err) {
  *out = NULL;
  char *text = NULL;
  size_t len = 0;
  int rc = read_file(vocab_path, &text, &len, err);
  if (rc) return rc;
  twin_wordpiece *wp = wordpiece_new();
  token_list tl = {0};
  if (!wp) { rc = twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", vocab_path); goto fail; }
  if (opt) wp->opt = *opt;
  if (wp->opt.max_input_chars_per_word <= 0) { rc = twin_err_set(err, TWIN_EINVAL, "%s: max_input_chars_per_word must be > 0", vocab_path); goto fail; }
  size_t pos = 0;
  int32_t id = 0;
  while (pos < len) {
    size_t end = pos;
    while (end < len && text[end] != '\n') end++;
    size_t tok_end = end;
    while (tok_end > pos && (text[tok_end - 1] == '\r' || text[tok_end - 1] == ' ')) tok_end--;
    if (memchr(text + pos, '\0', tok_end - pos)) { rc = twin_err_set(err, TWIN_EFORMAT, "%s: line %d holds a NUL byte", vocab_path, id + 1); goto fail; }
    if ((rc = token_list_push(&tl, text + pos, tok_end - pos, id))) { twin_err_set(err, rc, "%s: out of memory", vocab_path); goto fail; }
    id++;
    pos = end + 1;
  }
  if ((rc = build_tables(wp, &tl, vocab_path, err))) goto fail;
  wp->unk_id = lookup(wp, "[UNK]", 5);
  wp->cls_id = lookup(wp, "[CLS]", 5);
  wp->sep_id = lookup(wp, "[SEP]", 5);
  wp->pad_id = lookup(wp, "[PAD]", 5);
  if ((rc = require_special(wp, vocab_path, err))) goto fail;
  static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
    int32_t sid = lookup(wp, specials[i], strlen(specials[i]));
    if (sid >= 0 && (rc = add_added_token(wp, specials[i], sid, vocab_path, err))) goto fail;
  }
  token_list_free(&tl);
  free(text);
  *out = wp;
  return 0;
fail:
  token_list_free(&tl);
  free(text);
  twin_wordpiece_destroy(wp);
  return rc;
}

/* Reads a boolean member: absent or null keeps *v; anything but true/false is an error. */
static int json_bool(const cJSON *obj, const char *key, int *v, const char *src, twin_err *err) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!it || cJSON_IsNull(it)) return 0;
  if (!cJSON_IsBool(it)) return twin_err_set(err, TWIN_EFORMAT, "%s: \"%s\" must be true or false", src, key);
  *v = cJSON_IsTrue(it);
  return 0;
}

static int parse_normalizer(twin_wordpiece *wp, const cJSON *norm, const char *src, twin_err *err) {
  twin_wordpiece_options *o = &wp->opt;
  if (!norm || cJSON_IsNull(norm)) {
    o->clean_text = o->handle_chinese_chars = o->strip_accents = o->lowercase = 0;
    return 0;
  }
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(norm, "type");
  if (!cJSON_IsString(type) || strcmp(type->valuestring, "BertNormalizer") != 0)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: normalizer type %s is not supported (BertNormalizer is)", src,
                        cJSON_IsString(type) ? type->valuestring : "(missing)");
  int rc;
  if ((rc = json_bool(norm, "clean_text", &o->clean_text, src, err))) return rc;
  if ((rc = json_bool(norm, "handle_chinese_chars", &o->handle_chinese_chars, src, err))) return rc;
  if ((rc = json_bool(norm, "lowercase", &o->lowercase, src, err))) return rc;
  o->strip_accents = o->lowercase; /* null: follow lowercase, as BERT does */
  return json_bool(norm, "strip_accents", &o->strip_accents, src, err);
}

/* [CLS]/[SEP] ids from the post-processor (BertProcessing or a TemplateProcessing of the form
 * [special, A, special]); a missing post-processor falls back to the vocabulary's [CLS]/[SEP]. */
static int parse_post_processor(twin_wordpiece *wp, const cJSON *pp, const char *src, twin_err *err) {
  wp->cls_id = lookup(wp, "[CLS]", 5);
  wp->sep_id = lookup(wp, "[SEP]", 5);
  if (!pp || cJSON_IsNull(pp)) return 0;
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(pp, "type");
  const char *t = cJSON_IsString(type) ? type->valuestring : "(missing)";
  if (strcmp(t, "BertProcessing") == 0) {
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(pp, "cls");
    const cJSON *sep = cJSON_GetObjectItemCaseSensitive(pp, "sep");
    const cJSON *cls_id = cJSON_GetArrayItem(cls, 1), *sep_id = cJSON_GetArrayItem(sep, 1);
    if (!cJSON_IsNumber(cls_id) || !cJSON_IsNumber(sep_id))
      return twin_err_set(err, TWIN_EFORMAT, "%s: post_processor BertProcessing needs cls and sep [token, id] pairs", src);
    wp->cls_id = cls_id->valueint;
    wp->sep_id = sep_id->valueint;
    return 0;
  }
  if (strcmp(t, "TemplateProcessing") == 0) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
    const cJSON *first = cJSON_GetArrayItem(single, 0), *mid = cJSON_GetArrayItem(single, 1), *last = cJSON_GetArrayItem(single, 2);
    const cJSON *first_tok = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    const cJSON *last_tok = cJSON_GetObjectItemCaseSensitive(last, "SpecialToken");
    if (cJSON_GetArraySize(single) != 3 || !first_tok || !last_tok || !cJSON_GetObjectItemCaseSensitive(mid, "Sequence"))
      return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: post_processor template must be [special, $A, special]", src);
    int32_t *dst[2] = {&wp->cls_id, &wp->sep_id};
    const cJSON *toks[2] = {first_tok, last_tok};
    for (int k = 0; k < 2; k++) {
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(toks[k], "id");
      const cJSON *entry = cJSON_IsString(name) ? cJSON_GetObjectItemCaseSensitive(specials, name->valuestring) : NULL;
      const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids");
      const cJSON *id0 = cJSON_GetArrayItem(ids, 0);
      if (!cJSON_IsNumber(id0) || cJSON_GetArraySize(ids) != 1)
        return twin_err_set(err, TWIN_EFORMAT, "%s: post_processor special token %s needs exactly one id", src,
                            cJSON_IsString(name) ? name->valuestring : "(missing)");
      *dst[k] = id0->valueint;
    }
    return 0;
  }
  return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: post_processor type %s is not supported", src, t);
}

static int open_tokenizer_json(twin_wordpiece **out, const char *path, twin_err *err) {
  char *text = NULL;
  size_t len = 0;
  int rc = read_file(path, &text, &len, err);
  if (rc) return rc;
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root) return twin_err_set(err, TWIN_EFORMAT, "%s: not valid JSON", path);
  twin_wordpiece *wp = wordpiece_new();
  token_list tl = {0};
  if (!wp) { rc = twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path); goto done; }

  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
  if (!cJSON_IsString(mtype) || strcmp(mtype->valuestring, "WordPiece") != 0) {
    rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: model type %s is not WordPiece", path, cJSON_IsString(mtype) ? mtype->valuestring : "(missing)");
    goto done;
  }
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  if (!cJSON_IsObject(vocab)) { rc = twin_err_set(err, TWIN_EFORMAT, "%s: model.vocab is not an object", path); goto done; }
  const cJSON *tok;
  cJSON_ArrayForEach(tok, vocab) {
    if (!cJSON_IsNumber(tok) || tok->valuedouble != (double)tok->valueint) {
      rc = twin_err_set(err, TWIN_EFORMAT, "%s: model.vocab[\"%s\"] is not an integer id", path, tok->string);
      goto done;
    }
    if ((rc = token_list_push(&tl, tok->string, strlen(tok->string), tok->valueint))) { twin_err_set(err, rc, "%s: out of memory", path); goto done; }
  }
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  cJSON_ArrayForEach(tok, added) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(tok, "id");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(tok, "content");
    if (!cJSON_IsNumber(id) || !cJSON_IsString(content)) { rc = twin_err_set(err, TWIN_EFORMAT, "%s: added_tokens entry lacks id or content", path); goto done; }
    if ((rc = token_list_push(&tl, content->valuestring, strlen(content->valuestring), id->valueint))) { twin_err_set(err, rc, "%s: out of memory", path); goto done; }
  }
  if ((rc = build_tables(wp, &tl, path, err))) goto done;

  /* Added tokens that are not normalized are matched verbatim in the raw text. */
  cJSON_ArrayForEach(tok, added) {
    const cJSON *normalized = cJSON_GetObjectItemCaseSensitive(tok, "normalized");
    if (cJSON_IsTrue(normalized)) continue;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(tok, "id");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(tok, "content");
    if ((rc = add_added_token(wp, content->valuestring, id->valueint, path, err))) goto done;
  }

  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  const char *unk_str = cJSON_IsString(unk) ? unk->valuestring : "[UNK]";
  wp->unk_id = lookup(wp, unk_str, strlen(unk_str));
  wp->pad_id = lookup(wp, "[PAD]", 5);
  const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
  if (cJSON_IsString(prefix)) {
    size_t plen = strlen(prefix->valuestring);
    if (plen >= WP_PREFIX_MAX) { rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: continuing_subword_prefix is too long", path); goto done; }
    memcpy(wp->prefix, prefix->valuestring, plen + 1);
    wp->prefix_len = plen;
  }
  const cJSON *max_chars = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
  if (cJSON_IsNumber(max_chars)) {
    if (max_chars->valueint <= 0) { rc = twin_err_set(err, TWIN_EFORMAT, "%s: max_input_chars_per_word must be > 0", path); goto done; }
    wp->opt.max_input_chars_per_word = max_chars->valueint;
  }
  if ((rc = parse_normalizer(wp, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path, err))) goto done;
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
  const cJSON *pre_type = cJSON_GetObjectItemCaseSensitive(pre, "type");
  if (!cJSON_IsString(pre_type) || strcmp(pre_type->valuestring, "BertPreTokenizer") != 0) {
    rc = twin_err_set(err, TWIN_EUNSUPPORTED, "%s: pre_tokenizer %s is not supported (BertPreTokenizer is)", path,
                      cJSON_IsString(pre_type) ? pre_type->valuestring : "(missing)");
    goto done;
  }
  if ((rc = parse_post_processor(wp, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), path, err))) goto done;
  if ((rc = require_special(wp, path, err))) goto done;
  if (wp->cls_id >= wp->n_ids || wp->sep_id >= wp->n_ids || !wp->id_to_str[wp->cls_id] || !wp->id_to_str[wp->sep_id]) {
    rc = twin_err_set(err, TWIN_EFORMAT, "%s: post_processor ids are outside the vocabulary", path);
    goto done;
  }
done:
  token_list_free(&tl);
  cJSON_Delete(root);
  if (rc) { twin_wordpiece_destroy(wp); return rc; }
  *out = wp;
  return 0;
}

/* tokenizer_config.json (optional): do_lower_case, strip_accents, tokenize_chinese_chars. */
static int read_tokenizer_config(twin_wordpiece_options *o, const char *path, twin_err *err) {
  char *text = NULL;
  size_t len = 0;
  twin_err local;
  int rc = read_file(path, &text, &len, &local);
  if (rc == TWIN_ENOTFOUND) return 0;
  if (rc) { if (err) *err = local; return rc; }
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root) return twin_err_set(err, TWIN_EFORMAT, "%s: not valid JSON", path);
  rc = json_bool(root, "do_lower_case", &o->lowercase, path, err);
  o->strip_accents = o->lowercase;
  if (!rc) rc = json_bool(root, "strip_accents", &o->strip_accents, path, err);
  if (!rc) rc = json_bool(root, "tokenize_chinese_chars", &o->handle_chinese_chars, path, err);
  cJSON_Delete(root);
  return rc;
}

int twin_wordpiece_open(twin_wordpiece **out, const char *model_dir, twin_err *err) {
  *out = NULL;
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
  FILE *probe = fopen(path, "rb");
  if (probe) {
    fclose(probe);
    return open_tokenizer_json(out, path, err);
  }
  twin_wordpiece_options opt = twin_wordpiece_default_options();
  snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
  int rc = read_tokenizer_config(&opt, path, err);
  if (rc) return rc;
  snprintf(path, sizeof path, "%s/vocab.txt", model_dir);
  rc = twin_wordpiece_open_vocab(out, path, &opt, err);
  if (rc == TWIN_ENOTFOUND)
    twin_err_set(err, rc, "%s: neither tokenizer.json nor vocab.txt is there", model_dir);
  return rc;
}

void twin_wordpiece_destroy(twin_wordpiece *wp) {
  if (!wp) return;
  free(wp->arena);
  free(wp->id_to_str);
  free(wp->id_to_len);
  free(wp->slots);
  free(wp->added);
  free(wp);
}

int twin_wordpiece_vocab_size(const twin_wordpiece *wp) { return wp->n_ids; }
const char *twin_wordpiece_id_to_token(const twin_wordpiece *wp, int32_t id) {
  return id >= 0 && id < wp->n_ids ? wp->id_to_str[id] : NULL;
}
int32_t twin_wordpiece_token_to_id(const twin_wordpiece *wp, const char *token) { return lookup(wp, token, strlen(token)); }
int32_t twin_wordpiece_cls_id(const twin_wordpiece *wp) { return wp->cls_id; }
int32_t twin_wordpiece_sep_id(const twin_wordpiece *wp) { return wp->sep_id; }
int32_t twin_wordpiece_unk_id(const twin_wordpiece *wp) { return wp->unk_id; }
int32_t twin_wordpiece_pad_id(const twin_wordpiece *wp) { return wp->pad_id; }

/* ------------------------------------------------------------------------------------------ */
/* Character classes (as BERT defines them)                                                   */
/* ------------------------------------------------------------------------------------------ */

static int is_bert_whitespace(int32_t c) {
  if (c == '\t' || c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x85) return 1;
  utf8proc_category_t cat = utf8proc_category(c);
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

/* Control, format, surrogate and private-use code points, except the three whitespace controls.
 * Unassigned code points (Cn) stay, as the `tokenizers` BertNormalizer keeps them. */
static int is_bert_control(int32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return 0;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: return 1;
    default: return 0;
  }
}

/* ASCII symbols count as punctuation too ($, +, <, =, >, ^, `, |, ~). */
static int is_bert_punctuation(int32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return 1;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF: case UTF8PROC_CATEGORY_PO: return 1;
    default: return 0;
  }
}

/* CJK Unified Ideographs and their extensions and compatibility blocks (not Hangul or kana). */
static int is_cjk_ideograph(int32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Per-call state: the output ids and reusable scratch buffers. */
typedef struct encode_ctx {
  const twin_wordpiece *wp;
  int32_t *ids;     /* [cap] borrowed output */
  int n, cap;       /* pieces so far; room for pieces (max_len - 2) */
  int32_t *cps;     /* [cps_cap] normalized code points of one segment */
  size_t cps_cap;
  int32_t *tmp;     /* [tmp_cap] */
  size_t tmp_cap;
  char *word;       /* [word_cap] prefix + UTF-8 of one word */
  size_t word_cap;
  size_t *char_end; /* [max_chars + 1] byte end of each char of the word */
} encode_ctx;

static int grow_i32(int32_t **buf, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 256;
  while (n < need) n *= 2;
  int32_t *nb = realloc(*buf, n * sizeof *nb);
  if (!nb) return TWIN_ENOMEM;
  *buf = nb;
  *cap = n;
  return 0;
}

static int full(const encode_ctx *ctx) { return ctx->n >= ctx->cap; }
static void emit(encode_ctx *ctx, int32_t id) { if (!full(ctx)) ctx->ids[ctx->n++] = id; }

/* Greedy longest-match-first over one word of code points. */
static void wordpiece_word(encode_ctx *ctx, const int32_t *w, size_t n_chars) {
  const twin_wordpiece *wp = ctx->wp;
  if (n_chars > (size_t)wp->opt.max_input_chars_per_word) { emit(ctx, wp->unk_id); return; }
  char *utf8 = ctx->word + wp->prefix_len; /* the prefix sits just before the word */
  size_t bytes = 0;
  for (size_t i = 0; i < n_chars; i++) {
    bytes += (size_t)utf8proc_encode_char(w[i], (utf8proc_uint8_t *)utf8 + bytes);
    ctx->char_end[i] = bytes;
  }
  int first_piece = ctx->n;
  size_t start_char = 0;
  while (start_char < n_chars) {
    size_t start_byte = start_char ? ctx->char_end[start_char - 1] : 0;
    int32_t found = -1;
    size_t end_char = n_chars;
    for (; end_char > start_char; end_char--) {
      size_t end_byte = ctx->char_end[end_char - 1];
      if (start_char == 0) {
        found = lookup(wp, utf8, end_byte);
      } else {
        char *key = utf8 + start_byte - wp->prefix_len;
        char saved[WP_PREFIX_MAX];
        memcpy(saved, key, wp->prefix_len);
        memcpy(key, wp->prefix, wp->prefix_len);
        found = lookup(wp, key, wp->prefix_len + end_byte - start_byte);
        memcpy(key, saved, wp->prefix_len);
      }
      if (found >= 0) break;
    }
    if (found < 0) { /* the word cannot be covered: it is one [UNK] */
      ctx->n = first_piece;
      emit(ctx, wp->unk_id);
      return;
    }
    emit(ctx, found);
    start_char = end_char;
  }
}

/* Normalizes one raw segment (valid UTF-8) into ctx->cps; returns the count or < 0. */
static ssize_t normalize_segment(encode_ctx *ctx, const char *s, size_t len) {
  const twin_wordpiece_options *o = &ctx->wp->opt;
  /* clean + CJK spacing: at most 3 code points per input byte */
  if (grow_i32(&ctx->tmp, &ctx->tmp_cap, 3 * len + 1)) return TWIN_ENOMEM;
  size_t n = 0;
  for (size_t pos = 0; pos < len;) {
    int32_t c;
    pos += (size_t)utf8proc_iterate((const utf8proc_uint8_t *)s + pos, (utf8proc_ssize_t)(len - pos), &c);
    if (o->clean_text) {
      if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
      if (is_bert_whitespace(c)) c = ' ';
    }
    if (o->handle_chinese_chars && is_cjk_ideograph(c)) {
      ctx->tmp[n++] = ' ';
      ctx->tmp[n++] = c;
      ctx->tmp[n++] = ' ';
    } else {
      ctx->tmp[n++] = c;
    }
  }
  if (o->strip_accents) {
    /* NFD (with canonical ordering) through utf8proc, then drop the nonspacing marks. */
    if (ctx->word_cap < 4 * n + 1) {
      size_t cap = 4 * n + 1;
      char *nb = realloc(ctx->word, cap);
      if (!nb) return TWIN_ENOMEM;
      ctx->word = nb;
      ctx->word_cap = cap;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += (size_t)utf8proc_encode_char(ctx->tmp[i], (utf8proc_uint8_t *)ctx->word + bytes);
    utf8proc_option_t nfd = (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    utf8proc_ssize_t need = utf8proc_decompose((const utf8proc_uint8_t *)ctx->word, (utf8proc_ssize_t)bytes, NULL, 0, nfd);
    if (need < 0) return TWIN_EINTERNAL;
    if (grow_i32(&ctx->cps, &ctx->cps_cap, (size_t)need + 1)) return TWIN_ENOMEM;
    utf8proc_ssize_t got = utf8proc_decompose((const utf8proc_uint8_t *)ctx->word, (utf8proc_ssize_t)bytes, ctx->cps, need, nfd);
    if (got < 0 || got > need) return TWIN_EINTERNAL;
    n = 0;
    for (utf8proc_ssize_t i = 0; i < got; i++)
      if (utf8proc_category(ctx->cps[i]) != UTF8PROC_CATEGORY_MN) ctx->cps[n++] = ctx->cps[i];
  } else {
    if (grow_i32(&ctx->cps, &ctx->cps_cap, n + 1)) return TWIN_ENOMEM;
    memcpy(ctx->cps, ctx->tmp, n * sizeof *ctx->cps);
  }
  if (o->lowercase) {
    /* U+0130 is the one code point whose full lowercase mapping is two code points. */
    size_t extra = 0;
    for (size_t i = 0; i < n; i++) extra += ctx->cps[i] == 0x130;
    if (extra) {
      if (grow_i32(&ctx->cps, &ctx->cps_cap, n + extra + 1)) return TWIN_ENOMEM;
      for (size_t i = n, j = n + extra; i-- > 0;) {
        if (ctx->cps[i] == 0x130) { ctx->cps[--j] = 0x307; ctx->cps[--j] = 'i'; }
        else ctx->cps[--j] = ctx->cps[i];
      }
      n += extra;
    }
    for (size_t i = 0; i < n; i++) ctx->cps[i] = utf8proc_tolower(ctx->cps[i]);
  }
  return (ssize_t)n;
}

/* Normalize, split on whitespace and punctuation, and piece one raw segment. */
static int encode_segment(encode_ctx *ctx, const char *s, size_t len) {
  ssize_t n = normalize_segment(ctx, s, len);
  if (n < 0) return (int)n;
  /* the longest word that reaches piece search is max_input_chars_per_word chars */
  size_t max_chars = (size_t)ctx->wp->opt.max_input_chars_per_word;
  size_t need = ctx->wp->prefix_len + 4 * max_chars + 1;
  if (ctx->word_cap < need) {
    char *nb = realloc(ctx->word, need);
    if (!nb) return TWIN_ENOMEM;
    ctx->word = nb;
    ctx->word_cap = need;
  }
  size_t word_start = 0;
  for (size_t i = 0; i <= (size_t)n && !full(ctx); i++) {
    int boundary = i == (size_t)n || is_bert_whitespace(ctx->cps[i]) || is_bert_punctuation(ctx->cps[i]);
    if (!boundary) continue;
    if (i > word_start) wordpiece_word(ctx, ctx->cps + word_start, i - word_start);
    if (i < (size_t)n && !is_bert_whitespace(ctx->cps[i]) && !full(ctx)) wordpiece_word(ctx, ctx->cps + i, 1);
    word_start = i + 1;
  }
  return 0;
}

/* Encodes a raw segment in pieces of about 4 KB cut at ASCII whitespace, stopping once the ids
 * are full, so a long document costs only the text that fits. Cutting there changes nothing:
 * whitespace ends words, and no normalization step reaches across it. */
static int encode_segment_bounded(encode_ctx *ctx, const char *s, size_t len) {
  const size_t piece = 4096;
  size_t start = 0;
  while (start < len && !full(ctx)) {
    size_t end = start + piece < len ? start + piece : len;
    while (end < len && s[end] != ' ' && s[end] != '\t' && s[end] != '\n' && s[end] != '\r') end++;
    int rc = encode_segment(ctx, s + start, end - start);
    if (rc) return rc;
    start = end;
  }
  return 0;
}

/* The longest added token that starts at s (or NULL). */
static const added_token *match_added(const twin_wordpiece *wp, const char *s, size_t left) {
  const added_token *best = NULL;
  for (int k = 0; k < wp->n_added; k++) {
    const added_token *a = &wp->added[k];
    if (a->len <= left && a->text[0] == s[0] && memcmp(a->text, s, a->len) == 0 && (!best || a->len > best->len)) best = a;
  }
  return best;
}

int twin_wordpiece_encode(const twin_wordpiece *wp, const char *text, size_t len, int max_len,
                          int32_t *ids, int *n_ids, twin_err *err) {
  *n_ids = 0;
  if (max_len < 2) return twin_err_set(err, TWIN_EINVAL, "wordpiece: max_len %d leaves no room for [CLS] and [SEP]", max_len);
  if (!text && len) return twin_err_set(err, TWIN_EINVAL, "wordpiece: NULL text of %zu bytes", len);
  for (size_t pos = 0; pos < len;) {
    int32_t c;
    utf8proc_ssize_t step = utf8proc_iterate((const utf8proc_uint8_t *)text + pos, (utf8proc_ssize_t)(len - pos), &c);
    if (step < 0) return twin_err_set(err, TWIN_EINVAL, "wordpiece: invalid UTF-8 at byte %zu", pos);
    pos += (size_t)step;
  }
  size_t max_chars = (size_t)wp->opt.max_input_chars_per_word;
  encode_ctx ctx = {.wp = wp, .ids = ids + 1, .cap = max_len - 2};
  ctx.char_end = malloc((max_chars + 1) * sizeof *ctx.char_end);
  int rc = ctx.char_end ? 0 : TWIN_ENOMEM;
  size_t seg_start = 0;
  for (size_t pos = 0; pos <= len && !rc && !full(&ctx);) {
    const added_token *a = pos < len && wp->n_added ? match_added(wp, text + pos, len - pos) : NULL;
    if (pos < len && !a) { pos++; continue; }
    if (pos > seg_start) rc = encode_segment_bounded(&ctx, text + seg_start, pos - seg_start);
    if (!rc && a) emit(&ctx, a->id);
    if (!a) break;
    pos += a->len;
    seg_start = pos;
  }
  free(ctx.cps);
  free(ctx.tmp);
  free(ctx.word);
  free(ctx.char_end);
  if (rc == TWIN_ENOMEM) return twin_err_set(err, rc, "wordpiece: out of memory for a text of %zu bytes", len);
  if (rc) return twin_err_set(err, rc, "wordpiece: Unicode decomposition failed");
  ids[0] = wp->cls_id;
  ids[ctx.n + 1] = wp->sep_id;
  *n_ids = ctx.n + 2;
  return 0;
}
