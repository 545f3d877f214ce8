/* llm-svc/backend/cuda/attention_decode.cu — the decode attention kernels: one unit of
 * attention_decode_unit.cuh per thread block (grid: (KV heads x G/GH) x sequences x splits),
 * launched with programmatic dependent launch, in two forms: 4 warps, or for small steps a wide
 * form whose warps each pre-load one KV block of the split before the wait; and the reduce
 * kernel that combines the splits when no split counters are given. */

#include <atomic>

#include "llm-svc/backend/cuda/attention_decode_unit.cuh"
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* Warps per thread block. The base form: 4. The wide form: as many as fit one SM's registers
 * without spilling (ptxas -v at __launch_bounds__(32 * warps), sm_90): its split of 16 * warps
 * keys has one KV block per warp, all read before the wait. Head dim 64: 16 warps (128
 * registers a thread) hold GH <= 4 (GH 4: 128, no spill), GH 5..8 need 181-214, so 8 warps;
 * head dim 128: GH 4 takes 235, so 8 warps. */
#define DECODE_WARPS 4
static constexpr int decode_wide_warps(int hd, int gh) {
  return hd == 64 ? (gh <= 4 ? 16 : 8) : 8;
}

/* The previous kernel's end (pdl_enter also lets the next kernel be scheduled, unless the
 * kernel did at its start: early). A unit with nothing to do (a split past its sequence's
 * context: a graph's grid has every split its bucket may need) leaves at once, so that the
 * multiprocessor it holds is free for the next kernel's blocks; only the grid's first block
 * waits then too, so the kernel never ends before the previous one has (the next kernel's
 * wait relies on it). */
struct pdl_unit_waiter {
  int early;
  __device__ __forceinline__ void operator()(bool) const { early ? pdl_wait() : pdl_enter(); }
  __device__ __forceinline__ void skip() const {
    if ((blockIdx.x | blockIdx.y | blockIdx.z) == 0) early ? pdl_wait() : pdl_enter();
  }
};

template <int HD, int GH, int WARPS>
static __global__ void __launch_bounds__(WARPS * 32)
attn_decode_kernel(__nv_bfloat16 *__restrict__ out, const __nv_bfloat16 *__restrict__ q,
                   int q_stride, const __nv_bfloat16 *__restrict__ k_cache,
                   const __nv_bfloat16 *__restrict__ v_cache, const int32_t *__restrict__ seqs,
                   const int32_t *__restrict__ seq_start, const int32_t *__restrict__ seq_len,
                   const int32_t *__restrict__ block_tables, int max_blocks, int n_heads,
                   int n_kv_heads, float scale_log2, int window,
                   const int32_t *__restrict__ partition_dev, int max_splits,
                   float *__restrict__ part_acc, float *__restrict__ part_ml,
                   unsigned *__restrict__ split_counters, int early /* twin_cuda_pdl_early */) {
  if (early) pdl_trigger();
  static_assert(attn_decode_unit_smem<HD, GH, WARPS>() <= 48 * 1024, "static shared memory");
  __shared__ __align__(16) char smem[attn_decode_unit_smem<HD, GH, WARPS>()];
  attn_decode_unit<HD, GH, WARPS>(out, q, q_stride, k_cache, v_cache, seqs, seq_start, seq_len,
                                  block_tables, max_blocks, n_heads, n_kv_heads, scale_log2,
                                  window, partition_dev, max_splits, part_acc, part_ml,
                                  split_counters, (int)blockIdx.z, (int)blockIdx.x,
                                  (int)blockIdx.y, (int)gridDim.x, pdl_unit_waiter{early}, smem);
}

/* v1: one thread block per (sequence, query head), one thread per output column. Sequences whose
 * context fit one partition were finished by the main kernel and are skipped. */
static __global__ void attn_decode_reduce_kernel(
    __nv_bfloat16 *__restrict__ out, const int32_t *__restrict__ seqs,
    const int32_t *__restrict__ seq_start, const int32_t *__restrict__ seq_len, int n_heads,
    int hd, int window, const int32_t *__restrict__ partition_dev, int max_splits,
    const float *__restrict__ part_acc,
    const float *__restrict__ part_ml) {
  pdl_enter();
  const int i = blockIdx.x, head = blockIdx.y, d = threadIdx.x;
  const int s = seqs[i];
  const int n_splits = decode_span_of(seq_len[s], window, *partition_dev).n_splits;
  if (n_splits <= 1) return;
  const int row = seq_start[s + 1] - 1;
  out[(size_t)row * n_heads * hd + head * hd + d] = __float2bfloat16_rn(
      combine_splits(part_acc, part_ml, ((size_t)i * n_heads + head) * max_splits, n_splits, hd, d));
}

/* ---- launcher ------------------------------------------------------------------------------ */

/* The kernel of (HD, GH) with `warps` warps (DECODE_WARPS or decode_wide_warps(HD, GH)). */
template <int HD, int GH, typename... Args>
static cudaError_t launch_form(int warps, dim3 grid, cudaStream_t stream, Args... args) {
  constexpr int WIDE = decode_wide_warps(HD, GH);
  if (warps == DECODE_WARPS)
    return twin_launch(attn_decode_kernel<HD, GH, DECODE_WARPS>, grid, DECODE_WARPS * 32, 0,
                       stream, args...);
  if constexpr (WIDE != DECODE_WARPS) {
    if (warps == WIDE)
      return twin_launch(attn_decode_kernel<HD, GH, WIDE>, grid, WIDE * 32, 0, stream, args...);
  }
  return cudaErrorInvalidValue;
}

template <int HD, typename... Args>
static cudaError_t launch_main(int gh, int warps, dim3 grid, cudaStream_t stream, Args... args) {
#define TWIN_DECODE_CASE(GHV) \
  case GHV:                   \
    return launch_form<HD, GHV>(warps, grid, stream, args...);
  switch (gh) {
    TWIN_DECODE_CASE(1)
    TWIN_DECODE_CASE(2)
    TWIN_DECODE_CASE(3)
    TWIN_DECODE_CASE(4)
    default:
      if constexpr (HD == 64) {
        switch (gh) {
          TWIN_DECODE_CASE(5)
          TWIN_DECODE_CASE(6)
          TWIN_DECODE_CASE(7)
          TWIN_DECODE_CASE(8)
          default: break;
        }
      }
      break;
  }
#undef TWIN_DECODE_CASE
  return cudaErrorInvalidValue;
}

/* Multiprocessors of the current device (0 when it cannot be queried), asked of the driver
 * once a device: the backend plans every decode step with it. */
static int current_device_sms() {
  constexpr int kDevices = 64;
  static std::atomic<int> known[kDevices];
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return 0;
  if (dev < kDevices && (sms = known[dev].load(std::memory_order_relaxed)) > 0) return sms;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
  if (dev < kDevices) known[dev].store(sms, std::memory_order_relaxed);
  return sms;
}

/* 0 when the environment has TWIN_CUDA_ATTN_WIDE=0 (the 4-warp form always), read once. */
static int wide_enabled() {
  static const int enabled = twin_cuda_env_on("TWIN_CUDA_ATTN_WIDE");
  return enabled;
}

static bool decode_shape_ok(int n_heads, int n_kv_heads, int head_dim) {
  return n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0 &&
         n_heads / n_kv_heads <= TWIN_CUDA_MAX_GQA && (head_dim == 64 || head_dim == 128);
}

extern "C" int twin_cuda_attention_decode_warps(int n_decode, int n_heads, int n_kv_heads,
                                                int head_dim) {
  if (n_decode < 0 || !decode_shape_ok(n_heads, n_kv_heads, head_dim)) return 0;
  const int group = n_heads / n_kv_heads;
  const int gh = attn_heads_per_block(group, head_dim);
  const long pairs = (long)n_decode * n_kv_heads * (group / gh); /* (sequence, head group) */
  const int sms = current_device_sms();
  return wide_enabled() && sms > 0 && pairs <= sms / 2 ? decode_wide_warps(head_dim, gh)
                                                      : DECODE_WARPS;
}

extern "C" cudaError_t twin_cuda_attention_decode_ex(
    twin_bf16 *out, const twin_bf16 *q, int q_stride, const twin_bf16 *k_cache,
    const twin_bf16 *v_cache, const int32_t *seqs, const int32_t *seq_start,
    const int32_t *seq_len, const int32_t *block_tables, int max_blocks, int n_decode,
    int n_heads, int n_kv_heads, int head_dim, float scale, int window,
    const int32_t *partition_tokens, int max_splits, float *part_acc, float *part_ml,
    unsigned *split_counters, int warps, cudaStream_t stream) {
  if (n_decode < 0 || !decode_shape_ok(n_heads, n_kv_heads, head_dim) || q_stride % 8 != 0 ||
      !partition_tokens || max_splits < 1 || max_splits > 65535 || max_blocks < 1 || !out || !q ||
      !k_cache || !v_cache || !seqs || !seq_start || !seq_len || !block_tables ||
      (max_splits > 1 && (!part_acc || !part_ml)) || (reinterpret_cast<uintptr_t>(q) & 15) != 0 ||
      n_decode > 65535)
    return cudaErrorInvalidValue;
  const int group = n_heads / n_kv_heads;
  const int gh = attn_heads_per_block(group, head_dim);
  if (warps == 0) warps = twin_cuda_attention_decode_warps(n_decode, n_heads, n_kv_heads, head_dim);
  if (warps != DECODE_WARPS && warps != decode_wide_warps(head_dim, gh))
    return cudaErrorInvalidValue;
  if (n_decode == 0) return cudaSuccess;
  /* split-major: blocks start in index order, so the first splits (the only ones a short
   * context has) go first, before the spare ones that leave at once */
  const dim3 grid(n_kv_heads * (group / gh), n_decode, max_splits);
  const float scale_log2 = scale * LOG2E;
  auto *o = reinterpret_cast<__nv_bfloat16 *>(out);
  const auto *qb = reinterpret_cast<const __nv_bfloat16 *>(q);
  const auto *kc = reinterpret_cast<const __nv_bfloat16 *>(k_cache);
  const auto *vc = reinterpret_cast<const __nv_bfloat16 *>(v_cache);
  cudaError_t e;
  if (head_dim == 64)
    e = launch_main<64>(gh, warps, grid, stream, o, qb, q_stride, kc, vc, seqs, seq_start,
                        seq_len, block_tables, max_blocks, n_heads, n_kv_heads, scale_log2,
                        window, partition_tokens, max_splits, part_acc, part_ml, split_counters,
                        twin_cuda_pdl_early());
  else
    e = launch_main<128>(gh, warps, grid, stream, o, qb, q_stride, kc, vc, seqs, seq_start,
                         seq_len, block_tables, max_blocks, n_heads, n_kv_heads, scale_log2,
                         window, partition_tokens, max_splits, part_acc, part_ml, split_counters,
                         twin_cuda_pdl_early());
  if (e != cudaSuccess || max_splits == 1 || split_counters) return e;
  return twin_launch(attn_decode_reduce_kernel, dim3(n_decode, n_heads), head_dim, 0, stream, o,
                     seqs, seq_start, seq_len, n_heads, head_dim, window, partition_tokens,
                     max_splits, part_acc, part_ml);
}

extern "C" cudaError_t twin_cuda_attention_decode(
    twin_bf16 *out, const twin_bf16 *q, int q_stride, const twin_bf16 *k_cache,
    const twin_bf16 *v_cache, const int32_t *seqs, const int32_t *seq_start,
    const int32_t *seq_len, const int32_t *block_tables, int max_blocks, int n_decode,
    int n_heads, int n_kv_heads, int head_dim, float scale, int window,
    const int32_t *partition_tokens, int max_splits, float *part_acc, float *part_ml,
    unsigned *split_counters, cudaStream_t stream) {
  return twin_cuda_attention_decode_ex(out, q, q_stride, k_cache, v_cache, seqs, seq_start,
                                       seq_len, block_tables, max_blocks, n_decode, n_heads,
                                       n_kv_heads, head_dim, scale, window, partition_tokens,
                                       max_splits, part_acc, part_ml, split_counters, 0, stream);
}
