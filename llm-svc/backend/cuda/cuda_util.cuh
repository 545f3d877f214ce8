/* llm-svc/backend/cuda/cuda_util.cuh — helpers shared by the kernel files (CUDA C++ only):
 * bf16 <-> fp32 of 16-byte vectors, warp and block reductions, and programmatic dependent
 * launch (PDL): twin_launch and the pdl_* device calls. Everything here is static inline;
 * nothing is exported. */
#ifndef TWIN_BACKEND_CUDA_UTIL_CUH
#define TWIN_BACKEND_CUDA_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <utility>

#include "llm-svc/backend/cuda/kernels.h"

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

/* ---- shared arithmetic -----------------------------------------------------------------------
 * Used by the stand-alone kernels and by the fused projections, so both round alike. */

static __device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

/* Element offset of a token's cache slot in one layer's K (or V) cache, laid out
 * [blocks][n_kv][TWIN_CUDA_KV_BLOCK][hd] (kernels.h); KV head h adds h * TWIN_CUDA_KV_BLOCK * hd. */
static __device__ __forceinline__ size_t kv_slot_offset(int slot, int n_kv_heads, int hd) {
  return (size_t)(slot / TWIN_CUDA_KV_BLOCK) * n_kv_heads * TWIN_CUDA_KV_BLOCK * hd +
         (size_t)(slot % TWIN_CUDA_KV_BLOCK) * hd;
}

/* ---- loads of activations ---------------------------------------------------------------------
 * Data an earlier kernel on the stream wrote (activations, the residual stream, the KV cache).
 * Under programmatic dependent launch a kernel may start before that kernel ends, so such loads
 * must stay after pdl_wait(): __ldg / ld.global.nc are invariant loads the compiler may hoist
 * above it (it did, in the GEMVs: x was read before its producer had finished). These are
 * ordinary coherent loads in asm volatile, which keeps them in program order with the
 * griddepcontrol asm. They read through the L2 only (.cg): a kernel that waits on another
 * part of its own grid must never find an older copy in its L1. Weights and other data
 * nothing writes may use __ldg. */
static __device__ __forceinline__ uint4 ld_act_v4(const void *p) {
  uint4 v;
  asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
static __device__ __forceinline__ uint2 ld_act_v2(const void *p) {
  uint2 v;
  asm volatile("ld.global.cg.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}
/* the scalar forms: name, C type, pointer type, PTX type, asm constraint */
#define TWIN_LD_ACT_SCALAR(name, T, P, ptx, c)                                  \
  static __device__ __forceinline__ T name(const P *p) {                        \
    T v;                                                                        \
    asm volatile("ld.global.cg." ptx " %0, [%1];" : "=" c(v) : "l"(p));         \
    return v;                                                                   \
  }
TWIN_LD_ACT_SCALAR(ld_act_u16, uint16_t, void, "u16", "h")
TWIN_LD_ACT_SCALAR(ld_act_f32, float, float, "f32", "f")
TWIN_LD_ACT_SCALAR(ld_act_s32, int32_t, int32_t, "s32", "r")
TWIN_LD_ACT_SCALAR(ld_act_u64, uint64_t, uint64_t, "u64", "l")
#undef TWIN_LD_ACT_SCALAR
static __device__ __forceinline__ float4 ld_act_f4(const float *p) {
  float4 v;
  asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "l"(p));
  return v;
}

/* ---- order keys ----------------------------------------------------------------------------
 * Unsigned keys that sort like the floats they come from (sampling.cu's radix select), and
 * argmax keys: a value and its index folded into one u64 that atomicMax can combine in any
 * order: the value's order key in the high word (NaN counts as -inf, -0 as +0), the index's
 * complement in the low word, so the larger value wins and, on equal values, the lower index
 * (the rule of sampling.cu's scan). 0 is below every argmax key: "nothing yet". */
static __device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t b = __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
static __device__ __forceinline__ float key_value(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
static __device__ __forceinline__ uint64_t argmax_key(float v, int index) {
  if (isnan(v)) v = -INFINITY;
  if (v == 0.0f) v = 0.0f;
  return ((uint64_t)order_key(v) << 32) | (uint32_t)~(uint32_t)index;
}
static __device__ __forceinline__ int argmax_key_index(uint64_t key) {
  return (int)~(uint32_t)key;
}

/* ---- asynchronous copies to shared memory (cp.async) ----------------------------------------
 * The copy lands without passing through registers; cp_async_wait_all (then a barrier, for
 * other threads' copies) makes it visible. Sources follow the rules of the loads above. */
static __device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
/* 16 bytes global -> shared, bypassing L1; bytes past src_bytes (0 or 16) are zero-filled */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
static __device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
static __device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

/* y[o] = v + beta * y[o] (y not read when beta == 0), y fp32 when y_f32 else bf16 (rounded to
 * nearest even): how the projection kernels store an output element. */
static __device__ __forceinline__ void store_out(void *y, int y_f32, size_t o, float v,
                                                 float beta) {
  if (y_f32) {
    float *yf = static_cast<float *>(y);
    if (beta != 0.0f) v = fmaf(beta, ld_act_f32(yf + o), v);
    yf[o] = v;
  } else {
    __nv_bfloat16 *yb = static_cast<__nv_bfloat16 *>(y);
    if (beta != 0.0f) v = fmaf(beta, bf16_bits_to_f32(ld_act_u16(yb + o)), v);
    yb[o] = __float2bfloat16_rn(v);
  }
}

/* ---- programmatic dependent launch -----------------------------------------------------------
 * A kernel launched through twin_launch may be scheduled while the kernel before it on the
 * stream is still running (sm_90 PDL), which hides the launch gap between small decode kernels
 * and lets a projection start streaming its weights early. Contract for such a kernel: every
 * thread calls pdl_wait() (or pdl_enter()) before it touches memory an earlier kernel writes or
 * reads (activations, the KV cache, outputs), on every path, early returns included; only
 * memory no kernel on the stream writes (weights, the step's metadata) may be read before. A
 * block that touches none of it may leave without waiting, provided one block of the grid
 * always waits: the kernel must not end before its predecessor. pdl_wait returns once the
 * previous kernel has completed and its writes are visible, and since that kernel waited for
 * its own predecessor the same way, for everything before it too, whenever the trigger came.
 * pdl_trigger() lets the next kernel be scheduled before this one ends. TWIN_CUDA_PDL=0 in the
 * environment turns the early launch off (the calls then return at once). */
static __device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* The usual start of a kernel that reads nothing before its predecessor is done. */
static __device__ __forceinline__ void pdl_enter() {
  pdl_wait();
  pdl_trigger();
}

/* 1 unless the environment has TWIN_CUDA_PDL=0 (read once per file that launches). */
static inline int twin_cuda_pdl_enabled() {
  static const int enabled = twin_cuda_env_on("TWIN_CUDA_PDL");
  return enabled;
}

/* 1 unless the environment has TWIN_CUDA_PDL_EARLY=0: the GEMV and decode attention kernels
 * call pdl_trigger() at their start, before their wait, so that the next kernel's blocks can
 * take the room this one leaves on each multiprocessor and issue their first weight loads
 * while it runs (its wait still returns only once this kernel has ended). Read once per file. */
static inline int twin_cuda_pdl_early() {
  static const int enabled = twin_cuda_env_on("TWIN_CUDA_PDL_EARLY");
  return enabled;
}

/* kernel<<<grid, block, smem, stream>>>(args...) with the PDL attribute (see above). Returns the
 * launch's error. */
template <typename... Params, typename... Args>
static inline cudaError_t twin_launch(void (*kernel)(Params...), dim3 grid, dim3 block,
                                      size_t smem, cudaStream_t stream, Args &&...args) {
  cudaLaunchAttribute attr;
  memset(&attr, 0, sizeof attr);
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = twin_cuda_pdl_enabled();
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

#endif
