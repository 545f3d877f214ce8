/* tests/bench/rpc_bench.c — loopback figures for the gRPC runtime with our C client against
 * rpc-testd: streamed messages per second (one stream of N small messages) and unary round-trip
 * latency (p50/p99 over N sequential Echo calls). Prints one line per figure.
 * Usage: rpc-bench TARGET [STREAM_N] [UNARY_N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/rpc/client.h"
#include "proto/test.pb-c.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: rpc-bench TARGET [STREAM_N] [UNARY_N]\n");
    return 2;
  }
  unsigned stream_n = argc > 2 ? (unsigned)atoi(argv[2]) : 200000;
  int unary_n = argc > 3 ? atoi(argv[3]) : 5000;
  twin_rpc_channel *ch;
  twin_err err;
  if (twin_rpc_channel_create(argv[1], NULL, &ch, &err) != 0) {
    fprintf(stderr, "rpc-bench: %s\n", err.msg);
    return 1;
  }
  twin_rpc_channel_wait_ready(ch, 5000);

  /* ---- stream ---- */
  Twin__Test__V1__CountRequest req = TWIN__TEST__V1__COUNT_REQUEST__INIT;
  req.n = stream_n;
  req.payload = 32;
  uint8_t buf[64];
  size_t len = twin__test__v1__count_request__pack(&req, buf);
  for (int round = 0; round < 2; round++) { /* round 0 warms up */
    twin_rpc_stream *s;
    if (twin_rpc_stream_start(ch, "/twin.test.v1.TestService/Count", buf, len, 120000, NULL, 0, &s, &err)) {
      fprintf(stderr, "rpc-bench: %s\n", err.msg);
      return 1;
    }
    double t0 = now_s();
    unsigned got = 0;
    uint8_t *msg;
    size_t mlen;
    while (twin_rpc_stream_next(s, &msg, &mlen) == 1) {
      got++;
      free(msg);
    }
    double dt = now_s() - t0;
    twin_rpc_stream_destroy(s);
    if (round == 1)
      printf("c-client stream: %u messages in %.3f s = %.0f msg/s\n", got, dt, got / dt);
  }

  /* ---- unary ---- */
  double *lat = malloc(sizeof(double) * (size_t)unary_n);
  Twin__Test__V1__EchoRequest er = TWIN__TEST__V1__ECHO_REQUEST__INIT;
  er.text = "ping";
  len = twin__test__v1__echo_request__pack(&er, buf);
  for (int i = -200; i < unary_n; i++) { /* 200 warm-up calls */
    uint8_t *resp;
    size_t rlen;
    twin_rpc_status st;
    double t0 = now_s();
    if (twin_rpc_unary(ch, "/twin.test.v1.TestService/Echo", buf, len, 5000, NULL, 0, &resp, &rlen, &st)) {
      fprintf(stderr, "rpc-bench: Echo failed: %s %s\n", twin_rpc_code_name(st.code), st.message);
      return 1;
    }
    free(resp);
    if (i >= 0) lat[i] = (now_s() - t0) * 1e6;
  }
  qsort(lat, (size_t)unary_n, sizeof *lat, cmp_double);
  printf("c-client unary: %d calls, p50 %.0f us, p99 %.0f us\n", unary_n, lat[unary_n / 2],
         lat[(int)(unary_n * 0.99)]);
  free(lat);
  twin_rpc_channel_destroy(ch);
  return 0;
}
