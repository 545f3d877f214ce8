/* llm-svc/model/tokenizer.h — text <-> token ids for the models we run, read from a Hugging Face
 * tokenizer.json (+ optional tokenizer_config.json) and matching the Python `tokenizers`
 * package id for id. Two families, both BPE with a merge list:
 *   byte_bpe  byte-level BPE (GPT-2, Llama-3, Qwen2, DeepSeek): split regexes (run by PCRE2 with
 *             UTF+UCP), bytes mapped to printable characters, merges;
 *   sp_bpe    SentencePiece-style BPE (Llama-2, Mistral, TinyLlama, Gemma): '▁' for spaces via a
 *             Metaspace pre-tokenizer or the Prepend+Replace normalizers, <0xNN> byte fallback.
 * Added/special tokens ("<|eot_id|>", "<s>") are split out of the text before BPE.
 *
 * Ownership: a twin_tokenizer owns everything it loaded and is immutable after load, so encode,
 * decode and lookups may run from many threads at once on one tokenizer. Strings returned by
 * lookups are borrowed until twin_tokenizer_destroy. */
#ifndef TWIN_MODEL_TOKENIZER_H
#define TWIN_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct twin_tokenizer twin_tokenizer;

typedef enum {
  TWIN_TOKENIZER_BYTE_BPE = 1, /* "byte_bpe" */
  TWIN_TOKENIZER_SP_BPE = 2,   /* "sp_bpe" */
} twin_tokenizer_kind;

/* ---- loading ------------------------------------------------------------------------------ */

/* dir holds tokenizer.json and, optionally, tokenizer_config.json. A missing or malformed file
 * is an error that names the file and, for a bad value, the JSON path ("model.merges[17]"). */
int twin_tokenizer_load_dir(twin_tokenizer **out, const char *dir, twin_err *err);

/* The same from explicit paths; config_path may be NULL (no tokenizer_config.json). */
int twin_tokenizer_load_files(twin_tokenizer **out, const char *tokenizer_json_path,
                              const char *config_path, twin_err *err);

/* The same from JSON text in memory (borrowed for the call only). config_json may be NULL.
 * name is used in error messages in place of a file name. */
int twin_tokenizer_load_json(twin_tokenizer **out, const char *tokenizer_json, size_t len,
                             const char *config_json, size_t config_len, const char *name,
                             twin_err *err);

/* A tokenizer from an in-memory vocabulary (a GGUF file's tokenizer.ggml.* metadata). Every
 * pointer is borrowed for the call only. */
typedef enum {
  TWIN_TOKEN_TYPE_NORMAL = 1,       /* GGUF token types */
  TWIN_TOKEN_TYPE_UNKNOWN = 2,
  TWIN_TOKEN_TYPE_CONTROL = 3,      /* special: split out of text, skippable in decode */
  TWIN_TOKEN_TYPE_USER_DEFINED = 4, /* added but not special */
  TWIN_TOKEN_TYPE_UNUSED = 5,
  TWIN_TOKEN_TYPE_BYTE = 6,         /* "<0xNN>" */
} twin_token_type;

typedef struct twin_tokenizer_vocab_spec {
  twin_tokenizer_kind kind;
  size_t n_tokens;
  const char *const *tokens;  /* [n_tokens] NUL-terminated token strings; id = index */
  const float *scores;        /* [n_tokens] or NULL; ranks merges when merges is NULL */
  const int32_t *token_types; /* [n_tokens] twin_token_type or NULL (all normal) */
  size_t n_merges;
  const char *const *merges;  /* [n_merges] "left right", best first; NULL: derived from scores */
  const char *split_regex;    /* byte_bpe: the pre-tokenizer regex; NULL: the GPT-2 one */
  int add_space_prefix;       /* sp_bpe: prepend '▁' to the text (Llama-2 style) */
  int32_t bos_id, eos_id, unk_id; /* -1 when none */
  int add_bos, add_eos;       /* what encode(add_special=1) adds */
} twin_tokenizer_vocab_spec;

int twin_tokenizer_create_from_vocab(twin_tokenizer **out, const twin_tokenizer_vocab_spec *spec,
                                     twin_err *err);

void twin_tokenizer_destroy(twin_tokenizer *tok);

/* ---- encode / decode ---------------------------------------------------------------------- */

/* text: len bytes of UTF-8 (need not be NUL-terminated; invalid UTF-8 -> TWIN_EINVAL naming the
 * byte offset). add_special: add what the tokenizer adds around a sequence (BOS for Llama, as
 * tokenizer_config.json's add_bos_token/add_eos_token say, else the post_processor template).
 * Special tokens written in the text are always recognised as single ids.
 * *ids_out is allocated (malloc) and owned by the caller (free()); *n_out is its length. */
int twin_tokenizer_encode(const twin_tokenizer *tok, const char *text, size_t len, int add_special,
                          int32_t **ids_out, size_t *n_out, twin_err *err);

/* The same into a caller buffer ids[cap]. *n_out is always the full count; when it exceeds cap
 * the call returns TWIN_EFULL and ids holds the first cap ids. */
int twin_tokenizer_encode_into(const twin_tokenizer *tok, const char *text, size_t len,
                               int add_special, int32_t *ids, size_t cap, size_t *n_out,
                               twin_err *err);

enum {
  TWIN_DECODE_SKIP_SPECIAL = 1, /* drop special tokens (BOS, EOS, <|eot_id|>...) */
};

/* ids -> bytes, following the decoder section of tokenizer.json. Ids with no token (gaps,
 * out of range) are skipped, as the Python package does. *text_out is allocated, NUL-terminated
 * and owned by the caller (free()); *len_out excludes the NUL. The bytes are the raw bytes the
 * tokens stand for: a byte-fallback or byte-level sequence cut in the middle of a character
 * stays cut (the Python package would show U+FFFD there). */
int twin_tokenizer_decode(const twin_tokenizer *tok, const int32_t *ids, size_t n, int flags,
                          char **text_out, size_t *len_out, twin_err *err);

/* ---- vocabulary --------------------------------------------------------------------------- */

/* The token string as stored in the vocabulary ("Ġhello", "▁world", "<0x0A>", "<|eot_id|>");
 * NULL for an id with no token. Borrowed. */
const char *twin_tokenizer_id_to_token(const twin_tokenizer *tok, int32_t id);

/* The bytes one token stands for on its own, as it decodes in the middle of a text
 * ("Ġhello" -> " hello", "<0x0A>" -> "\n"). Writes up to cap bytes to buf; *len_out is the
 * full length (TWIN_EFULL when it exceeds cap). TWIN_ENOTFOUND for an id with no token. */
int twin_tokenizer_token_piece(const twin_tokenizer *tok, int32_t id, char *buf, size_t cap,
                               size_t *len_out, twin_err *err);

/* Exact token string -> id (added tokens first, then the model vocabulary); -1 when absent. */
int32_t twin_tokenizer_token_to_id(const twin_tokenizer *tok, const char *token);

/* 1 + the largest id (gaps count): the size an embedding table needs at least. */
int32_t twin_tokenizer_vocab_size(const twin_tokenizer *tok);
int32_t twin_tokenizer_bos_id(const twin_tokenizer *tok); /* -1 when none */
int32_t twin_tokenizer_eos_id(const twin_tokenizer *tok); /* -1 when none */
/* 1 when id is a special added token (BOS, EOS, <|eot_id|>...). */
int twin_tokenizer_is_special(const twin_tokenizer *tok, int32_t id);
twin_tokenizer_kind twin_tokenizer_kind_of(const twin_tokenizer *tok);
/* "byte_bpe" | "sp_bpe" */
const char *twin_tokenizer_kind_name(const twin_tokenizer *tok);

#endif
