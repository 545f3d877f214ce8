/* business-svc/rag/ingest.c — the feature pipeline of rag/ingest.h. One document at a time:
 * clean, chunk, hash the chunks, read which of them Redis has (no WATCH yet), embed only the
 * new ones, then WATCH the document's set, read it again and commit the difference in one
 * MULTI/EXEC, retrying on a WATCH conflict (embeddings are kept across tries). */
#include "business-svc/rag/ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/chunk_store.h"
#include "business-svc/rag/cleaner.h"
#include "common/log.h"
#include "common/util.h"

/* ============================================================================================
 * options and the report
 * ========================================================================================== */

twin_ingest_options twin_ingest_default_options(void) {
  twin_ingest_options o;
  memset(&o, 0, sizeof o);
  o.chunker = twin_chunker_default_options();
  o.embed_batch = 32;
  return o;
}

void twin_ingest_report_free(twin_ingest_report *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n_items; i++) {
    free(r->items[i].source);
    free(r->items[i].title);
    free(r->items[i].error);
  }
  free(r->items);
  memset(r, 0, sizeof *r);
}

typedef struct ingest_run {
  const twin_ingest_options *opts;
  twin_chunker_options chunker; /* with the encoder's counter and limit */
  twin_ingest_report *report;
  size_t cap;
  int fatal; /* out of memory recording results */
} ingest_run;

static void record(ingest_run *run, const twin_ingest_item *item) {
  twin_ingest_report *r = run->report;
  if (r->n_items == run->cap) {
    size_t cap = run->cap ? run->cap * 2 : 16;
    twin_ingest_item *items = realloc(r->items, cap * sizeof *items);
    if (!items) {
      run->fatal = TWIN_ENOMEM;
      return;
    }
    r->items = items;
    run->cap = cap;
  }
  twin_ingest_item *dst = &r->items[r->n_items];
  *dst = *item;
  dst->source = strdup(item->source ? item->source : "");
  dst->title = strdup(item->title ? item->title : "");
  dst->error = item->error ? strdup(item->error) : NULL;
  if (!dst->source || !dst->title || (item->error && !dst->error)) {
    free(dst->source);
    free(dst->title);
    free(dst->error);
    run->fatal = TWIN_ENOMEM;
    return;
  }
  r->n_items++;
  if (item->status) {
    r->errors++;
  } else {
    r->documents++;
    r->chunks_new += item->chunks_new;
    r->chunks_unchanged += item->chunks_unchanged;
    r->chunks_removed += item->chunks_removed;
  }
  if (run->opts->progress) run->opts->progress(run->opts->progress_ctx, dst, r);
}

static void record_error(ingest_run *run, const char *source, const char *doc_id,
                         const char *title, int status, const char *message) {
  twin_ingest_item item;
  memset(&item, 0, sizeof item);
  item.source = (char *)source;
  if (doc_id) twin_strlcpy(item.doc_id, doc_id, sizeof item.doc_id);
  item.title = (char *)title;
  item.status = status ? status : TWIN_EINTERNAL;
  item.error = (char *)(message && message[0] ? message : twin_err_name(item.status));
  LOG_WARN("ingest: %s", item.error);
  record(run, &item);
}

/* ============================================================================================
 * chunk ids
 * ========================================================================================== */

int twin_ingest_chunk_id(const twin_document *doc, const char *text, size_t len,
                         char out[TWIN_ID_CAP], twin_err *err) {
  twin_buf b;
  twin_buf_init(&b);
  const char sep = '\x1f';
  const char *type = twin_doc_type_name(doc->type);
  const char *fields[] = {doc->id, doc->author, type ? type : "", doc->title, doc->link};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    twin_buf_puts(&b, fields[i] ? fields[i] : "");
    twin_buf_append(&b, &sep, 1);
  }
  twin_buf_append(&b, text, len);
  if (b.failed) {
    twin_buf_free(&b);
    return twin_err_set(err, TWIN_ENOMEM, "out of memory hashing a chunk");
  }
  uint8_t digest[32];
  int rc = twin_sha256(b.data, b.len, digest, err);
  twin_buf_free(&b);
  if (rc) return rc;
  twin_hex_encode(digest, 16, out);
  return 0;
}

/* ============================================================================================
 * one document
 * ========================================================================================== */

typedef struct doc_chunks {
  size_t n;                   /* distinct chunks */
  char (*ids)[TWIN_ID_CAP];   /* [n] */
  char **texts;               /* [n] NUL-terminated copies */
  size_t *lens;               /* [n] */
  int *positions, *tokens;    /* [n] */
  float *vectors;             /* [n][dim] */
  bool *embedded;             /* [n] */
  bool *is_new;               /* [n] scratch of one attempt */
  char **sorted;              /* [n] the ids (pointers into ids), sorted */
} doc_chunks;

static void doc_chunks_free(doc_chunks *c) {
  for (size_t i = 0; c->texts && i < c->n; i++) free(c->texts[i]);
  free(c->ids);
  free(c->texts);
  free(c->lens);
  free(c->positions);
  free(c->tokens);
  free(c->vectors);
  free(c->embedded);
  free(c->is_new);
  free(c->sorted);
  memset(c, 0, sizeof *c);
}

static int compare_ids(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool id_in(char **sorted, size_t n, const char *id) {
  return n && bsearch(&id, sorted, n, sizeof *sorted, compare_ids) != NULL;
}

/* Clean + chunk + hash: fills c with the document's distinct chunks. */
static int prepare_chunks(ingest_run *run, const twin_document *doc, doc_chunks *c, twin_err *err) {
  memset(c, 0, sizeof *c);
  twin_buf clean;
  twin_buf_init(&clean);
  int rc = twin_clean_text(doc->text, doc->text_len, doc->type, &clean, err);
  twin_chunk_list list = {0};
  if (!rc) rc = twin_chunk_text(twin_buf_cstr(&clean), clean.len, doc->type, &run->chunker, &list, err);
  if (!rc && list.n == 0)
    rc = twin_err_set(err, TWIN_EINVAL, "no text left after cleaning");
  int dim = run->opts->encoder->dim;
  if (!rc) {
    c->ids = calloc(list.n, sizeof *c->ids);
    c->texts = calloc(list.n, sizeof *c->texts);
    c->lens = calloc(list.n, sizeof *c->lens);
    c->positions = calloc(list.n, sizeof *c->positions);
    c->tokens = calloc(list.n, sizeof *c->tokens);
    c->vectors = calloc(list.n * (size_t)dim, sizeof *c->vectors);
    c->embedded = calloc(list.n, sizeof *c->embedded);
    c->is_new = calloc(list.n, sizeof *c->is_new);
    c->sorted = calloc(list.n, sizeof *c->sorted);
    if (!c->ids || !c->texts || !c->lens || !c->positions || !c->tokens || !c->vectors ||
        !c->embedded || !c->is_new || !c->sorted)
      rc = twin_err_set(err, TWIN_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < list.n && !rc; i++) {
    const char *text = clean.data + list.items[i].offset;
    size_t len = list.items[i].len;
    char id[TWIN_ID_CAP];
    rc = twin_ingest_chunk_id(doc, text, len, id, err);
    if (rc) break;
    /* the same text twice in one document is one chunk (c->sorted[0..n) is kept sorted) */
    char *key = id;
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (compare_ids(&c->sorted[mid], &key) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo < c->n && strcmp(c->sorted[lo], id) == 0) continue;
    size_t k = c->n;
    c->texts[k] = strndup(text, len);
    if (!c->texts[k]) {
      rc = twin_err_set(err, TWIN_ENOMEM, "out of memory");
      break;
    }
    memcpy(c->ids[k], id, sizeof id);
    memmove(&c->sorted[lo + 1], &c->sorted[lo], (c->n - lo) * sizeof *c->sorted);
    c->sorted[lo] = c->ids[k];
    c->lens[k] = len;
    c->positions[k] = list.items[i].position;
    c->tokens[k] = list.items[i].n_tokens;
    c->n++;
  }
  twin_chunk_list_free(&list);
  twin_buf_free(&clean);
  if (rc) doc_chunks_free(c);
  return rc;
}

/* Embeds the chunks marked new that have no vector yet, embed_batch at a time. */
static int embed_missing(ingest_run *run, doc_chunks *c, twin_err *err) {
  const twin_text_encoder *enc = run->opts->encoder;
  size_t batch = run->opts->embed_batch > 0 ? (size_t)run->opts->embed_batch : 32;
  size_t *todo = malloc((c->n ? c->n : 1) * sizeof *todo);
  const char **texts = malloc((batch ? batch : 1) * sizeof *texts);
  float *out = malloc(batch * (size_t)enc->dim * sizeof *out);
  if (!todo || !texts || !out) {
    free(todo);
    free(texts);
    free(out);
    return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  }
  size_t n_todo = 0;
  for (size_t i = 0; i < c->n; i++)
    if (c->is_new[i] && !c->embedded[i]) todo[n_todo++] = i;
  int rc = 0;
  for (size_t s = 0; s < n_todo && !rc; s += batch) {
    size_t m = n_todo - s < batch ? n_todo - s : batch;
    for (size_t j = 0; j < m; j++) texts[j] = c->texts[todo[s + j]];
    rc = enc->embed(enc->ctx, texts, m, out, err);
    if (rc) {
      twin_err_wrap(err, "embedding");
      break;
    }
    for (size_t j = 0; j < m; j++) {
      size_t i = todo[s + j];
      memcpy(c->vectors + i * (size_t)enc->dim, out + j * (size_t)enc->dim, (size_t)enc->dim * sizeof *out);
      c->embedded[i] = true;
    }
  }
  free(todo);
  free(texts);
  free(out);
  return rc;
}

/* Marks c->is_new from the stored ids and lists the stored ids that are no longer produced
 * (c->sorted holds c's ids in order). */
static size_t diff_chunks(doc_chunks *c, char **stored, size_t n_stored, const char **stale) {
  qsort(stored, n_stored, sizeof *stored, compare_ids);
  for (size_t i = 0; i < c->n; i++) c->is_new[i] = !id_in(stored, n_stored, c->ids[i]);
  size_t n_stale = 0;
  for (size_t s = 0; s < n_stored; s++)
    if (!id_in(c->sorted, c->n, stored[s])) stale[n_stale++] = stored[s];
  return n_stale;
}

static void ingest_document(ingest_run *run, const twin_document *doc) {
  const twin_ingest_options *o = run->opts;
  twin_err err = {0};
  doc_chunks c;
  int rc = prepare_chunks(run, doc, &c, &err);
  if (rc) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s (document %s): %s", doc->source, doc->id, err.msg);
    record_error(run, doc->source, doc->id, doc->title, rc, msg);
    return;
  }
  twin_ingest_item item;
  memset(&item, 0, sizeof item);
  item.source = doc->source;
  item.title = doc->title;
  twin_strlcpy(item.doc_id, doc->id, sizeof item.doc_id);
  char **stored = NULL;
  size_t n_stored = 0;
  const char **stale = NULL;
  /* a first look without WATCH, so that embedding happens outside the watched window */
  rc = twin_chunk_store_doc_chunks(o->redis, doc->id, false, &stored, &n_stored, &err);
  if (!rc) {
    stale = malloc((n_stored ? n_stored : 1) * sizeof *stale);
    if (!stale) rc = twin_err_set(&err, TWIN_ENOMEM, "out of memory");
  }
  if (!rc) {
    diff_chunks(&c, stored, n_stored, stale);
    rc = embed_missing(run, &c, &err);
  }
  bool done = false;
  for (int attempt = 0; attempt < 8 && !rc && !done; attempt++) {
    twin_chunk_store_free_ids(stored, n_stored);
    free(stale);
    stored = NULL;
    stale = NULL;
    rc = twin_chunk_store_doc_chunks(o->redis, doc->id, true, &stored, &n_stored, &err);
    if (rc) break;
    stale = malloc((n_stored ? n_stored : 1) * sizeof *stale);
    if (!stale) {
      rc = twin_err_set(&err, TWIN_ENOMEM, "out of memory");
      twin_chunk_store_unwatch(o->redis, NULL);
      break;
    }
    size_t n_stale = diff_chunks(&c, stored, n_stored, stale);
    size_t n_new = 0;
    for (size_t i = 0; i < c.n; i++) n_new += c.is_new[i];
    item.chunks = c.n;
    item.chunks_new = n_new;
    item.chunks_unchanged = c.n - n_new;
    item.chunks_removed = n_stale;
    if (n_new == 0 && n_stale == 0) {
      twin_chunk_store_unwatch(o->redis, NULL);
      done = true;
      break;
    }
    rc = embed_missing(run, &c, &err); /* chunks another writer removed meanwhile */
    if (rc) {
      twin_chunk_store_unwatch(o->redis, NULL);
      break;
    }
    twin_chunk_record *records = calloc(n_new ? n_new : 1, sizeof *records);
    if (!records) {
      rc = twin_err_set(&err, TWIN_ENOMEM, "out of memory");
      twin_chunk_store_unwatch(o->redis, NULL);
      break;
    }
    size_t k = 0;
    for (size_t i = 0; i < c.n; i++) {
      if (!c.is_new[i]) continue;
      records[k++] = (twin_chunk_record){
          .chunk_id = c.ids[i], .text = c.texts[i], .text_len = c.lens[i], .doc_id = doc->id,
          .author = doc->author, .title = doc->title, .link = doc->link, .source = doc->source,
          .type = doc->type, .position = c.positions[i], .n_tokens = c.tokens[i],
          .vector = c.vectors + i * (size_t)o->encoder->dim, .dim = o->encoder->dim};
    }
    bool conflict = false;
    rc = twin_chunk_store_commit(o->redis, doc->id, records, n_new, stale, n_stale, c.n,
                                 o->stream_maxlen, &conflict, &err);
    free(records);
    if (!rc && !conflict) done = true;
  }
  if (!rc && !done)
    rc = twin_err_set(&err, TWIN_EUNAVAILABLE, "the document kept changing under concurrent writes");
  twin_chunk_store_free_ids(stored, n_stored);
  free(stale);
  doc_chunks_free(&c);
  if (rc) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s (document %s): %s", doc->source, doc->id, err.msg);
    record_error(run, doc->source, doc->id, doc->title, rc, msg);
    return;
  }
  record(run, &item);
}

/* ============================================================================================
 * entry points
 * ========================================================================================== */

static int start_run(ingest_run *run, const twin_ingest_options *opts, twin_ingest_report *report,
                     twin_err *err) {
  memset(report, 0, sizeof *report);
  memset(run, 0, sizeof *run);
  if (!opts || !opts->encoder || !opts->encoder->embed || opts->encoder->dim <= 0)
    return twin_err_set(err, TWIN_EINVAL, "ingest: no text encoder");
  if (!opts->redis) return twin_err_set(err, TWIN_EINVAL, "ingest: no redis connection");
  run->opts = opts;
  run->report = report;
  run->chunker = opts->chunker;
  run->chunker.counter = opts->encoder->counter;
  for (int t = 0; t < TWIN_DOC_TYPE_COUNT; t++) {
    twin_chunk_size *s = &run->chunker.by_type[t];
    if (opts->encoder->max_tokens > 0 && s->max_tokens > opts->encoder->max_tokens)
      s->max_tokens = opts->encoder->max_tokens;
    if (s->overlap_tokens * 2 >= s->max_tokens) s->overlap_tokens = s->max_tokens / 4;
    if (s->max_tokens <= 0)
      return twin_err_set(err, TWIN_EINVAL, "ingest: %s chunks have max_tokens %d",
                          twin_doc_type_name((twin_doc_type)t), s->max_tokens);
  }
  return 0;
}

int twin_ingest_documents(const twin_ingest_options *opts, const twin_document *docs, size_t n,
                          twin_ingest_report *report, twin_err *err) {
  ingest_run run;
  int rc = start_run(&run, opts, report, err);
  if (rc) return rc;
  for (size_t i = 0; i < n && !run.fatal; i++) ingest_document(&run, &docs[i]);
  if (run.fatal) return twin_err_set(err, run.fatal, "ingest: out of memory recording results");
  return 0;
}

static int on_read(void *ctx, twin_document *doc, const char *where, int code, const char *message) {
  ingest_run *run = ctx;
  if (doc) {
    ingest_document(run, doc);
    twin_document_free(doc);
    free(doc);
  } else {
    record_error(run, where, NULL, NULL, code, message);
  }
  return run->fatal;
}

int twin_ingest_sources(const twin_ingest_options *opts, const char *const *sources, size_t n,
                        twin_ingest_report *report, twin_err *err) {
  ingest_run run;
  int rc = start_run(&run, opts, report, err);
  if (rc) return rc;
  for (size_t i = 0; i < n && !run.fatal; i++) {
    twin_err read_err = {0};
    int r = twin_read_source(sources[i], &opts->reader, on_read, &run, &read_err);
    if (r && !run.fatal) record_error(&run, sources[i] ? sources[i] : "(null)", NULL, NULL, r, read_err.msg);
  }
  if (run.fatal) return twin_err_set(err, run.fatal, "ingest: out of memory recording results");
  return 0;
}

int twin_ingest_delete_document(const twin_ingest_options *opts, const char *doc_id,
                                size_t *chunks_removed, twin_err *err) {
  if (!opts || !opts->redis) return twin_err_set(err, TWIN_EINVAL, "delete: no redis connection");
  return twin_chunk_store_delete_document(opts->redis, doc_id, opts->stream_maxlen, chunks_removed, err);
}
