/* llm-svc/model/tokenizer.c — twin_tokenizer: loading tokenizer.json / tokenizer_config.json
 * (cJSON), added-token splitting (a byte trie, leftmost-longest, with the lstrip / rstrip /
 * single_word / normalized rules of the Python `tokenizers` package), the encode driver
 * (added tokens -> normalizers -> pre-tokenizers -> BPE -> BOS/EOS) and the public API.
 * The BPE loop is in tokenizer_bpe.c, normalizers and pre-tokenizers in tokenizer_pretok.c,
 * decoders in tokenizer_decode.c. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm-svc/model/tokenizer_internal.h"

/* The GPT-2 split regex that a ByteLevel pre-tokenizer with use_regex applies. */
static const char GPT2_SPLIT_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ============================================================================================
 * Errors and small helpers
 * ========================================================================================== */

static int failf(twin_err *err, int code, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int failf(twin_err *err, int code, const char *name, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return twin_err_set(err, code, "%s: %s", name, msg);
}

static int read_file(const char *path, char **buf, size_t *len, twin_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return twin_err_set(err, errno == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "cannot open %s: %s", path,
                        strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *data = malloc(cap);
  while (data) {
    if (n == cap) {
      char *bigger = realloc(data, cap * 2);
      if (!bigger) break;
      data = bigger;
      cap *= 2;
    }
    size_t got = fread(data + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (!data || n == cap) {
    free(data);
    return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory reading the file", path);
  }
  if (bad) {
    free(data);
    return twin_err_set(err, TWIN_EIO, "%s: read error", path);
  }
  data[n] = 0;
  *buf = data;
  *len = n;
  return 0;
}

static int parse_json(const char *text, size_t len, const char *name, cJSON **out, twin_err *err) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!root) {
    size_t off = end && end >= text ? (size_t)(end - text) : 0;
    if (off > len) off = len;
    size_t line = 1;
    for (size_t i = 0; i < off; i++) line += text[i] == '\n';
    return failf(err, TWIN_EFORMAT, name, "malformed JSON near byte %zu (line %zu)", off, line);
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return failf(err, TWIN_EFORMAT, name, "the top level is not a JSON object");
  }
  *out = root;
  return 0;
}

/* A JSON boolean with a default when absent or null; an error for anything else. */
static int get_bool(const cJSON *obj, const char *key, int dflt, int *out, const char *name,
                    const char *path, twin_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v || cJSON_IsNull(v)) { *out = dflt; return 0; }
  if (!cJSON_IsBool(v)) return failf(err, TWIN_EFORMAT, name, "%s.%s is not a boolean", path, key);
  *out = cJSON_IsTrue(v);
  return 0;
}

/* A non-negative integer. */
static int get_int(const cJSON *v, long max, long *out) {
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (d < 0 || d > (double)max || d != (double)(long)d) return -1;
  *out = (long)d;
  return 0;
}

static const char *get_type(const cJSON *obj) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "type");
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *dup_bytes(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

/* Adds s to the string arena; *off receives its offset. */
static int intern(twin_tokenizer *t, const char *s, size_t n, uint32_t *off) {
  if (t->strings.len + n + 1 >= UINT32_MAX) return TWIN_ENOMEM;
  *off = (uint32_t)t->strings.len;
  if (tok_buf_append(&t->strings, s, n)) return TWIN_ENOMEM;
  /* keep the NUL that tok_buf_append wrote as part of the arena */
  return tok_buf_append(&t->strings, "", 1);
}

/* ============================================================================================
 * Encode context
 * ========================================================================================== */

static void ctx_free(tok_encode_ctx *ctx) {
  tok_match_state_free(&ctx->match);
  free(ctx->added_raw.data);
  free(ctx->added_norm.data);
  tok_buf_free(&ctx->norm_a);
  tok_buf_free(&ctx->norm_b);
  for (int i = 0; i < TOK_MAX_STEPS; i++) {
    tok_buf_free(&ctx->level_a[i]);
    tok_buf_free(&ctx->level_b[i]);
    free(ctx->segs[i].data);
  }
  tok_buf_free(&ctx->word);
  free(ctx->symbols);
  free(ctx->heap);
  tok_strmap_free(&ctx->cache);
  tok_buf_free(&ctx->cache_keys);
  tok_ids_free(&ctx->cache_ids);
  free(ctx->cache_spans);
  memset(ctx, 0, sizeof *ctx);
}

static int ctx_init(tok_encode_ctx *ctx, tok_ids *out) {
  memset(ctx, 0, sizeof *ctx);
  ctx->out = out;
  return tok_match_state_init(&ctx->match);
}

/* ============================================================================================
 * Added tokens: trie and splitting
 * ========================================================================================== */

static int trie_new_node(tok_trie *tr, unsigned char byte) {
  if (tr->n_nodes == tr->cap) {
    size_t cap = tr->cap ? tr->cap * 2 : 256;
    tok_trie_node *p = realloc(tr->nodes, cap * sizeof *p);
    if (!p) return -1;
    tr->nodes = p;
    tr->cap = cap;
  }
  tr->nodes[tr->n_nodes] = (tok_trie_node){.first_child = -1, .next_sibling = -1, .added = -1, .byte = byte};
  return (int)tr->n_nodes++;
}

static int trie_insert(tok_trie *tr, const char *s, size_t n, int32_t added) {
  if (n == 0) return 0;
  if (tr->n_nodes == 0) {
    if (trie_new_node(tr, 0) < 0) return TWIN_ENOMEM;
    for (int i = 0; i < 256; i++) tr->root_child[i] = -1;
  }
  int32_t node = tr->root_child[(unsigned char)s[0]];
  if (node < 0) {
    node = trie_new_node(tr, (unsigned char)s[0]);
    if (node < 0) return TWIN_ENOMEM;
    tr->root_child[(unsigned char)s[0]] = node;
  }
  for (size_t i = 1; i < n; i++) {
    int32_t child = tr->nodes[node].first_child;
    while (child >= 0 && tr->nodes[child].byte != (unsigned char)s[i]) child = tr->nodes[child].next_sibling;
    if (child < 0) {
      child = trie_new_node(tr, (unsigned char)s[i]);
      if (child < 0) return TWIN_ENOMEM;
      tr->nodes[child].next_sibling = tr->nodes[node].first_child;
      tr->nodes[node].first_child = child;
    }
    node = child;
  }
  /* Two tokens with the same text: the first one listed keeps it. */
  if (tr->nodes[node].added < 0) tr->nodes[node].added = added;
  tr->empty = 0;
  return 0;
}

/* Longest token starting at s[0]: its length, or 0; *added receives its index. */
static size_t trie_longest(const tok_trie *tr, const char *s, size_t n, int32_t *added) {
  int32_t node = tr->root_child[(unsigned char)s[0]];
  size_t best = 0;
  for (size_t i = 1; node >= 0; i++) {
    if (tr->nodes[node].added >= 0) {
      best = i;
      *added = tr->nodes[node].added;
    }
    if (i == n) break;
    int32_t child = tr->nodes[node].first_child;
    while (child >= 0 && tr->nodes[child].byte != (unsigned char)s[i]) child = tr->nodes[child].next_sibling;
    node = child;
  }
  return best;
}

static int ends_with_word(const char *s, size_t n) {
  if (n == 0) return 0;
  size_t k = n - 1;
  while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
  uint32_t cp;
  tok_utf8_decode(s + k, n - k, &cp);
  return tok_is_word_char(cp);
}

static int starts_with_word(const char *s, size_t n) {
  if (n == 0) return 0;
  uint32_t cp;
  tok_utf8_decode(s, n, &cp);
  return tok_is_word_char(cp);
}

/* Splits s[0..n) into text spans and added-token spans (is_match = added index + 1). */
static int split_added(const twin_tokenizer *t, const tok_trie *tr, const char *s, size_t n,
                       tok_segs *out) {
  out->len = 0;
#define PUSH_SEG(a, b, m)                                                   \
  do {                                                                      \
    if (out->len == out->cap) {                                             \
      size_t cap_ = out->cap ? out->cap * 2 : 32;                           \
      tok_seg *p_ = realloc(out->data, cap_ * sizeof *p_);                  \
      if (!p_) return TWIN_ENOMEM;                                          \
      out->data = p_;                                                       \
      out->cap = cap_;                                                      \
    }                                                                       \
    out->data[out->len++] = (tok_seg){(a), (b), (m)};                       \
  } while (0)
  if (n == 0) return 0;
  if (tr->empty || tr->n_nodes == 0) {
    PUSH_SEG(0, n, 0);
    return 0;
  }
  size_t start_offset = 0, pos = 0;
  while (pos < n) {
    int32_t idx = -1;
    size_t mlen = 0, p = pos;
    for (; p < n; p++) {
      if (tr->root_child[(unsigned char)s[p]] < 0) continue;
      mlen = trie_longest(tr, s + p, n - p, &idx);
      if (mlen) break;
    }
    if (!mlen) break;
    size_t start = p, stop = p + mlen;
    pos = stop;
    const tok_added *a = &t->added[idx];
    if (a->single_word) {
      int start_space = start == 0 || !ends_with_word(s, start);
      int stop_space = stop == n || !starts_with_word(s + stop, n - stop);
      if (!start_space || !stop_space) continue;
    }
    if (a->lstrip) {
      size_t newstart = start;
      while (newstart > 0) {
        size_t k = newstart - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        tok_utf8_decode(s + k, newstart - k, &cp);
        if (!tok_is_unicode_space(cp)) break;
        newstart = k;
      }
      start = newstart > start_offset ? newstart : start_offset;
    }
    if (a->rstrip) {
      while (stop < n) {
        uint32_t cp;
        int len = tok_utf8_decode(s + stop, n - stop, &cp);
        if (!tok_is_unicode_space(cp)) break;
        stop += (size_t)len;
      }
    }
    if (start_offset < start) PUSH_SEG(start_offset, start, 0);
    PUSH_SEG(start, stop, idx + 1);
    start_offset = stop;
  }
  if (start_offset < n) PUSH_SEG(start_offset, n, 0);
#undef PUSH_SEG
  return 0;
}

/* ============================================================================================
 * Encode
 * ========================================================================================== */

static int encode_impl(const twin_tokenizer *t, const char *text, size_t len, int add_special,
                       tok_ids *out, twin_err *err) {
  if (!t || (!text && len)) return twin_err_set(err, TWIN_EINVAL, "encode: NULL tokenizer or text");
  size_t valid = tok_utf8_valid_prefix(text, len);
  if (valid != len)
    return twin_err_set(err, TWIN_EINVAL, "encode: invalid UTF-8 at byte offset %zu (byte 0x%02x)", valid,
                        (unsigned char)text[valid]);
  tok_encode_ctx ctx;
  if (ctx_init(&ctx, out)) {
    ctx_free(&ctx);
    return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
  }
  int rc = 0;
  if (add_special && tok_ids_append(out, t->prefix_ids, (size_t)t->n_prefix)) goto nomem;
  if (split_added(t, &t->trie_raw, text, len, &ctx.added_raw)) goto nomem;
  for (size_t i = 0; i < ctx.added_raw.len && !rc; i++) {
    tok_seg sg = ctx.added_raw.data[i];
    if (sg.end == sg.start) continue;
    if (sg.is_match) {
      if (tok_ids_push(out, t->added[sg.is_match - 1].id)) goto nomem;
      continue;
    }
    const char *ns;
    size_t nn;
    rc = tok_normalize(t, &ctx, text + sg.start, sg.end - sg.start, &ns, &nn, err);
    if (rc) break;
    if (split_added(t, &t->trie_norm, ns, nn, &ctx.added_norm)) goto nomem;
    for (size_t j = 0; j < ctx.added_norm.len && !rc; j++) {
      tok_seg s2 = ctx.added_norm.data[j];
      if (s2.end == s2.start) continue;
      if (s2.is_match) {
        if (tok_ids_push(out, t->added[s2.is_match - 1].id)) goto nomem;
        continue;
      }
      rc = tok_pretokenize(t, &ctx, ns + s2.start, s2.end - s2.start, sg.start == 0 && s2.start == 0, err);
    }
  }
  if (!rc && add_special && tok_ids_append(out, t->suffix_ids, (size_t)t->n_suffix)) goto nomem;
  ctx_free(&ctx);
  return rc;
nomem:
  ctx_free(&ctx);
  return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
}

int twin_tokenizer_encode(const twin_tokenizer *tok, const char *text, size_t len, int add_special,
                          int32_t **ids_out, size_t *n_out, twin_err *err) {
  tok_ids out = {0};
  *ids_out = NULL;
  *n_out = 0;
  int rc = encode_impl(tok, text, len, add_special, &out, err);
  if (rc) {
    tok_ids_free(&out);
    return rc;
  }
  if (!out.data && !(out.data = malloc(sizeof(int32_t)))) return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
  *ids_out = out.data;
  *n_out = out.len;
  return 0;
}

int twin_tokenizer_encode_into(const twin_tokenizer *tok, const char *text, size_t len,
                               int add_special, int32_t *ids, size_t cap, size_t *n_out,
                               twin_err *err) {
  tok_ids out = {0};
  *n_out = 0;
  int rc = encode_impl(tok, text, len, add_special, &out, err);
  if (!rc) {
    *n_out = out.len;
    size_t copy = out.len < cap ? out.len : cap;
    if (copy) memcpy(ids, out.data, copy * sizeof *ids);
    if (out.len > cap)
      rc = twin_err_set(err, TWIN_EFULL, "encode: %zu ids do not fit in a buffer of %zu", out.len, cap);
  }
  tok_ids_free(&out);
  return rc;
}

/* ============================================================================================
 * Decode and lookups
 * ========================================================================================== */

int twin_tokenizer_decode(const twin_tokenizer *tok, const int32_t *ids, size_t n, int flags,
                          char **text_out, size_t *len_out, twin_err *err) {
  *text_out = NULL;
  *len_out = 0;
  if (!tok || (!ids && n)) return twin_err_set(err, TWIN_EINVAL, "decode: NULL tokenizer or ids");
  tok_decode_state st;
  tok_decode_state_init(tok, &st);
  tok_buf out = {0};
  int rc = tok_buf_append(&out, "", 0) ? twin_err_set(err, TWIN_ENOMEM, "decode: out of memory") : 0;
  for (size_t i = 0; i < n && !rc; i++) rc = tok_decode_one(tok, &st, ids[i], flags, &out, err);
  tok_decode_state_free(&st);
  if (rc) {
    tok_buf_free(&out);
    return rc;
  }
  *text_out = out.data;
  *len_out = out.len;
  return 0;
}

const char *twin_tokenizer_id_to_token(const twin_tokenizer *tok, int32_t id) {
  if (!tok || id < 0 || id >= tok->vocab_size || tok->piece_off[id] == UINT32_MAX) return NULL;
  return tok->strings.data + tok->piece_off[id];
}

int twin_tokenizer_token_piece(const twin_tokenizer *tok, int32_t id, char *buf, size_t cap,
                               size_t *len_out, twin_err *err) {
  *len_out = 0;
  if (!twin_tokenizer_id_to_token(tok, id))
    return twin_err_set(err, TWIN_ENOTFOUND, "token id %d has no token", (int)id);
  tok_decode_state st;
  tok_decode_state_init(tok, &st);
  st.token_index = 1; /* in the middle of a text: nothing at the start to strip */
  st.strip_done = 1;
  tok_buf out = {0};
  int rc = tok_decode_one(tok, &st, id, 0, &out, err);
  tok_decode_state_free(&st);
  if (!rc) {
    *len_out = out.len;
    if (out.len) memcpy(buf, out.data, out.len < cap ? out.len : cap);
    if (out.len > cap)
      rc = twin_err_set(err, TWIN_EFULL, "token %d: %zu bytes do not fit in %zu", (int)id, out.len, cap);
  }
  tok_buf_free(&out);
  return rc;
}

int32_t twin_tokenizer_token_to_id(const twin_tokenizer *tok, const char *token) {
  if (!tok || !token) return -1;
  size_t n = strlen(token);
  int32_t id = tok_strmap_get(&tok->added_lookup, tok->strings.data, token, n);
  return id >= 0 ? id : tok_strmap_get(&tok->vocab, tok->strings.data, token, n);
}

int32_t twin_tokenizer_vocab_size(const twin_tokenizer *tok) { return tok ? tok->vocab_size : 0; }
int32_t twin_tokenizer_bos_id(const twin_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t twin_tokenizer_eos_id(const twin_tokenizer *tok) { return tok ? tok->eos_id : -1; }

int twin_tokenizer_is_special(const twin_tokenizer *tok, int32_t id) {
  return tok && id >= 0 && id < tok->vocab_size && (tok->id_flags[id] & TOK_ID_SPECIAL);
}

twin_tokenizer_kind twin_tokenizer_kind_of(const twin_tokenizer *tok) { return tok->kind; }

const char *twin_tokenizer_kind_name(const twin_tokenizer *tok) {
  return tok && tok->kind == TWIN_TOKENIZER_BYTE_BPE ? "byte_bpe" : "sp_bpe";
}

void twin_tokenizer_destroy(twin_tokenizer *t) {
  if (!t) return;
  tok_buf_free(&t->strings);
  free(t->piece_off);
  free(t->piece_len);
  free(t->id_flags);
  tok_strmap_free(&t->vocab);
  tok_pairmap_free(&t->merges);
  free(t->subword_prefix);
  free(t->word_suffix);
  for (int i = 0; i < t->n_norms; i++) tok_normalizer_free(&t->norms[i]);
  for (int i = 0; i < t->n_pretoks; i++) tok_pretok_free(&t->pretoks[i]);
  for (int i = 0; i < t->n_decoders; i++) tok_decoder_free(&t->decoders[i]);
  for (size_t i = 0; i < t->n_added; i++) {
    free(t->added[i].content);
    free(t->added[i].match);
  }
  free(t->added);
  tok_strmap_free(&t->added_lookup);
  free(t->trie_raw.nodes);
  free(t->trie_norm.nodes);
  free(t);
}

/* ============================================================================================
 * Loading: shared set-up
 * ========================================================================================== */

static twin_tokenizer *tokenizer_new(const char *name) {
  twin_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  snprintf(t->name, sizeof t->name, "%s", name ? name : "tokenizer");
  t->unk_id = t->bos_id = t->eos_id = -1;
  t->has_decoder = 1;
  t->trie_raw.empty = t->trie_norm.empty = 1;
  for (int b = 0; b < 256; b++) t->byte_ids[b] = -1;
  tok_bytelevel_tables(t->byte_to_cp);
  for (int i = 0; i < 324; i++) t->cp_to_byte[i] = -1;
  for (int b = 0; b < 256; b++) t->cp_to_byte[t->byte_to_cp[b]] = (int16_t)b;
  return t;
}

static int alloc_ids(twin_tokenizer *t, long vocab_size) {
  t->vocab_size = (int32_t)vocab_size;
  size_t n = vocab_size > 0 ? (size_t)vocab_size : 1;
  t->piece_off = malloc(n * sizeof *t->piece_off);
  t->piece_len = calloc(n, sizeof *t->piece_len);
  t->id_flags = calloc(n, 1);
  if (!t->piece_off || !t->piece_len || !t->id_flags) return TWIN_ENOMEM;
  for (size_t i = 0; i < n; i++) t->piece_off[i] = UINT32_MAX;
  return 0;
}

/* Model vocabulary entry. */
static int add_vocab_token(twin_tokenizer *t, const char *s, size_t n, int32_t id) {
  uint32_t off;
  if (intern(t, s, n, &off)) return TWIN_ENOMEM;
  if (t->piece_off[id] == UINT32_MAX) {
    t->piece_off[id] = off;
    t->piece_len[id] = (uint32_t)n;
  }
  return tok_strmap_put(&t->vocab, t->strings.data, off, (uint32_t)n, id);
}

static void find_byte_tokens(twin_tokenizer *t) {
  for (int b = 0; b < 256; b++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    t->byte_ids[b] = tok_strmap_get(&t->vocab, t->strings.data, name, 6);
  }
}

/* Adds a merge "left right" given as two strings; path names it in errors. */
static int add_merge(twin_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn, int32_t rank,
                     int keep_existing, tok_buf *scratch, const char *path, twin_err *err) {
  int32_t a = tok_strmap_get(&t->vocab, t->strings.data, l, ln);
  if (a < 0) return failf(err, TWIN_EFORMAT, t->name, "%s: token \"%.*s\" is not in the vocabulary", path, (int)ln, l);
  int32_t b = tok_strmap_get(&t->vocab, t->strings.data, r, rn);
  if (b < 0) return failf(err, TWIN_EFORMAT, t->name, "%s: token \"%.*s\" is not in the vocabulary", path, (int)rn, r);
  size_t skip = t->subword_prefix_len <= rn ? t->subword_prefix_len : 0;
  scratch->len = 0;
  if (tok_buf_append(scratch, l, ln) || tok_buf_append(scratch, r + skip, rn - skip)) return TWIN_ENOMEM;
  int32_t m = tok_strmap_get(&t->vocab, t->strings.data, scratch->data, scratch->len);
  if (m < 0)
    return failf(err, TWIN_EFORMAT, t->name, "%s: merged token \"%.*s\" is not in the vocabulary", path,
                 (int)scratch->len, scratch->data);
  return tok_pairmap_put(&t->merges, a, b, rank, m, keep_existing) ? TWIN_ENOMEM : 0;
}

/* Match strings for added tokens (normalized ones through the normalizers) and the tries. */
static int build_added_tries(twin_tokenizer *t, twin_err *err) {
  tok_ids dummy = {0};
  tok_encode_ctx ctx;
  if (ctx_init(&ctx, &dummy)) {
    ctx_free(&ctx);
    return TWIN_ENOMEM;
  }
  int rc = 0;
  for (size_t i = 0; i < t->n_added && !rc; i++) {
    tok_added *a = &t->added[i];
    const char *m = a->content;
    size_t mn = a->len;
    if (a->normalized && t->n_norms) {
      rc = tok_normalize(t, &ctx, a->content, a->len, &m, &mn, err);
      if (rc) break;
    }
    if (!(a->match = dup_bytes(m, mn))) rc = TWIN_ENOMEM;
    a->match_len = mn;
    if (!rc) rc = trie_insert(a->normalized ? &t->trie_norm : &t->trie_raw, a->match, mn, (int32_t)i);
  }
  ctx_free(&ctx);
  return rc;
}

/* Whether BPE words may be cut before each '▁' that follows another character: true when
 * '▁' is a token and no token has a '▁' after another character, so no merge can span such a
 * point. Not with ignore_merges (it looks whole words up) or affixes. */
static void check_marker_split(twin_tokenizer *t) {
  static const char marker[] = "\xE2\x96\x81";
  t->marker_split = 0;
  if (t->ignore_merges || t->subword_prefix || t->word_suffix) return;
  if (tok_strmap_get(&t->vocab, t->strings.data, marker, 3) < 0) return;
  for (size_t i = 0; i < t->vocab.cap; i++) {
    const tok_strmap_slot *sl = &t->vocab.slots[i];
    if (!sl->used) continue;
    const char *s = t->strings.data + sl->off;
    size_t n = sl->len, k = 0;
    while (k + 3 <= n && memcmp(s + k, marker, 3) == 0) k += 3; /* leading run */
    for (; k + 3 <= n; k++)
      if (memcmp(s + k, marker, 3) == 0) return;
  }
  t->marker_split = 1;
}

static int set_kind(twin_tokenizer *t) {
  check_marker_split(t);
  t->kind = TWIN_TOKENIZER_SP_BPE;
  for (int i = 0; i < t->n_pretoks; i++)
    if (t->pretoks[i].kind == TOK_PRE_BYTELEVEL) t->kind = TWIN_TOKENIZER_BYTE_BPE;
  for (int i = 0; i < t->n_decoders; i++)
    if (t->decoders[i].kind == TOK_DEC_BYTELEVEL) t->kind = TWIN_TOKENIZER_BYTE_BPE;
  return 0;
}

/* ============================================================================================
 * Loading tokenizer.json: model
 * ========================================================================================== */

static int parse_model(twin_tokenizer *t, const cJSON *root, long *max_id_out, twin_err *err) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  if (!cJSON_IsObject(model)) return failf(err, TWIN_EFORMAT, t->name, "no \"model\" object");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const char *type = get_type(model);
  if (type && strcmp(type, "BPE") != 0)
    return failf(err, TWIN_EUNSUPPORTED, t->name, "model.type \"%s\" is not supported (only BPE)", type);
  if (!type && !merges)
    return failf(err, TWIN_EUNSUPPORTED, t->name, "model has no \"type\" and no \"merges\": only BPE is supported");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  if (!cJSON_IsObject(vocab)) return failf(err, TWIN_EFORMAT, t->name, "model.vocab is missing or not an object");
  if (!cJSON_IsArray(merges)) return failf(err, TWIN_EFORMAT, t->name, "model.merges is missing or not an array");

  long max_id = -1;
  for (const cJSON *e = vocab->child; e; e = e->next) {
    long id;
    if (get_int(e, 0x7ffffffe, &id))
      return failf(err, TWIN_EFORMAT, t->name, "model.vocab[\"%s\"] is not a valid id", e->string);
    if (id > max_id) max_id = id;
  }
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
    return failf(err, TWIN_EFORMAT, t->name, "added_tokens is not an array");
  size_t i = 0;
  for (const cJSON *e = added ? added->child : NULL; e; e = e->next, i++) {
    long id;
    if (!cJSON_IsObject(e) || get_int(cJSON_GetObjectItemCaseSensitive(e, "id"), 0x7ffffffe, &id))
      return failf(err, TWIN_EFORMAT, t->name, "added_tokens[%zu].id is missing or not a valid id", i);
    if (id > max_id) max_id = id;
  }
  if (max_id > 16 * 1024 * 1024)
    return failf(err, TWIN_EFORMAT, t->name, "token id %ld is too large", max_id);
  if (alloc_ids(t, max_id + 1)) return TWIN_ENOMEM;
  for (const cJSON *e = vocab->child; e; e = e->next)
    if (add_vocab_token(t, e->string, strlen(e->string), (int32_t)e->valuedouble)) return TWIN_ENOMEM;

  /* options */
  int rc;
  if ((rc = get_bool(model, "fuse_unk", 0, &t->fuse_unk, t->name, "model", err)) ||
      (rc = get_bool(model, "byte_fallback", 0, &t->byte_fallback, t->name, "model", err)) ||
      (rc = get_bool(model, "ignore_merges", 0, &t->ignore_merges, t->name, "model", err)))
    return rc;
  const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble <= 0))
    return failf(err, TWIN_EUNSUPPORTED, t->name, "model.dropout is set: BPE dropout is not supported");
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  if (cJSON_IsString(unk)) {
    t->unk_id = tok_strmap_get(&t->vocab, t->strings.data, unk->valuestring, strlen(unk->valuestring));
    if (t->unk_id < 0)
      return failf(err, TWIN_EFORMAT, t->name, "model.unk_token \"%s\" is not in model.vocab", unk->valuestring);
  } else if (unk && !cJSON_IsNull(unk)) {
    return failf(err, TWIN_EFORMAT, t->name, "model.unk_token is not a string");
  }
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
  if (cJSON_IsString(pre) && pre->valuestring[0]) {
    t->subword_prefix_len = strlen(pre->valuestring);
    if (!(t->subword_prefix = dup_bytes(pre->valuestring, t->subword_prefix_len))) return TWIN_ENOMEM;
  }
  const cJSON *suf = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
  if (cJSON_IsString(suf) && suf->valuestring[0]) {
    t->word_suffix_len = strlen(suf->valuestring);
    if (!(t->word_suffix = dup_bytes(suf->valuestring, t->word_suffix_len))) return TWIN_ENOMEM;
  }
  find_byte_tokens(t);

  /* merges: "a b" strings (older files) or ["a", "b"] pairs */
  if (tok_pairmap_init(&t->merges, (size_t)cJSON_GetArraySize(merges))) return TWIN_ENOMEM;
  tok_buf scratch = {0};
  int32_t rank = 0;
  i = 0;
  rc = 0;
  for (const cJSON *e = merges->child; e && !rc; e = e->next, i++) {
    char path[48];
    snprintf(path, sizeof path, "model.merges[%zu]", i);
    if (cJSON_IsString(e)) {
      const char *s = e->valuestring;
      if (strncmp(s, "#version", 8) == 0) continue;
      const char *sp = strchr(s, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        rc = failf(err, TWIN_EFORMAT, t->name, "%s: \"%s\" is not two tokens separated by one space", path, s);
        break;
      }
      rc = add_merge(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank++, 0, &scratch, path, err);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
               cJSON_IsString(e->child->next)) {
      const char *l = e->child->valuestring, *r = e->child->next->valuestring;
      rc = add_merge(t, l, strlen(l), r, strlen(r), rank++, 0, &scratch, path, err);
    } else {
      rc = failf(err, TWIN_EFORMAT, t->name, "%s is neither \"a b\" nor [\"a\", \"b\"]", path);
    }
  }
  tok_buf_free(&scratch);
  if (rc == TWIN_ENOMEM) return failf(err, TWIN_ENOMEM, t->name, "out of memory");
  *max_id_out = max_id;
  return rc;
}

/* ============================================================================================
 * Loading tokenizer.json: added tokens
 * ========================================================================================== */

static int parse_added(twin_tokenizer *t, const cJSON *root, twin_err *err) {
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  size_t n = added && cJSON_IsArray(added) ? (size_t)cJSON_GetArraySize(added) : 0;
  if (!n) return 0;
  t->added = calloc(n, sizeof *t->added);
  if (!t->added) return TWIN_ENOMEM;
  size_t i = 0;
  for (const cJSON *e = added->child; e; e = e->next, i++) {
    char path[48];
    snprintf(path, sizeof path, "added_tokens[%zu]", i);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
    if (!cJSON_IsString(content) || !content->valuestring[0])
      return failf(err, TWIN_EFORMAT, t->name, "%s.content is missing or empty", path);
    tok_added *a = &t->added[t->n_added++];
    a->id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
    a->len = strlen(content->valuestring);
    if (!(a->content = dup_bytes(content->valuestring, a->len))) return TWIN_ENOMEM;
    int rc;
    if ((rc = get_bool(e, "special", 0, &a->special, t->name, path, err)) ||
        (rc = get_bool(e, "lstrip", 0, &a->lstrip, t->name, path, err)) ||
        (rc = get_bool(e, "rstrip", 0, &a->rstrip, t->name, path, err)) ||
        (rc = get_bool(e, "single_word", 0, &a->single_word, t->name, path, err)) ||
        (rc = get_bool(e, "normalized", !a->special, &a->normalized, t->name, path, err)))
      return rc;
    uint32_t off;
    if (intern(t, a->content, a->len, &off)) return TWIN_ENOMEM;
    /* The added token's text is what decodes for its id, even when the model has the id. */
    t->piece_off[a->id] = off;
    t->piece_len[a->id] = (uint32_t)a->len;
    t->id_flags[a->id] |= TOK_ID_ADDED | (a->special ? TOK_ID_SPECIAL : 0);
    if (tok_strmap_put(&t->added_lookup, t->strings.data, off, (uint32_t)a->len, a->id)) return TWIN_ENOMEM;
  }
  return 0;
}

/* ============================================================================================
 * Loading tokenizer.json: normalizers, pre-tokenizers, decoders
 * ========================================================================================== */

/* {"String": "x"} or {"Regex": "x"}; *is_regex tells which. */
static int get_pattern(const cJSON *obj, const char **s, int *is_regex) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
  if (!cJSON_IsObject(p)) return -1;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "String");
  if (cJSON_IsString(v)) { *s = v->valuestring; *is_regex = 0; return 0; }
  v = cJSON_GetObjectItemCaseSensitive(p, "Regex");
  if (cJSON_IsString(v)) { *s = v->valuestring; *is_regex = 1; return 0; }
  return -1;
}

static int get_string(const cJSON *obj, const char *key, const char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!cJSON_IsString(v)) return -1;
  *out = v->valuestring;
  return 0;
}

static int one_char(const char *s, char out[5], size_t *len, uint32_t *cp) {
  size_t n = strlen(s);
  if (n == 0 || n > 4 || tok_utf8_valid_prefix(s, n) != n) return -1;
  uint32_t c;
  if ((size_t)tok_utf8_decode(s, n, &c) != n) return -1;
  memcpy(out, s, n);
  out[n] = 0;
  *len = n;
  if (cp) *cp = c;
  return 0;
}

/* prepend_scheme, or the older add_prefix_space boolean. */
static int get_prepend_scheme(const cJSON *obj, tok_prepend_scheme *out) {
  const cJSON *ps = cJSON_GetObjectItemCaseSensitive(obj, "prepend_scheme");
  const cJSON *aps = cJSON_GetObjectItemCaseSensitive(obj, "add_prefix_space");
  *out = TOK_PREPEND_ALWAYS;
  if (cJSON_IsString(ps)) {
    if (!strcmp(ps->valuestring, "always")) *out = TOK_PREPEND_ALWAYS;
    else if (!strcmp(ps->valuestring, "first")) *out = TOK_PREPEND_FIRST;
    else if (!strcmp(ps->valuestring, "never")) *out = TOK_PREPEND_NEVER;
    else return -1;
  } else if (ps && !cJSON_IsNull(ps)) {
    return -1;
  }
  if (cJSON_IsFalse(aps)) *out = TOK_PREPEND_NEVER;
  return 0;
}

static int parse_normalizer(twin_tokenizer *t, const cJSON *n, const char *path, twin_err *err) {
  if (!n || cJSON_IsNull(n)) return 0;
  const char *type = get_type(n);
  if (!cJSON_IsObject(n) || !type) return failf(err, TWIN_EFORMAT, t->name, "%s has no \"type\"", path);
  if (!strcmp(type, "Sequence")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (!cJSON_IsArray(list)) return failf(err, TWIN_EFORMAT, t->name, "%s.normalizers is not an array", path);
    size_t i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
      char sub[200];
      snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
      int rc = parse_normalizer(t, e, sub, err);
      if (rc) return rc;
    }
    return 0;
  }
  if (t->n_norms == TOK_MAX_STEPS) return failf(err, TWIN_EUNSUPPORTED, t->name, "%s: too many normalizers", path);
  /* counted at once, so that destroy frees what a failed parse allocated */
  tok_normalizer *nm = &t->norms[t->n_norms++];
  memset(nm, 0, sizeof *nm);
  if (!strcmp(type, "NFC")) nm->kind = TOK_NORM_NFC;
  else if (!strcmp(type, "NFD")) nm->kind = TOK_NORM_NFD;
  else if (!strcmp(type, "NFKC")) nm->kind = TOK_NORM_NFKC;
  else if (!strcmp(type, "NFKD")) nm->kind = TOK_NORM_NFKD;
  else if (!strcmp(type, "Lowercase")) nm->kind = TOK_NORM_LOWERCASE;
  else if (!strcmp(type, "Prepend")) {
    const char *s;
    if (get_string(n, "prepend", &s)) return failf(err, TWIN_EFORMAT, t->name, "%s.prepend is not a string", path);
    nm->kind = TOK_NORM_PREPEND;
    nm->text_len = strlen(s);
    if (!(nm->text = dup_bytes(s, nm->text_len))) return TWIN_ENOMEM;
  } else if (!strcmp(type, "Replace")) {
    const char *pat, *content;
    int is_regex;
    if (get_pattern(n, &pat, &is_regex))
      return failf(err, TWIN_EFORMAT, t->name, "%s.pattern is not {\"String\": ...} or {\"Regex\": ...}", path);
    if (get_string(n, "content", &content)) return failf(err, TWIN_EFORMAT, t->name, "%s.content is not a string", path);
    nm->kind = TOK_NORM_REPLACE;
    nm->content_len = strlen(content);
    if (!(nm->content = dup_bytes(content, nm->content_len))) return TWIN_ENOMEM;
    if (is_regex) {
      char what[300];
      snprintf(what, sizeof what, "%s: %s.pattern.Regex", t->name, path);
      int rc = tok_regex_compile(&nm->re, pat, strlen(pat), what, err);
      if (rc) return rc;
    } else {
      nm->text_len = strlen(pat);
      if (!(nm->text = dup_bytes(pat, nm->text_len))) return TWIN_ENOMEM;
    }
  } else if (!strcmp(type, "Strip")) {
    int rc;
    nm->kind = TOK_NORM_STRIP;
    if ((rc = get_bool(n, "strip_left", 1, &nm->strip_left, t->name, path, err)) ||
        (rc = get_bool(n, "strip_right", 1, &nm->strip_right, t->name, path, err)))
      return rc;
  } else {
    return failf(err, TWIN_EUNSUPPORTED, t->name, "%s.type \"%s\" is not a supported normalizer", path, type);
  }
  return 0;
}

static int parse_behavior(const char *s, tok_split_behavior *out) {
  static const struct { const char *name; tok_split_behavior b; } names[] = {
      {"Removed", TOK_SPLIT_REMOVED}, {"Isolated", TOK_SPLIT_ISOLATED},
      {"MergedWithPrevious", TOK_SPLIT_MERGED_WITH_PREVIOUS}, {"MergedWithNext", TOK_SPLIT_MERGED_WITH_NEXT},
      {"Contiguous", TOK_SPLIT_CONTIGUOUS}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(s, names[i].name)) { *out = names[i].b; return 0; }
  return -1;
}

static int parse_pretok(twin_tokenizer *t, const cJSON *n, const char *path, twin_err *err) {
  if (!n || cJSON_IsNull(n)) return 0;
  const char *type = get_type(n);
  if (!cJSON_IsObject(n) || !type) return failf(err, TWIN_EFORMAT, t->name, "%s has no \"type\"", path);
  if (!strcmp(type, "Sequence")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "pretokenizers");
    if (!cJSON_IsArray(list)) return failf(err, TWIN_EFORMAT, t->name, "%s.pretokenizers is not an array", path);
    size_t i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
      char sub[200];
      snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
      int rc = parse_pretok(t, e, sub, err);
      if (rc) return rc;
    }
    return 0;
  }
  if (t->n_pretoks == TOK_MAX_STEPS) return failf(err, TWIN_EUNSUPPORTED, t->name, "%s: too many pre-tokenizers", path);
  tok_pretok *p = &t->pretoks[t->n_pretoks++];
  memset(p, 0, sizeof *p);
  int rc;
  char what[300];
  if (!strcmp(type, "ByteLevel")) {
    p->kind = TOK_PRE_BYTELEVEL;
    if ((rc = get_bool(n, "add_prefix_space", 1, &p->add_prefix_space, t->name, path, err)) ||
        (rc = get_bool(n, "use_regex", 1, &p->use_regex, t->name, path, err)))
      return rc;
    if (p->use_regex) {
      snprintf(what, sizeof what, "%s: %s (GPT-2 regex)", t->name, path);
      if ((rc = tok_regex_compile(&p->re, GPT2_SPLIT_REGEX, strlen(GPT2_SPLIT_REGEX), what, err))) return rc;
    }
  } else if (!strcmp(type, "Split")) {
    const char *pat, *behavior;
    int is_regex;
    p->kind = TOK_PRE_SPLIT;
    if (get_pattern(n, &pat, &is_regex))
      return failf(err, TWIN_EFORMAT, t->name, "%s.pattern is not {\"String\": ...} or {\"Regex\": ...}", path);
    if (get_string(n, "behavior", &behavior) || parse_behavior(behavior, &p->behavior))
      return failf(err, TWIN_EFORMAT, t->name, "%s.behavior is missing or unknown", path);
    if ((rc = get_bool(n, "invert", 0, &p->invert, t->name, path, err))) return rc;
    if (is_regex) {
      snprintf(what, sizeof what, "%s: %s.pattern.Regex", t->name, path);
      if ((rc = tok_regex_compile(&p->re, pat, strlen(pat), what, err))) return rc;
    } else {
      p->literal_len = strlen(pat);
      if (!(p->literal = dup_bytes(pat, p->literal_len))) return TWIN_ENOMEM;
    }
  } else if (!strcmp(type, "Metaspace")) {
    const char *rep;
    p->kind = TOK_PRE_METASPACE;
    if (get_string(n, "replacement", &rep) || one_char(rep, p->replacement, &p->replacement_len, NULL))
      return failf(err, TWIN_EFORMAT, t->name, "%s.replacement is not one character", path);
    if (get_prepend_scheme(n, &p->prepend_scheme))
      return failf(err, TWIN_EFORMAT, t->name, "%s.prepend_scheme is not always|first|never", path);
    if ((rc = get_bool(n, "split", 1, &p->split, t->name, path, err))) return rc;
  } else if (!strcmp(type, "Digits")) {
    p->kind = TOK_PRE_DIGITS;
    if ((rc = get_bool(n, "individual_digits", 0, &p->individual_digits, t->name, path, err))) return rc;
  } else {
    return failf(err, TWIN_EUNSUPPORTED, t->name, "%s.type \"%s\" is not a supported pre-tokenizer", path, type);
  }
  return 0;
}

static int parse_decoder(twin_tokenizer *t, const cJSON *n, const char *path, int *fused, twin_err *err) {
  const char *type = get_type(n);
  if (!cJSON_IsObject(n) || !type) return failf(err, TWIN_EFORMAT, t->name, "%s has no \"type\"", path);
  if (!strcmp(type, "Sequence")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "decoders");
    if (!cJSON_IsArray(list)) return failf(err, TWIN_EFORMAT, t->name, "%s.decoders is not an array", path);
    size_t i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
      char sub[200];
      snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
      int rc = parse_decoder(t, e, sub, fused, err);
      if (rc) return rc;
    }
    return 0;
  }
  if (t->n_decoders == TOK_MAX_STEPS) return failf(err, TWIN_EUNSUPPORTED, t->name, "%s: too many decoders", path);
  tok_decoder *d = &t->decoders[t->n_decoders++];
  memset(d, 0, sizeof *d);
  if (!strcmp(type, "ByteLevel")) {
    d->kind = TOK_DEC_BYTELEVEL;
  } else if (!strcmp(type, "ByteFallback")) {
    d->kind = TOK_DEC_BYTEFALLBACK;
  } else if (!strcmp(type, "Fuse")) {
    d->kind = TOK_DEC_FUSE;
    *fused = 1;
  } else if (!strcmp(type, "Metaspace")) {
    const char *rep;
    d->kind = TOK_DEC_METASPACE;
    if (get_string(n, "replacement", &rep) || one_char(rep, d->replacement, &d->replacement_len, NULL))
      return failf(err, TWIN_EFORMAT, t->name, "%s.replacement is not one character", path);
    if (get_prepend_scheme(n, &d->prepend_scheme))
      return failf(err, TWIN_EFORMAT, t->name, "%s.prepend_scheme is not always|first|never", path);
  } else if (!strcmp(type, "Replace")) {
    const char *pat, *content;
    int is_regex;
    d->kind = TOK_DEC_REPLACE;
    if (get_pattern(n, &pat, &is_regex))
      return failf(err, TWIN_EFORMAT, t->name, "%s.pattern is not {\"String\": ...}", path);
    if (is_regex) return failf(err, TWIN_EUNSUPPORTED, t->name, "%s: a Regex pattern in a decoder is not supported", path);
    if (get_string(n, "content", &content)) return failf(err, TWIN_EFORMAT, t->name, "%s.content is not a string", path);
    d->pattern_len = strlen(pat);
    d->content_len = strlen(content);
    if (!(d->pattern = dup_bytes(pat, d->pattern_len)) || !(d->content = dup_bytes(content, d->content_len)))
      return TWIN_ENOMEM;
  } else if (!strcmp(type, "Strip")) {
    const char *c;
    long start, stop;
    d->kind = TOK_DEC_STRIP;
    if (get_string(n, "content", &c) || one_char(c, d->strip_utf8, &d->strip_utf8_len, &d->strip_char))
      return failf(err, TWIN_EFORMAT, t->name, "%s.content is not one character", path);
    if (get_int(cJSON_GetObjectItemCaseSensitive(n, "start"), 1 << 20, &start) ||
        get_int(cJSON_GetObjectItemCaseSensitive(n, "stop"), 1 << 20, &stop))
      return failf(err, TWIN_EFORMAT, t->name, "%s.start/.stop are not counts", path);
    d->strip_start = (int)start;
    d->strip_stop = (int)stop;
    /* Stripping the end of the whole text cannot be done one token at a time. */
    if (*fused && stop > 0)
      return failf(err, TWIN_EUNSUPPORTED, t->name, "%s: Strip with stop > 0 after Fuse is not supported", path);
  } else {
    return failf(err, TWIN_EUNSUPPORTED, t->name, "%s.type \"%s\" is not a supported decoder", path, type);
  }
  return 0;
}

/* ============================================================================================
 * Loading tokenizer.json: post-processor (what add_special puts around a sequence)
 * ========================================================================================== */

static int add_special_ids(twin_tokenizer *t, int32_t *dst, int *n, const int32_t *ids, size_t count,
                           const char *path, twin_err *err) {
  if (*n + count > 8) return failf(err, TWIN_EUNSUPPORTED, t->name, "%s: more than 8 special ids", path);
  for (size_t i = 0; i < count; i++) {
    if (ids[i] < 0 || ids[i] >= t->vocab_size)
      return failf(err, TWIN_EFORMAT, t->name, "%s: id %d is out of range", path, (int)ids[i]);
    dst[(*n)++] = ids[i];
  }
  return 0;
}

static int parse_template(twin_tokenizer *t, const cJSON *n, const char *path, twin_err *err) {
  const cJSON *single = cJSON_GetObjectItemCaseSensitive(n, "single");
  const cJSON *specials = cJSON_GetObjectItemCaseSensitive(n, "special_tokens");
  if (!cJSON_IsArray(single)) return failf(err, TWIN_EFORMAT, t->name, "%s.single is not an array", path);
  int seen_sequence = 0;
  size_t i = 0;
  for (const cJSON *e = single->child; e; e = e->next, i++) {
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
    if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) {
      seen_sequence = 1;
      continue;
    }
    const char *name;
    if (!cJSON_IsObject(st) || get_string(st, "id", &name))
      return failf(err, TWIN_EFORMAT, t->name, "%s.single[%zu] is neither SpecialToken nor Sequence", path, i);
    const cJSON *spec = cJSON_IsObject(specials) ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
    const cJSON *ids = spec ? cJSON_GetObjectItemCaseSensitive(spec, "ids") : NULL;
    if (!cJSON_IsArray(ids))
      return failf(err, TWIN_EFORMAT, t->name, "%s.special_tokens[\"%s\"].ids is missing", path, name);
    int32_t buf[8];
    size_t count = 0;
    for (const cJSON *x = ids->child; x; x = x->next) {
      long id;
      if (count == 8 || get_int(x, 0x7ffffffe, &id))
        return failf(err, TWIN_EFORMAT, t->name, "%s.special_tokens[\"%s\"].ids is not a short list of ids", path, name);
      buf[count++] = (int32_t)id;
    }
    char sub[200];
    snprintf(sub, sizeof sub, "%s.single[%zu]", path, i);
    int rc = seen_sequence ? add_special_ids(t, t->suffix_ids, &t->n_suffix, buf, count, sub, err)
                           : add_special_ids(t, t->prefix_ids, &t->n_prefix, buf, count, sub, err);
    if (rc) return rc;
  }
  return 0;
}

/* BertProcessing / RobertaProcessing: {"cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}. */
static int parse_cls_sep(twin_tokenizer *t, const cJSON *n, const char *path, twin_err *err) {
  const char *keys[2] = {"cls", "sep"};
  for (int k = 0; k < 2; k++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(n, keys[k]);
    long id;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || get_int(cJSON_GetArrayItem(v, 1), 0x7ffffffe, &id))
      return failf(err, TWIN_EFORMAT, t->name, "%s.%s is not [token, id]", path, keys[k]);
    int32_t id32 = (int32_t)id;
    int rc = k == 0 ? add_special_ids(t, t->prefix_ids, &t->n_prefix, &id32, 1, path, err)
                    : add_special_ids(t, t->suffix_ids, &t->n_suffix, &id32, 1, path, err);
    if (rc) return rc;
  }
  return 0;
}

static int parse_post(twin_tokenizer *t, const cJSON *n, const char *path, twin_err *err) {
  if (!n || cJSON_IsNull(n)) return 0;
  const char *type = get_type(n);
  if (!cJSON_IsObject(n) || !type) return failf(err, TWIN_EFORMAT, t->name, "%s has no \"type\"", path);
  if (!strcmp(type, "Sequence")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "processors");
    if (!cJSON_IsArray(list)) return failf(err, TWIN_EFORMAT, t->name, "%s.processors is not an array", path);
    size_t i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
      char sub[200];
      snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
      int rc = parse_post(t, e, sub, err);
      if (rc) return rc;
    }
    return 0;
  }
  if (!strcmp(type, "ByteLevel")) return 0; /* only adjusts offsets */
  if (!strcmp(type, "TemplateProcessing")) return parse_template(t, n, path, err);
  if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) return parse_cls_sep(t, n, path, err);
  return failf(err, TWIN_EUNSUPPORTED, t->name, "%s.type \"%s\" is not a supported post-processor", path, type);
}

/* ============================================================================================
 * Loading tokenizer_config.json
 * ========================================================================================== */

/* bos_token / eos_token: "<s>", {"content": "<s>", ...} or null. */
static int config_token(twin_tokenizer *t, const cJSON *cfg, const char *key, const char *name,
                        int32_t *id, twin_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  if (!v || cJSON_IsNull(v)) return 0;
  const char *s = NULL;
  if (cJSON_IsString(v)) s = v->valuestring;
  else if (cJSON_IsObject(v)) get_string(v, "content", &s);
  if (!s) return failf(err, TWIN_EFORMAT, name, "%s is neither a string nor {\"content\": ...}", key);
  *id = twin_tokenizer_token_to_id(t, s);
  if (*id < 0) return failf(err, TWIN_EFORMAT, name, "%s \"%s\" is not in the vocabulary", key, s);
  return 0;
}

static int parse_config(twin_tokenizer *t, const char *text, size_t len, const char *name, twin_err *err) {
  cJSON *cfg;
  int rc = parse_json(text, len, name, &cfg, err);
  if (rc) return rc;
  int add_bos = -1, add_eos = -1;
  const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
  const cJSON *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
  if (ab && !cJSON_IsNull(ab) && !cJSON_IsBool(ab)) rc = failf(err, TWIN_EFORMAT, name, "add_bos_token is not a boolean");
  else if (ae && !cJSON_IsNull(ae) && !cJSON_IsBool(ae)) rc = failf(err, TWIN_EFORMAT, name, "add_eos_token is not a boolean");
  if (!rc) {
    if (cJSON_IsBool(ab)) add_bos = cJSON_IsTrue(ab);
    if (cJSON_IsBool(ae)) add_eos = cJSON_IsTrue(ae);
    rc = config_token(t, cfg, "bos_token", name, &t->bos_id, err);
  }
  if (!rc) rc = config_token(t, cfg, "eos_token", name, &t->eos_id, err);
  /* Explicit flags decide what add_special adds, as the Hugging Face tokenizer classes do;
   * without them the post_processor of tokenizer.json stands. */
  if (!rc && (add_bos >= 0 || add_eos >= 0)) {
    if (add_bos > 0 && t->bos_id < 0) rc = failf(err, TWIN_EFORMAT, name, "add_bos_token is true but there is no bos_token");
    else if (add_eos > 0 && t->eos_id < 0) rc = failf(err, TWIN_EFORMAT, name, "add_eos_token is true but there is no eos_token");
    if (!rc && add_bos >= 0) {
      t->n_prefix = 0;
      if (add_bos) t->prefix_ids[t->n_prefix++] = t->bos_id;
    }
    if (!rc && add_eos >= 0) {
      t->n_suffix = 0;
      if (add_eos) t->suffix_ids[t->n_suffix++] = t->eos_id;
    }
  }
  cJSON_Delete(cfg);
  return rc;
}

/* ============================================================================================
 * Loading: entry points
 * ========================================================================================== */

static int load_json(twin_tokenizer *t, const char *json, size_t len, twin_err *err) {
  cJSON *root;
  int rc = parse_json(json, len, t->name, &root, err);
  if (rc) return rc;
  long max_id = -1;
  int fused = 0;
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
  if ((rc = parse_model(t, root, &max_id, err))) goto done;
  if ((rc = parse_added(t, root, err))) goto done;
  if ((rc = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer", err))) goto done;
  if ((rc = parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer", err))) goto done;
  t->has_decoder = dec && !cJSON_IsNull(dec);
  if (t->has_decoder && (rc = parse_decoder(t, dec, "decoder", &fused, err))) goto done;
  if ((rc = parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "post_processor", err))) goto done;
  if ((rc = build_added_tries(t, err))) goto done;
  if (t->n_prefix == 1) t->bos_id = t->prefix_ids[0];
  set_kind(t);
done:
  cJSON_Delete(root);
  if (rc == TWIN_ENOMEM && (!err || err->code != TWIN_ENOMEM)) failf(err, TWIN_ENOMEM, t->name, "out of memory");
  return rc;
}

int twin_tokenizer_load_json(twin_tokenizer **out, const char *tokenizer_json, size_t len,
                             const char *config_json, size_t config_len, const char *name,
                             twin_err *err) {
  *out = NULL;
  if (!tokenizer_json) return twin_err_set(err, TWIN_EINVAL, "tokenizer: no tokenizer.json text");
  twin_tokenizer *t = tokenizer_new(name ? name : "tokenizer.json");
  if (!t) return twin_err_set(err, TWIN_ENOMEM, "tokenizer: out of memory");
  int rc = load_json(t, tokenizer_json, len, err);
  if (!rc && config_json) rc = parse_config(t, config_json, config_len, "tokenizer_config.json", err);
  if (rc) {
    twin_tokenizer_destroy(t);
    return rc;
  }
  *out = t;
  return 0;
}

int twin_tokenizer_load_files(twin_tokenizer **out, const char *tokenizer_json_path,
                              const char *config_path, twin_err *err) {
  *out = NULL;
  char *json = NULL, *cfg = NULL;
  size_t len = 0, cfg_len = 0;
  int rc = read_file(tokenizer_json_path, &json, &len, err);
  if (rc) return rc;
  twin_tokenizer *t = tokenizer_new(tokenizer_json_path);
  if (!t) {
    free(json);
    return twin_err_set(err, TWIN_ENOMEM, "tokenizer: out of memory");
  }
  rc = load_json(t, json, len, err);
  free(json);
  if (!rc && config_path) {
    rc = read_file(config_path, &cfg, &cfg_len, err);
    if (!rc) rc = parse_config(t, cfg, cfg_len, config_path, err);
    free(cfg);
  }
  if (rc) {
    twin_tokenizer_destroy(t);
    return rc;
  }
  *out = t;
  return 0;
}

int twin_tokenizer_load_dir(twin_tokenizer **out, const char *dir, twin_err *err) {
  *out = NULL;
  if (!dir) return twin_err_set(err, TWIN_EINVAL, "tokenizer: no directory");
  char json_path[4096], cfg_path[4096];
  snprintf(json_path, sizeof json_path, "%s/tokenizer.json", dir);
  snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
  FILE *f = fopen(cfg_path, "rb");
  int have_cfg = f != NULL;
  if (f) fclose(f);
  return twin_tokenizer_load_files(out, json_path, have_cfg ? cfg_path : NULL, err);
}

/* ============================================================================================
 * Building from an in-memory vocabulary (GGUF metadata)
 * ========================================================================================== */

typedef struct merge_candidate {
  float score;
  int32_t left, right, merged;
} merge_candidate;

static int cmp_candidate(const void *a, const void *b) {
  const merge_candidate *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  if (x->left != y->left) return x->left < y->left ? -1 : 1;
  return x->right < y->right ? -1 : x->right > y->right;
}

static int32_t token_type(const twin_tokenizer_vocab_spec *spec, size_t i) {
  return spec->token_types ? spec->token_types[i] : TWIN_TOKEN_TYPE_NORMAL;
}

/* SentencePiece BPE vocabularies come without merges: every way to cut a normal token into two
 * normal tokens is a merge, ranked by the whole token's score (best first). */
static int merges_from_scores(twin_tokenizer *t, const twin_tokenizer_vocab_spec *spec, twin_err *err) {
  if (!spec->scores)
    return failf(err, TWIN_EINVAL, t->name, "neither merges nor scores: cannot rank merges");
  size_t n = 0, cap = 1024;
  merge_candidate *c = malloc(cap * sizeof *c);
  if (!c) return TWIN_ENOMEM;
  for (size_t id = 0; id < spec->n_tokens; id++) {
    if (token_type(spec, id) != TWIN_TOKEN_TYPE_NORMAL) continue;
    const char *s = spec->tokens[id];
    size_t len = strlen(s);
    for (size_t k = (size_t)tok_utf8_len((unsigned char)s[0]); k < len; k += (size_t)tok_utf8_len((unsigned char)s[k])) {
      int32_t l = tok_strmap_get(&t->vocab, t->strings.data, s, k);
      int32_t r = tok_strmap_get(&t->vocab, t->strings.data, s + k, len - k);
      if (l < 0 || r < 0 || token_type(spec, (size_t)l) != TWIN_TOKEN_TYPE_NORMAL ||
          token_type(spec, (size_t)r) != TWIN_TOKEN_TYPE_NORMAL)
        continue;
      if (n == cap) {
        merge_candidate *bigger = realloc(c, 2 * cap * sizeof *c);
        if (!bigger) { free(c); return TWIN_ENOMEM; }
        c = bigger;
        cap *= 2;
      }
      c[n++] = (merge_candidate){spec->scores[id], l, r, (int32_t)id};
    }
  }
  qsort(c, n, sizeof *c, cmp_candidate);
  int rc = tok_pairmap_init(&t->merges, n);
  for (size_t i = 0; i < n && !rc; i++) rc = tok_pairmap_put(&t->merges, c[i].left, c[i].right, (int32_t)i, c[i].merged, 1);
  free(c);
  return rc;
}

static int add_step_text(char **dst, size_t *len, const char *s) {
  *len = strlen(s);
  return (*dst = dup_bytes(s, *len)) ? 0 : TWIN_ENOMEM;
}

/* The normalizers / pre-tokenizers / decoders that the Hugging Face files of each family use. */
static int vocab_pipeline(twin_tokenizer *t, const twin_tokenizer_vocab_spec *spec, twin_err *err) {
  static const char space_marker[] = "\xE2\x96\x81";
  int rc = 0;
  if (spec->kind == TWIN_TOKENIZER_SP_BPE) {
    if (spec->add_space_prefix) {
      tok_normalizer *pre = &t->norms[t->n_norms++];
      *pre = (tok_normalizer){.kind = TOK_NORM_PREPEND};
      if ((rc = add_step_text(&pre->text, &pre->text_len, space_marker))) return rc;
    }
    tok_normalizer *rep = &t->norms[t->n_norms++];
    *rep = (tok_normalizer){.kind = TOK_NORM_REPLACE};
    if ((rc = add_step_text(&rep->text, &rep->text_len, " ")) || (rc = add_step_text(&rep->content, &rep->content_len, space_marker)))
      return rc;
    tok_decoder *d = &t->decoders[t->n_decoders++];
    *d = (tok_decoder){.kind = TOK_DEC_REPLACE};
    if ((rc = add_step_text(&d->pattern, &d->pattern_len, space_marker)) || (rc = add_step_text(&d->content, &d->content_len, " ")))
      return rc;
    t->decoders[t->n_decoders++] = (tok_decoder){.kind = TOK_DEC_BYTEFALLBACK};
    t->decoders[t->n_decoders++] = (tok_decoder){.kind = TOK_DEC_FUSE};
    if (spec->add_space_prefix)
      t->decoders[t->n_decoders++] = (tok_decoder){.kind = TOK_DEC_STRIP, .strip_char = ' ', .strip_utf8 = " ",
                                                   .strip_utf8_len = 1, .strip_start = 1};
    return 0;
  }
  if (spec->kind != TWIN_TOKENIZER_BYTE_BPE) return failf(err, TWIN_EINVAL, t->name, "unknown kind %d", (int)spec->kind);
  char what[300];
  if (spec->split_regex) {
    tok_pretok *p = &t->pretoks[t->n_pretoks++];
    *p = (tok_pretok){.kind = TOK_PRE_SPLIT, .behavior = TOK_SPLIT_ISOLATED};
    snprintf(what, sizeof what, "%s: split_regex", t->name);
    if ((rc = tok_regex_compile(&p->re, spec->split_regex, strlen(spec->split_regex), what, err))) return rc;
  }
  tok_pretok *bl = &t->pretoks[t->n_pretoks++];
  *bl = (tok_pretok){.kind = TOK_PRE_BYTELEVEL, .use_regex = spec->split_regex == NULL};
  if (bl->use_regex) {
    snprintf(what, sizeof what, "%s: GPT-2 regex", t->name);
    if ((rc = tok_regex_compile(&bl->re, GPT2_SPLIT_REGEX, strlen(GPT2_SPLIT_REGEX), what, err))) return rc;
  }
  t->decoders[t->n_decoders++] = (tok_decoder){.kind = TOK_DEC_BYTELEVEL};
  return 0;
}

static int build_from_vocab(twin_tokenizer *t, const twin_tokenizer_vocab_spec *spec, twin_err *err) {
  if (!spec->tokens || spec->n_tokens == 0 || spec->n_tokens > 16 * 1024 * 1024)
    return failf(err, TWIN_EINVAL, t->name, "no tokens (or too many)");
  if (alloc_ids(t, (long)spec->n_tokens)) return TWIN_ENOMEM;
  size_t n_added = 0;
  for (size_t i = 0; i < spec->n_tokens; i++) {
    const char *s = spec->tokens[i];
    if (!s || !s[0]) return failf(err, TWIN_EINVAL, t->name, "tokens[%zu] is empty", i);
    if (add_vocab_token(t, s, strlen(s), (int32_t)i)) return TWIN_ENOMEM;
    int32_t type = token_type(spec, i);
    if (type < TWIN_TOKEN_TYPE_NORMAL || type > TWIN_TOKEN_TYPE_BYTE)
      return failf(err, TWIN_EINVAL, t->name, "token_types[%zu] = %d is not a token type", i, (int)type);
    if (type == TWIN_TOKEN_TYPE_CONTROL || type == TWIN_TOKEN_TYPE_USER_DEFINED || type == TWIN_TOKEN_TYPE_UNKNOWN)
      n_added++;
  }
  /* control / unknown tokens are special added tokens, user-defined ones plain added tokens */
  if (n_added && !(t->added = calloc(n_added, sizeof *t->added))) return TWIN_ENOMEM;
  for (size_t i = 0; i < spec->n_tokens; i++) {
    int32_t type = token_type(spec, i);
    if (type != TWIN_TOKEN_TYPE_CONTROL && type != TWIN_TOKEN_TYPE_USER_DEFINED && type != TWIN_TOKEN_TYPE_UNKNOWN) continue;
    tok_added *a = &t->added[t->n_added++];
    a->id = (int32_t)i;
    a->len = strlen(spec->tokens[i]);
    a->special = type != TWIN_TOKEN_TYPE_USER_DEFINED;
    if (!(a->content = dup_bytes(spec->tokens[i], a->len))) return TWIN_ENOMEM;
    t->id_flags[i] |= TOK_ID_ADDED | (a->special ? TOK_ID_SPECIAL : 0);
    if (tok_strmap_put(&t->added_lookup, t->strings.data, t->piece_off[i], (uint32_t)a->len, a->id)) return TWIN_ENOMEM;
  }
  int rc;
  if (spec->merges) {
    tok_buf scratch = {0};
    if (tok_pairmap_init(&t->merges, spec->n_merges)) return TWIN_ENOMEM;
    rc = 0;
    for (size_t i = 0; i < spec->n_merges && !rc; i++) {
      char path[48];
      snprintf(path, sizeof path, "merges[%zu]", i);
      const char *m = spec->merges[i];
      const char *sp = m ? strchr(m, ' ') : NULL;
      if (!sp) rc = failf(err, TWIN_EINVAL, t->name, "%s is not \"left right\"", path);
      else rc = add_merge(t, m, (size_t)(sp - m), sp + 1, strlen(sp + 1), (int32_t)i, 0, &scratch, path, err);
    }
    tok_buf_free(&scratch);
    if (rc) return rc;
  } else if (spec->kind == TWIN_TOKENIZER_SP_BPE) {
    if ((rc = merges_from_scores(t, spec, err))) return rc;
  } else {
    return failf(err, TWIN_EINVAL, t->name, "a byte-level vocabulary needs its merges");
  }
  if (spec->kind == TWIN_TOKENIZER_SP_BPE) {
    find_byte_tokens(t);
    for (int b = 0; b < 256; b++) t->byte_fallback |= t->byte_ids[b] >= 0;
    t->fuse_unk = 1;
  }
  int32_t ids[3] = {spec->bos_id, spec->eos_id, spec->unk_id};
  for (int k = 0; k < 3; k++)
    if (ids[k] >= (int32_t)spec->n_tokens || ids[k] < -1)
      return failf(err, TWIN_EINVAL, t->name, "%s id %d is out of range", k == 0 ? "bos" : k == 1 ? "eos" : "unk", (int)ids[k]);
  t->bos_id = spec->bos_id;
  t->eos_id = spec->eos_id;
  t->unk_id = spec->unk_id;
  if (spec->add_bos && t->bos_id >= 0) t->prefix_ids[t->n_prefix++] = t->bos_id;
  if (spec->add_eos && t->eos_id >= 0) t->suffix_ids[t->n_suffix++] = t->eos_id;
  if ((rc = vocab_pipeline(t, spec, err))) return rc;
  if ((rc = build_added_tries(t, err))) return rc;
  set_kind(t);
  t->kind = spec->kind;
  return 0;
}

int twin_tokenizer_create_from_vocab(twin_tokenizer **out, const twin_tokenizer_vocab_spec *spec,
                                     twin_err *err) {
  *out = NULL;
  if (!spec) return twin_err_set(err, TWIN_EINVAL, "tokenizer: no vocabulary");
  twin_tokenizer *t = tokenizer_new("vocabulary");
  if (!t) return twin_err_set(err, TWIN_ENOMEM, "tokenizer: out of memory");
  int rc = build_from_vocab(t, spec, err);
  if (rc) {
    if (rc == TWIN_ENOMEM) failf(err, TWIN_ENOMEM, t->name, "out of memory");
    twin_tokenizer_destroy(t);
    return rc;
  }
  *out = t;
  return 0;
}
