/* common/rpc/server_internal.h — the server's shared state, for server.c and health.c only.
 * Locks: srv->mu guards the server's lists and counters; call->mu guards one call's send queue
 * and flags; call->cb_mu serializes the on-cancel hook with twin_rpc_call_finish();
 * srv->sender.mu guards the sender thread's list of calls with writes to start. The order in
 * which they may nest is written down in server.c's head. */
#ifndef TWIN_RPC_SERVER_INTERNAL_H
#define TWIN_RPC_SERVER_INTERNAL_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common/rpc/server.h"
#include "common/rpc/worker_pool.h"

typedef enum {
  TAG_REQUEST,         /* a registered method's call arrived */
  TAG_UNKNOWN_REQUEST, /* a call to a method nobody registered */
  TAG_UNKNOWN_DONE,    /* the UNIMPLEMENTED answer went out */
  TAG_RECV_CLOSE,      /* a call is over (cancelled says how) */
  TAG_SEND,            /* a message (maybe with the status) went out */
  TAG_STATUS,          /* the status went out */
  TAG_SHUTDOWN,        /* the server finished shutting down */
} rpc_tag_kind;

typedef struct rpc_tag {
  rpc_tag_kind kind;
  void *owner;
} rpc_tag;

typedef struct rpc_method {
  char name[160];
  twin_rpc_kind kind;
  twin_rpc_handler handler;
  twin_rpc_coalescer coalescer;
  void *user;
  void *registered;  /* grpc_server_register_method's handle */
} rpc_method;

#define RPC_SLOTS_PER_METHOD 4

typedef struct rpc_request_slot {
  rpc_tag tag;
  rpc_method *method;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload;
} rpc_request_slot;

typedef struct rpc_unknown_slot {
  rpc_tag tag;        /* TAG_UNKNOWN_REQUEST */
  rpc_tag done_tag;   /* TAG_UNKNOWN_DONE */
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
  int close_cancelled;
  grpc_slice details_slice;
} rpc_unknown_slot;

typedef struct rpc_msg {
  struct rpc_msg *next;
  size_t len;
  uint8_t data[];
} rpc_msg;

struct twin_rpc_call {
  twin_rpc_server *srv;
  rpc_method *method;
  grpc_call *call;
  gpr_timespec deadline;        /* monotonic clock */
  grpc_metadata_array md;
  struct twin_rpc_call *prev, *next;   /* server's list of live calls (srv->mu) */

  pthread_mutex_t mu;
  rpc_msg *head, *tail;         /* queued, not yet written */
  size_t queued;
  int send_inflight;
  grpc_byte_buffer *inflight_buf;
  int sent_initial_md;
  int finish_requested;
  int status_started;
  twin_rpc_code fin_code;
  grpc_slice fin_details;
  int closed;                   /* RECV_CLOSE_ON_SERVER completed */
  int broken;                   /* a write failed: the stream is dead */
  int ops_pending;              /* batches started and not completed */
  int handler_done;             /* finish() was called */
  int sender_pending;           /* in (or on its way into) the sender's list; keeps the call
                                   alive until the sender has looked at it */
  atomic_int cancelled;
  int close_cancelled;          /* filled by gRPC */

  pthread_mutex_t cb_mu;
  void (*cancel_fn)(void *);
  void *cancel_arg;
  int cancel_fired;

  rpc_tag t_close, t_send, t_status;
  struct twin_rpc_call *sender_next;   /* sender's list (srv->sender.mu) */
};

/* The thread that starts writes for callers (see server.c, "the sender thread"). */
typedef struct rpc_sender {
  pthread_t thread;
  int started;
  pthread_mutex_t mu;           /* a leaf lock: nothing else is taken while it is held */
  pthread_cond_t cv;
  twin_rpc_call *head, *tail;   /* calls with a write or the status to start, FIFO */
  int idle;                     /* the thread waits on cv: the next append must signal */
  int stop;                     /* set at shutdown once every call is freed */
} rpc_sender;

typedef struct rpc_health rpc_health;

struct twin_rpc_server {
  char name[64];
  char address[256];
  grpc_server *server;
  grpc_completion_queue *cq;
  pthread_t cq_thread;
  int cq_thread_started;
  twin_worker_pool *pool;
  int min_workers, max_workers;

  rpc_method *methods;          /* [n_methods] */
  int n_methods, cap_methods;
  rpc_request_slot *slots;      /* [n_methods * RPC_SLOTS_PER_METHOD] */
  rpc_unknown_slot unknown;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  twin_rpc_call *live;          /* calls not yet freed */
  int active;                   /* live calls */
  int started, shutting_down, shutdown_tag_seen, cq_shut, cq_done, destroyed;
  rpc_tag t_shutdown;

  rpc_sender sender;
  rpc_health *health;
};

/* health.c */
int rpc_health_register(twin_rpc_server *s, twin_err *err);
void rpc_health_begin_shutdown(twin_rpc_server *s);
void rpc_health_destroy(twin_rpc_server *s);

#endif
