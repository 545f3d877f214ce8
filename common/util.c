/* common/util.c — clocks, the growable string buffer, UTF-8 checks, XXH64, hex, random ids,
 * strict number/size/duration parsing and whole-file reads (see util.h for the contracts).
 * The UTF-8 validator and XXH64 are written here: twin_common links neither utf8proc nor an
 * xxhash library, and both are short, well-specified algorithms (reasons in util.h). */
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef TWIN_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

/* ============================================================================================
 * clocks
 * ========================================================================================== */

static int64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t twin_time_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t twin_time_mono_us(void) { return clock_ns(CLOCK_MONOTONIC) / 1000; }
int64_t twin_time_mono_ms(void) { return clock_ns(CLOCK_MONOTONIC) / 1000000; }
int64_t twin_time_wall_us(void) { return clock_ns(CLOCK_REALTIME) / 1000; }
int64_t twin_time_wall_ms(void) { return clock_ns(CLOCK_REALTIME) / 1000000; }

void twin_sleep_ms(int64_t ms) {
  if (ms <= 0) return;
  struct timespec req = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  struct timespec rem;
  while (nanosleep(&req, &rem) != 0 && errno == EINTR) req = rem;
}

/* ============================================================================================
 * string buffer
 * ========================================================================================== */

void twin_buf_init(twin_buf *b) { memset(b, 0, sizeof *b); }

void twin_buf_free(twin_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

void twin_buf_reset(twin_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = 0;
  b->failed = false;
}

int twin_buf_reserve(twin_buf *b, size_t extra) {
  if (extra > SIZE_MAX - b->len - 1) {
    b->failed = true;
    return TWIN_ENOMEM;
  }
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->failed = true;
    return TWIN_ENOMEM;
  }
  b->data = p;
  b->cap = cap;
  b->data[b->len] = 0; /* a fresh allocation is a valid empty string too */
  return 0;
}

int twin_buf_append(twin_buf *b, const void *data, size_t n) {
  if (twin_buf_reserve(b, n) != 0) return TWIN_ENOMEM;
  if (n) memcpy(b->data + b->len, data, n);
  b->len += n;
  b->data[b->len] = 0;
  return 0;
}

int twin_buf_puts(twin_buf *b, const char *s) { return twin_buf_append(b, s, strlen(s)); }

int twin_buf_putc(twin_buf *b, char c) { return twin_buf_append(b, &c, 1); }

int twin_buf_vprintf(twin_buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  size_t room = b->cap > b->len ? b->cap - b->len : 0;
  int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap2);
  va_end(ap2);
  if (n < 0) {
    b->failed = true;
    return TWIN_EINVAL;
  }
  if ((size_t)n < room) {
    b->len += (size_t)n;
    return 0;
  }
  if (twin_buf_reserve(b, (size_t)n) != 0) return TWIN_ENOMEM;
  vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int twin_buf_printf(twin_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = twin_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int twin_buf_append_json_string(twin_buf *b, const char *s, size_t n) {
  static const char hexd[] = "0123456789abcdef";
  if (twin_buf_reserve(b, n + 2) != 0) return TWIN_ENOMEM;
  int rc = twin_buf_putc(b, '"');
  size_t i = 0;
  while (i < n && rc == 0) {
    /* copy the longest run that needs no escaping in one append */
    size_t run = i;
    while (run < n) {
      unsigned char c = (unsigned char)s[run];
      if (c < 0x20 || c == '"' || c == '\\') break;
      if (c < 0x80) {
        run++;
        continue;
      }
      uint32_t cp;
      size_t len = twin_utf8_decode(s + run, n - run, &cp);
      if (len == 0) break;
      run += len;
    }
    if (run > i) {
      rc = twin_buf_append(b, s + i, run - i);
      i = run;
      continue;
    }
    unsigned char c = (unsigned char)s[i];
    switch (c) {
      case '"': rc = twin_buf_append(b, "\\\"", 2); break;
      case '\\': rc = twin_buf_append(b, "\\\\", 2); break;
      case '\n': rc = twin_buf_append(b, "\\n", 2); break;
      case '\r': rc = twin_buf_append(b, "\\r", 2); break;
      case '\t': rc = twin_buf_append(b, "\\t", 2); break;
      case '\b': rc = twin_buf_append(b, "\\b", 2); break;
      case '\f': rc = twin_buf_append(b, "\\f", 2); break;
      default:
        if (c < 0x20) {
          char esc[6] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15]};
          rc = twin_buf_append(b, esc, 6);
        } else {
          rc = twin_buf_append(b, "\xEF\xBF\xBD", 3); /* invalid UTF-8 byte -> U+FFFD */
        }
    }
    i++;
  }
  if (rc == 0) rc = twin_buf_putc(b, '"');
  return rc;
}

const char *twin_buf_cstr(const twin_buf *b) { return b->data ? b->data : ""; }

char *twin_buf_detach(twin_buf *b, size_t *len_out) {
  if (!b->data && twin_buf_reserve(b, 0) != 0) return NULL;
  char *p = b->data;
  if (len_out) *len_out = b->len;
  memset(b, 0, sizeof *b);
  return p;
}

/* ============================================================================================
 * UTF-8
 * ========================================================================================== */

enum { SEQ_OK, SEQ_TRUNCATED, SEQ_INVALID };

/* Checks the sequence starting at p[0] against RFC 3629's table of well-formed byte
 * sequences. Sets *len to the sequence length on SEQ_OK. */
static int utf8_seq(const unsigned char *p, size_t avail, size_t *len) {
  unsigned char c = p[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c < 0x80) {
    *len = 1;
    return SEQ_OK;
  } else if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;      /* no overlong forms */
    else if (c == 0xED) hi = 0x9F; /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;      /* no overlong forms */
    else if (c == 0xF4) hi = 0x8F; /* at most U+10FFFF */
  } else {
    return SEQ_INVALID;
  }
  for (size_t k = 1; k < need; k++) {
    if (k >= avail) return SEQ_TRUNCATED;
    unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
    if (p[k] < lo_k || p[k] > hi_k) return SEQ_INVALID;
  }
  *len = need;
  return SEQ_OK;
}

size_t twin_utf8_validate(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, len = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    if (utf8_seq(p + i, n - i, &len) != SEQ_OK) return i;
    i += len;
  }
  return n;
}

size_t twin_utf8_complete_len(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  /* the last sequence starts at most 3 bytes before the end */
  for (size_t back = 1; back <= 3 && back <= n; back++) {
    unsigned char c = p[n - back];
    if ((c & 0xC0) == 0x80) continue; /* continuation byte: look further back */
    size_t len;
    if (utf8_seq(p + n - back, back, &len) == SEQ_TRUNCATED) return n - back;
    return n;
  }
  return n;
}

size_t twin_utf8_decode(const char *s, size_t n, uint32_t *cp) {
  const unsigned char *p = (const unsigned char *)s;
  size_t len;
  if (n == 0 || utf8_seq(p, n, &len) != SEQ_OK) return 0;
  uint32_t v;
  switch (len) {
    case 1: v = p[0]; break;
    case 2: v = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F); break;
    case 3: v = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F); break;
    default:
      v = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
          ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
  *cp = v;
  return len;
}

size_t twin_utf8_encode(uint32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  if (cp > 0x10FFFF) return 0;
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* ============================================================================================
 * XXH64
 * ========================================================================================== */

static const uint64_t XXH_P1 = 0x9E3779B185EBCA87ULL;
static const uint64_t XXH_P2 = 0xC2B2AE3D27D4EB4FULL;
static const uint64_t XXH_P3 = 0x165667B19E3779F9ULL;
static const uint64_t XXH_P4 = 0x85EBCA77C2B2AE63ULL;
static const uint64_t XXH_P5 = 0x27D4EB2F165667C5ULL;

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t read_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; k--) v = (v << 8) | p[k];
  return v;
}

static inline uint32_t read_le32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t lane) {
  acc += lane * XXH_P2;
  return rotl64(acc, 31) * XXH_P1;
}

static inline uint64_t xxh_merge(uint64_t h, uint64_t v) {
  h ^= xxh_round(0, v);
  return h * XXH_P1 + XXH_P4;
}

uint64_t twin_hash64(const void *data, size_t n, uint64_t seed) {
  const unsigned char *p = data, *end = p + n;
  uint64_t h;
  if (n >= 32) {
    uint64_t v1 = seed + XXH_P1 + XXH_P2, v2 = seed + XXH_P2, v3 = seed, v4 = seed - XXH_P1;
    const unsigned char *limit = end - 32;
    do {
      v1 = xxh_round(v1, read_le64(p));
      v2 = xxh_round(v2, read_le64(p + 8));
      v3 = xxh_round(v3, read_le64(p + 16));
      v4 = xxh_round(v4, read_le64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xxh_merge(h, v1);
    h = xxh_merge(h, v2);
    h = xxh_merge(h, v3);
    h = xxh_merge(h, v4);
  } else {
    h = seed + XXH_P5;
  }
  h += (uint64_t)n;
  for (; p + 8 <= end; p += 8) {
    h ^= xxh_round(0, read_le64(p));
    h = rotl64(h, 27) * XXH_P1 + XXH_P4;
  }
  if (p + 4 <= end) {
    h ^= (uint64_t)read_le32(p) * XXH_P1;
    h = rotl64(h, 23) * XXH_P2 + XXH_P3;
    p += 4;
  }
  for (; p < end; p++) {
    h ^= (uint64_t)(*p) * XXH_P5;
    h = rotl64(h, 11) * XXH_P1;
  }
  h ^= h >> 33;
  h *= XXH_P2;
  h ^= h >> 29;
  h *= XXH_P3;
  h ^= h >> 32;
  return h;
}

/* ============================================================================================
 * hex, SHA-256, random
 * ========================================================================================== */

char *twin_hex_encode(const void *data, size_t n, char *out) {
  static const char hexd[] = "0123456789abcdef";
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hexd[p[i] >> 4];
    out[2 * i + 1] = hexd[p[i] & 15];
  }
  out[2 * n] = 0;
  return out;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int twin_hex_decode(const char *hex, void *out, size_t n_out, twin_err *err) {
  unsigned char *o = out;
  size_t len = strlen(hex);
  if (len != 2 * n_out)
    return twin_err_set(err, TWIN_EINVAL, "hex string has %zu digits, expected %zu", len, 2 * n_out);
  for (size_t i = 0; i < n_out; i++) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return twin_err_set(err, TWIN_EINVAL, "hex string: not a hex digit at offset %zu",
                          2 * i + (hi < 0 ? 0 : 1));
    o[i] = (unsigned char)(hi << 4 | lo);
  }
  return 0;
}

bool twin_sha256_available(void) {
#ifdef TWIN_HAVE_LIBCRYPTO
  return true;
#else
  return false;
#endif
}

int twin_sha256(const void *data, size_t n, uint8_t out[32], twin_err *err) {
#ifdef TWIN_HAVE_LIBCRYPTO
  unsigned int out_len = 0;
  if (EVP_Digest(data, n, out, &out_len, EVP_sha256(), NULL) != 1 || out_len != 32)
    return twin_err_set(err, TWIN_EINTERNAL, "sha256: EVP_Digest failed");
  return 0;
#else
  (void)data;
  (void)n;
  (void)out;
  return twin_err_set(err, TWIN_EUNSUPPORTED, "sha256: built without libcrypto (TWIN_HAVE_LIBCRYPTO)");
#endif
}

int twin_random_bytes(void *buf, size_t n, twin_err *err) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t got = getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return twin_err_set(err, TWIN_EIO, "getrandom: %s", strerror(errno));
    }
    p += got;
    n -= (size_t)got;
  }
  return 0;
}

int twin_random_id(char out[33], twin_err *err) {
  unsigned char raw[16];
  int rc = twin_random_bytes(raw, sizeof raw, err);
  if (rc != 0) return rc;
  twin_hex_encode(raw, sizeof raw, out);
  return 0;
}

/* ============================================================================================
 * strict parsing
 * ========================================================================================== */

static int bad_number(twin_err *err, const char *s, const char *what) {
  return twin_err_set(err, TWIN_EINVAL, "'%s' is not %s", s ? s : "(null)", what);
}

static bool starts_clean(const char *s) { return s && s[0] && !isspace((unsigned char)s[0]); }

int twin_parse_int64(const char *s, int64_t *out, twin_err *err) {
  if (!starts_clean(s)) return bad_number(err, s, "an integer");
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end) return bad_number(err, s, "an integer");
  if (errno == ERANGE) return twin_err_set(err, TWIN_EINVAL, "'%s' is out of range", s);
  *out = v;
  return 0;
}

int twin_parse_uint64(const char *s, uint64_t *out, twin_err *err) {
  if (!starts_clean(s) || s[0] == '-') return bad_number(err, s, "a non-negative integer");
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end) return bad_number(err, s, "a non-negative integer");
  if (errno == ERANGE) return twin_err_set(err, TWIN_EINVAL, "'%s' is out of range", s);
  *out = v;
  return 0;
}

int twin_parse_double(const char *s, double *out, twin_err *err) {
  if (!starts_clean(s)) return bad_number(err, s, "a number");
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end || !isfinite(v)) return bad_number(err, s, "a finite number");
  if (errno == ERANGE && fabs(v) > 1.0) return twin_err_set(err, TWIN_EINVAL, "'%s' is out of range", s);
  *out = v;
  return 0;
}

int twin_parse_bool(const char *s, bool *out, twin_err *err) {
  static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
  for (int i = 0; s && i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return bad_number(err, s, "a boolean (true/false, 1/0, yes/no, on/off)");
}

/* Splits s into a non-negative number and a unit suffix; the number is exact when it is an
 * integer (*is_int, *ival) and approximate otherwise (*dval). */
static int parse_number_unit(const char *s, const char *what, double *dval, uint64_t *ival,
                             bool *is_int, const char **unit, twin_err *err) {
  if (!starts_clean(s) || s[0] == '-' || s[0] == '+') return bad_number(err, s, what);
  const char *p = s;
  while (isdigit((unsigned char)*p)) p++;
  if (p == s && *p != '.') return bad_number(err, s, what);
  if (*p == '.' || *p == 'e' || *p == 'E') {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || errno == ERANGE) return bad_number(err, s, what);
    *dval = v;
    *is_int = false;
    *unit = end;
  } else {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE) return twin_err_set(err, TWIN_EINVAL, "'%s' is out of range", s);
    *ival = v;
    *dval = (double)v;
    *is_int = true;
    *unit = end;
  }
  return 0;
}

/* value * mult as an exact whole number, or an error. */
static int scale_whole(const char *s, const char *what, double dval, uint64_t ival, bool is_int,
                       uint64_t mult, uint64_t *out, twin_err *err) {
  if (is_int) {
    if (mult && ival > UINT64_MAX / mult) return twin_err_set(err, TWIN_EINVAL, "'%s' is out of range", s);
    *out = ival * mult;
    return 0;
  }
  double r = dval * (double)mult;
  if (r >= 18446744073709551615.0) return twin_err_set(err, TWIN_EINVAL, "'%s' is out of range", s);
  double whole = floor(r + 0.5);
  if (fabs(r - whole) > 1e-6 * (whole > 1 ? whole : 1))
    return twin_err_set(err, TWIN_EINVAL, "'%s' is not a whole number of %s", s, what);
  *out = (uint64_t)whole;
  return 0;
}

int twin_parse_size(const char *s, uint64_t *out, twin_err *err) {
  static const struct { const char *unit; int shift; } units[] = {
      {"", 0},    {"b", 0},     {"k", 10},  {"kb", 10}, {"kib", 10}, {"m", 20},  {"mb", 20},
      {"mib", 20}, {"g", 30},   {"gb", 30}, {"gib", 30}, {"t", 40},  {"tb", 40}, {"tib", 40}};
  double d = 0;
  uint64_t iv = 0;
  bool is_int = false;
  const char *unit = NULL;
  int rc = parse_number_unit(s, "a size (e.g. 512, 64K, 1.5G)", &d, &iv, &is_int, &unit, err);
  if (rc != 0) return rc;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcasecmp(unit, units[i].unit) == 0)
      return scale_whole(s, "bytes", d, iv, is_int, (uint64_t)1 << units[i].shift, out, err);
  return twin_err_set(err, TWIN_EINVAL, "'%s': unknown size unit '%s' (B, K, M, G, T)", s, unit);
}

int twin_parse_duration_ms(const char *s, int64_t *out, twin_err *err) {
  static const struct { const char *unit; uint64_t ms; } units[] = {
      {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  double d = 0;
  uint64_t iv = 0;
  bool is_int = false;
  const char *unit = NULL;
  int rc = parse_number_unit(s, "a duration (e.g. 250ms, 2s, 1.5m)", &d, &iv, &is_int, &unit, err);
  if (rc != 0) return rc;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcmp(unit, units[i].unit) != 0) continue;
    uint64_t v;
    rc = scale_whole(s, "milliseconds", d, iv, is_int, units[i].ms, &v, err);
    if (rc != 0) return rc;
    if (v > (uint64_t)INT64_MAX) return twin_err_set(err, TWIN_EINVAL, "'%s' is out of range", s);
    *out = (int64_t)v;
    return 0;
  }
  return twin_err_set(err, TWIN_EINVAL, "'%s': unknown duration unit '%s' (ms, s, m, h)", s, unit);
}

/* ============================================================================================
 * strings and files
 * ========================================================================================== */

bool twin_str_has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool twin_str_has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

char *twin_strdup(const char *s) { return s ? strdup(s) : NULL; }

size_t twin_strlcpy(char *dst, const char *src, size_t cap) {
  size_t n = strlen(src);
  if (cap > 0) {
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(dst, src, k);
    dst[k] = 0;
  }
  return n;
}

int twin_read_file(const char *path, size_t max_bytes, char **data, size_t *len, twin_err *err) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return twin_err_set(err, errno == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return twin_err_set(err, TWIN_EIO, "%s: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return twin_err_set(err, TWIN_EIO, "%s: not a regular file", path);
  }
  if (max_bytes && (uint64_t)st.st_size > max_bytes) {
    close(fd);
    return twin_err_set(err, TWIN_EINVAL, "%s: %lld bytes, more than the limit of %zu", path,
                        (long long)st.st_size, max_bytes);
  }
  size_t cap = (size_t)st.st_size + 1, n = 0;
  char *buf = malloc(cap);
  if (!buf) {
    close(fd);
    return twin_err_set(err, TWIN_ENOMEM, "%s: cannot allocate %zu bytes", path, cap);
  }
  for (;;) {
    if (n + 1 >= cap) { /* the file grew while we read it */
      if (max_bytes && n >= max_bytes) break;
      char *p = realloc(buf, cap * 2);
      if (!p) {
        free(buf);
        close(fd);
        return twin_err_set(err, TWIN_ENOMEM, "%s: cannot allocate %zu bytes", path, cap * 2);
      }
      buf = p;
      cap *= 2;
    }
    ssize_t got = read(fd, buf + n, cap - 1 - n);
    if (got < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      free(buf);
      close(fd);
      return twin_err_set(err, TWIN_EIO, "%s: read: %s", path, strerror(e));
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  close(fd);
  buf[n] = 0;
  *data = buf;
  *len = n;
  return 0;
}
