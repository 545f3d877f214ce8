/* monitor-svc/trace_format.h — the trace contract between the producer (business-svc publishes
 * one trace per answered request) and monitor-svc (consumes, stores, serves them). Header-only:
 * names and limits as constants, so a producer includes it without linking monitor code.
 *
 * Transport: a Redis stream, TWIN_TRACE_STREAM ("twin:traces"). Each entry has exactly one field,
 * TWIN_TRACE_FIELD ("trace"), whose value is one JSON object (UTF-8, at most
 * TWIN_TRACE_MAX_BYTES bytes):
 *
 *   {"trace_id": str,            REQUIRED  1-128 chars of [A-Za-z0-9._:-]; unique per request
 *    "time_ms": int,             REQUIRED  unix epoch milliseconds when the request arrived, > 0
 *    "model": str,               REQUIRED  the LLM that answered, 1-256 bytes
 *    "total_ms": float,          REQUIRED  end-to-end latency, >= 0
 *    "error": str,               REQUIRED  "" = success, else what failed
 *    "query": str,                         the user's question
 *    "template_name": str,                 at most 256 bytes
 *    "template_version": str,
 *    "variables": object,                  the template's variables
 *    "prompt": str,                        the final prompt sent to the LLM
 *    "sources": [{"chunk_id": str, "doc_id": str, "score": float, "snippet": str}],
 *    "answer": str,
 *    "sampling": object,                   temperature, top_p, ... as sent to the LLM
 *    "prompt_tokens": int, "completion_tokens": int,          >= 0
 *    "stages": [{"stage": str, "ms": float}],                 in execution order
 *    "ttft_ms": float,                     time to the first answer token (0 = none), >= 0
 *    "cost_usd": float,                    >= 0
 *    "cache_hit": bool}                    answered from the response cache
 *
 * Optional fields may be left out (strings default to "", numbers to 0, arrays and objects to
 * empty, cache_hit to false) but when present they must have the type above; numbers must be
 * finite. Unknown extra fields are kept as they are. An entry that breaks any of these rules
 * (no "trace" field, bytes that are not UTF-8, not JSON, a missing or mistyped field) is moved
 * to TWIN_TRACE_DEAD_STREAM with the fields below and never retried.
 *
 * Delivery: at least once. Consumers read through a consumer group and store by trace_id, so
 * an entry processed twice (a crash before its XACK, a re-publish) yields one stored trace.
 * Producers should cap the stream (XADD ... MAXLEN ~ N) and must never block an answer on it. */
#ifndef TWIN_MONITOR_TRACE_FORMAT_H
#define TWIN_MONITOR_TRACE_FORMAT_H

/* ---- the stream ------------------------------------------------------------------------------ */
#define TWIN_TRACE_STREAM "twin:traces"
#define TWIN_TRACE_FIELD "trace"
#define TWIN_TRACE_MAX_BYTES (4 * 1024 * 1024)
#define TWIN_TRACE_ID_MAX_LEN 128
#define TWIN_TRACE_NAME_MAX_LEN 256 /* model and template_name, bytes */
/* Suggested producer cap: XADD twin:traces MAXLEN ~ TWIN_TRACE_STREAM_MAXLEN * trace */
#define TWIN_TRACE_STREAM_MAXLEN 1000000

/* ---- the dead-letter stream: one entry per rejected entry ------------------------------------ */
#define TWIN_TRACE_DEAD_STREAM "twin:traces:dead"
#define TWIN_TRACE_DEAD_FIELD_SOURCE_ID "source_id" /* the rejected entry's id in the stream */
#define TWIN_TRACE_DEAD_FIELD_REASON "reason"       /* why, naming the field or the offset */
#define TWIN_TRACE_DEAD_FIELD_RAW "raw"             /* the "trace" value as received; without one,
                                                       the entry's fields as "name=value" lines */
#define TWIN_TRACE_DEAD_FIELD_CONSUMER "consumer"   /* the consumer that rejected it */

/* ---- the JSON object's keys ------------------------------------------------------------------ */
#define TWIN_TRACE_KEY_TRACE_ID "trace_id"
#define TWIN_TRACE_KEY_TIME_MS "time_ms"
#define TWIN_TRACE_KEY_QUERY "query"
#define TWIN_TRACE_KEY_TEMPLATE_NAME "template_name"
#define TWIN_TRACE_KEY_TEMPLATE_VERSION "template_version"
#define TWIN_TRACE_KEY_VARIABLES "variables"
#define TWIN_TRACE_KEY_PROMPT "prompt"
#define TWIN_TRACE_KEY_SOURCES "sources"
#define TWIN_TRACE_KEY_SOURCE_CHUNK_ID "chunk_id"
#define TWIN_TRACE_KEY_SOURCE_DOC_ID "doc_id"
#define TWIN_TRACE_KEY_SOURCE_SCORE "score"
#define TWIN_TRACE_KEY_SOURCE_SNIPPET "snippet"
#define TWIN_TRACE_KEY_ANSWER "answer"
#define TWIN_TRACE_KEY_MODEL "model"
#define TWIN_TRACE_KEY_SAMPLING "sampling"
#define TWIN_TRACE_KEY_PROMPT_TOKENS "prompt_tokens"
#define TWIN_TRACE_KEY_COMPLETION_TOKENS "completion_tokens"
#define TWIN_TRACE_KEY_STAGES "stages"
#define TWIN_TRACE_KEY_STAGE_NAME "stage"
#define TWIN_TRACE_KEY_STAGE_MS "ms"
#define TWIN_TRACE_KEY_TTFT_MS "ttft_ms"
#define TWIN_TRACE_KEY_TOTAL_MS "total_ms"
#define TWIN_TRACE_KEY_COST_USD "cost_usd"
#define TWIN_TRACE_KEY_CACHE_HIT "cache_hit"
#define TWIN_TRACE_KEY_ERROR "error"

#endif
