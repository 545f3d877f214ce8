/* tests/integration/rpc_testc.c — drives rpc-testd through our own C client (common/rpc/client)
 * and prints what happened as one "key=value ..." line per scenario; the Python test asserts.
 * Usage: rpc-testc TARGET SCENARIO [ARGS]
 *   health SERVICE        -> code=<status code name> serving=<0|1>
 *   unknown               -> code=...
 *   count N [INTERVAL_US] -> received=<n> in_order=<0|1> code=...
 *   merged N              -> received=<seqs> messages=<n> in_order=<0|1> code=...
 *   cancel                -> latency_ms=<from our cancel to the server's hook> code=...
 *   deadline MS           -> code=... elapsed_ms=...
 *   whoami K              -> servers=<name,name,...> (K echo calls) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "common/rpc/client.h"
#include "proto/health.pb-c.h"
#include "proto/test.pb-c.h"

#define SVC "/twin.test.v1.TestService/"

static double wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
}

static int scenario_health(twin_rpc_channel *ch, const char *service) {
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = (char *)service;
  uint8_t buf[256];
  size_t n = grpc__health__v1__health_check_request__pack(&req, buf);
  uint8_t *resp;
  size_t rlen;
  twin_rpc_status st;
  int rc = twin_rpc_unary(ch, "/grpc.health.v1.Health/Check", buf, n, 5000, NULL, 0, &resp, &rlen, &st);
  int serving = 0;
  if (rc == 0) {
    Grpc__Health__V1__HealthCheckResponse *r = grpc__health__v1__health_check_response__unpack(NULL, rlen, resp);
    serving = r && r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    if (r) grpc__health__v1__health_check_response__free_unpacked(r, NULL);
    free(resp);
  }
  printf("code=%s serving=%d\n", twin_rpc_code_name(st.code), serving);
  return 0;
}

static int scenario_unknown(twin_rpc_channel *ch) {
  uint8_t *resp;
  size_t rlen;
  twin_rpc_status st;
  twin_rpc_unary(ch, SVC "NoSuchMethod", NULL, 0, 5000, NULL, 0, &resp, &rlen, &st);
  printf("code=%s\n", twin_rpc_code_name(st.code));
  return 0;
}

static int scenario_count(twin_rpc_channel *ch, const char *method, unsigned n, unsigned interval) {
  Twin__Test__V1__CountRequest req = TWIN__TEST__V1__COUNT_REQUEST__INIT;
  req.n = n;
  req.interval_us = interval;
  uint8_t buf[64];
  size_t len = twin__test__v1__count_request__pack(&req, buf);
  twin_rpc_stream *s;
  twin_err err;
  if (twin_rpc_stream_start(ch, method, buf, len, 60000, NULL, 0, &s, &err) != 0) {
    printf("error=%s\n", err.msg);
    return 1;
  }
  int merged = strstr(method, "Merged") != NULL;
  unsigned expect = 0, messages = 0;
  int in_order = 1;
  uint8_t *msg;
  size_t mlen;
  while (twin_rpc_stream_next(s, &msg, &mlen) == 1) {
    Twin__Test__V1__CountResponse *m = twin__test__v1__count_response__unpack(NULL, mlen, msg);
    free(msg);
    if (!m) {
      in_order = 0;
      break;
    }
    messages++;
    if (merged) {
      for (size_t i = 0; i < m->n_seqs; i++) in_order &= m->seqs[i] == expect++;
    } else {
      in_order &= m->seq == expect++;
    }
    twin__test__v1__count_response__free_unpacked(m, NULL);
  }
  const twin_rpc_status *st = twin_rpc_stream_status(s);
  printf("received=%u messages=%u in_order=%d code=%s\n", expect, messages, in_order,
         twin_rpc_code_name(st->code));
  twin_rpc_stream_destroy(s);
  return 0;
}

static int scenario_cancel(twin_rpc_channel *ch) {
  Twin__Test__V1__CountRequest req = TWIN__TEST__V1__COUNT_REQUEST__INIT;
  req.n = 1000000;
  req.interval_us = 1000;
  uint8_t buf[64];
  size_t len = twin__test__v1__count_request__pack(&req, buf);
  twin_rpc_stream *s;
  twin_err err;
  if (twin_rpc_stream_start(ch, SVC "Count", buf, len, 30000, NULL, 0, &s, &err) != 0) {
    printf("error=%s\n", err.msg);
    return 1;
  }
  uint8_t *msg;
  size_t mlen;
  for (int i = 0; i < 20 && twin_rpc_stream_next(s, &msg, &mlen) == 1; i++) free(msg);
  double t_cancel = wall_ms();
  twin_rpc_stream_cancel(s);
  while (twin_rpc_stream_next(s, &msg, &mlen) == 1) free(msg);
  const char *code = twin_rpc_code_name(twin_rpc_stream_status(s)->code);
  twin_rpc_stream_destroy(s);

  double latency = -1;
  int found = 0;
  for (int tries = 0; tries < 400 && !found; tries++) {
    uint8_t *resp;
    size_t rlen;
    twin_rpc_status st;
    if (twin_rpc_unary(ch, SVC "LastCancel", NULL, 0, 5000, NULL, 0, &resp, &rlen, &st) == 0) {
      Twin__Test__V1__CancelReport *r = twin__test__v1__cancel_report__unpack(NULL, rlen, resp);
      free(resp);
      if (r && r->seen && r->seen_unix_us / 1e3 >= t_cancel - 1.0) {
        latency = r->seen_unix_us / 1e3 - t_cancel;
        found = 1;
      }
      if (r) twin__test__v1__cancel_report__free_unpacked(r, NULL);
      if (found) break;
    }
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
  printf("latency_ms=%.3f code=%s\n", latency, code);
  return 0;
}

static int scenario_deadline(twin_rpc_channel *ch, int ms) {
  Twin__Test__V1__SleepRequest req = TWIN__TEST__V1__SLEEP_REQUEST__INIT;
  req.ms = 3000;
  uint8_t buf[16];
  size_t len = twin__test__v1__sleep_request__pack(&req, buf);
  uint8_t *resp;
  size_t rlen;
  twin_rpc_status st;
  double t0 = wall_ms();
  int rc = twin_rpc_unary(ch, SVC "Sleep", buf, len, ms, NULL, 0, &resp, &rlen, &st);
  if (rc == 0) free(resp);
  printf("code=%s elapsed_ms=%.1f\n", twin_rpc_code_name(st.code), wall_ms() - t0);
  return 0;
}

static int scenario_whoami(twin_rpc_channel *ch, int k) {
  printf("servers=");
  for (int i = 0; i < k; i++) {
    Twin__Test__V1__EchoRequest req = TWIN__TEST__V1__ECHO_REQUEST__INIT;
    req.text = "who";
    uint8_t buf[32];
    size_t len = twin__test__v1__echo_request__pack(&req, buf);
    uint8_t *resp;
    size_t rlen;
    twin_rpc_status st;
    if (twin_rpc_unary(ch, SVC "Echo", buf, len, 5000, NULL, 0, &resp, &rlen, &st) != 0) {
      printf("%s%s", i ? "," : "", twin_rpc_code_name(st.code));
      continue;
    }
    Twin__Test__V1__EchoResponse *r = twin__test__v1__echo_response__unpack(NULL, rlen, resp);
    printf("%s%s", i ? "," : "", r ? r->server : "?");
    if (r) twin__test__v1__echo_response__free_unpacked(r, NULL);
    free(resp);
  }
  printf("\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rpc-testc TARGET health|unknown|count|merged|cancel|deadline|whoami [ARGS]\n");
    return 2;
  }
  twin_rpc_channel *ch;
  twin_err err;
  if (twin_rpc_channel_create(argv[1], NULL, &ch, &err) != 0) {
    fprintf(stderr, "rpc-testc: %s\n", err.msg);
    return 1;
  }
  const char *sc = argv[2];
  const char *a1 = argc > 3 ? argv[3] : "";
  const char *a2 = argc > 4 ? argv[4] : "0";
  int rc;
  if (strcmp(sc, "health") == 0) rc = scenario_health(ch, a1);
  else if (strcmp(sc, "unknown") == 0) rc = scenario_unknown(ch);
  else if (strcmp(sc, "count") == 0) rc = scenario_count(ch, SVC "Count", (unsigned)atoi(a1), (unsigned)atoi(a2));
  else if (strcmp(sc, "merged") == 0) rc = scenario_count(ch, SVC "CountMerged", (unsigned)atoi(a1), 0);
  else if (strcmp(sc, "cancel") == 0) rc = scenario_cancel(ch);
  else if (strcmp(sc, "deadline") == 0) rc = scenario_deadline(ch, atoi(a1));
  else if (strcmp(sc, "whoami") == 0) rc = scenario_whoami(ch, atoi(a1));
  else {
    fprintf(stderr, "rpc-testc: unknown scenario '%s'\n", sc);
    rc = 2;
  }
  fflush(stdout);
  twin_rpc_channel_destroy(ch);
  return rc;
}
