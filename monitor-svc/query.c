/* monitor-svc/query.c — listing traces with filters and cursor paging, and statistics over a
 * window, read from the store's indexes (see query.h for the strategy and the token format). */
#include "monitor-svc/query.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "monitor-svc/trace_format.h"

#define WALK_BATCH 1000
#define STATS_BATCH 5000

static bool set(const char *s) { return s && *s; }

/* ============================================================================================
 * validation and page tokens
 * ========================================================================================== */

typedef struct page_cursor {
  bool present;
  int64_t time_ms;
  uint64_t total;     /* the first page's total (filtered listings carry it) */
  bool total_partial;
  char id[TWIN_TRACE_ID_MAX_LEN + 1];
} page_cursor;

void monitor_list_token(int64_t time_ms, const char *id, uint64_t total, bool partial, char out[MONITOR_TOKEN_MAX]) {
  char plain[MONITOR_TOKEN_MAX / 2];
  int n = snprintf(plain, sizeof plain, "v1:%lld:%llu:%d:%s", (long long)time_ms, (unsigned long long)total,
                   partial ? 1 : 0, id);
  if (n < 0 || (size_t)n >= sizeof plain) {
    out[0] = 0;
    return;
  }
  twin_hex_encode(plain, (size_t)n, out);
}

static int token_decode(const char *tok, page_cursor *c, twin_err *err) {
  memset(c, 0, sizeof *c);
  if (!set(tok)) return 0;
  size_t n = strlen(tok);
  char plain[MONITOR_TOKEN_MAX / 2 + 1];
  if (n % 2 || n / 2 >= sizeof plain || twin_hex_decode(tok, plain, n / 2, NULL) != 0)
    return twin_err_set(err, TWIN_EINVAL, "page_token: not a page token of this service");
  plain[n / 2] = 0;
  long long t;
  unsigned long long total;
  int partial, used = 0;
  if (sscanf(plain, "v1:%lld:%llu:%d:%n", &t, &total, &partial, &used) != 3 || used == 0 || t < 0 ||
      (partial != 0 && partial != 1) || !monitor_trace_id_valid(plain + used, strlen(plain + used)))
    return twin_err_set(err, TWIN_EINVAL, "page_token: not a page token of this service");
  c->present = true;
  c->time_ms = t;
  c->total = total;
  c->total_partial = partial;
  memcpy(c->id, plain + used, strlen(plain + used) + 1);
  return 0;
}

static int check_name(const char *field, const char *v, twin_err *err) {
  if (!v) return 0;
  size_t n = strlen(v);
  if (n > TWIN_TRACE_NAME_MAX_LEN)
    return twin_err_set(err, TWIN_EINVAL, "%s: longer than %d bytes", field, TWIN_TRACE_NAME_MAX_LEN);
  if (twin_utf8_validate(v, n) != n) return twin_err_set(err, TWIN_EINVAL, "%s: not valid UTF-8", field);
  return 0;
}

int monitor_list_validate(const monitor_list_query *q, twin_err *err) {
  if (q->since_ms < 0) return twin_err_set(err, TWIN_EINVAL, "since_ms: %lld is negative", (long long)q->since_ms);
  if (q->until_ms < 0) return twin_err_set(err, TWIN_EINVAL, "until_ms: %lld is negative", (long long)q->until_ms);
  if (q->since_ms && q->until_ms && q->since_ms > q->until_ms)
    return twin_err_set(err, TWIN_EINVAL, "since_ms: %lld is after until_ms %lld", (long long)q->since_ms,
                        (long long)q->until_ms);
  if (q->page_size > MONITOR_PAGE_SIZE_MAX)
    return twin_err_set(err, TWIN_EINVAL, "page_size: %u is over the limit of %d", q->page_size, MONITOR_PAGE_SIZE_MAX);
  if (check_name("model", q->model, err) || check_name("template_name", q->template_name, err)) return TWIN_EINVAL;
  if (q->text) {
    size_t n = strlen(q->text);
    if (n > MONITOR_TEXT_MAX) return twin_err_set(err, TWIN_EINVAL, "text: longer than %d bytes", MONITOR_TEXT_MAX);
    if (twin_utf8_validate(q->text, n) != n) return twin_err_set(err, TWIN_EINVAL, "text: not valid UTF-8");
  }
  page_cursor c;
  return token_decode(q->page_token, &c, err);
}

/* ============================================================================================
 * walking an index newest first, from a cursor
 * ========================================================================================== */

typedef struct walker {
  twin_redis *r;
  char key[MONITOR_KEY_MAX];
  char max[32], min[32];
  size_t offset;
  const page_cursor *cursor;
  redisReply *rep; /* the current batch; ids point into it */
  bool end;
} walker;

static void score_bound(char out[32], int64_t v, bool present, const char *none) {
  if (present)
    snprintf(out, 32, "%lld", (long long)v);
  else
    snprintf(out, 32, "%s", none);
}

static void walker_init(walker *w, twin_redis *r, const char *key, const monitor_list_query *q, const page_cursor *c) {
  memset(w, 0, sizeof *w);
  w->r = r;
  snprintf(w->key, sizeof w->key, "%s", key);
  int64_t upper = q->until_ms;
  bool has_upper = q->until_ms > 0;
  if (c && c->present && (!has_upper || c->time_ms < upper)) {
    upper = c->time_ms;
    has_upper = true;
  }
  score_bound(w->max, upper, has_upper, "+inf");
  score_bound(w->min, q->since_ms, q->since_ms > 0, "-inf");
  w->cursor = c && c->present ? c : NULL;
}

/* Next batch of up to `want` candidates: ids[i] (borrowed until the next call) and times[i].
 * *n = 0 at the end. */
static int walker_next(walker *w, size_t want, const char **ids, size_t *id_lens, int64_t *times, size_t *n,
                       twin_err *err) {
  *n = 0;
  while (*n == 0 && !w->end) {
    freeReplyObject(w->rep);
    w->rep = NULL;
    const char *argv[] = {"ZREVRANGEBYSCORE", w->key, w->max, w->min, "WITHSCORES", "LIMIT", NULL, NULL};
    char off[32], cnt[32];
    snprintf(off, sizeof off, "%zu", w->offset);
    snprintf(cnt, sizeof cnt, "%zu", want);
    argv[6] = off;
    argv[7] = cnt;
    int rc = twin_redis_command_argv(w->r, 8, argv, NULL, &w->rep, err);
    if (rc) return rc;
    if (w->rep->type != REDIS_REPLY_ARRAY)
      return twin_err_set(err, TWIN_EINTERNAL, "store: %s is not a sorted set", w->key);
    size_t got = w->rep->elements / 2;
    w->offset += got;
    if (got < want) w->end = true;
    for (size_t i = 0; i < got; i++) {
      const redisReply *m = w->rep->element[2 * i], *sc = w->rep->element[2 * i + 1];
      if (m->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING) continue;
      int64_t t = (int64_t)strtod(sc->str, NULL);
      /* At the cursor's time, members come in descending order: those >= the cursor's id were
       * handed out already. */
      if (w->cursor && t == w->cursor->time_ms && strcmp(m->str, w->cursor->id) >= 0) continue;
      ids[*n] = m->str;
      id_lens[*n] = m->len;
      times[*n] = t;
      (*n)++;
    }
  }
  return 0;
}

static void walker_free(walker *w) {
  freeReplyObject(w->rep);
  w->rep = NULL;
}

/* ============================================================================================
 * fetching records and summaries
 * ========================================================================================== */

/* MGET of the records of ids[0..n): *rep gets the array reply (NIL for traces gone). */
static int fetch_records(twin_redis *r, const monitor_store *s, const char *const *ids, size_t n, redisReply **rep,
                         twin_err *err) {
  const char **argv = malloc((n + 1) * sizeof *argv);
  char *keys = malloc(n * MONITOR_KEY_MAX);
  int rc = 0;
  if (!argv || !keys) {
    rc = twin_err_set(err, TWIN_ENOMEM, "list: out of memory");
    goto out;
  }
  argv[0] = "MGET";
  for (size_t i = 0; i < n; i++) {
    monitor_store_key(s, keys + i * MONITOR_KEY_MAX, "trace:", ids[i]);
    argv[1 + i] = keys + i * MONITOR_KEY_MAX;
  }
  rc = twin_redis_command_argv(r, (int)(n + 1), argv, NULL, rep, err);
  if (rc == 0 && ((*rep)->type != REDIS_REPLY_ARRAY || (*rep)->elements != n)) {
    freeReplyObject(*rep);
    *rep = NULL;
    rc = twin_err_set(err, TWIN_EINTERNAL, "list: MGET answered an unexpected reply");
  }
out:
  free(argv);
  free(keys);
  return rc;
}

/* HMGET of the summaries of ids[0..n). */
static int fetch_summaries(twin_redis *r, const monitor_store *s, const char *const *ids, const size_t *lens,
                           size_t n, redisReply **rep, twin_err *err) {
  const char **argv = malloc((n + 2) * sizeof *argv);
  size_t *alens = malloc((n + 2) * sizeof *alens);
  char key[MONITOR_KEY_MAX];
  int rc = 0;
  if (!argv || !alens) {
    rc = twin_err_set(err, TWIN_ENOMEM, "out of memory");
    goto out;
  }
  monitor_store_key(s, key, "summary", NULL);
  argv[0] = "HMGET";
  argv[1] = key;
  alens[0] = 5;
  alens[1] = strlen(key);
  for (size_t i = 0; i < n; i++) {
    argv[2 + i] = ids[i];
    alens[2 + i] = lens[i];
  }
  rc = twin_redis_command_argv(r, (int)(n + 2), argv, alens, rep, err);
  if (rc == 0 && ((*rep)->type != REDIS_REPLY_ARRAY || (*rep)->elements != n)) {
    freeReplyObject(*rep);
    *rep = NULL;
    rc = twin_err_set(err, TWIN_EINTERNAL, "HMGET answered an unexpected reply");
  }
out:
  free(argv);
  free(alens);
  return rc;
}

/* ============================================================================================
 * listing
 * ========================================================================================== */

typedef struct page_item {
  char id[TWIN_TRACE_ID_MAX_LEN + 1];
  int64_t time_ms;
  char *doc; /* owned once fetched */
  size_t doc_len;
} page_item;

static int copy_doc(page_item *it, const char *s, size_t n) {
  it->doc = malloc(n + 1);
  if (!it->doc) return TWIN_ENOMEM;
  memcpy(it->doc, s, n);
  it->doc[n] = 0;
  it->doc_len = n;
  return 0;
}

/* Fills docs for the items that have none yet, then moves the found ones into page. */
static int finish_page(twin_redis *r, const monitor_store *s, page_item *items, size_t n, monitor_list_page *page,
                       twin_err *err) {
  const char **ids = malloc((n ? n : 1) * sizeof *ids);
  size_t *which = malloc((n ? n : 1) * sizeof *which);
  int rc = 0;
  if (!ids || !which) {
    rc = twin_err_set(err, TWIN_ENOMEM, "list: out of memory");
    goto out;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!items[i].doc) {
      ids[m] = items[i].id;
      which[m++] = i;
    }
  if (m) {
    redisReply *rep = NULL;
    if ((rc = fetch_records(r, s, ids, m, &rep, err)) != 0) goto out;
    for (size_t j = 0; j < m && rc == 0; j++) {
      const redisReply *e = rep->element[j];
      if (e->type == REDIS_REPLY_STRING && copy_doc(&items[which[j]], e->str, e->len))
        rc = twin_err_set(err, TWIN_ENOMEM, "list: out of memory");
    }
    freeReplyObject(rep);
    if (rc) goto out;
  }
  page->docs = calloc(n ? n : 1, sizeof *page->docs);
  page->doc_lens = calloc(n ? n : 1, sizeof *page->doc_lens);
  if (!page->docs || !page->doc_lens) {
    rc = twin_err_set(err, TWIN_ENOMEM, "list: out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (!items[i].doc) continue; /* removed by retention meanwhile */
    page->docs[page->n] = items[i].doc;
    page->doc_lens[page->n++] = items[i].doc_len;
    items[i].doc = NULL;
  }
out:
  free(ids);
  free(which);
  return rc;
}

/* The query and answer of a record, matched against the needle. */
static bool record_matches_text(const monitor_text_needle *needle, const char *doc, size_t len) {
  cJSON *o = cJSON_ParseWithLength(doc, len);
  if (!o) return false;
  const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, TWIN_TRACE_KEY_QUERY);
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, TWIN_TRACE_KEY_ANSWER);
  bool hit = (cJSON_IsString(q) && monitor_text_contains(needle, q->valuestring)) ||
             (cJSON_IsString(a) && monitor_text_contains(needle, a->valuestring));
  cJSON_Delete(o);
  return hit;
}

/* Keeps pass[i] only for the ids[i] that are members of the sorted set key (one ZMSCORE). */
static int filter_by_index(twin_redis *r, const char *key, const char *const *ids, const size_t *lens, size_t n,
                           bool *pass, twin_err *err) {
  const char **argv = malloc((n + 2) * sizeof *argv);
  size_t *alens = malloc((n + 2) * sizeof *alens);
  int rc = 0;
  if (!argv || !alens) {
    rc = twin_err_set(err, TWIN_ENOMEM, "list: out of memory");
    goto out;
  }
  argv[0] = "ZMSCORE";
  argv[1] = key;
  alens[0] = 7;
  alens[1] = strlen(key);
  for (size_t i = 0; i < n; i++) {
    argv[2 + i] = ids[i];
    alens[2 + i] = lens[i];
  }
  redisReply *rep = NULL;
  if ((rc = twin_redis_command_argv(r, (int)(n + 2), argv, alens, &rep, err)) != 0) goto out;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
    rc = twin_err_set(err, TWIN_EINTERNAL, "list: ZMSCORE answered an unexpected reply");
  } else {
    for (size_t i = 0; i < n; i++)
      if (rep->element[i]->type == REDIS_REPLY_NIL) pass[i] = false;
  }
  freeReplyObject(rep);
out:
  free(argv);
  free(alens);
  return rc;
}

/* The indexes the filters name (model, template, errors): the smallest becomes the walk's base
 * (*base), the others go to post[0..*n_post) and are checked by membership. Every index scores
 * by time and holds trace ids, so a page token means the same whichever index is walked. */
static int choose_indexes(twin_redis *r, const monitor_store *s, const monitor_list_query *q, char *base,
                          char post[][MONITOR_KEY_MAX], int *n_post, twin_err *err) {
  char keys[3][MONITOR_KEY_MAX];
  int n = 0;
  if (set(q->model)) monitor_store_key(s, keys[n++], "by_model:", q->model);
  if (set(q->template_name)) monitor_store_key(s, keys[n++], "by_template:", q->template_name);
  if (q->errors_only) monitor_store_key(s, keys[n++], "errors", NULL);
  *n_post = 0;
  if (n == 0) {
    monitor_store_key(s, base, "by_time", NULL);
    return 0;
  }
  int best = 0;
  if (n > 1) {
    long long card[3] = {0};
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
      const char *argv[] = {"ZCARD", keys[i]};
      rc = twin_redis_append_argv(r, 2, argv, NULL, err);
    }
    redisReply *rep[3] = {0};
    size_t pending = twin_redis_pending(r);
    if (rc) {
      if (pending && twin_redis_pipeline_read(r, rep, pending, NULL) == 0) twin_redis_free_replies(rep, pending);
      return rc;
    }
    if ((rc = twin_redis_pipeline_read(r, rep, (size_t)n, err)) != 0) return rc;
    for (int i = 0; i < n; i++) card[i] = rep[i]->type == REDIS_REPLY_INTEGER ? rep[i]->integer : 0;
    twin_redis_free_replies(rep, (size_t)n);
    for (int i = 1; i < n; i++)
      if (card[i] < card[best]) best = i;
  }
  memcpy(base, keys[best], MONITOR_KEY_MAX);
  for (int i = 0; i < n; i++)
    if (i != best) memcpy(post[(*n_post)++], keys[i], MONITOR_KEY_MAX);
  return 0;
}

int monitor_list(twin_redis *r, const monitor_store *s, const monitor_list_query *q, uint64_t max_scan,
                 monitor_list_page *page, twin_err *err) {
  memset(page, 0, sizeof *page);
  int rc = monitor_list_validate(q, err);
  if (rc) return rc;
  page_cursor cur;
  token_decode(q->page_token, &cur, NULL);
  uint32_t page_size = q->page_size ? q->page_size : MONITOR_PAGE_SIZE_DEFAULT;

  /* the base index and what is left to filter */
  char key[MONITOR_KEY_MAX], post[2][MONITOR_KEY_MAX];
  int n_post = 0;
  if ((rc = choose_indexes(r, s, q, key, post, &n_post, err)) != 0) return rc;
  monitor_text_needle needle = {0};
  const monitor_text_needle *text = NULL;
  if (set(q->text)) {
    if ((rc = monitor_text_needle_init(&needle, q->text, err)) != 0) return rc;
    text = &needle;
  }
  bool post_filter = n_post > 0 || text;

  page_item *items = calloc(page_size, sizeof *items);
  const char **ids = malloc(WALK_BATCH * sizeof *ids);
  size_t *id_lens = malloc(WALK_BATCH * sizeof *id_lens);
  int64_t *times = malloc(WALK_BATCH * sizeof *times);
  bool *pass = malloc(WALK_BATCH * sizeof *pass);
  const char **pass_ids = malloc(WALK_BATCH * sizeof *pass_ids);
  size_t *pass_at = malloc(WALK_BATCH * sizeof *pass_at);
  size_t n_items = 0;
  walker w;
  walker_init(&w, r, key, q, &cur);
  if (!items || !ids || !id_lens || !times || !pass || !pass_ids || !pass_at) {
    rc = twin_err_set(err, TWIN_ENOMEM, "list: out of memory");
    goto out;
  }

  bool has_more = false, partial = false;
  char last_id[TWIN_TRACE_ID_MAX_LEN + 1] = "";
  int64_t last_time = 0;
  if (!post_filter) {
    /* total by ZCOUNT over the whole range; the page straight from the index */
    char min[32], max[32];
    score_bound(min, q->since_ms, q->since_ms > 0, "-inf");
    score_bound(max, q->until_ms, q->until_ms > 0, "+inf");
    const char *argv[] = {"ZCOUNT", key, min, max};
    redisReply *rep = NULL;
    if ((rc = twin_redis_command_argv(r, 4, argv, NULL, &rep, err)) != 0) goto out;
    page->total = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 ? (uint64_t)rep->integer : 0;
    freeReplyObject(rep);
    while (!has_more) {
      size_t n;
      if ((rc = walker_next(&w, page_size + 1, ids, id_lens, times, &n, err)) != 0) goto out;
      if (n == 0) break;
      for (size_t i = 0; i < n; i++) {
        if (n_items == page_size) {
          has_more = true;
          break;
        }
        snprintf(items[n_items].id, sizeof items[n_items].id, "%.*s", (int)id_lens[i], ids[i]);
        items[n_items++].time_ms = times[i];
      }
    }
  } else {
    /* the first page counts every match of the range (up to max_scan candidates); later pages
     * take the total from the token and stop once the page is full */
    bool first = !cur.present;
    uint64_t scanned = 0, total = 0;
    for (;;) {
      size_t n, want = WALK_BATCH;
      if (max_scan - scanned < want) want = (size_t)(max_scan - scanned);
      if ((rc = walker_next(&w, want, ids, id_lens, times, &n, err)) != 0) goto out;
      if (n == 0) break;
      scanned += n;
      for (size_t i = 0; i < n; i++) pass[i] = true;
      for (int k = 0; k < n_post; k++)
        if ((rc = filter_by_index(r, post[k], ids, id_lens, n, pass, err)) != 0) goto out;
      redisReply *docs = NULL;
      size_t n_pass = 0;
      if (text) {
        for (size_t i = 0; i < n; i++)
          if (pass[i]) {
            pass_ids[n_pass] = ids[i];
            pass_at[n_pass++] = i;
          }
        if (n_pass) {
          if ((rc = fetch_records(r, s, pass_ids, n_pass, &docs, err)) != 0) goto out;
          for (size_t j = 0; j < n_pass; j++) {
            const redisReply *e = docs->element[j];
            pass[pass_at[j]] = e->type == REDIS_REPLY_STRING && record_matches_text(text, e->str, e->len);
          }
        }
      }
      bool stop = false;
      for (size_t i = 0, j = 0; i < n; i++) {
        while (text && j < n_pass && pass_at[j] < i) j++;
        if (!pass[i]) continue;
        total++;
        if (n_items < page_size) {
          page_item *it = &items[n_items++];
          snprintf(it->id, sizeof it->id, "%.*s", (int)id_lens[i], ids[i]);
          it->time_ms = times[i];
          if (text && j < n_pass && pass_at[j] == i && copy_doc(it, docs->element[j]->str, docs->element[j]->len)) {
            freeReplyObject(docs);
            rc = twin_err_set(err, TWIN_ENOMEM, "list: out of memory");
            goto out;
          }
        } else {
          has_more = true;
          if (!first) {
            stop = true;
            break;
          }
        }
      }
      freeReplyObject(docs);
      snprintf(last_id, sizeof last_id, "%.*s", (int)id_lens[n - 1], ids[n - 1]);
      last_time = times[n - 1];
      if (stop) break;
      if (scanned >= max_scan && !w.end) {
        partial = true;
        break;
      }
    }
    page->total = first ? total : cur.total;
    page->total_partial = first ? partial : cur.total_partial;
  }

  if ((rc = finish_page(r, s, items, n_items, page, err)) != 0) goto out;
  if (has_more && n_items > 0) {
    monitor_list_token(items[n_items - 1].time_ms, items[n_items - 1].id, page->total, page->total_partial,
                 page->next_page_token);
  } else if (partial) {
    if (n_items == page_size)
      monitor_list_token(items[n_items - 1].time_ms, items[n_items - 1].id, page->total, page->total_partial,
                   page->next_page_token);
    else
      monitor_list_token(last_time, last_id, page->total, page->total_partial, page->next_page_token);
  }
out:
  walker_free(&w);
  if (items)
    for (size_t i = 0; i < n_items; i++) free(items[i].doc);
  free(items);
  free(ids);
  free(id_lens);
  free(times);
  free(pass);
  free(pass_ids);
  free(pass_at);
  monitor_text_needle_free(&needle);
  if (rc) monitor_list_page_free(page);
  return rc;
}

void monitor_list_page_free(monitor_list_page *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n; i++) free(p->docs[i]);
  free(p->docs);
  free(p->doc_lens);
  memset(p, 0, sizeof *p);
}

/* ============================================================================================
 * statistics
 * ========================================================================================== */

int monitor_stats_validate(const monitor_stats_query *q, twin_err *err) {
  if (q->window_ms < 0) return twin_err_set(err, TWIN_EINVAL, "window_ms: %lld is negative", (long long)q->window_ms);
  if (q->window_ms > MONITOR_STATS_WINDOW_MAX_MS)
    return twin_err_set(err, TWIN_EINVAL, "window_ms: %lld is over the limit of %lld (400 days)",
                        (long long)q->window_ms, (long long)MONITOR_STATS_WINDOW_MAX_MS);
  if (q->until_ms < 0) return twin_err_set(err, TWIN_EINVAL, "until_ms: %lld is negative", (long long)q->until_ms);
  if (q->buckets > MONITOR_STATS_BUCKETS_MAX)
    return twin_err_set(err, TWIN_EINVAL, "buckets: %u is over the limit of %d", q->buckets, MONITOR_STATS_BUCKETS_MAX);
  if (check_name("model", q->model, err) || check_name("template_name", q->template_name, err)) return TWIN_EINVAL;
  return 0;
}

int monitor_stats_run(twin_redis *r, const monitor_store *s, const monitor_stats_query *q, int64_t now_ms,
                      monitor_stats *out, twin_err *err) {
  memset(out, 0, sizeof *out);
  int rc = monitor_stats_validate(q, err);
  if (rc) return rc;
  int64_t window = q->window_ms ? q->window_ms : MONITOR_STATS_WINDOW_DEFAULT_MS;
  int64_t until = q->until_ms ? q->until_ms : now_ms;
  int64_t since = until - window > 0 ? until - window : 0;
  char key[MONITOR_KEY_MAX];
  const char *post_template = NULL;
  if (set(q->model)) {
    monitor_store_key(s, key, "by_model:", q->model);
    post_template = set(q->template_name) ? q->template_name : NULL;
  } else if (set(q->template_name)) {
    monitor_store_key(s, key, "by_template:", q->template_name);
  } else {
    monitor_store_key(s, key, "by_time", NULL);
  }
  monitor_stats_acc *acc = NULL;
  if ((rc = monitor_stats_acc_create(since, until, q->buckets, &acc, err)) != 0) return rc;
  const char **ids = malloc(STATS_BATCH * sizeof *ids);
  size_t *lens = malloc(STATS_BATCH * sizeof *lens);
  if (!ids || !lens) {
    rc = twin_err_set(err, TWIN_ENOMEM, "stats: out of memory");
    goto out;
  }
  char min_s[32], max_s[32], cnt[32];
  snprintf(min_s, sizeof min_s, "%lld", (long long)since);
  snprintf(max_s, sizeof max_s, "%lld", (long long)until);
  snprintf(cnt, sizeof cnt, "%d", STATS_BATCH);
  for (size_t offset = 0;;) {
    char off[32];
    snprintf(off, sizeof off, "%zu", offset);
    const char *argv[] = {"ZRANGEBYSCORE", key, min_s, max_s, "LIMIT", off, cnt};
    redisReply *range = NULL;
    if ((rc = twin_redis_command_argv(r, 7, argv, NULL, &range, err)) != 0) goto out;
    size_t n = 0;
    if (range->type == REDIS_REPLY_ARRAY)
      for (size_t i = 0; i < range->elements; i++)
        if (range->element[i]->type == REDIS_REPLY_STRING) {
          ids[n] = range->element[i]->str;
          lens[n++] = range->element[i]->len;
        }
    size_t got = range->type == REDIS_REPLY_ARRAY ? range->elements : 0;
    redisReply *sums = NULL;
    if (n > 0 && (rc = fetch_summaries(r, s, ids, lens, n, &sums, err)) != 0) {
      freeReplyObject(range);
      goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
      const redisReply *e = sums->element[i];
      monitor_summary sum;
      if (e->type != REDIS_REPLY_STRING || monitor_summary_decode(e->str, e->len, &sum, NULL) != 0) continue;
      if (!post_template || strcmp(sum.template_name, post_template) == 0) rc = monitor_stats_acc_add(acc, &sum, err);
    }
    freeReplyObject(sums);
    freeReplyObject(range);
    if (rc) goto out;
    offset += got;
    if (got < STATS_BATCH) break;
  }
  rc = monitor_stats_acc_finish(acc, out, err);
out:
  monitor_stats_acc_destroy(acc);
  free(ids);
  free(lens);
  return rc;
}
