/* tests/unit/test_common_redis.c — common/redis against real redis-server processes started on
 * free loopback ports (and a unix socket): URL parsing, commands and error replies, SELECT and
 * AUTH (password and ACL user), a command timeout, TWIN_EUNAVAILABLE while the server is down
 * with a capped backoff between connects, reconnection after a restart, and pipelining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/redis.h"
#include "common/util.h"

/* ============================================================================================
 * a redis-server child process
 * ========================================================================================== */

typedef struct server {
  pid_t pid;
  int port;
  char dir[64];
  char sock[128];
  const char *extra[12]; /* more "--name value..." arguments */
} server;

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

/* True once the server answers anything on its port (a NOAUTH error counts). */
static bool server_answers(int port) {
  struct timeval tv = {0, 200000};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
  bool ok = false;
  if (c && !c->err) {
    redisReply *r = redisCommand(c, "PING");
    ok = r != NULL;
    if (r) freeReplyObject(r);
  }
  if (c) redisFree(c);
  return ok;
}

static void server_start(server *s) {
  char port[16];
  snprintf(port, sizeof port, "%d", s->port);
  const char *argv[32] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", s->dir, "--unixsocket", s->sock,
                          "--unixsocketperm", "700"};
  int argc = 15;
  for (int i = 0; i < 12 && s->extra[i]; i++) argv[argc++] = s->extra[i];
  argv[argc] = NULL;
  s->pid = fork();
  assert_true(s->pid >= 0);
  if (s->pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execvp("redis-server", (char *const *)argv);
    _exit(127);
  }
  for (int i = 0; i < 250; i++) {
    if (server_answers(s->port)) return;
    int status;
    if (waitpid(s->pid, &status, WNOHANG) == s->pid) fail_msg("redis-server exited at start-up");
    twin_sleep_ms(20);
  }
  fail_msg("redis-server on port %d did not answer within 5 s", s->port);
}

static void server_kill(server *s) {
  if (s->pid <= 0) return;
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = 0;
}

static int setup(void **state) {
  if (access("/usr/bin/redis-server", X_OK) != 0 && system("command -v redis-server >/dev/null") != 0) {
    fprintf(stderr, "redis-server not installed\n");
    return -1;
  }
  server *s = calloc(1, sizeof *s);
  snprintf(s->dir, sizeof s->dir, "/tmp/twin_redis_XXXXXX");
  assert_non_null(mkdtemp(s->dir));
  snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
  s->port = free_port();
  *state = s;
  return 0;
}

static int teardown(void **state) {
  server *s = *state;
  server_kill(s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
  assert_int_equal(system(cmd), 0);
  free(s);
  return 0;
}

static twin_redis *open_url(const char *url, twin_err *err) {
  twin_redis_options o = {.url = url, .command_timeout_ms = 2000, .require_connection = true};
  twin_redis *r = NULL;
  assert_int_equal(twin_redis_open(&r, &o, err), 0);
  return r;
}

static void tcp_url(const server *s, const char *auth, int db, char *out, size_t cap) {
  snprintf(out, cap, "redis://%s127.0.0.1:%d/%d", auth ? auth : "", s->port, db);
}

/* ============================================================================================
 * URL parsing
 * ========================================================================================== */

static void test_parse_url(void **state) {
  (void)state;
  twin_redis_url u;
  twin_err err = {0};
  assert_int_equal(twin_redis_parse_url("redis://localhost", &u, &err), 0);
  assert_string_equal(u.host, "localhost");
  assert_int_equal(u.port, 6379);
  assert_int_equal(u.db, 0);
  assert_string_equal(u.password, "");
  assert_int_equal(twin_redis_parse_url("redis://:p%40ss:w@redis.svc:6380/2", &u, &err), 0);
  assert_string_equal(u.host, "redis.svc");
  assert_int_equal(u.port, 6380);
  assert_int_equal(u.db, 2);
  assert_string_equal(u.user, "");
  assert_string_equal(u.password, "p@ss:w");
  assert_int_equal(twin_redis_parse_url("redis://app:pw@r@h/", &u, &err), 0); /* last '@' ends userinfo */
  assert_string_equal(u.user, "app");
  assert_string_equal(u.password, "pw@r");
  assert_string_equal(u.host, "h");
  assert_int_equal(twin_redis_parse_url("redis://[::1]:7000/1", &u, &err), 0);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 7000);
  assert_int_equal(u.db, 1);
  assert_int_equal(twin_redis_parse_url("unix:///run/redis.sock?db=4", &u, &err), 0);
  assert_string_equal(u.unix_path, "/run/redis.sock");
  assert_string_equal(u.host, "");
  assert_int_equal(u.db, 4);
  assert_int_equal(twin_redis_parse_url("unix://:secret@/run/r.sock", &u, &err), 0);
  assert_string_equal(u.unix_path, "/run/r.sock");
  assert_string_equal(u.password, "secret");
  char d[128];
  assert_int_equal(twin_redis_parse_url("redis://u:secret@h:1/3", &u, &err), 0);
  twin_redis_url_describe(&u, d, sizeof d);
  assert_string_equal(d, "redis://h:1/3");

  static const struct { const char *url; int code; const char *msg; } bad[] = {
      {"", TWIN_EINVAL, "REDIS_URL is empty"},
      {"http://h", TWIN_EINVAL, "REDIS_URL 'http://h' must start with redis:// or unix://"},
      {"rediss://h", TWIN_EUNSUPPORTED, "REDIS_URL: TLS (rediss://) is not supported"},
      {"redis://h:0", TWIN_EINVAL, "REDIS_URL: bad port '0' (expected 1..65535)"},
      {"redis://h:99999", TWIN_EINVAL, "REDIS_URL: bad port '99999' (expected 1..65535)"},
      {"redis://h:x", TWIN_EINVAL, "REDIS_URL: bad port 'x' (expected 1..65535)"},
      {"redis://h/db", TWIN_EINVAL, "REDIS_URL: bad database number 'db' (expected 0..1048576)"},
      {"redis://h/-1", TWIN_EINVAL, "REDIS_URL: bad database number '-1' (expected 0..1048576)"},
      {"redis://:pw@/0", TWIN_EINVAL, "REDIS_URL: no host in 'redis://:pw@/0'"},
      {"redis://:p%zz@h", TWIN_EINVAL, "REDIS_URL: bad percent escape in the password"},
      {"redis://h?timeout=1", TWIN_EINVAL, "REDIS_URL: query parameters are not supported in 'redis://h?timeout=1'"},
      {"unix://relative.sock", TWIN_EINVAL, "REDIS_URL: unix socket path must be absolute in 'unix://relative.sock'"},
      {"unix:///r.sock?bogus=1", TWIN_EINVAL, "REDIS_URL: unknown parameter 'bogus'"},
      {"redis://[::1", TWIN_EINVAL, "REDIS_URL: unterminated '[' in 'redis://[::1'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    twin_err_clear(&err);
    int rc = twin_redis_parse_url(bad[i].url, &u, &err);
    if (rc != bad[i].code || strcmp(err.msg, bad[i].msg) != 0)
      fail_msg("'%s': rc %d, message '%s'", bad[i].url, rc, err.msg);
  }
}

/* ============================================================================================
 * commands
 * ========================================================================================== */

static void test_commands(void **state) {
  server *s = *state;
  server_start(s);
  char url[128];
  tcp_url(s, NULL, 0, url, sizeof url);
  twin_err err = {0};
  twin_redis *r = open_url(url, &err);
  assert_true(twin_redis_connected(r));
  redisReply *rep = NULL;

  assert_int_equal(twin_redis_command(r, &rep, &err, "SET %s %s", "greeting", "hello"), 0);
  assert_int_equal(rep->type, REDIS_REPLY_STATUS);
  assert_string_equal(rep->str, "OK");
  freeReplyObject(rep);
  assert_int_equal(twin_redis_command(r, &rep, &err, "GET %s", "greeting"), 0);
  assert_int_equal(rep->type, REDIS_REPLY_STRING);
  assert_string_equal(rep->str, "hello");
  freeReplyObject(rep);

  /* binary-safe argv */
  const char value[] = {'a', 0, 'b', (char)0xff};
  const char *argv[] = {"SET", "bin", value};
  const size_t lens[] = {3, 3, sizeof value};
  assert_int_equal(twin_redis_command_argv(r, 3, argv, lens, &rep, &err), 0);
  freeReplyObject(rep);
  const char *get[] = {"GET", "bin"};
  assert_int_equal(twin_redis_command_argv(r, 2, get, NULL, &rep, &err), 0);
  assert_int_equal(rep->len, sizeof value);
  assert_memory_equal(rep->str, value, sizeof value);
  freeReplyObject(rep);

  assert_int_equal(twin_redis_command(r, &rep, &err, "INCRBY counter 41"), 0);
  freeReplyObject(rep);
  assert_int_equal(twin_redis_command(r, &rep, &err, "INCR counter"), 0);
  assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
  assert_int_equal(rep->integer, 42);
  freeReplyObject(rep);

  /* error replies are errors, named */
  assert_int_equal(twin_redis_command(r, &rep, &err, "LPUSH alist x"), 0);
  freeReplyObject(rep);
  assert_int_equal(twin_redis_command(r, &rep, &err, "INCR alist"), TWIN_EINVAL);
  assert_null(rep);
  assert_true(twin_redis_error_is(&err, "WRONGTYPE"));
  assert_false(twin_redis_error_is(&err, "BUSYGROUP"));
  char want[128];
  snprintf(want, sizeof want, "redis redis://127.0.0.1:%d/0: INCR: error reply: WRONGTYPE", s->port);
  assert_true(twin_str_has_prefix(err.msg, want));
  assert_int_equal(twin_redis_command(r, &rep, &err, "XGROUP CREATE traces g $ MKSTREAM"), 0);
  freeReplyObject(rep);
  assert_int_equal(twin_redis_command(r, &rep, &err, "XGROUP CREATE traces g $ MKSTREAM"), TWIN_EINVAL);
  assert_true(twin_redis_error_is(&err, "BUSYGROUP"));
  /* the connection is still fine after error replies */
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), 0);
  freeReplyObject(rep);
  assert_int_equal(twin_redis_command_argv(r, 0, argv, NULL, &rep, &err), TWIN_EINVAL);
  twin_redis_close(r);
}

static void test_select_db_and_unix_socket(void **state) {
  server *s = *state;
  server_start(s);
  char url[160];
  tcp_url(s, NULL, 3, url, sizeof url);
  twin_err err = {0};
  twin_redis *r = open_url(url, &err);
  redisReply *rep;
  assert_int_equal(twin_redis_command(r, &rep, &err, "SET where db3"), 0);
  freeReplyObject(rep);
  twin_redis_close(r);

  /* the unix socket, db 0: the key is not there; with ?db=3 it is */
  snprintf(url, sizeof url, "unix://%s", s->sock);
  r = open_url(url, &err);
  assert_int_equal(twin_redis_command(r, &rep, &err, "EXISTS where"), 0);
  assert_int_equal(rep->integer, 0);
  freeReplyObject(rep);
  twin_redis_close(r);
  snprintf(url, sizeof url, "unix://%s?db=3", s->sock);
  r = open_url(url, &err);
  assert_int_equal(twin_redis_command(r, &rep, &err, "GET where"), 0);
  assert_string_equal(rep->str, "db3");
  freeReplyObject(rep);
  twin_redis_close(r);
}

static void test_auth(void **state) {
  server *s = *state;
  s->extra[0] = "--requirepass";
  s->extra[1] = "s3cret";
  const char *user[] = {"--user", "app", "on", ">app-pw", "~*", "&*", "+@all"};
  for (int i = 0; i < 7; i++) s->extra[2 + i] = user[i];
  server_start(s);
  char url[160];
  twin_err err = {0};
  redisReply *rep;

  tcp_url(s, ":s3cret@", 0, url, sizeof url);
  twin_redis *r = open_url(url, &err);
  assert_int_equal(twin_redis_command(r, &rep, &err, "ACL WHOAMI"), 0);
  assert_string_equal(rep->str, "default");
  freeReplyObject(rep);
  twin_redis_close(r);

  tcp_url(s, "app:app-pw@", 1, url, sizeof url);
  r = open_url(url, &err);
  assert_int_equal(twin_redis_command(r, &rep, &err, "ACL WHOAMI"), 0);
  assert_string_equal(rep->str, "app");
  freeReplyObject(rep);
  twin_redis_close(r);

  /* a wrong password fails the connect, saying why */
  tcp_url(s, ":wrong@", 0, url, sizeof url);
  twin_redis_options o = {.url = url, .require_connection = true};
  r = NULL;
  assert_int_equal(twin_redis_open(&r, &o, &err), TWIN_EUNAVAILABLE);
  assert_null(r);
  assert_non_null(strstr(err.msg, "AUTH rejected: WRONGPASS"));
  assert_null(strstr(err.msg, "wrong")); /* the password is not in the message */

  /* no password at all: commands are refused by the server */
  tcp_url(s, NULL, 0, url, sizeof url);
  r = open_url(url, &err);
  assert_int_equal(twin_redis_command(r, &rep, &err, "GET x"), TWIN_EINVAL);
  assert_true(twin_redis_error_is(&err, "NOAUTH"));
  twin_redis_close(r);
}

static void test_command_timeout(void **state) {
  server *s = *state;
  server_start(s);
  char url[128];
  tcp_url(s, NULL, 0, url, sizeof url);
  twin_redis_options o = {.url = url, .command_timeout_ms = 300, .require_connection = true};
  twin_err err = {0};
  twin_redis *r;
  assert_int_equal(twin_redis_open(&r, &o, &err), 0);
  redisReply *rep;
  int64_t t0 = twin_time_mono_ms();
  assert_int_equal(twin_redis_command(r, &rep, &err, "BLPOP nothing-here 10"), TWIN_ETIMEOUT);
  int64_t waited = twin_time_mono_ms() - t0;
  assert_true(waited >= 250 && waited < 5000);
  assert_null(rep);
  assert_non_null(strstr(err.msg, "BLPOP: no reply within 300 ms"));
  assert_false(twin_redis_connected(r)); /* dropped: a late reply would desynchronise it */
  /* the next command reconnects at once and gets its own answer */
  assert_int_equal(twin_redis_command(r, &rep, &err, "ECHO %s", "fresh"), 0);
  assert_string_equal(rep->str, "fresh");
  freeReplyObject(rep);
  twin_redis_close(r);
}

static void test_down_and_reconnect(void **state) {
  server *s = *state;
  server_start(s);
  char url[128];
  tcp_url(s, NULL, 0, url, sizeof url);
  twin_redis_options o = {.url = url, .command_timeout_ms = 1000, .backoff_initial_ms = 50,
                          .backoff_max_ms = 200, .require_connection = true};
  twin_err err = {0};
  twin_redis *r;
  assert_int_equal(twin_redis_open(&r, &o, &err), 0);
  redisReply *rep;
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), 0);
  freeReplyObject(rep);

  server_kill(s);
  /* the dropped connection, then refused connects: TWIN_EUNAVAILABLE each time */
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), TWIN_EUNAVAILABLE);
  assert_null(rep);
  assert_false(twin_redis_connected(r));
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), TWIN_EUNAVAILABLE);
  assert_non_null(strstr(err.msg, "cannot connect"));
  /* inside the backoff wait a command fails at once, without trying */
  int64_t t0 = twin_time_mono_us();
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), TWIN_EUNAVAILABLE);
  assert_true(twin_time_mono_us() - t0 < 20000);
  assert_non_null(strstr(err.msg, "next connect in"));

  /* over 1.5 s of constant calls, connects are tried only at the backoff pace
   * (waits of 50, 100, then 200 ms: about 9 tries, not hundreds) */
  int attempts = 0, calls = 0;
  int64_t end = twin_time_mono_ms() + 1500;
  while (twin_time_mono_ms() < end) {
    assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), TWIN_EUNAVAILABLE);
    if (!strstr(err.msg, "next connect in")) attempts++;
    else {
      const char *p = strstr(err.msg, "next connect in ");
      long wait_ms = strtol(p + strlen("next connect in "), NULL, 10);
      assert_true(wait_ms >= 0 && wait_ms <= 200); /* capped */
    }
    calls++;
    twin_sleep_ms(2);
  }
  print_message("connect attempts while down: %d in %d calls over 1.5 s\n", attempts, calls);
  assert_true(calls > 100);
  assert_true(attempts >= 4 && attempts <= 20);

  /* pipelines fail the same way */
  twin_sleep_ms(250);
  assert_int_equal(twin_redis_append(r, &err, "PING"), TWIN_EUNAVAILABLE);
  assert_int_equal(twin_redis_pending(r), 0);

  /* back up on the same port: wait_connected gets there, and commands work again */
  server_start(s);
  assert_int_equal(twin_redis_wait_connected(r, 5000, &err), 0);
  assert_true(twin_redis_connected(r));
  assert_int_equal(twin_redis_command(r, &rep, &err, "SET after restart"), 0);
  freeReplyObject(rep);
  assert_int_equal(twin_redis_command(r, &rep, &err, "GET after"), 0);
  assert_string_equal(rep->str, "restart");
  freeReplyObject(rep);

  /* and a restart noticed by a command rather than wait_connected */
  server_kill(s);
  server_start(s);
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), TWIN_EUNAVAILABLE); /* the stale one */
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), 0);                 /* reconnected */
  freeReplyObject(rep);
  twin_redis_close(r);
}

static void test_open_while_down(void **state) {
  server *s = *state;
  char url[128];
  tcp_url(s, NULL, 0, url, sizeof url);
  twin_err err = {0};
  twin_redis *r = NULL;
  twin_redis_options strict = {.url = url, .require_connection = true};
  assert_int_equal(twin_redis_open(&r, &strict, &err), TWIN_EUNAVAILABLE);
  assert_null(r);
  char want[96];
  snprintf(want, sizeof want, "redis redis://127.0.0.1:%d/0: cannot connect: ", s->port);
  assert_true(twin_str_has_prefix(err.msg, want));

  twin_redis_options lazy = {.url = url, .backoff_initial_ms = 20};
  assert_int_equal(twin_redis_open(&r, &lazy, &err), 0);
  assert_false(twin_redis_connected(r));
  assert_int_equal(twin_redis_wait_connected(r, 100, &err), TWIN_EUNAVAILABLE);
  server_start(s);
  assert_int_equal(twin_redis_wait_connected(r, 5000, &err), 0);
  redisReply *rep;
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), 0);
  assert_string_equal(rep->str, "PONG");
  freeReplyObject(rep);
  twin_redis_close(r);
  /* a bad URL is an error whatever require_connection says */
  lazy.url = "redis://h:bad";
  assert_int_equal(twin_redis_open(&r, &lazy, &err), TWIN_EINVAL);
}

static void test_pipeline(void **state) {
  server *s = *state;
  server_start(s);
  char url[128];
  tcp_url(s, NULL, 0, url, sizeof url);
  twin_err err = {0};
  twin_redis *r = open_url(url, &err);
  enum { N = 1000 };
  for (int i = 0; i < N; i++) {
    char key[32], val[32];
    snprintf(key, sizeof key, "chunk:%d", i);
    snprintf(val, sizeof val, "text %d", i);
    const char *argv[] = {"SET", key, val};
    assert_int_equal(twin_redis_append_argv(r, 3, argv, NULL, &err), 0);
  }
  assert_int_equal(twin_redis_append(r, &err, "GET chunk:%d", 777), 0);
  assert_int_equal(twin_redis_append(r, &err, "INCR chunk:%d", 1), 0); /* an error reply */
  assert_int_equal(twin_redis_pending(r), N + 2);

  redisReply *rep;
  assert_int_equal(twin_redis_command(r, &rep, &err, "PING"), TWIN_EINVAL); /* pipeline unread */
  redisReply **replies = calloc(N + 2, sizeof *replies);
  assert_int_equal(twin_redis_pipeline_read(r, replies, N, &err), TWIN_EINVAL);
  assert_string_equal(err.msg, "redis: reading 1000 replies but 1002 commands are pending");
  assert_int_equal(twin_redis_pipeline_read(r, replies, N + 2, &err), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(replies[i]->type, REDIS_REPLY_STATUS);
    assert_string_equal(replies[i]->str, "OK");
  }
  assert_string_equal(replies[N]->str, "text 777");
  assert_int_equal(replies[N + 1]->type, REDIS_REPLY_ERROR);
  assert_int_equal(twin_redis_pending(r), 0);
  twin_redis_free_replies(replies, N + 2);
  assert_null(replies[0]);
  free(replies);

  assert_int_equal(twin_redis_command(r, &rep, &err, "DBSIZE"), 0);
  assert_int_equal(rep->integer, N);
  freeReplyObject(rep);
  twin_redis_close(r);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_url),
      cmocka_unit_test_setup_teardown(test_commands, setup, teardown),
      cmocka_unit_test_setup_teardown(test_select_db_and_unix_socket, setup, teardown),
      cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_command_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_down_and_reconnect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_while_down, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
