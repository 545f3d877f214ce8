/* monitor-svc/store.c — writing, reading and trimming traces in Redis (layout in store.h).
 * Writes and trims run as Lua scripts (EVALSHA, loaded on NOSCRIPT) so that each trace's
 * record and indexes change together; the script hashes are computed here with libcrypto. */
#include "monitor-svc/store.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* ============================================================================================
 * scripts
 * ========================================================================================== */

/* KEYS: record, summary hash, by_time, by_model:<m>, by_template:<t>, errors, models, templates
 * ARGV: id, time_ms, json, summary, model, template, is_error (0|1)
 * Returns 1 when stored, 0 when the record already existed. */
static const char k_store_script[] =
    "if not redis.call('SET', KEYS[1], ARGV[3], 'NX') then return 0 end\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])\n"
    "redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])\n"
    "redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])\n"
    "redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])\n"
    "if ARGV[7] == '1' then redis.call('ZADD', KEYS[6], ARGV[2], ARGV[1]) end\n"
    "redis.call('SADD', KEYS[7], ARGV[5])\n"
    "redis.call('SADD', KEYS[8], ARGV[6])\n"
    "return 1\n";

/* ARGV: prefix, id... Removes each trace's record, summary and index entries (the model and
 * template come from the summary: elements 9 and 10); drops a name from the models/templates
 * set when its index is empty. Returns the number of records deleted. */
static const char k_trim_script[] =
    "local p = ARGV[1]\n"
    "local n = 0\n"
    "for i = 2, #ARGV do\n"
    "  local id = ARGV[i]\n"
    "  local s = redis.call('HGET', p .. 'summary', id)\n"
    "  if s then\n"
    "    local ok, a = pcall(cjson.decode, s)\n"
    "    if ok and type(a) == 'table' and type(a[9]) == 'string' and type(a[10]) == 'string' then\n"
    "      local km = p .. 'by_model:' .. a[9]\n"
    "      redis.call('ZREM', km, id)\n"
    "      if redis.call('EXISTS', km) == 0 then redis.call('SREM', p .. 'models', a[9]) end\n"
    "      local kt = p .. 'by_template:' .. a[10]\n"
    "      redis.call('ZREM', kt, id)\n"
    "      if redis.call('EXISTS', kt) == 0 then redis.call('SREM', p .. 'templates', a[10]) end\n"
    "    end\n"
    "    redis.call('HDEL', p .. 'summary', id)\n"
    "  end\n"
    "  redis.call('ZREM', p .. 'by_time', id)\n"
    "  redis.call('ZREM', p .. 'errors', id)\n"
    "  n = n + redis.call('DEL', p .. 'trace:' .. id)\n"
    "end\n"
    "return n\n";

static int sha1_hex(const char *text, char out[41], twin_err *err) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (!EVP_Digest(text, strlen(text), md, &md_len, EVP_sha1(), NULL) || md_len != 20)
    return twin_err_set(err, TWIN_EINTERNAL, "store: SHA-1 of a script failed");
  twin_hex_encode(md, 20, out);
  return 0;
}

int monitor_store_init(monitor_store *s, const char *prefix, twin_err *err) {
  memset(s, 0, sizeof *s);
  if (!prefix || strlen(prefix) >= sizeof s->prefix)
    return twin_err_set(err, TWIN_EINVAL, "key prefix: must be at most %zu bytes", sizeof s->prefix - 1);
  memcpy(s->prefix, prefix, strlen(prefix) + 1);
  if (sha1_hex(k_store_script, s->store_sha, err) || sha1_hex(k_trim_script, s->trim_sha, err)) return TWIN_EINTERNAL;
  return 0;
}

void monitor_store_key(const monitor_store *s, char out[MONITOR_KEY_MAX], const char *kind, const char *name) {
  snprintf(out, MONITOR_KEY_MAX, "%s%s%s", s->prefix, kind, name ? name : "");
}

static int load_script(twin_redis *r, const char *script, twin_err *err) {
  redisReply *rep = NULL;
  const char *argv[] = {"SCRIPT", "LOAD", script};
  int rc = twin_redis_command_argv(r, 3, argv, NULL, &rep, err);
  freeReplyObject(rep);
  return rc;
}

static bool is_noscript(const redisReply *rep) {
  return rep && rep->type == REDIS_REPLY_ERROR && rep->str && strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

/* ============================================================================================
 * put
 * ========================================================================================== */

static int append_store(twin_redis *r, const monitor_store *s, const monitor_trace *t, const char *raw,
                        size_t raw_len, twin_buf *summary, twin_err *err) {
  char k_rec[MONITOR_KEY_MAX], k_sum[MONITOR_KEY_MAX], k_time[MONITOR_KEY_MAX], k_model[MONITOR_KEY_MAX],
      k_tmpl[MONITOR_KEY_MAX], k_err[MONITOR_KEY_MAX], k_models[MONITOR_KEY_MAX], k_tmpls[MONITOR_KEY_MAX];
  monitor_store_key(s, k_rec, "trace:", t->trace_id);
  monitor_store_key(s, k_sum, "summary", NULL);
  monitor_store_key(s, k_time, "by_time", NULL);
  monitor_store_key(s, k_model, "by_model:", t->model);
  monitor_store_key(s, k_tmpl, "by_template:", t->template_name);
  monitor_store_key(s, k_err, "errors", NULL);
  monitor_store_key(s, k_models, "models", NULL);
  monitor_store_key(s, k_tmpls, "templates", NULL);
  char time_s[32];
  snprintf(time_s, sizeof time_s, "%lld", (long long)t->time_ms);
  twin_buf_reset(summary);
  if (monitor_summary_encode(t, summary) != 0 || summary->failed)
    return twin_err_set(err, TWIN_ENOMEM, "store: out of memory");
  const char *argv[] = {"EVALSHA", s->store_sha, "8", k_rec, k_sum, k_time, k_model, k_tmpl, k_err, k_models,
                        k_tmpls, t->trace_id, time_s, raw, summary->data, t->model, t->template_name,
                        *t->error ? "1" : "0"};
  size_t lens[sizeof argv / sizeof argv[0]];
  for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++) lens[i] = strlen(argv[i]);
  lens[13] = raw_len;
  return twin_redis_append_argv(r, (int)(sizeof argv / sizeof argv[0]), argv, lens, err);
}

int monitor_store_put(twin_redis *r, const monitor_store *s, const monitor_trace *const *traces,
                      const char *const *raw, const size_t *raw_len, size_t n, int *results,
                      twin_err *err) {
  if (n == 0) return 0;
  redisReply **replies = calloc(n, sizeof *replies);
  size_t *todo = malloc(n * sizeof *todo); /* [n_todo] indexes still to run */
  twin_buf summary = {0};
  int rc = 0;
  if (!replies || !todo) {
    rc = twin_err_set(err, TWIN_ENOMEM, "store: out of memory");
    goto out;
  }
  size_t n_todo = n;
  for (size_t i = 0; i < n; i++) todo[i] = i;
  for (int attempt = 0; attempt < 2 && n_todo > 0; attempt++) {
    for (size_t j = 0; j < n_todo; j++) {
      size_t i = todo[j];
      rc = append_store(r, s, traces[i], raw[i], raw_len[i], &summary, err);
      if (rc) {
        /* Drop what was appended: read it back (or fail with the connection). */
        size_t pending = twin_redis_pending(r);
        if (pending) {
          twin_err ignored;
          if (twin_redis_pipeline_read(r, replies, pending, &ignored) == 0) twin_redis_free_replies(replies, pending);
        }
        goto out;
      }
    }
    rc = twin_redis_pipeline_read(r, replies, n_todo, err);
    if (rc) goto out;
    size_t n_again = 0;
    bool reload = false;
    for (size_t j = 0; j < n_todo; j++) {
      size_t i = todo[j];
      redisReply *rep = replies[j];
      if (rep->type == REDIS_REPLY_INTEGER) {
        results[i] = rep->integer == 1 ? 1 : 0;
      } else if (is_noscript(rep) && attempt == 0) {
        todo[n_again++] = i;
        reload = true;
      } else {
        results[i] = TWIN_EINVAL;
        LOG_WARN("store: trace %s: redis answered %s", traces[i]->trace_id,
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
      }
    }
    twin_redis_free_replies(replies, n_todo);
    memset(replies, 0, n * sizeof *replies);
    n_todo = n_again;
    if (reload && (rc = load_script(r, k_store_script, err)) != 0) goto out;
  }
out:
  twin_buf_free(&summary);
  free(replies);
  free(todo);
  return rc;
}

/* ============================================================================================
 * reads
 * ========================================================================================== */

int monitor_store_get(twin_redis *r, const monitor_store *s, const char *trace_id, char **json,
                      size_t *len, twin_err *err) {
  char key[MONITOR_KEY_MAX];
  monitor_store_key(s, key, "trace:", trace_id);
  const char *argv[] = {"GET", key};
  redisReply *rep = NULL;
  int rc = twin_redis_command_argv(r, 2, argv, NULL, &rep, err);
  if (rc) return rc;
  if (rep->type == REDIS_REPLY_NIL) {
    rc = twin_err_set(err, TWIN_ENOTFOUND, "trace_id: no trace '%s'", trace_id);
  } else if (rep->type != REDIS_REPLY_STRING) {
    rc = twin_err_set(err, TWIN_EINTERNAL, "store: %s is not a string", key);
  } else {
    *json = malloc(rep->len + 1);
    if (!*json) {
      rc = twin_err_set(err, TWIN_ENOMEM, "store: out of memory");
    } else {
      memcpy(*json, rep->str, rep->len);
      (*json)[rep->len] = 0;
      *len = rep->len;
    }
  }
  freeReplyObject(rep);
  return rc;
}

int monitor_store_count(twin_redis *r, const monitor_store *s, uint64_t *n, twin_err *err) {
  char key[MONITOR_KEY_MAX];
  monitor_store_key(s, key, "by_time", NULL);
  const char *argv[] = {"ZCARD", key};
  redisReply *rep = NULL;
  int rc = twin_redis_command_argv(r, 2, argv, NULL, &rep, err);
  if (rc) return rc;
  *n = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 ? (uint64_t)rep->integer : 0;
  freeReplyObject(rep);
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int monitor_store_names(twin_redis *r, const monitor_store *s, bool templates, char ***names,
                        size_t *n, twin_err *err) {
  char key[MONITOR_KEY_MAX];
  monitor_store_key(s, key, templates ? "templates" : "models", NULL);
  const char *argv[] = {"SMEMBERS", key};
  redisReply *rep = NULL;
  *names = NULL;
  *n = 0;
  int rc = twin_redis_command_argv(r, 2, argv, NULL, &rep, err);
  if (rc) return rc;
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) {
    *names = calloc(rep->elements, sizeof **names);
    if (!*names) rc = twin_err_set(err, TWIN_ENOMEM, "store: out of memory");
    for (size_t i = 0; rc == 0 && i < rep->elements; i++) {
      if (rep->element[i]->type != REDIS_REPLY_STRING) continue;
      char *c = strdup(rep->element[i]->str);
      if (!c) {
        rc = twin_err_set(err, TWIN_ENOMEM, "store: out of memory");
        break;
      }
      (*names)[(*n)++] = c;
    }
    if (rc == 0) qsort(*names, *n, sizeof **names, cmp_str);
  }
  freeReplyObject(rep);
  if (rc) {
    monitor_store_free_names(*names, *n);
    *names = NULL;
    *n = 0;
  }
  return rc;
}

void monitor_store_free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

/* ============================================================================================
 * retention
 * ========================================================================================== */

/* Runs the trim script over ids (an array reply of strings). */
static int trim_ids(twin_redis *r, const monitor_store *s, const redisReply *ids, uint64_t *removed, twin_err *err) {
  size_t n = ids->elements;
  const char **argv = calloc(n + 4, sizeof *argv);
  size_t *lens = calloc(n + 4, sizeof *lens);
  int rc = 0;
  if (!argv || !lens) {
    rc = twin_err_set(err, TWIN_ENOMEM, "store: out of memory");
    goto out;
  }
  argv[0] = "EVALSHA";
  argv[1] = s->trim_sha;
  argv[2] = "0";
  argv[3] = s->prefix;
  for (size_t i = 0; i < 4; i++) lens[i] = strlen(argv[i]);
  for (size_t i = 0; i < n; i++) {
    argv[4 + i] = ids->element[i]->str ? ids->element[i]->str : "";
    lens[4 + i] = ids->element[i]->len;
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    redisReply *rep = NULL;
    rc = twin_redis_command_argv(r, (int)(n + 4), argv, lens, &rep, err);
    if (rc == 0) {
      if (rep->type == REDIS_REPLY_INTEGER && rep->integer > 0) *removed += (uint64_t)rep->integer;
      freeReplyObject(rep);
      break;
    }
    if (attempt == 0 && twin_redis_error_is(err, "NOSCRIPT")) {
      if ((rc = load_script(r, k_trim_script, err)) != 0) break;
      continue;
    }
    break;
  }
out:
  free(argv);
  free(lens);
  return rc;
}

int monitor_store_trim(twin_redis *r, const monitor_store *s, int64_t min_time_ms, uint64_t max_count,
                       size_t max_remove, uint64_t *removed, twin_err *err) {
  char key[MONITOR_KEY_MAX];
  monitor_store_key(s, key, "by_time", NULL);
  *removed = 0;
  const size_t batch = 500;
  int rc = 0;
  /* by age */
  while (min_time_ms > 0 && *removed < max_remove) {
    char max_s[32], cnt[32];
    snprintf(max_s, sizeof max_s, "(%lld", (long long)min_time_ms);
    snprintf(cnt, sizeof cnt, "%zu", batch);
    const char *argv[] = {"ZRANGEBYSCORE", key, "-inf", max_s, "LIMIT", "0", cnt};
    redisReply *rep = NULL;
    rc = twin_redis_command_argv(r, 7, argv, NULL, &rep, err);
    if (rc) return rc;
    size_t got = rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0;
    if (got) rc = trim_ids(r, s, rep, removed, err);
    freeReplyObject(rep);
    if (rc || got < batch) break;
  }
  /* by count */
  while (rc == 0 && max_count > 0 && *removed < max_remove) {
    uint64_t count;
    if ((rc = monitor_store_count(r, s, &count, err)) != 0) break;
    if (count <= max_count) break;
    uint64_t excess = count - max_count;
    size_t take = excess < batch ? (size_t)excess : batch;
    char last[32];
    snprintf(last, sizeof last, "%zu", take - 1);
    const char *argv[] = {"ZRANGE", key, "0", last};
    redisReply *rep = NULL;
    rc = twin_redis_command_argv(r, 4, argv, NULL, &rep, err);
    if (rc) break;
    size_t got = rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0;
    if (got) rc = trim_ids(r, s, rep, removed, err);
    freeReplyObject(rep);
    if (got == 0) break;
  }
  return rc;
}
