/* common/redis.c — the Redis connection helper over hiredis 0.14's blocking API (see redis.h):
 * URL parsing, connect with AUTH/SELECT, error classification (down, timeout, error reply),
 * non-blocking reconnection backoff (commands fail fast while Redis is down and a new connect
 * is tried once the doubling wait has passed) and pipelining. */
#include "common/redis.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/log.h"
#include "common/util.h"

struct twin_redis {
  twin_redis_options opts;
  twin_redis_url url;
  char desc[320];          /* the URL without password, for messages */
  redisContext *ctx;       /* NULL while disconnected */
  int backoff_ms;          /* wait after the last failed connect; 0 = none */
  int64_t next_attempt_ms; /* monotonic time before which no connect is tried */
  size_t pending;          /* pipelined commands appended, not yet read */
  char last_error[256];    /* why the last connect failed / the connection dropped */
  bool ever_connected;
};

/* ============================================================================================
 * URL parsing
 * ========================================================================================== */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into out[cap]. */
static int url_decode(const char *s, size_t n, char *out, size_t cap, const char *what, twin_err *err) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
      int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: bad percent escape in the %s", what);
      c = (char)(hi * 16 + lo);
      i += 2;
    }
    if (o + 1 >= cap) return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: the %s is too long", what);
    out[o++] = c;
  }
  out[o] = 0;
  return 0;
}

static int parse_userinfo(const char *s, size_t n, twin_redis_url *u, twin_err *err) {
  const char *colon = memchr(s, ':', n);
  if (!colon) return url_decode(s, n, u->user, sizeof u->user, "user", err);
  int rc = url_decode(s, (size_t)(colon - s), u->user, sizeof u->user, "user", err);
  if (rc != 0) return rc;
  return url_decode(colon + 1, n - (size_t)(colon + 1 - s), u->password, sizeof u->password,
                    "password", err);
}

static int parse_int_field(const char *s, size_t n, int lo, int hi, int *out, const char *what,
                           twin_err *err) {
  char tmp[16];
  int64_t v;
  if (n == 0 || n >= sizeof tmp)
    return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: bad %s '%.*s'", what, (int)n, s);
  memcpy(tmp, s, n);
  tmp[n] = 0;
  if (tmp[0] < '0' || tmp[0] > '9' || twin_parse_int64(tmp, &v, NULL) != 0 || v < lo || v > hi)
    return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: bad %s '%s' (expected %d..%d)", what, tmp, lo, hi);
  *out = (int)v;
  return 0;
}

/* "?db=N&password=P" of unix:// URLs. */
static int parse_unix_query(const char *q, twin_redis_url *u, twin_err *err) {
  while (*q) {
    const char *amp = strchr(q, '&');
    size_t len = amp ? (size_t)(amp - q) : strlen(q);
    const char *eq = memchr(q, '=', len);
    size_t klen = eq ? (size_t)(eq - q) : len;
    const char *val = eq ? eq + 1 : q + len;
    size_t vlen = (size_t)(q + len - val);
    int rc;
    if (klen == 2 && memcmp(q, "db", 2) == 0)
      rc = parse_int_field(val, vlen, 0, 1 << 20, &u->db, "database number", err);
    else if (klen == 8 && memcmp(q, "password", 8) == 0)
      rc = url_decode(val, vlen, u->password, sizeof u->password, "password", err);
    else
      rc = twin_err_set(err, TWIN_EINVAL, "REDIS_URL: unknown parameter '%.*s'", (int)klen, q);
    if (rc != 0) return rc;
    q += len + (amp ? 1 : 0);
  }
  return 0;
}

int twin_redis_parse_url(const char *url, twin_redis_url *u, twin_err *err) {
  memset(u, 0, sizeof *u);
  u->port = 6379;
  if (!url || !url[0]) return twin_err_set(err, TWIN_EINVAL, "REDIS_URL is empty");
  if (twin_str_has_prefix(url, "rediss://"))
    return twin_err_set(err, TWIN_EUNSUPPORTED, "REDIS_URL: TLS (rediss://) is not supported");

  if (twin_str_has_prefix(url, "unix://")) {
    const char *rest = url + 7;
    const char *slash = strchr(rest, '/');
    const char *at = strchr(rest, '@');
    if (at && (!slash || at < slash)) {
      int rc = parse_userinfo(rest, (size_t)(at - rest), u, err);
      if (rc != 0) return rc;
      rest = at + 1;
    }
    if (rest[0] != '/')
      return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: unix socket path must be absolute in '%s'", url);
    const char *q = strchr(rest, '?');
    size_t plen = q ? (size_t)(q - rest) : strlen(rest);
    if (plen >= sizeof u->unix_path)
      return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: unix socket path is too long");
    memcpy(u->unix_path, rest, plen);
    u->unix_path[plen] = 0;
    u->port = 0;
    return q ? parse_unix_query(q + 1, u, err) : 0;
  }

  if (!twin_str_has_prefix(url, "redis://"))
    return twin_err_set(err, TWIN_EINVAL, "REDIS_URL '%s' must start with redis:// or unix://", url);
  const char *auth = url + 8;
  const char *path = auth + strcspn(auth, "/?#");
  if (*path == '?' || *path == '#')
    return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: query parameters are not supported in '%s'", url);
  /* userinfo ends at the last '@' of the authority (passwords may contain '@' unescaped) */
  const char *at = NULL;
  for (const char *p = auth; p < path; p++)
    if (*p == '@') at = p;
  const char *hp = auth;
  if (at) {
    int rc = parse_userinfo(auth, (size_t)(at - auth), u, err);
    if (rc != 0) return rc;
    hp = at + 1;
  }
  const char *host_end, *port_start = NULL;
  if (*hp == '[') {
    const char *close = memchr(hp, ']', (size_t)(path - hp));
    if (!close) return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: unterminated '[' in '%s'", url);
    if (close + 1 < path && close[1] != ':')
      return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: junk after ']' in '%s'", url);
    if (close + 1 < path) port_start = close + 2;
    host_end = close;
    hp++;
  } else {
    const char *colon = memchr(hp, ':', (size_t)(path - hp));
    host_end = colon ? colon : path;
    if (colon) port_start = colon + 1;
  }
  size_t hlen = (size_t)(host_end - hp);
  if (hlen == 0) return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: no host in '%s'", url);
  if (hlen >= sizeof u->host) return twin_err_set(err, TWIN_EINVAL, "REDIS_URL: host name is too long");
  memcpy(u->host, hp, hlen);
  u->host[hlen] = 0;
  if (port_start) {
    int rc = parse_int_field(port_start, (size_t)(path - port_start), 1, 65535, &u->port, "port", err);
    if (rc != 0) return rc;
  }
  if (*path == '/' && path[1]) {
    int rc = parse_int_field(path + 1, strlen(path + 1), 0, 1 << 20, &u->db, "database number", err);
    if (rc != 0) return rc;
  }
  return 0;
}

void twin_redis_url_describe(const twin_redis_url *u, char *out, size_t cap) {
  if (u->unix_path[0]) {
    if (u->db) snprintf(out, cap, "unix://%s?db=%d", u->unix_path, u->db);
    else snprintf(out, cap, "unix://%s", u->unix_path);
  } else if (strchr(u->host, ':')) {
    snprintf(out, cap, "redis://[%s]:%d/%d", u->host, u->port, u->db);
  } else {
    snprintf(out, cap, "redis://%s:%d/%d", u->host, u->port, u->db);
  }
}

/* ============================================================================================
 * connecting
 * ========================================================================================== */

static struct timeval ms_to_tv(int ms) {
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  return tv;
}

static void drop_connection(twin_redis *r, const char *why) {
  if (!r->ctx) return;
  redisFree(r->ctx);
  r->ctx = NULL;
  r->pending = 0;
  r->backoff_ms = 0; /* the first reconnect after a drop is immediate */
  r->next_attempt_ms = 0;
  twin_strlcpy(r->last_error, why, sizeof r->last_error);
  LOG_WARN("redis %s: connection dropped: %s", r->desc, why);
}

static int connect_failed(twin_redis *r, int code, twin_err *err) {
  int next = r->backoff_ms ? r->backoff_ms * 2 : r->opts.backoff_initial_ms;
  r->backoff_ms = next > r->opts.backoff_max_ms ? r->opts.backoff_max_ms : next;
  r->next_attempt_ms = twin_time_mono_ms() + r->backoff_ms;
  return twin_err_set(err, code, "redis %s: cannot connect: %s", r->desc, r->last_error);
}

/* Runs AUTH or SELECT on a fresh context; fills r->last_error on failure. */
static bool setup_command(twin_redis *r, redisContext *c, int argc, const char **argv) {
  redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
  if (!rep) {
    snprintf(r->last_error, sizeof r->last_error, "%s: %s", argv[0], c->errstr);
    return false;
  }
  bool ok = rep->type != REDIS_REPLY_ERROR;
  if (!ok) snprintf(r->last_error, sizeof r->last_error, "%s rejected: %s", argv[0], rep->str);
  freeReplyObject(rep);
  return ok;
}

static int connect_now(twin_redis *r, twin_err *err) {
  if (r->ctx) return 0;
  r->pending = 0;
  struct timeval ctv = ms_to_tv(r->opts.connect_timeout_ms);
  redisContext *c = r->url.unix_path[0] ? redisConnectUnixWithTimeout(r->url.unix_path, ctv)
                                        : redisConnectWithTimeout(r->url.host, r->url.port, ctv);
  if (!c) {
    twin_strlcpy(r->last_error, "cannot allocate a hiredis context", sizeof r->last_error);
    return connect_failed(r, TWIN_EUNAVAILABLE, err);
  }
  if (c->err) {
    twin_strlcpy(r->last_error, c->errstr, sizeof r->last_error);
    redisFree(c);
    return connect_failed(r, TWIN_EUNAVAILABLE, err);
  }
  struct timeval ttv = ms_to_tv(r->opts.command_timeout_ms > 0 ? r->opts.command_timeout_ms : 0);
  if (redisSetTimeout(c, ttv) != REDIS_OK) {
    snprintf(r->last_error, sizeof r->last_error, "cannot set the command timeout: %s", c->errstr);
    redisFree(c);
    return connect_failed(r, TWIN_EUNAVAILABLE, err);
  }
  if (!r->url.unix_path[0]) redisEnableKeepAlive(c);
  bool ok = true;
  if (r->url.password[0]) {
    const char *auth_user[] = {"AUTH", r->url.user, r->url.password};
    const char *auth_pass[] = {"AUTH", r->url.password};
    ok = r->url.user[0] ? setup_command(r, c, 3, auth_user) : setup_command(r, c, 2, auth_pass);
  }
  if (ok && r->url.db) {
    char db[16];
    snprintf(db, sizeof db, "%d", r->url.db);
    const char *select[] = {"SELECT", db};
    ok = setup_command(r, c, 2, select);
  }
  if (!ok) {
    redisFree(c);
    return connect_failed(r, TWIN_EUNAVAILABLE, err);
  }
  r->ctx = c;
  r->backoff_ms = 0;
  r->next_attempt_ms = 0;
  LOG_INFO("redis %s: %s", r->desc, r->ever_connected ? "reconnected" : "connected");
  r->ever_connected = true;
  return 0;
}

static int ensure_connected(twin_redis *r, twin_err *err) {
  if (r->ctx) return 0;
  int64_t now = twin_time_mono_ms();
  if (now < r->next_attempt_ms)
    return twin_err_set(err, TWIN_EUNAVAILABLE, "redis %s is unavailable (%s); next connect in %lld ms",
                        r->desc, r->last_error, (long long)(r->next_attempt_ms - now));
  return connect_now(r, err);
}

int twin_redis_open(twin_redis **out, const twin_redis_options *opts, twin_err *err) {
  *out = NULL;
  twin_redis *r = calloc(1, sizeof *r);
  if (!r) return twin_err_set(err, TWIN_ENOMEM, "redis: out of memory");
  if (opts) r->opts = *opts;
  const char *url = r->opts.url ? r->opts.url : "redis://127.0.0.1:6379";
  r->opts.url = NULL; /* not kept: the parsed form is */
  if (!r->opts.connect_timeout_ms) r->opts.connect_timeout_ms = 2000;
  if (!r->opts.command_timeout_ms) r->opts.command_timeout_ms = 5000;
  if (r->opts.backoff_initial_ms <= 0) r->opts.backoff_initial_ms = 100;
  if (r->opts.backoff_max_ms <= 0) r->opts.backoff_max_ms = 5000;
  if (r->opts.backoff_max_ms < r->opts.backoff_initial_ms) r->opts.backoff_max_ms = r->opts.backoff_initial_ms;
  int rc = twin_redis_parse_url(url, &r->url, err);
  if (rc != 0) {
    free(r);
    return rc;
  }
  twin_redis_url_describe(&r->url, r->desc, sizeof r->desc);
  rc = connect_now(r, err);
  if (rc != 0) {
    if (r->opts.require_connection) {
      free(r);
      return rc;
    }
    LOG_WARN("%s; will retry", err ? err->msg : "redis: cannot connect");
    twin_err_clear(err);
  }
  *out = r;
  return 0;
}

void twin_redis_close(twin_redis *r) {
  if (!r) return;
  if (r->ctx) redisFree(r->ctx);
  free(r);
}

bool twin_redis_connected(const twin_redis *r) { return r->ctx != NULL; }

int twin_redis_connect(twin_redis *r, twin_err *err) { return connect_now(r, err); }

int twin_redis_wait_connected(twin_redis *r, int timeout_ms, twin_err *err) {
  int64_t deadline = timeout_ms < 0 ? INT64_MAX : twin_time_mono_ms() + timeout_ms;
  for (;;) {
    int64_t now = twin_time_mono_ms();
    if (now >= r->next_attempt_ms) {
      if (connect_now(r, err) == 0) return 0;
    }
    now = twin_time_mono_ms();
    if (now >= deadline)
      return twin_err_set(err, TWIN_EUNAVAILABLE, "redis %s: not reachable within %d ms: %s", r->desc,
                          timeout_ms, r->last_error);
    int64_t wake = r->next_attempt_ms < deadline ? r->next_attempt_ms : deadline;
    twin_sleep_ms(wake > now ? wake - now : 1);
  }
}

/* ============================================================================================
 * commands
 * ========================================================================================== */

/* The command's name for messages: the first word, printable, at most 32 bytes. */
static void command_name(const char *s, size_t n, char out[40]) {
  size_t k = 0;
  for (size_t i = 0; i < n && k < 32; i++) {
    char c = s[i];
    if (c == ' ' || c == '\t' || c == 0) break;
    out[k++] = (c > 32 && c < 127) ? c : '?';
  }
  out[k] = 0;
}

/* Classifies a failed read/write on the context, drops it, and sets err. */
static int io_failure(twin_redis *r, const char *cmd, int saved_errno, twin_err *err) {
  bool timeout = r->ctx->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK ||
                                                 saved_errno == ETIMEDOUT);
  int code = timeout ? TWIN_ETIMEOUT
             : (r->ctx->err == REDIS_ERR_PROTOCOL || r->ctx->err == REDIS_ERR_OOM) ? TWIN_EINTERNAL
                                                                                   : TWIN_EUNAVAILABLE;
  char why[256];
  if (timeout) snprintf(why, sizeof why, "no reply within %d ms", r->opts.command_timeout_ms);
  else twin_strlcpy(why, r->ctx->errstr[0] ? r->ctx->errstr : "connection lost", sizeof why);
  drop_connection(r, why);
  return twin_err_set(err, code, "redis %s: %s: %s", r->desc, cmd, why);
}

/* Turns an error reply into TWIN_EINVAL (freeing it); other replies pass through. */
static int check_reply(twin_redis *r, const char *cmd, redisReply *rep, redisReply **out, twin_err *err) {
  if (rep->type == REDIS_REPLY_ERROR) {
    int rc = twin_err_set(err, TWIN_EINVAL, "redis %s: %s: error reply: %.*s", r->desc, cmd,
                          (int)rep->len, rep->str);
    freeReplyObject(rep);
    return rc;
  }
  *out = rep;
  return 0;
}

static int vcommand(twin_redis *r, redisReply **reply, twin_err *err, const char *fmt, va_list ap) {
  *reply = NULL;
  char cmd[40];
  command_name(fmt, strlen(fmt), cmd);
  if (r->pending)
    return twin_err_set(err, TWIN_EINVAL, "redis: %s while %zu pipelined commands are unread", cmd, r->pending);
  int rc = ensure_connected(r, err);
  if (rc != 0) return twin_err_wrap(err, "%s", cmd);
  errno = 0;
  redisReply *rep = redisvCommand(r->ctx, fmt, ap);
  int saved_errno = errno;
  if (!rep) return io_failure(r, cmd, saved_errno, err);
  return check_reply(r, cmd, rep, reply, err);
}

int twin_redis_command(twin_redis *r, redisReply **reply, twin_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = vcommand(r, reply, err, fmt, ap);
  va_end(ap);
  return rc;
}

int twin_redis_command_argv(twin_redis *r, int argc, const char *const *argv, const size_t *lens,
                            redisReply **reply, twin_err *err) {
  *reply = NULL;
  if (argc < 1 || !argv || !argv[0]) return twin_err_set(err, TWIN_EINVAL, "redis: empty command");
  char cmd[40];
  command_name(argv[0], lens ? lens[0] : strlen(argv[0]), cmd);
  if (r->pending)
    return twin_err_set(err, TWIN_EINVAL, "redis: %s while %zu pipelined commands are unread", cmd, r->pending);
  int rc = ensure_connected(r, err);
  if (rc != 0) return twin_err_wrap(err, "%s", cmd);
  errno = 0;
  redisReply *rep = redisCommandArgv(r->ctx, argc, (const char **)argv, lens);
  int saved_errno = errno;
  if (!rep) return io_failure(r, cmd, saved_errno, err);
  return check_reply(r, cmd, rep, reply, err);
}

bool twin_redis_error_is(const twin_err *err, const char *prefix) {
  if (!err || err->code != TWIN_EINVAL) return false;
  const char *p = strstr(err->msg, ": error reply: ");
  return p && twin_str_has_prefix(p + strlen(": error reply: "), prefix);
}

/* ============================================================================================
 * pipelining
 * ========================================================================================== */

int twin_redis_append_argv(twin_redis *r, int argc, const char *const *argv, const size_t *lens,
                           twin_err *err) {
  if (argc < 1 || !argv || !argv[0]) return twin_err_set(err, TWIN_EINVAL, "redis: empty command");
  int rc = ensure_connected(r, err);
  if (rc != 0) return rc;
  if (redisAppendCommandArgv(r->ctx, argc, (const char **)argv, lens) != REDIS_OK)
    return twin_err_set(err, TWIN_ENOMEM, "redis %s: cannot buffer a pipelined command", r->desc);
  r->pending++;
  return 0;
}

int twin_redis_append(twin_redis *r, twin_err *err, const char *fmt, ...) {
  int rc = ensure_connected(r, err);
  if (rc != 0) return rc;
  va_list ap;
  va_start(ap, fmt);
  int ok = redisvAppendCommand(r->ctx, fmt, ap);
  va_end(ap);
  if (ok != REDIS_OK)
    return twin_err_set(err, TWIN_EINVAL, "redis %s: cannot format pipelined command '%s'", r->desc, fmt);
  r->pending++;
  return 0;
}

size_t twin_redis_pending(const twin_redis *r) { return r->pending; }

void twin_redis_free_replies(redisReply **replies, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (replies[i]) freeReplyObject(replies[i]);
    replies[i] = NULL;
  }
}

int twin_redis_pipeline_read(twin_redis *r, redisReply **replies, size_t n, twin_err *err) {
  for (size_t i = 0; i < n; i++) replies[i] = NULL;
  if (n != r->pending)
    return twin_err_set(err, TWIN_EINVAL, "redis: reading %zu replies but %zu commands are pending", n,
                        r->pending);
  if (!r->ctx)
    return twin_err_set(err, TWIN_EUNAVAILABLE, "redis %s: pipeline: connection lost", r->desc);
  for (size_t i = 0; i < n; i++) {
    void *rep = NULL;
    errno = 0;
    if (redisGetReply(r->ctx, &rep) != REDIS_OK || !rep) {
      int saved_errno = errno;
      if (rep) freeReplyObject(rep);
      twin_redis_free_replies(replies, i);
      char what[48];
      snprintf(what, sizeof what, "pipeline reply %zu of %zu", i + 1, n);
      return io_failure(r, what, saved_errno, err); /* also discards the pending count */
    }
    replies[i] = rep;
  }
  r->pending = 0;
  return 0;
}
