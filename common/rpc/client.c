/* common/rpc/client.c — unary and server-streaming calls over a grpc_channel. Each call owns a
 * completion queue that only its caller's thread waits on; a unary call is a stream that must
 * yield exactly one message. */
#include "common/rpc/client.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== channel =============================================================================== */

struct twin_rpc_channel {
  grpc_channel *ch;
  char target[256];
};

int twin_rpc_channel_create(const char *target, const twin_rpc_channel_opts *opts,
                            twin_rpc_channel **out, twin_err *err) {
  *out = NULL;
  if (!target || !*target) return twin_err_set(err, TWIN_EINVAL, "rpc client: empty target");
  twin_rpc_channel *c = calloc(1, sizeof *c);
  if (!c) return twin_err_set(err, TWIN_ENOMEM, "rpc client: out of memory");
  grpc_init();
  snprintf(c->target, sizeof c->target, "%s", target);
  int rr = opts ? opts->round_robin : 1;
  grpc_arg args[3];
  int n = 0;
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[n].value.integer = opts && opts->max_receive_bytes > 0 ? opts->max_receive_bytes : 4 << 20;
  n++;
  if (rr) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = GRPC_ARG_SERVICE_CONFIG;
    args[n].value.string = "{\"loadBalancingConfig\":[{\"round_robin\":{}}]}";
    n++;
  }
  grpc_channel_args chargs = {(size_t)n, args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  c->ch = grpc_channel_create(target, creds, &chargs);
  grpc_channel_credentials_release(creds);
  if (!c->ch) {
    free(c);
    grpc_shutdown();
    return twin_err_set(err, TWIN_EINVAL, "rpc client: cannot create a channel to '%s'", target);
  }
  *out = c;
  return 0;
}

void twin_rpc_channel_destroy(twin_rpc_channel *c) {
  if (!c) return;
  grpc_channel_destroy(c->ch);
  free(c);
  grpc_shutdown();
}

int twin_rpc_channel_wait_ready(twin_rpc_channel *c, int timeout_ms) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  int rc = TWIN_ETIMEOUT;
  for (;;) {
    grpc_connectivity_state st = grpc_channel_check_connectivity_state(c->ch, 1);
    if (st == GRPC_CHANNEL_READY) {
      rc = 0;
      break;
    }
    grpc_channel_watch_connectivity_state(c->ch, st, deadline, cq, NULL);
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type != GRPC_OP_COMPLETE || !ev.success) break; /* deadline */
  }
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  return rc;
}

/* ==== streams =============================================================================== */

enum { T_START = 1, T_STATUS = 2, T_RECV = 4 };

struct twin_rpc_stream {
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_metadata *send_md;        /* [n_send_md] */
  size_t n_send_md;
  grpc_byte_buffer *send_buf;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status_code;
  grpc_slice status_details;
  grpc_byte_buffer *recv_buf;
  int pending;                   /* T_* bits of batches not yet completed */
  int ended;
  twin_rpc_status st;
  /* tags are the addresses of these bytes */
  char tag_start, tag_status, tag_recv;
};

static int tag_bit(twin_rpc_stream *s, void *tag) {
  if (tag == &s->tag_start) return T_START;
  if (tag == &s->tag_status) return T_STATUS;
  return T_RECV;
}

/* Drives the queue until the batch `bit` has completed. */
static void wait_for(twin_rpc_stream *s, int bit) {
  while (s->pending & bit) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    s->pending &= ~tag_bit(s, ev.tag);
  }
}

static void fill_status(twin_rpc_stream *s) {
  s->st.code = (twin_rpc_code)s->status_code;
  size_t n = GRPC_SLICE_LENGTH(s->status_details);
  if (n >= sizeof s->st.message) n = sizeof s->st.message - 1;
  memcpy(s->st.message, GRPC_SLICE_START_PTR(s->status_details), n);
  s->st.message[n] = 0;
}

int twin_rpc_stream_start(twin_rpc_channel *ch, const char *method, const uint8_t *req,
                          size_t req_len, int64_t deadline_ms, const twin_rpc_metadata *md,
                          size_t n_md, twin_rpc_stream **out, twin_err *err) {
  *out = NULL;
  twin_rpc_stream *s = calloc(1, sizeof *s);
  if (!s) return twin_err_set(err, TWIN_ENOMEM, "rpc client: out of memory");
  s->cq = grpc_completion_queue_create_for_next(NULL);
  gpr_timespec deadline =
      deadline_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                     gpr_time_from_millis(deadline_ms, GPR_TIMESPAN))
                      : gpr_inf_future(GPR_CLOCK_MONOTONIC);
  grpc_slice m = grpc_slice_from_copied_string(method);
  s->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                     deadline, NULL);
  grpc_slice_unref(m);
  grpc_metadata_array_init(&s->initial_md);
  grpc_metadata_array_init(&s->trailing_md);
  s->status_details = grpc_empty_slice();
  if (n_md) {
    s->send_md = calloc(n_md, sizeof *s->send_md);
    for (size_t i = 0; i < n_md; i++) {
      s->send_md[i].key = grpc_slice_from_copied_string(md[i].key);
      s->send_md[i].value = grpc_slice_from_copied_string(md[i].value);
    }
    s->n_send_md = n_md;
  }
  grpc_slice body = grpc_slice_malloc(req_len);
  if (req_len) memcpy(GRPC_SLICE_START_PTR(body), req, req_len);
  s->send_buf = grpc_raw_byte_buffer_create(&body, 1);
  grpc_slice_unref(body);

  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = s->n_send_md;
  ops[0].data.send_initial_metadata.metadata = s->send_md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = s->send_buf;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
  grpc_call_error e1 = grpc_call_start_batch(s->call, ops, 4, &s->tag_start, NULL);
  if (e1 == GRPC_CALL_OK) s->pending |= T_START;

  grpc_op sop;
  memset(&sop, 0, sizeof sop);
  sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  sop.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
  sop.data.recv_status_on_client.status = &s->status_code;
  sop.data.recv_status_on_client.status_details = &s->status_details;
  grpc_call_error e2 = grpc_call_start_batch(s->call, &sop, 1, &s->tag_status, NULL);
  if (e2 == GRPC_CALL_OK) s->pending |= T_STATUS;
  if (e1 != GRPC_CALL_OK || e2 != GRPC_CALL_OK) {
    twin_rpc_stream_destroy(s);
    return twin_err_set(err, TWIN_EINTERNAL, "rpc client: cannot start call %s (%d/%d)", method,
                        (int)e1, (int)e2);
  }
  *out = s;
  return 0;
}

int twin_rpc_stream_next(twin_rpc_stream *s, uint8_t **msg, size_t *len) {
  *msg = NULL;
  *len = 0;
  if (s->ended) return 0;
  wait_for(s, T_START);
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &s->recv_buf;
  s->recv_buf = NULL;
  if (grpc_call_start_batch(s->call, &op, 1, &s->tag_recv, NULL) != GRPC_CALL_OK)
    return TWIN_EINTERNAL;
  s->pending |= T_RECV;
  wait_for(s, T_RECV);
  if (!s->recv_buf) {
    wait_for(s, T_STATUS);
    fill_status(s);
    s->ended = 1;
    return 0;
  }
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, s->recv_buf)) {
    grpc_byte_buffer_destroy(s->recv_buf);
    s->recv_buf = NULL;
    return TWIN_EFORMAT;
  }
  grpc_slice all = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  grpc_byte_buffer_destroy(s->recv_buf);
  s->recv_buf = NULL;
  size_t n = GRPC_SLICE_LENGTH(all);
  uint8_t *out = malloc(n + 1);
  if (!out) {
    grpc_slice_unref(all);
    return TWIN_ENOMEM;
  }
  memcpy(out, GRPC_SLICE_START_PTR(all), n);
  out[n] = 0;
  grpc_slice_unref(all);
  *msg = out;
  *len = n;
  return 1;
}

void twin_rpc_stream_cancel(twin_rpc_stream *s) { grpc_call_cancel(s->call, NULL); }

const twin_rpc_status *twin_rpc_stream_status(const twin_rpc_stream *s) { return &s->st; }

void twin_rpc_stream_destroy(twin_rpc_stream *s) {
  if (!s) return;
  if (s->call) {
    if (!s->ended) grpc_call_cancel(s->call, NULL);
    wait_for(s, T_START | T_STATUS | T_RECV);
    if (s->recv_buf) grpc_byte_buffer_destroy(s->recv_buf);
    grpc_call_unref(s->call);
  }
  grpc_completion_queue_shutdown(s->cq);
  while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(s->cq);
  if (s->send_buf) grpc_byte_buffer_destroy(s->send_buf);
  for (size_t i = 0; i < s->n_send_md; i++) {
    grpc_slice_unref(s->send_md[i].key);
    grpc_slice_unref(s->send_md[i].value);
  }
  free(s->send_md);
  grpc_metadata_array_destroy(&s->initial_md);
  grpc_metadata_array_destroy(&s->trailing_md);
  grpc_slice_unref(s->status_details);
  free(s);
}

/* ==== unary ================================================================================= */

int twin_rpc_err_from_code(twin_rpc_code code) {
  switch (code) {
    case TWIN_RPC_OK: return 0;
    case TWIN_RPC_INVALID_ARGUMENT:
    case TWIN_RPC_OUT_OF_RANGE:
    case TWIN_RPC_FAILED_PRECONDITION: return TWIN_EINVAL;
    case TWIN_RPC_NOT_FOUND: return TWIN_ENOTFOUND;
    case TWIN_RPC_DEADLINE_EXCEEDED: return TWIN_ETIMEOUT;
    case TWIN_RPC_CANCELLED: return TWIN_ECANCELLED;
    case TWIN_RPC_RESOURCE_EXHAUSTED: return TWIN_EFULL;
    case TWIN_RPC_UNIMPLEMENTED: return TWIN_EUNSUPPORTED;
    case TWIN_RPC_UNAVAILABLE: return TWIN_EUNAVAILABLE;
    default: return TWIN_EINTERNAL;
  }
}

int twin_rpc_unary(twin_rpc_channel *ch, const char *method, const uint8_t *req, size_t req_len,
                   int64_t deadline_ms, const twin_rpc_metadata *md, size_t n_md, uint8_t **resp,
                   size_t *resp_len, twin_rpc_status *st) {
  *resp = NULL;
  *resp_len = 0;
  twin_rpc_stream *s;
  twin_err err;
  int rc = twin_rpc_stream_start(ch, method, req, req_len, deadline_ms, md, n_md, &s, &err);
  if (rc != 0) {
    if (st) {
      st->code = TWIN_RPC_INTERNAL;
      snprintf(st->message, sizeof st->message, "%s", err.msg);
    }
    return rc;
  }
  uint8_t *msg = NULL;
  size_t len = 0;
  int got = twin_rpc_stream_next(s, &msg, &len);
  if (got == 1) {
    uint8_t *extra = NULL;
    size_t elen = 0;
    int more = twin_rpc_stream_next(s, &extra, &elen);
    free(extra);
    if (more != 0) {
      free(msg);
      msg = NULL;
      twin_rpc_stream_destroy(s);
      if (st) {
        st->code = TWIN_RPC_INTERNAL;
        snprintf(st->message, sizeof st->message, "%s: more than one response message", method);
      }
      return TWIN_EFORMAT;
    }
  }
  const twin_rpc_status *fs = twin_rpc_stream_status(s);
  if (got < 0 && st) {
    st->code = TWIN_RPC_INTERNAL;
    snprintf(st->message, sizeof st->message, "%s: local receive failure", method);
  } else if (st) {
    *st = *fs;
  }
  rc = got < 0 ? got : twin_rpc_err_from_code(fs->code);
  if (rc == 0 && !msg) {
    if (st) {
      st->code = TWIN_RPC_INTERNAL;
      snprintf(st->message, sizeof st->message, "%s: OK without a response message", method);
    }
    rc = TWIN_EFORMAT;
  }
  twin_rpc_stream_destroy(s);
  if (rc == 0) {
    *resp = msg;
    *resp_len = len;
  } else {
    free(msg);
  }
  return rc;
}
