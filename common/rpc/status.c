/* common/rpc/status.c — names of gRPC status codes and the TWIN_E* -> status mapping. */
#include "common/rpc/status.h"

#include "common/error.h"

twin_rpc_code twin_rpc_code_from_err(int e) {
  switch (e) {
    case TWIN_OK: return TWIN_RPC_OK;
    case TWIN_EINVAL:
    case TWIN_EFORMAT: return TWIN_RPC_INVALID_ARGUMENT;
    case TWIN_ENOTFOUND: return TWIN_RPC_NOT_FOUND;
    case TWIN_EUNSUPPORTED: return TWIN_RPC_UNIMPLEMENTED;
    case TWIN_EUNAVAILABLE: return TWIN_RPC_UNAVAILABLE;
    case TWIN_ETIMEOUT: return TWIN_RPC_DEADLINE_EXCEEDED;
    case TWIN_ECANCELLED: return TWIN_RPC_CANCELLED;
    case TWIN_EFULL:
    case TWIN_ENOMEM: return TWIN_RPC_RESOURCE_EXHAUSTED;
    default: return TWIN_RPC_INTERNAL;
  }
}

const char *twin_rpc_code_name(twin_rpc_code c) {
  static const char *names[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  return (unsigned)c < sizeof names / sizeof names[0] ? names[c] : "UNKNOWN";
}
