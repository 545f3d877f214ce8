/* llm-svc/backend/cuda/embedding.cu — embedding gather: rows of a bf16 table, picked by id, into
 * fp32 (the residual stream) or bf16 (gathering activation rows before the LM head); and the
 * fused decode step's first kernel, which adds to the gather what the first layer's normed
 * q/k/v projection and its RoPE need (twin_cuda_embed_step).
 * One thread block per output row; 16-byte loads when the row allows them. */
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* v1: one block per row, 8 bf16 (16 bytes) per thread per step. */
template <typename OutT>
static __global__ void embed_vec8_kernel(OutT *__restrict__ out /* [n][dim] */,
                                         const twin_bf16 *__restrict__ table /* [rows][dim] */,
                                         const int32_t *__restrict__ ids /* [n] */, int dim) {
  pdl_enter();
  const int t = blockIdx.x;
  const uint4 *src = reinterpret_cast<const uint4 *>(table + (size_t)ids[t] * dim);
  const int n_vec = dim / 8;
  for (int i = threadIdx.x; i < n_vec; i += blockDim.x) {
    const uint4 v = src[i];
    if constexpr (sizeof(OutT) == 4) {
      float f[8];
      bf16x8_to_f32(v, f);
      float4 *dst = reinterpret_cast<float4 *>(out + (size_t)t * dim) + 2 * i;
      dst[0] = make_float4(f[0], f[1], f[2], f[3]);
      dst[1] = make_float4(f[4], f[5], f[6], f[7]);
    } else {
      reinterpret_cast<uint4 *>(out + (size_t)t * dim)[i] = v;
    }
  }
}

/* Any dim: one element per thread per step. */
template <typename OutT>
static __global__ void embed_scalar_kernel(OutT *__restrict__ out, const twin_bf16 *__restrict__ table,
                                           const int32_t *__restrict__ ids, int dim) {
  pdl_enter();
  const int t = blockIdx.x;
  const twin_bf16 *src = table + (size_t)ids[t] * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    if constexpr (sizeof(OutT) == 4)
      out[(size_t)t * dim + i] = bf16_bits_to_f32(src[i]);
    else
      out[(size_t)t * dim + i] = src[i];
  }
}

/* Row t: x = table[ids[t]] in fp32 (as embed_vec8_kernel), sum_sq[t] = its sum of squares in
 * fixed point (kernels.h: TWIN_RMS_FRAC_BITS; one store, the block's fixed order of additions),
 * cos_sin[t] = the rotation table at positions[t] (as rope_table_kernel). dim % 8 == 0. */
static __global__ void embed_step_kernel(float *__restrict__ x /* [n][dim] */,
                                         uint64_t *__restrict__ sum_sq /* [n] */,
                                         float2 *__restrict__ cos_sin /* [n][half] */,
                                         const int32_t *__restrict__ positions /* [n] */,
                                         const double *__restrict__ inv_freq /* [half] */, int half,
                                         const twin_bf16 *__restrict__ table /* [rows][dim] */,
                                         const int32_t *__restrict__ ids /* [n] */, int dim) {
  __shared__ float scratch[32];
  pdl_enter();
  const int t = blockIdx.x;
  const double pos = (double)positions[t];
  for (int k = threadIdx.x; k < half; k += blockDim.x) {
    double s, c;
    sincos(pos * inv_freq[k], &s, &c);
    cos_sin[(size_t)t * half + k] = make_float2((float)c, (float)s);
  }
  const uint4 *src = reinterpret_cast<const uint4 *>(table + (size_t)ids[t] * dim);
  float4 *dst = reinterpret_cast<float4 *>(x + (size_t)t * dim);
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) {
    float f[8];
    bf16x8_to_f32(src[i], f);
    dst[2 * i] = make_float4(f[0], f[1], f[2], f[3]);
    dst[2 * i + 1] = make_float4(f[4], f[5], f[6], f[7]);
#pragma unroll
    for (int e = 0; e < 8; e++) ss = fmaf(f[e], f[e], ss);
  }
  ss = block_sum(ss, scratch);
  if (threadIdx.x == 0) sum_sq[t] = __float2ull_rn(ss * (float)(1u << TWIN_RMS_FRAC_BITS));
}

extern "C" cudaError_t twin_cuda_embed_step(float *x, uint64_t *sum_sq, float *cos_sin,
                                            const int32_t *positions, const double *inv_freq,
                                            int head_dim, const twin_bf16 *table,
                                            const int32_t *ids, int n, int dim,
                                            cudaStream_t stream) {
  if (n < 0 || dim <= 0 || dim % 8 != 0 || head_dim <= 0 || head_dim % 2 != 0 || !x || !sum_sq ||
      !cos_sin || !positions || !inv_freq || !table || !ids ||
      (reinterpret_cast<uintptr_t>(table) & 15) != 0 || (reinterpret_cast<uintptr_t>(x) & 15) != 0)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int threads = dim / 8 >= 256 ? 256 : ((dim / 8 + 31) / 32) * 32;
  return twin_launch(embed_step_kernel, n, threads, 0, stream, x, sum_sq,
                     reinterpret_cast<float2 *>(cos_sin), positions, inv_freq, head_dim / 2,
                     table, ids, dim);
}

template <typename OutT>
static cudaError_t embed_launch(OutT *out, const twin_bf16 *table, const int32_t *ids, int n, int dim,
                                cudaStream_t stream) {
  if (n < 0 || dim <= 0 || !out || !table || !ids) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const bool vec = dim % 8 == 0 && (reinterpret_cast<uintptr_t>(table) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(out) & 15) == 0;
  const int per_row = vec ? dim / 8 : dim;
  const int threads = per_row >= 256 ? 256 : ((per_row + 31) / 32) * 32;
  if (vec)
    return twin_launch(embed_vec8_kernel<OutT>, n, threads, 0, stream, out, table, ids, dim);
  return twin_launch(embed_scalar_kernel<OutT>, n, threads, 0, stream, out, table, ids, dim);
}

extern "C" cudaError_t twin_cuda_embed_f32(float *out, const twin_bf16 *table, const int32_t *ids,
                                           int n, int dim, cudaStream_t stream) {
  return embed_launch<float>(out, table, ids, n, dim, stream);
}

extern "C" cudaError_t twin_cuda_embed_bf16(twin_bf16 *out, const twin_bf16 *table,
                                            const int32_t *ids, int n, int dim,
                                            cudaStream_t stream) {
  return embed_launch<twin_bf16>(out, table, ids, n, dim, stream);
}
