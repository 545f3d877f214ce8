/* llm-svc/backend/cuda/kernels.h — launchers of the CUDA backend's own kernels (everything but the
 * bf16 projections, which go through cuBLAS: gemm.h; the block-quantized ones are here). Plain
 * C; each launcher enqueues its kernel(s) on `stream` and returns cudaGetLastError()
 * (cudaErrorInvalidValue for arguments it cannot serve). Storage is bf16 (twin_bf16 holds the
 * bits), math is fp32. Every pointer is device memory and is borrowed for the duration of the
 * enqueued work.
 *
 * Paged KV cache layout (one layer):
 *   k_cache, v_cache: [num_blocks][n_kv_heads][TWIN_KV_BLOCK_SIZE = 16][head_dim] bf16
 * so the 16 keys of one head in one block are 16*head_dim contiguous values (4 KiB at hd=128),
 * read with 16-byte loads by the decode kernel. A token's slot is block_id*16 + (pos % 16). */
#ifndef TWIN_BACKEND_CUDA_KERNELS_H
#define TWIN_BACKEND_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "llm-svc/model/tensor.h" /* twin_dtype (a C header without C++ guards) */

typedef uint16_t twin_bf16; /* bf16 bit pattern as stored on the device */

#define TWIN_CUDA_KV_BLOCK 16       /* tokens per KV block (= TWIN_KV_BLOCK_SIZE) */
#define TWIN_CUDA_PREFILL_TILE 64   /* queries per prefill attention tile */
#define TWIN_CUDA_MAX_GQA 8         /* query heads per KV head the attention kernels serve */

/* A comparison switch of the backend (README: TWIN_CUDA_*): on unless the environment sets it
 * to "0". */
static inline int twin_cuda_env_on(const char *name) {
  const char *v = getenv(name);
  return !(v && strcmp(v, "0") == 0);
}

/* ---- embedding gather (embedding.cu) ------------------------------------------------------ */

/* out[t][:] = table[ids[t]][:] for t < n. Every id must lie in [0, rows of table): the caller
 * checks. Also gathers rows of an activation matrix (ids = row numbers). */
cudaError_t twin_cuda_embed_f32(float *out /* [n][dim] */, const twin_bf16 *table /* [rows][dim] */,
                                const int32_t *ids /* [n] */, int n, int dim, cudaStream_t stream);
cudaError_t twin_cuda_embed_bf16(twin_bf16 *out /* [n][dim] */,
                                 const twin_bf16 *table /* [rows][dim] */,
                                 const int32_t *ids /* [n] */, int n, int dim, cudaStream_t stream);
/* The fused decode step's inputs in one kernel: x = the embedding rows (as twin_cuda_embed_f32),
 * sum_sq[t] = the sum of squares of row t in fixed point, the sum a TWIN_GEMV_X_RMSNORM
 * projection reads (rms_sum; written, not added), and cos_sin = twin_cuda_rope_table(positions).
 * dim a multiple of 8, table and x 16-byte aligned. */
cudaError_t twin_cuda_embed_step(float *x /* [n][dim] */, uint64_t *sum_sq /* [n] */,
                                 float *cos_sin /* [n][hd/2][2] */,
                                 const int32_t *positions /* [n] */,
                                 const double *inv_freq /* [hd/2] */, int head_dim,
                                 const twin_bf16 *table /* [rows][dim] */,
                                 const int32_t *ids /* [n] */, int n, int dim,
                                 cudaStream_t stream);

/* ---- RMSNorm (rmsnorm.cu) ----------------------------------------------------------------- */

/* y[t] = bf16(x[t] / sqrt(mean(x[t]^2) + eps) * w) */
cudaError_t twin_cuda_rmsnorm(twin_bf16 *y /* [n][dim] */, const float *x /* [n][dim] */,
                              const twin_bf16 *w /* [dim] */, int n, int dim, float eps,
                              cudaStream_t stream);
/* x[t] += delta[t] (the residual stream, updated in place); then y[t] = rmsnorm(x[t]) * w. */
cudaError_t twin_cuda_add_rmsnorm(twin_bf16 *y /* [n][dim] */, float *x /* [n][dim] */,
                                  const float *delta /* [n][dim] */, const twin_bf16 *w /* [dim] */,
                                  int n, int dim, float eps, cudaStream_t stream);

/* ---- RoPE + KV-cache write (rope_kv.cu) --------------------------------------------------- */

/* cos_sin[t][i] = (cos, sin)(positions[t] * inv_freq[i]) for i < hd/2, the angle in double
 * (as the CPU reference does), rounded to fp32. Once per step; every layer reads it. */
cudaError_t twin_cuda_rope_table(float *cos_sin /* [n][hd/2][2] */, const int32_t *positions /* [n] */,
                                 const double *inv_freq /* [hd/2] */, int n, int head_dim,
                                 cudaStream_t stream);

/* For each token t of the fused QKV projection output
 *   qkv[t] = [ q: n_heads*hd | k: n_kv_heads*hd | v: n_kv_heads*hd ]
 * adds the bias (if non-NULL), rotates q in place and k into the cache (HF rotate_half pairing:
 * element i with i + hd/2, by the angle whose cos/sin are cos_sin[t][i]), and writes k and v to
 * the cache slot slot_mapping[t] (block = slot / 16, row = slot % 16); slot < 0 writes nothing
 * (padding). With a bias, the k and v parts of qkv are left without it (only the cache has it).
 * head_dim must be a multiple of 4. */
cudaError_t twin_cuda_rope_kv_write(twin_bf16 *qkv /* [n][(n_heads + 2*n_kv_heads)*hd] */,
                                    const twin_bf16 *qkv_bias /* [(n_heads + 2*n_kv_heads)*hd] or NULL */,
                                    const float *cos_sin /* [n][hd/2][2] */,
                                    const int32_t *slot_mapping /* [n] */,
                                    twin_bf16 *k_cache /* [num_blocks][n_kv_heads][16][hd] */,
                                    twin_bf16 *v_cache /* [num_blocks][n_kv_heads][16][hd] */,
                                    int n, int n_heads, int n_kv_heads, int head_dim,
                                    cudaStream_t stream);

/* ---- paged attention (attention_decode.cu, attention_prefill.cu) --------------------------
 * Sequences are described as in twin_batch: the new tokens of sequence s are rows
 * seq_start[s] .. seq_start[s+1]-1 of q and out; its context after this step is seq_len[s]
 * tokens (the cached prefix plus the new ones, already written to the cache), and key position p
 * is in block block_tables[s*max_blocks + p/16]. The new token i of s sits at position
 * seq_len[s] - n_new + i and attends to positions 0 .. itself (causal), or only to the last
 * `window` of them when window > 0 (Mistral's sliding window). q row r, head h is at
 * q[r*q_stride + h*hd] (q_stride lets q be read in place inside the fused QKV output); out row r
 * is out[r*n_heads*hd ...]. Query head h reads KV head h / (n_heads / n_kv_heads).
 * head_dim must be 64 or 128; n_heads / n_kv_heads an integer in 1 .. TWIN_CUDA_MAX_GQA.
 * scale multiplies q.k (1/sqrt(hd) for llama). */

/* Decode: one query per listed sequence (seqs[i], i < n_decode; n_new == 1 for each). One thread
 * block serves all query heads of one KV head, so K and V are read once per KV head; a context
 * longer than partition_tokens is split over several blocks (split-K) whose partial results go
 * to part_acc / part_ml and are combined by the last of them to finish when split_counters is
 * given (n_decode * n_heads counters, zero before the first call and left zero), else by a
 * second (reduce) kernel; the results are the same bits.
 * partition_tokens: device memory holding one int, the keys per split: a multiple of 16,
 * >= 16 (read by the kernels, so one captured CUDA graph serves any context length). The keys a
 * sequence reads start at the block holding its first visible position (0 without a window):
 * span = seq_len - 16*floor(first/16); max_splits >= ceil(span / partition) over the listed
 * sequences (the grid has max_splits blocks per KV head). part_* may be NULL when
 * max_splits == 1. A listed sequence with seq_len 0 is skipped (padding).
 * The metadata (seqs .. block_tables, partition_tokens) and the keys and values of positions
 * before each sequence's new token are read before the previous kernel on the stream has
 * finished (programmatic dependent launch): they must have been written by earlier work (the
 * step's host-to-device copy, earlier steps); q and the new token's K/V row are read after. */
cudaError_t twin_cuda_attention_decode(
    twin_bf16 *out /* [rows][n_heads*hd] */, const twin_bf16 *q, int q_stride,
    const twin_bf16 *k_cache /* [num_blocks][n_kv_heads][16][hd] */, const twin_bf16 *v_cache,
    const int32_t *seqs /* [n_decode] indices into seq_start / seq_len / block_tables */,
    const int32_t *seq_start, const int32_t *seq_len,
    const int32_t *block_tables /* [*][max_blocks] */, int max_blocks, int n_decode,
    int n_heads, int n_kv_heads, int head_dim, float scale, int window,
    const int32_t *partition_tokens /* [1], device */, int max_splits,
    float *part_acc /* [n_decode][n_heads][max_splits][hd] */,
    float *part_ml /* [n_decode][n_heads][max_splits][2]: running max (log2 units), sum */,
    unsigned *split_counters /* [n_decode * n_heads] or NULL */, cudaStream_t stream);

/* Warps per thread block twin_cuda_attention_decode uses for a call with these counts: the
 * wide form (16 warps at head dim 64 when a block serves up to 4 query heads, else 8) when the
 * step's (sequence, KV-head group) pairs, n_decode * n_kv_heads * G/GH, are at most half the
 * current device's multiprocessors; else 4. GH: the query heads one block serves (the largest
 * divisor of the group size G up to 8 at head dim 64, 4 at 128). A split reads each of its KV
 * blocks of earlier steps before the previous kernel ends only when it has no more blocks than
 * warps: a caller sizing splits gives each at least 16 * warps keys. 0 for a shape
 * twin_cuda_attention_decode rejects. Asks the runtime for the current device's SM count.
 * TWIN_CUDA_ATTN_WIDE=0 in the environment: always 4. */
int twin_cuda_attention_decode_warps(int n_decode, int n_heads, int n_kv_heads, int head_dim);

/* twin_cuda_attention_decode with the thread block's warps chosen by the caller: 0 (as
 * twin_cuda_attention_decode_warps says: what twin_cuda_attention_decode does), 4, or the wide
 * count of the shape (16 at head dim 64 when GH <= 4, else 8); any other value is
 * cudaErrorInvalidValue. The results depend on the warps and the partition, never on the
 * device's SM count. */
cudaError_t twin_cuda_attention_decode_ex(
    twin_bf16 *out /* [rows][n_heads*hd] */, const twin_bf16 *q, int q_stride,
    const twin_bf16 *k_cache /* [num_blocks][n_kv_heads][16][hd] */, const twin_bf16 *v_cache,
    const int32_t *seqs /* [n_decode] */, const int32_t *seq_start, const int32_t *seq_len,
    const int32_t *block_tables /* [*][max_blocks] */, int max_blocks, int n_decode,
    int n_heads, int n_kv_heads, int head_dim, float scale, int window,
    const int32_t *partition_tokens /* [1], device */, int max_splits,
    float *part_acc /* [n_decode][n_heads][max_splits][hd] */,
    float *part_ml /* [n_decode][n_heads][max_splits][2] */,
    unsigned *split_counters /* [n_decode * n_heads] or NULL */, int warps, cudaStream_t stream);

/* Prefill: tiles of up to TWIN_CUDA_PREFILL_TILE new queries, tile j covering the new tokens
 * tile_q0[j] .. +63 of sequence tile_seq[j] (the caller lists every tile of every sequence it
 * wants served). Reads the cached prefix and the chunk's own keys through the block table;
 * tensor cores (bf16 in, fp32 accumulate) with an online softmax. */
cudaError_t twin_cuda_attention_prefill(
    twin_bf16 *out /* [rows][n_heads*hd] */, const twin_bf16 *q, int q_stride,
    const twin_bf16 *k_cache /* [num_blocks][n_kv_heads][16][hd] */, const twin_bf16 *v_cache,
    const int32_t *tile_seq /* [n_tiles] */, const int32_t *tile_q0 /* [n_tiles] */, int n_tiles,
    const int32_t *seq_start, const int32_t *seq_len,
    const int32_t *block_tables /* [*][max_blocks] */, int max_blocks, int n_heads,
    int n_kv_heads, int head_dim, float scale, int window, cudaStream_t stream);

/* ---- SiLU(gate) * up (silu_mul.cu) -------------------------------------------------------- */

/* out[t][i] = silu(gate_up[t][i]) * gate_up[t][hidden + i] (the fused gate/up projection). */
cudaError_t twin_cuda_silu_mul(twin_bf16 *out /* [n][hidden] */,
                               const twin_bf16 *gate_up /* [n][2*hidden] */, int n, int hidden,
                               cudaStream_t stream);

/* ---- sampling (sampling.cu) ------------------------------------------------------------------ */

/* ids[r] = the index of the largest logits[r][:] (the lowest index among equals; NaN never wins). */
cudaError_t twin_cuda_argmax(int32_t *ids /* [n] */, const float *logits /* [n][vocab] */, int n,
                             int vocab, cudaStream_t stream);

/* Samples one token per row from softmax(logits / temperature) filtered, in this order, by
 * top-k (keep values >= the k-th largest; k <= 0 or >= vocab: off), top-p (keep the smallest
 * set of largest tokens whose probability, renormalised over the top-k set, reaches top_p;
 * >= 1: off) and min-p (keep tokens with probability >= min_p * the largest; <= 0: off): the
 * Hugging Face order. temperature <= 0 picks the argmax. Randomness: Philox4x32-10 (cuRAND)
 * with key seed[r] and subsequence offset[r] (e.g. the count of tokens the request has
 * generated), so the same (logits, parameters, seed, offset) give the same token whatever else
 * is in the batch. Every parameter array is device memory of n entries. */
cudaError_t twin_cuda_sample(int32_t *ids /* [n] */, const float *logits /* [n][vocab] */, int n,
                             int vocab, const float *temperature, const int32_t *top_k,
                             const float *top_p, const float *min_p, const uint64_t *seed,
                             const uint64_t *offset, cudaStream_t stream);
/* The same with greedy_keys[n] (argmax keys a gemv with `argmax` left: twin_gemv_fused): a greedy
 * row takes its id from its key instead of scanning the logits; every row's key is set back to
 * zero for the next step. */
cudaError_t twin_cuda_sample_keyed(int32_t *ids /* [n] */, const float *logits /* [n][vocab] */,
                                   int n, int vocab, const float *temperature,
                                   const int32_t *top_k, const float *top_p, const float *min_p,
                                   const uint64_t *seed, const uint64_t *offset,
                                   uint64_t *greedy_keys /* [n] */, cudaStream_t stream);

/* ---- weight conversion (convert.cu) ---------------------------------------------------------- */

typedef enum { TWIN_CUDA_SRC_F32 = 0, TWIN_CUDA_SRC_F16 = 1 } twin_cuda_src_type;

/* dst[i] = bf16(src[i]) (round to nearest even; NaN stays NaN) for i < n. */
cudaError_t twin_cuda_convert_to_bf16(twin_bf16 *dst /* [n] */, const void *src /* [n] */,
                                      twin_cuda_src_type src_type, size_t n, cudaStream_t stream);

/* ---- bf16 GEMV (gemv_bf16.cu) ---------------------------------------------------------------
 * The decode-step projections at 1..TWIN_CUDA_GEMV_MAX_N tokens, written for weight bandwidth
 * (tensor-core tiles of 16 weight rows, 16-byte loads straight to registers). */

#define TWIN_CUDA_GEMV_MAX_N 8 /* tokens one GEMV call (bf16 or quantized) serves */

/* y[t][r] = sum_c x[t][c] * w[r][c] + beta * y[t][r] for t < n (1 .. TWIN_CUDA_GEMV_MAX_N),
 * r < rows: row t of x at x + t*ldx, row t of y at y + t*ldy (y may be a band of columns of a
 * wider matrix, e.g. the fused QKV output); fp32 accumulation; y fp32 when y_f32, else bf16
 * (rounded to nearest even); y is not read when beta == 0. cols a multiple of 8; x and w
 * 16-byte aligned, ldx a multiple of 8 (>= cols), ldy >= rows. Deterministic (the same inputs
 * give the same bits), no allocation, no host synchronisation: capturable in a CUDA graph.
 * cudaErrorInvalidValue for arguments it cannot serve. */
cudaError_t twin_cuda_gemv_bf16(void *y /* [n][ldy] */, int y_f32, int ldy,
                                const twin_bf16 *x /* [n][ldx] */, int ldx,
                                const twin_bf16 *w /* [rows][cols] */, int n, int rows, int cols,
                                float beta, cudaStream_t stream);

/* Tuning: the kernel exists in a few compiled shapes (warps per block, chunks per round, row
 * tiles per block); twin_cuda_gemv_bf16 picks one from (rows, cols). The harness times each so
 * the choice can be checked on a new GPU. variant in [0, count) or -1 (the launcher's choice). */
int twin_cuda_gemv_bf16_variant_count(void);
const char *twin_cuda_gemv_bf16_variant_name(int variant); /* static string */
int twin_cuda_gemv_bf16_auto_variant(int rows, int cols);
cudaError_t twin_cuda_gemv_bf16_variant(int variant, void *y /* [n][ldy] */, int y_f32, int ldy,
                                        const twin_bf16 *x /* [n][ldx] */, int ldx,
                                        const twin_bf16 *w /* [rows][cols] */, int n, int rows,
                                        int cols, float beta, cudaStream_t stream);

/* ---- fused decode projections (gemv_bf16.cu) -------------------------------------------------
 * The bf16 GEMV with the element-wise work between a decoder layer's projections folded into
 * its loads and stores, so that a decode step runs one kernel a projection and no RMSNorm,
 * RoPE or SiLU kernels. The x operand is formed as it is loaded:
 *   TWIN_GEMV_X_BF16      x[t][c] bf16, as twin_cuda_gemv_bf16;
 *   TWIN_GEMV_X_RMSNORM   x[t][c] = bf16(r[t][c] * s[t] * norm_w[c]) from the fp32 residual
 *                         stream r, with s[t] = twin_rms_scale(rms_sum[t], 1.0f / cols, eps) (the
 *                         arithmetic of twin_cuda_rmsnorm once the scale is known).
 * With rms_acc set, the kernel also adds each token's sum of squares of the rows it wrote (y fp32
 * and rows the whole row of y: the residual stream after the residual add beta = 1) into
 * rms_acc[t], the sum the next X_RMSNORM projection reads. Blocks add their partial sums with
 * integer atomics in fixed point (TWIN_RMS_FRAC_BITS fractional bits; sums up to 2^44, a row rms
 * up to ~6e4 at 4096 columns), so the total has the same bits whatever order the blocks finish
 * in, and no block waits for another: the grid needs no counter and no last-block pass. The
 * accumulator must be zero before the call; rms_clear, if set, names the accumulator the
 * previous normed reader used, which block 0 sets to zero once the kernel's wait has returned
 * (so that a decode step zeroes each accumulator between its reader and its next producer).
 * With rope_kv set instead, the product is a layer's fused q/k/v and the kernel finishes it as
 * twin_cuda_rope_kv_write does (same arithmetic, same bits): bias added, q rotated into y, k
 * rotated and v copied into their cache slots (k and v are not stored in y). Each block then
 * holds both halves of the rotation pairs it serves (rows i and i + hd/2 of a head).
 * With glu_hidden = h instead, the product is a fused gate/up (rows 2h: gate, then up) and y gets
 * SiLU(gate) * up ([n][h] bf16, as twin_cuda_silu_mul on the bf16 products, same bits): the
 * gate/up product itself is never stored. */
/* Fractional bits of the fixed-point sums of squares (rms_acc, rms_sum). */
#define TWIN_RMS_FRAC_BITS 20

#ifdef __CUDACC__
#define TWIN_HOST_DEVICE __host__ __device__
#else
#define TWIN_HOST_DEVICE
#endif

/* 1 / sqrt(mean square + eps) from a fixed-point sum of squares over len values, with
 * inv_len = 1.0f / len: every step correctly rounded in single precision (the conversion, the
 * power-of-two scale, the product with inv_len, the sum and the reciprocal square root; the
 * device's intrinsics keep the compiler from fusing them, the host rounds the double-precision
 * square root once), so host and device get the same bits. */
static inline TWIN_HOST_DEVICE float twin_rms_scale(uint64_t sum, float inv_len, float eps) {
  const float unit = 1.0f / (float)(1u << TWIN_RMS_FRAC_BITS);
#ifdef __CUDA_ARCH__
  return __frsqrt_rn(__fadd_rn(__fmul_rn(__fmul_rn(__ull2float_rn(sum), unit), inv_len), eps));
#else
  const float mean = (float)sum * unit * inv_len;
  return (float)(1.0 / sqrt((double)(mean + eps)));
#endif
}

typedef enum {
  TWIN_GEMV_X_BF16 = 0,
  TWIN_GEMV_X_RMSNORM = 1,
} twin_gemv_x_mode;

typedef struct twin_gemv_rope {
  const twin_bf16 *bias;  /* [(nh + 2*nkv)*hd] q/k/v bias, or NULL */
  const float *cos_sin;   /* [n][hd/2][2] (twin_cuda_rope_table), 16-byte aligned */
  const int32_t *slots;   /* [n] cache slot of each token, -1: not cached (padding); read
                             before the PDL wait, so not written by a kernel on the stream */
  twin_bf16 *k_cache, *v_cache; /* [blocks][nkv][16][hd] one layer's */
  int n_heads, n_kv_heads, head_dim; /* head_dim a multiple of 32 */
} twin_gemv_rope;

typedef struct twin_gemv_fused {
  twin_gemv_x_mode x_mode;
  const void *x;          /* [n][ldx]: bf16, fp32 for X_RMSNORM; 16-byte aligned */
  int ldx;                /* a multiple of 8, >= cols */
  const twin_bf16 *norm_w; /* [cols] X_RMSNORM */
  const uint64_t *rms_sum; /* [n] X_RMSNORM: sums of squares an earlier producer left */
  float eps;              /* X_RMSNORM */
  float rms_inv_len;      /* X_RMSNORM: set by the launcher to 1.0f / cols */
  uint64_t *rms_acc;      /* [n] or NULL: zero on entry, the sums of squares of y on return */
  uint64_t *rms_clear;    /* [TWIN_CUDA_GEMV_MAX_N] or NULL: set to zero after the wait */
  uint64_t *argmax;       /* [n] or NULL, the normed stored form with fp32 y and beta 0 only:
                             each token's largest value and its row folded in with atomicMax
                             (cuda_util.cuh: argmax_key); zero before the call */
  int rope_kv;            /* 1: finish q/k/v as described above (rope must be filled) */
  twin_gemv_rope rope;
  int glu_hidden;         /* > 0: finish gate/up as described above (a multiple of 16) */
  int pdl_early;          /* set by the launcher (twin_cuda_pdl_early): the kernel lets the next
                             one be scheduled at its start */
} twin_gemv_fused;

/* y = x . w^T + beta * y as twin_cuda_gemv_bf16, with x formed by f->x_mode and rms_acc as
 * above. The forms built (what a decoder layer needs; others are refused): rope_kv (x plain or
 * normed; bf16 y, beta 0, rows == (n_heads + 2*n_kv_heads)*head_dim), glu_hidden (x normed; bf16
 * y, beta 0, rows == 2*glu_hidden, y rows of glu_hidden values ldy apart), plain x with
 * rms_acc (y_f32, ldy == rows), and normed x with nothing else (the product stored as
 * twin_cuda_gemv_bf16 does: the LM head on the final norm). */
cudaError_t twin_cuda_gemv_bf16_fused(void *y /* [n][ldy] */, int y_f32, int ldy,
                                      const twin_gemv_fused *f,
                                      const twin_bf16 *w /* [rows][cols] */, int n, int rows,
                                      int cols, float beta, cudaStream_t stream);

/* ---- block-quantized weights (gemv_quant.cu) ------------------------------------------------
 * w holds rows of ggml blocks (llm-svc/model/quant.h; Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K):
 * row r starts at byte r * twin_cuda_quant_row_stride(type, cols) of w, its (cols / block
 * elems) blocks back to back. The stride is the row's byte count rounded up to 16, so for the
 * usual shapes (cols a multiple of 256; of 2048 for Q6_K) it IS the byte count and a GGUF
 * tensor is used as stored; otherwise the backend must lay the rows out at that stride (e.g.
 * cudaMemcpy2D), the padding bytes are never read as weights. cols must be a multiple of the
 * type's block length (32, or 256 for the k-quants). w must be 16-byte aligned (cudaMalloc's
 * allocations are) and hold rows * stride bytes. The dequantized values equal
 * twin_dequantize_row's (quant.c) bit for bit. */

/* Bytes between rows of a block-quantized matrix as these kernels read it: the row's bytes
 * rounded up to a multiple of 16. 0 for a type that is not block-quantized or a cols that is
 * not a multiple of its block. */
size_t twin_cuda_quant_row_stride(twin_dtype type, int cols);

/* y[t][r] = sum_c x[t][c] * dequant(w)[r][c] + beta * y[t][r] for t < n (1 ..
 * TWIN_CUDA_GEMV_MAX_N), r < rows, fp32 accumulation (y is not read when beta == 0): row t of
 * x at x + t*ldx elements, row t of y at y + t*ldy elements (ldy >= rows: y may be a band of a
 * wider matrix, e.g. the fused QKV output). x is bf16 when x_bf16 (the fast path: tensor cores on
 * the integer quants, scales applied per block in fp32), else fp32 (a slower CUDA-core path kept
 * for completeness); x 16-byte aligned, ldx >= cols and a multiple of 8 (bf16) or 4 (fp32).
 * y is fp32 when y_f32, else bf16. The decode-step projection: the weights are read once for all
 * n rows. Deterministic, no allocation, no host synchronisation (capturable in a CUDA graph).
 * cudaErrorInvalidValue for arguments it cannot serve. */
cudaError_t twin_cuda_gemv_quant(void *y /* [n][ldy] */, int y_f32, int ldy,
                                 const void *x /* [n][ldx] */, int x_bf16, int ldx,
                                 const void *w /* [rows][stride] blocks */, twin_dtype w_type,
                                 int n, int rows, int cols, float beta, cudaStream_t stream);

/* Tuning, as for the bf16 GEMV: compiled shapes of the bf16-x kernel (warps per block, row tiles
 * per warp; the pipeline depth follows from the format), timed by the harness. variant in
 * [0, count) or -1 (the launcher's choice); a variant that does not exist for w_type, or x fp32
 * with a variant >= 0, gives cudaErrorInvalidValue. */
int twin_cuda_gemv_quant_variant_count(void);
const char *twin_cuda_gemv_quant_variant_name(int variant); /* static string */
cudaError_t twin_cuda_gemv_quant_variant(int variant, void *y /* [n][ldy] */, int y_f32, int ldy,
                                         const void *x /* [n][ldx] */, int x_bf16, int ldx,
                                         const void *w /* [rows][stride] blocks */,
                                         twin_dtype w_type, int n, int rows, int cols, float beta,
                                         cudaStream_t stream);

/* out[r][c] = bf16(dequant(w)[r][c]) (round to nearest even): the prefill path dequantizes a
 * weight, then multiplies through cuBLAS (gemm.h). w rows at twin_cuda_quant_row_stride(w_type,
 * cols) as above; out 16-byte aligned. */
cudaError_t twin_cuda_dequantize_bf16(twin_bf16 *out /* [rows][cols] */,
                                      const void *w /* [rows][stride] blocks */,
                                      twin_dtype w_type, int64_t rows, int cols,
                                      cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
