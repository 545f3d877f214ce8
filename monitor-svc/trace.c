/* monitor-svc/trace.c — parsing and checking one trace JSON object (cJSON), its summary
 * encoding, and case-insensitive text matching (utf8proc NFC + case folding). Checks are
 * strict so that what the store holds always reads back: every rejection names the field. */
#include "monitor-svc/trace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "monitor-svc/trace_format.h"

const char *monitor_reject_name(monitor_reject_reason r) {
  switch (r) {
    case MONITOR_REJECT_NO_FIELD: return "no_trace_field";
    case MONITOR_REJECT_TOO_LARGE: return "too_large";
    case MONITOR_REJECT_NOT_UTF8: return "not_utf8";
    case MONITOR_REJECT_NOT_JSON: return "not_json";
    case MONITOR_REJECT_FIELD: return "bad_field";
    case MONITOR_REJECT_UNDELIVERABLE: return "undeliverable";
    default: return "none";
  }
}

bool monitor_trace_id_valid(const char *s, size_t n) {
  if (n == 0 || n > TWIN_TRACE_ID_MAX_LEN) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

/* ============================================================================================
 * field readers: each returns 0 or TWIN_EFORMAT naming the field
 * ========================================================================================== */

static int bad(twin_err *err, const char *field, const char *what) {
  return twin_err_set(err, TWIN_EFORMAT, "%s: %s", field, what);
}

static int read_string(const cJSON *obj, const char *key, bool required, const char **out, twin_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v) {
    if (required) return bad(err, key, "missing");
    *out = "";
    return 0;
  }
  if (!cJSON_IsString(v) || !v->valuestring) return bad(err, key, "must be a string");
  *out = v->valuestring;
  return 0;
}

static int read_number(const cJSON *obj, const char *key, bool required, double *out, twin_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v) {
    if (required) return bad(err, key, "missing");
    *out = 0;
    return 0;
  }
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return bad(err, key, "must be a finite number");
  if (v->valuedouble < 0) return bad(err, key, "must be >= 0");
  *out = v->valuedouble;
  return 0;
}

/* A non-negative integer no larger than max (exactly representable as a double). */
static int read_uint(const cJSON *obj, const char *key, bool required, double max, uint64_t *out,
                     twin_err *err) {
  double d;
  int rc = read_number(obj, key, required, &d, err);
  if (rc) return rc;
  if (d != floor(d)) return bad(err, key, "must be an integer");
  if (d > max) return twin_err_set(err, TWIN_EFORMAT, "%s: %.0f is out of range (max %.0f)", key, d, max);
  *out = (uint64_t)d;
  return 0;
}

static int read_object(const cJSON *obj, const char *key, const cJSON **out, twin_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = NULL;
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsObject(v)) return bad(err, key, "must be an object");
  *out = v;
  return 0;
}

static int check_sources(const cJSON *arr, twin_err *err) {
  int i = 0;
  const cJSON *s;
  cJSON_ArrayForEach(s, arr) {
    char field[64];
    if (!cJSON_IsObject(s)) {
      snprintf(field, sizeof field, "sources[%d]", i);
      return bad(err, field, "must be an object");
    }
    const char *str;
    static const char *const strings[] = {TWIN_TRACE_KEY_SOURCE_CHUNK_ID, TWIN_TRACE_KEY_SOURCE_DOC_ID,
                                          TWIN_TRACE_KEY_SOURCE_SNIPPET};
    for (size_t k = 0; k < sizeof strings / sizeof strings[0]; k++) {
      if (read_string(s, strings[k], false, &str, err)) return twin_err_wrap(err, "sources[%d]", i);
    }
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(s, TWIN_TRACE_KEY_SOURCE_SCORE);
    if (score && (!cJSON_IsNumber(score) || !isfinite(score->valuedouble)))
      return twin_err_set(err, TWIN_EFORMAT, "sources[%d].score: must be a finite number", i);
    i++;
  }
  return 0;
}

static int check_stages(const cJSON *arr, twin_err *err) {
  int i = 0;
  const cJSON *s;
  cJSON_ArrayForEach(s, arr) {
    if (!cJSON_IsObject(s)) return twin_err_set(err, TWIN_EFORMAT, "stages[%d]: must be an object", i);
    const char *name;
    double ms;
    if (read_string(s, TWIN_TRACE_KEY_STAGE_NAME, true, &name, err) ||
        read_number(s, TWIN_TRACE_KEY_STAGE_MS, true, &ms, err))
      return twin_err_wrap(err, "stages[%d]", i);
    i++;
  }
  return 0;
}

static int read_array(const cJSON *obj, const char *key, const cJSON **out, twin_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = NULL;
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsArray(v)) return bad(err, key, "must be an array");
  *out = v;
  return 0;
}

/* ============================================================================================
 * parse
 * ========================================================================================== */

static int parse_fields(monitor_trace *t, twin_err *err) {
  const cJSON *o = t->root;
  if (read_string(o, TWIN_TRACE_KEY_TRACE_ID, true, &t->trace_id, err)) return TWIN_EFORMAT;
  if (!monitor_trace_id_valid(t->trace_id, strlen(t->trace_id)))
    return twin_err_set(err, TWIN_EFORMAT,
                        "trace_id: must be 1-%d characters of A-Z a-z 0-9 . _ : -", TWIN_TRACE_ID_MAX_LEN);
  uint64_t u;
  if (read_uint(o, TWIN_TRACE_KEY_TIME_MS, true, 9007199254740991.0, &u, err)) return TWIN_EFORMAT;
  if (u == 0) return bad(err, TWIN_TRACE_KEY_TIME_MS, "must be > 0 (unix epoch milliseconds)");
  t->time_ms = (int64_t)u;
  if (read_string(o, TWIN_TRACE_KEY_MODEL, true, &t->model, err)) return TWIN_EFORMAT;
  if (!*t->model) return bad(err, TWIN_TRACE_KEY_MODEL, "must not be empty");
  if (strlen(t->model) > TWIN_TRACE_NAME_MAX_LEN) return bad(err, TWIN_TRACE_KEY_MODEL, "longer than 256 bytes");
  if (read_number(o, TWIN_TRACE_KEY_TOTAL_MS, true, &t->total_ms, err)) return TWIN_EFORMAT;
  if (read_string(o, TWIN_TRACE_KEY_ERROR, true, &t->error, err)) return TWIN_EFORMAT;
  if (read_string(o, TWIN_TRACE_KEY_QUERY, false, &t->query, err) ||
      read_string(o, TWIN_TRACE_KEY_TEMPLATE_NAME, false, &t->template_name, err) ||
      read_string(o, TWIN_TRACE_KEY_TEMPLATE_VERSION, false, &t->template_version, err) ||
      read_string(o, TWIN_TRACE_KEY_PROMPT, false, &t->prompt, err) ||
      read_string(o, TWIN_TRACE_KEY_ANSWER, false, &t->answer, err))
    return TWIN_EFORMAT;
  if (strlen(t->template_name) > TWIN_TRACE_NAME_MAX_LEN)
    return bad(err, TWIN_TRACE_KEY_TEMPLATE_NAME, "longer than 256 bytes");
  if (read_object(o, TWIN_TRACE_KEY_VARIABLES, &t->variables, err) ||
      read_object(o, TWIN_TRACE_KEY_SAMPLING, &t->sampling, err) ||
      read_array(o, TWIN_TRACE_KEY_SOURCES, &t->sources, err) ||
      read_array(o, TWIN_TRACE_KEY_STAGES, &t->stages, err))
    return TWIN_EFORMAT;
  if (t->sources && check_sources(t->sources, err)) return TWIN_EFORMAT;
  if (t->stages && check_stages(t->stages, err)) return TWIN_EFORMAT;
  if (read_uint(o, TWIN_TRACE_KEY_PROMPT_TOKENS, false, 4294967295.0, &u, err)) return TWIN_EFORMAT;
  t->prompt_tokens = (uint32_t)u;
  if (read_uint(o, TWIN_TRACE_KEY_COMPLETION_TOKENS, false, 4294967295.0, &u, err)) return TWIN_EFORMAT;
  t->completion_tokens = (uint32_t)u;
  if (read_number(o, TWIN_TRACE_KEY_TTFT_MS, false, &t->ttft_ms, err) ||
      read_number(o, TWIN_TRACE_KEY_COST_USD, false, &t->cost_usd, err))
    return TWIN_EFORMAT;
  const cJSON *hit = cJSON_GetObjectItemCaseSensitive(o, TWIN_TRACE_KEY_CACHE_HIT);
  if (hit && !cJSON_IsBool(hit)) return bad(err, TWIN_TRACE_KEY_CACHE_HIT, "must be true or false");
  t->cache_hit = hit && cJSON_IsTrue(hit);
  return 0;
}

/* Whether [p, end) holds nothing but JSON whitespace. */
static bool only_whitespace(const char *p, const char *end) {
  for (; p && p < end; p++)
    if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') return false;
  return true;
}

int monitor_trace_parse(const char *json, size_t len, monitor_trace *out,
                        monitor_reject_reason *reason, twin_err *err) {
  memset(out, 0, sizeof *out);
  monitor_reject_reason why = MONITOR_REJECT_NONE;
  int rc = 0;
  size_t bad_at;
  if (len > TWIN_TRACE_MAX_BYTES) {
    why = MONITOR_REJECT_TOO_LARGE;
    rc = twin_err_set(err, TWIN_EFORMAT, "trace: %zu bytes is over the limit of %d", len, TWIN_TRACE_MAX_BYTES);
  } else if ((bad_at = twin_utf8_validate(json, len)) != len) {
    why = MONITOR_REJECT_NOT_UTF8;
    rc = twin_err_set(err, TWIN_EFORMAT, "trace: not valid UTF-8 at byte %zu", bad_at);
  } else {
    const char *end = NULL;
    out->root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!out->root) {
      why = MONITOR_REJECT_NOT_JSON;
      rc = twin_err_set(err, TWIN_EFORMAT, "trace: not JSON (error at byte %zu)",
                        end && end >= json ? (size_t)(end - json) : (size_t)0);
    } else if (!only_whitespace(end, json + len)) {
      why = MONITOR_REJECT_NOT_JSON;
      rc = twin_err_set(err, TWIN_EFORMAT, "trace: trailing bytes after the JSON value at byte %zu",
                        (size_t)(end - json));
    } else if (!cJSON_IsObject(out->root)) {
      why = MONITOR_REJECT_NOT_JSON;
      rc = twin_err_set(err, TWIN_EFORMAT, "trace: the JSON value is not an object");
    } else if (parse_fields(out, err) != 0) {
      why = MONITOR_REJECT_FIELD;
      rc = TWIN_EFORMAT;
    }
  }
  if (rc) monitor_trace_free(out);
  if (reason) *reason = why;
  return rc;
}

void monitor_trace_free(monitor_trace *t) {
  if (!t) return;
  cJSON_Delete(t->root);
  memset(t, 0, sizeof *t);
}

/* ============================================================================================
 * summary
 * ========================================================================================== */

int monitor_summary_encode(const monitor_trace *t, twin_buf *out) {
  twin_buf_printf(out, "[%lld,%.17g,%.17g,%u,%u,%.17g,%d,%d,", (long long)t->time_ms, t->total_ms,
                  t->ttft_ms, t->prompt_tokens, t->completion_tokens, t->cost_usd, t->cache_hit ? 1 : 0,
                  *t->error ? 1 : 0);
  twin_buf_append_json_string(out, t->model, strlen(t->model));
  twin_buf_putc(out, ',');
  twin_buf_append_json_string(out, t->template_name, strlen(t->template_name));
  return twin_buf_putc(out, ']');
}

int monitor_summary_decode(const char *s, size_t n, monitor_summary *out, twin_err *err) {
  memset(out, 0, sizeof *out);
  cJSON *a = cJSON_ParseWithLength(s, n);
  int rc = 0;
  if (!a || !cJSON_IsArray(a) || cJSON_GetArraySize(a) != 10) {
    rc = twin_err_set(err, TWIN_EFORMAT, "trace summary: not a 10-element JSON array");
    goto done;
  }
  double v[8];
  const cJSON *x = a->child;
  for (int i = 0; i < 8; i++, x = x->next) {
    if (!cJSON_IsNumber(x)) {
      rc = twin_err_set(err, TWIN_EFORMAT, "trace summary: element %d is not a number", i);
      goto done;
    }
    v[i] = x->valuedouble;
  }
  const cJSON *m = x, *tn = x->next;
  if (!cJSON_IsString(m) || !cJSON_IsString(tn) || strlen(m->valuestring) > TWIN_TRACE_NAME_MAX_LEN ||
      strlen(tn->valuestring) > TWIN_TRACE_NAME_MAX_LEN) {
    rc = twin_err_set(err, TWIN_EFORMAT, "trace summary: model or template is not a string of <= %d bytes",
                      TWIN_TRACE_NAME_MAX_LEN);
    goto done;
  }
  out->time_ms = (int64_t)v[0];
  out->total_ms = v[1];
  out->ttft_ms = v[2];
  out->prompt_tokens = (uint64_t)v[3];
  out->completion_tokens = (uint64_t)v[4];
  out->cost_usd = v[5];
  out->cache_hit = v[6] != 0;
  out->is_error = v[7] != 0;
  memcpy(out->model, m->valuestring, strlen(m->valuestring) + 1);
  memcpy(out->template_name, tn->valuestring, strlen(tn->valuestring) + 1);
done:
  cJSON_Delete(a);
  return rc;
}

/* ============================================================================================
 * text search
 * ========================================================================================== */

/* NFC + case folding of a NUL-terminated string; NULL when it is not valid UTF-8 or out of
 * memory. */
static char *fold(const char *s) {
  utf8proc_uint8_t *out = NULL;
  utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, 0, &out,
                                    UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD);
  if (n < 0) return NULL;
  return (char *)out;
}

int monitor_text_needle_init(monitor_text_needle *n, const char *text, twin_err *err) {
  n->folded = fold(text);
  if (!n->folded) return twin_err_set(err, TWIN_EINVAL, "text: not valid UTF-8");
  n->len = strlen(n->folded);
  return 0;
}

void monitor_text_needle_free(monitor_text_needle *n) {
  if (!n) return;
  free(n->folded);
  n->folded = NULL;
  n->len = 0;
}

bool monitor_text_contains(const monitor_text_needle *n, const char *s) {
  if (!n->folded || n->len == 0) return true;
  if (!s || !*s) return false;
  char *h = fold(s);
  bool found = h ? strstr(h, n->folded) != NULL : strstr(s, n->folded) != NULL;
  free(h);
  return found;
}
