/* business-svc/rag/fetch.h — fetching one document over HTTP(S) for ingestion, with libcurl:
 * only http and https (redirects too), a connect and a whole-transfer timeout, a cap on
 * redirects and on the body size (checked on Content-Length and while receiving, after
 * content decoding), and the final status, URL and Content-Type reported. The caller decides
 * what content types it accepts. Thread-safe: each call uses its own curl handle. */
#ifndef TWIN_RAG_FETCH_H
#define TWIN_RAG_FETCH_H

#include <stddef.h>

#include "common/error.h"

typedef struct twin_fetch_options {
  long connect_timeout_ms; /* 0 = 5000 */
  long timeout_ms;         /* the whole transfer; 0 = 30000 */
  size_t max_bytes;        /* body cap; 0 = 16 MiB */
  long max_redirects;      /* 0 = 5; < 0 = redirects are not followed (a 3xx is an error) */
  const char *user_agent;  /* NULL = "twin-ingest/0.1" */
} twin_fetch_options;

typedef struct twin_fetch_result {
  char *body;              /* [len] + NUL, owned */
  size_t len;
  long status;             /* HTTP status of the last response */
  char content_type[128];  /* media type, lower case, no parameters ("text/html") */
  char charset[64];        /* the charset parameter, lower case, or "" */
  char final_url[2048];    /* after redirects */
} twin_fetch_result;

/* GETs url into *out (the caller frees it with twin_fetch_result_free). Errors name the URL:
 * TWIN_EINVAL for a URL that is not http(s) or a body over max_bytes, TWIN_ETIMEOUT,
 * TWIN_EUNAVAILABLE when the host cannot be reached, TWIN_ENOTFOUND for HTTP 404/410,
 * TWIN_EIO for other HTTP errors (>= 400), too many redirects and transfer failures. opts may
 * be NULL (defaults). */
int twin_fetch_url(const char *url, const twin_fetch_options *opts, twin_fetch_result *out,
                   twin_err *err);
void twin_fetch_result_free(twin_fetch_result *r);

#endif
