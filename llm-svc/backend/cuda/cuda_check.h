/* llm-svc/backend/cuda/cuda_check.h — error recording for CUDA runtime and cuBLAS calls.
 * CUDA_CHECK(err, call) and CUBLAS_CHECK(err, call) run the call; on failure they record file,
 * line, the call's text and the library's message into err (a twin_err *, may be NULL) and
 * return TWIN_EDEVICE from the enclosing function. They never abort. Usable from C and CUDA C++;
 * functions that own resources call a helper that returns early and clean up in one place. */
#ifndef TWIN_BACKEND_CUDA_CHECK_H
#define TWIN_BACKEND_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "common/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill err with "file:line: call: <runtime message>" and return TWIN_EDEVICE. */
int twin_cuda_fail(twin_err *err, cudaError_t e, const char *call, const char *file, int line);
int twin_cublas_fail(twin_err *err, cublasStatus_t s, const char *call, const char *file, int line);

#ifdef __cplusplus
}
#endif

#define CUDA_CHECK(err, call)                                                     \
  do {                                                                            \
    cudaError_t twin_cuda_e_ = (call);                                            \
    if (twin_cuda_e_ != cudaSuccess)                                              \
      return twin_cuda_fail((err), twin_cuda_e_, #call, __FILE__, __LINE__);      \
  } while (0)

#define CUBLAS_CHECK(err, call)                                                   \
  do {                                                                            \
    cublasStatus_t twin_cublas_s_ = (call);                                       \
    if (twin_cublas_s_ != CUBLAS_STATUS_SUCCESS)                                  \
      return twin_cublas_fail((err), twin_cublas_s_, #call, __FILE__, __LINE__);  \
  } while (0)

#endif
