/* common/rpc/client.h — a gRPC client over the C core for unary and server-streaming calls.
 * A channel targets "host:port" or "dns:///host:port" (every resolved address, round-robin).
 * Each call drives its own completion queue from the calling thread, so a blocked caller never
 * stalls anybody else's I/O. Deadlines are absolute budgets in milliseconds from the call's start;
 * twin_rpc_stream_cancel() may be called from any thread. */
#ifndef TWIN_RPC_CLIENT_H
#define TWIN_RPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/rpc/status.h"

typedef struct twin_rpc_channel twin_rpc_channel;
typedef struct twin_rpc_stream twin_rpc_stream;

typedef struct twin_rpc_channel_opts {
  int max_receive_bytes;  /* default 4 MiB */
  int round_robin;        /* 1 (default when opts is NULL): spread calls over resolved addresses */
} twin_rpc_channel_opts;

int twin_rpc_channel_create(const char *target, const twin_rpc_channel_opts *opts,
                            twin_rpc_channel **out, twin_err *err);
void twin_rpc_channel_destroy(twin_rpc_channel *ch);
/* Waits up to timeout_ms for the channel to connect; 0 when ready. */
int twin_rpc_channel_wait_ready(twin_rpc_channel *ch, int timeout_ms);

/* One request key/value of metadata (e.g. {"x-request-id", "abc"}); both copied by the call. */
typedef struct twin_rpc_metadata {
  const char *key;
  const char *value;
} twin_rpc_metadata;

/* Unary call. On OK (return 0), *resp is malloc'd (caller frees) with *resp_len bytes. On a
 * non-OK status returns TWIN_EUNAVAILABLE-style code and fills st (st may be NULL).
 * deadline_ms <= 0 means none. */
int twin_rpc_unary(twin_rpc_channel *ch, const char *method, const uint8_t *req, size_t req_len,
                   int64_t deadline_ms, const twin_rpc_metadata *md, size_t n_md, uint8_t **resp,
                   size_t *resp_len, twin_rpc_status *st);

/* Server streaming. start sends the request; next blocks for one message:
 * returns 1 with *msg (malloc'd, caller frees), 0 at the end of the stream (then read the
 * status with twin_rpc_stream_status), or a negative code on a local failure. */
int twin_rpc_stream_start(twin_rpc_channel *ch, const char *method, const uint8_t *req,
                          size_t req_len, int64_t deadline_ms, const twin_rpc_metadata *md,
                          size_t n_md, twin_rpc_stream **out, twin_err *err);
int twin_rpc_stream_next(twin_rpc_stream *s, uint8_t **msg, size_t *len);
/* Thread-safe; the stream then ends with CANCELLED. */
void twin_rpc_stream_cancel(twin_rpc_stream *s);
/* Final status; valid after next returned 0. */
const twin_rpc_status *twin_rpc_stream_status(const twin_rpc_stream *s);
/* Cancels if still running, drains, frees. */
void twin_rpc_stream_destroy(twin_rpc_stream *s);

/* Code of a finished unary/stream status as a TWIN_E* error (OK -> 0). */
int twin_rpc_err_from_code(twin_rpc_code code);

#endif
