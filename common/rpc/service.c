/* common/rpc/service.c — the shared skeleton of a service process (see service.h). */
#include "common/rpc/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

static double uptime_s(void *user) {
  twin_service *s = user;
  return (twin_time_wall_ms() - s->started_ms) / 1e3;
}

int twin_service_create(const twin_service_opts *o, twin_service **out, twin_err *err) {
  *out = NULL;
  twin_service *s = calloc(1, sizeof *s);
  if (!s) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  snprintf(s->name, sizeof s->name, "%s", o->name);
  s->started_ms = twin_time_wall_ms();
  s->metrics = twin_metrics_create();
  int rc = s->metrics ? 0 : twin_err_set(err, TWIN_ENOMEM, "out of memory");
  if (!rc) rc = twin_metrics_gauge_fn(s->metrics, "process_uptime_seconds",
                                      "Seconds since the process started.", uptime_s, s, err);
  if (!rc && o->http_port >= 0) {
    twin_http_options ho = {.bind_address = o->host, .port = o->http_port, .metrics = s->metrics};
    rc = twin_http_server_create(&s->http, &ho, err);
  }
  if (!rc) {
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", o->host && *o->host ? o->host : "0.0.0.0", o->grpc_port);
    twin_rpc_server_opts ro = {.address = addr, .name = o->name, .max_receive_bytes = o->max_receive_bytes};
    rc = twin_rpc_server_create(&ro, &s->rpc, err);
  }
  if (rc) {
    twin_service_destroy(s);
    return rc;
  }
  *out = s;
  return 0;
}

int twin_service_start(twin_service *s, twin_err *err) {
  int rc;
  if (s->http) {
    if ((rc = twin_http_server_start(s->http, err))) return rc;
    s->http_port = twin_http_server_port(s->http);
  }
  if ((rc = twin_rpc_server_start(s->rpc, &s->grpc_port, err))) return rc;
  LOG_INFO("%s: gRPC on port %d, HTTP on port %d", s->name, s->grpc_port, s->http ? s->http_port : -1);
  printf("LISTENING grpc=%d http=%d\n", s->grpc_port, s->http ? s->http_port : -1);
  fflush(stdout);
  return 0;
}

/* HTTP first: a client that saw the gRPC health change finds /healthz already agreeing. */
void twin_service_set_serving(twin_service *s, const char *const *services, int serving,
                              const char *reason) {
  twin_health_status st = serving ? TWIN_HEALTH_SERVING : TWIN_HEALTH_NOT_SERVING;
  if (s->http) twin_http_server_set_health(s->http, serving, reason);
  twin_rpc_health_set(s->rpc, "", st);
  for (int i = 0; services && services[i]; i++) twin_rpc_health_set(s->rpc, services[i], st);
}

void twin_service_stop(twin_service *s, int grace_ms) {
  if (s->rpc) twin_rpc_server_shutdown(s->rpc, grace_ms);
  if (s->http) twin_http_server_stop(s->http);
}

void twin_service_destroy(twin_service *s) {
  if (!s) return;
  if (s->rpc) twin_rpc_server_destroy(s->rpc);
  if (s->http) twin_http_server_destroy(s->http);
  twin_metrics_destroy(s->metrics);
  free(s);
}

int twin_service_logging(const char *component, const char *level, int json, twin_err *err) {
  int lv = twin_log_parse_level(level ? level : "info");
  if (lv < 0)
    return twin_err_set(err, TWIN_EINVAL, "--log-level: '%s' is not one of debug|info|warn|error|off",
                        level);
  twin_log_init(component, (twin_log_level)lv, json);
  return 0;
}

int twin_service_parse_flags(twin_config *cfg, const char *program, int argc, char **argv) {
  twin_err err = {0};
  if (!cfg) {
    fprintf(stderr, "%s: out of memory\n", program);
    return 1;
  }
  if (twin_config_parse(cfg, argc, argv, &err) != 0) {
    fprintf(stderr, "%s: %s (see --help)\n", program, err.msg);
    return 2;
  }
  if (twin_config_help_requested(cfg)) {
    twin_buf b;
    twin_buf_init(&b);
    twin_config_usage(cfg, &b);
    fputs(twin_buf_cstr(&b), stdout);
    twin_buf_free(&b);
    return 0;
  }
  return -1;
}
