/* common/util.h — small things every module needs: clocks, a growable string buffer (with
 * JSON string escaping), UTF-8 validation, a fast 64-bit hash, hex, random ids, strict number
 * parsing and whole-file reads. Nothing here keeps state between calls; every function is
 * safe to call from any thread on distinct objects. */
#ifndef TWIN_COMMON_UTIL_H
#define TWIN_COMMON_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* ---- clocks ------------------------------------------------------------------------------ */

/* Monotonic clock (CLOCK_MONOTONIC): for durations and deadlines, never for timestamps. */
int64_t twin_time_mono_ms(void);
int64_t twin_time_mono_us(void);
int64_t twin_time_mono_ns(void);
/* Wall clock (CLOCK_REALTIME) since the Unix epoch: for timestamps in traces and logs. */
int64_t twin_time_wall_ms(void);
int64_t twin_time_wall_us(void);
/* Sleeps at least ms milliseconds (restarts after signals). */
void twin_sleep_ms(int64_t ms);

/* ---- growable string buffer ---------------------------------------------------------------
 * data is always NUL-terminated once anything was appended (twin_buf_cstr gives "" before).
 * A zero-initialised twin_buf is a valid empty buffer. Appends return 0 or TWIN_ENOMEM; after
 * a failed append the buffer keeps what it had and `failed` stays set, so a caller may append
 * many pieces and check `failed` (or the last return) once. The buffer owns data. */
typedef struct twin_buf {
  char *data; /* [cap], the text is data[0..len) + '\0' */
  size_t len;
  size_t cap;
  bool failed;
} twin_buf;

void twin_buf_init(twin_buf *b);
void twin_buf_free(twin_buf *b);  /* frees data, leaves an empty buffer */
void twin_buf_reset(twin_buf *b); /* len = 0, keeps the allocation, clears failed */
int twin_buf_reserve(twin_buf *b, size_t extra);
int twin_buf_append(twin_buf *b, const void *data, size_t n);
int twin_buf_puts(twin_buf *b, const char *s);
int twin_buf_putc(twin_buf *b, char c);
int twin_buf_printf(twin_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int twin_buf_vprintf(twin_buf *b, const char *fmt, va_list ap);
/* Appends s[0..n) as a JSON string literal, quotes included. Escapes '"', '\\' and control
 * characters; bytes that are not valid UTF-8 become U+FFFD so the output is always valid JSON. */
int twin_buf_append_json_string(twin_buf *b, const char *s, size_t n);
/* The text ("" for an empty buffer); borrowed, valid until the next append or free. */
const char *twin_buf_cstr(const twin_buf *b);
/* Hands data to the caller (free() it; never NULL unless out of memory) and empties b. */
char *twin_buf_detach(twin_buf *b, size_t *len_out);

/* ---- UTF-8 ---------------------------------------------------------------------------------
 * Written here rather than taken from utf8proc because twin_common does not link utf8proc and
 * callers need the byte offset of the problem, which utf8proc's API does not report directly.
 * Valid means RFC 3629: shortest form, no surrogates (U+D800..U+DFFF), at most U+10FFFF. */

/* Returns n when s[0..n) is valid UTF-8, else the offset of the first byte of the first
 * invalid (or truncated) sequence. */
size_t twin_utf8_validate(const char *s, size_t n);
/* For streams: the length of s[0..n) without a trailing sequence that is valid so far but
 * incomplete (0 to 3 bytes are cut). Bytes before it are not checked; see twin_utf8_validate. */
size_t twin_utf8_complete_len(const char *s, size_t n);
/* Decodes one code point at s[0..n): returns its length (1-4) and sets *cp, or 0 when the
 * bytes there are not a valid sequence (or n == 0). */
size_t twin_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encodes cp (<= U+10FFFF, not a surrogate) into out[4]; returns its length or 0. */
size_t twin_utf8_encode(uint32_t cp, char out[4]);

/* ---- hashing and hex -----------------------------------------------------------------------
 * twin_hash64 is XXH64 (the published xxHash 64-bit algorithm), implemented in util.c because
 * no xxhash library is in twin_common's link set; it is ~60 lines and its output is checked
 * against the reference implementation's vectors in tests/unit/test_common_util.c. Fast
 * (8 bytes per multiply) and well mixed: used for KV-cache block content hashes, cache keys
 * and sharding. Not cryptographic. */
uint64_t twin_hash64(const void *data, size_t n, uint64_t seed);

/* Lower-case hex of data[0..n) into out (2n+1 bytes, NUL-terminated). Returns out. */
char *twin_hex_encode(const void *data, size_t n, char *out);
/* Decodes 2*n_out hex digits of hex (either case) into out; TWIN_EINVAL (naming the offset)
 * when hex is not exactly 2*n_out hex digits. */
int twin_hex_decode(const char *hex, void *out, size_t n_out, twin_err *err);

/* SHA-256 of data[0..n) into out[32], through OpenSSL's libcrypto. Compiled only when the
 * build defines TWIN_HAVE_LIBCRYPTO (and links libcrypto); otherwise returns
 * TWIN_EUNSUPPORTED. twin_sha256_available() says which. */
bool twin_sha256_available(void);
int twin_sha256(const void *data, size_t n, uint8_t out[32], twin_err *err);

/* Fills buf[0..n) from the kernel's random source (getrandom). */
int twin_random_bytes(void *buf, size_t n, twin_err *err);
/* A random 128-bit id as 32 lower-case hex digits (trace ids, request ids). */
int twin_random_id(char out[33], twin_err *err);

/* ---- strict parsing and strings ------------------------------------------------------------
 * The parsers take the whole string: no leading/trailing spaces, no trailing junk, no empty
 * input; overflow is an error. They return 0 or TWIN_EINVAL with a message quoting s. */
int twin_parse_int64(const char *s, int64_t *out, twin_err *err);
int twin_parse_uint64(const char *s, uint64_t *out, twin_err *err);
int twin_parse_double(const char *s, double *out, twin_err *err); /* finite values only */
/* "1|0|true|false|yes|no|on|off" (any case). */
int twin_parse_bool(const char *s, bool *out, twin_err *err);
/* Byte sizes: a number (fraction allowed) and an optional unit B, K/KB/KiB, M/MB/MiB,
 * G/GB/GiB, T/TB/TiB (any case; all binary, K = 1024). Result must be a whole number of bytes. */
int twin_parse_size(const char *s, uint64_t *out, twin_err *err);
/* Durations in milliseconds: a number (fraction allowed) and an optional unit ms (the
 * default), s, m, h. Result must be a whole, non-negative number of ms. */
int twin_parse_duration_ms(const char *s, int64_t *out, twin_err *err);

bool twin_str_has_prefix(const char *s, const char *prefix);
bool twin_str_has_suffix(const char *s, const char *suffix);
/* strdup that reports NULL input as NULL (and sets nothing). */
char *twin_strdup(const char *s);
/* Copies src into dst[cap] (always NUL-terminated when cap > 0); returns strlen(src), so a
 * result >= cap means it was cut. */
size_t twin_strlcpy(char *dst, const char *src, size_t cap);

/* Reads a whole file into *data (malloc'ed, NUL-terminated, caller frees) and *len. Files
 * larger than max_bytes (0 = no limit) are TWIN_EINVAL; open/read errors TWIN_EIO or
 * TWIN_ENOTFOUND, naming the path. */
int twin_read_file(const char *path, size_t max_bytes, char **data, size_t *len, twin_err *err);

#endif
