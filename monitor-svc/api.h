/* monitor-svc/api.h — the query APIs over the trace store: the gRPC service
 * twin.monitor.v1.MonitorService (ListTraces, GetTrace, GetStats) and the dashboard's JSON HTTP
 * API (/api/traces, /api/traces/{id}, /api/stats, /api/facets, /api/status) plus the dashboard's
 * static files. Both run on server threads, each call borrowing a pooled Redis connection. */
#ifndef TWIN_MONITOR_API_H
#define TWIN_MONITOR_API_H

#include <stdint.h>

#include "common/error.h"
#include "common/http.h"
#include "common/rpc/server.h"
#include "monitor-svc/consumer.h"
#include "common/redis_pool.h"
#include "monitor-svc/store.h"

#define MONITOR_SERVICE_NAME "twin.monitor.v1.MonitorService"

/* Everything borrowed; must outlive the servers. */
typedef struct monitor_api {
  const monitor_store *store;
  twin_redis_pool *pool;
  monitor_consumer *consumer; /* for /api/status; may be NULL */
  uint64_t max_scan;          /* candidates a filtered listing examines per call */
  int pool_wait_ms;           /* how long a call waits for a free connection */
  const char *stream, *group, *consumer_name; /* for /api/status */
} monitor_api;

/* Adds the three methods to s (before it starts). */
int monitor_grpc_register(twin_rpc_server *s, monitor_api *api, twin_err *err);
/* Adds the /api routes and, when web_dir is non-NULL, the dashboard at "/" (before start). */
int monitor_http_register(twin_http_server *s, monitor_api *api, const char *web_dir, twin_err *err);

#endif
