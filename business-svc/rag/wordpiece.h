/* business-svc/rag/wordpiece.h — BERT's WordPiece tokenizer for the sentence-embedding model.
 * Text goes through BERT's normalizer (control-character removal, whitespace cleanup, spaces
 * around CJK ideographs, NFD accent stripping, lowercasing, as the model's files say), is split
 * on whitespace and punctuation, and each word becomes the greedy longest-match-first pieces of
 * the vocabulary ("##" continuations; [UNK] when a word cannot be covered or is too long).
 * A tokenizer is read-only after open: any number of threads may encode with it at once. */
#ifndef TWIN_RAG_WORDPIECE_H
#define TWIN_RAG_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct twin_wordpiece twin_wordpiece;

/* Normalizer and model settings (tokenizer.json's "normalizer" and "model", or
 * tokenizer_config.json's do_lower_case / strip_accents / tokenize_chinese_chars). */
typedef struct twin_wordpiece_options {
  int clean_text;               /* drop control chars, U+0000, U+FFFD; whitespace -> ' ' */
  int handle_chinese_chars;     /* put spaces around CJK ideographs */
  int strip_accents;            /* NFD, then drop Mn marks */
  int lowercase;
  int max_input_chars_per_word; /* longer words become [UNK] (BERT: 100) */
} twin_wordpiece_options;

/* BERT-uncased defaults: everything on, 100 chars per word. */
twin_wordpiece_options twin_wordpiece_default_options(void);

/* Opens the tokenizer of a model directory: tokenizer.json when present (vocabulary, normalizer,
 * added tokens), otherwise vocab.txt with tokenizer_config.json's options (defaults when that
 * file is absent). *out is owned by the caller: free it with twin_wordpiece_destroy. */
int twin_wordpiece_open(twin_wordpiece **out, const char *model_dir, twin_err *err);

/* Opens a vocab.txt file (one token per line, id = line number) with the given options
 * (NULL: defaults). The special tokens [PAD] [UNK] [CLS] [SEP] [MASK] that the vocabulary holds
 * are matched verbatim in input text. [UNK], [CLS] and [SEP] must be in the vocabulary. */
int twin_wordpiece_open_vocab(twin_wordpiece **out, const char *vocab_path,
                              const twin_wordpiece_options *opt, twin_err *err);

void twin_wordpiece_destroy(twin_wordpiece *wp);

/* Encodes one UTF-8 text (len bytes; it may hold NUL bytes) as [CLS] pieces... [SEP], keeping at
 * most max_len ids in all (the pieces are truncated to max_len - 2; max_len >= 2). ids has room
 * for max_len entries (borrowed); *n_ids receives the count. Invalid UTF-8 is TWIN_EINVAL with
 * the byte offset. Thread-safe: uses only per-call memory. */
int twin_wordpiece_encode(const twin_wordpiece *wp, const char *text, size_t len, int max_len,
                          int32_t *ids, int *n_ids, twin_err *err);

int twin_wordpiece_vocab_size(const twin_wordpiece *wp);
/* The token string of an id (borrowed, NUL-terminated), or NULL when out of range. */
const char *twin_wordpiece_id_to_token(const twin_wordpiece *wp, int32_t id);
/* The id of an exact token string, or -1. */
int32_t twin_wordpiece_token_to_id(const twin_wordpiece *wp, const char *token);
int32_t twin_wordpiece_cls_id(const twin_wordpiece *wp);
int32_t twin_wordpiece_sep_id(const twin_wordpiece *wp);
int32_t twin_wordpiece_unk_id(const twin_wordpiece *wp);
int32_t twin_wordpiece_pad_id(const twin_wordpiece *wp); /* -1 when the vocabulary has none */

#endif
