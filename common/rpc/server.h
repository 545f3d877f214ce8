/* common/rpc/server.h — a gRPC server over the C core, for unary and server-streaming methods.
 * One thread drives the completion queue; handlers run on a worker pool and may stream from any
 * thread: sending only queues the message (a sender thread starts a call's first write, the
 * completion-queue thread the next ones), one write is in flight per call, and messages queued
 * meanwhile are merged by the method's coalescer. Cancellation (client cancel, deadline,
 * broken connection) is seen at once through twin_rpc_call_cancelled() and an on-cancel hook.
 * Unknown methods get UNIMPLEMENTED; shutdown stops accepting, lets calls finish for a grace
 * period, then cancels them. The standard grpc.health.v1.Health service is built in. */
#ifndef TWIN_RPC_SERVER_H
#define TWIN_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/rpc/status.h"

typedef struct twin_rpc_server twin_rpc_server;
typedef struct twin_rpc_call twin_rpc_call;

/* Called on a worker thread with the request message (borrowed: valid until the handler
 * returns; copy what outlives it). The handler, or any thread it hands the call to, must end
 * the call exactly once with twin_rpc_call_finish() or twin_rpc_call_reply(). */
typedef void (*twin_rpc_handler)(twin_rpc_call *call, const uint8_t *req, size_t len, void *user);

/* Merges n >= 2 queued serialized messages into one; returns a malloc'd buffer (or NULL to send
 * them one by one). Called with the call's lock held: keep it short, never touch the call. */
typedef uint8_t *(*twin_rpc_coalescer)(const uint8_t *const *msgs, const size_t *lens, size_t n,
                                       size_t *out_len);
/* Byte concatenation: correct for messages whose fields are all repeated (protobuf merges). */
uint8_t *twin_rpc_coalesce_concat(const uint8_t *const *msgs, const size_t *lens, size_t n,
                                  size_t *out_len);

typedef enum { TWIN_RPC_UNARY = 0, TWIN_RPC_SERVER_STREAMING = 1 } twin_rpc_kind;

typedef struct twin_rpc_server_opts {
  const char *address;          /* "0.0.0.0:50051"; port 0 picks a free one */
  int min_workers;              /* threads kept for handlers (default 4) */
  int max_workers;              /* upper bound as calls block handlers (default 256) */
  int max_receive_bytes;        /* default 4 MiB */
  int max_connection_age_ms;    /* connections are asked to reconnect after this (calls in flight
                                   finish), so dns:/// clients re-resolve and spread over new
                                   replicas; default 300000, < 0 = never */
  const char *name;             /* for logs */
} twin_rpc_server_opts;

int twin_rpc_server_create(const twin_rpc_server_opts *opts, twin_rpc_server **out, twin_err *err);
/* Before start. method: "/pkg.Service/Method". coalescer may be NULL (one message per send). */
int twin_rpc_server_add_method(twin_rpc_server *s, const char *method, twin_rpc_kind kind,
                               twin_rpc_handler handler, twin_rpc_coalescer coalescer, void *user,
                               twin_err *err);
/* Binds and starts serving; *bound_port gets the port (useful with port 0). */
int twin_rpc_server_start(twin_rpc_server *s, int *bound_port, twin_err *err);
/* Graceful: stop accepting new calls, wait up to grace_ms for running calls to end, cancel the
 * rest, wait for their handlers to finish them. Safe to call once; destroy calls it if needed. */
void twin_rpc_server_shutdown(twin_rpc_server *s, int grace_ms);
void twin_rpc_server_destroy(twin_rpc_server *s);
/* Calls in flight (started, not yet finished by their handler). */
int twin_rpc_server_active_calls(twin_rpc_server *s);

/* Health: status per service name ("" is the whole server). Unknown names answer NOT_FOUND to
 * Check. Watch streams every change. */
typedef enum { TWIN_HEALTH_UNKNOWN = 0, TWIN_HEALTH_SERVING = 1, TWIN_HEALTH_NOT_SERVING = 2 } twin_health_status;
void twin_rpc_health_set(twin_rpc_server *s, const char *service, twin_health_status st);

/* ---- per call (thread-safe) ---------------------------------------------------------------- */
/* Queues one serialized message (copied). Returns 0, or TWIN_ECANCELLED when the call is over
 * (cancelled, deadline, broken stream) — stop producing then. */
int twin_rpc_call_send(twin_rpc_call *c, const uint8_t *msg, size_t len);
/* Ends the call with a status after every queued message has gone out. The call must not be
 * used afterwards. message may be NULL. */
void twin_rpc_call_finish(twin_rpc_call *c, twin_rpc_code code, const char *message);
/* Unary convenience: one message then OK. */
void twin_rpc_call_reply(twin_rpc_call *c, const uint8_t *msg, size_t len);
/* printf-style error status. */
void twin_rpc_call_fail(twin_rpc_call *c, twin_rpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 1 once the client cancelled, the deadline passed or the connection broke. */
int twin_rpc_call_cancelled(const twin_rpc_call *c);
/* Called once, from the I/O thread, when the call gets cancelled (immediately if it already
 * is). It must only signal (set a flag, post a message): never block, never finish the call.
 * It is not called after twin_rpc_call_finish() returned. */
void twin_rpc_call_on_cancel(twin_rpc_call *c, void (*fn)(void *arg), void *arg);
/* Milliseconds left before the client's deadline; -1 when it set none. */
int64_t twin_rpc_call_deadline_left_ms(const twin_rpc_call *c);
/* Messages queued and not yet written (for backpressure). */
size_t twin_rpc_call_queued(const twin_rpc_call *c);
const char *twin_rpc_call_method(const twin_rpc_call *c);
/* Value of request metadata `key` (e.g. "x-request-id"), copied into buf; 0 if found. */
int twin_rpc_call_metadata(const twin_rpc_call *c, const char *key, char *buf, size_t cap);

#endif
