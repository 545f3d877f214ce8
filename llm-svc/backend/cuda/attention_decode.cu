/* llm-svc/backend/cuda/attention_decode.cu — the decode attention kernels: one unit of
 * attention_decode_unit.cuh per thread block of 4 warps (grid: splits x (KV heads x G/GH) x
 * sequences), launched with programmatic dependent launch, and the reduce kernel that combines
 * the splits when no split counters are given. */
#include "llm-svc/backend/cuda/attention_decode_unit.cuh"
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

#define DECODE_WARPS 4
#define DECODE_THREADS (DECODE_WARPS * 32)

/* The previous kernel's end (pdl_enter also lets the next kernel be scheduled); a unit with
 * nothing to do still waits: no block ends before the previous kernel has, the next one relies
 * on it. */
struct pdl_unit_waiter {
  __device__ __forceinline__ void operator()(bool) const { pdl_enter(); }
  __device__ __forceinline__ void skip() const { pdl_enter(); }
};

template <int HD, int GH>
static __global__ void __launch_bounds__(DECODE_THREADS)
attn_decode_kernel(__nv_bfloat16 *__restrict__ out, const __nv_bfloat16 *__restrict__ q,
                   int q_stride, const __nv_bfloat16 *__restrict__ k_cache,
                   const __nv_bfloat16 *__restrict__ v_cache, const int32_t *__restrict__ seqs,
                   const int32_t *__restrict__ seq_start, const int32_t *__restrict__ seq_len,
                   const int32_t *__restrict__ block_tables, int max_blocks, int n_heads,
                   int n_kv_heads, float scale_log2, int window,
                   const int32_t *__restrict__ partition_dev, int max_splits,
                   float *__restrict__ part_acc, float *__restrict__ part_ml,
                   unsigned *__restrict__ split_counters) {
  __shared__ __align__(16) char smem[attn_decode_unit_smem<HD, GH, DECODE_WARPS>()];
  attn_decode_unit<HD, GH, DECODE_WARPS>(out, q, q_stride, k_cache, v_cache, seqs, seq_start,
                                         seq_len, block_tables, max_blocks, n_heads, n_kv_heads,
                                         scale_log2, window, partition_dev, max_splits, part_acc,
                                         part_ml, split_counters, (int)blockIdx.x,
                                         (int)blockIdx.y, (int)blockIdx.z, (int)gridDim.y,
                                         pdl_unit_waiter{}, smem);
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
  const int ctx = seq_len[s];
  const int partition = *partition_dev;
  const int win_start = window > 0 ? max(0, ctx - window) : 0;
  const int first_tok = win_start / TWIN_CUDA_KV_BLOCK * TWIN_CUDA_KV_BLOCK;
  const int n_splits = (ctx - first_tok + partition - 1) / partition;
  if (n_splits <= 1) return;
  const int row = seq_start[s + 1] - 1;
  out[(size_t)row * n_heads * hd + head * hd + d] = __float2bfloat16_rn(
      combine_splits(part_acc, part_ml, ((size_t)i * n_heads + head) * max_splits, n_splits, hd, d));
}

/* ---- launcher ------------------------------------------------------------------------------ */

template <int HD>
static cudaError_t launch_main(int gh, dim3 grid, cudaStream_t stream, __nv_bfloat16 *out,
                        const __nv_bfloat16 *q, int q_stride, const __nv_bfloat16 *kc,
                        const __nv_bfloat16 *vc, const int32_t *seqs, const int32_t *seq_start,
                        const int32_t *seq_len, const int32_t *bt, int max_blocks, int nh, int nkv,
                        float scale_log2, int window, const int32_t *partition, int max_splits,
                        float *pa, float *pml, unsigned *counters) {
#define TWIN_DECODE_CASE(GHV)                                                                    \
  case GHV:                                                                                      \
    return twin_launch(attn_decode_kernel<HD, GHV>, grid, DECODE_THREADS, 0, stream, out, q,     \
                       q_stride, kc, vc, seqs, seq_start, seq_len, bt, max_blocks, nh, nkv,      \
                       scale_log2, window, partition, max_splits, pa, pml, counters);
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

extern "C" cudaError_t twin_cuda_attention_decode(
    twin_bf16 *out, const twin_bf16 *q, int q_stride, const twin_bf16 *k_cache,
    const twin_bf16 *v_cache, const int32_t *seqs, const int32_t *seq_start,
    const int32_t *seq_len, const int32_t *block_tables, int max_blocks, int n_decode,
    int n_heads, int n_kv_heads, int head_dim, float scale, int window,
    const int32_t *partition_tokens, int max_splits, float *part_acc, float *part_ml,
    unsigned *split_counters, cudaStream_t stream) {
  if (n_decode < 0 || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 ||
      n_heads / n_kv_heads > TWIN_CUDA_MAX_GQA || (head_dim != 64 && head_dim != 128) ||
      q_stride % 8 != 0 || !partition_tokens || max_splits < 1 || max_splits > 65535 ||
      max_blocks < 1 || !out || !q || !k_cache || !v_cache || !seqs || !seq_start || !seq_len ||
      !block_tables || (max_splits > 1 && (!part_acc || !part_ml)) ||
      (reinterpret_cast<uintptr_t>(q) & 15) != 0 || n_decode > 65535)
    return cudaErrorInvalidValue;
  if (n_decode == 0) return cudaSuccess;
  const int group = n_heads / n_kv_heads;
  const int gh = attn_heads_per_block(group, head_dim);
  const dim3 grid(max_splits, n_kv_heads * (group / gh), n_decode);
  const float scale_log2 = scale * LOG2E;
  auto *o = reinterpret_cast<__nv_bfloat16 *>(out);
  const auto *qb = reinterpret_cast<const __nv_bfloat16 *>(q);
  const auto *kc = reinterpret_cast<const __nv_bfloat16 *>(k_cache);
  const auto *vc = reinterpret_cast<const __nv_bfloat16 *>(v_cache);
  cudaError_t e;
  if (head_dim == 64)
    e = launch_main<64>(gh, grid, stream, o, qb, q_stride, kc, vc, seqs, seq_start, seq_len,
                    block_tables, max_blocks, n_heads, n_kv_heads, scale_log2, window,
                    partition_tokens, max_splits, part_acc, part_ml, split_counters);
  else
    e = launch_main<128>(gh, grid, stream, o, qb, q_stride, kc, vc, seqs, seq_start, seq_len,
                     block_tables, max_blocks, n_heads, n_kv_heads, scale_log2, window,
                     partition_tokens, max_splits, part_acc, part_ml, split_counters);
  if (e != cudaSuccess || max_splits == 1 || split_counters) return e;
  return twin_launch(attn_decode_reduce_kernel, dim3(n_decode, n_heads), head_dim, 0, stream, o,
                     seqs, seq_start, seq_len, n_heads, head_dim, window, partition_tokens,
                     max_splits, part_acc, part_ml);
}
