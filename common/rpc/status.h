/* common/rpc/status.h — gRPC status codes (the numbers gRPC defines) and the mapping from the
 * project's TWIN_E* error codes, so that services answer with the code gRPC users expect. */
#ifndef TWIN_RPC_STATUS_H
#define TWIN_RPC_STATUS_H

typedef enum {
  TWIN_RPC_OK = 0,
  TWIN_RPC_CANCELLED = 1,
  TWIN_RPC_UNKNOWN = 2,
  TWIN_RPC_INVALID_ARGUMENT = 3,
  TWIN_RPC_DEADLINE_EXCEEDED = 4,
  TWIN_RPC_NOT_FOUND = 5,
  TWIN_RPC_ALREADY_EXISTS = 6,
  TWIN_RPC_PERMISSION_DENIED = 7,
  TWIN_RPC_RESOURCE_EXHAUSTED = 8,
  TWIN_RPC_FAILED_PRECONDITION = 9,
  TWIN_RPC_ABORTED = 10,
  TWIN_RPC_OUT_OF_RANGE = 11,
  TWIN_RPC_UNIMPLEMENTED = 12,
  TWIN_RPC_INTERNAL = 13,
  TWIN_RPC_UNAVAILABLE = 14,
  TWIN_RPC_DATA_LOSS = 15,
  TWIN_RPC_UNAUTHENTICATED = 16,
} twin_rpc_code;

typedef struct twin_rpc_status {
  twin_rpc_code code;
  char message[512];
} twin_rpc_status;

/* TWIN_EINVAL -> INVALID_ARGUMENT, TWIN_EFULL -> RESOURCE_EXHAUSTED, ... */
twin_rpc_code twin_rpc_code_from_err(int twin_error_code);
/* "OK", "CANCELLED", ... */
const char *twin_rpc_code_name(twin_rpc_code code);

#endif
