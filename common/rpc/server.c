/* common/rpc/server.c — the gRPC C-core server: one completion-queue thread takes every event,
 * handlers run on a worker pool, any thread may queue messages on a call, and one sender thread
 * starts the writes callers asked for, so that a caller only appends to a queue. Per call:
 * RECV_CLOSE_ON_SERVER is armed at once (cancels, deadlines), one SEND batch is in flight at a
 * time, queued messages are coalesced when the method has a coalescer, and the status follows
 * the last message. Threads, lock order and call lifetime: the first section below. */
#include "common/rpc/server_internal.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* ==== threads, locks, call lifetime =========================================================
 * Threads. cq_main (one per server) takes every completion; when a write completes it starts
 * the call's next write (or the status) itself. sender_main (one per server, started before the
 * first call can arrive, joined at shutdown after the last call is freed) starts a call's first
 * write after an idle spell, and its status when no write is in flight. twin_rpc_call_send()
 * and twin_rpc_call_finish() never call into gRPC on their caller's thread: the engine's loop
 * thread streams one message per sequence per step and pays a malloc, a queue append under
 * call->mu and, when the call is not already waiting for the sender, a list append under
 * sender.mu (plus one condvar signal when the sender is asleep on an empty list).
 *
 * Locks. call->mu guards a call's queue and flags (grpc_call_start_batch and the coalescer run
 * under it); call->cb_mu guards the on-cancel hook (the hook runs under it and may take its
 * owner's locks); srv->mu guards the live list and counters; srv->sender.mu guards the sender's
 * list. Order: none of these four is ever held while another of them is taken: call_free()
 * takes srv->mu after call->mu was dropped, the hook fires after call->mu was dropped, and a
 * call is handed to the sender after call->mu was dropped. So srv->mu and call->mu cannot
 * deadlock, and sender.mu is a leaf. The hook's own locks nest inside call->cb_mu (health's
 * watch: cb_mu -> health mu), so no one may call finish or on_cancel while holding them.
 *
 * Lifetime. A call is freed (call_free, exactly once) by whichever thread sees
 * call_done_locked() turn true under call->mu: the handler has finished it, no batch it started
 * is pending, and it is not waiting for the sender. sender_pending is set under call->mu by the
 * thread that hands the call to the sender and cleared by the sender under call->mu, so a call
 * in the sender's list is never freed under it; the sender reads a call's list link before it
 * locks the call, since the call may be handed over again, or freed, once it is unlocked. */

/* ==== byte buffers ========================================================================== */

static grpc_byte_buffer *buffer_from(const uint8_t *data, size_t len) {
  grpc_slice s = grpc_slice_malloc(len);
  if (len) memcpy(GRPC_SLICE_START_PTR(s), data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* Copies a received buffer into malloc'd memory (NUL-terminated for convenience). */
static uint8_t *buffer_read_all(grpc_byte_buffer *bb, size_t *len) {
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  size_t n = GRPC_SLICE_LENGTH(s);
  uint8_t *out = malloc(n + 1);
  if (out) {
    memcpy(out, GRPC_SLICE_START_PTR(s), n);
    out[n] = 0;
    *len = n;
  }
  grpc_slice_unref(s);
  return out;
}

uint8_t *twin_rpc_coalesce_concat(const uint8_t *const *msgs, const size_t *lens, size_t n,
                                  size_t *out_len) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += lens[i];
  uint8_t *out = malloc(total ? total : 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(out + o, msgs[i], lens[i]);
    o += lens[i];
  }
  *out_len = total;
  return out;
}

/* ==== call lifetime ========================================================================= */

static void call_free(twin_rpc_call *c) {
  twin_rpc_server *s = c->srv;
  pthread_mutex_lock(&s->mu);
  if (c->prev) c->prev->next = c->next; else s->live = c->next;
  if (c->next) c->next->prev = c->prev;
  s->active--;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);

  for (rpc_msg *m = c->head; m;) {
    rpc_msg *n = m->next;
    free(m);
    m = n;
  }
  if (c->inflight_buf) grpc_byte_buffer_destroy(c->inflight_buf);
  grpc_slice_unref(c->fin_details);
  grpc_metadata_array_destroy(&c->md);
  grpc_call_unref(c->call);
  pthread_mutex_destroy(&c->mu);
  pthread_mutex_destroy(&c->cb_mu);
  free(c);
}

/* Called with c->mu held; returns 1 when the caller must free the call (after unlocking). */
static int call_done_locked(twin_rpc_call *c) {
  return c->handler_done && c->ops_pending == 0 && !c->sender_pending;
}

static void call_start_batch_locked(twin_rpc_call *c, const grpc_op *ops, size_t n, rpc_tag *tag) {
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
  if (e != GRPC_CALL_OK) {
    /* Only a programming error gets here (ops out of order); record and treat as dead. */
    LOG_ERROR("rpc %s: grpc_call_start_batch failed: %d", c->method->name, (int)e);
    c->broken = 1;
    return;
  }
  c->ops_pending++;
}

/* Status (and initial metadata if none went out yet), alone. */
static void call_start_status_locked(twin_rpc_call *c) {
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!c->sent_initial_md) {
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    c->sent_initial_md = 1;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)c->fin_code;
  ops[n].data.send_status_from_server.status_details = &c->fin_details;
  n++;
  c->status_started = 1;
  call_start_batch_locked(c, ops, n, &c->t_status);
}

/* Takes everything queued, merges it if the method allows, and writes it; the status joins the
 * batch when the handler has already finished and nothing else is queued. */
static void call_start_send_locked(twin_rpc_call *c) {
  if (!c->head) return;
  rpc_msg *first = c->head;
  grpc_byte_buffer *bb = NULL;
  if (first->next && c->method->coalescer) {
    size_t n = c->queued;
    const uint8_t **ptrs = malloc(n * sizeof *ptrs);
    size_t *lens = malloc(n * sizeof *lens);
    if (ptrs && lens) {
      size_t i = 0;
      for (rpc_msg *m = c->head; m; m = m->next, i++) {
        ptrs[i] = m->data;
        lens[i] = m->len;
      }
      size_t out_len = 0;
      uint8_t *merged = c->method->coalescer(ptrs, lens, n, &out_len);
      if (merged) {
        bb = buffer_from(merged, out_len);
        free(merged);
        for (rpc_msg *m = c->head; m;) {
          rpc_msg *nx = m->next;
          free(m);
          m = nx;
        }
        c->head = c->tail = NULL;
        c->queued = 0;
      }
    }
    free(ptrs);
    free(lens);
  }
  if (!bb) {
    bb = buffer_from(first->data, first->len);
    c->head = first->next;
    if (!c->head) c->tail = NULL;
    c->queued--;
    free(first);
  }

  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!c->sent_initial_md) {
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    c->sent_initial_md = 1;
  }
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].data.send_message.send_message = bb;
  n++;
  if (c->finish_requested && !c->head) {
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)c->fin_code;
    ops[n].data.send_status_from_server.status_details = &c->fin_details;
    n++;
    c->status_started = 1;
  }
  c->inflight_buf = bb;
  c->send_inflight = 1;
  call_start_batch_locked(c, ops, n, &c->t_send);
  if (c->broken) {
    c->send_inflight = 0;
    grpc_byte_buffer_destroy(bb);
    c->inflight_buf = NULL;
  }
}

/* Starts what the call has waiting when no write is in flight: the queued messages (the status
 * joining them when it can), else the status once the handler finished. Nothing once the call is
 * over or broken. Runs on the sender thread and on the completion-queue thread only. */
static void call_start_next_locked(twin_rpc_call *c) {
  if (c->closed || c->broken || c->send_inflight) return;
  if (c->head) call_start_send_locked(c);
  else if (c->finish_requested && !c->status_started) call_start_status_locked(c);
}

/* ==== the sender thread ===================================================================== */

/* Appends a call to the sender's list. The caller has set c->sender_pending under c->mu (which
 * keeps the call alive) and dropped c->mu; after this returns the call may already be freed. */
static void sender_hand_over(twin_rpc_server *s, twin_rpc_call *c) {
  rpc_sender *sd = &s->sender;
  c->sender_next = NULL;
  pthread_mutex_lock(&sd->mu);
  if (sd->tail) sd->tail->sender_next = c; else sd->head = c;
  sd->tail = c;
  if (sd->idle) { /* asleep means the list was empty: one signal per empty -> non-empty */
    sd->idle = 0;
    /* Under the lock: once it is dropped, the sender may free the call, and shutdown may end
     * and destroy the condvar before an unlocked signal would run. */
    pthread_cond_signal(&sd->cv);
  }
  pthread_mutex_unlock(&sd->mu);
}

/* Takes the whole list at a time and starts each call's next write; frees a call whose handler
 * finished while it waited (and that has no batch pending). Leaves when stopped and empty. */
static void *sender_main(void *arg) {
  twin_rpc_server *s = arg;
  rpc_sender *sd = &s->sender;
  pthread_mutex_lock(&sd->mu);
  for (;;) {
    if (!sd->head) {
      if (sd->stop) break;
      sd->idle = 1;
      pthread_cond_wait(&sd->cv, &sd->mu);
      continue;
    }
    twin_rpc_call *batch = sd->head;
    sd->head = sd->tail = NULL;
    sd->idle = 0;
    pthread_mutex_unlock(&sd->mu);
    while (batch) {
      twin_rpc_call *c = batch;
      batch = c->sender_next; /* read before c is unlocked: it may be handed over or freed */
      pthread_mutex_lock(&c->mu);
      c->sender_pending = 0;
      call_start_next_locked(c);
      int done = call_done_locked(c);
      pthread_mutex_unlock(&c->mu);
      if (done) call_free(c);
    }
    pthread_mutex_lock(&sd->mu);
  }
  pthread_mutex_unlock(&sd->mu);
  return NULL;
}

static int sender_start(twin_rpc_server *s) {
  if (pthread_create(&s->sender.thread, NULL, sender_main, s) != 0) return -1;
  s->sender.started = 1;
  return 0;
}

/* After every call is freed (nothing can hand one over any more): lets the thread leave. */
static void sender_stop(twin_rpc_server *s) {
  rpc_sender *sd = &s->sender;
  if (!sd->started) return;
  pthread_mutex_lock(&sd->mu);
  sd->stop = 1;
  pthread_cond_signal(&sd->cv);
  pthread_mutex_unlock(&sd->mu);
  pthread_join(sd->thread, NULL);
  sd->started = 0;
}

/* ==== cancellation hook ===================================================================== */

static void fire_cancel(twin_rpc_call *c) {
  pthread_mutex_lock(&c->cb_mu);
  if (c->cancel_fn && !c->cancel_fired) {
    c->cancel_fired = 1;
    c->cancel_fn(c->cancel_arg);
  }
  pthread_mutex_unlock(&c->cb_mu);
}

/* ==== public per-call API =================================================================== */

int twin_rpc_call_send(twin_rpc_call *c, const uint8_t *msg, size_t len) {
  if (atomic_load(&c->cancelled)) return TWIN_ECANCELLED;
  rpc_msg *m = malloc(sizeof *m + (len ? len : 1));
  if (!m) return TWIN_ENOMEM;
  m->next = NULL;
  m->len = len;
  if (len) memcpy(m->data, msg, len);
  pthread_mutex_lock(&c->mu);
  if (c->closed || c->broken || c->finish_requested) {
    pthread_mutex_unlock(&c->mu);
    free(m);
    return TWIN_ECANCELLED;
  }
  if (c->tail) c->tail->next = m; else c->head = m;
  c->tail = m;
  c->queued++;
  /* A write in flight chains this one when it completes (on_call_event); otherwise the sender
   * starts it, unless the call already waits for the sender. */
  int hand_over = !c->send_inflight && !c->sender_pending;
  if (hand_over) c->sender_pending = 1;
  twin_rpc_server *s = c->srv;
  pthread_mutex_unlock(&c->mu);
  if (hand_over) sender_hand_over(s, c);
  return 0;
}

void twin_rpc_call_finish(twin_rpc_call *c, twin_rpc_code code, const char *message) {
  /* After this returns the on-cancel hook never runs: its argument may be gone. */
  pthread_mutex_lock(&c->cb_mu);
  c->cancel_fn = NULL;
  pthread_mutex_unlock(&c->cb_mu);

  pthread_mutex_lock(&c->mu);
  if (c->handler_done) {
    pthread_mutex_unlock(&c->mu);
    LOG_ERROR("rpc %s: call finished twice", c->method->name);
    return;
  }
  c->handler_done = 1;
  c->finish_requested = 1;
  c->fin_code = code;
  grpc_slice_unref(c->fin_details);
  c->fin_details = grpc_slice_from_copied_string(message ? message : "");
  /* The status goes out from the sender, or after the write in flight (on_call_event). */
  int hand_over = !c->closed && !c->broken && !c->send_inflight && !c->status_started &&
                  !c->sender_pending;
  if (hand_over) c->sender_pending = 1;
  int done = call_done_locked(c);
  twin_rpc_server *s = c->srv;
  pthread_mutex_unlock(&c->mu);
  if (hand_over) sender_hand_over(s, c);
  else if (done) call_free(c);
}

void twin_rpc_call_reply(twin_rpc_call *c, const uint8_t *msg, size_t len) {
  if (twin_rpc_call_send(c, msg, len) != 0) {
    twin_rpc_call_finish(c, TWIN_RPC_CANCELLED, "call ended before the reply");
    return;
  }
  twin_rpc_call_finish(c, TWIN_RPC_OK, NULL);
}

void twin_rpc_call_fail(twin_rpc_call *c, twin_rpc_code code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  twin_rpc_call_finish(c, code, msg);
}

int twin_rpc_call_cancelled(const twin_rpc_call *c) { return atomic_load(&c->cancelled); }

void twin_rpc_call_on_cancel(twin_rpc_call *c, void (*fn)(void *arg), void *arg) {
  pthread_mutex_lock(&c->cb_mu);
  c->cancel_fn = fn;
  c->cancel_arg = arg;
  c->cancel_fired = 0;
  int already = atomic_load(&c->cancelled);
  if (already && fn) {
    c->cancel_fired = 1;
    fn(arg);
  }
  pthread_mutex_unlock(&c->cb_mu);
}

int64_t twin_rpc_call_deadline_left_ms(const twin_rpc_call *c) {
  if (gpr_time_cmp(c->deadline, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0) return -1;
  gpr_timespec left = gpr_time_sub(c->deadline, gpr_now(GPR_CLOCK_MONOTONIC));
  int64_t ms = (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
  return ms < 0 ? 0 : ms;
}

size_t twin_rpc_call_queued(const twin_rpc_call *c) {
  twin_rpc_call *m = (twin_rpc_call *)c;
  pthread_mutex_lock(&m->mu);
  size_t n = m->queued + (size_t)m->send_inflight;
  pthread_mutex_unlock(&m->mu);
  return n;
}

const char *twin_rpc_call_method(const twin_rpc_call *c) { return c->method->name; }

int twin_rpc_call_metadata(const twin_rpc_call *c, const char *key, char *buf, size_t cap) {
  size_t klen = strlen(key);
  for (size_t i = 0; i < c->md.count; i++) {
    const grpc_metadata *m = &c->md.metadata[i];
    if (GRPC_SLICE_LENGTH(m->key) == klen &&
        memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) == 0) {
      size_t n = GRPC_SLICE_LENGTH(m->value);
      if (n >= cap) n = cap - 1;
      memcpy(buf, GRPC_SLICE_START_PTR(m->value), n);
      buf[n] = 0;
      return 0;
    }
  }
  return TWIN_ENOTFOUND;
}

/* ==== dispatch ============================================================================== */

typedef struct handler_job {
  twin_rpc_call *call;
  uint8_t *req;   /* [len] request bytes, owned by the job */
  size_t len;
  int missing;    /* the client half-closed without a message */
} handler_job;

static void run_handler(void *arg) {
  handler_job *j = arg;
  twin_rpc_call *c = j->call;
  if (j->missing)
    twin_rpc_call_finish(c, TWIN_RPC_INVALID_ARGUMENT, "the request message is missing");
  else
    c->method->handler(c, j->req, j->len, c->method->user);
  free(j->req);
  free(j);
}

static void arm_slot(twin_rpc_server *s, rpc_request_slot *slot) {
  slot->call = NULL;
  slot->payload = NULL;
  grpc_metadata_array_init(&slot->md);
  grpc_call_error e = grpc_server_request_registered_call(
      s->server, slot->method->registered, &slot->call, &slot->deadline, &slot->md,
      &slot->payload, s->cq, s->cq, &slot->tag);
  if (e != GRPC_CALL_OK) LOG_ERROR("rpc: request_registered_call failed: %d", (int)e);
}

static void arm_unknown(twin_rpc_server *s) {
  rpc_unknown_slot *u = &s->unknown;
  u->call = NULL;
  grpc_call_details_init(&u->details);
  grpc_metadata_array_init(&u->md);
  grpc_call_error e = grpc_server_request_call(s->server, &u->call, &u->details, &u->md, s->cq,
                                               s->cq, &u->tag);
  if (e != GRPC_CALL_OK) LOG_ERROR("rpc: request_call failed: %d", (int)e);
}

static void on_new_call(twin_rpc_server *s, rpc_request_slot *slot, int ok) {
  if (!ok) { /* shutting down: the slot is not re-armed */
    grpc_metadata_array_destroy(&slot->md);
    return;
  }
  twin_rpc_call *c = calloc(1, sizeof *c);
  handler_job *j = calloc(1, sizeof *j);
  if (!c || !j) abort(); /* out of memory on the I/O thread: nothing sane to do */
  c->srv = s;
  c->method = slot->method;
  c->call = slot->call;
  c->deadline = gpr_convert_clock_type(slot->deadline, GPR_CLOCK_MONOTONIC);
  c->md = slot->md; /* moved */
  c->fin_details = grpc_empty_slice();
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->cb_mu, NULL);
  atomic_init(&c->cancelled, 0);
  c->t_close = (rpc_tag){TAG_RECV_CLOSE, c};
  c->t_send = (rpc_tag){TAG_SEND, c};
  c->t_status = (rpc_tag){TAG_STATUS, c};

  j->call = c;
  if (slot->payload) {
    j->req = buffer_read_all(slot->payload, &j->len);
    grpc_byte_buffer_destroy(slot->payload);
    if (!j->req) abort();
  } else {
    j->missing = 1;
  }

  pthread_mutex_lock(&s->mu);
  c->next = s->live;
  if (s->live) s->live->prev = c;
  s->live = c;
  s->active++;
  pthread_mutex_unlock(&s->mu);

  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->close_cancelled;
  pthread_mutex_lock(&c->mu);
  call_start_batch_locked(c, &op, 1, &c->t_close);
  pthread_mutex_unlock(&c->mu);

  arm_slot(s, slot);
  if (twin_worker_pool_submit(s->pool, run_handler, j) != 0) {
    twin_rpc_call_finish(c, TWIN_RPC_UNAVAILABLE, "server is shutting down");
    free(j->req);
    free(j);
  }
}

static void on_unknown_call(twin_rpc_server *s, int ok) {
  rpc_unknown_slot *u = &s->unknown;
  if (!ok) {
    grpc_call_details_destroy(&u->details);
    grpc_metadata_array_destroy(&u->md);
    return;
  }
  char method[256];
  size_t n = GRPC_SLICE_LENGTH(u->details.method);
  if (n >= sizeof method) n = sizeof method - 1;
  memcpy(method, GRPC_SLICE_START_PTR(u->details.method), n);
  method[n] = 0;
  LOG_DEBUG("rpc %s: unknown method %s", s->name, method);
  char msg[320];
  snprintf(msg, sizeof msg, "unknown method %s", method);
  u->details_slice = grpc_slice_from_copied_string(msg);

  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[1].data.recv_close_on_server.cancelled = &u->close_cancelled;
  ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[2].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
  ops[2].data.send_status_from_server.status_details = &u->details_slice;
  /* This one answer completes before the slot is re-armed (UNKNOWN_DONE). */
  grpc_call_error e = grpc_call_start_batch(u->call, ops, 3, &u->done_tag, NULL);
  if (e != GRPC_CALL_OK) {
    LOG_ERROR("rpc: unimplemented reply failed: %d", (int)e);
    grpc_slice_unref(u->details_slice);
    grpc_call_unref(u->call);
    grpc_call_details_destroy(&u->details);
    grpc_metadata_array_destroy(&u->md);
    arm_unknown(s);
  }
}

static void on_unknown_done(twin_rpc_server *s) {
  rpc_unknown_slot *u = &s->unknown;
  grpc_slice_unref(u->details_slice);
  grpc_call_unref(u->call);
  grpc_call_details_destroy(&u->details);
  grpc_metadata_array_destroy(&u->md);
  pthread_mutex_lock(&s->mu);
  int shutting = s->shutting_down;
  pthread_mutex_unlock(&s->mu);
  if (!shutting) arm_unknown(s);
}

static void on_call_event(rpc_tag *t, int ok) {
  twin_rpc_call *c = t->owner;
  int cancel_now = 0;
  pthread_mutex_lock(&c->mu);
  c->ops_pending--;
  switch (t->kind) {
    case TAG_RECV_CLOSE:
      c->closed = 1;
      if (c->close_cancelled || !c->status_started) {
        atomic_store(&c->cancelled, 1);
        cancel_now = 1;
      }
      break;
    case TAG_SEND:
      c->send_inflight = 0;
      if (c->inflight_buf) grpc_byte_buffer_destroy(c->inflight_buf);
      c->inflight_buf = NULL;
      if (!ok) {
        c->broken = 1;
        atomic_store(&c->cancelled, 1);
        cancel_now = 1;
      } else {
        call_start_next_locked(c); /* chains the next write here, on the I/O thread */
      }
      break;
    case TAG_STATUS:
      break;
    default:
      break;
  }
  /* Keep the call alive across the hook: it may still be used by its handler. */
  c->ops_pending++;
  pthread_mutex_unlock(&c->mu);
  if (cancel_now) fire_cancel(c);
  pthread_mutex_lock(&c->mu);
  c->ops_pending--;
  int done = call_done_locked(c);
  pthread_mutex_unlock(&c->mu);
  if (done) call_free(c);
}

/* ==== the completion-queue thread =========================================================== */

static void *cq_main(void *arg) {
  twin_rpc_server *s = arg;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    int shutting = s->shutting_down;
    if (s->shutdown_tag_seen && s->active == 0 && !s->cq_shut) {
      s->cq_shut = 1;
      pthread_mutex_unlock(&s->mu);
      grpc_completion_queue_shutdown(s->cq);
    } else {
      pthread_mutex_unlock(&s->mu);
    }
    gpr_timespec deadline =
        shutting ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(20, GPR_TIMESPAN))
                 : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_event ev = grpc_completion_queue_next(s->cq, deadline, NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    rpc_tag *t = ev.tag;
    switch (t->kind) {
      case TAG_REQUEST: on_new_call(s, (rpc_request_slot *)t->owner, ev.success); break;
      case TAG_UNKNOWN_REQUEST: on_unknown_call(s, ev.success); break;
      case TAG_UNKNOWN_DONE: on_unknown_done(s); break;
      case TAG_SHUTDOWN:
        pthread_mutex_lock(&s->mu);
        s->shutdown_tag_seen = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        break;
      default: on_call_event(t, ev.success); break;
    }
  }
  pthread_mutex_lock(&s->mu);
  s->cq_done = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ==== server lifetime ======================================================================= */

int twin_rpc_server_create(const twin_rpc_server_opts *opts, twin_rpc_server **out, twin_err *err) {
  *out = NULL;
  if (!opts || !opts->address || !*opts->address)
    return twin_err_set(err, TWIN_EINVAL, "rpc server: no listen address");
  twin_rpc_server *s = calloc(1, sizeof *s);
  if (!s) return twin_err_set(err, TWIN_ENOMEM, "rpc server: out of memory");
  grpc_init();
  snprintf(s->name, sizeof s->name, "%s", opts->name ? opts->name : "rpc");
  snprintf(s->address, sizeof s->address, "%s", opts->address);
  s->min_workers = opts->min_workers > 0 ? opts->min_workers : 4;
  s->max_workers = opts->max_workers > 0 ? opts->max_workers : 256;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->sender.mu, NULL);
  pthread_cond_init(&s->sender.cv, NULL);

  grpc_arg args[2];
  size_t n_args = 0;
  args[n_args].type = GRPC_ARG_INTEGER;
  args[n_args].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[n_args++].value.integer = opts->max_receive_bytes > 0 ? opts->max_receive_bytes : 4 << 20;
  if (opts->max_connection_age_ms >= 0) {
    args[n_args].type = GRPC_ARG_INTEGER;
    args[n_args].key = GRPC_ARG_MAX_CONNECTION_AGE_MS;
    args[n_args++].value.integer = opts->max_connection_age_ms > 0 ? opts->max_connection_age_ms : 300000;
  }
  grpc_channel_args chargs = {n_args, args};
  s->server = grpc_server_create(&chargs, NULL);
  s->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(s->server, s->cq, NULL);
  s->t_shutdown = (rpc_tag){TAG_SHUTDOWN, s};
  s->unknown.tag = (rpc_tag){TAG_UNKNOWN_REQUEST, s};
  s->unknown.done_tag = (rpc_tag){TAG_UNKNOWN_DONE, s};
  *out = s;
  int rc = rpc_health_register(s, err);
  if (rc != 0) {
    twin_rpc_server_destroy(s);
    *out = NULL;
    return rc;
  }
  return 0;
}

int twin_rpc_server_add_method(twin_rpc_server *s, const char *method, twin_rpc_kind kind,
                               twin_rpc_handler handler, twin_rpc_coalescer coalescer, void *user,
                               twin_err *err) {
  if (s->started) return twin_err_set(err, TWIN_EINVAL, "rpc: add_method %s after start", method);
  if (!method || method[0] != '/' || strlen(method) >= sizeof s->methods[0].name)
    return twin_err_set(err, TWIN_EINVAL, "rpc: bad method name '%s'", method ? method : "");
  if (s->n_methods == s->cap_methods) {
    int cap = s->cap_methods ? s->cap_methods * 2 : 16;
    rpc_method *m = realloc(s->methods, (size_t)cap * sizeof *m);
    if (!m) return twin_err_set(err, TWIN_ENOMEM, "rpc: out of memory");
    s->methods = m;
    s->cap_methods = cap;
  }
  rpc_method *m = &s->methods[s->n_methods];
  memset(m, 0, sizeof *m);
  snprintf(m->name, sizeof m->name, "%s", method);
  m->kind = kind;
  m->handler = handler;
  m->coalescer = coalescer;
  m->user = user;
  m->registered = grpc_server_register_method(s->server, m->name, NULL,
                                              GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  if (!m->registered) return twin_err_set(err, TWIN_EINVAL, "rpc: method %s registered twice", method);
  s->n_methods++;
  return 0;
}

int twin_rpc_server_start(twin_rpc_server *s, int *bound_port, twin_err *err) {
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(s->server, s->address, creds);
  grpc_server_credentials_release(creds);
  if (port == 0)
    return twin_err_set(err, TWIN_EUNAVAILABLE, "rpc %s: cannot listen on %s (in use?)", s->name,
                        s->address);
  if (bound_port) *bound_port = port;

  s->pool = twin_worker_pool_create(s->min_workers, s->max_workers);
  if (!s->pool) return twin_err_set(err, TWIN_ENOMEM, "rpc: cannot start worker threads");
  /* Before any call can arrive: finishing a call hands it to the sender. */
  if (sender_start(s) != 0) {
    twin_worker_pool_destroy(s->pool);
    s->pool = NULL;
    return twin_err_set(err, TWIN_EINTERNAL, "rpc %s: cannot start the sender thread", s->name);
  }
  grpc_server_start(s->server);
  s->started = 1;

  s->slots = calloc((size_t)s->n_methods * RPC_SLOTS_PER_METHOD, sizeof *s->slots);
  if (!s->slots && s->n_methods) return twin_err_set(err, TWIN_ENOMEM, "rpc: out of memory");
  for (int i = 0; i < s->n_methods * RPC_SLOTS_PER_METHOD; i++) {
    rpc_request_slot *slot = &s->slots[i];
    slot->tag = (rpc_tag){TAG_REQUEST, slot};
    slot->method = &s->methods[i / RPC_SLOTS_PER_METHOD];
    arm_slot(s, slot);
  }
  arm_unknown(s);
  if (pthread_create(&s->cq_thread, NULL, cq_main, s) != 0)
    return twin_err_set(err, TWIN_EINTERNAL, "rpc: cannot start the I/O thread");
  s->cq_thread_started = 1;
  LOG_INFO("%s: gRPC listening on %s (port %d)", s->name, s->address, port);
  return 0;
}

int twin_rpc_server_active_calls(twin_rpc_server *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->active;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static void timed_wait(twin_rpc_server *s, struct timespec *until) {
  pthread_cond_timedwait(&s->cv, &s->mu, until);
}

void twin_rpc_server_shutdown(twin_rpc_server *s, int grace_ms) {
  pthread_mutex_lock(&s->mu);
  if (s->shutting_down || !s->started) {
    pthread_mutex_unlock(&s->mu);
    return;
  }
  s->shutting_down = 1;
  pthread_mutex_unlock(&s->mu);

  rpc_health_begin_shutdown(s);
  grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);

  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += grace_ms / 1000;
  until.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }

  pthread_mutex_lock(&s->mu);
  while (!(s->shutdown_tag_seen && s->active == 0)) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec > until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec))
      break;
    timed_wait(s, &until);
  }
  int leftover = s->active;
  pthread_mutex_unlock(&s->mu);
  if (leftover > 0) {
    LOG_WARN("%s: grace period over, cancelling %d call(s)", s->name, leftover);
    grpc_server_cancel_all_calls(s->server);
  }
  pthread_mutex_lock(&s->mu);
  while (!s->cq_done) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->cq_thread, NULL);
  s->cq_thread_started = 0;
  sender_stop(s); /* every call is freed: none is in its list or can be handed over */
  twin_worker_pool_destroy(s->pool);
  s->pool = NULL;
}

void twin_rpc_server_destroy(twin_rpc_server *s) {
  if (!s) return;
  if (s->started) twin_rpc_server_shutdown(s, 0);
  if (!s->started) {
    /* Never started: the cq has no outstanding operations. */
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
    grpc_completion_queue_shutdown(s->cq);
    for (;;) {
      grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
      if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    }
  }
  grpc_server_destroy(s->server);
  grpc_completion_queue_destroy(s->cq);
  rpc_health_destroy(s);
  free(s->slots);
  free(s->methods);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->sender.mu);
  pthread_cond_destroy(&s->sender.cv);
  free(s);
  grpc_shutdown();
}
