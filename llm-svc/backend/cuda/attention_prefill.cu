/* llm-svc/backend/cuda/attention_prefill.cu — paged causal attention for prefill chunks, tiled
 * flash-style: a thread block takes 64 new queries of one sequence and one query head, walks the
 * keys (cached prefix + the chunk itself, through the block table) 64 at a time, computes
 * S = Q K^T and O += P V on the tensor cores (WMMA, bf16 in, fp32 accumulate) and keeps an
 * online softmax per query row. Everything of a tile lives in shared memory:
 *   Q [64][hd] bf16, K and V [64][hd] bf16, S [64][64] fp32, P [64][64] bf16, O [64][hd] fp32
 * (rows padded against bank conflicts): 110 KiB at hd=128, so two blocks per SM. */
#include <mma.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

#define PREFILL_WARPS 4
#define PREFILL_THREADS (PREFILL_WARPS * 32)
#define BQ TWIN_CUDA_PREFILL_TILE /* queries per tile; 16 per warp */
#define BK 64                     /* keys per step */
#define LOG2E 1.4426950408889634f

namespace wmma = nvcuda::wmma;

template <int HD>
struct prefill_smem {
  static constexpr int LDQ = HD + 8;  /* bf16 rows of Q, K, V */
  static constexpr int LDS = BK + 4;  /* fp32 rows of S */
  static constexpr int LDP = BK + 8;  /* bf16 rows of P */
  static constexpr int LDO = HD + 4;  /* fp32 rows of O */
  static constexpr size_t Q_OFF = 0;
  static constexpr size_t K_OFF = Q_OFF + (size_t)BQ * LDQ * 2;
  static constexpr size_t V_OFF = K_OFF + (size_t)BK * LDQ * 2;
  static constexpr size_t S_OFF = V_OFF + (size_t)BK * LDQ * 2;
  static constexpr size_t P_OFF = S_OFF + (size_t)BQ * LDS * 4;
  static constexpr size_t O_OFF = P_OFF + (size_t)BQ * LDP * 2;
  static constexpr size_t BYTES = O_OFF + (size_t)BQ * LDO * 4;
  static_assert(K_OFF % 128 == 0 && V_OFF % 128 == 0 && S_OFF % 128 == 0 && P_OFF % 128 == 0 &&
                    O_OFF % 128 == 0,
                "WMMA needs 32-byte aligned tiles");
};

static __device__ __forceinline__ float safe_max(float m) { return m == -INFINITY ? 0.0f : m; }

/* v1: synchronous 16-byte loads of K/V per step (no double buffering yet). */
template <int HD>
static __global__ void __launch_bounds__(PREFILL_THREADS)
attn_prefill_kernel(__nv_bfloat16 *__restrict__ out /* [rows][n_heads*HD] */,
                    const __nv_bfloat16 *__restrict__ q /* row r head h at r*q_stride + h*HD */,
                    int q_stride,
                    const __nv_bfloat16 *__restrict__ k_cache /* [blocks][n_kv][16][HD] */,
                    const __nv_bfloat16 *__restrict__ v_cache /* [blocks][n_kv][16][HD] */,
                    const int32_t *__restrict__ tile_seq, const int32_t *__restrict__ tile_q0,
                    const int32_t *__restrict__ seq_start, const int32_t *__restrict__ seq_len,
                    const int32_t *__restrict__ block_tables /* [*][max_blocks] */,
                    int max_blocks, int n_heads, int n_kv_heads, float scale_log2, int window) {
  using L = prefill_smem<HD>;
  constexpr int CH = HD / 8; /* 16-byte chunks per row */
  extern __shared__ __align__(128) unsigned char smem_raw[];
  /* WMMA needs 32-byte aligned tiles: align the base ourselves (the launch adds 128 bytes) */
  unsigned char *smem = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 127) & ~static_cast<uintptr_t>(127));
  __nv_bfloat16 *Qs = reinterpret_cast<__nv_bfloat16 *>(smem + L::Q_OFF);
  __nv_bfloat16 *Ks = reinterpret_cast<__nv_bfloat16 *>(smem + L::K_OFF);
  __nv_bfloat16 *Vs = reinterpret_cast<__nv_bfloat16 *>(smem + L::V_OFF);
  float *Ss = reinterpret_cast<float *>(smem + L::S_OFF);
  __nv_bfloat16 *Ps = reinterpret_cast<__nv_bfloat16 *>(smem + L::P_OFF);
  float *Os = reinterpret_cast<float *>(smem + L::O_OFF);

  const int tile = blockIdx.x, h = blockIdx.y;
  const int s = tile_seq[tile], q0 = tile_q0[tile];
  const int start = seq_start[s];
  const int n_new = seq_start[s + 1] - start;
  const int ctx = seq_len[s];
  const int prefix = ctx - n_new;
  const int nq = min(BQ, n_new - q0);
  if (nq <= 0) return;
  const int g = h / (n_heads / n_kv_heads);
  const int32_t *btab = block_tables + (size_t)s * max_blocks;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  /* Q tile (rows past the chunk are zeros) and O = 0 */
  for (int c = threadIdx.x; c < BQ * CH; c += PREFILL_THREADS) {
    const int r = c / CH, cc = c % CH;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < nq)
      v = *reinterpret_cast<const uint4 *>(q + (size_t)(start + q0 + r) * q_stride + h * HD + cc * 8);
    *reinterpret_cast<uint4 *>(Qs + r * L::LDQ + cc * 8) = v;
  }
  for (int idx = threadIdx.x; idx < BQ * L::LDO; idx += PREFILL_THREADS) Os[idx] = 0.0f;

  float m_r[16], l_r[16]; /* softmax state of the warp's 16 rows (same in every lane) */
#pragma unroll
  for (int r = 0; r < 16; r++) {
    m_r[r] = -INFINITY;
    l_r[r] = 0.0f;
  }

  /* keys the tile's rows see: [kmin, kmax] (kmin > 0 only with a sliding window) */
  const int kmax = prefix + q0 + nq - 1;
  const int kmin = window > 0 ? max(0, prefix + q0 + 1 - window) : 0;
  const int n_steps = kmax / BK + 1;
  const int row0 = warp * 16;
  for (int kt = kmin / BK; kt < n_steps; kt++) {
    __syncthreads(); /* the previous step is done with Ks/Vs (first step: Qs/Os are ready) */
    for (int c = threadIdx.x; c < BK * CH; c += PREFILL_THREADS) {
      const int r = c / CH, cc = c % CH;
      const int key = kt * BK + r;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (key >= kmin && key <= kmax) {
        const size_t off = (((size_t)btab[key / TWIN_CUDA_KV_BLOCK] * n_kv_heads + g) *
                                TWIN_CUDA_KV_BLOCK + key % TWIN_CUDA_KV_BLOCK) * HD + cc * 8;
        kv = *reinterpret_cast<const uint4 *>(k_cache + off);
        vv = *reinterpret_cast<const uint4 *>(v_cache + off);
      }
      *reinterpret_cast<uint4 *>(Ks + r * L::LDQ + cc * 8) = kv;
      *reinterpret_cast<uint4 *>(Vs + r * L::LDQ + cc * 8) = vv;
    }
    __syncthreads();

    /* S = Q K^T for the warp's 16 rows */
#pragma unroll
    for (int n = 0; n < BK / 16; n++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sacc;
      wmma::fill_fragment(sacc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < HD / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::load_matrix_sync(a, Qs + row0 * L::LDQ + kk * 16, L::LDQ);
        wmma::load_matrix_sync(b, Ks + n * 16 * L::LDQ + kk * 16, L::LDQ);
        wmma::mma_sync(sacc, a, b, sacc);
      }
      wmma::store_matrix_sync(Ss + row0 * L::LDS + n * 16, sacc, L::LDS, wmma::mem_row_major);
    }
    __syncwarp();

    /* online softmax, one row at a time across the warp (lane: columns lane and lane + 32) */
#pragma unroll
    for (int r = 0; r < 16; r++) {
      const int row = row0 + r;
      const int qpos = prefix + q0 + row;
      const int key_lo = window > 0 ? qpos + 1 - window : 0; /* first key of the row */
      const bool row_ok = row < nq;
      const int key0 = kt * BK + lane, key1 = key0 + 32;
      const float s0 = row_ok && key0 <= qpos && key0 >= key_lo
                           ? Ss[row * L::LDS + lane] * scale_log2 : -INFINITY;
      const float s1 = row_ok && key1 <= qpos && key1 >= key_lo
                           ? Ss[row * L::LDS + lane + 32] * scale_log2 : -INFINITY;
      const float m_new = fmaxf(m_r[r], warp_max(fmaxf(s0, s1)));
      const float mu = safe_max(m_new);
      const float alpha = exp2f(m_r[r] - mu);
      const float p0 = exp2f(s0 - mu), p1 = exp2f(s1 - mu);
      l_r[r] = l_r[r] * alpha + warp_sum(p0 + p1);
      m_r[r] = m_new;
      Ps[row * L::LDP + lane] = __float2bfloat16_rn(p0);
      Ps[row * L::LDP + lane + 32] = __float2bfloat16_rn(p1);
#pragma unroll
      for (int d0 = 0; d0 < HD; d0 += 32) Os[row * L::LDO + d0 + lane] *= alpha;
    }
    __syncwarp();

    /* O += P V for the warp's 16 rows */
#pragma unroll
    for (int n = 0; n < HD / 16; n++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> oacc;
      wmma::load_matrix_sync(oacc, Os + row0 * L::LDO + n * 16, L::LDO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
        wmma::load_matrix_sync(a, Ps + row0 * L::LDP + kk * 16, L::LDP);
        wmma::load_matrix_sync(b, Vs + kk * 16 * L::LDQ + n * 16, L::LDQ);
        wmma::mma_sync(oacc, a, b, oacc);
      }
      wmma::store_matrix_sync(Os + row0 * L::LDO + n * 16, oacc, L::LDO, wmma::mem_row_major);
    }
  }
  __syncwarp();

  const int row_stride = n_heads * HD;
#pragma unroll
  for (int r = 0; r < 16; r++) {
    const int row = row0 + r;
    if (row >= nq) break;
    const float inv = 1.0f / l_r[r];
    __nv_bfloat16 *dst = out + (size_t)(start + q0 + row) * row_stride + h * HD;
#pragma unroll
    for (int d0 = 0; d0 < HD; d0 += 32)
      dst[d0 + lane] = __float2bfloat16_rn(Os[row * L::LDO + d0 + lane] * inv);
  }
}

template <int HD>
static cudaError_t prefill_launch(__nv_bfloat16 *out, const __nv_bfloat16 *q, int q_stride,
                                  const __nv_bfloat16 *kc, const __nv_bfloat16 *vc,
                                  const int32_t *tile_seq, const int32_t *tile_q0, int n_tiles,
                                  const int32_t *seq_start, const int32_t *seq_len,
                                  const int32_t *bt, int max_blocks, int nh, int nkv,
                                  float scale_log2, int window, cudaStream_t stream) {
  const size_t bytes = prefill_smem<HD>::BYTES + 128;
  cudaError_t e = cudaFuncSetAttribute(attn_prefill_kernel<HD>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (e != cudaSuccess) return e;
  attn_prefill_kernel<HD><<<dim3(n_tiles, nh), PREFILL_THREADS, bytes, stream>>>(
      out, q, q_stride, kc, vc, tile_seq, tile_q0, seq_start, seq_len, bt, max_blocks, nh, nkv,
      scale_log2, window);
  return cudaGetLastError();
}

extern "C" cudaError_t twin_cuda_attention_prefill(
    twin_bf16 *out, const twin_bf16 *q, int q_stride, const twin_bf16 *k_cache,
    const twin_bf16 *v_cache, const int32_t *tile_seq, const int32_t *tile_q0, int n_tiles,
    const int32_t *seq_start, const int32_t *seq_len, const int32_t *block_tables, int max_blocks,
    int n_heads, int n_kv_heads, int head_dim, float scale, int window, cudaStream_t stream) {
  if (n_tiles < 0 || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 ||
      n_heads > 65535 || (head_dim != 64 && head_dim != 128) || q_stride % 8 != 0 ||
      max_blocks < 1 || !out || !q || !k_cache || !v_cache || !tile_seq || !tile_q0 ||
      !seq_start || !seq_len || !block_tables || (reinterpret_cast<uintptr_t>(q) & 15) != 0)
    return cudaErrorInvalidValue;
  if (n_tiles == 0) return cudaSuccess;
  auto *o = reinterpret_cast<__nv_bfloat16 *>(out);
  const auto *qb = reinterpret_cast<const __nv_bfloat16 *>(q);
  const auto *kc = reinterpret_cast<const __nv_bfloat16 *>(k_cache);
  const auto *vc = reinterpret_cast<const __nv_bfloat16 *>(v_cache);
  const float scale_log2 = scale * LOG2E;
  if (head_dim == 64)
    return prefill_launch<64>(o, qb, q_stride, kc, vc, tile_seq, tile_q0, n_tiles, seq_start,
                              seq_len, block_tables, max_blocks, n_heads, n_kv_heads, scale_log2,
                              window, stream);
  return prefill_launch<128>(o, qb, q_stride, kc, vc, tile_seq, tile_q0, n_tiles, seq_start,
                             seq_len, block_tables, max_blocks, n_heads, n_kv_heads, scale_log2,
                             window, stream);
}
