/* business-svc/rag/index_follower.c — the follower thread of rag/index_follower.h: a loop of
 * load (SCAN twin:chunk:*, HMGET in pipelines, into an index built aside) and follow (XREAD
 * BLOCK, runs of adds fetched in one pipeline, runs of deletes removed at once), with a stream
 * check (XINFO STREAM) whenever a read comes back empty or the connection came back. */
#include "business-svc/rag/index_follower.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/chunk_store.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/util.h"

struct twin_index_follower {
  twin_vector_index *index; /* borrowed */
  twin_index_follower_options opts;
  char *url;
  twin_redis *redis; /* the thread's connection */
  pthread_t thread;
  atomic_bool stop;
  pthread_mutex_t mu; /* guards stats */
  pthread_cond_t changed;
  twin_index_follower_stats stats;
};

/* ============================================================================================
 * stream ids and stats
 * ========================================================================================== */

static bool parse_stream_id(const char *s, uint64_t *ms, uint64_t *seq) {
  char *end;
  if (!s || !*s) return false;
  *ms = strtoull(s, &end, 10);
  if (*end == '\0') {
    *seq = 0;
    return true;
  }
  if (*end != '-') return false;
  *seq = strtoull(end + 1, &end, 10);
  return *end == '\0';
}

int twin_stream_id_compare(const char *a, const char *b) {
  uint64_t am = 0, as = 0, bm = 0, bs = 0;
  bool ao = parse_stream_id(a, &am, &as), bo = parse_stream_id(b, &bm, &bs);
  if (!ao || !bo) return (int)ao - (int)bo;
  if (am != bm) return am < bm ? -1 : 1;
  if (as != bs) return as < bs ? -1 : 1;
  return 0;
}

static void note_error(twin_index_follower *f, const char *msg) {
  pthread_mutex_lock(&f->mu);
  f->stats.errors++;
  twin_strlcpy(f->stats.last_error, msg, sizeof f->stats.last_error);
  f->stats.connected = twin_redis_connected(f->redis);
  pthread_mutex_unlock(&f->mu);
}

static void note_skip(twin_index_follower *f, const char *chunk_id, const char *problem) {
  pthread_mutex_lock(&f->mu);
  f->stats.skipped++;
  if (problem && problem[0]) {
    snprintf(f->stats.last_error, sizeof f->stats.last_error, "chunk %s: %s", chunk_id, problem);
    if (f->stats.skipped <= 10) LOG_WARN("index follower: chunk %s skipped: %s", chunk_id, problem);
  }
  pthread_mutex_unlock(&f->mu);
}

static void set_applied(twin_index_follower *f, const char *last_id, uint64_t adds, uint64_t deletes) {
  pthread_mutex_lock(&f->mu);
  twin_strlcpy(f->stats.last_id, last_id, sizeof f->stats.last_id);
  f->stats.adds += adds;
  f->stats.deletes += deletes;
  f->stats.connected = true;
  pthread_cond_broadcast(&f->changed);
  pthread_mutex_unlock(&f->mu);
}

static void current_last_id(twin_index_follower *f, char out[48]) {
  pthread_mutex_lock(&f->mu);
  twin_strlcpy(out, f->stats.last_id, 48);
  pthread_mutex_unlock(&f->mu);
}

/* ============================================================================================
 * fetching chunks into an index
 * ========================================================================================== */

/* Fetches ids[0..n) from Redis and adds the ones found to ix; returns how many were added. */
static int fetch_and_add(twin_index_follower *f, twin_vector_index *ix, const char *const *ids,
                         size_t n, size_t *added, twin_err *err) {
  *added = 0;
  if (n == 0) return 0;
  int dim = twin_vector_index_dim(ix);
  float *vectors = malloc(n * (size_t)dim * sizeof *vectors);
  twin_stored_chunk *chunks = malloc(n * sizeof *chunks);
  twin_index_entry *entries = malloc(n * sizeof *entries);
  float *packed = malloc(n * (size_t)dim * sizeof *packed);
  int rc = 0;
  if (!vectors || !chunks || !entries || !packed) rc = twin_err_set(err, TWIN_ENOMEM, "out of memory");
  if (!rc) rc = twin_chunk_store_fetch(f->redis, ids, n, dim, vectors, chunks, err);
  if (!rc) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
      if (!chunks[i].found) {
        note_skip(f, ids[i], chunks[i].problem);
        continue;
      }
      entries[m] = (twin_index_entry){ids[i], chunks[i].author, chunks[i].type};
      memcpy(packed + m * (size_t)dim, chunks[i].vector, (size_t)dim * sizeof *packed);
      m++;
    }
    rc = twin_vector_index_add(ix, entries, packed, m, added, err);
  }
  free(vectors);
  free(chunks);
  free(entries);
  free(packed);
  return rc;
}

/* The stream's last entry id into out ("0-0" when it is empty or absent). */
static int stream_tip(twin_redis *r, char out[48], twin_err *err) {
  redisReply *rep = NULL;
  int rc = twin_redis_command(r, &rep, err, "XREVRANGE %s + - COUNT 1", TWIN_KEY_CHANGES);
  if (rc) return rc;
  twin_strlcpy(out, "0-0", 48);
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 && rep->element[0]->type == REDIS_REPLY_ARRAY &&
      rep->element[0]->elements >= 1 && rep->element[0]->element[0]->type == REDIS_REPLY_STRING)
    snprintf(out, 48, "%s", rep->element[0]->element[0]->str);
  freeReplyObject(rep);
  return 0;
}

/* Loads every chunk into a fresh index and swaps it in; the stream is then followed from the
 * id it had before the scan began. */
static int full_load(twin_index_follower *f, twin_err *err) {
  char tip[48];
  int rc = stream_tip(f->redis, tip, err);
  if (rc) return rc;
  twin_vector_index *fresh = NULL;
  rc = twin_vector_index_create_like(&fresh, f->index, err);
  if (rc) return rc;
  int64_t t0 = twin_time_mono_ms();
  char cursor[32] = "0";
  char count[16];
  snprintf(count, sizeof count, "%d", f->opts.batch);
  size_t prefix = strlen(TWIN_KEY_CHUNK_PREFIX), total = 0;
  do {
    redisReply *rep = NULL;
    const char *argv[] = {"SCAN", cursor, "MATCH", TWIN_KEY_CHUNK_PREFIX "*", "COUNT", count};
    rc = twin_redis_command_argv(f->redis, 6, argv, NULL, &rep, err);
    if (rc) break;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
      freeReplyObject(rep);
      rc = twin_err_set(err, TWIN_EFORMAT, "redis: SCAN answered an unexpected shape");
      break;
    }
    snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
    const redisReply *keys = rep->element[1];
    const char **ids = malloc((keys->elements ? keys->elements : 1) * sizeof *ids);
    if (!ids) {
      freeReplyObject(rep);
      rc = twin_err_set(err, TWIN_ENOMEM, "out of memory");
      break;
    }
    size_t n = 0;
    for (size_t i = 0; i < keys->elements; i++)
      if (keys->element[i]->type == REDIS_REPLY_STRING && keys->element[i]->len > prefix)
        ids[n++] = keys->element[i]->str + prefix;
    size_t added = 0;
    rc = fetch_and_add(f, fresh, ids, n, &added, err);
    total += added;
    free(ids);
    freeReplyObject(rep);
  } while (!rc && strcmp(cursor, "0") != 0 && !atomic_load(&f->stop));
  if (!rc && atomic_load(&f->stop)) rc = twin_err_set(err, TWIN_ECANCELLED, "stopping");
  if (!rc) {
    twin_vector_index_swap(f->index, fresh);
    pthread_mutex_lock(&f->mu);
    f->stats.loaded = true;
    f->stats.loads++;
    twin_strlcpy(f->stats.last_id, tip, sizeof f->stats.last_id);
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->mu);
    LOG_INFO("index follower: loaded %zu chunks in %lld ms, following %s from %s", total,
             (long long)(twin_time_mono_ms() - t0), TWIN_KEY_CHANGES, tip);
  }
  twin_vector_index_destroy(fresh);
  return rc;
}

/* ============================================================================================
 * following the stream
 * ========================================================================================== */

static const char *entry_field(const redisReply *fields, const char *name) {
  for (size_t i = 0; i + 1 < fields->elements; i += 2)
    if (fields->element[i]->type == REDIS_REPLY_STRING && strcmp(fields->element[i]->str, name) == 0 &&
        fields->element[i + 1]->type == REDIS_REPLY_STRING)
      return fields->element[i + 1]->str;
  return NULL;
}

/* Applies XREAD's entries in order, runs of one op at a time. */
static int apply_entries(twin_index_follower *f, const redisReply *entries, twin_err *err) {
  size_t n = entries->elements, i = 0;
  const char **ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  int rc = 0;
  while (i < n && !rc) {
    const char *op = NULL;
    size_t j = i, m = 0;
    const char *last = NULL;
    for (; j < n; j++) {
      const redisReply *e = entries->element[j];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
          e->element[1]->type != REDIS_REPLY_ARRAY) {
        rc = twin_err_set(err, TWIN_EFORMAT, "redis: XREAD entry %zu has an unexpected shape", j);
        break;
      }
      const char *this_op = entry_field(e->element[1], "op");
      const char *chunk = entry_field(e->element[1], "chunk");
      if (!this_op || !chunk || (strcmp(this_op, "add") != 0 && strcmp(this_op, "delete") != 0)) {
        if (j == i) { /* a lone unknown entry: skip it */
          note_skip(f, e->element[0]->str, "stream entry without op add|delete and chunk");
          last = e->element[0]->str;
          j++;
        }
        break;
      }
      if (op && strcmp(op, this_op) != 0) break;
      op = this_op;
      ids[m++] = chunk;
      last = e->element[0]->str;
    }
    if (rc) break;
    size_t changed = 0;
    if (op && strcmp(op, "add") == 0) rc = fetch_and_add(f, f->index, ids, m, &changed, err);
    else if (op) rc = twin_vector_index_remove(f->index, ids, m, &changed, err);
    if (rc) break;
    bool adds = op && strcmp(op, "add") == 0;
    if (last) set_applied(f, last, adds ? changed : 0, adds ? 0 : changed);
    i = j;
  }
  free(ids);
  return rc;
}

/* One XREAD: 1 when it timed out with nothing new, 0 after applying entries, < 0 on error. */
static int follow_once(twin_index_follower *f, twin_err *err) {
  char last[48];
  current_last_id(f, last);
  char count[16], block[16];
  snprintf(count, sizeof count, "%d", f->opts.batch);
  snprintf(block, sizeof block, "%d", f->opts.block_ms);
  const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", TWIN_KEY_CHANGES, last};
  redisReply *rep = NULL;
  int rc = twin_redis_command_argv(f->redis, 8, argv, NULL, &rep, err);
  if (rc) return rc;
  if (rep->type == REDIS_REPLY_NIL) {
    freeReplyObject(rep);
    return 1;
  }
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->element[0]->type != REDIS_REPLY_ARRAY ||
      rep->element[0]->elements != 2 || rep->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
    freeReplyObject(rep);
    return twin_err_set(err, TWIN_EFORMAT, "redis: XREAD answered an unexpected shape");
  }
  rc = apply_entries(f, rep->element[0]->element[1], err);
  freeReplyObject(rep);
  return rc;
}

/* Whether the stream no longer continues what was applied: deleted, recreated or trimmed past
 * the last applied id. Errors count as "no" (the next read will meet them again). */
static bool stream_was_reset(twin_index_follower *f) {
  char last[48];
  current_last_id(f, last);
  if (strcmp(last, "0-0") == 0) return false;
  redisReply *rep = NULL;
  twin_err err = {0};
  int rc = twin_redis_command(f->redis, &rep, &err, "XINFO STREAM %s", TWIN_KEY_CHANGES);
  if (rc) return twin_redis_error_is(&err, "ERR no such key");
  bool reset = false;
  if (rep->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
      const redisReply *k = rep->element[i], *v = rep->element[i + 1];
      if (k->type != REDIS_REPLY_STRING) continue;
      if (strcmp(k->str, "last-generated-id") == 0 && v->type == REDIS_REPLY_STRING &&
          twin_stream_id_compare(v->str, last) < 0)
        reset = true;
      if (strcmp(k->str, "max-deleted-entry-id") == 0 && v->type == REDIS_REPLY_STRING &&
          twin_stream_id_compare(v->str, last) > 0)
        reset = true;
      if (strcmp(k->str, "first-entry") == 0 && v->type == REDIS_REPLY_ARRAY && v->elements == 2 &&
          v->element[0]->type == REDIS_REPLY_STRING && twin_stream_id_compare(v->element[0]->str, last) > 0)
        reset = true;
    }
  }
  freeReplyObject(rep);
  return reset;
}

static void *follower_main(void *arg) {
  twin_index_follower *f = arg;
  bool check_stream = false;
  while (!atomic_load(&f->stop)) {
    twin_err err = {0};
    if (!twin_redis_connected(f->redis)) {
      pthread_mutex_lock(&f->mu);
      f->stats.connected = false;
      pthread_mutex_unlock(&f->mu);
      if (twin_redis_wait_connected(f->redis, 250, NULL) != 0) continue; /* re-check stop */
      check_stream = true;
    }
    pthread_mutex_lock(&f->mu);
    bool loaded = f->stats.loaded;
    f->stats.connected = true;
    pthread_mutex_unlock(&f->mu);
    if (loaded && check_stream) {
      check_stream = false;
      if (stream_was_reset(f)) {
        LOG_WARN("index follower: %s was deleted, recreated or trimmed past our position: "
                 "loading everything again", TWIN_KEY_CHANGES);
        pthread_mutex_lock(&f->mu);
        f->stats.loaded = false;
        pthread_mutex_unlock(&f->mu);
        loaded = false;
      }
    }
    int rc = loaded ? follow_once(f, &err) : full_load(f, &err);
    if (rc == 1) {
      check_stream = true; /* idle: a good moment to look at the stream */
    } else if (rc < 0 && rc != TWIN_ECANCELLED) {
      note_error(f, err.msg);
      LOG_WARN("index follower: %s", err.msg);
      if (twin_redis_connected(f->redis)) twin_sleep_ms(200); /* not a connection problem: pace */
    }
  }
  return NULL;
}

/* ============================================================================================
 * the public side
 * ========================================================================================== */

int twin_index_follower_start(twin_index_follower **out, twin_vector_index *index,
                              const twin_index_follower_options *opts, twin_err *err) {
  *out = NULL;
  if (!index) return twin_err_set(err, TWIN_EINVAL, "index follower: no index");
  twin_index_follower *f = calloc(1, sizeof *f);
  if (!f) return twin_err_set(err, TWIN_ENOMEM, "index follower: out of memory");
  f->index = index;
  if (opts) f->opts = *opts;
  if (f->opts.block_ms <= 0) f->opts.block_ms = 1000;
  if (f->opts.batch <= 0) f->opts.batch = 512;
  if (f->opts.backoff_max_ms <= 0) f->opts.backoff_max_ms = 2000;
  f->url = strdup(f->opts.redis_url ? f->opts.redis_url : "redis://127.0.0.1:6379");
  if (!f->url) {
    free(f);
    return twin_err_set(err, TWIN_ENOMEM, "index follower: out of memory");
  }
  f->opts.redis_url = f->url;
  twin_redis_options ro = {.url = f->url,
                           .command_timeout_ms = f->opts.block_ms + 5000,
                           .backoff_initial_ms = 50,
                           .backoff_max_ms = f->opts.backoff_max_ms};
  int rc = twin_redis_open(&f->redis, &ro, err);
  if (rc) {
    free(f->url);
    free(f);
    return rc;
  }
  twin_strlcpy(f->stats.last_id, "0-0", sizeof f->stats.last_id);
  atomic_init(&f->stop, false);
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->changed, NULL);
  if (pthread_create(&f->thread, NULL, follower_main, f) != 0) {
    twin_redis_close(f->redis);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->changed);
    free(f->url);
    free(f);
    return twin_err_set(err, TWIN_EINTERNAL, "index follower: cannot start its thread");
  }
  *out = f;
  return 0;
}

void twin_index_follower_stop(twin_index_follower *f) {
  if (!f) return;
  atomic_store(&f->stop, true);
  pthread_join(f->thread, NULL);
  twin_redis_close(f->redis);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->changed);
  free(f->url);
  free(f);
}

void twin_index_follower_get_stats(twin_index_follower *f, twin_index_follower_stats *out) {
  pthread_mutex_lock(&f->mu);
  *out = f->stats;
  pthread_mutex_unlock(&f->mu);
}

int twin_index_follower_wait_synced(twin_index_follower *f, int timeout_ms, twin_err *err) {
  int64_t deadline = twin_time_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  twin_redis *r = NULL;
  twin_redis_options ro = {.url = f->url,
                           .connect_timeout_ms = timeout_ms > 0 && timeout_ms < 2000 ? timeout_ms : 2000,
                           .command_timeout_ms = timeout_ms > 0 && timeout_ms < 5000 ? timeout_ms : 5000,
                           .require_connection = true};
  int rc = twin_redis_open(&r, &ro, err);
  if (rc) return rc;
  char tip[48];
  rc = stream_tip(r, tip, err);
  twin_redis_close(r);
  if (rc) return rc;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  int64_t left = deadline - twin_time_mono_ms();
  if (left < 0) left = 0;
  until.tv_sec += left / 1000;
  until.tv_nsec += (left % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&f->mu);
  while (!(f->stats.loaded && twin_stream_id_compare(f->stats.last_id, tip) >= 0)) {
    if (pthread_cond_timedwait(&f->changed, &f->mu, &until) != 0) break;
  }
  bool synced = f->stats.loaded && twin_stream_id_compare(f->stats.last_id, tip) >= 0;
  char last[48];
  twin_strlcpy(last, f->stats.last_id, sizeof last);
  bool loaded = f->stats.loaded;
  char last_error[256];
  twin_strlcpy(last_error, f->stats.last_error, sizeof last_error);
  pthread_mutex_unlock(&f->mu);
  if (synced) return 0;
  return twin_err_set(err, TWIN_ETIMEOUT,
                      "index follower: not synced after %d ms (%s, at %s, stream at %s%s%s)",
                      timeout_ms, loaded ? "loaded" : "not loaded yet", last, tip,
                      last_error[0] ? "; last error: " : "", last_error);
}
