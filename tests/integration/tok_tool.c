/* tests/integration/tok_tool.c — tok-tool: loads a tokenizer and answers JSON-lines requests on
 * stdin, one JSON object per line on stdout, for the Python parity tests.
 *   tok-tool (--dir DIR | --json FILE [--config FILE]) [--info] [--bench FILE [--repeat N]]
 * Requests: {"text": "...", "add_special": true} (or "text_hex" for raw bytes) encodes, then
 * decodes the ids and streams them through the incremental detokenizer; {"ids": [...]} only
 * decodes and streams; {"lookup": "<|eot_id|>"} looks a token up. Replies: {"ids": [...],
 * "decoded_hex", "decoded_skip_hex", "chunks_hex": [...], "chunks_skip_hex": [...]} (bytes as
 * hex so that any byte survives JSON), {"id": N}, or {"error": "...", "code": N}.
 * --info prints kind, vocabulary size, BOS and EOS; --bench times encode on a file's text.
 * A tokenizer that fails to load: the message on stderr, exit status 1. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm-svc/model/detok.h"
#include "llm-svc/model/tokenizer.h"

static char *to_hex(const char *s, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char *h = malloc(2 * n + 1);
  if (!h) return NULL;
  for (size_t i = 0; i < n; i++) {
    h[2 * i] = digits[(unsigned char)s[i] >> 4];
    h[2 * i + 1] = digits[(unsigned char)s[i] & 15];
  }
  h[2 * n] = 0;
  return h;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static char *from_hex(const char *h, size_t *n) {
  size_t len = strlen(h);
  if (len % 2) return NULL;
  char *s = malloc(len / 2 + 1);
  if (!s) return NULL;
  for (size_t i = 0; i < len / 2; i++) {
    int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
    if (hi < 0 || lo < 0) { free(s); return NULL; }
    s[i] = (char)(hi * 16 + lo);
  }
  *n = len / 2;
  return s;
}

static void add_hex(cJSON *obj, const char *key, const char *s, size_t n) {
  char *h = to_hex(s, n);
  cJSON_AddStringToObject(obj, key, h ? h : "");
  free(h);
}

static void reply_error(cJSON *reply, const twin_err *err) {
  cJSON_AddStringToObject(reply, "error", err->msg);
  cJSON_AddNumberToObject(reply, "code", err->code);
}

/* Streams ids through a detokenizer; adds the chunks as hex strings. */
static int stream(const twin_tokenizer *tok, const int32_t *ids, size_t n, int flags, cJSON *reply,
                  const char *key, twin_err *err) {
  twin_detok *d;
  int rc = twin_detok_create(&d, tok, flags, err);
  if (rc) return rc;
  cJSON *chunks = cJSON_AddArrayToObject(reply, key);
  for (size_t i = 0; i <= n && !rc; i++) {
    const char *text;
    size_t len;
    rc = i < n ? twin_detok_push(d, ids[i], &text, &len, err) : twin_detok_flush(d, &text, &len, err);
    if (!rc) {
      char *h = to_hex(text, len);
      cJSON_AddItemToArray(chunks, cJSON_CreateString(h ? h : ""));
      free(h);
    }
  }
  twin_detok_destroy(d);
  return rc;
}

static int decode_and_stream(const twin_tokenizer *tok, const int32_t *ids, size_t n, cJSON *reply,
                             twin_err *err) {
  char *text;
  size_t len;
  int rc = twin_tokenizer_decode(tok, ids, n, 0, &text, &len, err);
  if (rc) return rc;
  add_hex(reply, "decoded_hex", text, len);
  free(text);
  rc = twin_tokenizer_decode(tok, ids, n, TWIN_DECODE_SKIP_SPECIAL, &text, &len, err);
  if (rc) return rc;
  add_hex(reply, "decoded_skip_hex", text, len);
  free(text);
  rc = stream(tok, ids, n, 0, reply, "chunks_hex", err);
  if (!rc) rc = stream(tok, ids, n, TWIN_DECODE_SKIP_SPECIAL, reply, "chunks_skip_hex", err);
  return rc;
}

static void handle(const twin_tokenizer *tok, const char *line, cJSON *reply) {
  twin_err err = {0};
  cJSON *req = cJSON_Parse(line);
  if (!cJSON_IsObject(req)) {
    cJSON_AddStringToObject(reply, "error", "request is not a JSON object");
    cJSON_Delete(req);
    return;
  }
  const cJSON *text = cJSON_GetObjectItemCaseSensitive(req, "text");
  const cJSON *text_hex = cJSON_GetObjectItemCaseSensitive(req, "text_hex");
  const cJSON *ids_in = cJSON_GetObjectItemCaseSensitive(req, "ids");
  const cJSON *lookup = cJSON_GetObjectItemCaseSensitive(req, "lookup");
  if (cJSON_IsString(lookup)) {
    cJSON_AddNumberToObject(reply, "id", twin_tokenizer_token_to_id(tok, lookup->valuestring));
  } else if (cJSON_IsString(text) || cJSON_IsString(text_hex)) {
    size_t n = 0;
    char *s = cJSON_IsString(text) ? NULL : from_hex(text_hex->valuestring, &n);
    const char *src = s;
    if (cJSON_IsString(text)) {
      src = text->valuestring;
      n = strlen(src);
    }
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(req, "add_special");
    int add_special = as ? cJSON_IsTrue(as) : 1;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = src ? twin_tokenizer_encode(tok, src, n, add_special, &ids, &n_ids, &err)
                 : (err.code = TWIN_EINVAL, snprintf(err.msg, sizeof err.msg, "bad text_hex"), TWIN_EINVAL);
    if (!rc) {
      cJSON *arr = cJSON_AddArrayToObject(reply, "ids");
      for (size_t i = 0; i < n_ids; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
      rc = decode_and_stream(tok, ids, n_ids, reply, &err);
    }
    if (rc) reply_error(reply, &err);
    free(ids);
    free(s);
  } else if (cJSON_IsArray(ids_in)) {
    size_t n = (size_t)cJSON_GetArraySize(ids_in), i = 0;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    for (const cJSON *e = ids_in->child; e && ids; e = e->next) ids[i++] = (int32_t)e->valuedouble;
    if (ids && decode_and_stream(tok, ids, n, reply, &err)) reply_error(reply, &err);
    free(ids);
  } else {
    cJSON_AddStringToObject(reply, "error", "request has no text, text_hex, ids or lookup");
  }
  cJSON_Delete(req);
}

static char *read_all(FILE *f, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (n + 1 >= cap) {
      char *b = realloc(buf, cap * 2);
      if (!b) { free(buf); return NULL; }
      buf = b;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    if (!got) break;
    n += got;
  }
  if (buf) buf[n] = 0;
  *len = n;
  return buf;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bench(const twin_tokenizer *tok, const char *path, int repeat) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "tok-tool: cannot open %s\n", path); return 1; }
  size_t len;
  char *text = read_all(f, &len);
  fclose(f);
  if (!text) return 1;
  double best = 1e30, total = 0;
  size_t n_ids = 0;
  for (int r = 0; r < repeat; r++) {
    twin_err err = {0};
    int32_t *ids;
    double t0 = now_s();
    if (twin_tokenizer_encode(tok, text, len, 0, &ids, &n_ids, &err)) {
      fprintf(stderr, "tok-tool: %s\n", err.msg);
      free(text);
      return 1;
    }
    double dt = now_s() - t0;
    free(ids);
    total += dt;
    if (dt < best) best = dt;
  }
  printf("{\"bytes\": %zu, \"tokens\": %zu, \"repeat\": %d, \"best_s\": %.4f, \"mean_s\": %.4f, \"mb_per_s\": %.2f}\n",
         len, n_ids, repeat, best, total / repeat, (double)len / best / 1e6);
  free(text);
  return 0;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *json = NULL, *config = NULL, *bench_file = NULL;
  int info = 0, repeat = 3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
    else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
    else if (!strcmp(argv[i], "--bench") && i + 1 < argc) bench_file = argv[++i];
    else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--info")) info = 1;
    else {
      fprintf(stderr, "usage: tok-tool (--dir DIR | --json FILE [--config FILE]) [--info] [--bench FILE [--repeat N]]\n");
      return 2;
    }
  }
  if (!dir && !json) {
    fprintf(stderr, "tok-tool: give --dir or --json\n");
    return 2;
  }
  twin_err err = {0};
  twin_tokenizer *tok;
  int rc = dir ? twin_tokenizer_load_dir(&tok, dir, &err) : twin_tokenizer_load_files(&tok, json, config, &err);
  if (rc) {
    fprintf(stderr, "tok-tool: %s (%s)\n", err.msg, twin_err_name(rc));
    return 1;
  }
  if (info) {
    printf("{\"kind\": \"%s\", \"vocab_size\": %d, \"bos_id\": %d, \"eos_id\": %d}\n", twin_tokenizer_kind_name(tok),
           (int)twin_tokenizer_vocab_size(tok), (int)twin_tokenizer_bos_id(tok), (int)twin_tokenizer_eos_id(tok));
    twin_tokenizer_destroy(tok);
    return 0;
  }
  if (bench_file) {
    rc = bench(tok, bench_file, repeat > 0 ? repeat : 1);
    twin_tokenizer_destroy(tok);
    return rc;
  }
  size_t len;
  char *input = read_all(stdin, &len);
  for (char *line = input, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    else next = line + strlen(line);
    if (!*line) continue;
    cJSON *reply = cJSON_CreateObject();
    handle(tok, line, reply);
    char *out = cJSON_PrintUnformatted(reply);
    printf("%s\n", out ? out : "{\"error\": \"out of memory\"}");
    free(out);
    cJSON_Delete(reply);
  }
  free(input);
  twin_tokenizer_destroy(tok);
  return 0;
}
