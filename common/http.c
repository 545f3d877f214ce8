/* common/http.c — the HTTP server over libmicrohttpd (see http.h): thread per connection,
 * routing by method + longest path prefix, built-in /metrics and /healthz, static files, and
 * streamed bodies. A stream is a byte queue shared by a writer (any thread) and the
 * connection thread, which blocks in the content-reader callback until bytes, the end, or a
 * cancellation arrive; it is reference-counted between the two sides. */
#include "common/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define MAX_HEADERS 16
#define STREAM_POLL_MS 200

typedef struct static_dir {
  char *root; /* realpath of the directory, no trailing '/' */
} static_dir;

typedef struct route {
  char *method; /* NULL = any */
  char *prefix;
  twin_http_handler handler;
  void *user;
  static_dir *dir; /* owned, for static routes */
} route;

struct twin_http_server {
  twin_http_options opts;
  char bind_address[INET6_ADDRSTRLEN];
  bool has_bind_address;
  struct MHD_Daemon *daemon;
  int port;
  route *routes; /* [n_routes]; fixed once started */
  size_t n_routes;

  pthread_mutex_t mu; /* guards everything below */
  pthread_cond_t producers_done;
  bool healthy;
  char health_reason[256];
  twin_http_stream *streams; /* live streams (doubly linked), cancelled on stop */
  int n_producers;           /* running produce threads */
  bool stopping;
};

struct twin_http_stream {
  pthread_mutex_t mu;
  pthread_cond_t cond;   /* signalled on data, space, end or cancellation */
  twin_buf pending;      /* bytes [read_off, pending.len) wait for the client */
  size_t read_off;
  size_t max_pending;
  bool closed;           /* the writer ended the body */
  bool aborted;          /* ... with an error */
  bool cancelled;        /* client gone, server stopping, or response torn down */
  bool queued;           /* handed to libmicrohttpd (the reader runs) */
  bool writer_is_server; /* the writer reference belongs to a produce thread */
  int refs;              /* writer + reader side */
  int fd;                /* client socket, polled for hangups; -1 unknown */
  twin_http_server *server;
  twin_http_stream *prev, *next; /* in server->streams while registered */
  bool registered;
  void (*produce)(twin_http_stream *, void *);
  void *produce_user;
};

struct twin_http_response {
  int status;
  char content_type[128];
  twin_buf body;
  char *header_names[MAX_HEADERS], *header_values[MAX_HEADERS];
  size_t n_headers;
  int file_fd; /* -1 unless serving a file */
  uint64_t file_size;
  twin_http_stream *stream;
  twin_http_server *server;
  struct MHD_Connection *connection;
};

/* Per-request state: created by the URI log callback, freed when the request completes. */
typedef struct request_state {
  char *raw_uri;
  twin_buf body;
  bool started;
  bool too_large;
} request_state;

/* ============================================================================================
 * small helpers
 * ========================================================================================== */

int twin_http_status_for(int code) {
  switch (code) {
    case TWIN_EINVAL:
    case TWIN_EFORMAT: return 400;
    case TWIN_ENOTFOUND: return 404;
    case TWIN_EFULL: return 429;
    case TWIN_EUNSUPPORTED: return 501;
    case TWIN_EUNAVAILABLE: return 503;
    case TWIN_ETIMEOUT: return 504;
    case TWIN_ECANCELLED: return 499;
    default: return 500;
  }
}

const char *twin_http_content_type_for(const char *path) {
  static const struct { const char *ext, *type; } types[] = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
      {".wasm", "application/wasm"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
  };
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash : path, '.');
  if (dot)
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
      if (strcasecmp(dot, types[i].ext) == 0) return types[i].type;
  return "application/octet-stream";
}

/* "/v1/" matches the subtree; "/api/x" matches "/api/x" and "/api/x/...". */
static bool prefix_matches(const char *prefix, const char *path) {
  size_t n = strlen(prefix);
  if (strncmp(path, prefix, n) != 0) return false;
  if (n > 0 && prefix[n - 1] == '/') return true;
  return path[n] == 0 || path[n] == '/';
}

static bool method_matches(const char *route_method, const char *method) {
  if (!route_method) return true;
  if (strcmp(route_method, method) == 0) return true;
  return strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

const char *twin_http_request_header(const twin_http_request *req, const char *name) {
  return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *twin_http_request_arg(const twin_http_request *req, const char *name) {
  const char *v = NULL;
  if (MHD_lookup_connection_value_n(req->connection, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v,
                                    NULL) != MHD_YES)
    return NULL;
  return v ? v : "";
}

/* ============================================================================================
 * responses (the handler side)
 * ========================================================================================== */

static void response_init(twin_http_response *resp, twin_http_server *srv, struct MHD_Connection *c) {
  memset(resp, 0, sizeof *resp);
  resp->status = 200;
  twin_strlcpy(resp->content_type, "text/plain; charset=utf-8", sizeof resp->content_type);
  resp->file_fd = -1;
  resp->server = srv;
  resp->connection = c;
}

static void response_clear(twin_http_response *resp) {
  twin_buf_free(&resp->body);
  for (size_t i = 0; i < resp->n_headers; i++) {
    free(resp->header_names[i]);
    free(resp->header_values[i]);
  }
  resp->n_headers = 0;
  if (resp->file_fd >= 0) close(resp->file_fd);
  resp->file_fd = -1;
}

void twin_http_response_status(twin_http_response *resp, int status, const char *content_type) {
  resp->status = status;
  if (content_type) twin_strlcpy(resp->content_type, content_type, sizeof resp->content_type);
}

twin_buf *twin_http_response_body(twin_http_response *resp) { return &resp->body; }

int twin_http_response_set(twin_http_response *resp, int status, const char *content_type,
                           const void *body, size_t len) {
  twin_http_response_status(resp, status, content_type);
  twin_buf_reset(&resp->body);
  return twin_buf_append(&resp->body, body, len);
}

int twin_http_response_error(twin_http_response *resp, int status, const char *message) {
  const char *type = status == 404   ? "not_found"
                     : status == 405 ? "method_not_allowed"
                     : status == 413 ? "request_too_large"
                     : status == 429 ? "rate_limited"
                     : status == 503 ? "unavailable"
                     : status < 500  ? "invalid_request_error"
                                     : "server_error";
  twin_http_response_status(resp, status, "application/json");
  twin_buf *b = &resp->body;
  twin_buf_reset(b);
  twin_buf_puts(b, "{\"error\":{\"message\":");
  twin_buf_append_json_string(b, message, strlen(message));
  twin_buf_printf(b, ",\"type\":\"%s\",\"code\":%d}}\n", type, status);
  return b->failed ? TWIN_ENOMEM : 0;
}

int twin_http_response_header(twin_http_response *resp, const char *name, const char *value,
                              twin_err *err) {
  if (resp->n_headers == MAX_HEADERS)
    return twin_err_set(err, TWIN_EFULL, "http response: more than %d headers", MAX_HEADERS);
  if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
    return twin_err_set(err, TWIN_EINVAL, "http response header '%s': CR, LF or ':' not allowed", name);
  char *n = strdup(name), *v = strdup(value);
  if (!n || !v) {
    free(n);
    free(v);
    return twin_err_set(err, TWIN_ENOMEM, "http response header: out of memory");
  }
  resp->header_names[resp->n_headers] = n;
  resp->header_values[resp->n_headers++] = v;
  return 0;
}

int twin_http_response_file(twin_http_response *resp, const char *path, const char *content_type,
                            twin_err *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return twin_err_set(err, errno == ENOENT || errno == ENOTDIR ? TWIN_ENOTFOUND : TWIN_EIO,
                        "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return twin_err_set(err, TWIN_ENOTFOUND, "%s: not a regular file", path);
  }
  if (resp->file_fd >= 0) close(resp->file_fd);
  resp->file_fd = fd;
  resp->file_size = (uint64_t)st.st_size;
  resp->status = 200;
  twin_strlcpy(resp->content_type, content_type ? content_type : twin_http_content_type_for(path),
               sizeof resp->content_type);
  return 0;
}

/* ============================================================================================
 * streams
 * ========================================================================================== */

static void stream_release(twin_http_stream *s) {
  pthread_mutex_lock(&s->mu);
  int left = --s->refs;
  pthread_mutex_unlock(&s->mu);
  if (left > 0) return;
  twin_buf_free(&s->pending);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static void stream_unregister(twin_http_stream *s) {
  twin_http_server *srv = s->server;
  pthread_mutex_lock(&srv->mu);
  if (s->registered) {
    if (s->prev) s->prev->next = s->next;
    else srv->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    s->registered = false;
  }
  pthread_mutex_unlock(&srv->mu);
}

static void stream_cancel(twin_http_stream *s) {
  pthread_mutex_lock(&s->mu);
  s->cancelled = true;
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->mu);
}

/* The reader side is done (response destroyed): nobody will read again. */
static void stream_reader_done(void *cls) {
  twin_http_stream *s = cls;
  stream_unregister(s);
  stream_cancel(s);
  stream_release(s);
}

static bool peer_hung_up(int fd) {
  if (fd < 0) return false;
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  twin_http_stream *s = cls;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->cancelled) break;
    size_t avail = s->pending.len - s->read_off;
    if (avail > 0) {
      size_t n = avail < max ? avail : max;
      memcpy(buf, s->pending.data + s->read_off, n);
      s->read_off += n;
      if (s->read_off == s->pending.len) {
        twin_buf_reset(&s->pending);
        s->read_off = 0;
      }
      pthread_cond_broadcast(&s->cond);
      pthread_mutex_unlock(&s->mu);
      return (ssize_t)n;
    }
    if (s->closed) {
      bool aborted = s->aborted;
      pthread_mutex_unlock(&s->mu);
      return aborted ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += STREAM_POLL_MS * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
    if (pthread_cond_timedwait(&s->cond, &s->mu, &deadline) == ETIMEDOUT && peer_hung_up(s->fd)) {
      s->cancelled = true;
      pthread_cond_broadcast(&s->cond);
    }
  }
  pthread_mutex_unlock(&s->mu);
  return MHD_CONTENT_READER_END_WITH_ERROR;
}

twin_http_stream *twin_http_response_stream(twin_http_response *resp, int status,
                                            const char *content_type) {
  if (resp->stream) return NULL;
  twin_http_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cond, &ca);
  pthread_condattr_destroy(&ca);
  s->refs = 2;
  s->max_pending = resp->server->opts.stream_max_pending;
  s->fd = -1;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(resp->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (ci) s->fd = ci->connect_fd;
  s->server = resp->server;

  twin_http_server *srv = resp->server;
  pthread_mutex_lock(&srv->mu);
  s->cancelled = srv->stopping;
  s->next = srv->streams;
  if (srv->streams) srv->streams->prev = s;
  srv->streams = s;
  s->registered = true;
  pthread_mutex_unlock(&srv->mu);

  resp->stream = s;
  twin_http_response_status(resp, status, content_type);
  return s;
}

int twin_http_response_stream_fn(twin_http_response *resp, int status, const char *content_type,
                                 void (*produce)(twin_http_stream *stream, void *user), void *user,
                                 twin_err *err) {
  if (!produce) return twin_err_set(err, TWIN_EINVAL, "http stream: produce is NULL");
  twin_http_stream *s = twin_http_response_stream(resp, status, content_type);
  if (!s) return twin_err_set(err, TWIN_ENOMEM, "http stream: cannot create (out of memory or a second stream)");
  s->produce = produce;
  s->produce_user = user;
  s->writer_is_server = true;
  return 0;
}

int twin_http_stream_write(twin_http_stream *s, const void *data, size_t n, twin_err *err) {
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  for (;;) {
    if (s->closed) {
      rc = twin_err_set(err, TWIN_EINVAL, "http stream: write after close");
      break;
    }
    if (s->cancelled) {
      rc = twin_err_set(err, TWIN_ECANCELLED, "http stream: client disconnected or server stopping");
      break;
    }
    size_t queued = s->pending.len - s->read_off;
    if (queued == 0 || queued + n <= s->max_pending) break;
    if (!s->queued) {
      rc = twin_err_set(err, TWIN_EFULL,
                        "http stream: %zu bytes queued before the response started (limit %zu)",
                        queued + n, s->max_pending);
      break;
    }
    pthread_cond_wait(&s->cond, &s->mu);
  }
  if (rc == 0) {
    if (s->read_off > 0 && s->read_off >= s->pending.len / 2) { /* compact */
      memmove(s->pending.data, s->pending.data + s->read_off, s->pending.len - s->read_off);
      s->pending.len -= s->read_off;
      s->read_off = 0;
    }
    if (twin_buf_append(&s->pending, data, n) != 0)
      rc = twin_err_set(err, TWIN_ENOMEM, "http stream: out of memory queueing %zu bytes", n);
    else
      pthread_cond_broadcast(&s->cond);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int twin_http_stream_printf(twin_http_stream *s, twin_err *err, const char *fmt, ...) {
  twin_buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  int rc = twin_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  if (rc == 0) rc = twin_http_stream_write(s, b.data, b.len, err);
  else twin_err_set(err, rc, "http stream: cannot format");
  twin_buf_free(&b);
  return rc;
}

int twin_http_stream_sse(twin_http_stream *s, const char *event, const char *data, size_t n,
                         twin_err *err) {
  twin_buf b = {0};
  if (event) {
    if (strpbrk(event, "\r\n")) return twin_err_set(err, TWIN_EINVAL, "sse: event name has a line break");
    twin_buf_printf(&b, "event: %s\n", event);
  }
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || data[i] == '\n' || data[i] == '\r') {
      twin_buf_puts(&b, "data: ");
      twin_buf_append(&b, data + start, i - start);
      twin_buf_putc(&b, '\n');
      if (i < n && data[i] == '\r' && i + 1 < n && data[i + 1] == '\n') i++;
      start = i + 1;
    }
  }
  twin_buf_putc(&b, '\n');
  int rc = b.failed ? twin_err_set(err, TWIN_ENOMEM, "sse: out of memory")
                    : twin_http_stream_write(s, b.data, b.len, err);
  twin_buf_free(&b);
  return rc;
}

bool twin_http_stream_cancelled(twin_http_stream *s) {
  pthread_mutex_lock(&s->mu);
  bool c = s->cancelled;
  pthread_mutex_unlock(&s->mu);
  return c;
}

static void stream_end(twin_http_stream *s, bool aborted) {
  pthread_mutex_lock(&s->mu);
  if (!s->closed) {
    s->closed = true;
    s->aborted = aborted;
    pthread_cond_broadcast(&s->cond);
  }
  bool drop = !s->writer_is_server;
  pthread_mutex_unlock(&s->mu);
  if (drop) stream_release(s);
}

void twin_http_stream_close(twin_http_stream *s) { stream_end(s, false); }
void twin_http_stream_abort(twin_http_stream *s) { stream_end(s, true); }

static void *producer_main(void *arg) {
  twin_http_stream *s = arg;
  twin_http_server *srv = s->server;
  s->produce(s, s->produce_user);
  pthread_mutex_lock(&s->mu);
  s->writer_is_server = false;
  pthread_mutex_unlock(&s->mu);
  twin_http_stream_close(s); /* no-op on the body if produce aborted; drops the reference */
  pthread_mutex_lock(&srv->mu);
  if (--srv->n_producers == 0) pthread_cond_broadcast(&srv->producers_done);
  pthread_mutex_unlock(&srv->mu);
  return NULL;
}

/* Starts the produce thread of a queued stream; on failure the stream is aborted. */
static void start_producer(twin_http_server *srv, twin_http_stream *s) {
  pthread_mutex_lock(&srv->mu);
  bool ok = !srv->stopping;
  if (ok) srv->n_producers++;
  pthread_mutex_unlock(&srv->mu);
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (ok && pthread_create(&th, &attr, producer_main, s) != 0) {
    LOG_ERROR("http: cannot start a stream producer thread");
    pthread_mutex_lock(&srv->mu);
    if (--srv->n_producers == 0) pthread_cond_broadcast(&srv->producers_done);
    pthread_mutex_unlock(&srv->mu);
    ok = false;
  }
  pthread_attr_destroy(&attr);
  if (!ok) {
    pthread_mutex_lock(&s->mu);
    s->writer_is_server = false;
    pthread_mutex_unlock(&s->mu);
    twin_http_stream_abort(s);
  }
}

/* ============================================================================================
 * built-in and static handlers
 * ========================================================================================== */

static int metrics_handler(void *user, const twin_http_request *req, twin_http_response *resp,
                           twin_err *err) {
  (void)req;
  twin_http_server *srv = user;
  twin_http_response_status(resp, 200, TWIN_METRICS_CONTENT_TYPE);
  if (!srv->opts.metrics) return 0;
  return twin_metrics_render(srv->opts.metrics, twin_http_response_body(resp), err);
}

static int healthz_handler(void *user, const twin_http_request *req, twin_http_response *resp,
                           twin_err *err) {
  (void)req;
  (void)err;
  twin_http_server *srv = user;
  pthread_mutex_lock(&srv->mu);
  bool healthy = srv->healthy;
  char reason[sizeof srv->health_reason];
  memcpy(reason, srv->health_reason, sizeof reason);
  pthread_mutex_unlock(&srv->mu);
  if (healthy) return twin_http_response_set(resp, 200, "text/plain; charset=utf-8", "ok\n", 3);
  twin_http_response_status(resp, 503, "text/plain; charset=utf-8");
  twin_buf_printf(twin_http_response_body(resp), "unhealthy: %s\n", reason[0] ? reason : "unknown");
  return 0;
}

/* Refuses any segment that starts with a dot (".", ".." and hidden names) or holds a backslash. */
static bool safe_relative_path(const char *rel) {
  for (const char *p = rel; *p;) {
    while (*p == '/') p++;
    if (*p == '.') return false;
    const char *slash = strchr(p, '/');
    if (memchr(p, '\\', slash ? (size_t)(slash - p) : strlen(p))) return false;
    if (!slash) break;
    p = slash;
  }
  return true;
}

static int static_handler(void *user, const twin_http_request *req, twin_http_response *resp,
                          twin_err *err) {
  static_dir *dir = user;
  const char *rel = req->path + strlen(req->route_prefix);
  while (*rel == '/') rel++;
  if (!safe_relative_path(rel))
    return twin_err_set(err, TWIN_ENOTFOUND, "not found: %s", req->path);
  twin_buf full = {0};
  twin_buf_printf(&full, "%s/%s", dir->root, rel);
  if (full.len == 0 || full.data[full.len - 1] == '/') twin_buf_puts(&full, "index.html");
  if (full.failed) {
    twin_buf_free(&full);
    return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  }
  char real[PATH_MAX];
  int rc = 0;
  if (!realpath(full.data, real)) {
    rc = twin_err_set(err, TWIN_ENOTFOUND, "not found: %s", req->path);
  } else {
    struct stat st;
    if (stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
      size_t len = strlen(real);
      if (len + sizeof "/index.html" > sizeof real)
        rc = twin_err_set(err, TWIN_ENOTFOUND, "not found: %s", req->path);
      else
        memcpy(real + len, "/index.html", sizeof "/index.html");
    }
    size_t root_len = strlen(dir->root);
    if (rc == 0 && !(strncmp(real, dir->root, root_len) == 0 && real[root_len] == '/'))
      rc = twin_err_set(err, TWIN_ENOTFOUND, "not found: %s", req->path); /* a link out */
    if (rc == 0) {
      rc = twin_http_response_file(resp, real, NULL, err);
      if (rc != 0) rc = twin_err_set(err, TWIN_ENOTFOUND, "not found: %s", req->path);
    }
  }
  twin_buf_free(&full);
  return rc;
}

/* ============================================================================================
 * libmicrohttpd callbacks
 * ========================================================================================== */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
  (void)cls;
  (void)c;
  request_state *st = calloc(1, sizeof *st);
  if (st) st->raw_uri = strdup(uri ? uri : "");
  return st;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  request_state *st = *req_cls;
  if (!st) return;
  free(st->raw_uri);
  twin_buf_free(&st->body);
  free(st);
  *req_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
  /* a client that hangs up, or a stream we cut on purpose, is routine */
  if (strstr(msg, "no longer available") || strstr(msg, "application error generating response") ||
      strstr(msg, "reset by peer") || strstr(msg, "Broken pipe"))
    LOG_DEBUG("http: %s", msg);
  else
    LOG_WARN("http: %s", msg);
}

/* Hands resp to libmicrohttpd. Consumes the response's body, file and stream. */
static enum MHD_Result send_response(struct MHD_Connection *c, twin_http_response *resp) {
  struct MHD_Response *r;
  twin_http_stream *s = resp->stream;
  if (s) {
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s,
                                          stream_reader_done);
    if (!r) stream_reader_done(s); /* the reader side's reference */
  } else if (resp->file_fd >= 0) {
    r = MHD_create_response_from_fd((size_t)resp->file_size, resp->file_fd);
    if (r) resp->file_fd = -1; /* closed by libmicrohttpd */
  } else {
    size_t len = 0;
    char *data = twin_buf_detach(&resp->body, &len);
    r = data ? MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) free(data);
  }
  if (!r) {
    LOG_ERROR("http: cannot create a response (out of memory)");
    if (s && s->writer_is_server) { /* no produce thread will run: drop its reference */
      s->writer_is_server = false;
      twin_http_stream_abort(s);
    }
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
  for (size_t i = 0; i < resp->n_headers; i++)
    MHD_add_response_header(r, resp->header_names[i], resp->header_values[i]);
  if (s) {
    pthread_mutex_lock(&s->mu);
    s->queued = true;
    pthread_mutex_unlock(&s->mu);
  }
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)resp->status, r);
  MHD_destroy_response(r);
  if (s && s->produce) start_producer(resp->server, s);
  return ok;
}

static const route *find_route(const twin_http_server *srv, const char *method, const char *path,
                               twin_buf *allowed) {
  const route *best = NULL;
  size_t best_len = 0;
  bool any_path_match = false;
  for (size_t i = 0; i < srv->n_routes; i++) {
    const route *r = &srv->routes[i];
    if (!prefix_matches(r->prefix, path)) continue;
    any_path_match = true;
    if (!method_matches(r->method, method)) continue;
    size_t len = strlen(r->prefix);
    if (!best || len > best_len) {
      best = r;
      best_len = len;
    }
  }
  if (!best && any_path_match) {
    for (size_t i = 0; i < srv->n_routes; i++) {
      const route *r = &srv->routes[i];
      if (!prefix_matches(r->prefix, path) || !r->method) continue;
      if (allowed->len && strstr(allowed->data, r->method)) continue;
      twin_buf_printf(allowed, "%s%s", allowed->len ? ", " : "", r->method);
      if (strcmp(r->method, "GET") == 0) twin_buf_puts(allowed, ", HEAD");
    }
  }
  return best;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls) {
  (void)version;
  twin_http_server *srv = cls;
  request_state *st = *req_cls;
  if (!st) { /* the URI callback failed to allocate */
    st = on_uri(NULL, url, c);
    if (!st) return MHD_NO;
    *req_cls = st;
  }
  twin_http_response resp;
  if (!st->started) {
    st->started = true;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > srv->opts.max_body_bytes) {
      response_init(&resp, srv, c);
      twin_http_response_error(&resp, 413, "request body is larger than the server accepts");
      enum MHD_Result ok = send_response(c, &resp);
      response_clear(&resp);
      return ok;
    }
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    if (!st->too_large && st->body.len + *upload_data_size > srv->opts.max_body_bytes) {
      st->too_large = true;
      twin_buf_free(&st->body);
    }
    if (!st->too_large && twin_buf_append(&st->body, upload_data, *upload_data_size) != 0)
      return MHD_NO;
    *upload_data_size = 0;
    return MHD_YES;
  }

  int64_t t0 = twin_time_mono_us();
  response_init(&resp, srv, c);
  if (st->too_large) {
    twin_http_response_error(&resp, 413, "request body is larger than the server accepts");
  } else {
    twin_buf allowed = {0};
    const route *r = find_route(srv, method, url, &allowed);
    if (!r && allowed.len) {
      twin_buf msg = {0};
      twin_buf_printf(&msg, "method %s not allowed for %s", method, url);
      twin_http_response_error(&resp, 405, twin_buf_cstr(&msg));
      twin_http_response_header(&resp, MHD_HTTP_HEADER_ALLOW, twin_buf_cstr(&allowed), NULL);
      twin_buf_free(&msg);
    } else if (!r) {
      twin_buf msg = {0};
      twin_buf_printf(&msg, "no route for %s", url);
      twin_http_response_error(&resp, 404, twin_buf_cstr(&msg));
      twin_buf_free(&msg);
    } else {
      const char *q = strchr(st->raw_uri, '?');
      twin_http_request req = {
          .method = method,
          .path = url,
          .query = q ? q + 1 : "",
          .body = twin_buf_cstr(&st->body),
          .body_len = st->body.len,
          .route_prefix = r->prefix,
          .connection = c,
      };
      twin_err err = {0};
      int rc = r->handler(r->user, &req, &resp, &err);
      if (rc != 0) {
        if (resp.stream) { /* the handler gave up after opening a stream */
          twin_http_stream *s = resp.stream;
          resp.stream = NULL;
          stream_cancel(s);
          if (s->writer_is_server) {
            s->writer_is_server = false;
            twin_http_stream_abort(s);
          }
          stream_reader_done(s);
        }
        if (resp.file_fd >= 0) close(resp.file_fd);
        resp.file_fd = -1;
        int status = twin_http_status_for(rc);
        twin_http_response_error(&resp, status, err.msg[0] ? err.msg : twin_err_name(rc));
        if (status >= 500) LOG_WARN("http: %s %s -> %d: %s", method, url, status, err.msg);
      }
    }
    twin_buf_free(&allowed);
  }
  int status = resp.status;
  enum MHD_Result ok = send_response(c, &resp);
  response_clear(&resp);
  LOG_DEBUG("http: %s %s -> %d (%lld us)", method, url, status, (long long)(twin_time_mono_us() - t0));
  return ok;
}

/* ============================================================================================
 * the server
 * ========================================================================================== */

int twin_http_server_create(twin_http_server **out, const twin_http_options *opts, twin_err *err) {
  *out = NULL;
  twin_http_server *srv = calloc(1, sizeof *srv);
  if (!srv) return twin_err_set(err, TWIN_ENOMEM, "http server: out of memory");
  if (opts) srv->opts = *opts;
  if (srv->opts.port < 0 || srv->opts.port > 65535) {
    free(srv);
    return twin_err_set(err, TWIN_EINVAL, "http server: port %d is out of range", opts->port);
  }
  if (srv->opts.bind_address) {
    if (twin_strlcpy(srv->bind_address, srv->opts.bind_address, sizeof srv->bind_address) >=
        sizeof srv->bind_address) {
      free(srv);
      return twin_err_set(err, TWIN_EINVAL, "http server: bad bind address '%s'", opts->bind_address);
    }
    srv->has_bind_address = true;
    srv->opts.bind_address = srv->bind_address;
  }
  if (!srv->opts.max_body_bytes) srv->opts.max_body_bytes = 8u << 20;
  if (!srv->opts.max_connections) srv->opts.max_connections = 256;
  if (!srv->opts.idle_timeout_s) srv->opts.idle_timeout_s = 60;
  if (!srv->opts.stream_max_pending) srv->opts.stream_max_pending = 1u << 20;
  pthread_mutex_init(&srv->mu, NULL);
  pthread_cond_init(&srv->producers_done, NULL);
  srv->healthy = true;
  int rc = twin_http_server_route(srv, "GET", "/metrics", metrics_handler, srv, err);
  if (rc == 0) rc = twin_http_server_route(srv, "GET", "/healthz", healthz_handler, srv, err);
  if (rc != 0) {
    twin_http_server_destroy(srv);
    return rc;
  }
  *out = srv;
  return 0;
}

static int add_route(twin_http_server *srv, const char *method, const char *prefix,
                     twin_http_handler handler, void *user, static_dir *dir, twin_err *err) {
  if (srv->daemon) return twin_err_set(err, TWIN_EINVAL, "http route %s: server already started", prefix);
  if (!prefix || prefix[0] != '/' || !handler)
    return twin_err_set(err, TWIN_EINVAL, "http route '%s': prefix must start with '/' and have a handler",
                        prefix ? prefix : "(null)");
  for (size_t i = 0; i < srv->n_routes; i++) {
    const route *r = &srv->routes[i];
    bool same_method = (!r->method && !method) || (r->method && method && strcmp(r->method, method) == 0);
    if (same_method && strcmp(r->prefix, prefix) == 0)
      return twin_err_set(err, TWIN_EINVAL, "http route %s %s is already registered",
                          method ? method : "*", prefix);
  }
  route *grown = realloc(srv->routes, (srv->n_routes + 1) * sizeof *grown);
  if (!grown) return twin_err_set(err, TWIN_ENOMEM, "http route: out of memory");
  srv->routes = grown;
  route *r = &grown[srv->n_routes];
  memset(r, 0, sizeof *r);
  r->method = method ? strdup(method) : NULL;
  r->prefix = strdup(prefix);
  if ((method && !r->method) || !r->prefix) {
    free(r->method);
    free(r->prefix);
    return twin_err_set(err, TWIN_ENOMEM, "http route: out of memory");
  }
  r->handler = handler;
  r->user = user;
  r->dir = dir;
  srv->n_routes++;
  return 0;
}

int twin_http_server_route(twin_http_server *srv, const char *method, const char *prefix,
                           twin_http_handler handler, void *user, twin_err *err) {
  return add_route(srv, method, prefix, handler, user, NULL, err);
}

int twin_http_server_static(twin_http_server *srv, const char *prefix, const char *dir,
                            twin_err *err) {
  char real[PATH_MAX];
  struct stat st;
  if (!dir || !realpath(dir, real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
    return twin_err_set(err, TWIN_ENOTFOUND, "http static %s: directory '%s' not found",
                        prefix ? prefix : "(null)", dir ? dir : "(null)");
  static_dir *d = calloc(1, sizeof *d);
  if (!d || !(d->root = strdup(real))) {
    free(d);
    return twin_err_set(err, TWIN_ENOMEM, "http static: out of memory");
  }
  size_t n = strlen(d->root);
  if (n > 1 && d->root[n - 1] == '/') d->root[n - 1] = 0;
  int rc = add_route(srv, "GET", prefix, static_handler, d, d, err);
  if (rc != 0) {
    free(d->root);
    free(d);
  }
  return rc;
}

int twin_http_server_start(twin_http_server *srv, twin_err *err) {
  if (srv->daemon) return twin_err_set(err, TWIN_EINVAL, "http server: already started");
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                   MHD_USE_ERROR_LOG | MHD_USE_ITC;
  const char *shown = srv->has_bind_address ? srv->bind_address : "0.0.0.0";
  if (srv->has_bind_address && strchr(srv->bind_address, ':')) {
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)srv->opts.port);
    if (inet_pton(AF_INET6, srv->bind_address, &a6->sin6_addr) != 1)
      return twin_err_set(err, TWIN_EINVAL, "http server: bad IPv6 bind address '%s'", srv->bind_address);
    flags |= MHD_USE_IPv6;
  } else {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)srv->opts.port);
    if (srv->has_bind_address && inet_pton(AF_INET, srv->bind_address, &a4->sin_addr) != 1)
      return twin_err_set(err, TWIN_EINVAL, "http server: bad IPv4 bind address '%s'", srv->bind_address);
    if (!srv->has_bind_address) a4->sin_addr.s_addr = htonl(INADDR_ANY);
  }
  pthread_mutex_lock(&srv->mu);
  srv->stopping = false;
  pthread_mutex_unlock(&srv->mu);
  srv->daemon = MHD_start_daemon(
      flags, (uint16_t)srv->opts.port, NULL, NULL, on_request, srv,
      MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, /* first, so it sees every message */
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
      MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
      MHD_OPTION_CONNECTION_LIMIT, srv->opts.max_connections,
      MHD_OPTION_CONNECTION_TIMEOUT, srv->opts.idle_timeout_s,
      MHD_OPTION_END);
  if (!srv->daemon)
    return twin_err_set(err, TWIN_EIO, "http server: cannot listen on %s:%d (in use or not permitted)",
                        shown, srv->opts.port);
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
  srv->port = info ? info->port : srv->opts.port;
  LOG_INFO("http: listening on %s:%d", shown, srv->port);
  return 0;
}

int twin_http_server_port(const twin_http_server *srv) { return srv->port; }

void twin_http_server_set_health(twin_http_server *srv, bool healthy, const char *reason) {
  pthread_mutex_lock(&srv->mu);
  srv->healthy = healthy;
  twin_strlcpy(srv->health_reason, reason ? reason : "", sizeof srv->health_reason);
  pthread_mutex_unlock(&srv->mu);
}

void twin_http_server_stop(twin_http_server *srv) {
  if (!srv || !srv->daemon) return;
  MHD_socket listen_fd = MHD_quiesce_daemon(srv->daemon); /* no new connections */
  pthread_mutex_lock(&srv->mu);
  srv->stopping = true;
  for (twin_http_stream *s = srv->streams; s; s = s->next) stream_cancel(s);
  while (srv->n_producers > 0) pthread_cond_wait(&srv->producers_done, &srv->mu);
  pthread_mutex_unlock(&srv->mu);
  MHD_stop_daemon(srv->daemon); /* joins the connection threads */
  srv->daemon = NULL;
  if (listen_fd != MHD_INVALID_SOCKET) close(listen_fd); /* quiesce handed it to us */
}

void twin_http_server_destroy(twin_http_server *srv) {
  if (!srv) return;
  twin_http_server_stop(srv);
  for (size_t i = 0; i < srv->n_routes; i++) {
    free(srv->routes[i].method);
    free(srv->routes[i].prefix);
    if (srv->routes[i].dir) {
      free(srv->routes[i].dir->root);
      free(srv->routes[i].dir);
    }
  }
  free(srv->routes);
  pthread_cond_destroy(&srv->producers_done);
  pthread_mutex_destroy(&srv->mu);
  free(srv);
}
