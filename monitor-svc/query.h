/* monitor-svc/query.h — the read side shared by the gRPC API and the HTTP API: listing traces
 * (time range, model, template, text, errors only; newest first; cursor paging) and statistics
 * over a window. Validation errors are TWIN_EINVAL with a message that starts with the request
 * field's name ("page_size: ..."), which both APIs pass through.
 *
 * Listing: of the indexes the filters name (model, template, errors) the smallest is walked
 * newest first (by_time when none is named). With one index and no text a page costs one range
 * read and one MGET, and total is a ZCOUNT. The other indexes are checked by membership
 * (ZMSCORE per batch) and the text on the records; the first page walks the whole range to
 * count the matches, at most max_scan candidates per call: past that, total_partial is set and
 * the page token continues the walk. Later pages carry the first page's total in their token.
 * Page tokens are opaque: hex of "v1:<time_ms>:<trace_id>" of the last trace handed out. */
#ifndef TWIN_MONITOR_QUERY_H
#define TWIN_MONITOR_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/redis.h"
#include "monitor-svc/stats.h"
#include "monitor-svc/store.h"

#define MONITOR_PAGE_SIZE_DEFAULT 50
#define MONITOR_PAGE_SIZE_MAX 1000
#define MONITOR_TEXT_MAX 1024
#define MONITOR_TOKEN_MAX 512
#define MONITOR_STATS_WINDOW_DEFAULT_MS (3600LL * 1000)
#define MONITOR_STATS_WINDOW_MAX_MS (400LL * 24 * 3600 * 1000)
#define MONITOR_STATS_BUCKETS_MAX 1000

/* Every string borrowed; NULL and "" mean "no filter". */
typedef struct monitor_list_query {
  int64_t since_ms;       /* 0 = no lower bound */
  int64_t until_ms;       /* 0 = no upper bound */
  const char *model, *template_name, *text;
  bool errors_only;
  uint32_t page_size;     /* 0 = MONITOR_PAGE_SIZE_DEFAULT */
  const char *page_token; /* "" = first page */
} monitor_list_query;

typedef struct monitor_list_page {
  char **docs;      /* [n] the traces' JSON records, newest first (owned) */
  size_t *doc_lens; /* [n] */
  size_t n;
  char next_page_token[MONITOR_TOKEN_MAX]; /* "" on the last page */
  uint64_t total;
  bool total_partial;
} monitor_list_page;

/* Checks q (field-named TWIN_EINVAL). */
int monitor_list_validate(const monitor_list_query *q, twin_err *err);
/* Validates then runs q; *page zeroed first, free with monitor_list_page_free. */
int monitor_list(twin_redis *r, const monitor_store *s, const monitor_list_query *q, uint64_t max_scan,
                 monitor_list_page *page, twin_err *err);
void monitor_list_page_free(monitor_list_page *p);
/* The page token that continues a listing after the trace (time_ms, id); total and partial are
 * carried to the next pages. For callers that cut a page short (a response size limit). */
void monitor_list_token(int64_t time_ms, const char *id, uint64_t total, bool partial, char out[MONITOR_TOKEN_MAX]);

typedef struct monitor_stats_query {
  int64_t window_ms; /* 0 = MONITOR_STATS_WINDOW_DEFAULT_MS */
  int64_t until_ms;  /* 0 = now */
  const char *model, *template_name;
  uint32_t buckets;  /* 0 = no time series */
} monitor_stats_query;

int monitor_stats_validate(const monitor_stats_query *q, twin_err *err);
/* Validates then computes statistics over [until - window, until]; now_ms stands for "now". */
int monitor_stats_run(twin_redis *r, const monitor_store *s, const monitor_stats_query *q, int64_t now_ms,
                      monitor_stats *out, twin_err *err);

#endif
