/* business-svc/rag/fetch.c — twin_fetch_url on a libcurl easy handle: the options of
 * rag/fetch.h become CURLOPT_* settings, the body grows in a twin_buf that refuses to pass
 * max_bytes, and curl's result codes map onto the project's error codes. */
#include "business-svc/rag/fetch.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

typedef struct body_sink {
  twin_buf buf;
  size_t max_bytes;
  bool over_cap;
  bool out_of_memory;
} body_sink;

static size_t write_body(char *data, size_t size, size_t nmemb, void *userdata) {
  body_sink *sink = userdata;
  size_t n = size * nmemb;
  if (sink->buf.len + n > sink->max_bytes) {
    sink->over_cap = true;
    return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
  }
  if (twin_buf_append(&sink->buf, data, n)) {
    sink->out_of_memory = true;
    return 0;
  }
  return n;
}

/* "Text/HTML; charset=UTF-8" -> type "text/html", charset "utf-8". */
static void split_content_type(const char *ct, twin_fetch_result *out) {
  out->content_type[0] = out->charset[0] = '\0';
  if (!ct) return;
  size_t i = 0, n = 0;
  while (ct[i] == ' ') i++;
  while (ct[i] && ct[i] != ';' && ct[i] != ' ' && n + 1 < sizeof out->content_type)
    out->content_type[n++] = (char)tolower((unsigned char)ct[i++]);
  out->content_type[n] = '\0';
  const char *p = strcasestr(ct, "charset=");
  if (!p) return;
  p += 8;
  if (*p == '"') p++;
  n = 0;
  while (*p && *p != ';' && *p != '"' && *p != ' ' && n + 1 < sizeof out->charset)
    out->charset[n++] = (char)tolower((unsigned char)*p++);
  out->charset[n] = '\0';
}

int twin_fetch_url(const char *url, const twin_fetch_options *opts, twin_fetch_result *out,
                   twin_err *err) {
  memset(out, 0, sizeof *out);
  if (!url || !(twin_str_has_prefix(url, "http://") || twin_str_has_prefix(url, "https://")))
    return twin_err_set(err, TWIN_EINVAL, "fetch %s: only http:// and https:// URLs are fetched",
                        url ? url : "(null)");
  twin_fetch_options o = opts ? *opts : (twin_fetch_options){0};
  if (o.connect_timeout_ms <= 0) o.connect_timeout_ms = 5000;
  if (o.timeout_ms <= 0) o.timeout_ms = 30000;
  if (o.max_bytes == 0) o.max_bytes = 16u << 20;
  if (o.max_redirects == 0) o.max_redirects = 5;
  if (!o.user_agent) o.user_agent = "twin-ingest/0.1";

  CURL *curl = curl_easy_init();
  if (!curl) return twin_err_set(err, TWIN_ENOMEM, "fetch %s: curl_easy_init failed", url);
  body_sink sink = {.max_bytes = o.max_bytes};
  twin_buf_init(&sink.buf);
  char curl_msg[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, url);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, o.max_redirects > 0 ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, o.max_redirects > 0 ? o.max_redirects : 0L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, o.connect_timeout_ms);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, o.timeout_ms);
  curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o.max_bytes);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(curl, CURLOPT_USERAGENT, o.user_agent);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_msg);
  CURLcode cc = curl_easy_perform(curl);

  long status = 0;
  char *ct = NULL, *final_url = NULL;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
  curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &final_url);
  out->status = status;
  split_content_type(ct, out);
  twin_strlcpy(out->final_url, final_url ? final_url : url, sizeof out->final_url);

  int rc = 0;
  const char *detail = curl_msg[0] ? curl_msg : curl_easy_strerror(cc);
  if (cc != CURLE_OK) {
    if (sink.over_cap || cc == CURLE_FILESIZE_EXCEEDED)
      rc = twin_err_set(err, TWIN_EINVAL, "fetch %s: the body is larger than %zu bytes", url, o.max_bytes);
    else if (sink.out_of_memory)
      rc = twin_err_set(err, TWIN_ENOMEM, "fetch %s: out of memory", url);
    else if (cc == CURLE_OPERATION_TIMEDOUT)
      rc = twin_err_set(err, TWIN_ETIMEOUT, "fetch %s: timed out (connect %ld ms, total %ld ms): %s",
                        url, o.connect_timeout_ms, o.timeout_ms, detail);
    else if (cc == CURLE_TOO_MANY_REDIRECTS)
      rc = twin_err_set(err, TWIN_EIO, "fetch %s: more than %ld redirects", url, o.max_redirects);
    else if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
      rc = twin_err_set(err, TWIN_EUNAVAILABLE, "fetch %s: %s", url, detail);
    else if (cc == CURLE_UNSUPPORTED_PROTOCOL)
      rc = twin_err_set(err, TWIN_EINVAL, "fetch %s: %s (only http and https)", url, detail);
    else
      rc = twin_err_set(err, TWIN_EIO, "fetch %s: %s", url, detail);
  } else if (status >= 300 && status < 400) {
    rc = twin_err_set(err, TWIN_EIO, "fetch %s: HTTP %ld redirect not followed", url, status);
  } else if (status == 404 || status == 410) {
    rc = twin_err_set(err, TWIN_ENOTFOUND, "fetch %s: HTTP %ld", url, status);
  } else if (status >= 400 || status < 200) {
    rc = twin_err_set(err, TWIN_EIO, "fetch %s: HTTP %ld", url, status);
  }
  curl_easy_cleanup(curl);
  if (rc) {
    twin_buf_free(&sink.buf);
    return rc;
  }
  out->len = sink.buf.len;
  out->body = twin_buf_detach(&sink.buf, NULL);
  if (!out->body) return twin_err_set(err, TWIN_ENOMEM, "fetch %s: out of memory", url);
  return 0;
}

void twin_fetch_result_free(twin_fetch_result *r) {
  if (!r) return;
  free(r->body);
  r->body = NULL;
  r->len = 0;
}
