/* llm-svc/backend/cuda/sampling.cu — token selection on the device: argmax, and sampling with
 * temperature, top-k, top-p and min-p, one thread block per row, no sort.
 *   top-k: the k-th largest value by a 4-pass radix select (8 bits a pass) over order-preserving
 *          integer keys of the floats, warp-aggregated shared-memory histograms;
 *   top-p: exact rejection sampling: draw a token from the candidates (inverse CDF in index
 *          order), accept it if the mass of strictly larger tokens is below top_p (that is the
 *          nucleus test), else drop it and everything not above it and draw again. The nucleus is
 *          an upper set, so the accepted token follows the filtered distribution exactly.
 * Randomness: cuRAND Philox4x32-10, key = the request's seed, subsequence = its offset. */
#include <cub/block/block_scan.cuh>
#include <curand_kernel.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"

#define SAMPLE_THREADS 512
#define MAX_ROUNDS 64     /* rejection rounds before falling back to the argmax */
#define MIN_TOP_P 1e-7f   /* top_p <= 0 means "the top token only" */

/* ---- helpers --------------------------------------------------------------------------------- */

/* order_key, key_value, argmax_key: cuda_util.cuh */

struct arg_best {
  float v;
  int i;
};
/* (v, i) beats (w, j) when larger, or equal with a lower index; NaN never beats anything. */
static __device__ __forceinline__ arg_best better(arg_best a, arg_best b) {
  return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

static __device__ arg_best block_argmax(arg_best a, float *sv, int *si) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    arg_best other;
    other.v = __shfl_xor_sync(TWIN_FULL_MASK, a.v, o);
    other.i = __shfl_xor_sync(TWIN_FULL_MASK, a.i, o);
    a = better(a, other);
  }
  __syncthreads();
  if (lane == 0) {
    sv[warp] = a.v;
    si[warp] = a.i;
  }
  __syncthreads();
  a.v = lane < n_warps ? sv[lane] : -INFINITY;
  a.i = lane < n_warps ? si[lane] : INT_MAX;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    arg_best other;
    other.v = __shfl_xor_sync(TWIN_FULL_MASK, a.v, o);
    other.i = __shfl_xor_sync(TWIN_FULL_MASK, a.i, o);
    a = better(a, other);
  }
  return a;
}

/* Scaled logit; NaN counts as -inf. */
static __device__ __forceinline__ float scale_logit(float v, float inv_t) {
  return isnan(v) ? -INFINITY : v * inv_t;
}
static __device__ __forceinline__ float scaled(const float *x, int i, float inv_t) {
  return scale_logit(x[i], inv_t);
}

/* ---- argmax ---------------------------------------------------------------------------------- */

/* v2: 16-byte loads, eight in flight per thread, when the row is 16-byte aligned (v1's strided
 * scalar loads left one block per row latency-bound: ~60 us for a 128k vocabulary); each thread
 * sees its indices in increasing order and better() breaks ties by index, so the result is the
 * same whichever thread saw what. */
static __device__ arg_best row_argmax(const float *x, int vocab, float inv_t, float *sv, int *si) {
  arg_best a = {-INFINITY, INT_MAX};
  int tail = 0; /* first index the scalar loop covers */
  if ((reinterpret_cast<uintptr_t>(x) & 15) == 0) {
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    const int n4 = vocab / 4;
#pragma unroll 8
    for (int j = threadIdx.x; j < n4; j += blockDim.x) {
      const float4 v = x4[j];
      const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 4; k++)
        a = better(a, arg_best{scale_logit(e[k], inv_t), 4 * j + k});
    }
    tail = 4 * n4;
  }
  for (int i = tail + threadIdx.x; i < vocab; i += blockDim.x) a = better(a, arg_best{scaled(x, i, inv_t), i});
  a = block_argmax(a, sv, si);
  if (a.i >= vocab) a.i = 0; /* a row of NaN */
  return a;
}

/* v1: one block per row, strided scalar loads. */
static __global__ void __launch_bounds__(SAMPLE_THREADS)
argmax_kernel(int32_t *__restrict__ ids, const float *__restrict__ logits /* [n][vocab] */, int vocab) {
  pdl_enter();
  __shared__ float sv[32];
  __shared__ int si[32];
  const arg_best a = row_argmax(logits + (size_t)blockIdx.x * vocab, vocab, 1.0f, sv, si);
  if (threadIdx.x == 0) ids[blockIdx.x] = a.i;
}

/* ---- top-k threshold: radix select ------------------------------------------------------------ */

/* The k-th largest scaled value of the row (1 <= k < vocab). */
static __device__ float kth_largest(const float *x, int vocab, float inv_t, int k, unsigned *hist,
                                    int *shared_sel) {
  const int lane = threadIdx.x & 31;
  uint32_t prefix = 0, mask = 0;
  int kk = k;
  for (int pass = 0; pass < 4; pass++) {
    const int shift = 24 - 8 * pass;
    for (int j = threadIdx.x; j < 256; j += blockDim.x) hist[j] = 0;
    __syncthreads();
    for (int base = 0; base < vocab; base += blockDim.x) { /* same trip count in every lane */
      const int i = base + threadIdx.x;
      uint32_t digit = 256; /* not counted */
      if (i < vocab) {
        const uint32_t key = order_key(scaled(x, i, inv_t));
        if ((key & mask) == prefix) digit = (key >> shift) & 255u;
      }
      const unsigned peers = __match_any_sync(TWIN_FULL_MASK, digit);
      if (digit < 256 && lane == __ffs(peers) - 1) atomicAdd(&hist[digit], (unsigned)__popc(peers));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0, d = 255;
      for (; d > 0; d--) {
        if (above + (int)hist[d] >= kk) break;
        above += (int)hist[d];
      }
      shared_sel[0] = d;
      shared_sel[1] = kk - above;
    }
    __syncthreads();
    prefix |= (uint32_t)shared_sel[0] << shift;
    mask |= 255u << shift;
    kk = shared_sel[1];
    __syncthreads(); /* shared_sel is rewritten next pass */
  }
  return key_value(prefix);
}

/* ---- sampling ------------------------------------------------------------------------------------ */

typedef cub::BlockScan<float, SAMPLE_THREADS> sample_scan;

/* v1: one block of 512 threads per row; every pass streams the row (L2-resident after the first). */
static __global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(int32_t *__restrict__ ids, const float *__restrict__ logits /* [n][vocab] */, int vocab,
              const float *__restrict__ temperature, const int32_t *__restrict__ top_k,
              const float *__restrict__ top_p, const float *__restrict__ min_p,
              const uint64_t *__restrict__ seed, const uint64_t *__restrict__ offset,
              uint64_t *__restrict__ greedy_keys /* [n] or NULL */) {
  pdl_enter();
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ unsigned hist[256];
  __shared__ int shared_sel[2];
  __shared__ float shared_u;
  __shared__ int found;
  __shared__ typename sample_scan::TempStorage scan_tmp;

  const int row = blockIdx.x;
  const float *x = logits + (size_t)row * vocab;
  const float t = temperature[row];
  const bool greedy = !(t > 0.0f) || isinf(t);
  if (greedy_keys) { /* the producer's argmax: a greedy row's answer; every key back to zero */
    if (threadIdx.x == 0) {
      const uint64_t key = ld_act_u64(greedy_keys + row);
      if (greedy) ids[row] = key ? argmax_key_index(key) : 0;
      greedy_keys[row] = 0;
    }
    if (greedy) return;
  }
  if (greedy) {
    const arg_best a = row_argmax(x, vocab, 1.0f, sv, si);
    if (threadIdx.x == 0) ids[row] = a.i;
    return;
  }
  const float inv_t = 1.0f / t;
  const arg_best top = row_argmax(x, vocab, inv_t, sv, si);
  const float mx = top.v;
  if (mx == -INFINITY) { /* nothing to sample from */
    if (threadIdx.x == 0) ids[row] = top.i;
    return;
  }

  /* thresholds: keep v >= lo (top-k) and exp(v - mx) >= mp (min-p) */
  const int k = top_k[row];
  const float lo = (k > 0 && k < vocab) ? kth_largest(x, vocab, inv_t, k, hist, shared_sel) : -INFINITY;
  const float mp = fminf(min_p[row], 1.0f);
  const bool use_minp = mp > 0.0f;
  float p = top_p[row];
  const bool use_p = p < 1.0f;
  if (!(p > MIN_TOP_P)) p = MIN_TOP_P;

  /* Z_k: the mass of the top-k set, which top-p is measured against */
  float zk = 0.0f, zc = 0.0f;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = scaled(x, i, inv_t);
    if (v >= lo) {
      const float e = expf(v - mx);
      zk += e;
      if (!use_minp || e >= mp) zc += e;
    }
  }
  zk = block_sum(zk, sv);
  zc = block_sum(zc, sv);

  curandStatePhilox4_32_10_t rng;
  if (threadIdx.x == 0) curand_init(seed[row], offset[row], 0, &rng);

  float pivot = -INFINITY; /* candidates: v >= lo, v > pivot, min-p */
  int chosen = top.i;
  for (int round = 0; round < MAX_ROUNDS; round++) {
    if (threadIdx.x == 0) {
      shared_u = curand_uniform(&rng); /* (0, 1] */
      found = INT_MAX;
    }
    __syncthreads();
    const float target = shared_u * zc;

    /* inverse CDF in index order: the first candidate whose running mass exceeds target */
    float running = 0.0f;
    for (int base = 0; base < vocab; base += 4 * SAMPLE_THREADS) {
      float e[4];
      float tsum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int i = base + 4 * threadIdx.x + j;
        e[j] = 0.0f;
        if (i < vocab) {
          const float v = scaled(x, i, inv_t);
          if (v >= lo && v > pivot) {
            const float ev = expf(v - mx);
            if (!use_minp || ev >= mp) e[j] = ev;
          }
        }
        tsum += e[j];
      }
      float excl, total;
      sample_scan(scan_tmp).ExclusiveSum(tsum, excl, total);
      float cum = running + excl;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        cum += e[j];
        if (e[j] > 0.0f && cum > target) {
          atomicMin(&found, base + 4 * (int)threadIdx.x + j);
          break;
        }
      }
      running += total;
      __syncthreads(); /* found is complete; scan_tmp may be reused */
      if (found != INT_MAX) break;
    }
    const int tok = found != INT_MAX ? found : top.i; /* u == 1 lost to rounding: the argmax */
    chosen = tok;
    if (!use_p) break;

    /* nucleus test: mass of the tokens strictly above tok, against p * Z_k */
    const float vt = scaled(x, tok, inv_t);
    float above = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
      const float v = scaled(x, i, inv_t);
      if (v > vt) above += expf(v - mx);
    }
    above = block_sum(above, sv);
    if (above < p * zk) break;
    /* rejected: tok and everything not above it leave the candidates; what remains (v > vt)
     * already satisfies top-k and min-p, so its mass is `above` */
    pivot = vt;
    zc = above;
    chosen = top.i;
    __syncthreads(); /* shared_u / found are rewritten next round */
  }
  if (threadIdx.x == 0) ids[row] = chosen;
}

/* ---- launchers ------------------------------------------------------------------------------------ */

extern "C" cudaError_t twin_cuda_argmax(int32_t *ids, const float *logits, int n, int vocab,
                                        cudaStream_t stream) {
  if (n < 0 || vocab <= 0 || !ids || !logits) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return twin_launch(argmax_kernel, n, SAMPLE_THREADS, 0, stream, ids, logits, vocab);
}

/* greedy_keys NULL: every greedy row scans its logits */
static cudaError_t sample_launch(int32_t *ids, const float *logits, int n, int vocab,
                                 const float *temperature, const int32_t *top_k,
                                 const float *top_p, const float *min_p, const uint64_t *seed,
                                 const uint64_t *offset, uint64_t *greedy_keys,
                                 cudaStream_t stream) {
  if (n < 0 || vocab <= 0 || !ids || !logits || !temperature || !top_k || !top_p || !min_p ||
      !seed || !offset)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return twin_launch(sample_kernel, n, SAMPLE_THREADS, 0, stream, ids, logits, vocab, temperature,
                     top_k, top_p, min_p, seed, offset, greedy_keys);
}

extern "C" cudaError_t twin_cuda_sample(int32_t *ids, const float *logits, int n, int vocab,
                                        const float *temperature, const int32_t *top_k,
                                        const float *top_p, const float *min_p,
                                        const uint64_t *seed, const uint64_t *offset,
                                        cudaStream_t stream) {
  return sample_launch(ids, logits, n, vocab, temperature, top_k, top_p, min_p, seed, offset,
                       nullptr, stream);
}

extern "C" cudaError_t twin_cuda_sample_keyed(int32_t *ids, const float *logits, int n, int vocab,
                                              const float *temperature, const int32_t *top_k,
                                              const float *top_p, const float *min_p,
                                              const uint64_t *seed, const uint64_t *offset,
                                              uint64_t *greedy_keys, cudaStream_t stream) {
  if (!greedy_keys) return cudaErrorInvalidValue;
  return sample_launch(ids, logits, n, vocab, temperature, top_k, top_p, min_p, seed, offset,
                       greedy_keys, stream);
}
