/* monitor-svc/main.c — the monitoring service process: flags (each with an environment twin),
 * gRPC (twin.monitor.v1.MonitorService + health) and HTTP (dashboard, /api, /metrics,
 * /healthz) up first, NOT_SERVING until the consumer reaches Redis; the consumer thread reads
 * the trace stream into the store and flips health as Redis comes and goes. On SIGTERM/SIGINT:
 * stop the consumer (it acknowledges what it stored), NOT_SERVING, let calls in flight finish
 * for the grace period, exit 0. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/rpc/service.h"
#include "common/signals.h"
#include "common/util.h"
#include "monitor-svc/api.h"
#include "monitor-svc/consumer.h"
#include "common/redis_pool.h"
#include "monitor-svc/store.h"
#include "monitor-svc/trace_format.h"
#include "monitor-svc/trace_metrics.h"

#ifndef TWIN_MONITOR_WEB_DIR
#define TWIN_MONITOR_WEB_DIR "monitor-svc/web"
#endif

typedef struct monitor_flags {
  const char *host, *redis_url, *log_level, *stream, *dead_stream, *group, *consumer, *key_prefix, *web_dir;
  int port, http_port, batch, max_deliveries, max_traces, redis_pool, max_scan;
  int64_t grace_ms, block_ms, claim_idle_ms, claim_interval_ms, retention_ms, trim_interval_ms, consumer_expiry_ms;
  bool log_json;
} monitor_flags;

static const char *const k_services[] = {MONITOR_SERVICE_NAME, NULL};

static void on_health(void *user, bool up, const char *reason) {
  twin_service_set_serving(user, k_services, up, up ? NULL : reason);
}

static int check_flags(const monitor_flags *f, twin_err *err) {
  if (f->batch < 1 || f->batch > 10000) return twin_err_set(err, TWIN_EINVAL, "--batch: %d is not in 1..10000", f->batch);
  if (f->block_ms < 1 || f->block_ms > 60000)
    return twin_err_set(err, TWIN_EINVAL, "--block: %lld ms is not in 1ms..60s", (long long)f->block_ms);
  if (f->claim_idle_ms < 1) return twin_err_set(err, TWIN_EINVAL, "--claim-idle: must be > 0");
  if (f->claim_interval_ms < 1) return twin_err_set(err, TWIN_EINVAL, "--claim-interval: must be > 0");
  if (f->trim_interval_ms < 1) return twin_err_set(err, TWIN_EINVAL, "--trim-interval: must be > 0");
  if (f->max_deliveries < 1) return twin_err_set(err, TWIN_EINVAL, "--max-deliveries: %d must be >= 1", f->max_deliveries);
  if (f->max_traces < 0) return twin_err_set(err, TWIN_EINVAL, "--max-traces: %d is negative", f->max_traces);
  if (f->redis_pool < 1 || f->redis_pool > 256)
    return twin_err_set(err, TWIN_EINVAL, "--redis-pool: %d is not in 1..256", f->redis_pool);
  if (f->max_scan < 1) return twin_err_set(err, TWIN_EINVAL, "--max-scan: %d must be >= 1", f->max_scan);
  if (!*f->stream || !*f->group) return twin_err_set(err, TWIN_EINVAL, "--stream and --group must not be empty");
  return 0;
}

int main(int argc, char **argv) {
  twin_signals_block();
  monitor_flags f = {0};
  const twin_option opts[] = {
      {"host", "MONITOR_HOST", TWIN_OPT_STRING, "0.0.0.0", "address to listen on (gRPC and HTTP)", &f.host, NULL, "ADDR"},
      {"port", "MONITOR_PORT", TWIN_OPT_INT, "50053", "gRPC port (0 = any free port)", &f.port, NULL, NULL},
      {"http-port", "MONITOR_HTTP_PORT", TWIN_OPT_INT, "8081", "HTTP port: dashboard, /api, /metrics, /healthz (0 = any)", &f.http_port, NULL, NULL},
      {"redis-url", "REDIS_URL", TWIN_OPT_STRING, "redis://127.0.0.1:6379", "Redis: the trace stream and the trace store", &f.redis_url, NULL, "URL"},
      {"stream", "MONITOR_STREAM", TWIN_OPT_STRING, TWIN_TRACE_STREAM, "the trace stream to consume", &f.stream, NULL, "KEY"},
      {"dead-stream", "MONITOR_DEAD_STREAM", TWIN_OPT_STRING, TWIN_TRACE_DEAD_STREAM, "where malformed entries go", &f.dead_stream, NULL, "KEY"},
      {"group", "MONITOR_GROUP", TWIN_OPT_STRING, "monitor", "consumer group (replicas share it)", &f.group, NULL, "NAME"},
      {"consumer", "MONITOR_CONSUMER", TWIN_OPT_STRING, "", "this replica's consumer name (\"\" = <hostname>-<pid>)", &f.consumer, NULL, "NAME"},
      {"key-prefix", "MONITOR_KEY_PREFIX", TWIN_OPT_STRING, "twin:monitor:", "prefix of the trace store's keys", &f.key_prefix, NULL, "PREFIX"},
      {"batch", "MONITOR_BATCH", TWIN_OPT_INT, "256", "stream entries read per round trip", &f.batch, NULL, NULL},
      {"block", "MONITOR_BLOCK", TWIN_OPT_DURATION, "500ms", "how long a read waits for new entries", &f.block_ms, NULL, NULL},
      {"claim-idle", "MONITOR_CLAIM_IDLE", TWIN_OPT_DURATION, "30s", "claim entries another consumer left pending this long (XAUTOCLAIM)", &f.claim_idle_ms, NULL, NULL},
      {"claim-interval", "MONITOR_CLAIM_INTERVAL", TWIN_OPT_DURATION, "5s", "how often to look for such entries", &f.claim_interval_ms, NULL, NULL},
      {"max-deliveries", "MONITOR_MAX_DELIVERIES", TWIN_OPT_INT, "5", "a claimed entry delivered more often than this is dead-lettered", &f.max_deliveries, NULL, NULL},
      {"consumer-expiry", "MONITOR_CONSUMER_EXPIRY", TWIN_OPT_DURATION, "1h", "forget other consumers idle this long with nothing pending (0 = never)", &f.consumer_expiry_ms, NULL, NULL},
      {"retention", "MONITOR_RETENTION", TWIN_OPT_DURATION, "168h", "drop traces older than this (0 = keep forever)", &f.retention_ms, NULL, NULL},
      {"max-traces", "MONITOR_MAX_TRACES", TWIN_OPT_INT, "1000000", "keep at most this many traces, oldest dropped first (0 = no cap)", &f.max_traces, NULL, NULL},
      {"trim-interval", "MONITOR_TRIM_INTERVAL", TWIN_OPT_DURATION, "10s", "how often the retention policy runs", &f.trim_interval_ms, NULL, NULL},
      {"redis-pool", "MONITOR_REDIS_POOL", TWIN_OPT_INT, "8", "Redis connections for queries", &f.redis_pool, NULL, NULL},
      {"max-scan", "MONITOR_MAX_SCAN", TWIN_OPT_INT, "200000", "traces a filtered listing examines per call", &f.max_scan, NULL, NULL},
      {"web-dir", "MONITOR_WEB_DIR", TWIN_OPT_STRING, TWIN_MONITOR_WEB_DIR, "the dashboard's files (\"\" = no dashboard)", &f.web_dir, NULL, "DIR"},
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
  monitor_metrics *metrics = NULL;
  twin_redis_pool *pool = NULL;
  monitor_consumer *consumer = NULL;
  monitor_store store;
  if (twin_service_logging("monitor-svc", f.log_level, f.log_json, &err) != 0 || check_flags(&f, &err) != 0 ||
      monitor_store_init(&store, f.key_prefix, &err) != 0) {
    fprintf(stderr, "monitor-svc: %s\n", err.msg);
    twin_config_destroy(cfg);
    return 2;
  }
  char consumer_name[300];
  if (*f.consumer) {
    snprintf(consumer_name, sizeof consumer_name, "%s", f.consumer);
  } else {
    char host[256] = "monitor";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "monitor");
    host[sizeof host - 1] = 0;
    snprintf(consumer_name, sizeof consumer_name, "%s-%ld", host, (long)getpid());
  }
  twin_redis_options ro = {.url = f.redis_url, .backoff_max_ms = 2000};
  twin_redis_url parsed;
  if (twin_redis_parse_url(f.redis_url, &parsed, &err) != 0) {
    fprintf(stderr, "monitor-svc: --redis-url: %s\n", err.msg);
    twin_config_destroy(cfg);
    return 2;
  }
  char where[300];
  twin_redis_url_describe(&parsed, where, sizeof where);

  twin_service_opts so = {.name = "monitor-svc", .host = f.host, .grpc_port = f.port, .http_port = f.http_port};
  monitor_api api = {.store = &store, .max_scan = (uint64_t)f.max_scan, .pool_wait_ms = 5000, .stream = f.stream,
                     .group = f.group, .consumer_name = consumer_name};
  if (twin_service_create(&so, &svc, &err) || monitor_metrics_create(svc->metrics, &metrics, &err) ||
      twin_redis_pool_create(&ro, f.redis_pool, &pool, &err))
    goto fail;
  api.pool = pool;
  const char *web_dir = *f.web_dir ? f.web_dir : NULL;
  struct stat st;
  if (web_dir && stat(web_dir, &st) != 0 && strcmp(twin_config_source(cfg, "web-dir"), "default") == 0) {
    LOG_WARN("no dashboard: its files are not at %s (set --web-dir / MONITOR_WEB_DIR)", web_dir);
    web_dir = NULL;
  }
  if (monitor_grpc_register(svc->rpc, &api, &err) || monitor_http_register(svc->http, &api, web_dir, &err))
    goto fail;
  twin_service_set_serving(svc, k_services, 0, "connecting to redis");
  if (twin_service_start(svc, &err)) goto fail;
  monitor_consumer_opts co = {
      .redis = ro,
      .stream = f.stream,
      .dead_stream = f.dead_stream,
      .group = f.group,
      .consumer = consumer_name,
      .batch = f.batch,
      .block_ms = f.block_ms,
      .claim_idle_ms = f.claim_idle_ms,
      .claim_interval_ms = f.claim_interval_ms,
      .max_deliveries = f.max_deliveries,
      .consumer_expiry_ms = f.consumer_expiry_ms,
      .retention_ms = f.retention_ms,
      .max_traces = f.max_traces,
      .trim_interval_ms = f.trim_interval_ms,
      .store = &store,
      .metrics = metrics,
      .on_health = on_health,
      .user = svc,
  };
  if (monitor_consumer_start(&co, &consumer, &err)) goto fail;
  api.consumer = consumer;
  LOG_INFO("consuming %s (group %s, consumer %s) from %s into keys %s*; dashboard on http port %d", f.stream, f.group,
           consumer_name, where, f.key_prefix, svc->http_port);

  int sig = twin_signals_wait(0);
  LOG_INFO("signal %d: shutting down (grace period %lld ms)", sig, (long long)f.grace_ms);
  monitor_consumer_stop(consumer); /* its status stays readable until destroy */
  twin_service_set_serving(svc, k_services, 0, "shutting down");
  twin_service_stop(svc, (int)f.grace_ms);
  rc = 0;
  goto out;

fail:
  LOG_ERROR("%s", err.msg);
  fprintf(stderr, "monitor-svc: %s\n", err.msg);
  monitor_consumer_stop(consumer);
  if (svc) twin_service_stop(svc, 0);
out:
  twin_service_destroy(svc);
  monitor_consumer_destroy(consumer);
  twin_redis_pool_destroy(pool);
  monitor_metrics_destroy(metrics);
  twin_config_destroy(cfg);
  return rc;
}
