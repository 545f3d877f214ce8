/* llm-svc/model/gguf.h — GGUF files (versions 2 and 3): a memory-mapped reader of the header,
 * metadata (every value type, arrays), tensor infos and data, all checked against the file size
 * on open, so a corrupt file is an error naming the file, the key or tensor and the offset. On
 * top: the config (gguf_config.c), the tokenizer (gguf_tokenizer.c) and the weights under Hugging
 * Face names (gguf_weights.c). A twin_gguf owns its mapping and copies of keys and names; every
 * pointer it hands out is borrowed until twin_gguf_close. */
#ifndef TWIN_MODEL_GGUF_H
#define TWIN_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "llm-svc/model/config.h"
#include "llm-svc/model/tensor.h"
#include "llm-svc/model/tokenizer.h"
#include "llm-svc/model/weights.h"

typedef struct twin_gguf twin_gguf;

/* Metadata value types, numbered as in the file. */
typedef enum twin_gguf_type {
  TWIN_GGUF_U8 = 0,
  TWIN_GGUF_I8 = 1,
  TWIN_GGUF_U16 = 2,
  TWIN_GGUF_I16 = 3,
  TWIN_GGUF_U32 = 4,
  TWIN_GGUF_I32 = 5,
  TWIN_GGUF_F32 = 6,
  TWIN_GGUF_BOOL = 7,
  TWIN_GGUF_STRING = 8,
  TWIN_GGUF_ARRAY = 9,
  TWIN_GGUF_U64 = 10,
  TWIN_GGUF_I64 = 11,
  TWIN_GGUF_F64 = 12,
} twin_gguf_type;

/* One metadata entry. Values in the mapping are little-endian and unaligned (read with memcpy,
 * or through the getters below). */
typedef struct twin_gguf_kv {
  const char *key;            /* NUL-terminated copy */
  twin_gguf_type type;
  twin_gguf_type elem_type;   /* arrays: the element type; otherwise == type */
  uint64_t count;             /* arrays: the element count; otherwise 1 */
  const uint8_t *value;       /* scalar bytes; a string's u64 length then its bytes; an array's
                                 first element */
  uint64_t offset;            /* file offset of the entry (its key length) */
} twin_gguf_kv;

/* "u8", "string", "array"...; "?" out of range. */
const char *twin_gguf_type_name(twin_gguf_type t);
/* The ggml tensor type's name ("q4_k", "iq2_xs"...), "?" when unknown. */
const char *twin_gguf_ggml_type_name(uint32_t ggml_type);

/* Opens and validates path. Errors: TWIN_ENOTFOUND / TWIN_EIO (open, map), TWIN_EFORMAT (not a
 * GGUF file, truncated, lying counts, lengths or offsets, unknown value or tensor types),
 * TWIN_EUNSUPPORTED (version 1, a tensor type this build does not run). */
int twin_gguf_open(twin_gguf **out, const char *path, twin_err *err);
void twin_gguf_close(twin_gguf *g);

const char *twin_gguf_path(const twin_gguf *g);
uint32_t twin_gguf_version(const twin_gguf *g);
uint32_t twin_gguf_alignment(const twin_gguf *g);
uint64_t twin_gguf_data_offset(const twin_gguf *g);  /* file offset of the data section */

/* ---- metadata ------------------------------------------------------------------------------ */

size_t twin_gguf_kv_count(const twin_gguf *g);
const twin_gguf_kv *twin_gguf_kv_at(const twin_gguf *g, size_t i);  /* file order */
const twin_gguf_kv *twin_gguf_find(const twin_gguf *g, const char *key); /* NULL when absent */

/* Typed getters. Each returns 0, TWIN_ENOTFOUND when the key is absent, or TWIN_EFORMAT when
 * its value has another type or is out of range; err names the file, key and offset. */
/* Any integer type (and bool), checked to lie in [lo, hi]. */
int twin_gguf_get_int(const twin_gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *out,
                      twin_err *err);
/* f32 or f64 (integers too), finite. */
int twin_gguf_get_float(const twin_gguf *g, const char *key, double *out, twin_err *err);
int twin_gguf_get_bool(const twin_gguf *g, const char *key, int *out, twin_err *err);
/* A string: *s points into the mapping and is NOT NUL-terminated; *len is its length. */
int twin_gguf_get_string(const twin_gguf *g, const char *key, const char **s, size_t *len,
                         twin_err *err);
/* The same, copied into a NUL-terminated malloc'd string (caller frees). A NUL inside is an
 * error. */
int twin_gguf_get_string_dup(const twin_gguf *g, const char *key, char **out, twin_err *err);
/* An array of strings: *out is one malloc'd block holding count pointers then the
 * NUL-terminated strings (free(*out) releases all). A NUL inside a string is an error. */
int twin_gguf_get_string_array(const twin_gguf *g, const char *key, char ***out, size_t *count,
                               twin_err *err);
/* Numeric arrays, converted: any integer element type into int32 (range-checked), f32/f64 into
 * float. *out is malloc'd (caller frees). */
int twin_gguf_get_i32_array(const twin_gguf *g, const char *key, int32_t **out, size_t *count,
                            twin_err *err);
int twin_gguf_get_f32_array(const twin_gguf *g, const char *key, float **out, size_t *count,
                            twin_err *err);

/* ---- tensors ------------------------------------------------------------------------------- */

/* The tensors as the file names them ("blk.0.attn_q.weight"), shapes reversed into row-major
 * order (GGUF lists dimensions innermost first), data pointing into the mapping. */
size_t twin_gguf_tensor_count(const twin_gguf *g);
const twin_tensor *twin_gguf_tensor_at(const twin_gguf *g, size_t i);
const twin_tensor *twin_gguf_tensor_find(const twin_gguf *g, const char *gguf_name);

/* The Hugging Face name of a GGUF tensor name for the architecture (general.architecture):
 * token_embd.weight -> model.embed_tokens.weight, blk.N.attn_q.weight ->
 * model.layers.N.self_attn.q_proj.weight, output.weight -> lm_head.weight ... Names without a
 * counterpart are kept as they are. Returns 0, or TWIN_EINVAL when out is too small. */
int twin_gguf_hf_name(const char *arch, const char *gguf_name, char *out, size_t cap);

/* ---- the model from its metadata ----------------------------------------------------------- */

/* The config from {arch}.* and tokenizer.ggml.* metadata (gguf_config.c). Architectures:
 * llama (Llama, Mistral and SmolLM files), qwen2, gemma3. */
int twin_gguf_read_config(const twin_gguf *g, twin_model_config *cfg, twin_err *err);

/* The tokenizer from tokenizer.ggml.* (gguf_tokenizer.c): model "gpt2" (byte-level BPE with
 * merges; pre-tokenizer by tokenizer.ggml.pre) or "llama" (SentencePiece BPE from scores, byte
 * fallback, add_space_prefix). TWIN_ENOTFOUND when the file has no tokenizer. */
int twin_gguf_tokenizer_create(const twin_gguf *g, twin_tokenizer **out, twin_err *err);

/* The weight set of an open file under Hugging Face names and row order (gguf_weights.c).
 * Takes ownership of g in every case: the set closes it when destroyed, or at once on error.
 * Llama-architecture files store q and k rows interleaved for GGML's rope; those two tensors
 * are restored to the Hugging Face order in memory the set owns. */
int twin_gguf_to_weights(twin_gguf *g, twin_weights **out, twin_err *err);

#endif
