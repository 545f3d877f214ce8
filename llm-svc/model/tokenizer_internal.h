/* llm-svc/model/tokenizer_internal.h — the pieces of twin_tokenizer shared by its files
 * (tokenizer.c: loading, added tokens, encode driver; tokenizer_bpe.c: the merge loop;
 * tokenizer_pretok.c: normalizers and pre-tokenizers; tokenizer_decode.c: decoders) and by
 * detok.c. Not a public header: nothing outside llm-svc/model includes it.
 * The hash maps are our own small open-addressing tables: the project's libraries have none. */
#ifndef TWIN_MODEL_TOKENIZER_INTERNAL_H
#define TWIN_MODEL_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/error.h"
#include "llm-svc/model/tokenizer.h"

/* ---- growable buffers --------------------------------------------------------------------- */

typedef struct tok_buf {
  char *data; /* [cap] */
  size_t len, cap;
} tok_buf;

typedef struct tok_ids {
  int32_t *data; /* [cap] */
  size_t len, cap;
} tok_ids;

int tok_buf_reserve(tok_buf *b, size_t extra);
int tok_buf_append(tok_buf *b, const void *p, size_t n);
void tok_buf_free(tok_buf *b);
int tok_ids_push(tok_ids *v, int32_t id);
int tok_ids_append(tok_ids *v, const int32_t *ids, size_t n);
void tok_ids_free(tok_ids *v);

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 prefix of s (== n when all of s is valid); Rust's rules: no
 * overlong forms, no surrogates, nothing above U+10FFFF. */
size_t tok_utf8_valid_prefix(const char *s, size_t n);
/* Decodes one character at s (valid UTF-8 assumed); returns its length, stores the code point. */
int tok_utf8_decode(const char *s, size_t n, uint32_t *cp);
int tok_utf8_encode(uint32_t cp, char out[4]);
/* Length of the character starting with byte b (1 for a stray byte). */
int tok_utf8_len(unsigned char b);
int tok_is_unicode_space(uint32_t cp); /* Unicode White_Space */
int tok_is_unicode_numeric(uint32_t cp); /* general category N* */
int tok_is_word_char(uint32_t cp);      /* regex \w: letters, marks, digits, connectors */

/* ---- hash maps ---------------------------------------------------------------------------- */

/* String -> int32 map. Keys live in a caller's arena and are stored as (offset, length), so the
 * arena may grow (realloc) between calls; every call passes the arena's current base. */
typedef struct tok_strmap_slot {
  uint64_t hash;
  uint32_t off, len;
  int32_t value;
  int32_t used;
} tok_strmap_slot;

typedef struct tok_strmap {
  tok_strmap_slot *slots; /* [cap], cap a power of two */
  size_t cap, count;
} tok_strmap;

uint64_t tok_hash_bytes(const char *s, size_t n);
/* Inserts or overwrites. */
int tok_strmap_put(tok_strmap *m, const char *base, uint32_t off, uint32_t len, int32_t value);
/* -1 when absent. */
int32_t tok_strmap_get(const tok_strmap *m, const char *base, const char *key, size_t len);
void tok_strmap_free(tok_strmap *m);

/* (left id, right id) -> (rank, merged id). */
typedef struct tok_pair_slot {
  uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
  int32_t rank, merged;
} tok_pair_slot;

typedef struct tok_pairmap {
  tok_pair_slot *slots; /* [cap] */
  size_t cap, count;
} tok_pairmap;

int tok_pairmap_init(tok_pairmap *m, size_t expected);
/* keep_existing: do not overwrite a pair already present. */
int tok_pairmap_put(tok_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t merged,
                    int keep_existing);
/* 1 when found. */
int tok_pairmap_get(const tok_pairmap *m, int32_t left, int32_t right, int32_t *rank,
                    int32_t *merged);
void tok_pairmap_free(tok_pairmap *m);

/* ---- regexes (PCRE2, UTF + UCP, JIT when available) --------------------------------------- */

typedef struct tok_regex {
  pcre2_code *code;
  int jit; /* 1 when JIT-compiled */
} tok_regex;

/* what: names the pattern in error messages ("pre_tokenizer.pretokenizers[0].pattern.Regex"). */
int tok_regex_compile(tok_regex *re, const char *pattern, size_t len, const char *what,
                      twin_err *err);
void tok_regex_free(tok_regex *re);

/* Per-call matching state (PCRE2 match data and a JIT stack); one per encode call. */
typedef struct tok_match_state {
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit_stack;
} tok_match_state;

int tok_match_state_init(tok_match_state *ms);
void tok_match_state_free(tok_match_state *ms);
/* Next match in s[0..n) at or after start: 1 found (*ms_out, *me_out), 0 none, <0 error. */
int tok_regex_find(const tok_regex *re, tok_match_state *ms, const char *s, size_t n,
                   size_t start, size_t *ms_out, size_t *me_out, twin_err *err);

/* ---- normalizers -------------------------------------------------------------------------- */

typedef enum {
  TOK_NORM_NFC = 1, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD,
  TOK_NORM_LOWERCASE, TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_STRIP,
} tok_norm_kind;

typedef struct tok_normalizer {
  tok_norm_kind kind;
  char *text;       /* Prepend: the prefix; Replace: the literal pattern (NULL for a regex) */
  size_t text_len;
  char *content;    /* Replace: the replacement */
  size_t content_len;
  tok_regex re;     /* Replace with a Regex pattern */
  int strip_left, strip_right;
} tok_normalizer;

/* ---- pre-tokenizers ----------------------------------------------------------------------- */

typedef enum {
  TOK_PRE_BYTELEVEL = 1, TOK_PRE_SPLIT, TOK_PRE_METASPACE, TOK_PRE_DIGITS,
} tok_pretok_kind;

typedef enum {
  TOK_SPLIT_REMOVED = 1, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_WITH_PREVIOUS,
  TOK_SPLIT_MERGED_WITH_NEXT, TOK_SPLIT_CONTIGUOUS,
} tok_split_behavior;

typedef enum { TOK_PREPEND_ALWAYS = 1, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER } tok_prepend_scheme;

typedef struct tok_pretok {
  tok_pretok_kind kind;
  /* ByteLevel */
  int add_prefix_space, use_regex;
  /* Split (and ByteLevel's GPT-2 regex) */
  tok_regex re;          /* code == NULL: literal pattern below */
  char *literal;
  size_t literal_len;
  tok_split_behavior behavior;
  int invert;
  /* Metaspace */
  char replacement[5];   /* UTF-8, NUL-terminated */
  size_t replacement_len;
  tok_prepend_scheme prepend_scheme;
  int split;
  /* Digits */
  int individual_digits;
} tok_pretok;

/* ---- decoders ----------------------------------------------------------------------------- */

typedef enum {
  TOK_DEC_BYTELEVEL = 1, TOK_DEC_METASPACE, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE,
  TOK_DEC_STRIP,
} tok_dec_kind;

typedef struct tok_decoder {
  tok_dec_kind kind;
  char *pattern, *content; /* Replace: literal pattern -> content */
  size_t pattern_len, content_len;
  char replacement[5];     /* Metaspace */
  size_t replacement_len;
  tok_prepend_scheme prepend_scheme;
  uint32_t strip_char;     /* Strip */
  char strip_utf8[5];
  size_t strip_utf8_len;
  int strip_start, strip_stop;
} tok_decoder;

/* ---- added tokens ------------------------------------------------------------------------- */

typedef struct tok_added {
  int32_t id;
  char *content;      /* as written in the file */
  size_t len;
  char *match;        /* what is matched: content, or its normalized form when normalized */
  size_t match_len;
  int special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* A byte trie over added-token strings, for leftmost-longest matching. */
typedef struct tok_trie_node {
  int32_t first_child, next_sibling;
  int32_t added;      /* index into twin_tokenizer.added, -1 when no token ends here */
  unsigned char byte;
} tok_trie_node;

typedef struct tok_trie {
  tok_trie_node *nodes; /* [n_nodes]; node 0 is the root */
  size_t n_nodes, cap;
  int32_t root_child[256]; /* the root's children by byte, -1 when none */
  int empty;             /* 1 when no token was inserted */
} tok_trie;

/* ---- the tokenizer ------------------------------------------------------------------------ */

enum { TOK_ID_SPECIAL = 1, TOK_ID_ADDED = 2 };

#define TOK_MAX_STEPS 16

struct twin_tokenizer {
  char name[256];            /* file name or caller's name, for messages */
  twin_tokenizer_kind kind;

  tok_buf strings;           /* arena: every token string, NUL-terminated */
  uint32_t *piece_off;       /* [vocab_size] offset into strings, UINT32_MAX when no token */
  uint32_t *piece_len;       /* [vocab_size] */
  uint8_t *id_flags;         /* [vocab_size] TOK_ID_* */
  int32_t vocab_size;

  /* BPE model */
  tok_strmap vocab;          /* model vocabulary: string -> id (keys in strings) */
  tok_pairmap merges;
  int32_t unk_id;            /* -1 when none */
  int fuse_unk, byte_fallback, ignore_merges;
  char *subword_prefix, *word_suffix; /* continuing_subword_prefix, end_of_word_suffix or NULL */
  size_t subword_prefix_len, word_suffix_len;
  int32_t byte_ids[256];     /* "<0xNN>" ids for byte fallback, -1 when absent */
  int marker_split;          /* words may be cut before a '▁' (see tok_bpe_word) */
  uint32_t byte_to_cp[256];  /* byte-level alphabet: byte -> code point (all < 324) */
  int16_t cp_to_byte[324];   /* and back; -1 for code points outside the alphabet */

  tok_normalizer norms[TOK_MAX_STEPS];
  int n_norms;
  tok_pretok pretoks[TOK_MAX_STEPS];
  int n_pretoks;
  tok_decoder decoders[TOK_MAX_STEPS];
  int n_decoders;
  int has_decoder;           /* 0: tokens are joined with ' ' (the Python package's default) */

  tok_added *added;          /* [n_added] */
  size_t n_added;
  tok_strmap added_lookup;   /* content -> id (keys in strings) */
  tok_trie trie_raw;         /* tokens matched before normalization (normalized: false) */
  tok_trie trie_norm;        /* tokens matched after normalization (normalized: true) */

  int32_t prefix_ids[8], suffix_ids[8]; /* what add_special puts around a sequence */
  int n_prefix, n_suffix;
  int32_t bos_id, eos_id;
};

/* ---- shared functions --------------------------------------------------------------------- */

typedef struct tok_encode_ctx tok_encode_ctx;

/* tokenizer_pretok.c */
/* byte_to_cp[b]: the byte-level alphabet's character for byte b (GPT-2's map). */
void tok_bytelevel_tables(uint32_t byte_to_cp[256]);
/* Runs the normalizers over s[0..n); *res points at s itself (no normalizer) or into one of the
 * context's normalizer buffers, valid until the next tok_normalize call. */
int tok_normalize(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *s, size_t n,
                  const char **res, size_t *res_len, twin_err *err);
/* Splits s[0..n) with the pre-tokenizers and runs BPE on each piece; at_origin: s starts at
 * offset 0 of the caller's text (Metaspace's prepend_scheme "first"). */
int tok_pretokenize(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *s, size_t n,
                    int at_origin, twin_err *err);
void tok_normalizer_free(tok_normalizer *nm);
void tok_pretok_free(tok_pretok *p);

/* tokenizer_bpe.c: appends the ids of one pre-token to the context's output. */
int tok_bpe_word(const twin_tokenizer *t, tok_encode_ctx *ctx, const char *s, size_t n,
                 twin_err *err);

/* tokenizer_decode.c */
typedef struct tok_decode_state {
  size_t token_index;     /* tokens handed to the decoder so far */
  int strip_budget;       /* chars a Strip after Fuse may still remove at the start */
  int strip_done;         /* the fused text has started: no more stripping */
  tok_buf a, b;           /* scratch */
} tok_decode_state;

void tok_decode_state_init(const twin_tokenizer *t, tok_decode_state *st);
void tok_decode_state_free(tok_decode_state *st);
/* Appends the bytes of token id to out; skipped ids (no token, or special with
 * TWIN_DECODE_SKIP_SPECIAL) append nothing and do not count as decoded tokens. */
int tok_decode_one(const twin_tokenizer *t, tok_decode_state *st, int32_t id, int flags,
                   tok_buf *out, twin_err *err);
void tok_decoder_free(tok_decoder *d);

/* ---- the encode context (tokenizer.c owns its lifetime) ----------------------------------- */

typedef struct tok_seg {
  size_t start, end;
  int is_match;
} tok_seg;

typedef struct tok_segs {
  tok_seg *data; /* [cap] */
  size_t len, cap;
} tok_segs;

typedef struct tok_symbol {
  int32_t id;
  int32_t prev, next; /* -1 at the ends */
  int32_t len;        /* bytes; 0 once merged into its left neighbour */
} tok_symbol;

typedef struct tok_merge_entry {
  int32_t rank, pos, merged;
} tok_merge_entry;

struct tok_encode_ctx {
  tok_ids *out;
  tok_segs added_raw;                /* text split on added tokens (is_match = index + 1) */
  tok_segs added_norm;               /* a normalized piece split on normalized added tokens */
  tok_match_state match;
  tok_buf norm_a, norm_b;            /* normalizer ping-pong */
  tok_buf level_a[TOK_MAX_STEPS];    /* per pre-tokenizer step: transformed input */
  tok_buf level_b[TOK_MAX_STEPS];    /* per pre-tokenizer step: mapped piece */
  tok_segs segs[TOK_MAX_STEPS];      /* per pre-tokenizer step: split segments */
  tok_buf word;                      /* scratch for prefixed/suffixed characters */
  tok_symbol *symbols;               /* [symbols_cap] */
  size_t symbols_cap;
  tok_merge_entry *heap;             /* [heap_cap] */
  size_t heap_cap;
  /* word cache for this call: pre-token -> ids */
  tok_strmap cache;
  tok_buf cache_keys;
  tok_ids cache_ids;                 /* concatenated ids; value = index into cache_spans */
  uint32_t *cache_spans;             /* [2 * n] (offset, count) into cache_ids */
  size_t cache_n, cache_cap;
};

#endif
