/* common/error.c — twin_err helpers: set, wrap with context, names for codes. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int twin_err_set(twin_err *err, int code, const char *fmt, ...) {
  if (!err) return code;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return code;
}

int twin_err_wrap(twin_err *err, const char *fmt, ...) {
  if (!err) return TWIN_EINTERNAL;
  char prefix[256], old[sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
  return err->code;
}

void twin_err_clear(twin_err *err) {
  if (!err) return;
  err->code = 0;
  err->msg[0] = 0;
}

const char *twin_err_name(int code) {
  switch (code) {
    case TWIN_OK: return "ok";
    case TWIN_EINVAL: return "invalid argument";
    case TWIN_EIO: return "i/o error";
    case TWIN_ENOMEM: return "out of memory";
    case TWIN_EFORMAT: return "malformed input";
    case TWIN_EUNSUPPORTED: return "unsupported";
    case TWIN_ENOTFOUND: return "not found";
    case TWIN_EDEVICE: return "device error";
    case TWIN_EUNAVAILABLE: return "unavailable";
    case TWIN_ETIMEOUT: return "timeout";
    case TWIN_ECANCELLED: return "cancelled";
    case TWIN_EFULL: return "resource exhausted";
    default: return "internal error";
  }
}
