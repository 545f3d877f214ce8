/* monitor-svc/trace.h — one trace (the JSON object of trace_format.h): strict parsing with
 * errors that name the field, the compact summary the store keeps beside it for filters and
 * statistics, and text matching over query and answer (Unicode case folding, utf8proc). */
#ifndef TWIN_MONITOR_TRACE_H
#define TWIN_MONITOR_TRACE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"
#include "monitor-svc/trace_format.h"

/* Why an entry was rejected: the label of the dead-letter metric. */
typedef enum {
  MONITOR_REJECT_NONE = 0,
  MONITOR_REJECT_NO_FIELD,  /* the stream entry has no "trace" field */
  MONITOR_REJECT_TOO_LARGE, /* over TWIN_TRACE_MAX_BYTES */
  MONITOR_REJECT_NOT_UTF8,
  MONITOR_REJECT_NOT_JSON,  /* unparsable, or not an object */
  MONITOR_REJECT_FIELD,     /* a required field missing, or a field of the wrong type/range */
  MONITOR_REJECT_UNDELIVERABLE, /* delivered too many times without being stored */
  MONITOR_REJECT_COUNT
} monitor_reject_reason;

/* "no_trace_field", "too_large", ... (metric label values). */
const char *monitor_reject_name(monitor_reject_reason r);

/* A parsed trace. Every pointer is borrowed from root (owned); optional strings missing from
 * the JSON point at "". */
typedef struct monitor_trace {
  cJSON *root; /* owned: the whole object, unknown fields included */
  const char *trace_id, *query, *template_name, *template_version, *prompt, *answer, *model, *error;
  const cJSON *variables; /* object or NULL */
  const cJSON *sampling;  /* object or NULL */
  const cJSON *sources;   /* array of {chunk_id, doc_id, score, snippet} (checked) or NULL */
  const cJSON *stages;    /* array of {stage, ms} (checked) or NULL */
  int64_t time_ms;
  uint32_t prompt_tokens, completion_tokens;
  double ttft_ms, total_ms, cost_usd;
  bool cache_hit;
} monitor_trace;

/* Parses and checks json[0..len) against the contract. On failure returns TWIN_EFORMAT with a
 * message naming the field ("time_ms: must be an integer") or the byte offset, and sets
 * *reason (may be NULL). *out is zeroed first; free it with monitor_trace_free. */
int monitor_trace_parse(const char *json, size_t len, monitor_trace *out,
                        monitor_reject_reason *reason, twin_err *err);
void monitor_trace_free(monitor_trace *t);

/* Whether s is a valid trace id (1..TWIN_TRACE_ID_MAX_LEN of [A-Za-z0-9._:-]). */
bool monitor_trace_id_valid(const char *s, size_t n);

/* ---- summary --------------------------------------------------------------------------------
 * What filters and statistics need, stored per trace as a JSON array:
 *   [time_ms, total_ms, ttft_ms, prompt_tokens, completion_tokens, cost_usd, cache_hit (0|1),
 *    is_error (0|1), "model", "template_name"]
 * (the store's trim script reads the last two, so the order is part of the store's format). */
typedef struct monitor_summary {
  int64_t time_ms;
  double total_ms, ttft_ms, cost_usd;
  uint64_t prompt_tokens, completion_tokens;
  bool cache_hit, is_error;
  char model[TWIN_TRACE_NAME_MAX_LEN + 1];
  char template_name[TWIN_TRACE_NAME_MAX_LEN + 1];
} monitor_summary;

/* Appends t's summary to out. */
int monitor_summary_encode(const monitor_trace *t, twin_buf *out);
/* Parses an encoded summary into *out (no allocation kept); TWIN_EFORMAT when it is not one. */
int monitor_summary_decode(const char *s, size_t n, monitor_summary *out, twin_err *err);

/* ---- text search ----------------------------------------------------------------------------- */
/* A needle folded once (NFC + Unicode case folding) for many haystacks. */
typedef struct monitor_text_needle {
  char *folded; /* owned, NUL-terminated */
  size_t len;
} monitor_text_needle;

int monitor_text_needle_init(monitor_text_needle *n, const char *text, twin_err *err);
void monitor_text_needle_free(monitor_text_needle *n);
/* Whether the folded needle occurs in the folded haystack s (a NUL-terminated UTF-8 string). */
bool monitor_text_contains(const monitor_text_needle *n, const char *s);

#endif
