/* llm-svc/backend/cuda/gemv_bf16_unit.cuh — the body of the bf16 decode projection (CUDA C++
 * only), written as one thread block's unit of work with the wait for the producer of x passed
 * in: the stand-alone kernels (gemv_bf16.cu) run a unit per block and wait through
 * programmatic dependent launch; a persistent kernel could take units in turn.
 *
 * The product y = x . w^T for 1..8 tokens with bf16 weights, written for weight bandwidth
 * (cuBLAS reaches only 2.0-2.5 TB/s on these small products). One warp multiplies a tile of 16
 * weight rows with all n tokens through tensor-core mma.sync m16n8k16 (bf16 in, fp32
 * accumulate): the weights are the 16x16 A operand, the tokens the 8 columns of B (columns past
 * n repeat token 0, never stored), so n = 1..8 cost about the same. Each lane loads 16 bytes (8
 * consecutive columns) of two of the tile's rows straight to registers and hands them to the A
 * fragment as they are; a dot product does not care in which order its columns are summed, so
 * the lane's 16 bytes of x (the same 8 columns of its token) form the matching B fragment and
 * nothing is shuffled. The warps of a unit split the columns in interleaved super-chunks
 * (several 32-column chunks whose loads are all issued before the first mma); their partial
 * sums are added in shared memory in a fixed order, so results are deterministic. The first
 * round of weight loads is issued before the wait; x and y are touched after, with everything
 * a unit reads after its wait asked for at once (one round trip: the row scale's sum with the
 * residual it scales, the epilogue's inputs with x). */
#ifndef TWIN_BACKEND_CUDA_GEMV_BF16_UNIT_CUH
#define TWIN_BACKEND_CUDA_GEMV_BF16_UNIT_CUH

#include <cuda_bf16.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

/* ==== device helpers ============================================================================== */

/* 16 bytes of weights: read once per step, so kept out of L1; the L2 fetches the 256-byte
 * segment around them (a warp reads the rest of it in the same super-chunk). */
static __device__ __forceinline__ uint4 ld_weights16(const twin_bf16 *p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

/* 16 bytes of activations: a coherent load kept after pdl_wait (cuda_util.cuh) */
static __device__ __forceinline__ uint4 ld_act16(const twin_bf16 *p) { return ld_act_v4(p); }

/* c[16x8] += a[16x16] . b[16x8], bf16 operands, fp32 accumulators (PTX fragment layouts:
 * a = {row g k 2q..2q+1, row g+8 k 2q.., row g k 2q+8.., row g+8 k 2q+8..}, b = {k 2q.. col g,
 * k 2q+8.. col g}, c = {row g col 2q, 2q+1, row g+8 col 2q, 2q+1}; g = lane / 4, q = lane % 4) */
static __device__ __forceinline__ void mma_bf16_16x8x16(float c[4], uint32_t a0, uint32_t a1,
                                                        uint32_t a2, uint32_t a3, uint32_t b0,
                                                        uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* ==== the x operand ===============================================================================
 * Lane (g, q) needs 16 bytes of x: 8 consecutive columns (from col) of one token, as bf16. They
 * come from x itself or from the fp32 residual stream through RMSNorm (kernels.h:
 * twin_gemv_x_mode), with the arithmetic of rmsnorm.cu so fused and unfused steps round alike. */

/* X_RMSNORM in two halves, so that the residual's load can be in flight with the row scale's
 * (gemv_unit's first round): the 8 fp32 values of the residual, then x from them once the
 * scale is known. */
static __device__ __forceinline__ void load_x_raw(const twin_gemv_fused &f, size_t row_off, int col,
                                                  float4 raw[2]) {
  const float *r = static_cast<const float *>(f.x) + row_off + col;
  raw[0] = ld_act_f4(r);
  raw[1] = ld_act_f4(r + 4);
}

static __device__ __forceinline__ uint4 norm_x(const twin_gemv_fused &f, const float4 raw[2],
                                               int col, float inv_rms) {
  float w8[8], o[8];
  bf16x8_to_f32(__ldg(reinterpret_cast<const uint4 *>(f.norm_w + col)), w8); /* a weight */
  const float v[8] = {raw[0].x, raw[0].y, raw[0].z, raw[0].w, raw[1].x, raw[1].y, raw[1].z, raw[1].w};
#pragma unroll
  for (int e = 0; e < 8; e++) o[e] = v[e] * inv_rms * w8[e];
  return f32_to_bf16x8(o);
}

template <int XM>
static __device__ __forceinline__ uint4 load_x(const twin_gemv_fused &f, size_t row_off, int col,
                                               float inv_rms) {
  if constexpr (XM == TWIN_GEMV_X_BF16) {
    return ld_act16(static_cast<const twin_bf16 *>(f.x) + row_off + col);
  } else {
    float4 raw[2];
    load_x_raw(f, row_off, col, raw);
    return norm_x(f, raw, col, inv_rms);
  }
}

/* ==== the unit ====================================================================================
 * ceil(rows / (16 * NT)) units of W warps. Unit b serves rows 16*NT*b .. +16*NT-1 (NT
 * tiles of 16). The columns are cut into chunks of 32 and super-chunks of U chunks; warp w takes
 * super-chunks w, w + W, w + 2W ... For each chunk, lane (g, q) loads columns 8q .. 8q+7 of
 * rows g and g+8 of each tile and of token g's x, then issues two mma: one on
 * columns 8q..8q+3 (words x, y of the 16 bytes), one on 8q+4..8q+7 (words z, w). Rows past the
 * end read the last row (their results are dropped); columns past the end (cols is a multiple
 * of 8, so a lane's 8 columns are all in or all out) load zeros. XM forms x (load_x); EPI says
 * what happens to the sums (kernels.h): stored (EPI_STORE), stored with the grid's sum of
 * squares (EPI_RMS), finished as q/k/v (EPI_ROPE, NT = 2: tile 0 holds rows 16j .. 16j+15 of a
 * q or k head and tile 1 the rows hd/2 later, their rotation partners; v rows follow in blocks
 * of 32 contiguous rows) or as SiLU(gate) * up (EPI_GLU, NT even: the first NT/2 tiles hold
 * gate rows 8*NT*b .. 8*NT*b + 8*NT-1, the others the up rows of the same columns, rows/2
 * later). */

enum { EPI_STORE = 0, EPI_RMS = 1, EPI_ROPE = 2, EPI_GLU = 3 };

/* first row of tile t of this block */
template <int NT, int EPI>
static __device__ __forceinline__ int tile_row0(const twin_gemv_fused &f, int unit, int t) {
  if constexpr (EPI == EPI_ROPE) {
    const int hd = f.rope.head_dim, half = hd / 2, per_head = half / 16;
    const int rot_blocks = (f.rope.n_heads + f.rope.n_kv_heads) * per_head;
    const int b = unit;
    if (b < rot_blocks) return (b / per_head) * hd + (b % per_head) * 16 + t * half;
    return (f.rope.n_heads + f.rope.n_kv_heads) * hd + (b - rot_blocks) * 32 + 16 * t;
  } else if constexpr (EPI == EPI_GLU) { /* tiles 0 .. NT/2-1 gate rows, the rest up rows */
    return (unit * (NT / 2) + t % (NT / 2)) * 16 + (t / (NT / 2)) * f.glu_hidden;
  } else {
    return unit * 16 * NT + 16 * t;
  }
}

/* The pair epilogues' inputs: row r of the first and of the second half of the tiles for token
 * t, the warps' partial sums added in warp order and rounded to bf16 (the values the plain GEMV
 * would store), in fp32. */
template <int W, int ROWS>
static __device__ __forceinline__ void pair_sums(const float (&partial)[W][ROWS][8], int r, int t,
                                                 float &a, float &c) {
  a = 0.0f;
  c = 0.0f;
#pragma unroll
  for (int k = 0; k < W; k++) {
    a += partial[k][r][t];
    c += partial[k][ROWS / 2 + r][t];
  }
  a = __bfloat162float(__float2bfloat16_rn(a));
  c = __bfloat162float(__float2bfloat16_rn(c));
}

/* Shared memory one unit of gemv_unit<W, NT> uses (bytes): the warps' partial sums, then
 * EPI_RMS's squares sq[8][ROWS], then EPI_ROPE's rotation pairs (rope_cs_smem). */
template <int W, int NT, int EPI>
static constexpr size_t gemv_unit_smem() {
  return sizeof(float) * (W * 16 * NT * 8 + 8 * 16 * NT) +
         (EPI == EPI_ROPE ? 16 * TWIN_CUDA_GEMV_MAX_N * (sizeof(float4) + sizeof(int)) : 0);
}

/* EPI_ROPE: epilogue thread i (< 16 n) finishes row r = i % 16 of both tiles for token
 * t = i / 16; its cos/sin pair (cos_sin[t][fi], fi the row's frequency) is copied to shared
 * memory right after the wait (rope_prefetch), as the aligned 16 bytes that hold it, so that
 * the epilogue finds it there instead of making a round trip of its own. */
template <int W, int NT>
static __device__ __forceinline__ float4 *rope_cs_smem(char *smem) {
  return reinterpret_cast<float4 *>(smem + sizeof(float) * (W * 16 * NT * 8 + 8 * 16 * NT));
}

/* ... and each epilogue thread's cache slot, read before the wait (the step's metadata, which
 * no kernel writes, as the attention kernel reads it) */
template <int W, int NT>
static __device__ __forceinline__ int *rope_slot_smem(char *smem) {
  return reinterpret_cast<int *>(rope_cs_smem<W, NT>(smem) + 16 * TWIN_CUDA_GEMV_MAX_N);
}

static __device__ __forceinline__ size_t rope_cs_index(const twin_gemv_rope &rp, int unit, int i) {
  const int hd = rp.head_dim, half = hd / 2, per_head = half / 16;
  const int t = i / 16, r = i % 16;
  const int fi = (unit % per_head) * 16 + r; /* the row's place in the first half of its head */
  return (size_t)t * half + fi;
}

/* Where this thread's pair is (formed before the wait, so that the copy after it costs no
 * arithmetic while the warp's loads are in flight), or NULL: not an epilogue thread of a
 * rotated unit. */
static __device__ __forceinline__ const float2 *rope_cs_source(const twin_gemv_fused &f, int n,
                                                               int unit) {
  const twin_gemv_rope &rp = f.rope;
  const int rot_blocks = (rp.n_heads + rp.n_kv_heads) * (rp.head_dim / 32);
  if (threadIdx.x >= 16 * n || unit >= rot_blocks) return nullptr;
  const size_t k = rope_cs_index(rp, unit, threadIdx.x) & ~(size_t)1; /* 16-byte aligned pair */
  return reinterpret_cast<const float2 *>(rp.cos_sin) + k;
}

template <int W, int NT>
static __device__ __forceinline__ void rope_prefetch(const float2 *src, char *smem) {
  if (src) cp_async16(smem_addr(rope_cs_smem<W, NT>(smem) + threadIdx.x), src, 16);
  cp_async_commit();
}

/* What follows a unit's products (W warps, ROWS = 16 * NT rows): smem starts with the warps'
 * partial sums partial[W][ROWS][8] (written and made visible by a barrier before the call);
 * EPI says what becomes of them (the unit comment below), for a unit whatever fed its
 * products. */
template <int W, int NT, int EPI>
static __device__ __forceinline__ void gemv_epilogue(void *__restrict__ y, int y_f32, int ldy,
                                                     const twin_gemv_fused &f, int n, int rows,
                                                     int unit, float beta,
                                                     float y_old, char *smem) {
  constexpr int ROWS = 16 * NT;
  float(&partial)[W][ROWS][8] = *reinterpret_cast<float(*)[W][ROWS][8]>(smem);
  const int row0 = unit * ROWS;
  static_assert(EPI != EPI_RMS || ROWS * 8 <= W * 32, "EPI_RMS: one element a thread");
  static_assert(EPI != EPI_ROPE || 16 * TWIN_CUDA_GEMV_MAX_N <= W * 32, "EPI_ROPE: one row a thread");
  if constexpr (EPI == EPI_ROPE) {
    /* as rope_kv.cu: the product rounded to bf16, bias added, rotated in fp32, rounded */
    const twin_gemv_rope &rp = f.rope;
    const int hd = rp.head_dim, half = hd / 2, per_head = half / 16;
    const int rot_blocks = (rp.n_heads + rp.n_kv_heads) * per_head;
    __nv_bfloat16 *yb = static_cast<__nv_bfloat16 *>(y);
    const __nv_bfloat16 *bias = reinterpret_cast<const __nv_bfloat16 *>(rp.bias);
    __nv_bfloat16 *kc = reinterpret_cast<__nv_bfloat16 *>(rp.k_cache);
    __nv_bfloat16 *vc = reinterpret_cast<__nv_bfloat16 *>(rp.v_cache);
    cp_async_wait_all(); /* this thread's cos/sin pair (rope_prefetch) */
    if (threadIdx.x < 16 * n) {
      const int i = threadIdx.x, t = i / 16, r = i - t * 16;
      float a, c;
      pair_sums(partial, r, t, a, c);
      const int ra = tile_row0<NT, EPI>(f, unit, 0) + r, rc = tile_row0<NT, EPI>(f, unit, 1) + r;
      if (bias) {
        a += __bfloat162float(bias[ra]);
        c += __bfloat162float(bias[rc]);
      }
      const int slot = rope_slot_smem<W, NT>(smem)[i];
      const size_t slot_off = slot >= 0 ? kv_slot_offset(slot, rp.n_kv_heads, hd) : 0;
      if (unit < rot_blocks) {
        const int head = unit / per_head;
        const size_t k = rope_cs_index(rp, unit, i);
        const float4 pair = rope_cs_smem<W, NT>(smem)[i];
        const float2 cs = k & 1 ? make_float2(pair.z, pair.w) : make_float2(pair.x, pair.y);
        const int fi = (int)(k - (size_t)t * half); /* frequency index */
        const __nv_bfloat16 lo = __float2bfloat16_rn(a * cs.x - c * cs.y);
        const __nv_bfloat16 hi = __float2bfloat16_rn(c * cs.x + a * cs.y);
        if (head < rp.n_heads) {
          yb[(size_t)t * ldy + ra] = lo;
          yb[(size_t)t * ldy + rc] = hi;
        } else if (slot >= 0) {
          __nv_bfloat16 *dst = kc + slot_off + (size_t)(head - rp.n_heads) * TWIN_CUDA_KV_BLOCK * hd;
          dst[fi] = lo;
          dst[fi + half] = hi;
        }
      } else if (slot >= 0) { /* v: rows ra and rc of the v part */
        const int va = ra - (rp.n_heads + rp.n_kv_heads) * hd, vcol = rc - (rp.n_heads + rp.n_kv_heads) * hd;
        vc[slot_off + (size_t)(va / hd) * TWIN_CUDA_KV_BLOCK * hd + va % hd] = __float2bfloat16_rn(a);
        vc[slot_off + (size_t)(vcol / hd) * TWIN_CUDA_KV_BLOCK * hd + vcol % hd] = __float2bfloat16_rn(c);
      }
    }
  } else if constexpr (EPI == EPI_GLU) {
    /* as silu_mul.cu on the bf16 products: act[t][i] = bf16(silu(gate) * up) */
    __nv_bfloat16 *yb = static_cast<__nv_bfloat16 *>(y);
    for (int i = threadIdx.x; i < ROWS / 2 * n; i += W * 32) {
      const int t = i / (ROWS / 2), r = i - t * (ROWS / 2);
      float g, u;
      pair_sums(partial, r, t, g, u);
      yb[(size_t)t * ldy + unit * (ROWS / 2) + r] = __float2bfloat16_rn(silu(g) * u);
    }
  } else if constexpr (EPI == EPI_STORE) {
    for (int i = threadIdx.x; i < ROWS * n; i += W * 32) {
      const int t = i / ROWS, r = i - t * ROWS, row = row0 + r;
      float v = 0.0f;
      if (row < rows) {
#pragma unroll
        for (int k = 0; k < W; k++) v += partial[k][r][t];
        store_out(y, y_f32, (size_t)t * ldy + row, v, beta);
      }
      if constexpr (ROWS % 32 == 0) {
        /* f.argmax: a warp's 32 elements are rows of one token (ROWS a multiple of 32, and
         * so is ROWS * n: whole warps run each turn); the warp's largest key, one atomic.
         * beta is 0 with argmax (the launcher checks): v as stored. */
        if (f.argmax) {
          uint64_t key = row < rows ? argmax_key(v, row) : 0ull;
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) {
            const uint64_t other = __shfl_xor_sync(TWIN_FULL_MASK, key, o);
            key = other > key ? other : key;
          }
          if ((threadIdx.x & 31) == 0)
            atomicMax(reinterpret_cast<unsigned long long *>(f.argmax) + t, (unsigned long long)key);
        }
      }
    }
  } else { /* EPI_RMS */
    /* y fp32, ldy == rows (the launcher checks): store, keep the squares, then add this
     * block's sum of squares into the grid's fixed-point total (kernels.h: rms_acc). One
     * element a thread (16 * n <= 128 threads); y_old is its old value, loaded after the wait. */
    float(&sq)[8][ROWS] = *reinterpret_cast<float(*)[8][ROWS]>(smem + sizeof partial); /* [token][row] */
    float *yf = static_cast<float *>(y);
    if (threadIdx.x < ROWS * n) {
      const int t = threadIdx.x / ROWS, r = threadIdx.x - t * ROWS, row = row0 + r;
      float v = 0.0f;
      if (row < rows) {
#pragma unroll
        for (int k = 0; k < W; k++) v += partial[k][r][t];
        if (beta != 0.0f) v = fmaf(beta, y_old, v);
        yf[(size_t)t * ldy + row] = v;
      }
      sq[t][r] = v * v;
    }
    if (unit == 0 && f.rms_clear && threadIdx.x >= W * 32 - TWIN_CUDA_GEMV_MAX_N)
      f.rms_clear[threadIdx.x - (W * 32 - TWIN_CUDA_GEMV_MAX_N)] = 0ull;
    __syncthreads();
    if (threadIdx.x < n) {
      float s = 0.0f;
      for (int r = 0; r < ROWS; r++) s += sq[threadIdx.x][r];
      atomicAdd(reinterpret_cast<unsigned long long *>(f.rms_acc) + threadIdx.x,
                __float2ull_rn(s * (float)(1u << TWIN_RMS_FRAC_BITS)));
    }
  }
}

/* Unit `unit` (one thread block's share: rows from tile_row0) of the product, with
 * W warps (blockDim.x == 32 * W). wait(first) is called by every warp once before it touches x
 * or y: first after its first round of weight loads (the warps' start), or, for a warp with no
 * columns, before the epilogue; it must return once the producer of x (and of everything the
 * epilogue reads) has finished. smem: gemv_unit_smem<W, NT, EPI>() bytes, 16-byte aligned. */
template <int W, int U, int NT, int XM, int EPI, typename Wait>
static __device__ __forceinline__ void gemv_unit(void *__restrict__ y /* [n][ldy] */, int y_f32,
                                                 int ldy, const twin_gemv_fused &f,
                                                 const twin_bf16 *__restrict__ w /* [rows][cols] */,
                                                 int n, int rows, int cols, float beta, int unit,
                                                 Wait &&wait, char *smem) {
  constexpr int ROWS = 16 * NT, SUPER = 32 * U;
  float(&partial)[W][ROWS][8] = *reinterpret_cast<float(*)[W][ROWS][8]>(smem); /* [warp][row][token] */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;

  const twin_bf16 *wrow[NT][2]; /* rows g and g+8 of each tile, at column 8q */
#pragma unroll
  for (int t = 0; t < NT; t++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = min(tile_row0<NT, EPI>(f, unit, t) + 8 * h + g, rows - 1);
      wrow[t][h] = w + (size_t)r * cols + 8 * q;
    }
  /* a lane past n reads token 0's x: column t of an mma's result depends only on column t of
   * B, and columns >= n are never stored */
  const int tok = g < n ? g : 0;
  const size_t xoff = (size_t)tok * f.ldx;
  float inv_rms = 1.0f; /* X_RMSNORM: token tok's scale, read after pdl_wait */
  float y_old = 0.0f;   /* EPI_RMS: the old y of this thread's element (gemv_epilogue) */
  /* What the epilogue reads is asked for early, so that it costs no round trip of its own:
   * before the wait, EPI_ROPE's cache slots (metadata); right after it, with x, the residual
   * EPI_RMS adds to and EPI_ROPE's cos/sin pairs (after_wait_y), and the row scale of
   * X_RMSNORM (after_wait; in the first round, the scale's sum and the residual together). */
  auto before_wait = [&]() {
    if constexpr (EPI == EPI_ROPE)
      if (threadIdx.x < 16 * n)
        rope_slot_smem<W, NT>(smem)[threadIdx.x] = ld_act_s32(f.rope.slots + threadIdx.x / 16);
  };
  const float2 *cs_src = nullptr; /* EPI_ROPE: rope_cs_source */
  if constexpr (EPI == EPI_ROPE) cs_src = rope_cs_source(f, n, unit);
  auto after_wait_y = [&]() {
    if constexpr (EPI == EPI_ROPE) rope_prefetch<W, NT>(cs_src, smem);
    if constexpr (EPI == EPI_RMS) {
      const int t = threadIdx.x / ROWS, row = unit * ROWS + threadIdx.x % ROWS;
      if (beta != 0.0f && threadIdx.x < ROWS * n && row < rows)
        y_old = ld_act_f32(static_cast<const float *>(y) + (size_t)t * ldy + row);
    }
  };
  auto after_wait = [&]() {
    if constexpr (XM == TWIN_GEMV_X_RMSNORM)
      inv_rms = twin_rms_scale(ld_act_u64(f.rms_sum + tok), f.rms_inv_len, f.eps);
    after_wait_y();
  };

  float acc[NT][2][4]; /* two chains per tile: the even and odd chunks */
#pragma unroll
  for (int t = 0; t < NT; t++)
#pragma unroll
    for (int e = 0; e < 2; e++)
#pragma unroll
      for (int i = 0; i < 4; i++) acc[t][e][i] = 0.0f;

  const int n_super = (cols + SUPER - 1) / SUPER;
  bool waited = false; /* pdl_wait() done: after the first round of weight loads */
  for (int s = warp; s < n_super; s += W) {
    const int c0 = s * SUPER;
    uint4 wv[NT][2][U], xv[U];
    if (c0 + SUPER <= cols) { /* whole super-chunk: no predicates */
#pragma unroll
      for (int u = 0; u < U; u++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
          wv[t][0][u] = ld_weights16(wrow[t][0] + c0 + 32 * u);
          wv[t][1][u] = ld_weights16(wrow[t][1] + c0 + 32 * u);
        }
      bool formed = false; /* xv formed with the first round's scale */
      if (!waited) {
        before_wait();
        wait(true);
        if constexpr (XM == TWIN_GEMV_X_RMSNORM) {
          /* the row scale's sum and the residual in flight together: one round trip after
           * the wait instead of two */
          const uint64_t sum = ld_act_u64(f.rms_sum + tok);
          float4 raw[U][2];
#pragma unroll
          for (int u = 0; u < U; u++) load_x_raw(f, xoff, c0 + 32 * u + 8 * q, raw[u]);
          after_wait_y();
          inv_rms = twin_rms_scale(sum, f.rms_inv_len, f.eps);
#pragma unroll
          for (int u = 0; u < U; u++) xv[u] = norm_x(f, raw[u], c0 + 32 * u + 8 * q, inv_rms);
          formed = true;
        } else {
          after_wait();
        }
        waited = true;
      }
      if (!formed)
#pragma unroll
        for (int u = 0; u < U; u++) xv[u] = load_x<XM>(f, xoff, c0 + 32 * u + 8 * q, inv_rms);
    } else { /* the last, partial one */
#pragma unroll
      for (int u = 0; u < U; u++) {
        const bool in = c0 + 32 * u + 8 * q < cols;
#pragma unroll
        for (int t = 0; t < NT; t++) {
          wv[t][0][u] = in ? ld_weights16(wrow[t][0] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
          wv[t][1][u] = in ? ld_weights16(wrow[t][1] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
        }
      }
      if (!waited) {
        before_wait();
        wait(true);
        after_wait();
        waited = true;
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const bool in = c0 + 32 * u + 8 * q < cols;
        xv[u] = in ? load_x<XM>(f, xoff, c0 + 32 * u + 8 * q, inv_rms) : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int t = 0; t < NT; t++) {
        const uint4 lo = wv[t][0][u], hi = wv[t][1][u];
        mma_bf16_16x8x16(acc[t][u & 1], lo.x, hi.x, lo.y, hi.y, xv[u].x, xv[u].y);
        mma_bf16_16x8x16(acc[t][u & 1], lo.z, hi.z, lo.w, hi.w, xv[u].z, xv[u].w);
      }
  }

  if (!waited) { /* a warp without columns still reads and writes y below */
    before_wait();
    wait(false);
    after_wait();
  }

  /* the warps' partial sums, added in warp order */
#pragma unroll
  for (int t = 0; t < NT; t++) {
    partial[warp][16 * t + g][2 * q] = acc[t][0][0] + acc[t][1][0];
    partial[warp][16 * t + g][2 * q + 1] = acc[t][0][1] + acc[t][1][1];
    partial[warp][16 * t + g + 8][2 * q] = acc[t][0][2] + acc[t][1][2];
    partial[warp][16 * t + g + 8][2 * q + 1] = acc[t][0][3] + acc[t][1][3];
  }
  __syncthreads();
  gemv_epilogue<W, NT, EPI>(y, y_f32, ldy, f, n, rows, unit, beta, y_old, smem);
}

#endif
