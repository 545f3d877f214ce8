/* llm-svc/backend/cuda/attention_decode.cu — paged attention for one query per sequence (decode).
 * GQA-aware: a thread block serves the query heads that share one KV head, so each K/V block is
 * read from memory once for all of them. Long contexts are split over several thread blocks
 * (split-K, `partition` keys each, read from device memory so that a captured CUDA graph serves
 * any context length) whose partial softmax states a reduce kernel combines.
 *
 * Work of one thread block (4 warps): one (sequence, KV head, split). Warp w takes the KV blocks
 * w, w+4, ... of the split. Within a warp, lane = 8*rg + cl: the 8 lanes of row group rg hold
 * the block's rows rg, rg+4, rg+8, rg+12, lane cl holding columns j*64 + cl*8 .. +7 of each row
 * (16-byte loads; 8 lanes cover 128 contiguous bytes of a row per load). A q.k dot product is
 * then 8 lanes' partial sums and 3 shuffles; each row group keeps its own online-softmax state
 * (max, sum, output slice) over the rows it saw, merged at the end across row groups (shuffles),
 * warps (shared memory) and splits: with split counters, the last split block of a (sequence,
 * KV head) to finish combines the splits' partials itself (a counter per pair, put back to zero
 * by that block), else a reduce kernel does. Both add the splits in split order.
 * Launched early (programmatic dependent launch): before waiting for the q/k/v kernel a block
 * reads the step's metadata and its warps' first KV block, keys and values of earlier steps;
 * after the wait, q and the new token's row (which that kernel has just written). */
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

#define DECODE_WARPS 4
#define DECODE_THREADS (DECODE_WARPS * 32)
#define LOG2E 1.4426950408889634f

/* exp2 of (x - m) where the max m may still be -inf (nothing seen): treat it as 0. */
static __device__ __forceinline__ float safe_max(float m) { return m == -INFINITY ? 0.0f : m; }

/* O / L of one output column over a sequence's splits, added in split order (the split blocks
 * wrote their partials; read through L2). */
static __device__ __forceinline__ float combine_splits(const float *part_acc, const float *part_ml,
                                                       size_t first, int n_splits, int hd, int d) {
  float mx = -INFINITY;
#pragma unroll 8
  for (int j = 0; j < n_splits; j++) mx = fmaxf(mx, __ldcg(part_ml + (first + j) * 2));
  float L = 0.0f, O = 0.0f;
#pragma unroll 8
  for (int j = 0; j < n_splits; j++) {
    const float c = exp2f(__ldcg(part_ml + (first + j) * 2) - mx);
    L += __ldcg(part_ml + (first + j) * 2 + 1) * c;
    O += __ldcg(part_acc + (first + j) * hd + d) * c;
  }
  return O / L;
}

/* v1. HD: head dim (64 or 128). GH: query heads served by this block (a divisor of the GQA group
 * size G; the grid's y covers n_kv_heads * G/GH blocks). */
template <int HD, int GH>
static __global__ void __launch_bounds__(DECODE_THREADS)
attn_decode_kernel(__nv_bfloat16 *__restrict__ out /* [rows][n_heads*HD] */,
                   const __nv_bfloat16 *__restrict__ q /* row r head h at r*q_stride + h*HD */,
                   int q_stride,
                   const __nv_bfloat16 *__restrict__ k_cache /* [blocks][n_kv][16][HD] */,
                   const __nv_bfloat16 *__restrict__ v_cache /* [blocks][n_kv][16][HD] */,
                   const int32_t *__restrict__ seqs /* [n_decode] */,
                   const int32_t *__restrict__ seq_start, const int32_t *__restrict__ seq_len,
                   const int32_t *__restrict__ block_tables /* [*][max_blocks] */, int max_blocks,
                   int n_heads, int n_kv_heads, float scale_log2, int window,
                   const int32_t *__restrict__ partition_dev /* [1] */, int max_splits,
                   float *__restrict__ part_acc /* [n_decode][n_heads][max_splits][HD] */,
                   float *__restrict__ part_ml /* [n_decode][n_heads][max_splits][2] */,
                   unsigned *__restrict__ split_counters /* [n_decode][gridDim.y] or NULL */) {
  /* Before the wait (kernels.h): the metadata and the keys and values of earlier steps. */
  constexpr int NC = HD / 64;  /* 16-byte chunks per lane per row */
  constexpr int E = NC * 8;    /* columns per lane */
  const int split = blockIdx.x, i = blockIdx.z;
  const int group = n_heads / n_kv_heads;
  const int subs = group / GH;
  const int g = blockIdx.y / subs;                        /* KV head */
  const int head0 = g * group + (blockIdx.y % subs) * GH; /* first query head served */
  const int s = seqs[i];
  const int ctx = seq_len[s];
  const int partition = *partition_dev;
  /* keys [win_start, ctx); splits of `partition` keys from the block holding win_start */
  const int win_start = window > 0 ? max(0, ctx - window) : 0;
  const int first_tok = win_start / TWIN_CUDA_KV_BLOCK * TWIN_CUDA_KV_BLOCK;
  const int n_splits = (ctx - first_tok + partition - 1) / partition;
  if (split >= n_splits) { /* the whole block leaves together (ctx 0: padding) */
    pdl_enter(); /* no block ends before the previous kernel has: the next one relies on it */
    return;
  }
  const int t_begin = first_tok + split * partition;
  const int t_end = min(ctx, t_begin + partition);
  const int row = seq_start[s + 1] - 1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int rg = lane >> 3, cl = lane & 7;
  const int32_t *btab = block_tables + (size_t)s * max_blocks;

  /* this warp's first KV block, all 16 rows: lane (rg, cl) holds rows rg + 4*r4, columns
   * j*64 + cl*8 .. +7 */
  const int blk_begin = t_begin / TWIN_CUDA_KV_BLOCK;
  const int blk_end = (t_end + TWIN_CUDA_KV_BLOCK - 1) / TWIN_CUDA_KV_BLOCK;
  uint4 kr[4][NC], vr[4][NC];
  /* coherent loads after the wait (cuda_util.cuh: "loads of activations") */
  auto load_kv = [&](int b, bool waited) {
    const size_t base = ((size_t)btab[b] * n_kv_heads + g) * TWIN_CUDA_KV_BLOCK * HD;
#pragma unroll
    for (int r4 = 0; r4 < 4; r4++) {
#pragma unroll
      for (int j = 0; j < NC; j++) {
        const size_t off = base + (size_t)(rg + 4 * r4) * HD + j * 64 + cl * 8;
        kr[r4][j] = waited ? ld_act_v4(k_cache + off) : *reinterpret_cast<const uint4 *>(k_cache + off);
        vr[r4][j] = waited ? ld_act_v4(v_cache + off) : *reinterpret_cast<const uint4 *>(v_cache + off);
      }
    }
  };
  const int b_first = blk_begin + warp;
  if (b_first < blk_end) load_kv(b_first, false);

  pdl_enter();
  /* the new token's row (position ctx - 1) was written by the previous kernel: read again */
  if (b_first < blk_end && b_first == (ctx - 1) / TWIN_CUDA_KV_BLOCK &&
      rg == (ctx - 1) % 4) {
    const size_t base = ((size_t)btab[b_first] * n_kv_heads + g) * TWIN_CUDA_KV_BLOCK * HD;
    const int r = (ctx - 1) % TWIN_CUDA_KV_BLOCK;
#pragma unroll
    for (int r4 = 0; r4 < 4; r4++) {
      if (r4 != r / 4) continue;
#pragma unroll
      for (int j = 0; j < NC; j++) {
        const size_t off = base + (size_t)r * HD + j * 64 + cl * 8;
        kr[r4][j] = ld_act_v4(k_cache + off);
        vr[r4][j] = ld_act_v4(v_cache + off);
      }
    }
  }

  /* q of the served heads in shared memory, fp32, pre-multiplied by scale*log2(e); laid out
   * [GH][NC][8 lanes][12] (8 values + 4 pad) so the 8 column lanes hit distinct banks */
  __shared__ __align__(16) float q_s[GH][NC][8][12];
  for (int idx = threadIdx.x; idx < GH * HD; idx += DECODE_THREADS) {
    const int h = idx / HD, c = idx % HD;
    const float v = bf16_bits_to_f32(ld_act_u16(q + (size_t)row * q_stride + (head0 + h) * HD + c));
    q_s[h][c / 64][(c % 64) / 8][c % 8] = v * scale_log2;
  }
  __syncthreads();

  float m[GH], l[GH], acc[GH][E];
#pragma unroll
  for (int h = 0; h < GH; h++) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; e++) acc[h][e] = 0.0f;
  }

  for (int b = b_first; b < blk_end; b += DECODE_WARPS) {
    if (b != b_first) load_kv(b, true); /* may hold the new token */

    /* scores of this lane's 4 rows for every served head (log2 units: q carries the scale) */
    float sc[4][GH];
#pragma unroll
    for (int r4 = 0; r4 < 4; r4++)
#pragma unroll
      for (int h = 0; h < GH; h++) sc[r4][h] = 0.0f;
#pragma unroll
    for (int j = 0; j < NC; j++) {
      float qv[GH][8];
#pragma unroll
      for (int h = 0; h < GH; h++) {
        const float4 a = *reinterpret_cast<const float4 *>(&q_s[h][j][cl][0]);
        const float4 c = *reinterpret_cast<const float4 *>(&q_s[h][j][cl][4]);
        qv[h][0] = a.x; qv[h][1] = a.y; qv[h][2] = a.z; qv[h][3] = a.w;
        qv[h][4] = c.x; qv[h][5] = c.y; qv[h][6] = c.z; qv[h][7] = c.w;
      }
#pragma unroll
      for (int r4 = 0; r4 < 4; r4++) {
        float kf[8];
        bf16x8_to_f32(kr[r4][j], kf);
#pragma unroll
        for (int h = 0; h < GH; h++)
#pragma unroll
          for (int e = 0; e < 8; e++) sc[r4][h] = fmaf(qv[h][e], kf[e], sc[r4][h]);
      }
    }
#pragma unroll
    for (int r4 = 0; r4 < 4; r4++) {
      const int tok = b * TWIN_CUDA_KV_BLOCK + rg + 4 * r4;
      const bool valid = tok >= win_start && tok < t_end;
#pragma unroll
      for (int h = 0; h < GH; h++) {
        float v = sc[r4][h];
        v += __shfl_xor_sync(TWIN_FULL_MASK, v, 1);
        v += __shfl_xor_sync(TWIN_FULL_MASK, v, 2);
        v += __shfl_xor_sync(TWIN_FULL_MASK, v, 4);
        sc[r4][h] = valid ? v : -INFINITY;
      }
      if (!valid) {
        /* a slot outside the context may hold anything, NaN included: never multiply it */
#pragma unroll
        for (int j = 0; j < NC; j++) vr[r4][j] = make_uint4(0, 0, 0, 0);
      }
    }

    /* online softmax: rescale the running state, then add this block's rows */
    float p[4][GH];
#pragma unroll
    for (int h = 0; h < GH; h++) {
      const float mx = fmaxf(fmaxf(sc[0][h], sc[1][h]), fmaxf(sc[2][h], sc[3][h]));
      const float m_new = fmaxf(m[h], mx);
      const float mu = safe_max(m_new);
      const float alpha = exp2f(m[h] - mu);
      float psum = 0.0f;
#pragma unroll
      for (int r4 = 0; r4 < 4; r4++) {
        p[r4][h] = exp2f(sc[r4][h] - mu);
        psum += p[r4][h];
      }
      l[h] = l[h] * alpha + psum;
      m[h] = m_new;
#pragma unroll
      for (int e = 0; e < E; e++) acc[h][e] *= alpha;
    }
#pragma unroll
    for (int r4 = 0; r4 < 4; r4++) {
#pragma unroll
      for (int j = 0; j < NC; j++) {
        float vf[8];
        bf16x8_to_f32(vr[r4][j], vf);
#pragma unroll
        for (int h = 0; h < GH; h++)
#pragma unroll
          for (int e = 0; e < 8; e++) acc[h][j * 8 + e] = fmaf(p[r4][h], vf[e], acc[h][j * 8 + e]);
      }
    }
  }

  /* merge the 4 row groups of the warp (lanes differing in bits 3 and 4) */
#pragma unroll
  for (int h = 0; h < GH; h++) {
#pragma unroll
    for (int off = 8; off <= 16; off <<= 1) {
      const float mo = __shfl_xor_sync(TWIN_FULL_MASK, m[h], off);
      const float lo = __shfl_xor_sync(TWIN_FULL_MASK, l[h], off);
      const float mn = fmaxf(m[h], mo);
      const float mu = safe_max(mn);
      const float a = exp2f(m[h] - mu), c = exp2f(mo - mu);
      l[h] = l[h] * a + lo * c;
#pragma unroll
      for (int e = 0; e < E; e++)
        acc[h][e] = acc[h][e] * a + __shfl_xor_sync(TWIN_FULL_MASK, acc[h][e], off) * c;
      m[h] = mn;
    }
  }

  /* merge the warps through shared memory */
  __shared__ float red_acc[DECODE_WARPS][GH][HD];
  __shared__ float red_ml[DECODE_WARPS][GH][2];
  if (rg == 0) {
#pragma unroll
    for (int h = 0; h < GH; h++) {
#pragma unroll
      for (int j = 0; j < NC; j++)
#pragma unroll
        for (int e = 0; e < 8; e++) red_acc[warp][h][j * 64 + cl * 8 + e] = acc[h][j * 8 + e];
      if (cl == 0) {
        red_ml[warp][h][0] = m[h];
        red_ml[warp][h][1] = l[h];
      }
    }
  }
  __syncthreads();

  const int row_stride = n_heads * HD;
  for (int idx = threadIdx.x; idx < GH * HD; idx += DECODE_THREADS) {
    const int h = idx / HD, d = idx % HD;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < DECODE_WARPS; w++) mx = fmaxf(mx, red_ml[w][h][0]);
    const float mu = safe_max(mx);
    float L = 0.0f, O = 0.0f;
#pragma unroll
    for (int w = 0; w < DECODE_WARPS; w++) {
      const float c = exp2f(red_ml[w][h][0] - mu);
      L += red_ml[w][h][1] * c;
      O += red_acc[w][h][d] * c;
    }
    const int head = head0 + h;
    if (n_splits == 1) {
      out[(size_t)row * row_stride + head * HD + d] = __float2bfloat16_rn(O / L);
    } else {
      const size_t slot = ((size_t)i * n_heads + head) * max_splits + split;
      part_acc[slot * HD + d] = O;
      if (d == 0) {
        part_ml[slot * 2] = mx;
        part_ml[slot * 2 + 1] = L;
      }
    }
  }
  if (n_splits == 1 || !split_counters) return;

  /* the last split block of this (sequence, KV head) combines the splits of its heads */
  __shared__ int last;
  __threadfence(); /* this thread's partials, before the count */
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned *counter = split_counters + (size_t)i * gridDim.y + blockIdx.y;
    last = atomicAdd(counter, 1u) == (unsigned)(n_splits - 1);
    if (last) *counter = 0u; /* every split has counted: ready for the next launch */
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int idx = threadIdx.x; idx < GH * HD; idx += DECODE_THREADS) {
    const int h = idx / HD, d = idx % HD, head = head0 + h;
    out[(size_t)row * row_stride + head * HD + d] =
        __float2bfloat16_rn(combine_splits(part_acc, part_ml,
                                           ((size_t)i * n_heads + head) * max_splits, n_splits,
                                           HD, d));
  }
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

/* The largest divisor of the group size G that keeps the per-thread state in registers. */
static int heads_per_block(int group, int hd) {
  const int cap = hd == 128 ? 4 : 8;
  for (int gh = cap; gh > 1; gh--)
    if (group % gh == 0) return gh;
  return 1;
}

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
  const int gh = heads_per_block(group, head_dim);
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
