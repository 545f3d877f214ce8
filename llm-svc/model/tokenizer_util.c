/* llm-svc/model/tokenizer_util.c — the tokenizer's small building blocks: growable buffers,
 * UTF-8 checks, Unicode classes (utf8proc categories), the string and pair hash maps (our own
 * open addressing: the project's libraries have no hash map) and PCRE2 regex helpers. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "llm-svc/model/tokenizer_internal.h"

/* ============================================================================================
 * Buffers
 * ========================================================================================== */

int tok_buf_reserve(tok_buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) return TWIN_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int tok_buf_append(tok_buf *b, const void *p, size_t n) {
  if (tok_buf_reserve(b, n)) return TWIN_ENOMEM;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
  return 0;
}

void tok_buf_free(tok_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

int tok_ids_push(tok_ids *v, int32_t id) { return tok_ids_append(v, &id, 1); }

int tok_ids_append(tok_ids *v, const int32_t *ids, size_t n) {
  if (v->len + n > v->cap) {
    size_t cap = v->cap ? v->cap : 64;
    while (cap < v->len + n) cap *= 2;
    int32_t *p = realloc(v->data, cap * sizeof *p);
    if (!p) return TWIN_ENOMEM;
    v->data = p;
    v->cap = cap;
  }
  if (n) memcpy(v->data + v->len, ids, n * sizeof *ids);
  v->len += n;
  return 0;
}

void tok_ids_free(tok_ids *v) {
  free(v->data);
  memset(v, 0, sizeof *v);
}

/* ============================================================================================
 * UTF-8 and Unicode classes
 * ========================================================================================== */

size_t tok_utf8_valid_prefix(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t need;
    uint32_t min;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; }
    else return i;
    if (n - i < need + 1) return i;
    for (size_t k = 1; k <= need; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += need + 1;
  }
  return n;
}

int tok_utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  return 1;
}

int tok_utf8_decode(const char *str, size_t n, uint32_t *cp) {
  const unsigned char *s = (const unsigned char *)str;
  int len = tok_utf8_len(s[0]);
  if ((size_t)len > n) len = 1;
  uint32_t c;
  switch (len) {
    case 1: c = s[0]; break;
    case 2: c = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F); break;
    case 3: c = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F); break;
    default:
      c = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
      break;
  }
  *cp = c;
  return len;
}

int tok_utf8_encode(uint32_t cp, char out[4]) {
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

int tok_is_unicode_space(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85) return 1;
  if (cp < 0x80) return 0;
  utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
  return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

int tok_is_unicode_numeric(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

int tok_is_word_char(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC:
      return 1;
    default:
      return 0;
  }
}

/* ============================================================================================
 * String map
 * ========================================================================================== */

uint64_t tok_hash_bytes(const char *s, size_t n) {
  /* FNV-1a, then a final mix so that the low bits (the slot index) depend on every byte. */
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

static int strmap_grow(tok_strmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 64;
  tok_strmap_slot *slots = calloc(cap, sizeof *slots);
  if (!slots) return TWIN_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slots[i].used) continue;
    size_t j = m->slots[i].hash & (cap - 1);
    while (slots[j].used) j = (j + 1) & (cap - 1);
    slots[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return 0;
}

int tok_strmap_put(tok_strmap *m, const char *base, uint32_t off, uint32_t len, int32_t value) {
  if ((m->count + 1) * 4 > m->cap * 3 && strmap_grow(m)) return TWIN_ENOMEM;
  uint64_t h = tok_hash_bytes(base + off, len);
  size_t j = h & (m->cap - 1);
  while (m->slots[j].used) {
    tok_strmap_slot *s = &m->slots[j];
    if (s->hash == h && s->len == len && memcmp(base + s->off, base + off, len) == 0) {
      s->value = value;
      return 0;
    }
    j = (j + 1) & (m->cap - 1);
  }
  m->slots[j] = (tok_strmap_slot){.hash = h, .off = off, .len = len, .value = value, .used = 1};
  m->count++;
  return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *base, const char *key, size_t len) {
  if (!m->cap) return -1;
  uint64_t h = tok_hash_bytes(key, len);
  size_t j = h & (m->cap - 1);
  while (m->slots[j].used) {
    const tok_strmap_slot *s = &m->slots[j];
    if (s->hash == h && s->len == len && memcmp(base + s->off, key, len) == 0) return s->value;
    j = (j + 1) & (m->cap - 1);
  }
  return -1;
}

void tok_strmap_free(tok_strmap *m) {
  free(m->slots);
  memset(m, 0, sizeof *m);
}

/* ============================================================================================
 * Pair map
 * ========================================================================================== */

static inline uint64_t pair_hash(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

int tok_pairmap_init(tok_pairmap *m, size_t expected) {
  size_t cap = 64;
  while (cap * 3 < expected * 4 + 4) cap *= 2;
  m->slots = malloc(cap * sizeof *m->slots);
  if (!m->slots) return TWIN_ENOMEM;
  for (size_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
  m->cap = cap;
  m->count = 0;
  return 0;
}

static int pairmap_grow(tok_pairmap *m) {
  tok_pairmap bigger;
  if (tok_pairmap_init(&bigger, m->cap * 2)) return TWIN_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slots[i].key == UINT64_MAX) continue;
    size_t j = pair_hash(m->slots[i].key) & (bigger.cap - 1);
    while (bigger.slots[j].key != UINT64_MAX) j = (j + 1) & (bigger.cap - 1);
    bigger.slots[j] = m->slots[i];
    bigger.count++;
  }
  free(m->slots);
  *m = bigger;
  return 0;
}

int tok_pairmap_put(tok_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t merged,
                    int keep_existing) {
  if (!m->slots && tok_pairmap_init(m, 64)) return TWIN_ENOMEM;
  if ((m->count + 1) * 4 > m->cap * 3 && pairmap_grow(m)) return TWIN_ENOMEM;
  uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
  size_t j = pair_hash(key) & (m->cap - 1);
  while (m->slots[j].key != UINT64_MAX) {
    if (m->slots[j].key == key) {
      if (!keep_existing) {
        m->slots[j].rank = rank;
        m->slots[j].merged = merged;
      }
      return 0;
    }
    j = (j + 1) & (m->cap - 1);
  }
  m->slots[j] = (tok_pair_slot){.key = key, .rank = rank, .merged = merged};
  m->count++;
  return 0;
}

int tok_pairmap_get(const tok_pairmap *m, int32_t left, int32_t right, int32_t *rank,
                    int32_t *merged) {
  if (!m->cap) return 0;
  uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
  size_t j = pair_hash(key) & (m->cap - 1);
  while (m->slots[j].key != UINT64_MAX) {
    if (m->slots[j].key == key) {
      *rank = m->slots[j].rank;
      *merged = m->slots[j].merged;
      return 1;
    }
    j = (j + 1) & (m->cap - 1);
  }
  return 0;
}

void tok_pairmap_free(tok_pairmap *m) {
  free(m->slots);
  memset(m, 0, sizeof *m);
}

/* ============================================================================================
 * Regexes
 * ========================================================================================== */

int tok_regex_compile(tok_regex *re, const char *pattern, size_t len, const char *what,
                      twin_err *err) {
  int code;
  PCRE2_SIZE offset;
  re->jit = 0;
  re->code = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP, &code, &offset, NULL);
  if (!re->code) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(code, msg, sizeof msg);
    return twin_err_set(err, TWIN_EFORMAT, "%s: bad regex at offset %zu: %s", what,
                        (size_t)offset, (const char *)msg);
  }
  if (pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0) re->jit = 1;
  return 0;
}

void tok_regex_free(tok_regex *re) {
  if (re->code) pcre2_code_free(re->code);
  re->code = NULL;
}

int tok_match_state_init(tok_match_state *ms) {
  memset(ms, 0, sizeof *ms);
  ms->md = pcre2_match_data_create(4, NULL);
  ms->mctx = pcre2_match_context_create(NULL);
  ms->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
  if (!ms->md || !ms->mctx) {
    tok_match_state_free(ms);
    return TWIN_ENOMEM;
  }
  if (ms->jit_stack) pcre2_jit_stack_assign(ms->mctx, NULL, ms->jit_stack);
  return 0;
}

void tok_match_state_free(tok_match_state *ms) {
  if (ms->md) pcre2_match_data_free(ms->md);
  if (ms->mctx) pcre2_match_context_free(ms->mctx);
  if (ms->jit_stack) pcre2_jit_stack_free(ms->jit_stack);
  memset(ms, 0, sizeof *ms);
}

int tok_regex_find(const tok_regex *re, tok_match_state *ms, const char *s, size_t n,
                   size_t start, size_t *ms_out, size_t *me_out, twin_err *err) {
  /* The subject was validated as UTF-8 once; without NO_UTF_CHECK every call would check the
   * whole subject again and splitting a long text would be quadratic. */
  int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, ms->md, ms->mctx);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_MATCHLIMIT ||
      rc == PCRE2_ERROR_HEAPLIMIT)
    rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                     ms->md, NULL);
  if (rc == PCRE2_ERROR_NOMATCH) return 0;
  if (rc < 0) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return twin_err_set(err, TWIN_EINTERNAL, "regex match failed at byte %zu: %s", start,
                        (const char *)msg);
  }
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ms->md);
  *ms_out = ov[0];
  *me_out = ov[1];
  return 1;
}
