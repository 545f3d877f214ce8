/* llm-svc/backend/cuda/rmsnorm.cu — RMSNorm of the fp32 residual stream into bf16, plain or fused
 * with the residual add (x += delta, then normalise the sum). One thread block per row; the row
 * is read twice (sum of squares, then scale), the second time from L1/L2. */
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* v1: float4 over the row (VEC, dim % 4 == 0) or scalar; block_sum for the sum of squares. */
template <bool ADD, bool VEC>
static __global__ void rmsnorm_kernel(twin_bf16 *__restrict__ y /* [n][dim] */,
                                      float *__restrict__ x /* [n][dim] */,
                                      const float *__restrict__ delta /* [n][dim] when ADD */,
                                      const twin_bf16 *__restrict__ w /* [dim] */, int dim,
                                      float eps) {
  pdl_enter();
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  float *xr = x + row * dim;
  __nv_bfloat16 *yr = reinterpret_cast<__nv_bfloat16 *>(y) + row * dim;
  const __nv_bfloat16 *wb = reinterpret_cast<const __nv_bfloat16 *>(w);

  float ss = 0.0f;
  if constexpr (VEC) {
    float4 *x4 = reinterpret_cast<float4 *>(xr);
    const float4 *d4 = ADD ? reinterpret_cast<const float4 *>(delta + row * dim) : nullptr;
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      float4 v = x4[i];
      if constexpr (ADD) {
        const float4 d = d4[i];
        v.x += d.x; v.y += d.y; v.z += d.z; v.w += d.w;
        x4[i] = v;
      }
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
      float v = xr[i];
      if constexpr (ADD) {
        v += delta[row * dim + i];
        xr[i] = v;
      }
      ss += v * v;
    }
  }
  ss = block_sum(ss, scratch);
  const float inv_rms = rsqrtf(ss / (float)dim + eps);

  if constexpr (VEC) {
    const float4 *x4 = reinterpret_cast<const float4 *>(xr);
    const uint2 *w4 = reinterpret_cast<const uint2 *>(wb);
    uint2 *y4 = reinterpret_cast<uint2 *>(yr);
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      const float4 v = x4[i]; /* this thread's own write when ADD */
      const uint2 wv = w4[i];
      const float2 w01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&wv.x));
      const float2 w23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&wv.y));
      uint2 out;
      *reinterpret_cast<__nv_bfloat162 *>(&out.x) =
          __floats2bfloat162_rn(v.x * inv_rms * w01.x, v.y * inv_rms * w01.y);
      *reinterpret_cast<__nv_bfloat162 *>(&out.y) =
          __floats2bfloat162_rn(v.z * inv_rms * w23.x, v.w * inv_rms * w23.y);
      y4[i] = out;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
      yr[i] = __float2bfloat16_rn(xr[i] * inv_rms * __bfloat162float(wb[i]));
  }
}

template <bool ADD>
static cudaError_t rmsnorm_launch(twin_bf16 *y, float *x, const float *delta, const twin_bf16 *w,
                                  int n, int dim, float eps, cudaStream_t stream) {
  if (n < 0 || dim <= 0 || !y || !x || !w || (ADD && !delta)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const bool vec = dim % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0 &&
                   (!ADD || (reinterpret_cast<uintptr_t>(delta) & 15) == 0) &&
                   (reinterpret_cast<uintptr_t>(y) & 7) == 0 &&
                   (reinterpret_cast<uintptr_t>(w) & 7) == 0;
  const int per_row = vec ? dim / 4 : dim;
  const int threads = per_row >= 1024 ? 1024 : per_row >= 256 ? 256 : ((per_row + 31) / 32) * 32;
  if (vec)
    return twin_launch(rmsnorm_kernel<ADD, true>, n, threads, 0, stream, y, x, delta, w, dim, eps);
  return twin_launch(rmsnorm_kernel<ADD, false>, n, threads, 0, stream, y, x, delta, w, dim, eps);
}

extern "C" cudaError_t twin_cuda_rmsnorm(twin_bf16 *y, const float *x, const twin_bf16 *w, int n,
                                         int dim, float eps, cudaStream_t stream) {
  /* the plain kernel never writes x */
  return rmsnorm_launch<false>(y, const_cast<float *>(x), nullptr, w, n, dim, eps, stream);
}

extern "C" cudaError_t twin_cuda_add_rmsnorm(twin_bf16 *y, float *x, const float *delta,
                                             const twin_bf16 *w, int n, int dim, float eps,
                                             cudaStream_t stream) {
  return rmsnorm_launch<true>(y, x, delta, w, n, dim, eps, stream);
}
