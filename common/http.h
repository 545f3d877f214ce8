/* common/http.h — the services' small HTTP server over libmicrohttpd (one thread per
 * connection, so handlers and streamed bodies may block). Always serves GET /metrics (the
 * registry in Prometheus text format) and GET /healthz (200 "ok" or 503 with the reason);
 * the owner adds routes (method + path prefix -> handler), static directories, and may stream
 * a response body from another thread (chunked; Server-Sent Events helpers included). */
#ifndef TWIN_COMMON_HTTP_H
#define TWIN_COMMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/metrics.h"
#include "common/util.h"

typedef struct twin_http_server twin_http_server;
typedef struct twin_http_response twin_http_response;
typedef struct twin_http_stream twin_http_stream;

typedef struct twin_http_options {
  const char *bind_address;  /* NULL = every IPv4 interface; "127.0.0.1", "::" (IPv6) ... */
  int port;                  /* 0 = any free port (see twin_http_server_port) */
  twin_metrics *metrics;     /* served at /metrics; borrowed, may be NULL (empty page) */
  size_t max_body_bytes;     /* larger request bodies get 413; 0 = 8 MiB */
  unsigned max_connections;  /* each is a thread; 0 = 256 */
  unsigned idle_timeout_s;   /* idle keep-alive connections are closed after; 0 = 60 */
  size_t stream_max_pending; /* bytes a stream buffers before writers block; 0 = 1 MiB */
} twin_http_options;

/* ---- the request a handler sees (everything borrowed for the duration of the call) ------- */
typedef struct twin_http_request {
  const char *method;       /* "GET", "POST" ... */
  const char *path;         /* percent-decoded path without the query: "/v1/chat/completions" */
  const char *query;        /* raw query string after '?', not decoded; "" when none */
  const char *body;         /* [body_len] bytes, NUL-terminated; "" when none */
  size_t body_len;
  const char *route_prefix; /* the registered prefix that matched */
  void *connection;         /* libmicrohttpd's connection; use the accessors below */
} twin_http_request;

/* A request header (case-insensitive name) or NULL. */
const char *twin_http_request_header(const twin_http_request *req, const char *name);
/* A decoded query argument ("?limit=10" -> "10"), "" for a bare "?flag", NULL when absent. */
const char *twin_http_request_arg(const twin_http_request *req, const char *name);

/* ---- handlers --------------------------------------------------------------------------------
 * A handler fills resp and returns 0, or returns a negative TWIN_E* code with err set: the
 * server then answers with twin_http_status_for(code) and a JSON body
 * {"error":{"message":"...","type":"...","code":<status>}}. Handlers run on the connection's
 * thread and may block. */
typedef int (*twin_http_handler)(void *user, const twin_http_request *req, twin_http_response *resp,
                                 twin_err *err);

/* status 200 and "text/plain; charset=utf-8" until set. content_type is copied. */
void twin_http_response_status(twin_http_response *resp, int status, const char *content_type);
/* The body being built (append to it); owned by the response. */
twin_buf *twin_http_response_body(twin_http_response *resp);
/* Sets status, content type and a copy of body[0..len) in one call. */
int twin_http_response_set(twin_http_response *resp, int status, const char *content_type,
                           const void *body, size_t len);
/* The JSON error body described above, with status. */
int twin_http_response_error(twin_http_response *resp, int status, const char *message);
/* Adds a header (both copied). Content-Type is set through twin_http_response_status. */
int twin_http_response_header(twin_http_response *resp, const char *name, const char *value,
                              twin_err *err);
/* Serves a regular file. content_type NULL = by extension (twin_http_content_type_for).
 * TWIN_ENOTFOUND when it does not exist. */
int twin_http_response_file(twin_http_response *resp, const char *path, const char *content_type,
                            twin_err *err);

/* HTTP status for a TWIN_E* code: EINVAL/EFORMAT 400, ENOTFOUND 404, EFULL 429, EUNSUPPORTED
 * 501, EUNAVAILABLE 503, ETIMEOUT 504, ECANCELLED 499, others 500. */
int twin_http_status_for(int twin_code);
/* "text/html; charset=utf-8" for .html, also .htm .js .mjs .css .svg .png .jpg .jpeg .gif
 * .ico .json .map .txt .wasm .woff .woff2; "application/octet-stream" otherwise. */
const char *twin_http_content_type_for(const char *path);

/* ---- streamed bodies ---------------------------------------------------------------------
 * twin_http_response_stream turns the response into a chunked body fed through the returned
 * stream. The caller holds one reference and must end it with twin_http_stream_close (or
 * _abort), from any thread, after the handler returned or before. Writes from the handler
 * itself are fine up to stream_max_pending bytes (nothing is sent until the handler returns).
 * The stream is cancelled when the client disconnects (noticed within ~200 ms even while idle)
 * or the server stops; writes then fail with TWIN_ECANCELLED. NULL when out of memory. */
twin_http_stream *twin_http_response_stream(twin_http_response *resp, int status,
                                            const char *content_type);
/* Same, but the server runs produce(stream, user) on a thread of its own after the handler
 * returns, then closes the stream (produce may call twin_http_stream_abort first). The server's
 * stop waits for these threads. user is borrowed; free it in produce if needed. Returns 0, or
 * TWIN_ENOMEM. */
int twin_http_response_stream_fn(twin_http_response *resp, int status, const char *content_type,
                                 void (*produce)(twin_http_stream *stream, void *user), void *user,
                                 twin_err *err);
/* Queues bytes; blocks while more than stream_max_pending bytes wait for the client.
 * TWIN_ECANCELLED once the client is gone or the server stops; TWIN_EINVAL after close. */
int twin_http_stream_write(twin_http_stream *s, const void *data, size_t n, twin_err *err);
int twin_http_stream_printf(twin_http_stream *s, twin_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One Server-Sent Event: "event: <event>\n" (when event is non-NULL), then "data: <line>\n" for
 * every line of data[0..n) (so multi-line data survives), then a blank line. */
int twin_http_stream_sse(twin_http_stream *s, const char *event, const char *data, size_t n,
                         twin_err *err);
bool twin_http_stream_cancelled(twin_http_stream *s);
/* Ends the body normally and drops the caller's reference (s is gone afterwards). */
void twin_http_stream_close(twin_http_stream *s);
/* Ends the body with an error (the connection is cut without the final chunk, so the client
 * sees a truncated response) and drops the caller's reference. */
void twin_http_stream_abort(twin_http_stream *s);

/* ---- the server ----------------------------------------------------------------------------- */

/* Creates a server (not yet listening); opts is copied (metrics stays borrowed). */
int twin_http_server_create(twin_http_server **out, const twin_http_options *opts, twin_err *err);
/* Registers a route before start. method: "GET" (also answers HEAD), "POST", ... or NULL for
 * any. prefix: "/v1/" matches everything under it; "/api/traces" matches that path exactly and
 * everything below "/api/traces/". The longest matching prefix wins; a path that matches only
 * under other methods gets 405. user is borrowed. /metrics and /healthz are taken. */
int twin_http_server_route(twin_http_server *srv, const char *method, const char *prefix,
                           twin_http_handler handler, void *user, twin_err *err);
/* Serves the files under dir (resolved now; must exist) at prefix, GET and HEAD only. A
 * path ending in '/' serves index.html. ".." segments, hidden files (".x") and symlinks that
 * leave dir are refused with 404. */
int twin_http_server_static(twin_http_server *srv, const char *prefix, const char *dir,
                            twin_err *err);
/* Starts listening; TWIN_EIO when the address cannot be bound (naming it). */
int twin_http_server_start(twin_http_server *srv, twin_err *err);
/* The bound port (after start), e.g. when opts.port was 0. */
int twin_http_server_port(const twin_http_server *srv);
/* /healthz answers 503 with reason ("loading model") while unhealthy. Thread-safe. Starts
 * healthy. reason is copied. */
void twin_http_server_set_health(twin_http_server *srv, bool healthy, const char *reason);
/* Stops accepting, cancels open streams, waits for producer threads and connection threads.
 * Safe to call twice. Must not be called from a handler. */
void twin_http_server_stop(twin_http_server *srv);
/* Stops (if running) and frees. */
void twin_http_server_destroy(twin_http_server *srv);

#endif
