/* llm-svc/backend/cuda/attention_decode_unit.cuh — paged attention for one query per sequence
 * (decode), written as one thread block's unit of work (CUDA C++ only): the stand-alone kernel
 * (attention_decode.cu) is one unit per block; a persistent kernel can take units in turn with
 * its own wait.
 * GQA-aware: a thread block serves the query heads that share one KV head, so each K/V block is
 * read from memory once for all of them. Long contexts are split over several thread blocks
 * (split-K, `partition` keys each, read from device memory so that a captured CUDA graph serves
 * any context length) whose partial softmax states a reduce kernel combines.
 *
 * Work of one unit (WARPS warps): one (sequence, KV head, split). Warp w takes the KV blocks
 * w, w+WARPS, ... of the split. Within a warp, lane = 8*rg + cl: the 8 lanes of row group rg hold
 * the block's rows rg, rg+4, rg+8, rg+12, lane cl holding columns j*64 + cl*8 .. +7 of each row
 * (16-byte loads; 8 lanes cover 128 contiguous bytes of a row per load). A q.k dot product is
 * then 8 lanes' partial sums and 3 shuffles; each row group keeps its own online-softmax state
 * (max, sum, output slice) over the rows it saw, merged at the end across row groups (shuffles),
 * warps (shared memory) and splits: with split counters, the last split block of a (sequence,
 * KV head) to finish combines the splits' partials itself (a counter per pair, put back to zero
 * by that block), else a reduce kernel does. Both add the splits in split order.
 * Before waiting for the q/k/v product a unit reads the step's metadata and its warps' first KV
 * block, keys and values of earlier steps; after the wait, q (16-byte loads, all in flight
 * together) and the new token's row (which that product has just written). So a split whose
 * KV blocks are no more than its warps has all its keys of earlier steps in flight before the
 * wait: the stand-alone kernel has a wide form (more warps) for small steps. */
#ifndef TWIN_BACKEND_CUDA_ATTENTION_DECODE_UNIT_CUH
#define TWIN_BACKEND_CUDA_ATTENTION_DECODE_UNIT_CUH

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

#define LOG2E 1.4426950408889634f

/* 16 bytes nothing on the stream writes during this kernel (keys and values of earlier steps) */
static __device__ __forceinline__ uint4 ld_v4(const void *p) { return *static_cast<const uint4 *>(p); }

/* exp2 of (x - m) where the max m may still be -inf (nothing seen): treat it as 0. */
static __device__ __forceinline__ float safe_max(float m) { return m == -INFINITY ? 0.0f : m; }

/* The keys a sequence of ctx tokens attends to, [win_start, ctx), and its splits: `partition`
 * keys each from the KV block holding win_start (the unit and the reduce kernel agree on it). */
struct decode_span {
  int win_start, first_tok, n_splits;
};
static __device__ __forceinline__ decode_span decode_span_of(int ctx, int window, int partition) {
  decode_span sp;
  sp.win_start = window > 0 ? max(0, ctx - window) : 0;
  sp.first_tok = sp.win_start / TWIN_CUDA_KV_BLOCK * TWIN_CUDA_KV_BLOCK;
  sp.n_splits = (ctx - sp.first_tok + partition - 1) / partition;
  return sp;
}

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

/* Shared memory of attn_decode_unit<HD, GH, WARPS> (bytes). */
template <int HD, int GH, int WARPS>
static constexpr size_t attn_decode_unit_smem() {
  return sizeof(float) * (GH * (HD / 64) * 8 * 12 + WARPS * GH * HD + WARPS * GH * 2) + 16;
}

/* v2. HD: head dim (64 or 128). GH: query heads served by a unit (a divisor of the GQA group
 * size G; units (split, y, i) with y < n_y = n_kv_heads * G/GH). WARPS warps (blockDim.x ==
 * 32 * WARPS; warps past the split's KV blocks add empty states, which change no bit).
 * wait(true) is called once, before q or the new token's row is read; wait.skip() instead when
 * the unit has nothing to do. smem: attn_decode_unit_smem bytes, 16-byte aligned. */
template <int HD, int GH, int WARPS, typename Wait>
static __device__ __forceinline__ void
attn_decode_unit(__nv_bfloat16 *__restrict__ out /* [rows][n_heads*HD] */,
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
                 unsigned *__restrict__ split_counters /* [n_decode][n_y] or NULL */, int split,
                 int y, int i, int n_y, Wait &&wait, char *smem) {
  constexpr int THREADS = WARPS * 32;
  /* at 512 threads a thread has at most 128 registers: q.k then holds one head's q at a time
   * (the same products in the same order: the same bits) */
  constexpr bool LEAN_SCORES = THREADS >= 512;
  /* Before the wait (kernels.h): the metadata and the keys and values of earlier steps. */
  constexpr int NC = HD / 64;  /* 16-byte chunks per lane per row */
  constexpr int E = NC * 8;    /* columns per lane */
  const int group = n_heads / n_kv_heads;
  const int subs = group / GH;
  const int g = y / subs;                        /* KV head */
  const int head0 = g * group + (y % subs) * GH; /* first query head served */
  const int s = seqs[i];
  const int ctx = seq_len[s];
  const int partition = *partition_dev;
  const decode_span sp = decode_span_of(ctx, window, partition);
  const int win_start = sp.win_start, first_tok = sp.first_tok, n_splits = sp.n_splits;
  if (split >= n_splits) { /* the whole block leaves together (ctx 0: padding) */
    wait.skip();
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
  /* rows of KV block b; coherent loads after the wait (cuda_util.cuh: "loads of activations") */
#define TWIN_LOAD_KV(b, LD)                                                                   \
  do {                                                                                        \
    const size_t base_ = ((size_t)btab[b] * n_kv_heads + g) * TWIN_CUDA_KV_BLOCK * HD;        \
    _Pragma("unroll") for (int r4 = 0; r4 < 4; r4++) {                                        \
      _Pragma("unroll") for (int j = 0; j < NC; j++) {                                        \
        const size_t off = base_ + (size_t)(rg + 4 * r4) * HD + j * 64 + cl * 8;              \
        kr[r4][j] = LD(k_cache + off);                                                        \
        vr[r4][j] = LD(v_cache + off);                                                        \
      }                                                                                       \
    }                                                                                         \
  } while (0)
  const int b_first = blk_begin + warp;
  if (b_first < blk_end) TWIN_LOAD_KV(b_first, ld_v4);

  wait(true);
  /* the new token's row (position ctx - 1) was written by the previous kernel: read again */
  if (b_first < blk_end && b_first == (ctx - 1) / TWIN_CUDA_KV_BLOCK) {
    const size_t base = ((size_t)btab[b_first] * n_kv_heads + g) * TWIN_CUDA_KV_BLOCK * HD;
    const int r = (ctx - 1) % TWIN_CUDA_KV_BLOCK;
#pragma unroll
    for (int r4 = 0; r4 < 4; r4++) {
      const bool mine = rg + 4 * r4 == r;
#pragma unroll
      for (int j = 0; j < NC; j++) {
        const size_t off = base + (size_t)r * HD + j * 64 + cl * 8;
        if (mine) {
          kr[r4][j] = ld_act_v4(k_cache + off);
          vr[r4][j] = ld_act_v4(v_cache + off);
        }
      }
    }
  }

  /* q of the served heads in shared memory, fp32, pre-multiplied by scale*log2(e); laid out
   * [GH][NC][8 lanes][12] (8 values + 4 pad) so the 8 column lanes hit distinct banks */
  float(&q_s)[GH][NC][8][12] = *reinterpret_cast<float(*)[GH][NC][8][12]>(smem);
  {
    /* 16-byte vectors of 8 columns (q rows are 16-byte aligned: the launcher checks q and
     * q_stride), every load of a thread issued before the first is used */
    constexpr int Q_VECS = GH * HD / 8;
    constexpr int Q_PER_THREAD = (Q_VECS + THREADS - 1) / THREADS;
    uint4 qraw[Q_PER_THREAD];
#pragma unroll
    for (int k = 0; k < Q_PER_THREAD; k++) {
      const int v = threadIdx.x + k * THREADS, h = v / (HD / 8), c = v % (HD / 8) * 8;
      qraw[k] = v < Q_VECS ? ld_act_v4(q + (size_t)row * q_stride + (head0 + h) * HD + c)
                           : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int k = 0; k < Q_PER_THREAD; k++) {
      const int v = threadIdx.x + k * THREADS, h = v / (HD / 8), c = v % (HD / 8) * 8;
      if (v < Q_VECS) {
        float f[8];
        bf16x8_to_f32(qraw[k], f);
        float *dst = &q_s[h][c / 64][(c % 64) / 8][0];
        *reinterpret_cast<float4 *>(dst) =
            make_float4(f[0] * scale_log2, f[1] * scale_log2, f[2] * scale_log2, f[3] * scale_log2);
        *reinterpret_cast<float4 *>(dst + 4) =
            make_float4(f[4] * scale_log2, f[5] * scale_log2, f[6] * scale_log2, f[7] * scale_log2);
      }
    }
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

  for (int b = b_first; b < blk_end; b += WARPS) {
    if (b != b_first) TWIN_LOAD_KV(b, ld_act_v4); /* may hold the new token */

    /* scores of this lane's 4 rows for every served head (log2 units: q carries the scale) */
    float sc[4][GH];
#pragma unroll
    for (int r4 = 0; r4 < 4; r4++)
#pragma unroll
      for (int h = 0; h < GH; h++) sc[r4][h] = 0.0f;
    /* head h's q, columns of chunk j this lane multiplies (q_s: fp32, pre-scaled) */
    auto q_cols = [&](int h, int j, float (&qv)[8]) {
      const float4 a = *reinterpret_cast<const float4 *>(&q_s[h][j][cl][0]);
      const float4 c = *reinterpret_cast<const float4 *>(&q_s[h][j][cl][4]);
      qv[0] = a.x; qv[1] = a.y; qv[2] = a.z; qv[3] = a.w;
      qv[4] = c.x; qv[5] = c.y; qv[6] = c.z; qv[7] = c.w;
    };
#pragma unroll
    for (int j = 0; j < NC; j++) {
      if constexpr (LEAN_SCORES) {
        /* one head's q at a time (8 registers, not 8 * GH); K converted again per head */
#pragma unroll
        for (int h = 0; h < GH; h++) {
          float qv[8];
          q_cols(h, j, qv);
#pragma unroll
          for (int r4 = 0; r4 < 4; r4++) {
            float kf[8];
            bf16x8_to_f32(kr[r4][j], kf);
#pragma unroll
            for (int e = 0; e < 8; e++) sc[r4][h] = fmaf(qv[e], kf[e], sc[r4][h]);
          }
        }
      } else {
        float qv[GH][8];
#pragma unroll
        for (int h = 0; h < GH; h++) q_cols(h, j, qv[h]);
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
  float(&red_acc)[WARPS][GH][HD] = *reinterpret_cast<float(*)[WARPS][GH][HD]>(smem + sizeof q_s);
  float(&red_ml)[WARPS][GH][2] =
      *reinterpret_cast<float(*)[WARPS][GH][2]>(smem + sizeof q_s + sizeof red_acc);
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
  for (int idx = threadIdx.x; idx < GH * HD; idx += THREADS) {
    const int h = idx / HD, d = idx % HD;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; w++) mx = fmaxf(mx, red_ml[w][h][0]);
    const float mu = safe_max(mx);
    float L = 0.0f, O = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) {
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
  int &last = *reinterpret_cast<int *>(smem + sizeof q_s + sizeof red_acc + sizeof red_ml);
  __threadfence(); /* this thread's partials, before the count */
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned *counter = split_counters + (size_t)i * n_y + y;
    last = atomicAdd(counter, 1u) == (unsigned)(n_splits - 1);
    if (last) *counter = 0u; /* every split has counted: ready for the next launch */
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int idx = threadIdx.x; idx < GH * HD; idx += THREADS) {
    const int h = idx / HD, d = idx % HD, head = head0 + h;
    out[(size_t)row * row_stride + head * HD + d] =
        __float2bfloat16_rn(combine_splits(part_acc, part_ml,
                                           ((size_t)i * n_heads + head) * max_splits, n_splits,
                                           HD, d));
  }
}
#undef TWIN_LOAD_KV

/* The largest divisor of the group size G that keeps the per-thread state in registers. */
static inline int attn_heads_per_block(int group, int hd) {
  const int cap = hd == 128 ? 4 : 8;
  for (int gh = cap; gh > 1; gh--)
    if (group % gh == 0) return gh;
  return 1;
}

#endif
