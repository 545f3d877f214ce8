/* llm-svc/backend/cuda/embedding.cu — embedding gather: rows of a bf16 table, picked by id, into
 * fp32 (the residual stream) or bf16 (gathering activation rows before the LM head).
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
