/* tests/integration/rag_tool.c — rag-tool: drives business-svc's feature pipeline and vector
 * index for the tests, printing JSON on stdout (progress and logs on stderr).
 *   rag-tool [options] read SOURCE...     documents as read, cleaned and chunked (no Redis)
 *   rag-tool [options] ingest SOURCE...   ingest into Redis; the report (exit 1 if any error)
 *   rag-tool [options] delete DOC_ID...   delete documents
 *   rag-tool [options] search QUERY...    load an index from Redis with the follower, search
 *   rag-tool [options] follow             a live follower; commands on stdin, one JSON line
 *                                          out per command: sync [MS] | ids | stats |
 *                                          search {"query":..,"k":..,"authors":[..],"types":[..]} | quit
 * Options: --redis URL (default $REDIS_URL), --encoder hash[:DIM]|MODEL_DIR (default hash:384),
 * --index exact|hnsw|auto, --hnsw-threshold N, --author A, --type T (ingest: defaults; search:
 * filters, repeatable), --k N, --delay-ms N (pause after each ingested item), --redis-timeout-ms N,
 * --fetch-timeout-ms N, --max-bytes N, --max-redirects N, --stream-maxlen N, --sync-timeout-ms N,
 * --post-tokens N, --article-tokens N, --code-tokens N (max chunk sizes). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/chunk_store.h"
#include "business-svc/rag/cleaner.h"
#include "business-svc/rag/embedder.h"
#include "business-svc/rag/index_follower.h"
#include "business-svc/rag/ingest.h"
#include "business-svc/rag/reader.h"
#include "business-svc/rag/text_encoder.h"
#include "business-svc/rag/vector_index.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/util.h"

/* ============================================================================================
 * options
 * ========================================================================================== */

typedef struct tool {
  const char *redis_url;
  const char *encoder_spec;
  twin_index_kind index_kind;
  size_t hnsw_threshold;
  const char *authors[16];
  size_t n_authors;
  unsigned type_mask;
  int default_type;
  size_t k;
  int delay_ms;
  int redis_timeout_ms;
  long fetch_timeout_ms;
  size_t max_bytes;
  long max_redirects;
  size_t stream_maxlen;
  int sync_timeout_ms;
  int max_tokens[TWIN_DOC_TYPE_COUNT];
  const char *command;
  const char **args;
  int n_args;
  /* built */
  twin_embedder *embedder;
  twin_text_encoder encoder;
} tool;

static void usage(void) {
  fprintf(stderr, "usage: rag-tool [options] read|ingest|delete|search|follow ARGS... (see the file head)\n");
}

static int parse_args(tool *t, int argc, char **argv) {
  t->redis_url = getenv("REDIS_URL") ? getenv("REDIS_URL") : "redis://127.0.0.1:6379";
  t->encoder_spec = "hash:384";
  t->index_kind = TWIN_INDEX_EXACT;
  t->default_type = -1;
  t->k = 5;
  t->redis_timeout_ms = 5000;
  t->sync_timeout_ms = 30000;
  t->args = calloc((size_t)argc, sizeof *t->args);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    twin_err err = {0};
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "rag-tool: %s needs a value\n", a); return -1; } i++; } while (0)
    if (strcmp(a, "--redis") == 0) { NEED_VALUE(); t->redis_url = v; }
    else if (strcmp(a, "--encoder") == 0) { NEED_VALUE(); t->encoder_spec = v; }
    else if (strcmp(a, "--index") == 0) {
      NEED_VALUE();
      if (twin_index_kind_parse(v, &t->index_kind, &err)) { fprintf(stderr, "rag-tool: %s\n", err.msg); return -1; }
    } else if (strcmp(a, "--hnsw-threshold") == 0) { NEED_VALUE(); t->hnsw_threshold = strtoull(v, NULL, 10); }
    else if (strcmp(a, "--author") == 0) {
      NEED_VALUE();
      if (t->n_authors < 16) t->authors[t->n_authors++] = v;
    } else if (strcmp(a, "--type") == 0) {
      NEED_VALUE();
      twin_doc_type ty;
      if (twin_doc_type_parse(v, &ty, &err)) { fprintf(stderr, "rag-tool: %s\n", err.msg); return -1; }
      t->type_mask |= 1u << ty;
      t->default_type = (int)ty;
    } else if (strcmp(a, "--k") == 0) { NEED_VALUE(); t->k = strtoull(v, NULL, 10); }
    else if (strcmp(a, "--delay-ms") == 0) { NEED_VALUE(); t->delay_ms = atoi(v); }
    else if (strcmp(a, "--redis-timeout-ms") == 0) { NEED_VALUE(); t->redis_timeout_ms = atoi(v); }
    else if (strcmp(a, "--fetch-timeout-ms") == 0) { NEED_VALUE(); t->fetch_timeout_ms = atol(v); }
    else if (strcmp(a, "--max-bytes") == 0) { NEED_VALUE(); t->max_bytes = strtoull(v, NULL, 10); }
    else if (strcmp(a, "--max-redirects") == 0) { NEED_VALUE(); t->max_redirects = atol(v); }
    else if (strcmp(a, "--stream-maxlen") == 0) { NEED_VALUE(); t->stream_maxlen = strtoull(v, NULL, 10); }
    else if (strcmp(a, "--sync-timeout-ms") == 0) { NEED_VALUE(); t->sync_timeout_ms = atoi(v); }
    else if (strcmp(a, "--post-tokens") == 0) { NEED_VALUE(); t->max_tokens[TWIN_DOC_POST] = atoi(v); }
    else if (strcmp(a, "--article-tokens") == 0) { NEED_VALUE(); t->max_tokens[TWIN_DOC_ARTICLE] = atoi(v); }
    else if (strcmp(a, "--code-tokens") == 0) { NEED_VALUE(); t->max_tokens[TWIN_DOC_CODE] = atoi(v); }
    else if (strncmp(a, "--", 2) == 0) { fprintf(stderr, "rag-tool: unknown option %s\n", a); return -1; }
    else if (!t->command) t->command = a;
    else t->args[t->n_args++] = a;
#undef NEED_VALUE
  }
  if (!t->command) {
    usage();
    return -1;
  }
  return 0;
}

static int open_encoder(tool *t) {
  twin_err err = {0};
  if (strncmp(t->encoder_spec, "hash", 4) == 0) {
    int dim = t->encoder_spec[4] == ':' ? atoi(t->encoder_spec + 5) : 384;
    if (twin_text_encoder_hashing(dim, &t->encoder, &err)) {
      fprintf(stderr, "rag-tool: %s\n", err.msg);
      return -1;
    }
    return 0;
  }
  if (twin_embedder_open(&t->embedder, t->encoder_spec, &err)) {
    fprintf(stderr, "rag-tool: %s\n", err.msg);
    return -1;
  }
  t->encoder = twin_text_encoder_from_embedder(t->embedder);
  return 0;
}

static twin_reader_options reader_options(const tool *t) {
  twin_reader_options r;
  memset(&r, 0, sizeof r);
  r.default_author = t->n_authors ? t->authors[0] : NULL;
  r.type_given = t->default_type >= 0;
  r.default_type = t->default_type >= 0 ? (twin_doc_type)t->default_type : TWIN_DOC_ARTICLE;
  r.fetch.timeout_ms = t->fetch_timeout_ms;
  r.fetch.max_bytes = t->max_bytes;
  r.fetch.max_redirects = t->max_redirects;
  return r;
}

static twin_chunker_options chunker_options(const tool *t) {
  twin_chunker_options c = twin_chunker_default_options();
  for (int ty = 0; ty < TWIN_DOC_TYPE_COUNT; ty++)
    if (t->max_tokens[ty] > 0) {
      c.by_type[ty].max_tokens = t->max_tokens[ty];
      if (c.by_type[ty].overlap_tokens * 2 >= t->max_tokens[ty]) c.by_type[ty].overlap_tokens = t->max_tokens[ty] / 8;
    }
  c.counter = t->encoder.counter;
  return c;
}

static void print_json(cJSON *j) {
  char *s = cJSON_PrintUnformatted(j);
  puts(s ? s : "null");
  fflush(stdout);
  free(s);
}

static int open_redis(const tool *t, twin_redis **r, bool required) {
  twin_redis_options ro = {.url = t->redis_url, .command_timeout_ms = t->redis_timeout_ms,
                           .connect_timeout_ms = 1000, .backoff_initial_ms = 50,
                           .backoff_max_ms = 500, .require_connection = required};
  twin_err err = {0};
  if (twin_redis_open(r, &ro, &err)) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", err.msg);
    print_json(j);
    cJSON_Delete(j);
    fprintf(stderr, "rag-tool: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* ============================================================================================
 * read
 * ========================================================================================== */

typedef struct read_state {
  tool *t;
  cJSON *docs, *errors;
} read_state;

static int on_read_doc(void *ctx, twin_document *doc, const char *where, int code, const char *message) {
  read_state *st = ctx;
  if (!doc) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "source", where);
    cJSON_AddStringToObject(e, "code", twin_err_name(code));
    cJSON_AddStringToObject(e, "error", message);
    cJSON_AddItemToArray(st->errors, e);
    return 0;
  }
  cJSON *d = cJSON_CreateObject();
  cJSON_AddStringToObject(d, "id", doc->id);
  cJSON_AddStringToObject(d, "source", doc->source);
  cJSON_AddStringToObject(d, "title", doc->title);
  cJSON_AddStringToObject(d, "author", doc->author);
  cJSON_AddStringToObject(d, "type", twin_doc_type_name(doc->type));
  cJSON_AddStringToObject(d, "link", doc->link);
  twin_buf clean;
  twin_buf_init(&clean);
  twin_err err = {0};
  if (twin_clean_text(doc->text, doc->text_len, doc->type, &clean, &err) == 0) {
    cJSON_AddStringToObject(d, "text", twin_buf_cstr(&clean));
    twin_chunker_options co = chunker_options(st->t);
    twin_chunk_list list;
    cJSON *chunks = cJSON_AddArrayToObject(d, "chunks");
    if (twin_chunk_text(twin_buf_cstr(&clean), clean.len, doc->type, &co, &list, &err) == 0) {
      for (size_t i = 0; i < list.n; i++) {
        cJSON *c = cJSON_CreateObject();
        char *text = strndup(clean.data + list.items[i].offset, list.items[i].len);
        char id[TWIN_ID_CAP];
        twin_ingest_chunk_id(doc, text, list.items[i].len, id, NULL);
        cJSON_AddStringToObject(c, "id", id);
        cJSON_AddStringToObject(c, "text", text);
        cJSON_AddNumberToObject(c, "tokens", list.items[i].n_tokens);
        cJSON_AddNumberToObject(c, "position", list.items[i].position);
        cJSON_AddItemToArray(chunks, c);
        free(text);
      }
      twin_chunk_list_free(&list);
    } else {
      cJSON_AddStringToObject(d, "error", err.msg);
    }
  } else {
    cJSON_AddStringToObject(d, "error", err.msg);
  }
  twin_buf_free(&clean);
  cJSON_AddItemToArray(st->docs, d);
  twin_document_free(doc);
  free(doc);
  return 0;
}

static int cmd_read(tool *t) {
  read_state st = {t, cJSON_CreateArray(), cJSON_CreateArray()};
  twin_reader_options ro = reader_options(t);
  for (int i = 0; i < t->n_args; i++) {
    twin_err err = {0};
    int rc = twin_read_source(t->args[i], &ro, on_read_doc, &st, &err);
    if (rc) on_read_doc(&st, NULL, t->args[i], rc, err.msg);
  }
  cJSON *out = cJSON_CreateObject();
  cJSON_AddItemToObject(out, "documents", st.docs);
  cJSON_AddItemToObject(out, "errors", st.errors);
  int n_errors = cJSON_GetArraySize(st.errors);
  print_json(out);
  cJSON_Delete(out);
  return n_errors ? 1 : 0;
}

/* ============================================================================================
 * ingest and delete
 * ========================================================================================== */

static void on_progress(void *ctx, const twin_ingest_item *item, const twin_ingest_report *so_far) {
  tool *t = ctx;
  if (item->status)
    fprintf(stderr, "ingest: [%zu] %s: error: %s\n", so_far->n_items, item->source, item->error);
  else
    fprintf(stderr, "ingest: [%zu] %s: document %s: %zu chunks, %zu new, %zu unchanged, %zu removed\n",
            so_far->n_items, item->source, item->doc_id, item->chunks, item->chunks_new,
            item->chunks_unchanged, item->chunks_removed);
  fflush(stderr);
  if (t->delay_ms > 0) twin_sleep_ms(t->delay_ms);
}

static cJSON *report_json(const twin_ingest_report *r) {
  cJSON *out = cJSON_CreateObject();
  cJSON_AddNumberToObject(out, "documents", (double)r->documents);
  cJSON_AddNumberToObject(out, "chunks_new", (double)r->chunks_new);
  cJSON_AddNumberToObject(out, "chunks_unchanged", (double)r->chunks_unchanged);
  cJSON_AddNumberToObject(out, "chunks_removed", (double)r->chunks_removed);
  cJSON_AddNumberToObject(out, "errors", (double)r->errors);
  cJSON *items = cJSON_AddArrayToObject(out, "items");
  for (size_t i = 0; i < r->n_items; i++) {
    const twin_ingest_item *it = &r->items[i];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "source", it->source);
    cJSON_AddStringToObject(j, "doc_id", it->doc_id);
    cJSON_AddStringToObject(j, "title", it->title);
    cJSON_AddStringToObject(j, "status", twin_err_name(it->status));
    if (it->error) cJSON_AddStringToObject(j, "error", it->error);
    cJSON_AddNumberToObject(j, "chunks", (double)it->chunks);
    cJSON_AddNumberToObject(j, "chunks_new", (double)it->chunks_new);
    cJSON_AddNumberToObject(j, "chunks_unchanged", (double)it->chunks_unchanged);
    cJSON_AddNumberToObject(j, "chunks_removed", (double)it->chunks_removed);
    cJSON_AddItemToArray(items, j);
  }
  return out;
}

static int cmd_ingest(tool *t) {
  twin_redis *r = NULL;
  if (open_redis(t, &r, false)) return 2;
  twin_ingest_options o = twin_ingest_default_options();
  o.encoder = &t->encoder;
  o.redis = r;
  o.chunker = chunker_options(t);
  o.reader = reader_options(t);
  o.stream_maxlen = t->stream_maxlen;
  o.progress = on_progress;
  o.progress_ctx = t;
  twin_ingest_report rep;
  twin_err err = {0};
  int64_t t0 = twin_time_mono_us();
  int rc = twin_ingest_sources(&o, t->args, (size_t)t->n_args, &rep, &err);
  double secs = (double)(twin_time_mono_us() - t0) / 1e6;
  if (rc) {
    fprintf(stderr, "rag-tool: %s\n", err.msg);
    twin_redis_close(r);
    return 2;
  }
  cJSON *out = report_json(&rep);
  cJSON_AddNumberToObject(out, "seconds", secs);
  print_json(out);
  cJSON_Delete(out);
  int status = rep.errors ? 1 : 0;
  twin_ingest_report_free(&rep);
  twin_redis_close(r);
  return status;
}

static int cmd_delete(tool *t) {
  twin_redis *r = NULL;
  if (open_redis(t, &r, false)) return 2;
  twin_ingest_options o = twin_ingest_default_options();
  o.redis = r;
  o.stream_maxlen = t->stream_maxlen;
  cJSON *out = cJSON_CreateObject();
  cJSON *deleted = cJSON_AddArrayToObject(out, "deleted");
  cJSON *errors = cJSON_AddArrayToObject(out, "errors");
  for (int i = 0; i < t->n_args; i++) {
    size_t removed = 0;
    twin_err err = {0};
    int rc = twin_ingest_delete_document(&o, t->args[i], &removed, &err);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "doc_id", t->args[i]);
    if (rc) {
      cJSON_AddStringToObject(j, "code", twin_err_name(rc));
      cJSON_AddStringToObject(j, "error", err.msg);
      cJSON_AddItemToArray(errors, j);
    } else {
      cJSON_AddNumberToObject(j, "chunks", (double)removed);
      cJSON_AddItemToArray(deleted, j);
    }
  }
  int status = cJSON_GetArraySize(errors) ? 1 : 0;
  print_json(out);
  cJSON_Delete(out);
  twin_redis_close(r);
  return status;
}

/* ============================================================================================
 * search and follow
 * ========================================================================================== */

typedef struct live {
  twin_vector_index *index;
  twin_index_follower *follower;
  twin_redis *lookup; /* for doc ids and texts of hits */
} live;

static int start_live(tool *t, live *l) {
  memset(l, 0, sizeof *l);
  twin_vector_index_options io = {.dim = t->encoder.dim, .kind = t->index_kind,
                                  .hnsw_threshold = t->hnsw_threshold};
  twin_err err = {0};
  if (twin_vector_index_create(&l->index, &io, &err)) {
    fprintf(stderr, "rag-tool: %s\n", err.msg);
    return -1;
  }
  twin_index_follower_options fo = {.redis_url = t->redis_url, .block_ms = 200};
  if (twin_index_follower_start(&l->follower, l->index, &fo, &err)) {
    fprintf(stderr, "rag-tool: %s\n", err.msg);
    twin_vector_index_destroy(l->index);
    return -1;
  }
  if (open_redis(t, &l->lookup, false)) {
    twin_index_follower_stop(l->follower);
    twin_vector_index_destroy(l->index);
    return -1;
  }
  return 0;
}

static void stop_live(live *l) {
  twin_index_follower_stop(l->follower);
  twin_vector_index_destroy(l->index);
  twin_redis_close(l->lookup);
}

static cJSON *search_json(tool *t, live *l, const char *query, size_t k, const char *const *authors,
                          size_t n_authors, unsigned type_mask) {
  cJSON *out = cJSON_CreateObject();
  cJSON_AddStringToObject(out, "query", query);
  float *q = malloc((size_t)t->encoder.dim * sizeof *q);
  twin_index_hit *hits = calloc(k ? k : 1, sizeof *hits);
  twin_err err = {0};
  const char *texts[1] = {query};
  size_t n_hits = 0;
  twin_index_filter f = {authors, n_authors, type_mask};
  int rc = t->encoder.embed(t->encoder.ctx, texts, 1, q, &err);
  if (!rc) rc = twin_vector_index_search(l->index, q, 1, k, &f, hits, &n_hits, &err);
  if (rc) {
    cJSON_AddStringToObject(out, "error", err.msg);
  } else {
    cJSON *arr = cJSON_AddArrayToObject(out, "hits");
    for (size_t i = 0; i < n_hits; i++) {
      cJSON *h = cJSON_CreateObject();
      cJSON_AddStringToObject(h, "chunk_id", hits[i].chunk_id);
      cJSON_AddNumberToObject(h, "score", hits[i].score);
      redisReply *rep = NULL;
      if (twin_redis_command(l->lookup, &rep, NULL, "HMGET " TWIN_KEY_CHUNK_PREFIX "%s doc_id author type text",
                             hits[i].chunk_id) == 0) {
        static const char *const names[] = {"doc_id", "author", "type", "text"};
        for (size_t e = 0; e < 4 && e < rep->elements; e++)
          if (rep->element[e]->type == REDIS_REPLY_STRING)
            cJSON_AddStringToObject(h, names[e], rep->element[e]->str);
        freeReplyObject(rep);
      }
      cJSON_AddItemToArray(arr, h);
    }
  }
  free(q);
  free(hits);
  return out;
}

static cJSON *stats_json(live *l) {
  twin_index_follower_stats fs;
  twin_index_follower_get_stats(l->follower, &fs);
  twin_vector_index_stats is;
  twin_vector_index_get_stats(l->index, &is);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddBoolToObject(j, "loaded", fs.loaded);
  cJSON_AddBoolToObject(j, "connected", fs.connected);
  cJSON_AddStringToObject(j, "last_id", fs.last_id);
  cJSON_AddNumberToObject(j, "loads", (double)fs.loads);
  cJSON_AddNumberToObject(j, "adds", (double)fs.adds);
  cJSON_AddNumberToObject(j, "deletes", (double)fs.deletes);
  cJSON_AddNumberToObject(j, "skipped", (double)fs.skipped);
  cJSON_AddNumberToObject(j, "errors", (double)fs.errors);
  cJSON_AddStringToObject(j, "last_error", fs.last_error);
  cJSON_AddNumberToObject(j, "size", (double)is.live);
  cJSON_AddNumberToObject(j, "tombstones", (double)is.tombstones);
  cJSON_AddStringToObject(j, "kind", twin_index_kind_name(is.current));
  return j;
}

static int cmd_search(tool *t) {
  live l;
  if (start_live(t, &l)) return 2;
  twin_err err = {0};
  int status = 0;
  cJSON *out = cJSON_CreateObject();
  if (twin_index_follower_wait_synced(l.follower, t->sync_timeout_ms, &err)) {
    cJSON_AddStringToObject(out, "error", err.msg);
    status = 2;
  } else {
    cJSON_AddNumberToObject(out, "index_size", (double)twin_vector_index_size(l.index));
    cJSON *results = cJSON_AddArrayToObject(out, "results");
    for (int i = 0; i < t->n_args; i++)
      cJSON_AddItemToArray(results, search_json(t, &l, t->args[i], t->k, t->authors, t->n_authors, t->type_mask));
  }
  print_json(out);
  cJSON_Delete(out);
  stop_live(&l);
  return status;
}

static int cmd_follow(tool *t) {
  live l;
  if (start_live(t, &l)) return 2;
  printf("{\"ready\":true}\n");
  fflush(stdout);
  char line[65536];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = '\0';
    cJSON *out = NULL;
    if (strncmp(line, "sync", 4) == 0) {
      int ms = line[4] ? atoi(line + 5) : t->sync_timeout_ms;
      twin_err err = {0};
      int rc = twin_index_follower_wait_synced(l.follower, ms, &err);
      out = stats_json(&l);
      cJSON_AddBoolToObject(out, "synced", rc == 0);
      if (rc) cJSON_AddStringToObject(out, "error", err.msg);
    } else if (strcmp(line, "stats") == 0) {
      out = stats_json(&l);
    } else if (strcmp(line, "ids") == 0) {
      char **ids = NULL;
      size_t n = 0;
      out = cJSON_CreateObject();
      if (twin_vector_index_list(l.index, &ids, &n, NULL) == 0) {
        cJSON *arr = cJSON_AddArrayToObject(out, "ids");
        for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(ids[i]));
        twin_vector_index_free_ids(ids, n);
      }
    } else if (strncmp(line, "search ", 7) == 0) {
      cJSON *req = cJSON_Parse(line + 7);
      const cJSON *query = cJSON_GetObjectItemCaseSensitive(req, "query");
      if (!cJSON_IsString(query)) {
        out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "error", "search needs {\"query\": string}");
      } else {
        const cJSON *kj = cJSON_GetObjectItemCaseSensitive(req, "k");
        size_t k = cJSON_IsNumber(kj) ? (size_t)kj->valuedouble : t->k;
        const char *authors[16];
        size_t n_authors = 0;
        const cJSON *a, *ty;
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(req, "authors"))
          if (cJSON_IsString(a) && n_authors < 16) authors[n_authors++] = a->valuestring;
        unsigned mask = 0;
        cJSON_ArrayForEach(ty, cJSON_GetObjectItemCaseSensitive(req, "types")) {
          twin_doc_type d;
          if (cJSON_IsString(ty) && twin_doc_type_parse(ty->valuestring, &d, NULL) == 0) mask |= 1u << d;
        }
        out = search_json(t, &l, query->valuestring, k, authors, n_authors, mask);
      }
      cJSON_Delete(req);
    } else if (strcmp(line, "quit") == 0) {
      break;
    } else {
      out = cJSON_CreateObject();
      cJSON_AddStringToObject(out, "error", "unknown command");
    }
    print_json(out);
    cJSON_Delete(out);
  }
  stop_live(&l);
  return 0;
}

int main(int argc, char **argv) {
  twin_log_init("rag-tool", TWIN_LOG_WARN, 0);
  tool t;
  memset(&t, 0, sizeof t);
  if (parse_args(&t, argc, argv)) {
    free(t.args);
    return 2;
  }
  int rc;
  if (open_encoder(&t)) {
    rc = 2;
  } else if (strcmp(t.command, "read") == 0) {
    rc = cmd_read(&t);
  } else if (strcmp(t.command, "ingest") == 0) {
    rc = cmd_ingest(&t);
  } else if (strcmp(t.command, "delete") == 0) {
    rc = cmd_delete(&t);
  } else if (strcmp(t.command, "search") == 0) {
    rc = cmd_search(&t);
  } else if (strcmp(t.command, "follow") == 0) {
    rc = cmd_follow(&t);
  } else {
    usage();
    rc = 2;
  }
  twin_embedder_destroy(t.embedder);
  free(t.args);
  return rc;
}
