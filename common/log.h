/* common/log.h — leveled logging to stderr, as text or JSON lines.
 * Each line carries a timestamp, the level, the component ("llm-svc", "rpc"...) and, when the
 * calling thread has one, the request id. Configured once at start-up (process context). */
#ifndef TWIN_COMMON_LOG_H
#define TWIN_COMMON_LOG_H

typedef enum { TWIN_LOG_DEBUG = 0, TWIN_LOG_INFO, TWIN_LOG_WARN, TWIN_LOG_ERROR, TWIN_LOG_OFF } twin_log_level;

/* component: copied. json: 1 = one JSON object per line. Safe to call again. */
void twin_log_init(const char *component, twin_log_level level, int json);
/* "debug" | "info" | "warn" | "error" | "off" -> level; -1 when unknown. */
int twin_log_parse_level(const char *s);
twin_log_level twin_log_get_level(void);
/* Thread-local request id put on this thread's lines (NULL or "" clears; copied). */
void twin_log_set_request_id(const char *request_id);

void twin_log_at(twin_log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_DEBUG(...) do { if (twin_log_get_level() <= TWIN_LOG_DEBUG) twin_log_at(TWIN_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define LOG_INFO(...) twin_log_at(TWIN_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_WARN(...) twin_log_at(TWIN_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_ERROR(...) twin_log_at(TWIN_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
