/* llm-svc/backend/cuda/decode_chain.cu — the products after a layer's decode attention as one
 * persistent kernel (kernels.h: twin_decode_chain): o_proj, gate/up, down and the next layer's
 * q/k/v, four operations of gemv_bf16_unit.cuh units.
 *
 * Why: at batch 1 each of these products is a few microseconds of weight streaming, and a
 * kernel boundary costs about as much again: the next kernel's blocks only find room on a
 * multiprocessor once the previous kernel's leave (the GEMVs fill the register file), then wait
 * out a memory latency before their first bytes arrive. Here every block stays resident for the
 * four operations; a block that has finished its units of one operation takes its next unit,
 * issues that unit's first round of weight loads and only then waits for the operation before
 * to finish, so the loads of the next operation overlap the tail of the previous one.
 *
 * Scheduling: gridDim.x = G blocks of 8 warps, all resident at once (two per multiprocessor; the
 * launcher sizes the grid from the occupancy), so a block that waits never holds up a unit that
 * has no block. Unit u of operation k goes to block (u + off_k) mod G, off_k the units of the
 * operations before (the work of consecutive operations starts on different blocks). A unit of
 * operation k > 0 waits for done[k-1]; units of operation 0 wait for the previous kernel
 * (programmatic dependent launch). Every block lets the next kernel be scheduled as it starts:
 * nothing of this kernel's output is read by it before its own wait.
 *
 * Synchronisation words (c.sync): arrivals[4] (units finished, put back to zero by the last),
 * done[4] (set to 1 with release semantics by the last unit of an operation; see chain_waiter
 * for the reading side), exits (the last block to leave clears done[] and itself). Every
 * activation load in the units goes through the L2 (cuda_util.cuh ld_act_*): a block may read
 * data another block of this kernel wrote, never an older copy in its own L1. */
#include <cuda_bf16.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/gemv_bf16_unit.cuh"
#include "llm-svc/backend/cuda/kernels.h"

#define CHAIN_WARPS 8
#define CHAIN_THREADS (CHAIN_WARPS * 32)

enum { OP_O = 0, OP_GATE_UP = 1, OP_DOWN = 2, OP_QKV = 3, N_OPS = 4 };
enum { SYNC_ARRIVED = 0, SYNC_DONE = 4, SYNC_EXITS = 8 };

static __device__ __forceinline__ unsigned ld_relaxed(const unsigned *p) {
  unsigned v;
  asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

static __device__ __forceinline__ void st_release(unsigned *p, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/* Per-block state of a wait (shared memory, cleared at the start of every unit): the done flag
 * has been seen; a warp polls it. */
struct chain_wait_state {
  volatile int seen, polling;
};

/* gemv_unit's wait: the previous kernel for operation 0, else done[k-1]. One warp of the block
 * polls the flag in device memory (relaxed loads, so the multiprocessor's L1 is left alone; a
 * poller per block keeps the flag's L2 slice free for the weights), the block's other warps watch
 * shared memory. No load of the waiting warp can come before the flag was seen: each is issued
 * after a loop that ends on that value, and reads the L2 (ld_act_*), where the producer's writes
 * were before it set the flag (threadfence, then a release store). */
struct chain_waiter {
  const unsigned *done; /* NULL: the previous kernel */
  chain_wait_state *st;
  __device__ __forceinline__ void operator()(bool) const {
    if (!done) {
      pdl_wait();
      return;
    }
    if ((threadIdx.x & 31) == 0 && !st->seen) {
      if (atomicExch(const_cast<int *>(&st->polling), 1) == 0) {
        while (ld_relaxed(done) == 0u) __nanosleep(64);
        st->seen = 1;
      } else {
        while (!st->seen) __nanosleep(32);
      }
    }
    __syncwarp();
  }
};

/* The unit's writes are published (the block barrier, then one gpu-scope fence: the pattern of
 * a cooperative grid barrier); the last unit of the operation sets its flag. */
static __device__ __forceinline__ void arrive(unsigned *sync, int op, int n_units) {
  __syncthreads(); /* the block's writes, ordered before thread 0's fence (gpu scope) */
  if (threadIdx.x == 0) __threadfence();
  if (threadIdx.x == 0 && atomicAdd(sync + SYNC_ARRIVED + op, 1u) == (unsigned)n_units - 1) {
    sync[SYNC_ARRIVED + op] = 0u; /* every unit has counted: ready for the next launch */
    __threadfence();
    st_release(sync + SYNC_DONE + op, 1u);
  }
}

/* What the kernel reads: the four products' arguments as the stand-alone path passes them,
 * built on the host and read in place from the parameter space (__grid_constant__: no copy in
 * registers or local memory). */
struct chain_params {
  twin_gemv_fused op[N_OPS];
  const twin_bf16 *w[N_OPS];
  void *y[N_OPS];
  int rows[N_OPS], cols[N_OPS], units[N_OPS];
  int n, n_ops;
  unsigned *sync;
};

static chain_params make_params(const twin_decode_chain &c) {
  chain_params p = {};
  for (int k = 0; k < N_OPS; k++) {
    p.op[k].rms_partial = c.rms_partial;
    p.op[k].rms_counter = c.rms_counter;
    p.op[k].eps = c.eps;
  }
  twin_gemv_fused *f = &p.op[OP_O];
  f->x_mode = TWIN_GEMV_X_BF16;
  f->x = c.attn;
  f->ldx = c.q_dim;
  f->rms_out = c.scale_ffn;
  p.w[OP_O] = c.wo, p.y[OP_O] = c.x, p.rows[OP_O] = c.dim, p.cols[OP_O] = c.q_dim;
  p.units[OP_O] = (c.dim + 15) / 16;
  f = &p.op[OP_GATE_UP];
  f->x_mode = TWIN_GEMV_X_RMSNORM;
  f->x = c.x;
  f->ldx = c.dim;
  f->norm_w = c.ffn_norm;
  f->inv_rms = c.scale_ffn;
  f->glu_hidden = c.hidden;
  p.w[OP_GATE_UP] = c.w_gate_up, p.y[OP_GATE_UP] = c.act;
  p.rows[OP_GATE_UP] = 2 * c.hidden, p.cols[OP_GATE_UP] = c.dim;
  p.units[OP_GATE_UP] = c.hidden / 16;
  f = &p.op[OP_DOWN];
  f->x_mode = TWIN_GEMV_X_BF16;
  f->x = c.act;
  f->ldx = c.hidden;
  f->rms_out = c.scale_attn;
  p.w[OP_DOWN] = c.w_down, p.y[OP_DOWN] = c.x, p.rows[OP_DOWN] = c.dim;
  p.cols[OP_DOWN] = c.hidden, p.units[OP_DOWN] = (c.dim + 15) / 16;
  f = &p.op[OP_QKV];
  f->x_mode = TWIN_GEMV_X_RMSNORM;
  f->x = c.x;
  f->ldx = c.dim;
  f->norm_w = c.attn_norm;
  f->inv_rms = c.scale_attn;
  f->rope_kv = 1;
  f->rope = c.rope;
  const int qkv_rows = (c.rope.n_heads + 2 * c.rope.n_kv_heads) * c.rope.head_dim;
  p.w[OP_QKV] = c.w_qkv, p.y[OP_QKV] = c.qkv, p.rows[OP_QKV] = qkv_rows;
  p.cols[OP_QKV] = c.dim, p.units[OP_QKV] = qkv_rows / 32;
  p.n = c.n;
  p.n_ops = c.w_qkv ? N_OPS : OP_QKV;
  p.sync = c.sync;
  return p;
}

static __global__ void __launch_bounds__(CHAIN_THREADS, 2)
decode_chain_kernel(const __grid_constant__ chain_params p) {
  /* one unit at a time: the largest unit's shared memory */
  __shared__ __align__(16) char smem[gemv_unit_smem<CHAIN_WARPS, 2>()];
  __shared__ chain_wait_state wait_state;
  pdl_trigger();
  const int G = (int)gridDim.x;
  int off = 0; /* units of the operations before */
  for (int op = 0; op < p.n_ops; op++) {
    const int n_units = p.units[op];
    const chain_waiter wait{op == 0 ? nullptr : p.sync + SYNC_DONE + op - 1, &wait_state};
    for (int u = (((int)blockIdx.x - off) % G + G) % G; u < n_units; u += G) {
      __syncthreads(); /* the previous unit's shared memory is no longer read */
      if (threadIdx.x == 0) {
        wait_state.seen = 0;
        wait_state.polling = 0;
      }
      __syncthreads();
      switch (op) {
        case OP_O:
          gemv_unit<CHAIN_WARPS, 8, 1, TWIN_GEMV_X_BF16, EPI_RMS>(
              p.y[OP_O], 1, p.rows[OP_O], p.op[OP_O], p.w[OP_O], p.n, p.rows[OP_O],
              p.cols[OP_O], 1.0f, u, n_units, wait, smem);
          break;
        case OP_GATE_UP:
          gemv_unit<CHAIN_WARPS, 4, 2, TWIN_GEMV_X_RMSNORM, EPI_GLU>(
              p.y[OP_GATE_UP], 0, p.op[OP_GATE_UP].glu_hidden, p.op[OP_GATE_UP],
              p.w[OP_GATE_UP], p.n, p.rows[OP_GATE_UP], p.cols[OP_GATE_UP], 0.0f, u, n_units,
              wait, smem);
          break;
        case OP_DOWN:
          gemv_unit<CHAIN_WARPS, 8, 1, TWIN_GEMV_X_BF16, EPI_RMS>(
              p.y[OP_DOWN], 1, p.rows[OP_DOWN], p.op[OP_DOWN], p.w[OP_DOWN], p.n,
              p.rows[OP_DOWN], p.cols[OP_DOWN], 1.0f, u, n_units, wait, smem);
          break;
        default:
          gemv_unit<CHAIN_WARPS, 4, 2, TWIN_GEMV_X_RMSNORM, EPI_ROPE>(
              p.y[OP_QKV], 0, p.rows[OP_QKV], p.op[OP_QKV], p.w[OP_QKV], p.n, p.rows[OP_QKV],
              p.cols[OP_QKV], 0.0f, u, n_units, wait, smem);
          break;
      }
      arrive(p.sync, op, n_units);
    }
    off = (off + n_units) % G;
  }
  /* the last block to leave clears the flags for the next launch (which reads them only after
   * waiting for this kernel to end) */
  __syncthreads();
  if (threadIdx.x == 0 && atomicAdd(p.sync + SYNC_EXITS, 1u) == (unsigned)G - 1) {
    for (int k = 0; k < N_OPS; k++) p.sync[SYNC_DONE + k] = 0u;
    p.sync[SYNC_EXITS] = 0u;
  }
}

/* Blocks of the grid: as many as are resident at once (two per multiprocessor). */
static int chain_grid() {
  static const int grid = [] {
    int dev = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, decode_chain_kernel,
                                                      CHAIN_THREADS, 0) != cudaSuccess)
      return 0;
    return sms * per_sm;
  }();
  return grid;
}

extern "C" cudaError_t twin_cuda_decode_chain(const twin_decode_chain *c, cudaStream_t stream) {
  if (!c || c->n < 1 || c->n > TWIN_CUDA_GEMV_MAX_N || c->dim < 16 || c->dim % 16 != 0 ||
      c->q_dim < 8 || c->q_dim % 8 != 0 || c->hidden < 16 || c->hidden % 16 != 0 || !c->attn ||
      !c->x || !c->act || !c->scale_ffn || !c->scale_attn || !c->rms_partial ||
      !c->rms_counter || !c->wo || !c->ffn_norm || !c->w_gate_up || !c->w_down || !c->sync ||
      (reinterpret_cast<uintptr_t>(c->attn) & 15) != 0 ||
      (reinterpret_cast<uintptr_t>(c->act) & 15) != 0 ||
      (reinterpret_cast<uintptr_t>(c->x) & 15) != 0 ||
      (reinterpret_cast<uintptr_t>(c->ffn_norm) & 15) != 0)
    return cudaErrorInvalidValue;
  if (c->w_qkv) {
    const twin_gemv_rope &r = c->rope;
    if (!c->attn_norm || (reinterpret_cast<uintptr_t>(c->attn_norm) & 15) != 0 || !c->qkv ||
        r.head_dim < 32 || r.head_dim % 32 != 0 || r.n_heads < 1 || r.n_kv_heads < 1 ||
        !r.cos_sin || !r.slots || !r.k_cache || !r.v_cache ||
        (reinterpret_cast<uintptr_t>(r.cos_sin) & 7) != 0)
      return cudaErrorInvalidValue;
  }
  const int grid = chain_grid();
  if (grid < 1) return cudaErrorInvalidConfiguration;
  return twin_launch(decode_chain_kernel, (unsigned)grid, CHAIN_THREADS, 0, stream,
                     make_params(*c));
}
