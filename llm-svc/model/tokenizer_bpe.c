/* llm-svc/model/tokenizer_bpe.c — the BPE model: one pre-token (a word) -> token ids.
 * The word starts as one symbol per character (byte fallback <0xNN> or the unknown token for
 * characters not in the vocabulary), then the best-ranked adjacent pair is merged until no
 * pair has a merge. Symbols form a linked list and candidate merges sit in a binary heap
 * ordered by (rank, position), with stale entries dropped when popped: O(n log n) per word,
 * with the same tie-breaking as the Python package, so long words cost no quadratic time.
 * Words are cached per encode call. */
#include <stdlib.h>
#include <string.h>

#include "llm-svc/model/tokenizer_internal.h"

/* Words longer than this are not cached (the Python package uses the same bound). */
#define TOK_CACHE_MAX_WORD 256

/* ============================================================================================
 * Heap of candidate merges
 * ========================================================================================== */

static inline int merge_less(const tok_merge_entry *a, const tok_merge_entry *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(tok_merge_entry *heap, size_t *n, tok_merge_entry e) {
  size_t i = (*n)++;
  heap[i] = e;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!merge_less(&heap[i], &heap[parent])) break;
    tok_merge_entry tmp = heap[i];
    heap[i] = heap[parent];
    heap[parent] = tmp;
    i = parent;
  }
}

static tok_merge_entry heap_pop(tok_merge_entry *heap, size_t *n) {
  tok_merge_entry top = heap[0];
  heap[0] = heap[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, best = i;
    if (l < *n && merge_less(&heap[l], &heap[best])) best = l;
    if (r < *n && merge_less(&heap[r], &heap[best])) best = r;
    if (best == i) break;
    tok_merge_entry tmp = heap[i];
    heap[i] = heap[best];
    heap[best] = tmp;
    i = best;
  }
  return top;
}

/* ============================================================================================
 * One word
 * ========================================================================================== */

static int ensure_symbols(tok_encode_ctx *ctx, size_t n) {
  if (n <= ctx->symbols_cap) return 0;
  size_t cap = ctx->symbols_cap ? ctx->symbols_cap : 64;
  while (cap < n) cap *= 2;
  tok_symbol *s = realloc(ctx->symbols, cap * sizeof *s);
  if (!s) return TWIN_ENOMEM;
  ctx->symbols = s;
  ctx->symbols_cap = cap;
  return 0;
}

/* Heap entries: at most one initial per adjacent pair plus two per merge, so 3n bounds it. */
static int ensure_heap(tok_encode_ctx *ctx, size_t n) {
  if (n <= ctx->heap_cap) return 0;
  size_t cap = ctx->heap_cap ? ctx->heap_cap : 192;
  while (cap < n) cap *= 2;
  tok_merge_entry *h = realloc(ctx->heap, cap * sizeof *h);
  if (!h) return TWIN_ENOMEM;
  ctx->heap = h;
  ctx->heap_cap = cap;
  return 0;
}

static int32_t lookup_char(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *c, size_t len,
                           int is_first, int is_last) {
  if ((is_first || !t->subword_prefix) && (!is_last || !t->word_suffix))
    return tok_strmap_get(&t->vocab, t->strings.data, c, len);
  ctx->word.len = 0;
  if (!is_first && t->subword_prefix) tok_buf_append(&ctx->word, t->subword_prefix, t->subword_prefix_len);
  tok_buf_append(&ctx->word, c, len);
  if (is_last && t->word_suffix) tok_buf_append(&ctx->word, t->word_suffix, t->word_suffix_len);
  if (!ctx->word.data) return -1;
  return tok_strmap_get(&t->vocab, t->strings.data, ctx->word.data, ctx->word.len);
}

static size_t add_symbol(tok_encode_ctx *ctx, size_t n, int32_t id, int32_t len) {
  ctx->symbols[n] = (tok_symbol){.id = id, .prev = (int32_t)n - 1, .next = (int32_t)n + 1, .len = len};
  return n + 1;
}

/* Merges s[0..n) into ids appended to ctx->out. */
static int merge_word(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *s, size_t n,
                      twin_err *err) {
  /* Each character yields at most 4 byte-fallback symbols. */
  if (ensure_symbols(ctx, 4 * n + 4)) return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
  size_t n_sym = 0;
  int32_t unk_id = -1, unk_len = 0; /* pending unknown symbol */
  for (size_t i = 0; i < n;) {
    int clen = tok_utf8_len((unsigned char)s[i]);
    if (i + (size_t)clen > n) clen = (int)(n - i);
    int is_first = i == 0, is_last = i + (size_t)clen == n;
    int32_t id = lookup_char(t, ctx, s + i, (size_t)clen, is_first, is_last);
    if (id >= 0) {
      if (unk_id >= 0) {
        n_sym = add_symbol(ctx, n_sym, unk_id, unk_len);
        unk_id = -1;
      }
      n_sym = add_symbol(ctx, n_sym, id, clen);
    } else {
      int done = 0;
      if (t->byte_fallback) {
        /* The character as looked up (with prefix/suffix) goes to bytes, all or nothing. */
        const char *bytes = s + i;
        size_t nbytes = (size_t)clen;
        if ((!is_first && t->subword_prefix) || (is_last && t->word_suffix)) {
          bytes = ctx->word.data;
          nbytes = ctx->word.len;
          if (ensure_symbols(ctx, n_sym + nbytes + 4 * (n - i) + 4))
            return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
        }
        size_t k = 0;
        while (k < nbytes && t->byte_ids[(unsigned char)bytes[k]] >= 0) k++;
        if (k == nbytes) {
          for (k = 0; k < nbytes; k++) n_sym = add_symbol(ctx, n_sym, t->byte_ids[(unsigned char)bytes[k]], 1);
          done = 1;
        }
      }
      if (!done && t->unk_id >= 0) {
        if (unk_id >= 0 && t->fuse_unk) {
          unk_len += clen;
        } else {
          if (unk_id >= 0) n_sym = add_symbol(ctx, n_sym, unk_id, unk_len);
          unk_id = t->unk_id;
          unk_len = clen;
        }
      }
      /* No byte fallback and no unknown token: the character is dropped (as in the Python
       * package). */
    }
    i += (size_t)clen;
  }
  if (unk_id >= 0) n_sym = add_symbol(ctx, n_sym, unk_id, unk_len);
  if (n_sym == 0) return 0;
  ctx->symbols[n_sym - 1].next = -1;
  ctx->symbols[0].prev = -1;

  tok_symbol *sym = ctx->symbols;
  if (ensure_heap(ctx, 3 * n_sym + 4)) return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
  tok_merge_entry *heap = ctx->heap;
  size_t n_heap = 0;
  int32_t rank, merged;
  for (size_t i = 0; i + 1 < n_sym; i++)
    if (tok_pairmap_get(&t->merges, sym[i].id, sym[i + 1].id, &rank, &merged))
      heap_push(heap, &n_heap, (tok_merge_entry){.rank = rank, .pos = (int32_t)i, .merged = merged});

  while (n_heap > 0) {
    tok_merge_entry top = heap_pop(heap, &n_heap);
    tok_symbol *cur = &sym[top.pos];
    if (cur->len == 0 || cur->next < 0) continue;
    int32_t next_pos = cur->next;
    tok_symbol right = sym[next_pos];
    /* A stale entry: the pair at this position is no longer the one it was pushed for. */
    if (!tok_pairmap_get(&t->merges, cur->id, right.id, &rank, &merged) || merged != top.merged)
      continue;
    cur->id = top.merged;
    cur->len += right.len;
    cur->next = right.next;
    sym[next_pos].len = 0;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (cur->prev >= 0 && tok_pairmap_get(&t->merges, sym[cur->prev].id, cur->id, &rank, &merged))
      heap_push(heap, &n_heap, (tok_merge_entry){.rank = rank, .pos = cur->prev, .merged = merged});
    if (cur->next >= 0 && tok_pairmap_get(&t->merges, cur->id, sym[cur->next].id, &rank, &merged))
      heap_push(heap, &n_heap, (tok_merge_entry){.rank = rank, .pos = top.pos, .merged = merged});
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next)
    if (tok_ids_push(ctx->out, sym[i].id)) return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
  return 0;
}

/* ============================================================================================
 * Entry point with the per-call word cache
 * ========================================================================================== */

static int cache_insert(tok_encode_ctx *ctx, const char *s, size_t n, size_t ids_from) {
  if (ctx->cache_n == ctx->cache_cap) {
    size_t cap = ctx->cache_cap ? ctx->cache_cap * 2 : 256;
    uint32_t *spans = realloc(ctx->cache_spans, 2 * cap * sizeof *spans);
    if (!spans) return TWIN_ENOMEM;
    ctx->cache_spans = spans;
    ctx->cache_cap = cap;
  }
  size_t count = ctx->out->len - ids_from;
  size_t ids_off = ctx->cache_ids.len;
  if (tok_ids_append(&ctx->cache_ids, ctx->out->data + ids_from, count)) return TWIN_ENOMEM;
  size_t key_off = ctx->cache_keys.len;
  if (tok_buf_append(&ctx->cache_keys, s, n)) return TWIN_ENOMEM;
  ctx->cache_spans[2 * ctx->cache_n] = (uint32_t)ids_off;
  ctx->cache_spans[2 * ctx->cache_n + 1] = (uint32_t)count;
  if (tok_strmap_put(&ctx->cache, ctx->cache_keys.data, (uint32_t)key_off, (uint32_t)n,
                     (int32_t)ctx->cache_n))
    return TWIN_ENOMEM;
  ctx->cache_n++;
  return 0;
}

static int bpe_piece(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *s, size_t n,
                     twin_err *err) {
  if (n == 0) return 0;
  if (t->ignore_merges) {
    int32_t id = tok_strmap_get(&t->vocab, t->strings.data, s, n);
    if (id >= 0) return tok_ids_push(ctx->out, id) ? twin_err_set(err, TWIN_ENOMEM, "encode: out of memory") : 0;
  }
  int cacheable = n < TOK_CACHE_MAX_WORD && ctx->cache_ids.len < (16u << 20);
  if (cacheable) {
    int32_t slot = tok_strmap_get(&ctx->cache, ctx->cache_keys.data, s, n);
    if (slot >= 0) {
      uint32_t off = ctx->cache_spans[2 * slot], count = ctx->cache_spans[2 * slot + 1];
      if (tok_ids_append(ctx->out, ctx->cache_ids.data + off, count))
        return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
      return 0;
    }
  }
  size_t from = ctx->out->len;
  int rc = merge_word(t, ctx, s, n, err);
  if (rc) return rc;
  if (cacheable && cache_insert(ctx, s, n, from)) return twin_err_set(err, TWIN_ENOMEM, "encode: out of memory");
  return 0;
}

/* SentencePiece-style files give BPE whole lines as one word ('▁' for spaces). When no token
 * has a '▁' after another character (t->marker_split, checked at load), no merge can cross
 * the point before a '▁' that follows another character, so the word is cut there: the ids
 * are the same, and the pieces are short and cacheable. */
int tok_bpe_word(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *s, size_t n,
                 twin_err *err) {
  static const char marker[] = "\xE2\x96\x81"; /* U+2581 */
  if (!t->marker_split || n <= 3) return bpe_piece(t, ctx, s, n, err);
  size_t start = 0;
  for (size_t p = 3; p + 3 <= n; p++) {
    if (memcmp(s + p, marker, 3) != 0) continue;
    if (memcmp(s + p - 3, marker, 3) == 0) continue; /* inside a run of '▁' */
    int rc = bpe_piece(t, ctx, s + start, p - start, err);
    if (rc) return rc;
    start = p;
    p += 2;
  }
  return bpe_piece(t, ctx, s + start, n - start, err);
}
