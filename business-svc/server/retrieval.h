/* business-svc/server/retrieval.h — the retrieval half of a RAG request, every stage timed:
 * self-query (an author filter pulled out of the query by the LLM in a strict one-line format,
 * accepted only when the name appears in the query, with a rule-based fallback), query
 * expansion (N rephrasings from the LLM under a time budget, the original always kept, skipped
 * when the LLM is slow or fails), one embedding call for all queries, a filtered vector search
 * per query in parallel, merge and dedupe by chunk id, the chunks' text and metadata from
 * Redis, and a rerank (the LLM scoring relevance, or the embedding scores) keeping the top k. */
#ifndef TWIN_BUSINESS_RETRIEVAL_H
#define TWIN_BUSINESS_RETRIEVAL_H

#include <stddef.h>
#include <stdint.h>

#include "business-svc/clients/llm_client.h"
#include "business-svc/rag/embedder.h"
#include "business-svc/rag/vector_index.h"
#include "common/error.h"
#include "common/redis_pool.h"

typedef enum { TWIN_RERANK_NONE = 0, TWIN_RERANK_EMBEDDING, TWIN_RERANK_LLM } twin_rerank_mode;

typedef struct twin_retriever_config {
  const twin_embedder *embedder;     /* borrowed */
  twin_vector_index *index;          /* borrowed */
  twin_redis_pool *redis;            /* borrowed */
  twin_llm_client *llm;              /* borrowed; NULL = no LLM stages */
  twin_rerank_mode rerank;           /* when a request asks for a rerank */
  int llm_stage_timeout_ms;          /* budget of self-query, expansion and rerank calls each */
} twin_retriever_config;

typedef struct twin_retrieval_request {
  const char *query;
  int top_k;                         /* candidates per query */
  int expansions;                    /* LLM rephrasings (0 = none) */
  int keep;                          /* chunks returned */
  int rerank;                        /* 0/1 */
  int self_query;                    /* 0/1 */
  const char *author;                /* explicit filter ("" = none): a hard filter */
  const char *doc_type;              /* "" | post | article | code */
  int64_t deadline_ms;               /* time left for the whole retrieval; <= 0 = none */
} twin_retrieval_request;

typedef struct twin_retrieved_chunk {
  char chunk_id[80];
  char doc_id[80];
  float score;                       /* after rerank: the rerank's order score */
  float vector_score;                /* best inner product over the queries */
  char *text;                        /* owned */
  char author[128], title[256], link[512], doc_type[16];
} twin_retrieved_chunk;

#define TWIN_RETRIEVAL_MAX_STAGES 8

typedef struct twin_retrieval_result {
  twin_retrieved_chunk *chunks;      /* [n_chunks] owned, best first */
  int n_chunks;
  char author_filter[128];           /* the filter applied ("" = none) */
  char author_source[16];            /* "request" | "llm" | "rules" | "" */
  char **queries;                    /* [n_queries] the original first, then expansions */
  int n_queries;
  int candidates;                    /* after merge and dedupe */
  struct { const char *stage; double ms; } stages[TWIN_RETRIEVAL_MAX_STAGES];
  int n_stages;
} twin_retrieval_result;

/* Runs the stages. TWIN_EINVAL for bad options, TWIN_ENOTFOUND when an explicit author has no
 * documents, TWIN_EUNAVAILABLE when Redis or the index cannot answer. */
int twin_retrieve(const twin_retriever_config *cfg, const twin_retrieval_request *req,
                  twin_retrieval_result *out, twin_err *err);
void twin_retrieval_result_free(twin_retrieval_result *r);

/* The rule-based author extraction alone ("posts by Ada Lovelace", "Ada Lovelace's view"):
 * fills out (capitalized words); 0 when found. */
int twin_self_query_rules(const char *query, char *out, size_t cap);

#endif
