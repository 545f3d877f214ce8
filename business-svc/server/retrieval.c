/* business-svc/server/retrieval.c — the retrieval stages (see retrieval.h). LLM stages share
 * one helper that asks for a short completion under a time budget and never fails the request:
 * a slow or failing LLM only means the stage is skipped. */
#include "business-svc/server/retrieval.h"

#include <ctype.h>
#include <math.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "business-svc/rag/chunk_store.h"
#include "business-svc/rag/document.h"
#include "common/log.h"
#include "common/util.h"

#define MAX_QUERIES 8
#define MAX_CANDIDATES 256

/* ==== helpers =============================================================================== */

static void add_stage(twin_retrieval_result *r, const char *stage, int64_t t0_us) {
  if (r->n_stages < TWIN_RETRIEVAL_MAX_STAGES) {
    r->stages[r->n_stages].stage = stage;
    r->stages[r->n_stages].ms = (twin_time_mono_us() - t0_us) / 1e3;
    r->n_stages++;
  }
}

static int64_t budget(int64_t deadline_at_ms, int stage_ms) {
  if (deadline_at_ms <= 0) return stage_ms;
  int64_t left = deadline_at_ms - twin_time_mono_ms();
  return left < stage_ms ? left : stage_ms;
}

/* A short greedy completion for an internal stage; NULL when the LLM is absent, slow or fails. */
static char *llm_short(const twin_retriever_config *cfg, const char *system, const char *user,
                       int max_tokens, int64_t deadline_at_ms) {
  if (!cfg->llm) return NULL;
  int64_t ms = budget(deadline_at_ms, cfg->llm_stage_timeout_ms);
  if (ms < 50) return NULL;
  twin_llm_message msgs[2] = {{"system", system}, {"user", user}};
  twin_llm_request req = {.messages = msgs, .n_messages = 2, .max_new_tokens = max_tokens,
                          .deadline_ms = ms};
  req.sampling.has_temperature = 1;
  req.sampling.temperature = 0;
  char *text = NULL;
  twin_llm_result res;
  twin_err err;
  if (twin_llm_complete(cfg->llm, &req, &text, &res, &err) != 0) {
    LOG_DEBUG("retrieval: LLM stage skipped: %s", err.msg);
    return NULL;
  }
  return text;
}

static int contains_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  if (!n) return 0;
  for (const char *p = hay; *p; p++)
    if (strncasecmp(p, needle, n) == 0) return 1;
  return 0;
}

static void trim(char *s) {
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
  size_t k = 0;
  while (s[k] && (isspace((unsigned char)s[k]) || s[k] == '"' || s[k] == '\'')) k++;
  memmove(s, s + k, strlen(s + k) + 1);
  n = strlen(s);
  while (n && (s[n - 1] == '"' || s[n - 1] == '\'' || s[n - 1] == '.')) s[--n] = 0;
}

/* ==== self-query ============================================================================ */

/* Capitalized words (2..4 of them, or one) right after a marker like "by" or before "'s". */
int twin_self_query_rules(const char *query, char *out, size_t cap) {
  static const char *markers[] = {"written by ", "posted by ", "posts by ", "articles by ", "by ",
                                  "from ", "author "};
  for (size_t m = 0; m < sizeof markers / sizeof *markers; m++) {
    for (const char *p = query; (p = strcasestr(p, markers[m])); p++) {
      if (p != query && isalnum((unsigned char)p[-1])) continue;
      const char *w = p + strlen(markers[m]);
      size_t len = 0;
      int words = 0;
      while (words < 4 && isupper((unsigned char)w[len])) {
        size_t start = len;
        while (w[len] && (isalpha((unsigned char)w[len]) || w[len] == '-' || w[len] == '.')) len++;
        if (len == start) break;
        words++;
        if (w[len] == ' ' && isupper((unsigned char)w[len + 1])) len++;
        else break;
      }
      if (words > 0 && len > 1) {
        snprintf(out, cap, "%.*s", (int)len, w);
        trim(out);
        return 0;
      }
    }
  }
  /* "Ada Lovelace's": up to three capitalized words before the possessive */
  for (const char *p = strstr(query, "'s"); p; p = strstr(p + 1, "'s")) {
    const char *b = p;
    int words = 0;
    while (words < 3) {
      const char *s = b;
      while (s > query && isalpha((unsigned char)s[-1])) s--;
      if (s == b || !isupper((unsigned char)*s)) break;
      words++;
      b = s;
      if (b - 2 < query || b[-1] != ' ' || !isalpha((unsigned char)b[-2])) break;
      const char *prev = b - 1;
      while (prev > query && isalpha((unsigned char)prev[-1])) prev--;
      if (!isupper((unsigned char)*prev)) break;
      b = b - 1; /* the space: the next round takes the previous word */
    }
    if (words > 0) {
      snprintf(out, cap, "%.*s", (int)(p - b), b);
      trim(out);
      return 0;
    }
  }
  return -1;
}

static void self_query(const twin_retriever_config *cfg, const twin_retrieval_request *req,
                       int64_t deadline, twin_retrieval_result *out) {
  char *answer = llm_short(cfg,
                           "You extract metadata. If the question asks about a specific person "
                           "(the author of some writing), reply with exactly one line "
                           "\"AUTHOR: <full name>\". Otherwise reply \"AUTHOR: NONE\".",
                           req->query, 16, deadline);
  if (answer) {
    char *line = strstr(answer, "AUTHOR:");
    if (line) {
      char name[128];
      snprintf(name, sizeof name, "%s", line + 7);
      char *nl = strchr(name, '\n');
      if (nl) *nl = 0;
      trim(name);
      /* only a name the user actually wrote: the model must not invent a filter */
      if (name[0] && strcasecmp(name, "NONE") != 0 && contains_ci(req->query, name)) {
        snprintf(out->author_filter, sizeof out->author_filter, "%s", name);
        snprintf(out->author_source, sizeof out->author_source, "llm");
      }
    }
    free(answer);
  }
  if (!out->author_filter[0] && twin_self_query_rules(req->query, out->author_filter, sizeof out->author_filter) == 0)
    snprintf(out->author_source, sizeof out->author_source, "rules");
}

/* ==== expansion ============================================================================= */

static void expand(const twin_retriever_config *cfg, const twin_retrieval_request *req,
                   int64_t deadline, twin_retrieval_result *out) {
  int n = req->expansions < MAX_QUERIES - 1 ? req->expansions : MAX_QUERIES - 1;
  char system[256];
  snprintf(system, sizeof system,
           "Rewrite the user's question in %d different ways to help a search engine. "
           "Reply with one rewritten question per line and nothing else.", n);
  char *answer = llm_short(cfg, system, req->query, 24 * n + 16, deadline);
  if (!answer) return;
  char *save = NULL;
  for (char *line = strtok_r(answer, "\n", &save); line && out->n_queries < n + 1;
       line = strtok_r(NULL, "\n", &save)) {
    while (*line && (isdigit((unsigned char)*line) || *line == '.' || *line == ')' || *line == '-' ||
                     *line == '*' || isspace((unsigned char)*line)))
      line++;
    trim(line);
    if (strlen(line) < 8 || twin_utf8_validate(line, strlen(line)) != strlen(line)) continue;
    int dup = 0;
    for (int i = 0; i < out->n_queries; i++) dup |= strcasecmp(out->queries[i], line) == 0;
    if (!dup) out->queries[out->n_queries++] = twin_strdup(line);
  }
  free(answer);
}

/* ==== search ================================================================================ */

typedef struct search_job {
  twin_vector_index *index;
  const float *query;               /* [dim] */
  size_t k;
  const twin_index_filter *filter;
  twin_index_hit *hits;             /* [k] */
  size_t n_hits;
  int rc;
  twin_err err;
} search_job;

static void *search_thread(void *arg) {
  search_job *j = arg;
  j->rc = twin_vector_index_search(j->index, j->query, 1, j->k, j->filter, j->hits, &j->n_hits, &j->err);
  return NULL;
}

/* One search per query, in parallel; merged into out (best score per chunk id). */
static int search_all(const twin_retriever_config *cfg, const float *vecs, int nq, int dim, size_t k,
                      const twin_index_filter *filter, twin_retrieved_chunk *cands, int *n_cands,
                      twin_err *err) {
  *n_cands = 0;
  if (nq < 1 || nq > MAX_QUERIES) return twin_err_set(err, TWIN_EINVAL, "search: %d queries", nq);
  search_job jobs[MAX_QUERIES];
  memset(jobs, 0, sizeof jobs);
  pthread_t th[MAX_QUERIES] = {0};
  twin_index_hit *hits = calloc((size_t)nq * k, sizeof *hits);
  if (!hits) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  for (int q = 0; q < nq; q++) {
    jobs[q] = (search_job){.index = cfg->index, .query = vecs + (size_t)q * dim, .k = k,
                           .filter = filter, .hits = hits + (size_t)q * k};
    if (q > 0 && pthread_create(&th[q], NULL, search_thread, &jobs[q]) != 0) search_thread(&jobs[q]), th[q] = 0;
  }
  search_thread(&jobs[0]);
  for (int q = 1; q < nq; q++)
    if (th[q]) pthread_join(th[q], NULL);
  int rc = 0;
  *n_cands = 0;
  for (int q = 0; q < nq && !rc; q++) {
    if (jobs[q].rc) {
      rc = jobs[q].rc;
      *err = jobs[q].err;
      break;
    }
    for (size_t i = 0; i < jobs[q].n_hits; i++) {
      const twin_index_hit *h = &jobs[q].hits[i];
      int found = -1;
      for (int c = 0; c < *n_cands; c++)
        if (!strcmp(cands[c].chunk_id, h->chunk_id)) found = c;
      if (found >= 0) {
        if (h->score > cands[found].vector_score) cands[found].vector_score = h->score;
      } else if (*n_cands < MAX_CANDIDATES) {
        twin_retrieved_chunk *c = &cands[(*n_cands)++];
        memset(c, 0, sizeof *c);
        snprintf(c->chunk_id, sizeof c->chunk_id, "%s", h->chunk_id);
        c->vector_score = h->score;
      }
    }
  }
  free(hits);
  return rc;
}

static int by_score_desc(const void *a, const void *b) {
  float x = ((const twin_retrieved_chunk *)a)->score, y = ((const twin_retrieved_chunk *)b)->score;
  return (x < y) - (x > y);
}

/* Text and metadata of every candidate in one pipelined round trip. Candidates gone from
 * Redis since the index saw them are dropped. */
static int fetch_chunks(const twin_retriever_config *cfg, twin_retrieved_chunk *c, int *n, twin_err *err) {
  twin_redis *r;
  int rc = twin_redis_pool_acquire(cfg->redis, 2000, &r, err);
  if (rc) return rc;
  for (int i = 0; i < *n && !rc; i++) {
    char key[128];
    snprintf(key, sizeof key, TWIN_KEY_CHUNK_PREFIX "%s", c[i].chunk_id);
    const char *argv[] = {"HMGET", key, "text", "doc_id", "author", "type", "title", "link"};
    rc = twin_redis_append_argv(r, 8, argv, NULL, err);
  }
  redisReply **replies = rc ? NULL : calloc((size_t)*n, sizeof *replies);
  if (!rc && *n) rc = replies ? twin_redis_pipeline_read(r, replies, (size_t)*n, err) : twin_err_set(err, TWIN_ENOMEM, "out of memory");
  twin_redis_pool_release(cfg->redis, r);
  if (rc) {
    free(replies);
    return rc;
  }
  int k = 0;
  for (int i = 0; i < *n; i++) {
    redisReply *x = replies[i];
    if (x && x->type == REDIS_REPLY_ARRAY && x->elements == 6 && x->element[0]->type == REDIS_REPLY_STRING) {
      twin_retrieved_chunk t = c[i];
      t.text = twin_strdup(x->element[0]->str);
      const char *fields[5];
      for (int f = 0; f < 5; f++)
        fields[f] = x->element[f + 1]->type == REDIS_REPLY_STRING ? x->element[f + 1]->str : "";
      snprintf(t.doc_id, sizeof t.doc_id, "%s", fields[0]);
      snprintf(t.author, sizeof t.author, "%s", fields[1]);
      snprintf(t.doc_type, sizeof t.doc_type, "%s", fields[2]);
      snprintf(t.title, sizeof t.title, "%s", fields[3]);
      snprintf(t.link, sizeof t.link, "%s", fields[4]);
      c[k++] = t;
    }
  }
  twin_redis_free_replies(replies, (size_t)*n);
  free(replies);
  *n = k;
  return 0;
}

/* ==== rerank ================================================================================ */

/* The LLM lists the relevant passages, most relevant first; its order becomes the score.
 * Returns 0 when it produced an order. */
static int rerank_llm(const twin_retriever_config *cfg, const char *query, twin_retrieved_chunk *c, int n,
                      int64_t deadline) {
  twin_buf user;
  twin_buf_init(&user);
  twin_buf_printf(&user, "Question: %s\n\nPassages:\n", query);
  for (int i = 0; i < n; i++) {
    size_t len = strlen(c[i].text);
    if (len > 300) len = twin_utf8_complete_len(c[i].text, 300);
    twin_buf_printf(&user, "[%d] %.*s\n", i + 1, (int)len, c[i].text);
  }
  char *answer = llm_short(cfg,
                           "You rank passages by how well they answer the question. Reply with the "
                           "numbers of the relevant passages, most relevant first, separated by "
                           "commas, and nothing else.",
                           twin_buf_cstr(&user), 4 * n + 8, deadline);
  twin_buf_free(&user);
  if (!answer) return -1;
  int rank = 0;
  for (int i = 0; i < n; i++) c[i].score = -1.0f + c[i].vector_score * 0.5f; /* unranked: below */
  for (char *p = answer; *p;) {
    if (!isdigit((unsigned char)*p)) {
      p++;
      continue;
    }
    long v = strtol(p, &p, 10);
    if (v >= 1 && v <= n && c[v - 1].score < 0) c[v - 1].score = 1.0f - (float)rank++ / (float)(n + 1);
  }
  free(answer);
  return rank > 0 ? 0 : -1;
}

/* Re-scores by the original query alone (the merge kept the best over every rephrasing). */
static void rerank_embedding(const twin_retriever_config *cfg, const float *qvec, int dim,
                             twin_retrieved_chunk *c, int n) {
  float *v = malloc(sizeof(float) * (size_t)dim);
  for (int i = 0; v && i < n; i++) {
    if (twin_vector_index_get(cfg->index, c[i].chunk_id, v, NULL) != 0) {
      c[i].score = c[i].vector_score;
      continue;
    }
    double dot = 0, qn = 0;
    for (int d = 0; d < dim; d++) {
      dot += (double)v[d] * qvec[d];
      qn += (double)qvec[d] * qvec[d];
    }
    c[i].score = qn > 0 ? (float)(dot / sqrt(qn)) : c[i].vector_score;
  }
  free(v);
}

/* ==== the pipeline ========================================================================== */

int twin_retrieve(const twin_retriever_config *cfg, const twin_retrieval_request *req,
                  twin_retrieval_result *out, twin_err *err) {
  memset(out, 0, sizeof *out);
  if (req->top_k < 1 || req->top_k > 100)
    return twin_err_set(err, TWIN_EINVAL, "retrieval.top_k: %d is outside [1, 100]", req->top_k);
  if (req->keep < 1 || req->keep > 50)
    return twin_err_set(err, TWIN_EINVAL, "retrieval.keep: %d is outside [1, 50]", req->keep);
  if (req->expansions < 0 || req->expansions > MAX_QUERIES - 1)
    return twin_err_set(err, TWIN_EINVAL, "retrieval.expansions: %d is outside [0, %d]", req->expansions, MAX_QUERIES - 1);
  unsigned type_mask = 0;
  if (req->doc_type && *req->doc_type) {
    twin_doc_type t;
    if (twin_doc_type_parse(req->doc_type, &t, NULL) != 0)
      return twin_err_set(err, TWIN_EINVAL, "retrieval.doc_type: '%s' is not post, article or code", req->doc_type);
    type_mask = 1u << t;
  }
  int64_t deadline = req->deadline_ms > 0 ? twin_time_mono_ms() + req->deadline_ms : 0;
  out->queries = calloc(MAX_QUERIES, sizeof *out->queries);
  if (!out->queries) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  out->queries[out->n_queries++] = twin_strdup(req->query);

  int64_t t = twin_time_mono_us();
  if (req->author && *req->author) {
    snprintf(out->author_filter, sizeof out->author_filter, "%s", req->author);
    snprintf(out->author_source, sizeof out->author_source, "request");
  } else if (req->self_query) {
    self_query(cfg, req, deadline, out);
    add_stage(out, "self_query", t);
  }
  if (req->expansions > 0) {
    t = twin_time_mono_us();
    expand(cfg, req, deadline, out);
    add_stage(out, "expansion", t);
  }

  t = twin_time_mono_us();
  int dim = twin_embedder_dim(cfg->embedder);
  float *vecs = malloc(sizeof(float) * (size_t)dim * (size_t)out->n_queries);
  if (!vecs) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  int rc = twin_embedder_embed(cfg->embedder, (const char *const *)out->queries, (size_t)out->n_queries, vecs, err);
  add_stage(out, "embed", t);
  if (rc) {
    free(vecs);
    return rc;
  }

  t = twin_time_mono_us();
  twin_retrieved_chunk *cands = calloc(MAX_CANDIDATES, sizeof *cands);
  int n = 0;
  const char *authors[1] = {out->author_filter};
  twin_index_filter filter = {.authors = authors, .n_authors = out->author_filter[0] ? 1 : 0, .type_mask = type_mask};
  rc = cands ? search_all(cfg, vecs, out->n_queries, dim, (size_t)req->top_k, &filter, cands, &n, err)
             : twin_err_set(err, TWIN_ENOMEM, "out of memory");
  if (!rc && n == 0 && out->author_filter[0]) {
    if (!strcmp(out->author_source, "request")) {
      rc = twin_err_set(err, TWIN_ENOTFOUND, "retrieval.author: no documents by '%s'", out->author_filter);
    } else { /* a filter guessed from the query is only a hint */
      LOG_DEBUG("retrieval: no chunks by '%s'; searching without the filter", out->author_filter);
      out->author_filter[0] = 0;
      out->author_source[0] = 0;
      filter.n_authors = 0;
      rc = search_all(cfg, vecs, out->n_queries, dim, (size_t)req->top_k, &filter, cands, &n, err);
    }
  }
  add_stage(out, "search", t);
  if (!rc) {
    t = twin_time_mono_us();
    rc = fetch_chunks(cfg, cands, &n, err);
    add_stage(out, "fetch", t);
  }
  if (rc) {
    for (int i = 0; i < n; i++) free(cands[i].text);
    free(cands);
    free(vecs);
    return rc;
  }
  out->candidates = n;

  for (int i = 0; i < n; i++) cands[i].score = cands[i].vector_score;
  if (req->rerank && n > 1 && cfg->rerank != TWIN_RERANK_NONE) {
    t = twin_time_mono_us();
    int done = cfg->rerank == TWIN_RERANK_LLM ? rerank_llm(cfg, req->query, cands, n, deadline) : -1;
    if (done != 0) rerank_embedding(cfg, vecs, dim, cands, n);
    add_stage(out, "rerank", t);
  }
  qsort(cands, (size_t)n, sizeof *cands, by_score_desc);
  for (int i = req->keep; i < n; i++) free(cands[i].text);
  out->n_chunks = n < req->keep ? n : req->keep;
  out->chunks = cands;
  free(vecs);
  return 0;
}

void twin_retrieval_result_free(twin_retrieval_result *r) {
  for (int i = 0; i < r->n_chunks; i++) free(r->chunks[i].text);
  free(r->chunks);
  for (int i = 0; i < r->n_queries; i++) free(r->queries[i]);
  free(r->queries);
  memset(r, 0, sizeof *r);
}
