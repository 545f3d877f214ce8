/* llm-svc/backend/cuda/rope_kv.cu — rotary position embedding fused with the KV-cache write.
 * Once a step, a table of cos/sin(position * inv_freq) per token, computed in double like the
 * CPU reference (an fp32 angle is off by ~0.004 rad at position 1e5). Then per layer, each
 * token's fused QKV row is read once: the optional projection bias added, q rotated in place and
 * k into its cache slot (HF rotate_half pairing, i with i + hd/2), v copied to the cache. */
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* v1: one thread per (token, frequency); double angle and sincos, rounded to fp32. */
static __global__ void rope_table_kernel(float2 *__restrict__ cos_sin /* [n][hd/2] */,
                                         const int32_t *__restrict__ positions /* [n] */,
                                         const double *__restrict__ inv_freq /* [hd/2] */, int n,
                                         int half) {
  pdl_enter();
  const size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (k >= (size_t)n * half) return;
  const double angle = (double)positions[k / half] * inv_freq[k % half];
  double s, c;
  sincos(angle, &s, &c);
  cos_sin[k] = make_float2((float)c, (float)s);
}

/* v1: one thread block per token; each work item is two adjacent rotation pairs (bf16x2 loads)
 * or two adjacent v elements. */
static __global__ void rope_kv_kernel(__nv_bfloat16 *__restrict__ qkv /* [n][(nh+2*nkv)*hd] */,
                                      const __nv_bfloat16 *__restrict__ bias /* [(nh+2*nkv)*hd] | NULL */,
                                      const float2 *__restrict__ cos_sin /* [n][hd/2] */,
                                      const int32_t *__restrict__ slot_mapping /* [n] */,
                                      __nv_bfloat16 *__restrict__ k_cache /* [blocks][nkv][16][hd] */,
                                      __nv_bfloat16 *__restrict__ v_cache /* [blocks][nkv][16][hd] */,
                                      int n_heads, int n_kv_heads, int hd) {
  pdl_enter();
  const int t = blockIdx.x;
  const int row_len = (n_heads + 2 * n_kv_heads) * hd;
  __nv_bfloat16 *row = qkv + (size_t)t * row_len;
  const float2 *cs = cos_sin + (size_t)t * (hd / 2);
  const int slot = slot_mapping[t];
  const int half = hd / 2;
  const int pairs2_per_head = half / 2;               /* items per head: two pairs each */
  const int n_rot = (n_heads + n_kv_heads) * pairs2_per_head;
  const int n_v = n_kv_heads * hd / 2;                /* items: two v elements each */
  const size_t slot_off = slot >= 0 ? kv_slot_offset(slot, n_kv_heads, hd) : 0;

  for (int j = threadIdx.x; j < n_rot + n_v; j += blockDim.x) {
    if (j < n_rot) {
      const int head = j / pairs2_per_head;           /* q heads, then k heads */
      const int i = (j % pairs2_per_head) * 2;
      const int base = head * hd;
      float2 x0 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(row + base + i));
      float2 x1 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(row + base + i + half));
      if (bias) {
        const float2 b0 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(bias + base + i));
        const float2 b1 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(bias + base + i + half));
        x0.x += b0.x; x0.y += b0.y; x1.x += b1.x; x1.y += b1.y;
      }
      const float c0 = cs[i].x, s0 = cs[i].y, c1 = cs[i + 1].x, s1 = cs[i + 1].y;
      const __nv_bfloat162 lo = __floats2bfloat162_rn(x0.x * c0 - x1.x * s0, x0.y * c1 - x1.y * s1);
      const __nv_bfloat162 hi = __floats2bfloat162_rn(x1.x * c0 + x0.x * s0, x1.y * c1 + x0.y * s1);
      __nv_bfloat16 *dst;
      if (head < n_heads) {
        dst = row + base;
      } else if (slot >= 0) {
        dst = k_cache + slot_off + (size_t)(head - n_heads) * TWIN_CUDA_KV_BLOCK * hd;
      } else {
        continue;
      }
      *reinterpret_cast<__nv_bfloat162 *>(dst + i) = lo;
      *reinterpret_cast<__nv_bfloat162 *>(dst + i + half) = hi;
    } else if (slot >= 0) {
      const int e = (j - n_rot) * 2;                  /* element within the v part */
      const int kh = e / hd, d = e % hd;
      const int src = (n_heads + n_kv_heads) * hd + e;
      __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162 *>(row + src);
      if (bias) {
        const float2 vf = __bfloat1622float2(v);
        const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(bias + src));
        v = __floats2bfloat162_rn(vf.x + b.x, vf.y + b.y);
      }
      *reinterpret_cast<__nv_bfloat162 *>(v_cache + slot_off +
                                          (size_t)kh * TWIN_CUDA_KV_BLOCK * hd + d) = v;
    }
  }
}

extern "C" cudaError_t twin_cuda_rope_table(float *cos_sin, const int32_t *positions,
                                             const double *inv_freq, int n, int head_dim,
                                             cudaStream_t stream) {
  if (n < 0 || head_dim <= 0 || head_dim % 2 != 0 || !cos_sin || !positions || !inv_freq)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const size_t items = (size_t)n * (head_dim / 2);
  return twin_launch(rope_table_kernel, (unsigned)((items + 255) / 256), 256, 0, stream,
                     reinterpret_cast<float2 *>(cos_sin), positions, inv_freq, n, head_dim / 2);
}

extern "C" cudaError_t twin_cuda_rope_kv_write(twin_bf16 *qkv, const twin_bf16 *qkv_bias,
                                               const float *cos_sin,
                                               const int32_t *slot_mapping, twin_bf16 *k_cache,
                                               twin_bf16 *v_cache, int n, int n_heads,
                                               int n_kv_heads, int head_dim,
                                               cudaStream_t stream) {
  if (n < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || head_dim % 4 != 0 || !qkv ||
      !cos_sin || !slot_mapping || !k_cache || !v_cache ||
      (reinterpret_cast<uintptr_t>(cos_sin) & 7) != 0)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return twin_launch(rope_kv_kernel, n, 128, 0, stream, reinterpret_cast<__nv_bfloat16 *>(qkv),
                     reinterpret_cast<const __nv_bfloat16 *>(qkv_bias),
                     reinterpret_cast<const float2 *>(cos_sin), slot_mapping,
                     reinterpret_cast<__nv_bfloat16 *>(k_cache),
                     reinterpret_cast<__nv_bfloat16 *>(v_cache), n_heads, n_kv_heads, head_dim);
}
