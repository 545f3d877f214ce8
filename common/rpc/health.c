/* common/rpc/health.c — grpc.health.v1.Health on every server: Check answers the status of a
 * service name ("" = the server as a whole), NOT_FOUND for a name nobody set; Watch streams the
 * current status and then every change, until the client leaves or the server shuts down. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rpc/server_internal.h"
#include "proto/health.pb-c.h"

typedef struct health_entry {
  char name[160];
  twin_health_status status;
} health_entry;

typedef struct health_watcher {
  struct health_watcher *next;
  int cancelled;
} health_watcher;

struct rpc_health {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  health_entry *entries;  /* [n] */
  int n, cap;
  uint64_t version;       /* bumped on every change */
  int shutting_down;
  health_watcher *watchers;
};

static health_entry *find_locked(rpc_health *h, const char *name) {
  for (int i = 0; i < h->n; i++)
    if (strcmp(h->entries[i].name, name) == 0) return &h->entries[i];
  return NULL;
}

void twin_rpc_health_set(twin_rpc_server *s, const char *service, twin_health_status st) {
  rpc_health *h = s->health;
  pthread_mutex_lock(&h->mu);
  health_entry *e = find_locked(h, service ? service : "");
  if (!e && h->n == h->cap) {
    int cap = h->cap ? h->cap * 2 : 8;
    health_entry *ne = realloc(h->entries, (size_t)cap * sizeof *ne);
    if (!ne) {
      pthread_mutex_unlock(&h->mu);
      return;
    }
    h->entries = ne;
    h->cap = cap;
  }
  int created = 0;
  if (!e) {
    e = &h->entries[h->n++];
    snprintf(e->name, sizeof e->name, "%s", service ? service : "");
    created = 1;
  }
  if (created || e->status != st) {
    e->status = st;
    h->version++;
    pthread_cond_broadcast(&h->cv);
  }
  pthread_mutex_unlock(&h->mu);
}

static int status_of(rpc_health *h, const char *name, int *found) {
  health_entry *e = find_locked(h, name);
  *found = e != NULL;
  return e ? (int)e->status : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
}

static int pack_status(int status, uint8_t *buf, size_t cap, size_t *len) {
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
  size_t n = grpc__health__v1__health_check_response__get_packed_size(&resp);
  if (n > cap) return -1;
  *len = grpc__health__v1__health_check_response__pack(&resp, buf);
  return 0;
}

static void handle_check(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  twin_rpc_server *s = user;
  Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed HealthCheckRequest");
    return;
  }
  int found;
  pthread_mutex_lock(&s->health->mu);
  int st = status_of(s->health, r->service, &found);
  pthread_mutex_unlock(&s->health->mu);
  if (!found) {
    twin_rpc_call_fail(call, TWIN_RPC_NOT_FOUND, "unknown service '%s'", r->service);
  } else {
    uint8_t buf[16];
    size_t n = 0;
    pack_status(st, buf, sizeof buf, &n);
    twin_rpc_call_reply(call, buf, n);
  }
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
}

typedef struct watch_ctx {
  rpc_health *h;
  health_watcher w;
} watch_ctx;

static void watch_cancelled(void *arg) {
  watch_ctx *ctx = arg;
  pthread_mutex_lock(&ctx->h->mu);
  ctx->w.cancelled = 1;
  pthread_cond_broadcast(&ctx->h->cv);
  pthread_mutex_unlock(&ctx->h->mu);
}

/* Holds a worker thread for the life of the watch: watchers are few (probes, dashboards). */
static void handle_watch(twin_rpc_call *call, const uint8_t *req, size_t len, void *user) {
  twin_rpc_server *s = user;
  rpc_health *h = s->health;
  Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
  if (!r) {
    twin_rpc_call_fail(call, TWIN_RPC_INVALID_ARGUMENT, "malformed HealthCheckRequest");
    return;
  }
  watch_ctx ctx = {.h = h};
  twin_rpc_call_on_cancel(call, watch_cancelled, &ctx);
  pthread_mutex_lock(&h->mu);
  ctx.w.next = h->watchers;
  h->watchers = &ctx.w;
  int last = -1;
  while (!ctx.w.cancelled && !h->shutting_down) {
    int found;
    int st = status_of(h, r->service, &found);
    if (st != last) {
      uint8_t buf[16];
      size_t n = 0;
      pack_status(st, buf, sizeof buf, &n);
      last = st;
      pthread_mutex_unlock(&h->mu);
      int rc = twin_rpc_call_send(call, buf, n);
      pthread_mutex_lock(&h->mu);
      if (rc != 0) break;
      continue;
    }
    pthread_cond_wait(&h->cv, &h->mu);
  }
  for (health_watcher **p = &h->watchers; *p; p = &(*p)->next)
    if (*p == &ctx.w) {
      *p = ctx.w.next;
      break;
    }
  int shutting = h->shutting_down;
  pthread_mutex_unlock(&h->mu);
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
  if (shutting) twin_rpc_call_finish(call, TWIN_RPC_UNAVAILABLE, "server is shutting down");
  else twin_rpc_call_finish(call, TWIN_RPC_CANCELLED, "watch ended");
}

int rpc_health_register(twin_rpc_server *s, twin_err *err) {
  rpc_health *h = calloc(1, sizeof *h);
  if (!h) return twin_err_set(err, TWIN_ENOMEM, "health: out of memory");
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  s->health = h;
  int rc = twin_rpc_server_add_method(s, "/grpc.health.v1.Health/Check", TWIN_RPC_UNARY,
                                      handle_check, NULL, s, err);
  if (rc == 0)
    rc = twin_rpc_server_add_method(s, "/grpc.health.v1.Health/Watch", TWIN_RPC_SERVER_STREAMING,
                                    handle_watch, NULL, s, err);
  if (rc == 0) twin_rpc_health_set(s, "", TWIN_HEALTH_SERVING);
  return rc;
}

void rpc_health_begin_shutdown(twin_rpc_server *s) {
  rpc_health *h = s->health;
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  for (int i = 0; i < h->n; i++) h->entries[i].status = TWIN_HEALTH_NOT_SERVING;
  h->shutting_down = 1;
  h->version++;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

void rpc_health_destroy(twin_rpc_server *s) {
  rpc_health *h = s->health;
  if (!h) return;
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->cv);
  free(h->entries);
  free(h);
  s->health = NULL;
}
