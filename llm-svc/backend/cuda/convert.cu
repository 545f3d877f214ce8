/* llm-svc/backend/cuda/convert.cu — fp32 or fp16 to bf16 on the device, used once at load time
 * to turn uploaded weights into the backend's bf16 layout (round to nearest even). */
#include <cuda_fp16.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

template <typename SrcT>
static __global__ void to_bf16_kernel(__nv_bfloat16 *__restrict__ dst /* [n] */,
                                      const SrcT *__restrict__ src /* [n] */, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    if constexpr (sizeof(SrcT) == 4)
      dst[i] = __float2bfloat16_rn(src[i]);
    else
      dst[i] = __float2bfloat16_rn(__half2float(src[i]));
  }
}

extern "C" cudaError_t twin_cuda_convert_to_bf16(twin_bf16 *dst, const void *src,
                                                 twin_cuda_src_type src_type, size_t n,
                                                 cudaStream_t stream) {
  if (!dst || !src || (src_type != TWIN_CUDA_SRC_F32 && src_type != TWIN_CUDA_SRC_F16))
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  size_t blocks = (n + threads - 1) / threads;
  if (blocks > 132 * 32) blocks = 132 * 32;
  __nv_bfloat16 *d = reinterpret_cast<__nv_bfloat16 *>(dst);
  if (src_type == TWIN_CUDA_SRC_F32)
    to_bf16_kernel<float><<<(unsigned)blocks, threads, 0, stream>>>(d, static_cast<const float *>(src), n);
  else
    to_bf16_kernel<__half><<<(unsigned)blocks, threads, 0, stream>>>(d, static_cast<const __half *>(src), n);
  return cudaGetLastError();
}
