/* common/log.c — the logger: one formatted write(2) per line so lines from threads never
 * interleave; JSON mode escapes the message. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
  char component[48];
  twin_log_level level;
  int json;
} g_log = {"twin", TWIN_LOG_INFO, 0};

static _Thread_local char t_request_id[64];

void twin_log_init(const char *component, twin_log_level level, int json) {
  snprintf(g_log.component, sizeof g_log.component, "%s", component ? component : "twin");
  g_log.level = level;
  g_log.json = json;
}

int twin_log_parse_level(const char *s) {
  static const char *names[] = {"debug", "info", "warn", "error", "off"};
  for (int i = 0; i < 5; i++)
    if (s && strcmp(s, names[i]) == 0) return i;
  return -1;
}

twin_log_level twin_log_get_level(void) { return g_log.level; }

void twin_log_set_request_id(const char *request_id) {
  snprintf(t_request_id, sizeof t_request_id, "%s", request_id ? request_id : "");
}

static size_t json_escape(char *out, size_t cap, const char *in) {
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)in; *p && o + 7 < cap; p++) {
    if (*p == '"' || *p == '\\') { out[o++] = '\\'; out[o++] = (char)*p; }
    else if (*p == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
    else if (*p < 0x20) o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *p);
    else out[o++] = (char)*p;
  }
  out[o] = 0;
  return o;
}

void twin_log_at(twin_log_level level, const char *file, int line, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  if (level < g_log.level || level >= TWIN_LOG_OFF) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);

  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;

  char buf[4096];
  int n;
  if (g_log.json) {
    char esc[3072];
    json_escape(esc, sizeof esc, msg);
    n = snprintf(buf, sizeof buf,
                 "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"src\":\"%s:%d\"%s%s%s,\"msg\":\"%s\"}\n",
                 when, names[level], g_log.component, base, line,
                 t_request_id[0] ? ",\"request_id\":\"" : "", t_request_id,
                 t_request_id[0] ? "\"" : "", esc);
  } else {
    n = snprintf(buf, sizeof buf, "%s %-5s [%s]%s%s%s %s (%s:%d)\n", when, names[level],
                 g_log.component, t_request_id[0] ? " [" : "", t_request_id,
                 t_request_id[0] ? "]" : "", msg, base, line);
  }
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) { n = sizeof buf - 1; buf[n - 1] = '\n'; }
  ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
  (void)w;
}
