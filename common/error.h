/* common/error.h — the project's error convention.
 * Functions return 0 on success or a negative TWIN_E* code, and fill a caller-provided
 * twin_err with the code and a message that names the problem (file, field, offset...).
 * Callers may pass err = NULL when they only want the code. */
#ifndef TWIN_COMMON_ERROR_H
#define TWIN_COMMON_ERROR_H

#include <stddef.h>

enum {
  TWIN_OK = 0,
  TWIN_EINVAL = -1,       /* bad argument or input (gRPC INVALID_ARGUMENT) */
  TWIN_EIO = -2,          /* a read, write or map failed */
  TWIN_ENOMEM = -3,
  TWIN_EFORMAT = -4,      /* a malformed file or message */
  TWIN_EUNSUPPORTED = -5, /* well-formed but not something we run */
  TWIN_ENOTFOUND = -6,
  TWIN_EDEVICE = -7,      /* CUDA / cuBLAS failure */
  TWIN_EUNAVAILABLE = -8, /* a dependency is down */
  TWIN_ETIMEOUT = -9,
  TWIN_ECANCELLED = -10,
  TWIN_EFULL = -11,       /* queue or pool full (RESOURCE_EXHAUSTED) */
  TWIN_EINTERNAL = -12,
};

typedef struct twin_err {
  int code;
  char msg[512];
} twin_err;

/* Records code and a printf-style message in err (if non-NULL); returns code. */
int twin_err_set(twin_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "prefix: " to an existing message (adding context on the way up). */
int twin_err_wrap(twin_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void twin_err_clear(twin_err *err);
const char *twin_err_name(int code);

#endif
