/* common/redis.h — one Redis connection over hiredis 0.14 (synchronous API): REDIS_URL
 * parsing, connect/command timeouts, AUTH and SELECT on every (re)connect, reconnection with
 * capped exponential backoff, commands returning the redisReply, and pipelining.
 * Threads: a twin_redis is NOT thread-safe (no internal mutex): use one per thread, or guard
 * it with your own mutex for the whole command (or the whole pipeline). */
#ifndef TWIN_COMMON_REDIS_H
#define TWIN_COMMON_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* ---- REDIS_URL ----------------------------------------------------------------------------
 * redis://[[user]:password@]host[:port][/db]   (host may be [v6addr]; user/password may be
 *                                                percent-encoded; port 6379 and db 0 by default)
 * unix:///path/to/redis.sock[?db=N]             (also unix://:password@/path.sock)
 * rediss:// (TLS) is TWIN_EUNSUPPORTED. */
typedef struct twin_redis_url {
  char host[256];      /* empty for unix sockets */
  int port;
  char unix_path[108]; /* empty for TCP */
  char user[128];      /* empty = no user (AUTH password only, or no AUTH) */
  char password[256];  /* empty = no AUTH */
  int db;
} twin_redis_url;

int twin_redis_parse_url(const char *url, twin_redis_url *out, twin_err *err);
/* "redis://host:6379/0" or "unix:///p.sock" without the password, for logs and messages. */
void twin_redis_url_describe(const twin_redis_url *u, char *out, size_t cap);

/* ---- the connection ------------------------------------------------------------------------ */
typedef struct twin_redis_options {
  const char *url;           /* REDIS_URL; NULL = "redis://127.0.0.1:6379" */
  int connect_timeout_ms;    /* 0 = 2000 */
  int command_timeout_ms;    /* per read/write of a command; 0 = 5000; < 0 = none */
  int backoff_initial_ms;    /* first wait before retrying a failed connect; 0 = 100 */
  int backoff_max_ms;        /* cap of the doubling wait; 0 = 5000 */
  bool require_connection;   /* open fails (TWIN_EUNAVAILABLE) when the first connect fails */
} twin_redis_options;

typedef struct twin_redis twin_redis;

/* Parses the URL and connects once. With require_connection false, a failed first connect
 * still yields an object (commands reconnect later); with it true, it is an error.
 * TWIN_EINVAL / TWIN_EUNSUPPORTED for a bad URL. opts is copied. */
int twin_redis_open(twin_redis **out, const twin_redis_options *opts, twin_err *err);
void twin_redis_close(twin_redis *r);

/* Whether a connection is currently up (no I/O). */
bool twin_redis_connected(const twin_redis *r);
/* Connects now if not connected, ignoring the backoff wait. */
int twin_redis_connect(twin_redis *r, twin_err *err);
/* Retries connecting (sleeping the backoff between attempts) until connected or timeout_ms
 * passes (TWIN_EUNAVAILABLE); timeout_ms < 0 waits forever. For start-up and consumer loops. */
int twin_redis_wait_connected(twin_redis *r, int timeout_ms, twin_err *err);

/* ---- commands --------------------------------------------------------------------------------
 * On success *reply is the reply (caller frees it with freeReplyObject). Errors, with *reply
 * NULL:
 *   TWIN_EUNAVAILABLE  no connection: Redis is down, the connect failed, or the connection
 *                      dropped during the command. While down, commands fail at once; a new
 *                      connect is tried when the backoff wait (doubling from backoff_initial_ms
 *                      to backoff_max_ms) has passed. The first command after a drop retries
 *                      the connect immediately. A command that failed mid-way is not resent
 *                      (it may have run).
 *   TWIN_ETIMEOUT      no answer within command_timeout_ms (the connection is then dropped, as
 *                      the late reply would desynchronise it).
 *   TWIN_EINVAL        Redis answered with an error reply; the message holds its text
 *                      (test it with twin_redis_error_is).
 * Messages name the command and the server ("redis 127.0.0.1:6379: GET: ..."). */
int twin_redis_command(twin_redis *r, redisReply **reply, twin_err *err, const char *fmt, ...);
/* argv[0..argc) with lengths (lens NULL = strlen of each). Binary-safe. */
int twin_redis_command_argv(twin_redis *r, int argc, const char *const *argv, const size_t *lens,
                            redisReply **reply, twin_err *err);
/* True when err holds an error reply starting with prefix ("BUSYGROUP", "NOSCRIPT", ...). */
bool twin_redis_error_is(const twin_err *err, const char *prefix);

/* ---- pipelining ------------------------------------------------------------------------------
 * Append N commands (buffered locally, nothing is sent yet), then twin_redis_pipeline_read
 * sends them all and reads the N replies in order. Error replies come back as
 * REDIS_REPLY_ERROR replies in the array (not as a failure). If the connection fails the whole
 * pipeline fails (TWIN_EUNAVAILABLE / TWIN_ETIMEOUT); which commands ran is unknown. */
int twin_redis_append_argv(twin_redis *r, int argc, const char *const *argv, const size_t *lens,
                           twin_err *err);
int twin_redis_append(twin_redis *r, twin_err *err, const char *fmt, ...);
/* Commands appended and not yet read. */
size_t twin_redis_pending(const twin_redis *r);
/* replies: [n] where n must equal twin_redis_pending(r); each filled with a reply the caller
 * frees. On failure every slot is NULL and the pending commands are discarded. */
int twin_redis_pipeline_read(twin_redis *r, redisReply **replies, size_t n, twin_err *err);
/* Frees replies[0..n) (NULLs skipped). */
void twin_redis_free_replies(redisReply **replies, size_t n);

#endif
