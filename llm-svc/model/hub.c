/* llm-svc/model/hub.c — fetching hf:// models with libcurl: list the revision's files, pick the
 * ones a model needs (top-level *.json, *.safetensors, tokenizer.model), download each with
 * resume and checksum, then mark the directory complete. */
#include "llm-svc/model/hub.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define COMPLETE_MARKER ".twin-complete"

int twin_hub_is_ref(const char *ref) { return ref && strncmp(ref, "hf://", 5) == 0; }

/* ==== references and paths ================================================================== */

typedef struct hub_ref {
  char repo[256];      /* org/name */
  char rev[128];
} hub_ref;

static int valid_part(const char *s, size_t n) {
  if (n == 0 || (n == 2 && s[0] == '.' && s[1] == '.') || (n == 1 && s[0] == '.')) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return 0;
  }
  return 1;
}

static int parse_ref(const char *ref, hub_ref *out, twin_err *err) {
  const char *p = ref + 5;
  const char *at = strchr(p, '@');
  size_t repo_len = at ? (size_t)(at - p) : strlen(p);
  const char *slash = memchr(p, '/', repo_len);
  if (!slash || !valid_part(p, (size_t)(slash - p)) ||
      !valid_part(slash + 1, repo_len - (size_t)(slash - p) - 1) || repo_len >= sizeof out->repo)
    return twin_err_set(err, TWIN_EINVAL, "model '%s': expected hf://org/name[@revision]", ref);
  memcpy(out->repo, p, repo_len);
  out->repo[repo_len] = 0;
  const char *rev = at ? at + 1 : "main";
  if (!valid_part(rev, strlen(rev)) || strlen(rev) >= sizeof out->rev)
    return twin_err_set(err, TWIN_EINVAL, "model '%s': bad revision '%s'", ref, rev);
  snprintf(out->rev, sizeof out->rev, "%s", rev);
  return 0;
}

static void default_cache(char *out, size_t cap) {
  const char *c = getenv("TWIN_MODEL_CACHE");
  if (c && *c) {
    snprintf(out, cap, "%s", c);
    return;
  }
  const char *hf = getenv("HF_HOME");
  if (hf && *hf) {
    snprintf(out, cap, "%s/twin", hf);
    return;
  }
  const char *home = getenv("HOME");
  snprintf(out, cap, "%s/.cache/twin/models", home && *home ? home : "/tmp");
}

static int mkdirs(const char *path) {
  char tmp[2048];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int wanted_file(const char *name) {
  if (strchr(name, '/')) return 0; /* top level only */
  size_t n = strlen(name);
  return (n > 5 && !strcmp(name + n - 5, ".json")) ||
         (n > 12 && !strcmp(name + n - 12, ".safetensors")) || !strcmp(name, "tokenizer.model");
}

/* ==== HTTP ================================================================================== */

typedef struct http_get {
  FILE *file;          /* body goes here when set */
  twin_buf *body;      /* ... or here */
  char sha256[65];     /* from X-Linked-Etag / ETag when it is a SHA-256 */
  long status;
} http_get;

static size_t on_body(char *data, size_t size, size_t n, void *user) {
  http_get *g = user;
  size_t len = size * n;
  if (g->file) return fwrite(data, 1, len, g->file);
  return twin_buf_append(g->body, data, len) == 0 ? len : 0;
}

static void maybe_sha(http_get *g, const char *value, size_t len) {
  while (len && (*value == ' ' || *value == '"' || *value == 'W' || *value == '/')) value++, len--;
  while (len && (value[len - 1] == '\r' || value[len - 1] == '\n' || value[len - 1] == '"')) len--;
  if (len != 64) return;
  for (size_t i = 0; i < 64; i++) {
    char c = value[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return;
  }
  memcpy(g->sha256, value, 64);
  g->sha256[64] = 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *user) {
  http_get *g = user;
  size_t len = size * n;
  static const char linked[] = "x-linked-etag:", etag[] = "etag:";
  if (len > sizeof linked - 1 && !strncasecmp(data, linked, sizeof linked - 1))
    maybe_sha(g, data + sizeof linked - 1, len - (sizeof linked - 1));
  else if (!g->sha256[0] && len > sizeof etag - 1 && !strncasecmp(data, etag, sizeof etag - 1))
    maybe_sha(g, data + sizeof etag - 1, len - (sizeof etag - 1));
  return len;
}

static int http_fetch(const char *url, const char *token, long resume_from, http_get *g, twin_err *err) {
  CURL *c = curl_easy_init();
  if (!c) return twin_err_set(err, TWIN_ENOMEM, "curl init failed");
  struct curl_slist *hdrs = NULL;
  if (token && *token) {
    char auth[1024];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    hdrs = curl_slist_append(hdrs, auth);
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM, no touching signal masks */
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L); /* abort a stalled transfer */
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, g);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, g);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "twin-llm-svc");
  if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  if (resume_from > 0) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)resume_from);
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g->status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK && !(rc == CURLE_HTTP_RETURNED_ERROR || g->status == 416))
    return twin_err_set(err, TWIN_EUNAVAILABLE, "GET %s: %s", url, curl_easy_strerror(rc));
  return 0;
}

/* ==== files ================================================================================= */

static int file_sha256_hex(const char *path, char hex[65], twin_err *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return twin_err_set(err, TWIN_EIO, "%s: %s", path, strerror(errno));
  struct stat st;
  fstat(fd, &st);
  uint8_t digest[32];
  int rc;
  if (st.st_size == 0) {
    rc = twin_sha256("", 0, digest, err);
  } else {
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      close(fd);
      return twin_err_set(err, TWIN_EIO, "%s: mmap: %s", path, strerror(errno));
    }
    rc = twin_sha256(p, (size_t)st.st_size, digest, err);
    munmap(p, (size_t)st.st_size);
  }
  close(fd);
  if (rc == 0) twin_hex_encode(digest, 32, hex);
  return rc;
}

static int download_file(const char *endpoint, const hub_ref *r, const char *token, const char *dir,
                         const char *name, int quiet, twin_err *err) {
  char url[2048], dest[2048], part[2100];
  snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", endpoint, r->repo, r->rev, name);
  snprintf(dest, sizeof dest, "%s/%s", dir, name);
  snprintf(part, sizeof part, "%s.incomplete", dest);
  struct stat st;
  long have = stat(part, &st) == 0 ? (long)st.st_size : 0;
  FILE *f = fopen(part, have ? "ab" : "wb");
  if (!f) return twin_err_set(err, TWIN_EIO, "%s: %s", part, strerror(errno));
  http_get g = {.file = f};
  if (!quiet) fprintf(stderr, "hub: %s %s%s\n", r->repo, name, have ? " (resuming)" : "");
  int rc = http_fetch(url, token, have, &g, err);
  fclose(f);
  if (rc) return rc;
  if (g.status == 416 && have > 0) {
    /* the partial file is already whole: checked below */
  } else if (g.status == 200 && have > 0) {
    /* the server ignored the range and sent everything after what we had: start over */
    unlink(part);
    return download_file(endpoint, r, token, dir, name, quiet, err);
  } else if (g.status != 200 && g.status != 206) {
    if (g.status >= 400) unlink(part);
    return twin_err_set(err, g.status == 404 ? TWIN_ENOTFOUND : TWIN_EUNAVAILABLE,
                        "GET %s: HTTP %ld", url, g.status);
  }
  if (g.sha256[0]) {
    char hex[65];
    if ((rc = file_sha256_hex(part, hex, err))) return rc;
    if (strcmp(hex, g.sha256) != 0) {
      unlink(part);
      return twin_err_set(err, TWIN_EFORMAT, "%s: checksum mismatch (sha256 %s, registry says %s)",
                          dest, hex, g.sha256);
    }
  }
  if (rename(part, dest) != 0) return twin_err_set(err, TWIN_EIO, "%s: %s", dest, strerror(errno));
  return 0;
}

/* ==== fetch ================================================================================= */

int twin_hub_fetch(const char *ref, const twin_hub_opts *opts, char *dir_out, size_t cap,
                   twin_err *err) {
  hub_ref r;
  int rc = parse_ref(ref, &r, err);
  if (rc) return rc;
  char cache[1024], dir[2048], marker[2200];
  if (opts && opts->cache_dir) snprintf(cache, sizeof cache, "%s", opts->cache_dir);
  else default_cache(cache, sizeof cache);
  char flat[300]; /* "org/name" -> "org--name" */
  const char *slash = strchr(r.repo, '/');
  snprintf(flat, sizeof flat, "%.*s--%s", (int)(slash - r.repo), r.repo, slash + 1);
  snprintf(dir, sizeof dir, "%s/%s/%s", cache, flat, r.rev);
  snprintf(marker, sizeof marker, "%s/" COMPLETE_MARKER, dir);
  struct stat st;
  if (stat(marker, &st) == 0) {
    snprintf(dir_out, cap, "%s", dir);
    return 0;
  }
  if (mkdirs(dir) != 0) return twin_err_set(err, TWIN_EIO, "%s: %s", dir, strerror(errno));

  const char *endpoint = opts && opts->endpoint ? opts->endpoint : getenv("HF_ENDPOINT");
  if (!endpoint || !*endpoint) endpoint = "https://huggingface.co";
  const char *token = opts && opts->token ? opts->token : getenv("HF_TOKEN");
  int quiet = opts && opts->quiet;
  char url[2048];
  snprintf(url, sizeof url, "%s/api/models/%s/revision/%s", endpoint, r.repo, r.rev);
  twin_buf body;
  twin_buf_init(&body);
  http_get g = {.body = &body};
  rc = http_fetch(url, token, 0, &g, err);
  if (!rc && g.status != 200)
    rc = twin_err_set(err, g.status == 404 || g.status == 401 ? TWIN_ENOTFOUND : TWIN_EUNAVAILABLE,
                      "GET %s: HTTP %ld", url, g.status);
  cJSON *info = rc ? NULL : cJSON_ParseWithLength(twin_buf_cstr(&body), body.len);
  if (!rc && !info) rc = twin_err_set(err, TWIN_EFORMAT, "GET %s: the answer is not JSON", url);
  const cJSON *sib = info ? cJSON_GetObjectItemCaseSensitive(info, "siblings") : NULL;
  if (!rc && !cJSON_IsArray(sib)) rc = twin_err_set(err, TWIN_EFORMAT, "GET %s: no \"siblings\" list", url);
  int n_files = 0;
  const cJSON *s;
  cJSON_ArrayForEach(s, sib) {
    if (rc) break;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(s, "rfilename");
    if (!cJSON_IsString(name) || !wanted_file(name->valuestring) || !valid_part(name->valuestring, strlen(name->valuestring)))
      continue;
    char dest[2300];
    snprintf(dest, sizeof dest, "%s/%s", dir, name->valuestring);
    if (stat(dest, &st) == 0) {
      n_files++;
      continue;
    }
    rc = download_file(endpoint, &r, token, dir, name->valuestring, quiet, err);
    n_files++;
  }
  if (!rc && n_files == 0) rc = twin_err_set(err, TWIN_ENOTFOUND, "%s: no model files (*.json, *.safetensors) at %s", ref, url);
  cJSON_Delete(info);
  twin_buf_free(&body);
  if (rc) return rc;
  FILE *m = fopen(marker, "w");
  if (m) {
    fprintf(m, "%s@%s\n", r.repo, r.rev);
    fclose(m);
  }
  if (!quiet) fprintf(stderr, "hub: %s@%s ready in %s (%d files)\n", r.repo, r.rev, dir, n_files);
  snprintf(dir_out, cap, "%s", dir);
  return 0;
}
