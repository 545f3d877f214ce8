/* business-svc/rag/embedder.h — the sentence-embedding model (a BERT encoder such as
 * all-MiniLM-L6-v2) on the CPU: WordPiece tokens -> BERT layers -> mean pooling -> L2-normalized
 * float32 vectors (a dot product is the cosine). A model directory is what sentence-transformers
 * writes: config.json, model.safetensors, tokenizer.json or vocab.txt, optionally
 * sentence_bert_config.json, modules.json, 1_Pooling/config.json. An open embedder is read-only:
 * threads may call twin_embedder_embed at once (each call allocates its own scratch). */
#ifndef TWIN_RAG_EMBEDDER_H
#define TWIN_RAG_EMBEDDER_H

#include <stddef.h>

#include "business-svc/rag/wordpiece.h"
#include "common/error.h"

typedef struct twin_embedder twin_embedder;

/* Loads the model of model_dir (weights are converted to float32 and copied once; no file stays
 * open). Errors name the file, field or tensor. *out is owned by the caller: free it with
 * twin_embedder_destroy. */
int twin_embedder_open(twin_embedder **out, const char *model_dir, twin_err *err);
void twin_embedder_destroy(twin_embedder *e);

/* Width of a vector (384 for MiniLM-L6). */
int twin_embedder_dim(const twin_embedder *e);
/* Most tokens per text, [CLS] and [SEP] included; longer texts are truncated (256 for
 * all-MiniLM-L6-v2, from sentence_bert_config.json). */
int twin_embedder_max_len(const twin_embedder *e);
/* The model's tokenizer (borrowed; lives as long as e). */
const twin_wordpiece *twin_embedder_tokenizer(const twin_embedder *e);

/* Embeds n NUL-terminated UTF-8 texts (borrowed) into out, [n][dim] floats that the caller
 * owns, each row of unit length. Texts are run together in batches (no compute is spent on
 * padding). An empty text embeds its [CLS] [SEP] pair. A text that is NULL or not valid UTF-8
 * fails the call with TWIN_EINVAL naming its index; out is then unspecified. */
int twin_embedder_embed(const twin_embedder *e, const char *const *texts, size_t n, float *out,
                        twin_err *err);

#endif
