/* monitor-svc/consumer.c — the consumer thread. Each turn: reconnect if needed (health down
 * meanwhile), make sure the group exists, refresh the gauges, claim idle pending entries,
 * trim, then read a batch (first this consumer's own pending entries after a (re)connect, then
 * new ones with a blocking read) and process it: parse, store (one pipelined script call per
 * trace), dead-letter the malformed, XACK what is done. An entry is acknowledged only after its
 * trace is stored (or dead-lettered), so a crash at any point leaves it pending for a retry;
 * the store's SET NX turns the retry into a no-op. */
#include "monitor-svc/consumer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "monitor-svc/trace_format.h"

#define STATUS_INTERVAL_MS 1000
#define TRIM_MAX_PER_PASS 5000
#define CLAIM_ROUNDS_PER_PASS 20

struct monitor_consumer {
  monitor_consumer_opts o;
  char *stream, *dead_stream, *group, *name, *url; /* owned copies behind o's pointers */
  const monitor_consumer_metrics *cm;
  twin_redis *r; /* the thread's own connection */
  pthread_t thread;
  bool thread_started;
  atomic_bool stop;
  pthread_mutex_t mu; /* guards status */
  monitor_consumer_status status;
  int health; /* -1 unknown, 0 down, 1 up (thread only) */
  char health_reason[256];
};

/* ============================================================================================
 * health and status
 * ========================================================================================== */

static void set_health(monitor_consumer *c, bool up, const char *reason) {
  if (!reason) reason = "";
  if (c->health == (up ? 1 : 0) && (up || strcmp(c->health_reason, reason) == 0)) return;
  bool changed = c->health != (up ? 1 : 0), was_unknown = c->health < 0;
  c->health = up ? 1 : 0;
  snprintf(c->health_reason, sizeof c->health_reason, "%s", reason);
  twin_gauge_set(c->cm->redis_up, up ? 1 : 0);
  pthread_mutex_lock(&c->mu);
  c->status.redis_up = up;
  pthread_mutex_unlock(&c->mu);
  if (changed && !(was_unknown && !up)) {
    if (up)
      LOG_INFO("consumer %s: redis reachable, group '%s' on '%s' ready", c->name, c->group, c->stream);
    else
      LOG_WARN("consumer %s: redis unavailable: %s", c->name, reason);
  }
  if (c->o.on_health) c->o.on_health(c->o.user, up, reason);
}

void monitor_consumer_get_status(monitor_consumer *c, monitor_consumer_status *out) {
  pthread_mutex_lock(&c->mu);
  *out = c->status;
  pthread_mutex_unlock(&c->mu);
}

static int64_t reply_int(const redisReply *r, int64_t dflt) {
  if (!r) return dflt;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
    int64_t v;
    if (twin_parse_int64(r->str, &v, NULL) == 0) return v;
  }
  return dflt;
}

/* XINFO GROUPS + XLEN + ZCARD: lag, pending, stream length, stored traces. */
static int refresh_status(monitor_consumer *c, twin_err *err) {
  char by_time[MONITOR_KEY_MAX];
  monitor_store_key(c->o.store, by_time, "by_time", NULL);
  const char *a1[] = {"XINFO", "GROUPS", c->stream};
  const char *a2[] = {"XLEN", c->stream};
  const char *a3[] = {"ZCARD", by_time};
  int rc = twin_redis_append_argv(c->r, 3, a1, NULL, err);
  if (!rc) rc = twin_redis_append_argv(c->r, 2, a2, NULL, err);
  if (!rc) rc = twin_redis_append_argv(c->r, 2, a3, NULL, err);
  redisReply *rep[3] = {0};
  if (rc) {
    size_t pending = twin_redis_pending(c->r);
    if (pending && twin_redis_pipeline_read(c->r, rep, pending, NULL) == 0) twin_redis_free_replies(rep, pending);
    return rc;
  }
  if ((rc = twin_redis_pipeline_read(c->r, rep, 3, err)) != 0) return rc;
  int64_t lag = -1, pending = 0;
  if (rep[0]->type == REDIS_REPLY_ARRAY) {
    for (size_t g = 0; g < rep[0]->elements; g++) {
      const redisReply *grp = rep[0]->element[g];
      if (grp->type != REDIS_REPLY_ARRAY) continue;
      bool mine = false;
      int64_t g_lag = -1, g_pending = 0;
      for (size_t k = 0; k + 1 < grp->elements; k += 2) {
        const redisReply *key = grp->element[k], *val = grp->element[k + 1];
        if (key->type != REDIS_REPLY_STRING && key->type != REDIS_REPLY_STATUS) continue;
        if (strcmp(key->str, "name") == 0 && val->type == REDIS_REPLY_STRING) mine = strcmp(val->str, c->group) == 0;
        if (strcmp(key->str, "pending") == 0) g_pending = reply_int(val, 0);
        if (strcmp(key->str, "lag") == 0) g_lag = reply_int(val, -1);
      }
      if (mine) {
        lag = g_lag;
        pending = g_pending;
      }
    }
  }
  int64_t len = reply_int(rep[1], 0), stored = reply_int(rep[2], 0);
  twin_redis_free_replies(rep, 3);
  if (lag >= 0) twin_gauge_set(c->cm->lag, (double)lag);
  twin_gauge_set(c->cm->pending, (double)pending);
  twin_gauge_set(c->cm->stream_length, (double)len);
  twin_gauge_set(c->cm->stored_traces, (double)stored);
  pthread_mutex_lock(&c->mu);
  c->status.lag = lag;
  c->status.pending = pending;
  c->status.stream_length = len;
  c->status.stored_traces = stored;
  pthread_mutex_unlock(&c->mu);
  return 0;
}

/* ============================================================================================
 * processing a batch of entries
 * ========================================================================================== */

typedef struct batch_entry {
  const redisReply *id;     /* the entry id (string reply) */
  const redisReply *fields; /* [name, value]... or NULL when the entry is gone from the stream */
  int deliveries;           /* 0 = unknown (not claimed) */
  monitor_trace trace;      /* parsed, when to be stored */
  enum { E_ACK, E_STORE, E_DEAD } action;
  monitor_reject_reason reason;
  char why[300];
  bool done; /* may be acknowledged */
} batch_entry;

static const redisReply *field_value(const redisReply *fields, const char *name) {
  if (!fields || fields->type != REDIS_REPLY_ARRAY) return NULL;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    const redisReply *k = fields->element[i];
    if (k->type == REDIS_REPLY_STRING && k->len == strlen(name) && memcmp(k->str, name, k->len) == 0)
      return fields->element[i + 1];
  }
  return NULL;
}

static void classify(monitor_consumer *c, batch_entry *e, int64_t now_ms) {
  e->action = E_ACK;
  if (!e->fields || e->fields->type != REDIS_REPLY_ARRAY) return; /* deleted from the stream */
  twin_err perr = {0};
  if (e->deliveries > c->o.max_deliveries) {
    e->action = E_DEAD;
    e->reason = MONITOR_REJECT_UNDELIVERABLE;
    snprintf(e->why, sizeof e->why, "delivered %d times without being stored", e->deliveries);
    return;
  }
  const redisReply *v = field_value(e->fields, TWIN_TRACE_FIELD);
  if (!v || v->type != REDIS_REPLY_STRING) {
    e->action = E_DEAD;
    e->reason = MONITOR_REJECT_NO_FIELD;
    snprintf(e->why, sizeof e->why, "entry has no '%s' field", TWIN_TRACE_FIELD);
    return;
  }
  if (monitor_trace_parse(v->str, v->len, &e->trace, &e->reason, &perr) != 0) {
    e->action = E_DEAD;
    snprintf(e->why, sizeof e->why, "%s", perr.msg);
    return;
  }
  if (c->o.retention_ms > 0 && e->trace.time_ms < now_ms - c->o.retention_ms) {
    twin_counter_inc(c->cm->expired);
    monitor_trace_free(&e->trace);
    return;
  }
  e->action = E_STORE;
}

/* The entry's fields as "name=value" lines, for the dead-letter record of an entry without a
 * usable "trace" field. */
static void flatten_fields(const redisReply *fields, twin_buf *out) {
  if (!fields || fields->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    const redisReply *k = fields->element[i], *v = fields->element[i + 1];
    if (k->type == REDIS_REPLY_STRING) twin_buf_append(out, k->str, k->len);
    twin_buf_putc(out, '=');
    if (v->type == REDIS_REPLY_STRING) twin_buf_append(out, v->str, v->len);
    twin_buf_putc(out, '\n');
  }
}

static int dead_letter(monitor_consumer *c, batch_entry *es, size_t n, twin_err *err) {
  size_t n_dead = 0;
  twin_buf raw = {0};
  char maxlen[32];
  snprintf(maxlen, sizeof maxlen, "%lld", (long long)c->o.dead_maxlen);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    batch_entry *e = &es[i];
    if (e->action != E_DEAD) continue;
    LOG_WARN("consumer %s: entry %s dead-lettered: %s", c->name, e->id->str, e->why);
    const redisReply *v = field_value(e->fields, TWIN_TRACE_FIELD);
    twin_buf_reset(&raw);
    if (v && v->type == REDIS_REPLY_STRING)
      twin_buf_append(&raw, v->str, v->len);
    else
      flatten_fields(e->fields, &raw);
    const char *argv[] = {"XADD", c->dead_stream, "MAXLEN", "~", maxlen, "*",
                          TWIN_TRACE_DEAD_FIELD_SOURCE_ID, e->id->str, TWIN_TRACE_DEAD_FIELD_REASON, e->why,
                          TWIN_TRACE_DEAD_FIELD_RAW, raw.len ? raw.data : "", TWIN_TRACE_DEAD_FIELD_CONSUMER, c->name};
    size_t lens[14];
    for (int k = 0; k < 14; k++) lens[k] = strlen(argv[k]);
    lens[11] = raw.len;
    rc = twin_redis_append_argv(c->r, 14, argv, lens, err);
    if (rc == 0) n_dead++;
  }
  twin_buf_free(&raw);
  if (n_dead == 0) return rc;
  redisReply **rep = calloc(n_dead, sizeof *rep);
  if (!rep) return twin_err_set(err, TWIN_ENOMEM, "consumer: out of memory");
  if (rc) { /* drain what was appended; the entries stay pending */
    if (twin_redis_pipeline_read(c->r, rep, n_dead, NULL) == 0) twin_redis_free_replies(rep, n_dead);
    free(rep);
    return rc;
  }
  rc = twin_redis_pipeline_read(c->r, rep, n_dead, err);
  if (rc == 0) {
    for (size_t i = 0, j = 0; i < n; i++) {
      if (es[i].action != E_DEAD) continue;
      if (rep[j]->type == REDIS_REPLY_ERROR) {
        LOG_WARN("consumer %s: dead-lettering %s failed: %s", c->name, es[i].id->str, rep[j]->str);
      } else {
        es[i].done = true;
        twin_counter_inc(c->cm->dead_lettered[es[i].reason]);
      }
      j++;
    }
    twin_redis_free_replies(rep, n_dead);
  }
  free(rep);
  return rc;
}

static int ack(monitor_consumer *c, batch_entry *es, size_t n, twin_err *err) {
  const char **argv = malloc((n + 3) * sizeof *argv);
  if (!argv) return twin_err_set(err, TWIN_ENOMEM, "consumer: out of memory");
  argv[0] = "XACK";
  argv[1] = c->stream;
  argv[2] = c->group;
  int argc = 3;
  for (size_t i = 0; i < n; i++)
    if (es[i].done) argv[argc++] = es[i].id->str;
  int rc = 0;
  if (argc > 3) {
    redisReply *rep = NULL;
    rc = twin_redis_command_argv(c->r, argc, argv, NULL, &rep, err);
    if (rc == 0) twin_counter_add(c->cm->acked, (double)reply_int(rep, 0));
    freeReplyObject(rep);
  }
  free(argv);
  return rc;
}

/* entries: array of [id, fields] replies (NIL elements skipped); deliveries may be NULL. */
static int process(monitor_consumer *c, const redisReply *entries, const int *deliveries, twin_err *err) {
  size_t n = entries->elements;
  if (n == 0) return 0;
  batch_entry *es = calloc(n, sizeof *es);
  const monitor_trace **traces = calloc(n, sizeof *traces);
  const char **raw = calloc(n, sizeof *raw);
  size_t *raw_len = calloc(n, sizeof *raw_len), *at = calloc(n, sizeof *at);
  int *results = calloc(n, sizeof *results);
  int rc = 0;
  size_t m = 0, k = 0;
  if (!es || !traces || !raw || !raw_len || !at || !results) {
    rc = twin_err_set(err, TWIN_ENOMEM, "consumer: out of memory");
    goto out;
  }
  int64_t now = twin_time_wall_ms();
  for (size_t i = 0; i < n; i++) {
    const redisReply *e = entries->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING) continue;
    batch_entry *b = &es[m++];
    b->id = e->element[0];
    b->fields = e->element[1]->type == REDIS_REPLY_ARRAY ? e->element[1] : NULL;
    b->deliveries = deliveries ? deliveries[i] : 0;
    classify(c, b, now);
    if (b->action == E_ACK) b->done = true;
  }
  twin_counter_add(c->cm->entries_read, (double)m);
  if (m) {
    pthread_mutex_lock(&c->mu);
    c->status.last_entry_ms = now;
    pthread_mutex_unlock(&c->mu);
  }
  for (size_t i = 0; i < m; i++) {
    if (es[i].action != E_STORE) continue;
    const redisReply *v = field_value(es[i].fields, TWIN_TRACE_FIELD);
    traces[k] = &es[i].trace;
    raw[k] = v->str;
    raw_len[k] = v->len;
    at[k++] = i;
  }
  if (k && (rc = monitor_store_put(c->r, c->o.store, traces, raw, raw_len, k, results, err)) != 0) goto out;
  for (size_t j = 0; j < k; j++) {
    batch_entry *b = &es[at[j]];
    if (results[j] == 1) {
      twin_counter_inc(c->cm->traces_stored);
      monitor_metrics_observe(c->o.metrics, &b->trace);
      b->done = true;
    } else if (results[j] == 0) {
      twin_counter_inc(c->cm->duplicates);
      b->done = true;
    } /* else: Redis refused it; it stays pending and is claimed again after the idle time */
  }
  if ((rc = dead_letter(c, es, m, err)) != 0) goto out;
  rc = ack(c, es, m, err);
out:
  if (es)
    for (size_t i = 0; i < m; i++) monitor_trace_free(&es[i].trace);
  free(es);
  free(traces);
  free(raw);
  free(raw_len);
  free(at);
  free(results);
  return rc;
}

/* ============================================================================================
 * reading, claiming, trimming
 * ========================================================================================== */

static int ensure_group(monitor_consumer *c, twin_err *err) {
  const char *argv[] = {"XGROUP", "CREATE", c->stream, c->group, "0", "MKSTREAM"};
  redisReply *rep = NULL;
  int rc = twin_redis_command_argv(c->r, 6, argv, NULL, &rep, err);
  freeReplyObject(rep);
  if (rc == TWIN_EINVAL && twin_redis_error_is(err, "BUSYGROUP")) return 0;
  if (rc == 0) LOG_INFO("consumer %s: created group '%s' on '%s' from the stream's start", c->name, c->group, c->stream);
  return rc;
}

/* XREADGROUP; *entries_out borrows from *rep (the caller frees rep); *n = 0 when nothing came. */
static int read_batch(monitor_consumer *c, bool own_pending, redisReply **rep, const redisReply **entries_out,
                      twin_err *err) {
  char count[32], block[32];
  snprintf(count, sizeof count, "%d", c->o.batch);
  snprintf(block, sizeof block, "%lld", (long long)c->o.block_ms);
  const char *pending_argv[] = {"XREADGROUP", "GROUP", c->group, c->name, "COUNT", count, "STREAMS", c->stream, "0"};
  const char *new_argv[] = {"XREADGROUP", "GROUP", c->group, c->name, "COUNT", count, "BLOCK", block,
                            "STREAMS", c->stream, ">"};
  int rc = own_pending ? twin_redis_command_argv(c->r, 9, pending_argv, NULL, rep, err)
                       : twin_redis_command_argv(c->r, 11, new_argv, NULL, rep, err);
  *entries_out = NULL;
  if (rc) return rc;
  const redisReply *r = *rep;
  /* [[stream, [entries]]] or NIL on timeout */
  if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_ARRAY &&
      r->element[0]->elements == 2 && r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
    *entries_out = r->element[0]->element[1];
  return 0;
}

/* XAUTOCLAIM rounds: entries idle for claim_idle_ms move to this consumer and are processed;
 * those delivered more than max_deliveries times are dead-lettered. */
static int claim_pass(monitor_consumer *c, twin_err *err) {
  char cursor[64] = "0-0", idle[32], count[32];
  snprintf(idle, sizeof idle, "%lld", (long long)c->o.claim_idle_ms);
  snprintf(count, sizeof count, "%d", c->o.batch);
  for (int round = 0; round < CLAIM_ROUNDS_PER_PASS && !atomic_load(&c->stop); round++) {
    const char *argv[] = {"XAUTOCLAIM", c->stream, c->group, c->name, idle, cursor, "COUNT", count};
    redisReply *rep = NULL;
    int rc = twin_redis_command_argv(c->r, 8, argv, NULL, &rep, err);
    if (rc) return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
      freeReplyObject(rep);
      return twin_err_set(err, TWIN_EINTERNAL, "consumer: XAUTOCLAIM answered an unexpected reply");
    }
    snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
    const redisReply *entries = rep->element[1];
    size_t n = entries->elements;
    int *deliveries = NULL;
    if (n > 0) {
      twin_counter_add(c->cm->claimed, (double)n);
      LOG_INFO("consumer %s: claimed %zu entries idle for %lld ms or more", c->name, n, (long long)c->o.claim_idle_ms);
      deliveries = calloc(n, sizeof *deliveries);
      redisReply **pend = calloc(n, sizeof *pend);
      if (!deliveries || !pend) {
        free(deliveries);
        free(pend);
        freeReplyObject(rep);
        return twin_err_set(err, TWIN_ENOMEM, "consumer: out of memory");
      }
      size_t appended = 0;
      for (size_t i = 0; i < n && rc == 0; i++) {
        const redisReply *e = entries->element[i];
        const char *id = e->type == REDIS_REPLY_ARRAY && e->elements > 0 && e->element[0]->type == REDIS_REPLY_STRING
                             ? e->element[0]->str
                             : "0-0";
        const char *pargv[] = {"XPENDING", c->stream, c->group, id, id, "1"};
        rc = twin_redis_append_argv(c->r, 6, pargv, NULL, err);
        if (rc == 0) appended++;
      }
      if (rc == 0) rc = twin_redis_pipeline_read(c->r, pend, appended, err);
      else if (appended && twin_redis_pipeline_read(c->r, pend, appended, NULL) == 0) twin_redis_free_replies(pend, appended);
      if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
          const redisReply *p = pend[i];
          /* [[id, consumer, idle, deliveries]] */
          if (p && p->type == REDIS_REPLY_ARRAY && p->elements == 1 && p->element[0]->type == REDIS_REPLY_ARRAY &&
              p->element[0]->elements == 4)
            deliveries[i] = (int)reply_int(p->element[0]->element[3], 0);
        }
        twin_redis_free_replies(pend, n);
        rc = process(c, entries, deliveries, err);
      }
      free(pend);
    }
    free(deliveries);
    freeReplyObject(rep);
    if (rc) return rc;
    if (strcmp(cursor, "0-0") == 0) break;
  }
  return 0;
}

/* Removes the group's consumers (not this one) that hold nothing pending and have been idle
 * for consumer_expiry_ms: replicas that restarted under new names. A live one that was removed
 * by mistake is simply created again by its next read. */
static int forget_idle_consumers(monitor_consumer *c, twin_err *err) {
  const char *argv[] = {"XINFO", "CONSUMERS", c->stream, c->group};
  redisReply *rep = NULL;
  int rc = twin_redis_command_argv(c->r, 4, argv, NULL, &rep, err);
  if (rc) return rc;
  for (size_t i = 0; rc == 0 && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
    const redisReply *info = rep->element[i];
    if (info->type != REDIS_REPLY_ARRAY) continue;
    const char *name = NULL;
    int64_t pending = -1, idle = -1;
    for (size_t k = 0; k + 1 < info->elements; k += 2) {
      const redisReply *key = info->element[k], *val = info->element[k + 1];
      if (key->type != REDIS_REPLY_STRING && key->type != REDIS_REPLY_STATUS) continue;
      if (strcmp(key->str, "name") == 0 && val->type == REDIS_REPLY_STRING) name = val->str;
      if (strcmp(key->str, "pending") == 0) pending = reply_int(val, -1);
      if (strcmp(key->str, "idle") == 0) idle = reply_int(val, -1);
    }
    if (!name || strcmp(name, c->name) == 0 || pending != 0 || idle < c->o.consumer_expiry_ms) continue;
    const char *del[] = {"XGROUP", "DELCONSUMER", c->stream, c->group, name};
    redisReply *d = NULL;
    rc = twin_redis_command_argv(c->r, 5, del, NULL, &d, err);
    freeReplyObject(d);
    if (rc == 0) LOG_INFO("consumer %s: removed consumer %s (idle %lld ms, nothing pending)", c->name, name, (long long)idle);
  }
  freeReplyObject(rep);
  return rc;
}

static int trim(monitor_consumer *c, twin_err *err) {
  if (c->o.retention_ms <= 0 && c->o.max_traces <= 0) return 0;
  int64_t min_time = c->o.retention_ms > 0 ? twin_time_wall_ms() - c->o.retention_ms : 0;
  uint64_t removed = 0;
  int rc = monitor_store_trim(c->r, c->o.store, min_time, c->o.max_traces > 0 ? (uint64_t)c->o.max_traces : 0,
                              TRIM_MAX_PER_PASS, &removed, err);
  if (removed) {
    twin_counter_add(c->cm->trimmed, (double)removed);
    LOG_DEBUG("consumer %s: retention removed %llu traces", c->name, (unsigned long long)removed);
  }
  return rc;
}

/* ============================================================================================
 * the thread
 * ========================================================================================== */

static bool is_connection_error(int rc) { return rc == TWIN_EUNAVAILABLE || rc == TWIN_ETIMEOUT; }

static void *consumer_main(void *arg) {
  monitor_consumer *c = arg;
  twin_err err = {0};
  bool group_ready = false, own_pending = true;
  int64_t next_status = 0, next_claim = 0, next_trim = 0;
  set_health(c, false, "connecting to redis");
  while (!atomic_load(&c->stop)) {
    if (!twin_redis_connected(c->r)) {
      group_ready = false;
      if (twin_redis_wait_connected(c->r, 500, &err) != 0) {
        set_health(c, false, err.msg);
        continue;
      }
    }
    int rc = 0;
    if (!group_ready) {
      if ((rc = ensure_group(c, &err)) == 0) {
        group_ready = true;
        own_pending = true;
      }
    }
    int64_t now = twin_time_mono_ms();
    if (rc == 0) set_health(c, true, NULL);
    if (rc == 0 && now >= next_status) {
      rc = refresh_status(c, &err);
      next_status = now + STATUS_INTERVAL_MS;
    }
    if (rc == 0 && now >= next_claim) {
      rc = claim_pass(c, &err);
      if (rc == 0 && c->o.consumer_expiry_ms > 0) rc = forget_idle_consumers(c, &err);
      next_claim = now + c->o.claim_interval_ms;
    }
    if (rc == 0 && now >= next_trim) {
      rc = trim(c, &err);
      next_trim = now + c->o.trim_interval_ms;
    }
    if (rc == 0) {
      redisReply *rep = NULL;
      const redisReply *entries = NULL;
      rc = read_batch(c, own_pending, &rep, &entries, &err);
      if (rc == 0) {
        if (own_pending && (!entries || entries->elements == 0)) own_pending = false;
        if (entries) rc = process(c, entries, NULL, &err);
        /* after a batch, refresh the gauges soon rather than a full interval later */
        if (rc == 0 && entries && entries->elements > 0 && next_status > now + 200) next_status = now + 200;
      }
      freeReplyObject(rep);
    }
    if (rc == 0) continue;
    twin_counter_inc(c->cm->redis_errors);
    if (is_connection_error(rc)) {
      set_health(c, false, err.msg);
      own_pending = true;
      continue;
    }
    if (twin_redis_error_is(&err, "NOGROUP")) {
      LOG_WARN("consumer %s: %s; creating the group again", c->name, err.msg);
      group_ready = false;
      continue;
    }
    /* an error reply or a local failure: say so, wait a little, go on */
    LOG_ERROR("consumer %s: %s", c->name, err.msg);
    if (!group_ready) set_health(c, false, err.msg);
    twin_sleep_ms(200);
  }
  return NULL;
}

int monitor_consumer_start(const monitor_consumer_opts *opts, monitor_consumer **out, twin_err *err) {
  *out = NULL;
  monitor_consumer *c = calloc(1, sizeof *c);
  if (!c) return twin_err_set(err, TWIN_ENOMEM, "consumer: out of memory");
  c->o = *opts;
  c->health = -1;
  pthread_mutex_init(&c->mu, NULL);
  c->status.lag = -1;
  c->stream = strdup(opts->stream);
  c->dead_stream = strdup(opts->dead_stream);
  c->group = strdup(opts->group);
  c->name = strdup(opts->consumer);
  c->url = twin_strdup(opts->redis.url);
  int rc = 0;
  if (!c->stream || !c->dead_stream || !c->group || !c->name || (opts->redis.url && !c->url)) {
    rc = twin_err_set(err, TWIN_ENOMEM, "consumer: out of memory");
    goto fail;
  }
  c->o.stream = c->stream;
  c->o.dead_stream = c->dead_stream;
  c->o.group = c->group;
  c->o.consumer = c->name;
  c->o.redis.url = c->url;
  if (c->o.batch <= 0) c->o.batch = 256;
  if (c->o.max_deliveries <= 0) c->o.max_deliveries = 5;
  if (c->o.claim_interval_ms <= 0) c->o.claim_interval_ms = 5000;
  if (c->o.trim_interval_ms <= 0) c->o.trim_interval_ms = 10000;
  if (c->o.dead_maxlen <= 0) c->o.dead_maxlen = 100000;
  c->cm = monitor_metrics_consumer(opts->metrics);
  twin_redis_options ro = c->o.redis;
  ro.require_connection = false;
  /* a blocking read must not look like a dead connection */
  int need = (int)c->o.block_ms + 5000;
  if (ro.command_timeout_ms >= 0 && ro.command_timeout_ms < need) ro.command_timeout_ms = need;
  if ((rc = twin_redis_open(&c->r, &ro, err)) != 0) goto fail;
  if (pthread_create(&c->thread, NULL, consumer_main, c) != 0) {
    rc = twin_err_set(err, TWIN_EINTERNAL, "consumer: cannot start the thread");
    goto fail;
  }
  c->thread_started = true;
  *out = c;
  return 0;
fail:
  monitor_consumer_destroy(c);
  return rc;
}

void monitor_consumer_stop(monitor_consumer *c) {
  if (!c) return;
  atomic_store(&c->stop, true);
  if (c->thread_started) pthread_join(c->thread, NULL);
  c->thread_started = false;
}

void monitor_consumer_destroy(monitor_consumer *c) {
  if (!c) return;
  monitor_consumer_stop(c);
  twin_redis_close(c->r);
  pthread_mutex_destroy(&c->mu);
  free(c->stream);
  free(c->dead_stream);
  free(c->group);
  free(c->name);
  free(c->url);
  free(c);
}
