/* llm-svc/backend/cuda/silu_mul.cu — the SwiGLU activation on the fused gate/up projection:
 * out = silu(gate) * up, where each row of the input holds gate then up (hidden values each).
 * Element-wise and memory-bound: 16-byte loads and stores, a grid-stride loop. */
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* v1: 8 outputs per item (one 16-byte load of gate, one of up, one store). */
static __global__ void silu_mul_vec8_kernel(uint4 *__restrict__ out /* [n][hidden/8] */,
                                            const uint4 *__restrict__ gate_up /* [n][2*hidden/8] */,
                                            int n, int hidden8) {
  pdl_enter();
  const size_t total = (size_t)n * hidden8;
  for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < total;
       k += (size_t)gridDim.x * blockDim.x) {
    const size_t t = k / hidden8, i = k % hidden8;
    float g[8], u[8], o[8];
    bf16x8_to_f32(gate_up[t * 2 * hidden8 + i], g);
    bf16x8_to_f32(gate_up[t * 2 * hidden8 + hidden8 + i], u);
#pragma unroll
    for (int e = 0; e < 8; e++) o[e] = silu(g[e]) * u[e];
    out[k] = f32_to_bf16x8(o);
  }
}

static __global__ void silu_mul_scalar_kernel(__nv_bfloat16 *__restrict__ out /* [n][hidden] */,
                                              const __nv_bfloat16 *__restrict__ gate_up /* [n][2*hidden] */,
                                              int n, int hidden) {
  pdl_enter();
  const size_t total = (size_t)n * hidden;
  for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < total;
       k += (size_t)gridDim.x * blockDim.x) {
    const size_t t = k / hidden, i = k % hidden;
    const float g = __bfloat162float(gate_up[t * 2 * hidden + i]);
    const float u = __bfloat162float(gate_up[t * 2 * hidden + hidden + i]);
    out[k] = __float2bfloat16_rn(silu(g) * u);
  }
}

extern "C" cudaError_t twin_cuda_silu_mul(twin_bf16 *out, const twin_bf16 *gate_up, int n,
                                          int hidden, cudaStream_t stream) {
  if (n < 0 || hidden <= 0 || !out || !gate_up) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const bool vec = hidden % 8 == 0 && (reinterpret_cast<uintptr_t>(out) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(gate_up) & 15) == 0;
  const size_t items = vec ? (size_t)n * (hidden / 8) : (size_t)n * hidden;
  const int threads = 256;
  size_t blocks = (items + threads - 1) / threads;
  if (blocks > 132 * 16) blocks = 132 * 16; /* a few waves of the chip; the loop does the rest */
  if (vec)
    return twin_launch(silu_mul_vec8_kernel, (unsigned)blocks, threads, 0, stream,
                       reinterpret_cast<uint4 *>(out), reinterpret_cast<const uint4 *>(gate_up),
                       n, hidden / 8);
  return twin_launch(silu_mul_scalar_kernel, (unsigned)blocks, threads, 0, stream,
                     reinterpret_cast<__nv_bfloat16 *>(out),
                     reinterpret_cast<const __nv_bfloat16 *>(gate_up), n, hidden);
}
