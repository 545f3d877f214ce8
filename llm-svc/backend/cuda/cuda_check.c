/* llm-svc/backend/cuda/cuda_check.c — the recording half of CUDA_CHECK / CUBLAS_CHECK: turns a
 * runtime or cuBLAS status into a twin_err message naming the call and where it was made. */
#include "llm-svc/backend/cuda/cuda_check.h"

int twin_cuda_fail(twin_err *err, cudaError_t e, const char *call, const char *file, int line) {
  return twin_err_set(err, TWIN_EDEVICE, "%s:%d: %s: %s (%s)", file, line, call,
                      cudaGetErrorString(e), cudaGetErrorName(e));
}

int twin_cublas_fail(twin_err *err, cublasStatus_t s, const char *call, const char *file,
                     int line) {
  return twin_err_set(err, TWIN_EDEVICE, "%s:%d: %s: %s", file, line, call,
                      cublasGetStatusString(s));
}
