/* tests/integration/rpc_testd.c — a server of twin.test.v1.TestService over common/rpc, for the
 * runtime's own tests and benchmarks: echo, counted streams (plain and coalesced), a slow unary
 * method, and a report of the last stream cancel. Prints "PORT=<n>" once it serves.
 * Usage: rpc-testd [--port N | --listen HOST:PORT] [--name NAME] [--grace-ms MS];
 * SIGTERM/SIGINT shut it down gracefully. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rpc/server.h"
#include "common/signals.h"
#include "proto/test.pb-c.h"

typedef struct testd {
  const char *name;
  pthread_mutex_t mu;
  Twin__Test__V1__CancelReport last_cancel;
} testd;

static int64_t wall_us(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void sleep_us(unsigned us) {
  struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static void handle_echo(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  testd *d = user;
  Twin__Test__V1__EchoRequest *r = twin__test__v1__echo_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed EchoRequest");
    return;
  }
  Twin__Test__V1__EchoResponse resp = TWIN__TEST__V1__ECHO_RESPONSE__INIT;
  resp.text = r->text;
  resp.server = (char *)d->name;
  size_t n = twin__test__v1__echo_response__get_packed_size(&resp);
  uint8_t *buf = malloc(n ? n : 1);
  twin__test__v1__echo_response__pack(&resp, buf);
  twin_rpc_call_reply(call, buf, n);
  free(buf);
  twin__test__v1__echo_request__free_unpacked(r, NULL);
}

typedef struct count_state {
  testd *d;
  _Atomic int64_t seen_us; /* set by the cancel hook on the I/O thread, read by the handler */
} count_state;

static void count_cancelled(void *arg) {
  count_state *cs = arg;
  atomic_store(&cs->seen_us, wall_us());
}

static void count_stream(twin_rpc_call *call, const uint8_t *req, size_t len, testd *d, int merged) {
  Twin__Test__V1__CountRequest *r = twin__test__v1__count_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed CountRequest");
    return;
  }
  count_state cs = {.d = d};
  atomic_init(&cs.seen_us, 0);
  twin_rpc_call_on_cancel(call, count_cancelled, &cs);
  uint8_t *filler = calloc(r->payload ? r->payload : 1, 1);
  memset(filler, 'x', r->payload);
  uint8_t *buf = malloc(64 + r->payload);
  uint32_t sent = 0;
  int cancelled = 0;
  for (uint32_t i = 0; i < r->n; i++) {
    Twin__Test__V1__CountResponse m = TWIN__TEST__V1__COUNT_RESPONSE__INIT;
    uint32_t one = i;
    if (merged) {
      m.n_seqs = 1;
      m.seqs = &one;
    } else {
      m.seq = i;
      m.filler.data = filler;
      m.filler.len = r->payload;
    }
    size_t n = twin__test__v1__count_response__pack(&m, buf);
    if (twin_rpc_call_send(call, buf, n) != 0) {
      cancelled = 1;
      break;
    }
    sent++;
    if (r->interval_us) sleep_us(r->interval_us);
    if (twin_rpc_call_cancelled(call)) {
      cancelled = 1;
      break;
    }
  }
  free(filler);
  free(buf);
  if (cancelled) {
    pthread_mutex_lock(&d->mu);
    d->last_cancel.seen = 1;
    d->last_cancel.sent = sent;
    const int64_t seen = atomic_load(&cs.seen_us);
    d->last_cancel.seen_unix_us = seen ? seen : wall_us();
    pthread_mutex_unlock(&d->mu);
    twin_rpc_call_finish(call, TWIN_RPC_CANCELLED, "cancelled");
  } else {
    twin_rpc_call_finish(call, TWIN_RPC_OK, NULL);
  }
  twin__test__v1__count_request__free_unpacked(r, NULL);
}

static void handle_count(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  count_stream(call, req, len, user, 0);
}

static void handle_count_merged(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  count_stream(call, req, len, user, 1);
}

static void handle_sleep(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  (void)user;
  Twin__Test__V1__SleepRequest *r = twin__test__v1__sleep_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed SleepRequest");
    return;
  }
  for (uint32_t t = 0; t < r->ms && !twin_rpc_call_cancelled(call); t++) sleep_us(1000);
  if (twin_rpc_call_cancelled(call)) {
    twin_rpc_call_finish(call, TWIN_RPC_CANCELLED, "cancelled while sleeping");
  } else {
    Twin__Test__V1__EchoResponse resp = TWIN__TEST__V1__ECHO_RESPONSE__INIT;
    resp.text = "slept";
    uint8_t buf[32];
    size_t n = twin__test__v1__echo_response__pack(&resp, buf);
    twin_rpc_call_reply(call, buf, n);
  }
  twin__test__v1__sleep_request__free_unpacked(r, NULL);
}

static void handle_last_cancel(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  (void)req;
  (void)len;
  testd *d = user;
  pthread_mutex_lock(&d->mu);
  Twin__Test__V1__CancelReport rep = d->last_cancel;
  pthread_mutex_unlock(&d->mu);
  uint8_t buf[64];
  size_t n = twin__test__v1__cancel_report__pack(&rep, buf);
  twin_rpc_call_reply(call, buf, n);
}

int main(int argc, char **argv) {
  int port = 0, grace_ms = 5000;
  const char *listen = NULL, *name = "rpc-testd";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen = argv[++i];
    else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) name = argv[++i];
    else if (strcmp(argv[i], "--grace-ms") == 0 && i + 1 < argc) grace_ms = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: rpc-testd [--port N | --listen HOST:PORT] [--name NAME] [--grace-ms MS]\n");
      return 2;
    }
  }
  twin_signals_block();
  twin_log_init("rpc-testd", TWIN_LOG_INFO, 0);
  testd d;
  memset(&d, 0, sizeof d);
  pthread_mutex_init(&d.mu, NULL);
  twin__test__v1__cancel_report__init(&d.last_cancel);
  d.name = name;

  char addr[256];
  if (listen) snprintf(addr, sizeof addr, "%s", listen);
  else snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  twin_rpc_server_opts o = {.address = addr, .name = "rpc-testd"};
  twin_rpc_server *srv;
  twin_err err;
  if (twin_rpc_server_create(&o, &srv, &err) != 0) {
    fprintf(stderr, "rpc-testd: %s\n", err.msg);
    return 1;
  }
  const char *svc = "/twin.test.v1.TestService/";
  struct { const char *m; twin_rpc_kind k; twin_rpc_handler h; twin_rpc_coalescer c; } methods[] = {
      {"Echo", TWIN_RPC_UNARY, handle_echo, NULL},
      {"Count", TWIN_RPC_SERVER_STREAMING, handle_count, NULL},
      {"CountMerged", TWIN_RPC_SERVER_STREAMING, handle_count_merged, twin_rpc_coalesce_concat},
      {"Sleep", TWIN_RPC_UNARY, handle_sleep, NULL},
      {"LastCancel", TWIN_RPC_UNARY, handle_last_cancel, NULL},
  };
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    char full[128];
    snprintf(full, sizeof full, "%s%s", svc, methods[i].m);
    if (twin_rpc_server_add_method(srv, full, methods[i].k, methods[i].h, methods[i].c, &d, &err)) {
      fprintf(stderr, "rpc-testd: %s\n", err.msg);
      return 1;
    }
  }
  int bound = 0;
  if (twin_rpc_server_start(srv, &bound, &err) != 0) {
    fprintf(stderr, "rpc-testd: %s\n", err.msg);
    twin_rpc_server_destroy(srv);
    return 1;
  }
  twin_rpc_health_set(srv, "twin.test.v1.TestService", TWIN_HEALTH_SERVING);
  printf("PORT=%d\n", bound);
  fflush(stdout);

  int sig = twin_signals_wait(0);
  LOG_INFO("signal %d: shutting down (grace %d ms)", sig, grace_ms);
  twin_rpc_server_shutdown(srv, grace_ms);
  twin_rpc_server_destroy(srv);
  pthread_mutex_destroy(&d.mu);
  LOG_INFO("bye");
  return 0;
}
