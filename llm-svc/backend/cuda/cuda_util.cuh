/* llm-svc/backend/cuda/cuda_util.cuh — device helpers shared by the kernel files (CUDA C++ only):
 * bf16 <-> fp32 of 16-byte vectors, warp and block reductions. Everything here is
 * static __device__ inline; nothing is exported. */
#ifndef TWIN_BACKEND_CUDA_UTIL_CUH
#define TWIN_BACKEND_CUDA_UTIL_CUH

#include <cuda_bf16.h>
#include <stdint.h>

#define TWIN_FULL_MASK 0xffffffffu

/* 8 bf16 values packed in 16 bytes (one vector load). */
static __device__ __forceinline__ void bf16x8_to_f32(const uint4 v, float f[8]) {
  const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 p = __bfloat1622float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

static __device__ __forceinline__ uint4 f32_to_bf16x8(const float f[8]) {
  uint4 v;
  __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&v);
#pragma unroll
  for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

static __device__ __forceinline__ float bf16_bits_to_f32(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(TWIN_FULL_MASK, v, o);
  return v;
}

static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(TWIN_FULL_MASK, v, o));
  return v;
}

/* Sum over the whole thread block (blockDim.x a multiple of 32, <= 1024); every thread gets the
 * result. scratch: 32 floats of shared memory, reusable after the call returns. */
static __device__ __forceinline__ float block_sum(float v, float *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads(); /* scratch may still be read by a previous call */
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

static __device__ __forceinline__ float block_max(float v, float *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

#endif
