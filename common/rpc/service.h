/* common/rpc/service.h — what every Twin service main shares: the metrics registry, the HTTP side
 * (/metrics, /healthz, the service's own routes), the gRPC server with health, one stdout line
 * announcing the bound ports ("LISTENING grpc=<port> http=<port>", for launchers and tests),
 * and the graceful stop on SIGTERM/SIGINT. */
#ifndef TWIN_COMMON_SERVICE_H
#define TWIN_COMMON_SERVICE_H

#include "common/config.h"
#include "common/error.h"
#include "common/http.h"
#include "common/metrics.h"
#include "common/rpc/server.h"

typedef struct twin_service_opts {
  const char *name;          /* "llm-svc"; also the log component */
  const char *host;          /* bind address of both servers, e.g. "0.0.0.0" */
  int grpc_port;             /* 0 = any free port */
  int http_port;             /* 0 = any free port; -1 = no HTTP server */
  int max_receive_bytes;     /* gRPC; 0 = 4 MiB */
} twin_service_opts;

typedef struct twin_service {
  char name[64];
  twin_metrics *metrics;     /* owned */
  twin_http_server *http;    /* owned; NULL when http_port was -1 */
  twin_rpc_server *rpc;      /* owned */
  int grpc_port, http_port;  /* bound, after start */
  int64_t started_ms;
} twin_service;

/* Creates (does not start) the registry and both servers: add gRPC methods and HTTP routes,
 * then start. Also registers process metrics (start time, up). */
int twin_service_create(const twin_service_opts *opts, twin_service **out, twin_err *err);
/* Starts HTTP then gRPC and prints the LISTENING line. */
int twin_service_start(twin_service *s, twin_err *err);
/* Marks the whole service (health "" and the named gRPC services, and /healthz) serving or
 * not; reason goes to /healthz. services: NULL-terminated list of full service names. */
void twin_service_set_serving(twin_service *s, const char *const *services, int serving,
                              const char *reason);
/* Graceful stop of the gRPC side (grace_ms for calls in flight), then HTTP. */
void twin_service_stop(twin_service *s, int grace_ms);
void twin_service_destroy(twin_service *s);

/* Parses flags and environment; prints usage on --help or the error on a bad flag.
 * Returns -1 to go on, or the exit code to leave with (0 after --help, 2 after an error). */
int twin_service_parse_flags(twin_config *cfg, const char *program, int argc, char **argv);

/* Sets up logging from a level name ("debug".."error") and a JSON switch; TWIN_EINVAL on an
 * unknown level. */
int twin_service_logging(const char *component, const char *level, int json, twin_err *err);

#endif
