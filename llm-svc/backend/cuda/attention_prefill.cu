/* llm-svc/backend/cuda/attention_prefill.cu — paged causal attention for prefill chunks, v2:
 * FlashAttention-2 style on mma.sync m16n8k16 (bf16 in, fp32 accumulate, inline PTX with
 * ldmatrix). A thread block takes one tile of up to 64 new queries of one sequence for GH query
 * heads that share a KV head (4 warps per head, 16 query rows per warp) and walks the visible
 * keys (cached prefix + the chunk itself, through the block table) 64 at a time. K/V tiles come
 * in with cp.async into a two-stage shared-memory ring (tile j+1 lands while tile j is computed)
 * and serve all GH heads. Q fragments stay in registers, S and O accumulate in registers, the
 * online softmax runs on the S fragments (exp2, log2e folded into the scale), and P becomes the
 * bf16 A operand of P.V without touching shared memory. Causal / window masks are applied only
 * on tiles that cross a row's bounds; tiles a warp cannot see are skipped, tiles no row of the
 * block sees are never loaded. Measured figures and the variants tried: tests/gpu/NOTES.md. */
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

#define LOG2E 1.4426950408889634f
#define PREFILL_BQ TWIN_CUDA_PREFILL_TILE /* queries per tile (4 warps x 16 rows per head) */
#define PREFILL_BK 64                     /* keys per shared-memory stage */
#define PREFILL_STAGES 2                  /* K/V ring depth: tile j+1 loads while j computes */

static_assert(PREFILL_BQ == 64, "the kernel maps 4 warps x 16 rows onto a tile of 64 queries");
static_assert(PREFILL_BK % TWIN_CUDA_KV_BLOCK == 0 && PREFILL_BK / TWIN_CUDA_KV_BLOCK <= 32,
              "a key tile covers whole KV blocks, their ids held one per lane");

/* ==== PTX wrappers ============================================================================ */

/* smem_addr, cp_async16, cp_async_commit, cp_async_wait_all: cuda_util.cuh */

static __device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
static __device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/* c += a (16x16 row-major) . b (16x8 column-major), bf16 in, fp32 accumulate */
static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                                uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ float fast_exp2(float x) { /* exp2(-inf) = +0 */
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

static __device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* lo in the low half */
  return *reinterpret_cast<const uint32_t *>(&v);
}

/* ==== layout ================================================================================== */

/* Shared memory (bf16 rows padded by 16 bytes, so the 8 row addresses of an ldmatrix and the 8
 * 16-byte chunks of a quarter-warp's cp.async fall in distinct banks):
 *   stage 0, stage 1: K [64][HD+8] then V [64][HD+8] (34 KiB each at hd 128, 18 KiB at hd 64)
 *   Q [GH*64][HD+8] (head-major): inside stage 1 when it fits (GH <= 2; Q moves to registers
 *   before tile kt_lo + 1 is loaded there), else after the stages.
 * At the end each warp stages its 16 output rows (bf16) in the rows Q had, in the stage the last
 * tile does not use when Q lived in stage 1 (no warp reads that stage any more).
 * hd 128: 68 KiB (GH 1 or 2); hd 64: 36 KiB (GH 1, 2), 72 KiB (GH 4).
 * Register caps (blocks per SM): hd 128 GH 1: 168 (3 blocks, 12 warps); GH 2: 255 (1 block,
 * 8 warps; ptxas uses 216); hd 64 GH 1/2/4: 128 (4/2/1 blocks, 16 warps). No spills. */
template <int HD, int GH>
struct prefill_cfg {
  static constexpr int WARPS = 4 * GH;
  static constexpr int THREADS = WARPS * 32;
  static constexpr int LD = HD + 8;  /* bf16 elements per shared row */
  static constexpr int CH = HD / 8;  /* 16-byte chunks per row */
  static constexpr int KSTEPS = HD / 16;
  static constexpr int ONT = HD / 8; /* n8 tiles of O */
  static constexpr int SNT = PREFILL_BK / 8; /* n8 tiles of S */
  static constexpr size_t STAGE_BYTES = (size_t)2 * PREFILL_BK * LD * 2;
  static constexpr size_t Q_BYTES = (size_t)GH * PREFILL_BQ * LD * 2;
  static constexpr bool Q_IN_STAGE = Q_BYTES <= STAGE_BYTES;
  static constexpr size_t Q_OFF =
      Q_IN_STAGE ? (PREFILL_STAGES - 1) * STAGE_BYTES : PREFILL_STAGES * STAGE_BYTES;
  static constexpr size_t BYTES = Q_IN_STAGE ? PREFILL_STAGES * STAGE_BYTES : Q_OFF + Q_BYTES;
  /* blocks per SM the register cap aims for (65536 registers per SM) */
  static constexpr int MIN_BLOCKS = HD == 128 ? (GH == 1 ? 3 : 1) : 4 / GH;
  static_assert(HD == 64 || GH <= 2, "hd 128 with 4 heads a block would spill (128 registers)");
  static_assert(THREADS % CH == 0 && (PREFILL_BK * CH) % THREADS == 0 &&
                    (GH * PREFILL_BQ * CH) % THREADS == 0,
                "loads split evenly over the threads, each thread on one column of chunks");
};

/* Lane i < PREFILL_BK/16 of every warp: the pool block holding keys kt*64 + 16i .. +15 when one
 * of them is visible to the tile ([kmin, kmax]); 0 otherwise (never read then). Table entries
 * outside the visible span are not read: they may be stale or far out of range. */
static __device__ __forceinline__ int tile_block_ids(const int32_t *__restrict__ btab, int kt,
                                                     int kmin, int kmax, int lane) {
  const int b = kt * (PREFILL_BK / TWIN_CUDA_KV_BLOCK) + lane;
  if (lane < PREFILL_BK / TWIN_CUDA_KV_BLOCK && b * TWIN_CUDA_KV_BLOCK <= kmax &&
      b * TWIN_CUDA_KV_BLOCK + TWIN_CUDA_KV_BLOCK - 1 >= kmin)
    return __ldg(btab + b);
  return 0;
}

/* Enqueue the K and V rows of key tile kt into one stage; keys outside [kmin, kmax] become
 * zeros (finite, and masked for every row that could see them). Thread t copies the 16-byte
 * chunk t % CH of rows t / CH + i * (THREADS / CH); k_thr, v_thr: the caches advanced to that
 * chunk of the block's KV head in pool block 0 (g*16*HD + (t % CH)*8 elements);
 * blk_stride = n_kv_heads*16*HD. */
template <int HD, int THREADS>
static __device__ __forceinline__ void load_kv_tile(uint32_t stage, const __nv_bfloat16 *k_thr,
                                                    const __nv_bfloat16 *v_thr, int ids, int kt,
                                                    int kmin, int kmax, int blk_stride) {
  constexpr int CH = HD / 8, LD = HD + 8, RSTEP = THREADS / CH;
  const int row0 = threadIdx.x / CH, col = threadIdx.x % CH;
#pragma unroll
  for (int i = 0; i < PREFILL_BK / RSTEP; i++) {
    const int row = row0 + i * RSTEP;
    const int key = kt * PREFILL_BK + row;
    const int blk = __shfl_sync(TWIN_FULL_MASK, ids, row / TWIN_CUDA_KV_BLOCK);
    const bool ok = key >= kmin && key <= kmax;
    const size_t off =
        ok ? (size_t)blk * blk_stride + (size_t)((row % TWIN_CUDA_KV_BLOCK) * HD) : 0;
    const uint32_t dst = stage + (uint32_t)(row * LD + col * 8) * 2;
    cp_async16(dst, k_thr + off, ok ? 16 : 0);
    cp_async16(dst + PREFILL_BK * LD * 2, v_thr + off, ok ? 16 : 0);
  }
}

/* ==== the warp's tile steps =================================================================== */

/* S = Q K^T for the warp's 16 rows and the 64 keys of one stage. */
template <int HD>
static __device__ __forceinline__ void tile_scores(float (&sacc)[PREFILL_BK / 8][4],
                                                   const uint32_t (&qf)[HD / 16][4],
                                                   uint32_t stage, uint32_t k_lane_off) {
  constexpr int LD = HD + 8;
#pragma unroll
  for (int j = 0; j < PREFILL_BK / 8; j++) sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
    for (int np = 0; np < PREFILL_BK / 16; np++) {
      uint32_t b[4];
      ldmatrix_x4(b, stage + k_lane_off + (uint32_t)((np * 16 * LD + kk * 16) * 2));
      mma_bf16(sacc[2 * np], qf[kk], b[0], b[1]);
      mma_bf16(sacc[2 * np + 1], qf[kk], b[2], b[3]);
    }
  }
}

/* Scores to log2 units; -inf where key k0 + column is not visible to the row (after its
 * position, or before its window), on tiles that cross some row's bounds. Rows: wlo + row_lo
 * (+ 8); columns: col2 (+1) + 8 j. */
static __device__ __forceinline__ void tile_scale_mask(float (&sacc)[PREFILL_BK / 8][4],
                                                       float scale_log2, int k0, int wlo, int whi,
                                                       int row_lo, int col2, int window) {
#pragma unroll
  for (int j = 0; j < PREFILL_BK / 8; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) sacc[j][e] *= scale_log2;
  if (k0 + PREFILL_BK - 1 > wlo || (window > 0 && k0 < whi + 1 - window)) {
#pragma unroll
    for (int j = 0; j < PREFILL_BK / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = k0 + j * 8 + col2 + (e & 1);
        const int pos = wlo + row_lo + (e >> 1) * 8;
        if (key > pos || (window > 0 && key <= pos - window)) sacc[j][e] = -INFINITY;
      }
  }
}

/* Online softmax on the score fragments (rows row_lo and row_lo + 8: index hr), then
 * O += P V with P's fragments as the A operand, 16 keys at a time. m_run in log2 units; l_run is
 * this lane's partial row sum over its columns (the quad adds them at the end). */
template <int HD>
static __device__ __forceinline__ void tile_softmax_pv(float (&sacc)[PREFILL_BK / 8][4],
                                                       float (&o)[HD / 8][4], float (&m_run)[2],
                                                       float (&l_run)[2], uint32_t stage,
                                                       uint32_t v_lane_off) {
  constexpr int LD = HD + 8, SNT = PREFILL_BK / 8;
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < SNT; j++) mx = fmaxf(mx, fmaxf(sacc[j][2 * hr], sacc[j][2 * hr + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(TWIN_FULL_MASK, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(TWIN_FULL_MASK, mx, 2));
    const float m_new = fmaxf(m_run[hr], mx);
    const float mu = m_new == -INFINITY ? 0.0f : m_new; /* a row that has seen no key yet */
    const float alpha = fast_exp2(m_run[hr] - mu);
    m_run[hr] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < SNT; j++) {
      sacc[j][2 * hr] = fast_exp2(sacc[j][2 * hr] - mu);
      sacc[j][2 * hr + 1] = fast_exp2(sacc[j][2 * hr + 1] - mu);
      sum += sacc[j][2 * hr] + sacc[j][2 * hr + 1];
    }
    l_run[hr] = l_run[hr] * alpha + sum;
#pragma unroll
    for (int j = 0; j < HD / 8; j++) {
      o[j][2 * hr] *= alpha;
      o[j][2 * hr + 1] *= alpha;
    }
  }
#pragma unroll
  for (int kk = 0; kk < PREFILL_BK / 16; kk++) {
    uint32_t a[4];
    a[0] = pack_bf16x2(sacc[2 * kk][0], sacc[2 * kk][1]);
    a[1] = pack_bf16x2(sacc[2 * kk][2], sacc[2 * kk][3]);
    a[2] = pack_bf16x2(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]);
    a[3] = pack_bf16x2(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3]);
#pragma unroll
    for (int np = 0; np < HD / 16; np++) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, stage + v_lane_off + (uint32_t)((kk * 16 * LD + np * 16) * 2));
      mma_bf16(o[2 * np], a, b[0], b[1]);
      mma_bf16(o[2 * np + 1], a, b[2], b[3]);
    }
  }
}

/* ==== kernel ================================================================================== */

/* Grid: one block per (tile, group of GH heads), tiles in reverse list order (the longest tiles
 * of a sequence come last in the list, so they start first). */
template <int HD, int GH>
static __global__ void __launch_bounds__(prefill_cfg<HD, GH>::THREADS,
                                         prefill_cfg<HD, GH>::MIN_BLOCKS)
attn_prefill_kernel(__nv_bfloat16 *__restrict__ out /* [rows][n_heads*HD] */,
                    const __nv_bfloat16 *__restrict__ q /* row r head h at r*q_stride + h*HD */,
                    int q_stride,
                    const __nv_bfloat16 *__restrict__ k_cache /* [blocks][n_kv][16][HD] */,
                    const __nv_bfloat16 *__restrict__ v_cache /* [blocks][n_kv][16][HD] */,
                    const int32_t *__restrict__ tile_seq, const int32_t *__restrict__ tile_q0,
                    int n_tiles, const int32_t *__restrict__ seq_start,
                    const int32_t *__restrict__ seq_len,
                    const int32_t *__restrict__ block_tables /* [*][max_blocks] */,
                    int max_blocks, int n_heads, int n_kv_heads, float scale_log2, int window,
                    int out_aligned) {
  using C = prefill_cfg<HD, GH>;
  extern __shared__ __align__(16) unsigned char smem[];

  const int n_groups = n_heads / GH;
  const int tile = n_tiles - 1 - (int)(blockIdx.x / n_groups);
  const int h0 = (int)(blockIdx.x % n_groups) * GH; /* first query head of the block */
  const int s = tile_seq[tile], q0 = tile_q0[tile];
  const int start = seq_start[s];
  const int n_new = seq_start[s + 1] - start;
  const int prefix = seq_len[s] - n_new;
  const int nq = min(PREFILL_BQ, n_new - q0);
  if (nq <= 0) return;
  const int g = h0 / (n_heads / n_kv_heads);
  const int32_t *btab = block_tables + (size_t)s * max_blocks;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int hb = warp / 4;          /* head of the block this warp serves */
  const int r0 = (warp % 4) * 16;   /* its first row in the tile */
  const int qpos0 = prefix + q0;    /* position of the tile's row 0 */

  /* keys the tile's rows see: [kmin, kmax] */
  const int kmax = qpos0 + nq - 1;
  const int kmin = window > 0 ? max(0, qpos0 + 1 - window) : 0;
  const int kt_lo = kmin / PREFILL_BK, kt_hi = kmax / PREFILL_BK;

  const uint32_t smem0 = smem_addr(smem);
  const uint32_t q_smem = smem0 + (uint32_t)C::Q_OFF;
  /* the stage holding key tile kt */
  auto stage_of = [&](int kt) {
    return smem0 + ((uint32_t)(kt - kt_lo) % PREFILL_STAGES) * (uint32_t)C::STAGE_BYTES;
  };

  /* ---- prologue: Q (rows past the chunk are zeros) and the first K/V tile ---- */
#pragma unroll
  for (int i = 0; i < GH * PREFILL_BQ * C::CH / C::THREADS; i++) {
    const int c = threadIdx.x + i * C::THREADS;
    const int row = c / C::CH, col = c % C::CH; /* row = head_in_block * 64 + query */
    const int hq = row / PREFILL_BQ, r = row % PREFILL_BQ;
    const bool ok = r < nq;
    const __nv_bfloat16 *src =
        ok ? q + (size_t)(start + q0 + r) * q_stride + (size_t)(h0 + hq) * HD + col * 8 : q;
    cp_async16(q_smem + (uint32_t)(row * C::LD + col * 8) * 2, src, ok ? 16 : 0);
  }
  const int blk_stride = n_kv_heads * TWIN_CUDA_KV_BLOCK * HD;
  const size_t thr_off = (size_t)g * TWIN_CUDA_KV_BLOCK * HD + (threadIdx.x % C::CH) * 8;
  const __nv_bfloat16 *k_thr = k_cache + thr_off, *v_thr = v_cache + thr_off;
#pragma unroll
  for (int t = 0; t < PREFILL_STAGES - 1; t++) {
    if (kt_lo + t <= kt_hi)
      load_kv_tile<HD, C::THREADS>(stage_of(kt_lo + t), k_thr, v_thr,
                                   tile_block_ids(btab, kt_lo + t, kmin, kmax, lane), kt_lo + t,
                                   kmin, kmax, blk_stride);
    cp_async_commit();
  }
  int next_ids = tile_block_ids(btab, kt_lo + PREFILL_STAGES - 1, kmin, kmax, lane);
  cp_async_wait_all();
  __syncthreads();

  uint32_t qf[C::KSTEPS][4]; /* A fragments of the warp's 16 x HD queries */
  {
    const uint32_t base =
        q_smem + (uint32_t)(((hb * PREFILL_BQ + r0 + (lane % 16)) * C::LD + (lane / 16) * 8) * 2);
#pragma unroll
    for (int kk = 0; kk < C::KSTEPS; kk++) ldmatrix_x4(qf[kk], base + kk * 32);
  }

  float o[C::ONT][4];
#pragma unroll
  for (int j = 0; j < C::ONT; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  /* the warp's rows: positions wlo .. whi (whi: its last row inside the chunk) */
  const bool warp_live = r0 < nq;
  const int wlo = qpos0 + r0, whi = qpos0 + min(r0 + 15, nq - 1);
  const int row_lo = lane / 4, col2 = (lane % 4) * 2;

  /* per-lane ldmatrix offsets inside a stage (bytes) */
  const uint32_t k_lane_off =
      (uint32_t)((((lane % 8) + (lane / 16) * 8) * C::LD + ((lane / 8) % 2) * 8) * 2);
  const uint32_t v_lane_off = (uint32_t)(PREFILL_BK * C::LD * 2) +
      (uint32_t)((((lane % 8) + ((lane / 8) % 2) * 8) * C::LD + (lane / 16) * 8) * 2);

  /* top of the step for tile kt: tile kt has landed and is visible, every warp is done with
   * the stage tile kt + 1 goes to, which is enqueued now */
  auto step_begin = [&](int kt) {
    cp_async_wait_all();
    __syncthreads();
    if (kt + PREFILL_STAGES - 1 <= kt_hi) {
      load_kv_tile<HD, C::THREADS>(stage_of(kt + PREFILL_STAGES - 1), k_thr, v_thr, next_ids,
                                   kt + PREFILL_STAGES - 1, kmin, kmax, blk_stride);
      cp_async_commit();
      next_ids = tile_block_ids(btab, kt + PREFILL_STAGES, kmin, kmax, lane);
    }
  };

  for (int kt = kt_lo; kt <= kt_hi; kt++) {
    step_begin(kt);
    const int k0 = kt * PREFILL_BK;
    /* nothing of this tile is visible to the warp: all keys after its last row, or all
     * before its first row's window */
    if (!warp_live || k0 > whi || (window > 0 && k0 + PREFILL_BK - 1 < wlo + 1 - window))
      continue;
    float sacc[C::SNT][4];
    tile_scores<HD>(sacc, qf, stage_of(kt), k_lane_off);
    tile_scale_mask(sacc, scale_log2, k0, wlo, whi, row_lo, col2, window);
    tile_softmax_pv<HD>(sacc, o, m_run, l_run, stage_of(kt), v_lane_off);
  }

  /* ---- epilogue: O / l as bf16 through the warp's own Q rows, then 16-byte stores ---- */
  if (!warp_live) return;
  float inv[2];
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    float l = l_run[hr];
    l += __shfl_xor_sync(TWIN_FULL_MASK, l, 1);
    l += __shfl_xor_sync(TWIN_FULL_MASK, l, 2);
    inv[hr] = l > 0.0f ? 1.0f / l : 0.0f;
  }
  const uint32_t out_stage = C::Q_IN_STAGE ? stage_of(kt_hi - 1 + PREFILL_STAGES) : q_smem;
  __nv_bfloat16 *stage_rows = reinterpret_cast<__nv_bfloat16 *>(smem + (out_stage - smem0)) +
                              (size_t)(hb * PREFILL_BQ + r0) * C::LD;
#pragma unroll
  for (int j = 0; j < C::ONT; j++) {
    const int col = j * 8 + col2;
    *reinterpret_cast<uint32_t *>(stage_rows + row_lo * C::LD + col) =
        pack_bf16x2(o[j][0] * inv[0], o[j][1] * inv[0]);
    *reinterpret_cast<uint32_t *>(stage_rows + (row_lo + 8) * C::LD + col) =
        pack_bf16x2(o[j][2] * inv[1], o[j][3] * inv[1]);
  }
  __syncwarp();
  const size_t row_stride = (size_t)n_heads * HD;
  __nv_bfloat16 *dst0 = out + (size_t)(start + q0 + r0) * row_stride + (size_t)(h0 + hb) * HD;
#pragma unroll
  for (int i = 0; i < 16 * C::CH / 32; i++) {
    const int c = lane + i * 32;
    const int row = c / C::CH, col = c % C::CH;
    if (r0 + row >= nq) continue;
    const uint4 v = *reinterpret_cast<const uint4 *>(stage_rows + row * C::LD + col * 8);
    __nv_bfloat16 *dst = dst0 + (size_t)row * row_stride + col * 8;
    if (out_aligned) {
      *reinterpret_cast<uint4 *>(dst) = v;
    } else {
      const __nv_bfloat16 *e = reinterpret_cast<const __nv_bfloat16 *>(&v);
#pragma unroll
      for (int k = 0; k < 8; k++) dst[k] = e[k];
    }
  }
}

/* ==== launch ================================================================================== */

template <int HD, int GH>
static cudaError_t prefill_launch(__nv_bfloat16 *out, const __nv_bfloat16 *q, int q_stride,
                                  const __nv_bfloat16 *kc, const __nv_bfloat16 *vc,
                                  const int32_t *tile_seq, const int32_t *tile_q0, int n_tiles,
                                  const int32_t *seq_start, const int32_t *seq_len,
                                  const int32_t *bt, int max_blocks, int nh, int nkv,
                                  float scale_log2, int window, cudaStream_t stream) {
  using C = prefill_cfg<HD, GH>;
  const long long blocks = (long long)n_tiles * (nh / GH);
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  cudaError_t e = cudaFuncSetAttribute(attn_prefill_kernel<HD, GH>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::BYTES);
  if (e != cudaSuccess) return e;
  const int out_aligned = (reinterpret_cast<uintptr_t>(out) & 15) == 0;
  attn_prefill_kernel<HD, GH><<<(unsigned)blocks, C::THREADS, C::BYTES, stream>>>(
      out, q, q_stride, kc, vc, tile_seq, tile_q0, n_tiles, seq_start, seq_len, bt, max_blocks,
      nh, nkv, scale_log2, window, out_aligned);
  return cudaGetLastError();
}

/* Query heads per block: the largest of 4 (hd 64 only), 2, 1 dividing the group (K/V tiles
 * shared by more heads cost fewer L2 reads per flop; at hd 128 a group of 4 measured 239
 * TFLOP/s with 2 heads a block against 224 with 1). */
template <int HD>
static cudaError_t prefill_dispatch(__nv_bfloat16 *out, const __nv_bfloat16 *q, int q_stride,
                                    const __nv_bfloat16 *kc, const __nv_bfloat16 *vc,
                                    const int32_t *tile_seq, const int32_t *tile_q0, int n_tiles,
                                    const int32_t *seq_start, const int32_t *seq_len,
                                    const int32_t *bt, int max_blocks, int nh, int nkv,
                                    float scale_log2, int window, cudaStream_t stream) {
  const int group = nh / nkv;
  if (HD == 64 && group % 4 == 0)
    return prefill_launch<HD, HD == 64 ? 4 : 2>(out, q, q_stride, kc, vc, tile_seq, tile_q0,
                                                n_tiles, seq_start, seq_len, bt, max_blocks, nh,
                                                nkv, scale_log2, window, stream);
  if (group % 2 == 0)
    return prefill_launch<HD, 2>(out, q, q_stride, kc, vc, tile_seq, tile_q0, n_tiles, seq_start,
                                 seq_len, bt, max_blocks, nh, nkv, scale_log2, window, stream);
  return prefill_launch<HD, 1>(out, q, q_stride, kc, vc, tile_seq, tile_q0, n_tiles, seq_start,
                               seq_len, bt, max_blocks, nh, nkv, scale_log2, window, stream);
}

extern "C" cudaError_t twin_cuda_attention_prefill(
    twin_bf16 *out, const twin_bf16 *q, int q_stride, const twin_bf16 *k_cache,
    const twin_bf16 *v_cache, const int32_t *tile_seq, const int32_t *tile_q0, int n_tiles,
    const int32_t *seq_start, const int32_t *seq_len, const int32_t *block_tables, int max_blocks,
    int n_heads, int n_kv_heads, int head_dim, float scale, int window, cudaStream_t stream) {
  if (n_tiles < 0 || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 ||
      n_heads / n_kv_heads > TWIN_CUDA_MAX_GQA || (head_dim != 64 && head_dim != 128) ||
      q_stride % 8 != 0 || max_blocks < 1 || !out || !q || !k_cache || !v_cache || !tile_seq ||
      !tile_q0 || !seq_start || !seq_len || !block_tables ||
      (reinterpret_cast<uintptr_t>(q) & 15) != 0 ||
      (reinterpret_cast<uintptr_t>(k_cache) & 15) != 0 ||
      (reinterpret_cast<uintptr_t>(v_cache) & 15) != 0)
    return cudaErrorInvalidValue;
  if (n_tiles == 0) return cudaSuccess;
  auto *o = reinterpret_cast<__nv_bfloat16 *>(out);
  const auto *qb = reinterpret_cast<const __nv_bfloat16 *>(q);
  const auto *kc = reinterpret_cast<const __nv_bfloat16 *>(k_cache);
  const auto *vc = reinterpret_cast<const __nv_bfloat16 *>(v_cache);
  const float scale_log2 = scale * LOG2E;
  if (head_dim == 64)
    return prefill_dispatch<64>(o, qb, q_stride, kc, vc, tile_seq, tile_q0, n_tiles, seq_start,
                                seq_len, block_tables, max_blocks, n_heads, n_kv_heads,
                                scale_log2, window, stream);
  return prefill_dispatch<128>(o, qb, q_stride, kc, vc, tile_seq, tile_q0, n_tiles, seq_start,
                               seq_len, block_tables, max_blocks, n_heads, n_kv_heads, scale_log2,
                               window, stream);
}
