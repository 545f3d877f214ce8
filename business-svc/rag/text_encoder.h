/* business-svc/rag/text_encoder.h — what ingestion and search need from an embedding model,
 * as a small interface: the vector width, a batch embed function, a token counter for chunk
 * sizes and the most tokens the model reads. Two encoders implement it: the sentence embedder
 * (rag/embedder.h, the product) and a feature-hashing encoder (lower-cased words and word
 * pairs hashed into signed buckets, L2-normalized), which needs no model files: it is what
 * tests, benchmarks and model-less development use, and it retrieves by shared words only. */
#ifndef TWIN_RAG_TEXT_ENCODER_H
#define TWIN_RAG_TEXT_ENCODER_H

#include <stddef.h>

#include "business-svc/rag/chunker.h"
#include "business-svc/rag/embedder.h"
#include "common/error.h"

/* Embeds n texts (borrowed, NUL-terminated UTF-8) into out [n][dim] (caller-owned), each row
 * of unit length (or all zeros for a text with nothing to embed). Thread-safe. */
typedef int (*twin_embed_fn)(void *ctx, const char *const *texts, size_t n, float *out,
                             twin_err *err);

typedef struct twin_text_encoder {
  int dim;                    /* vector width */
  twin_embed_fn embed;
  void *ctx;                  /* borrowed, passed to embed */
  twin_token_counter counter; /* for chunk sizes (count NULL = approximation) */
  int max_tokens;             /* most content tokens one text may have (0 = no limit) */
  const char *name;           /* "hashing" or "embedder", for logs (static) */
} twin_text_encoder;

/* An encoder over an open embedder (borrowed: it must outlive the encoder). max_tokens is the
 * model's length less [CLS] and [SEP]. */
twin_text_encoder twin_text_encoder_from_embedder(const twin_embedder *e);

/* The feature-hashing encoder of dim buckets (dim >= 8; TWIN_EINVAL otherwise). Stateless: no
 * destroy needed. Counts tokens with twin_token_count_approx; no length limit. */
int twin_text_encoder_hashing(int dim, twin_text_encoder *out, twin_err *err);

/* The hashing encoder's embedding of one text (exposed for tests): out[dim]. */
void twin_hashing_embed_one(int dim, const char *text, size_t len, float *out);

#endif
