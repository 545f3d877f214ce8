/* monitor-svc/main.c — the monitoring service process: flags (each with an
 * environment twin), gRPC (twin.monitor.v1.MonitorService + health) and HTTP (/metrics,
 * /healthz); graceful stop on SIGTERM/SIGINT. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/config.h"
#include "common/log.h"
#include "common/rpc/service.h"
#include "common/signals.h"
#include "common/util.h"

#define MONITOR_SERVICE_NAME "twin.monitor.v1.MonitorService"

typedef struct monitor_flags {
  const char *host, *redis_url, *log_level;
  int port, http_port;
  int64_t grace_ms;
  bool log_json;
} monitor_flags;

int main(int argc, char **argv) {
  twin_signals_block();
  monitor_flags f = {0};
  const twin_option opts[] = {
      {"host", "MONITOR_HOST", TWIN_OPT_STRING, "0.0.0.0", "address to listen on (gRPC and HTTP)", &f.host, NULL, "ADDR"},
      {"port", "MONITOR_PORT", TWIN_OPT_INT, "50053", "gRPC port (0 = any free port)", &f.port, NULL, NULL},
      {"http-port", "MONITOR_HTTP_PORT", TWIN_OPT_INT, "8081", "HTTP port: dashboard, /api, /metrics, /healthz (0 = any)", &f.http_port, NULL, NULL},
      {"redis-url", "REDIS_URL", TWIN_OPT_STRING, "redis://127.0.0.1:6379", "Redis: the trace stream and the trace store", &f.redis_url, NULL, "URL"},
      {"grace-period", "MONITOR_GRACE_PERIOD", TWIN_OPT_DURATION, "30s", "on SIGTERM, time calls in flight get to finish", &f.grace_ms, NULL, NULL},
      {"log-level", "LOG_LEVEL", TWIN_OPT_STRING, "info", "log level", &f.log_level, "debug|info|warn|error", NULL},
      {"log-json", "LOG_JSON", TWIN_OPT_BOOL, "false", "log JSON lines", &f.log_json, NULL, NULL},
  };
  twin_config *cfg = twin_config_create("monitor-svc", "Twin's monitor: trace consumer, query API, dashboard.",
                                        opts, sizeof opts / sizeof opts[0]);
  int early = twin_service_parse_flags(cfg, "monitor-svc", argc, argv);
  if (early >= 0) {
    twin_config_destroy(cfg);
    return early;
  }
  twin_err err = {0};
  int rc = 1;
  twin_service *svc = NULL;
  if (twin_service_logging("monitor-svc", f.log_level, f.log_json, &err) != 0) {
    fprintf(stderr, "monitor-svc: %s\n", err.msg);
    twin_config_destroy(cfg);
    return 2;
  }
  static const char *const services[] = {MONITOR_SERVICE_NAME, NULL};
  twin_service_opts so = {.name = "monitor-svc", .host = f.host, .grpc_port = f.port, .http_port = f.http_port};
  if (twin_service_create(&so, &svc, &err) || twin_service_start(svc, &err)) {
    fprintf(stderr, "monitor-svc: %s\n", err.msg);
    goto out;
  }
  twin_service_set_serving(svc, services, 1, NULL);
  int sig = twin_signals_wait(0);
  LOG_INFO("signal %d: shutting down (grace period %lld ms)", sig, (long long)f.grace_ms);
  twin_service_set_serving(svc, services, 0, "shutting down");
  twin_service_stop(svc, (int)f.grace_ms);
  rc = 0;
out:
  twin_service_destroy(svc);
  twin_config_destroy(cfg);
  return rc;
}
