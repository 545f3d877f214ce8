/* business-svc/rag/chunk_store.c — the Redis layout of rag/chunk_store.h: transactions are
 * appended as one pipeline (MULTI, the writes, EXEC) and read back in one round trip; the
 * EXEC reply tells applied (an array), conflict (nil: the WATCH fired) or failed. */
#include "business-svc/rag/chunk_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "chunk vectors are stored as little-endian float32: add a byte swap for this host"
#endif

/* ============================================================================================
 * small helpers
 * ========================================================================================== */

static void chunk_key(char *out, size_t cap, const char *chunk_id) {
  snprintf(out, cap, TWIN_KEY_CHUNK_PREFIX "%s", chunk_id);
}
static void doc_key(char *out, size_t cap, const char *doc_id) {
  snprintf(out, cap, TWIN_KEY_DOC_PREFIX "%s", doc_id);
}

enum { KEY_CAP = TWIN_ID_CAP + 32 };

void twin_chunk_store_free_ids(char **ids, size_t n) {
  if (!ids) return;
  for (size_t i = 0; i < n; i++) free(ids[i]);
  free(ids);
}

/* Copies the string elements of an array reply into a new id array. */
static int ids_from_reply(const redisReply *rep, char ***ids, size_t *n, twin_err *err) {
  *ids = NULL;
  *n = 0;
  if (!rep || rep->type != REDIS_REPLY_ARRAY)
    return twin_err_set(err, TWIN_EFORMAT, "redis: SMEMBERS did not answer an array");
  char **out = calloc(rep->elements ? rep->elements : 1, sizeof *out);
  if (!out) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  for (size_t i = 0; i < rep->elements; i++) {
    const redisReply *e = rep->element[i];
    if (e->type != REDIS_REPLY_STRING) {
      twin_chunk_store_free_ids(out, i);
      return twin_err_set(err, TWIN_EFORMAT, "redis: SMEMBERS element %zu is not a string", i);
    }
    out[i] = strndup(e->str, e->len);
    if (!out[i]) {
      twin_chunk_store_free_ids(out, i);
      return twin_err_set(err, TWIN_ENOMEM, "out of memory");
    }
  }
  *ids = out;
  *n = rep->elements;
  return 0;
}

/* ============================================================================================
 * reads and transactions
 * ========================================================================================== */

int twin_chunk_store_doc_chunks(twin_redis *r, const char *doc_id, bool watch, char ***ids,
                                size_t *n, twin_err *err) {
  *ids = NULL;
  *n = 0;
  char key[KEY_CAP];
  doc_key(key, sizeof key, doc_id);
  const char *watch_argv[] = {"WATCH", key};
  const char *members_argv[] = {"SMEMBERS", key};
  int rc = 0;
  if (watch) rc = twin_redis_append_argv(r, 2, watch_argv, NULL, err);
  if (!rc) rc = twin_redis_append_argv(r, 2, members_argv, NULL, err);
  if (rc) return rc;
  redisReply *replies[2] = {NULL, NULL};
  size_t nr = watch ? 2 : 1;
  rc = twin_redis_pipeline_read(r, replies, nr, err);
  if (rc) return rc;
  const redisReply *members = replies[nr - 1];
  for (size_t i = 0; i < nr && !rc; i++)
    if (replies[i]->type == REDIS_REPLY_ERROR)
      rc = twin_err_set(err, TWIN_EINVAL, "redis: %s %s: %s", i + 1 < nr ? "WATCH" : "SMEMBERS",
                        key, replies[i]->str);
  if (!rc) rc = ids_from_reply(members, ids, n, err);
  twin_redis_free_replies(replies, nr);
  return rc;
}

int twin_chunk_store_unwatch(twin_redis *r, twin_err *err) {
  redisReply *rep = NULL;
  int rc = twin_redis_command(r, &rep, err, "UNWATCH");
  if (rep) freeReplyObject(rep);
  return rc;
}

/* Appends XADD <stream> [MAXLEN ~ N] * op <op> chunk <id> doc <doc_id>. */
static int append_change(twin_redis *r, const char *op, const char *chunk_id, const char *doc_id,
                         size_t stream_maxlen, twin_err *err) {
  char maxlen[32];
  snprintf(maxlen, sizeof maxlen, "%zu", stream_maxlen);
  const char *argv[13];
  int argc = 0;
  argv[argc++] = "XADD";
  argv[argc++] = TWIN_KEY_CHANGES;
  if (stream_maxlen > 0) {
    argv[argc++] = "MAXLEN";
    argv[argc++] = "~";
    argv[argc++] = maxlen;
  }
  argv[argc++] = "*";
  argv[argc++] = "op";
  argv[argc++] = op;
  argv[argc++] = "chunk";
  argv[argc++] = chunk_id;
  argv[argc++] = "doc";
  argv[argc++] = doc_id;
  return twin_redis_append_argv(r, argc, argv, NULL, err);
}

static int append_chunk_hash(twin_redis *r, const twin_chunk_record *c, twin_err *err) {
  char key[KEY_CAP], position[24], tokens[24];
  chunk_key(key, sizeof key, c->chunk_id);
  snprintf(position, sizeof position, "%d", c->position);
  snprintf(tokens, sizeof tokens, "%d", c->n_tokens);
  const char *type = twin_doc_type_name(c->type);
  const char *argv[] = {"HSET", key,
                        "text", c->text,
                        "doc_id", c->doc_id,
                        "author", c->author ? c->author : "",
                        "type", type ? type : "article",
                        "title", c->title ? c->title : "",
                        "link", c->link ? c->link : "",
                        "source", c->source ? c->source : "",
                        "position", position,
                        "tokens", tokens,
                        "vector", (const char *)c->vector};
  enum { ARGC = sizeof argv / sizeof *argv };
  size_t lens[ARGC];
  for (int i = 0; i < ARGC; i++) lens[i] = strlen(argv[i]);
  lens[3] = c->text_len;
  lens[ARGC - 1] = (size_t)c->dim * sizeof(float);
  return twin_redis_append_argv(r, ARGC, argv, lens, err);
}

/* Sends what is pending (MULTI ... EXEC) and interprets EXEC's reply. */
static int finish_transaction(twin_redis *r, const char *what, bool *conflict, twin_err *err) {
  size_t n = twin_redis_pending(r);
  redisReply **replies = calloc(n, sizeof *replies);
  if (!replies) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  int rc = twin_redis_pipeline_read(r, replies, n, err);
  if (rc) {
    free(replies);
    if (err) twin_err_wrap(err, "%s", what);
    return rc;
  }
  const redisReply *exec = replies[n - 1];
  if (exec->type == REDIS_REPLY_NIL) {
    *conflict = true;
  } else if (exec->type == REDIS_REPLY_ERROR) {
    /* EXECABORT: a queued command was refused; the first refusal says why */
    const char *why = exec->str;
    for (size_t i = 0; i + 1 < n; i++)
      if (replies[i]->type == REDIS_REPLY_ERROR) { why = replies[i]->str; break; }
    rc = twin_err_set(err, TWIN_EINVAL, "%s: redis refused the transaction: %s", what, why);
  } else if (exec->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < exec->elements; i++)
      if (exec->element[i]->type == REDIS_REPLY_ERROR) {
        rc = twin_err_set(err, TWIN_EINVAL, "%s: command %zu of the transaction failed: %s", what,
                          i, exec->element[i]->str);
        break;
      }
  } else {
    rc = twin_err_set(err, TWIN_EFORMAT, "%s: unexpected EXEC reply type %d", what, exec->type);
  }
  twin_redis_free_replies(replies, n);
  free(replies);
  return rc;
}

int twin_chunk_store_commit(twin_redis *r, const char *doc_id, const twin_chunk_record *add,
                            size_t n_add, const char *const *remove, size_t n_remove,
                            size_t n_after, size_t stream_maxlen, bool *conflict, twin_err *err) {
  *conflict = false;
  char dkey[KEY_CAP], what[KEY_CAP + 32];
  doc_key(dkey, sizeof dkey, doc_id);
  snprintf(what, sizeof what, "writing document %s", doc_id);
  int rc = twin_redis_append(r, err, "MULTI");
  for (size_t i = 0; i < n_add && !rc; i++) rc = append_chunk_hash(r, &add[i], err);
  /* the set, in batches of 512 members per SADD/SREM */
  for (size_t i = 0; i < n_add && !rc; i += 512) {
    size_t m = n_add - i < 512 ? n_add - i : 512;
    const char *argv[514] = {"SADD", dkey};
    for (size_t j = 0; j < m; j++) argv[2 + j] = add[i + j].chunk_id;
    rc = twin_redis_append_argv(r, (int)m + 2, argv, NULL, err);
  }
  for (size_t i = 0; i < n_remove && !rc; i += 512) {
    size_t m = n_remove - i < 512 ? n_remove - i : 512;
    const char *argv[514] = {"SREM", dkey};
    for (size_t j = 0; j < m; j++) argv[2 + j] = remove[i + j];
    rc = twin_redis_append_argv(r, (int)m + 2, argv, NULL, err);
  }
  for (size_t i = 0; i < n_remove && !rc; i++) {
    char key[KEY_CAP];
    chunk_key(key, sizeof key, remove[i]);
    const char *argv[] = {"UNLINK", key};
    rc = twin_redis_append_argv(r, 2, argv, NULL, err);
  }
  if (!rc) {
    const char *argv[] = {n_after ? "SADD" : "SREM", TWIN_KEY_DOCS, doc_id};
    rc = twin_redis_append_argv(r, 3, argv, NULL, err);
  }
  for (size_t i = 0; i < n_add && !rc; i++)
    rc = append_change(r, "add", add[i].chunk_id, doc_id, stream_maxlen, err);
  for (size_t i = 0; i < n_remove && !rc; i++)
    rc = append_change(r, "delete", remove[i], doc_id, stream_maxlen, err);
  if (!rc) rc = twin_redis_append(r, err, "EXEC");
  if (rc) {
    /* could not queue everything (only when out of memory): end the MULTI with DISCARD and
     * read the replies away, so nothing is written and the connection is clean */
    if (twin_redis_pending(r)) {
      twin_err ignored;
      twin_redis_append(r, &ignored, "DISCARD");
      size_t n = twin_redis_pending(r);
      redisReply **replies = calloc(n, sizeof *replies);
      if (replies && twin_redis_pipeline_read(r, replies, n, &ignored) == 0)
        twin_redis_free_replies(replies, n);
      free(replies);
    }
    return rc;
  }
  return finish_transaction(r, what, conflict, err);
}

int twin_chunk_store_delete_document(twin_redis *r, const char *doc_id, size_t stream_maxlen,
                                     size_t *removed, twin_err *err) {
  if (removed) *removed = 0;
  int rc = twin_id_validate(doc_id, "document id", err);
  if (rc) return rc;
  for (int attempt = 0; attempt < 8; attempt++) {
    char **ids = NULL;
    size_t n = 0;
    rc = twin_chunk_store_doc_chunks(r, doc_id, true, &ids, &n, err);
    if (rc) return rc;
    if (n == 0) {
      twin_chunk_store_free_ids(ids, n);
      twin_chunk_store_unwatch(r, NULL);
      return twin_err_set(err, TWIN_ENOTFOUND, "document %s has no chunks", doc_id);
    }
    bool conflict = false;
    rc = twin_chunk_store_commit(r, doc_id, NULL, 0, (const char *const *)ids, n, 0, stream_maxlen,
                                 &conflict, err);
    twin_chunk_store_free_ids(ids, n);
    if (rc) return rc;
    if (!conflict) {
      if (removed) *removed = n;
      return 0;
    }
  }
  return twin_err_set(err, TWIN_EUNAVAILABLE,
                      "deleting document %s: it kept changing under concurrent writes", doc_id);
}

/* ============================================================================================
 * reading chunks back
 * ========================================================================================== */

int twin_chunk_store_fetch(twin_redis *r, const char *const *chunk_ids, size_t n, int dim,
                           float *vectors, twin_stored_chunk *out, twin_err *err) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    char key[KEY_CAP];
    chunk_key(key, sizeof key, chunk_ids[i]);
    const char *argv[] = {"HMGET", key, "author", "type", "vector"};
    int rc = twin_redis_append_argv(r, 5, argv, NULL, err);
    if (rc) return rc; /* cannot happen short of memory; the pending ones go with the next read */
  }
  redisReply **replies = calloc(n, sizeof *replies);
  if (!replies) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  int rc = twin_redis_pipeline_read(r, replies, n, err);
  if (rc) {
    free(replies);
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    twin_stored_chunk *c = &out[i];
    memset(c, 0, sizeof *c);
    c->vector = vectors + i * (size_t)dim;
    const redisReply *rep = replies[i];
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
      snprintf(c->problem, sizeof c->problem, "HMGET answered type %d", rep->type);
      continue;
    }
    const redisReply *author = rep->element[0], *type = rep->element[1], *vec = rep->element[2];
    if (vec->type == REDIS_REPLY_NIL) continue; /* gone: deleted since */
    if (vec->type != REDIS_REPLY_STRING || vec->len != (size_t)dim * sizeof(float)) {
      snprintf(c->problem, sizeof c->problem, "vector is %zu bytes, expected %zu (dim %d)",
               vec->type == REDIS_REPLY_STRING ? vec->len : 0, (size_t)dim * sizeof(float), dim);
      continue;
    }
    char type_name[16] = "";
    if (type->type == REDIS_REPLY_STRING) snprintf(type_name, sizeof type_name, "%.*s", (int)type->len, type->str);
    if (twin_doc_type_parse(type_name, &c->type, NULL)) {
      snprintf(c->problem, sizeof c->problem, "type \"%s\" is unknown", type_name);
      continue;
    }
    if (author->type == REDIS_REPLY_STRING)
      snprintf(c->author, sizeof c->author, "%.*s", (int)author->len, author->str);
    memcpy(c->vector, vec->str, vec->len);
    c->found = true;
  }
  twin_redis_free_replies(replies, n);
  free(replies);
  return 0;
}
