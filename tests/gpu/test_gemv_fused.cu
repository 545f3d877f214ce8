/* tests/gpu/test_gemv_fused.cu — the fused decode projections (twin_cuda_gemv_bf16_fused,
 * gemv_bf16.cu): the bf16 GEMV with RMSNorm applied to x as it is loaded, and with the work that
 * follows a projection done by its store: RoPE and the KV-cache write after q/k/v, SiLU * up
 * after gate/up, the residual add and the new row scale (1 / rms) after o_proj and down.
 *  - argument checks (the forms that are not built are refused);
 *  - gate/up -> SiLU * up with x normed on the load, bit for bit against the unfused kernels
 *    (the host forms the normed x with the same fp32 arithmetic; the plain GEMV of the same
 *    warp layout; silu_mul.cu), and against ref_gemm + ref_silu_mul in double;
 *  - q/k/v + RoPE + cache write, x plain and normed, bit for bit against the GEMV followed by
 *    twin_cuda_rope_kv_write: q in y, k and v in the cache, with and without bias, head dims 64
 *    and 128, GQA and not, a padding row (slot -1);
 *  - the residual add with the sums of squares out against ref_gemm, the fixed-point sums against
 *    the ones computed in double from the y the kernel wrote, the same bits on every run (the
 *    blocks add in whatever order they finish), the cleared accumulator zero;
 *  - the LM head's form (x normed, the product stored, fp32 and bf16 y) bit for bit against the
 *    plain GEMV of the same warp layout on the host-normed x; with argmax keys, each token's
 *    key names the largest stored value (lowest index on ties) and holds its value;
 *  - a captured graph of the decode pattern replayed three times gives the direct launches' bits;
 *  - timing on the Llama-3.2-1B and 3.1-8B shapes at n = 1 and 8: each fused projection against
 *    the kernels it replaces, launched back to back (programmatic dependent launch, as in the
 *    decode graph), weight copies rotated past the L2.
 * n = 1, 3, 8 throughout. Usage: test_gemv_fused [1B|8B]: only that shape's timing, no checks. */
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/gemv_harness.h"
#include "tests/gpu/harness.h"

#include <string.h>

static const float kEps = 1e-5f;
static const int kSameLayout = 1; /* plain GEMV variant with the pair kernels' warp layout
                                     (8 warps x 4 chunks: the same sums in the same order) */
static const int kFourTiles = 3; /* the same for the four-tile forms, gate/up (hidden a
                                    multiple of 32) and the LM head: 8 warps x 2 chunks */

/* ---- host helpers ------------------------------------------------------------------------------ */

/* x[t][c] = bf16(r[t][c] * inv[t] * w[c]), in fp32 as the kernel does */
static std::vector<uint16_t> host_norm_x(const std::vector<float> &r, int ldr, const std::vector<float> &inv,
                                         const std::vector<uint16_t> &w, int n, int cols) {
  std::vector<uint16_t> x((size_t)n * cols);
  for (int t = 0; t < n; t++)
    for (int c = 0; c < cols; c++) {
      const float v = r[(size_t)t * ldr + c] * inv[t];
      x[(size_t)t * cols + c] = ref_f32_to_bf16(v * ref_bf16_to_f32(w[c]));
    }
  return x;
}

/* fixed-point sums of squares whose row scales are about 1 / want[t] */
static std::vector<uint64_t> sums_for_scales(const std::vector<float> &want, int cols) {
  std::vector<uint64_t> sums;
  for (float s : want)
    sums.push_back((uint64_t)llround((double)cols / ((double)s * s) * (1 << TWIN_RMS_FRAC_BITS)));
  return sums;
}

/* a residual stream, its sums of squares (their row scales on the host, with the kernel's
 * arithmetic: twin_rms_scale) and a norm weight */
struct normed_input {
  int ldr;
  std::vector<float> res, inv;
  std::vector<uint64_t> sums;
  std::vector<uint16_t> nw;
  float *d_res = nullptr;
  uint64_t *d_sums = nullptr;
  twin_bf16 *d_nw = nullptr;
  normed_input(rng &r, int nmax, int cols) : ldr(cols + 8) {
    res = random_f32(r, (size_t)nmax * ldr, 2.0f);
    nw = random_bf16(r, cols, 0.5f, 1.0f);
    std::vector<float> want;
    for (int t = 0; t < nmax; t++) want.push_back(0.3f + 0.1f * t);
    sums = sums_for_scales(want, cols);
    for (uint64_t s : sums) inv.push_back(twin_rms_scale(s, 1.0f / (float)cols, kEps));
    d_res = dev_upload(res);
    d_sums = dev_upload(sums);
    d_nw = dev_upload(nw);
  }
  ~normed_input() { cudaFree(d_res); cudaFree(d_sums); cudaFree(d_nw); }
  normed_input(const normed_input &) = delete;
  normed_input &operator=(const normed_input &) = delete;
  void set(twin_gemv_fused &f) const {
    f.x_mode = TWIN_GEMV_X_RMSNORM;
    f.x = d_res;
    f.ldx = ldr;
    f.norm_w = d_nw;
    f.rms_sum = d_sums;
    f.eps = kEps;
  }
};

/* ---- checks --------------------------------------------------------------------------------------- */

static void check_arguments(harness &h) {
  twin_bf16 *d_w = nullptr, *d_x = nullptr, *d_nw = nullptr, *d_kc = nullptr;
  float *d_y = nullptr, *d_r = nullptr, *d_cs = nullptr;
  uint64_t *d_sum = nullptr;
  int32_t *d_slots = nullptr;
  CK(cudaMalloc(&d_w, 1 << 20));
  CK(cudaMalloc(&d_x, 1 << 16));
  CK(cudaMalloc(&d_nw, 1 << 12));
  CK(cudaMalloc(&d_y, 1 << 16));
  CK(cudaMalloc(&d_r, 1 << 16));
  CK(cudaMalloc(&d_sum, 64));
  CK(cudaMemset(d_sum, 0, 64));
  CK(cudaMalloc(&d_cs, 1 << 12));
  CK(cudaMalloc(&d_slots, 64));
  CK(cudaMalloc(&d_kc, 1 << 16));
  CK(cudaMemset(d_slots, 0xFF, 64)); /* slot -1: nothing cached */
  const cudaError_t inv = cudaErrorInvalidValue;
  twin_gemv_fused rms = {}; /* the o_proj form: served */
  rms.x_mode = TWIN_GEMV_X_BF16;
  rms.x = d_x;
  rms.ldx = 64;
  rms.rms_acc = d_sum;
  twin_gemv_fused glu = {}; /* the gate/up form: served */
  glu.x_mode = TWIN_GEMV_X_RMSNORM;
  glu.x = d_r;
  glu.ldx = 64;
  glu.norm_w = d_nw;
  glu.rms_sum = d_sum;
  glu.glu_hidden = 16;
  twin_gemv_fused rope = {}; /* q/k/v: 2 heads, 1 KV head of 32 = 128 rows */
  rope.x_mode = TWIN_GEMV_X_BF16;
  rope.x = d_x;
  rope.ldx = 64;
  rope.rope_kv = 1;
  rope.rope = twin_gemv_rope{nullptr, d_cs, d_slots, d_kc, d_kc + 4096, 2, 1, 32};
  twin_gemv_fused norm = glu; /* the LM head's form: served */
  norm.glu_hidden = 0;
  bool ok = twin_cuda_gemv_bf16_fused(d_y, 1, 16, &rms, d_w, 1, 16, 64, 1.0f, 0) == cudaSuccess &&
            twin_cuda_gemv_bf16_fused(d_x, 0, 16, &glu, d_w, 1, 32, 64, 0.0f, 0) == cudaSuccess &&
            twin_cuda_gemv_bf16_fused(d_x, 0, 128, &rope, d_w, 1, 128, 64, 0.0f, 0) == cudaSuccess &&
            twin_cuda_gemv_bf16_fused(d_y, 1, 16, &norm, d_w, 1, 16, 64, 0.0f, 0) == cudaSuccess;
  CK(cudaDeviceSynchronize());
  const bool served = ok;
  twin_gemv_fused f = rms;
  f.x_mode = (twin_gemv_x_mode)7;
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, &f, d_w, 1, 16, 64, 1.0f, 0) == inv; /* mode */
  ok &= twin_cuda_gemv_bf16_fused(d_y, 0, 16, &rms, d_w, 1, 16, 64, 1.0f, 0) == inv; /* bf16 y */
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 20, &rms, d_w, 1, 16, 64, 1.0f, 0) == inv; /* ldy != rows */
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, &rms, d_w, 9, 16, 64, 1.0f, 0) == inv; /* n = 9 */
  f = rms;
  f.x_mode = TWIN_GEMV_X_RMSNORM; /* sums out from a normed x: not built */
  f.x = d_r;
  f.norm_w = d_nw;
  f.rms_sum = d_sum;
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, &f, d_w, 1, 16, 64, 1.0f, 0) == inv;
  f = rms;
  f.rms_acc = nullptr; /* a plain product: twin_cuda_gemv_bf16's job */
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, &f, d_w, 1, 16, 64, 1.0f, 0) == inv;
  f = glu;
  f.norm_w = nullptr;
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 16, &f, d_w, 1, 32, 64, 0.0f, 0) == inv; /* no norm_w */
  f = glu;
  f.rms_sum = nullptr;
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 16, &f, d_w, 1, 32, 64, 0.0f, 0) == inv; /* no sums */
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 16, &glu, d_w, 1, 34, 64, 0.0f, 0) == inv; /* rows != 2h */
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, &glu, d_w, 1, 32, 64, 0.0f, 0) == inv; /* fp32 y */
  f = glu;
  f.x_mode = TWIN_GEMV_X_BF16;
  f.x = d_x;
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 16, &f, d_w, 1, 32, 64, 0.0f, 0) == inv; /* glu, plain x */
  f = glu;
  f.glu_hidden = 24;
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 24, &f, d_w, 1, 48, 64, 0.0f, 0) == inv; /* h % 16 */
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 128, &rope, d_w, 1, 160, 64, 0.0f, 0) == inv; /* rows */
  f = rope;
  f.rope.head_dim = 48;
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 192, &f, d_w, 1, 192, 64, 0.0f, 0) == inv; /* hd % 32 */
  f = rope;
  f.rope.slots = nullptr;
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 128, &f, d_w, 1, 128, 64, 0.0f, 0) == inv; /* slots */
  f = rope;
  f.glu_hidden = 64;
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 128, &f, d_w, 1, 128, 64, 0.0f, 0) == inv; /* both */
  f = rope;
  f.rope.cos_sin = d_cs + 2; /* 8 bytes off: the pairs are copied in 16-byte pieces */
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 128, &f, d_w, 1, 128, 64, 0.0f, 0) == inv;
  f = norm;
  f.rms_clear = d_sum; /* a clear without sums out */
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, &f, d_w, 1, 16, 64, 0.0f, 0) == inv;
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 8, &norm, d_w, 1, 16, 64, 0.0f, 0) == inv; /* ldy < rows */
  f = norm;
  f.argmax = d_sum; /* argmax keys need fp32 y and beta 0 */
  ok &= twin_cuda_gemv_bf16_fused(d_x, 0, 16, &f, d_w, 1, 16, 64, 0.0f, 0) == inv;
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, &f, d_w, 1, 16, 64, 1.0f, 0) == inv;
  f = rms;
  f.argmax = d_sum; /* only on the normed stored form */
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, &f, d_w, 1, 16, 64, 1.0f, 0) == inv;
  ok &= twin_cuda_gemv_bf16_fused(d_y, 1, 16, nullptr, d_w, 1, 16, 64, 1.0f, 0) == inv;
  CK(cudaDeviceSynchronize());
  h.check("gemv fused serves the four forms and refuses bad arguments", served && ok,
          served ? "a bad argument was not refused" : "a served form was refused");
  cudaFree(d_w); cudaFree(d_x); cudaFree(d_nw); cudaFree(d_y); cudaFree(d_r); cudaFree(d_sum);
  cudaFree(d_cs); cudaFree(d_slots); cudaFree(d_kc);
}

/* gate/up (2h rows) with x normed on the load, finished as SiLU(gate) * up */
static void check_glu(harness &h, rng &r, int hid, int cols) {
  const int nmax = 8, rows = 2 * hid;
  const std::vector<uint16_t> w = random_bf16(r, (size_t)rows * cols, 0.3f);
  normed_input in(r, nmax, cols);
  twin_bf16 *d_w = dev_upload(w);
  bool same = true, launched = true;
  double worst = 0;
  for (int n : {1, 3, 8}) {
    const std::vector<uint16_t> x = host_norm_x(in.res, in.ldr, in.inv, in.nw, n, cols);
    twin_bf16 *d_x = dev_upload(x), *d_gu = dev_poisoned<twin_bf16>((size_t)n * rows);
    twin_bf16 *d_act = dev_poisoned<twin_bf16>((size_t)n * hid), *d_act2 = dev_poisoned<twin_bf16>((size_t)n * hid);
    launched &= twin_cuda_gemv_bf16_variant(hid % 32 == 0 ? kFourTiles : kSameLayout, d_gu, 0, rows, d_x, cols, d_w, n,
                                            rows, cols, 0.0f, 0) == cudaSuccess;
    launched &= twin_cuda_silu_mul(d_act, d_gu, n, hid, 0) == cudaSuccess;
    twin_gemv_fused f = {};
    in.set(f);
    f.glu_hidden = hid;
    launched &= twin_cuda_gemv_bf16_fused(d_act2, 0, hid, &f, d_w, n, rows, cols, 0.0f, 0) == cudaSuccess;
    const std::vector<uint16_t> a = dev_download(d_act, (size_t)n * hid), b = dev_download(d_act2, (size_t)n * hid);
    same &= a == b;
    /* in double: ref_gemm on the normed x, rounded to bf16 as stored, then ref_silu_mul */
    std::vector<float> gu((size_t)n * rows);
    ref_gemm(gu.data(), x.data(), cols, w.data(), n, rows, cols);
    std::vector<uint16_t> gu16(gu.size());
    for (size_t i = 0; i < gu.size(); i++) gu16[i] = ref_f32_to_bf16(gu[i]);
    std::vector<float> want((size_t)n * hid);
    ref_silu_mul(want.data(), gu16.data(), n, hid);
    worst = std::max(worst, rel_l2(bf16_to_f32(b), want));
    cudaFree(d_x); cudaFree(d_gu); cudaFree(d_act); cudaFree(d_act2);
  }
  char name[200];
  snprintf(name, sizeof name, "gemv fused gate/up %dx%d, x normed, -> silu*up = gemv + silu_mul bit for bit", rows, cols);
  h.check(name, launched && same, "SiLU(gate) * up differs from the unfused kernels");
  snprintf(name, sizeof name, "gemv fused gate/up %dx%d, x normed, -> silu*up vs double", rows, cols);
  h.report(name, launched ? worst : INFINITY, 1e-2);
  cudaFree(d_w);
}

/* the o_proj / down form: y += x . w^T, then the sums of squares of the new rows */
static void check_rms(harness &h, rng &r, int rows, int cols) {
  const int nmax = 8, runs = 3;
  const std::vector<uint16_t> w = random_bf16(r, (size_t)rows * cols, 1.0f);
  const std::vector<float> y0 = random_f32(r, (size_t)nmax * rows, 3.0f);
  twin_bf16 *d_w = dev_upload(w);
  uint64_t *d_acc = nullptr, *d_clear = nullptr;
  CK(cudaMalloc(&d_acc, nmax * sizeof(uint64_t)));
  CK(cudaMalloc(&d_clear, nmax * sizeof(uint64_t)));
  double worst_y = 0, worst_sum = 0, worst_scale = 0;
  bool launched = true, same_bits = true, rest_zero = true, cleared = true;
  for (int n : {1, 3, 8}) {
    const std::vector<uint16_t> x = random_bf16(r, (size_t)n * cols, 1.0f);
    twin_bf16 *d_x = dev_upload(x);
    twin_gemv_fused f = {};
    f.x_mode = TWIN_GEMV_X_BF16;
    f.x = d_x;
    f.ldx = cols;
    f.rms_acc = d_acc;
    f.rms_clear = d_clear;
    std::vector<uint64_t> first;
    for (int run = 0; run < runs; run++) {
      float *d_y = dev_upload(std::vector<float>(y0.begin(), y0.begin() + (size_t)n * rows));
      CK(cudaMemset(d_acc, 0, nmax * sizeof(uint64_t)));
      CK(cudaMemset(d_clear, 0x5A, nmax * sizeof(uint64_t)));
      launched &= twin_cuda_gemv_bf16_fused(d_y, 1, rows, &f, d_w, n, rows, cols, 1.0f, 0) == cudaSuccess;
      const std::vector<float> got = dev_download(d_y, (size_t)n * rows);
      const std::vector<uint64_t> sums = dev_download(d_acc, nmax);
      for (uint64_t c : dev_download(d_clear, nmax)) cleared &= c == 0;
      for (int t = n; t < nmax; t++) rest_zero &= sums[t] == 0;
      if (run == 0) {
        first = sums;
        std::vector<float> want((size_t)n * rows);
        ref_gemm(want.data(), x.data(), cols, w.data(), n, rows, cols);
        for (size_t i = 0; i < want.size(); i++) want[i] += y0[i];
        worst_y = std::max(worst_y, rel_l2(got, want));
        for (int t = 0; t < n; t++) {
          double ss = 0;
          for (int i = 0; i < rows; i++) ss += (double)got[(size_t)t * rows + i] * got[(size_t)t * rows + i];
          const double sum = (double)sums[t] / (1 << TWIN_RMS_FRAC_BITS);
          worst_sum = std::max(worst_sum, fabs(sum - ss) / ss);
          const double want_s = 1.0 / sqrt(ss / rows + kEps), s = twin_rms_scale(sums[t], 1.0f / (float)rows, kEps);
          worst_scale = std::max(worst_scale, fabs(s - want_s) / want_s);
        }
      } else {
        same_bits &= sums == first;
      }
      cudaFree(d_y);
    }
    cudaFree(d_x);
  }
  char name[200];
  snprintf(name, sizeof name, "gemv fused %dx%d residual add: y", rows, cols);
  h.report(name, launched ? worst_y : INFINITY, 1e-5);
  snprintf(name, sizeof name, "gemv fused %dx%d sums of squares of the written rows", rows, cols);
  h.report(name, launched ? worst_sum : INFINITY, 2e-5);
  snprintf(name, sizeof name, "gemv fused %dx%d row scale from the sums = 1/rms", rows, cols);
  h.report(name, launched ? worst_scale : INFINITY, 2e-5);
  snprintf(name, sizeof name, "gemv fused %dx%d sums: the same bits in %d runs, none past n, cleared accumulator zero",
           rows, cols, runs);
  h.check(name, launched && same_bits && rest_zero && cleared,
          !same_bits ? "the sums differ between runs" : !rest_zero ? "a sum past n was written"
                                                      : "rms_clear was not cleared");
  cudaFree(d_w); cudaFree(d_acc); cudaFree(d_clear);
}

/* the LM head's form: x normed on the load, the product stored (fp32 or bf16 y, beta 0 or 1) */
static void check_norm_store(harness &h, rng &r, int rows, int cols) {
  const int nmax = 8;
  const std::vector<uint16_t> w = random_bf16(r, (size_t)rows * cols, 0.3f);
  normed_input in(r, nmax, cols);
  twin_bf16 *d_w = dev_upload(w);
  const int ldy = rows + 3;
  const std::vector<float> y0 = random_f32(r, (size_t)nmax * ldy, 1.0f);
  bool same = true, launched = true, keys_ok = true;
  uint64_t *d_keys = dev_upload(std::vector<uint64_t>(nmax, 0));
  for (int n : {1, 3, 8})
    for (int y_f32 : {1, 0})
      for (float beta : {0.0f, 1.0f}) {
        const std::vector<uint16_t> x = host_norm_x(in.res, in.ldr, in.inv, in.nw, n, cols);
        twin_bf16 *d_x = dev_upload(x);
        void *y[2];
        for (int k = 0; k < 2; k++) {
          if (y_f32) {
            y[k] = dev_upload(std::vector<float>(y0.begin(), y0.begin() + (size_t)n * ldy));
          } else {
            std::vector<uint16_t> y16((size_t)n * ldy);
            for (size_t i = 0; i < y16.size(); i++) y16[i] = ref_f32_to_bf16(y0[i]);
            y[k] = dev_upload(y16);
          }
        }
        launched &= twin_cuda_gemv_bf16_variant(kFourTiles, y[0], y_f32, ldy, d_x, cols, d_w, n, rows, cols, beta, 0) ==
                    cudaSuccess;
        twin_gemv_fused f = {};
        in.set(f);
        const bool keyed = y_f32 && beta == 0.0f;
        if (keyed) {
          CK(cudaMemset(d_keys, 0, nmax * sizeof(uint64_t)));
          f.argmax = d_keys;
        }
        launched &= twin_cuda_gemv_bf16_fused(y[1], y_f32, ldy, &f, d_w, n, rows, cols, beta, 0) == cudaSuccess;
        if (keyed) {
          const std::vector<float> got = dev_download(static_cast<float *>(y[1]), (size_t)n * ldy);
          const std::vector<uint64_t> keys = dev_download(d_keys, nmax);
          for (int t = 0; t < nmax; t++) {
            if (t >= n) {
              keys_ok &= keys[t] == 0;
              continue;
            }
            int best = 0;
            for (int i = 1; i < rows; i++)
              if (got[(size_t)t * ldy + i] > got[(size_t)t * ldy + best]) best = i;
            const uint32_t hi = (uint32_t)(keys[t] >> 32);
            uint32_t bits = (hi & 0x80000000u) ? (hi & 0x7fffffffu) : ~hi;
            float v;
            memcpy(&v, &bits, sizeof v);
            keys_ok &= (int)~(uint32_t)keys[t] == best && v == got[(size_t)t * ldy + best];
          }
        }
        const size_t bytes = (size_t)n * ldy * (y_f32 ? 4 : 2);
        std::vector<uint8_t> a(bytes), b(bytes);
        CK(cudaMemcpy(a.data(), y[0], bytes, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(b.data(), y[1], bytes, cudaMemcpyDeviceToHost));
        same &= a == b;
        cudaFree(y[0]);
        cudaFree(y[1]);
        cudaFree(d_x);
      }
  char name[200];
  snprintf(name, sizeof name, "gemv fused %dx%d, x normed, stored (fp32 and bf16 y, beta 0 and 1) = gemv bit for bit", rows,
           cols);
  h.check(name, launched && same, "the product differs from the plain GEMV on the normed x");
  snprintf(name, sizeof name, "gemv fused %dx%d, x normed, argmax keys = the largest stored value and its row", rows, cols);
  h.check(name, launched && keys_ok, "a key names another row or value, or a key past n was written");
  cudaFree(d_w);
  cudaFree(d_keys);
}

/* q/k/v with RoPE and the cache write against the unfused pair, bit for bit */
static void check_rope(harness &h, rng &r, int nh, int nkv, int hd, bool with_bias, bool normed,
                       int dim = 520) {
  const int rows = (nh + 2 * nkv) * hd, nmax = 8, blocks = 6, half = hd / 2;
  /* the plain GEMV with the launcher's warp layout: normed q/k/v of at most 132 blocks of 32
   * rows takes the 16-warp form (16 warps x 4 chunks), the rest the pair layout */
  const int layout = normed && rows / 32 <= 132 ? 2 : kSameLayout;
  const std::vector<uint16_t> w = random_bf16(r, (size_t)rows * dim, 0.1f);
  const std::vector<uint16_t> xr = random_bf16(r, (size_t)nmax * dim, 1.0f);
  const std::vector<uint16_t> bias = random_bf16(r, rows, 0.5f);
  normed_input in(r, nmax, dim);
  std::vector<float> cos_sin((size_t)nmax * half * 2);
  for (int t = 0; t < nmax; t++)
    for (int i = 0; i < half; i++) {
      const double a = (37.0 * t + 5) * pow(10000.0, -2.0 * i / hd);
      cos_sin[((size_t)t * half + i) * 2] = (float)cos(a);
      cos_sin[((size_t)t * half + i) * 2 + 1] = (float)sin(a);
    }
  std::vector<int32_t> slots(nmax);
  for (int t = 0; t < nmax; t++) slots[t] = t == 2 ? -1 : (t * 7 + 3) % (blocks * 16); /* row 2 pads */
  const size_t cache_elems = (size_t)blocks * nkv * 16 * hd;
  twin_bf16 *d_w = dev_upload(w), *d_bias = dev_upload(bias);
  float *d_cs = dev_upload(cos_sin);
  int32_t *d_slots = dev_upload(slots);
  bool same = true, launched = true;
  for (int n : {1, 3, 8}) {
    const std::vector<uint16_t> x = normed ? host_norm_x(in.res, in.ldr, in.inv, in.nw, n, dim) : xr;
    twin_bf16 *d_x = dev_upload(x);
    twin_bf16 *kc[2], *vc[2], *yq[2];
    for (int k = 0; k < 2; k++) {
      kc[k] = dev_poisoned<twin_bf16>(cache_elems);
      vc[k] = dev_poisoned<twin_bf16>(cache_elems);
      yq[k] = dev_poisoned<twin_bf16>((size_t)n * rows);
    }
    launched &= twin_cuda_gemv_bf16_variant(layout, yq[0], 0, rows, d_x, dim, d_w, n, rows, dim, 0.0f, 0) == cudaSuccess;
    launched &= twin_cuda_rope_kv_write(yq[0], with_bias ? d_bias : nullptr, d_cs, d_slots, kc[0], vc[0], n, nh,
                                        nkv, hd, 0) == cudaSuccess;
    twin_gemv_fused f = {};
    if (normed) {
      in.set(f);
    } else {
      f.x_mode = TWIN_GEMV_X_BF16;
      f.x = d_x;
      f.ldx = dim;
    }
    f.rope_kv = 1;
    f.rope = twin_gemv_rope{with_bias ? d_bias : nullptr, d_cs, d_slots, kc[1], vc[1], nh, nkv, hd};
    launched &= twin_cuda_gemv_bf16_fused(yq[1], 0, rows, &f, d_w, n, rows, dim, 0.0f, 0) == cudaSuccess;
    const std::vector<uint16_t> y0 = dev_download(yq[0], (size_t)n * rows), y1 = dev_download(yq[1], (size_t)n * rows);
    for (int t = 0; t < n; t++) /* the q part; k and v are only in the cache */
      same &= memcmp(&y0[(size_t)t * rows], &y1[(size_t)t * rows], (size_t)nh * hd * 2) == 0;
    same &= dev_download(kc[0], cache_elems) == dev_download(kc[1], cache_elems);
    same &= dev_download(vc[0], cache_elems) == dev_download(vc[1], cache_elems);
    for (int k = 0; k < 2; k++) {
      cudaFree(kc[k]);
      cudaFree(vc[k]);
      cudaFree(yq[k]);
    }
    cudaFree(d_x);
  }
  char name[200];
  snprintf(name, sizeof name, "gemv fused q/k/v + rope + cache write = gemv + rope_kv_write bit for bit (%d/%d heads, hd %d, %d columns%s%s)",
           nh, nkv, hd, dim, with_bias ? ", bias" : "", normed ? ", x normed" : "");
  h.check(name, launched && same, "q, the k cache or the v cache differs from the unfused kernels");
  cudaFree(d_w); cudaFree(d_bias); cudaFree(d_cs); cudaFree(d_slots);
}

/* A decode layer's pattern captured as a graph (q/k/v normed + rope, o_proj with the scale out,
 * gate/up normed by it, down with the scale out) and replayed three times on the same inputs:
 * the bits equal direct launches, every replay (the counter is reset, nothing races). */
static void check_graph_replay(harness &h, rng &r) {
  const int dim = 1000, hid = 1504, n = 5, nh = 4, nkv = 2, hd = 64, qkv = (nh + 2 * nkv) * hd, qd = nh * hd;
  const std::vector<uint16_t> wqkv = random_bf16(r, (size_t)qkv * dim, 0.1f), wo = random_bf16(r, (size_t)dim * qd, 0.1f);
  const std::vector<uint16_t> wgu = random_bf16(r, (size_t)2 * hid * dim, 0.1f), wd = random_bf16(r, (size_t)dim * hid, 0.1f);
  const std::vector<uint16_t> nw = random_bf16(r, dim, 0.5f, 1.0f);
  const std::vector<float> res0 = random_f32(r, (size_t)n * dim, 2.0f), cs = random_f32(r, (size_t)n * hd, 1.0f);
  twin_bf16 *d_wqkv = dev_upload(wqkv), *d_wo = dev_upload(wo), *d_wgu = dev_upload(wgu), *d_wd = dev_upload(wd);
  twin_bf16 *d_nw = dev_upload(nw), *d_qkv = dev_poisoned<twin_bf16>((size_t)n * qkv);
  twin_bf16 *d_act = dev_poisoned<twin_bf16>((size_t)n * hid), *d_kc = dev_poisoned<twin_bf16>((size_t)nkv * 16 * hd);
  twin_bf16 *d_vc = dev_poisoned<twin_bf16>((size_t)nkv * 16 * hd);
  float *d_res = dev_upload(res0), *d_cs = dev_upload(cs);
  const std::vector<uint64_t> s1_0 = sums_for_scales(std::vector<float>(8, 0.7f), dim), zeros(8, 0);
  uint64_t *d_s1 = dev_upload(s1_0), *d_s2 = dev_upload(zeros); /* sum_attn, sum_ffn */
  std::vector<int32_t> slots(n);
  for (int t = 0; t < n; t++) slots[t] = t;
  int32_t *d_slots = dev_upload(slots);
  twin_gemv_fused fq = {}, fo = {}, fg = {}, fd = {};
  fq.x_mode = TWIN_GEMV_X_RMSNORM; fq.x = d_res; fq.ldx = dim; fq.norm_w = d_nw; fq.rms_sum = d_s1; fq.eps = kEps;
  fq.rope_kv = 1; fq.rope = twin_gemv_rope{nullptr, d_cs, d_slots, d_kc, d_vc, nh, nkv, hd};
  fo.x_mode = TWIN_GEMV_X_BF16; fo.x = d_qkv; fo.ldx = qkv; fo.rms_acc = d_s2; fo.rms_clear = d_s1;
  fg.x_mode = TWIN_GEMV_X_RMSNORM; fg.x = d_res; fg.ldx = dim; fg.norm_w = d_nw; fg.rms_sum = d_s2; fg.eps = kEps;
  fg.glu_hidden = hid;
  fd = fo; fd.x = d_act; fd.ldx = hid; fd.rms_acc = d_s1; fd.rms_clear = d_s2;
  auto reset = [&]() {
    CK(cudaMemcpy(d_res, res0.data(), res0.size() * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_s1, s1_0.data(), s1_0.size() * sizeof(uint64_t), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_s2, zeros.data(), zeros.size() * sizeof(uint64_t), cudaMemcpyHostToDevice));
  };
  auto step = [&](cudaStream_t s) { /* o_proj reads q of the q/k/v output as its "attention" */
    return twin_cuda_gemv_bf16_fused(d_qkv, 0, qkv, &fq, d_wqkv, n, qkv, dim, 0.0f, s) == cudaSuccess &&
           twin_cuda_gemv_bf16_fused(d_res, 1, dim, &fo, d_wo, n, dim, qd, 1.0f, s) == cudaSuccess &&
           twin_cuda_gemv_bf16_fused(d_act, 0, hid, &fg, d_wgu, n, 2 * hid, dim, 0.0f, s) == cudaSuccess &&
           twin_cuda_gemv_bf16_fused(d_res, 1, dim, &fd, d_wd, n, dim, hid, 1.0f, s) == cudaSuccess;
  };
  reset();
  bool ok = step(0);
  const std::vector<float> res_direct = dev_download(d_res, (size_t)n * dim);
  const std::vector<uint64_t> s1_direct = dev_download(d_s1, 8);
  for (int t = 0; t < 8; t++) ok &= (s1_direct[t] != 0) == (t < n); /* down's sums: n of them */
  ok &= dev_download(d_s2, 8) == zeros;
  const std::vector<uint16_t> kc_direct = dev_download(d_kc, (size_t)nkv * 16 * hd);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  ok &= step(s);
  CK(cudaStreamEndCapture(s, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  for (int rep = 0; rep < 3; rep++) {
    reset();
    CK(cudaGraphLaunch(exec, s));
    CK(cudaStreamSynchronize(s));
    ok &= dev_download(d_res, (size_t)n * dim) == res_direct;
    ok &= dev_download(d_s1, 8) == s1_direct; /* down's sums, the same bits */
    ok &= dev_download(d_s2, 8) == zeros;     /* o_proj's, cleared by down */
    ok &= dev_download(d_kc, (size_t)nkv * 16 * hd) == kc_direct;
  }
  h.check("gemv fused: a decode layer's four projections, 3 graph replays = the direct launches bit for bit", ok,
          "a replay differs (counter not reset, or a race)");
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaStreamDestroy(s));
  for (void *p : {(void *)d_wqkv, (void *)d_wo, (void *)d_wgu, (void *)d_wd, (void *)d_nw, (void *)d_qkv,
                  (void *)d_act, (void *)d_kc, (void *)d_vc, (void *)d_res, (void *)d_cs, (void *)d_s1,
                  (void *)d_s2, (void *)d_slots})
    cudaFree(p);
}

/* ---- timing ------------------------------------------------------------------------------------------ */

struct layer_shape {
  const char *what;
  int dim, n_heads, n_kv_heads, head_dim, hidden;
};

/* per-step time of the kernels each fused projection replaces vs the fused one, launched back
 * to back (time_seq_ms), weight copies rotated */
static void bench_layer(const layer_shape &L, rng &r) {
  const int n_copies = 6, nmax = 8;
  const int dim = L.dim, hid = L.hidden, hd = L.head_dim, nh = L.n_heads, nkv = L.n_kv_heads;
  const int qkv = (nh + 2 * nkv) * hd, qd = nh * hd;
  struct mat { int rows, cols; std::vector<twin_bf16 *> d; };
  mat mq{qkv, dim, {}}, mo{dim, qd, {}}, mg{2 * hid, dim, {}}, md{dim, hid, {}};
  for (mat *m : {&mq, &mo, &mg, &md}) {
    const std::vector<uint16_t> w = random_bf16_uniform(r, (size_t)m->rows * m->cols, 0.03f);
    for (int c = 0; c < n_copies; c++) m->d.push_back(dev_upload(w));
  }
  twin_bf16 *d_nw = dev_upload(random_bf16(r, dim, 0.1f, 1.0f));
  float *d_res = dev_upload(random_f32(r, (size_t)nmax * dim, 1.0f)), *d_delta = dev_poisoned<float>((size_t)nmax * dim);
  twin_bf16 *d_y = dev_upload(random_bf16(r, (size_t)nmax * dim, 1.0f));
  twin_bf16 *d_qkv = dev_poisoned<twin_bf16>((size_t)nmax * qkv), *d_gu = dev_upload(random_bf16(r, (size_t)nmax * 2 * hid, 1.0f));
  twin_bf16 *d_act = dev_upload(random_bf16(r, (size_t)nmax * hid, 1.0f)), *d_attn = dev_upload(random_bf16(r, (size_t)nmax * qd, 1.0f));
  /* the readers' sums (row scales of 1); the producers' accumulate over the timing loop unread */
  uint64_t *d_sum = dev_upload(sums_for_scales(std::vector<float>(nmax, 1.0f), dim));
  uint64_t *d_acc = dev_upload(std::vector<uint64_t>(nmax, 0));
  std::vector<float> cs((size_t)nmax * hd);
  for (size_t i = 0; i < cs.size(); i++) cs[i] = (float)((i % 2) ? sin(0.001 * i) : cos(0.001 * i));
  float *d_cs = dev_upload(cs);
  std::vector<int32_t> slots(nmax);
  for (int t = 0; t < nmax; t++) slots[t] = t;
  int32_t *d_slots = dev_upload(slots);
  twin_bf16 *d_kc = dev_poisoned<twin_bf16>((size_t)nkv * 16 * hd), *d_vc = dev_poisoned<twin_bf16>((size_t)nkv * 16 * hd);
  for (int n : {1, 8}) {
    twin_gemv_fused fq = {}, fo = {}, fg = {}, fd = {};
    fq.x_mode = TWIN_GEMV_X_RMSNORM; fq.x = d_res; fq.ldx = dim; fq.norm_w = d_nw; fq.rms_sum = d_sum; fq.eps = kEps;
    fq.rope_kv = 1; fq.rope = twin_gemv_rope{nullptr, d_cs, d_slots, d_kc, d_vc, nh, nkv, hd};
    fo.x_mode = TWIN_GEMV_X_BF16; fo.x = d_attn; fo.ldx = qd; fo.rms_acc = d_acc;
    fg = fq; fg.rope_kv = 0; fg.glu_hidden = hid;
    fd = fo; fd.x = d_act; fd.ldx = hid;
    struct row { const char *what; double unfused, fused, bytes; } rows[4] = {
        {"rmsnorm + qkv + rope_kv_write",
         time_seq_ms([&](int i) {
           CK(twin_cuda_rmsnorm(d_y, d_res, d_nw, n, dim, kEps, 0));
           CK(twin_cuda_gemv_bf16(d_qkv, 0, qkv, d_y, dim, mq.d[i % n_copies], n, qkv, dim, 0.0f, 0));
           CK(twin_cuda_rope_kv_write(d_qkv, nullptr, d_cs, d_slots, d_kc, d_vc, n, nh, nkv, hd, 0));
         }),
         time_seq_ms([&](int i) {
           CK(twin_cuda_gemv_bf16_fused(d_qkv, 0, qkv, &fq, mq.d[i % n_copies], n, qkv, dim, 0.0f, 0));
         }),
         2.0 * qkv * dim},
        {"o_proj + add_rmsnorm",
         time_seq_ms([&](int i) {
           CK(twin_cuda_gemv_bf16(d_delta, 1, dim, d_attn, qd, mo.d[i % n_copies], n, dim, qd, 0.0f, 0));
           CK(twin_cuda_add_rmsnorm(d_y, d_res, d_delta, d_nw, n, dim, kEps, 0));
         }),
         time_seq_ms([&](int i) {
           CK(twin_cuda_gemv_bf16_fused(d_res, 1, dim, &fo, mo.d[i % n_copies], n, dim, qd, 1.0f, 0));
         }),
         2.0 * dim * qd},
        {"gate_up + silu_mul (x normed)",
         time_seq_ms([&](int i) {
           CK(twin_cuda_gemv_bf16(d_gu, 0, 2 * hid, d_y, dim, mg.d[i % n_copies], n, 2 * hid, dim, 0.0f, 0));
           CK(twin_cuda_silu_mul(d_act, d_gu, n, hid, 0));
         }),
         time_seq_ms([&](int i) {
           CK(twin_cuda_gemv_bf16_fused(d_act, 0, hid, &fg, mg.d[i % n_copies], n, 2 * hid, dim, 0.0f, 0));
         }),
         4.0 * hid * dim},
        {"down + add_rmsnorm",
         time_seq_ms([&](int i) {
           CK(twin_cuda_gemv_bf16(d_delta, 1, dim, d_act, hid, md.d[i % n_copies], n, dim, hid, 0.0f, 0));
           CK(twin_cuda_add_rmsnorm(d_y, d_res, d_delta, d_nw, n, dim, kEps, 0));
         }),
         time_seq_ms([&](int i) {
           CK(twin_cuda_gemv_bf16_fused(d_res, 1, dim, &fd, md.d[i % n_copies], n, dim, hid, 1.0f, 0));
         }),
         2.0 * dim * hid}};
    double tu = 0, tf = 0, tb = 0;
    for (const row &x : rows) {
      printf("TIME|fused|%s|n=%d|%s|unfused %.2f us|fused %.2f us (%.1f%% of %.0f GB/s)|saves %.2f us\n", L.what, n,
             x.what, x.unfused * 1e3, x.fused * 1e3, 100.0 * x.bytes / (x.fused * 1e-3) / 1e9 / kCopyGBs, kCopyGBs,
             (x.unfused - x.fused) * 1e3);
      tu += x.unfused;
      tf += x.fused;
      tb += x.bytes;
    }
    printf("TIME|fused|%s|n=%d|a layer's projections|unfused %.2f us (9 kernels)|fused %.2f us (4 kernels, %.1f%%)|saves %.2f us a layer\n",
           L.what, n, tu * 1e3, tf * 1e3, 100.0 * tb / (tf * 1e-3) / 1e9 / kCopyGBs, (tu - tf) * 1e3);
  }
  for (mat *m : {&mq, &mo, &mg, &md})
    for (twin_bf16 *p : m->d) cudaFree(p);
  for (void *p : {(void *)d_nw, (void *)d_res, (void *)d_delta, (void *)d_y, (void *)d_qkv, (void *)d_gu,
                  (void *)d_act, (void *)d_attn, (void *)d_sum, (void *)d_acc,
                  (void *)d_cs, (void *)d_slots, (void *)d_kc, (void *)d_vc})
    cudaFree(p);
}

/* the LM head of a decode step (vocab 128256): the final RMSNorm kernel + the plain GEMV the
 * launcher picks, the plain GEMV in the normed form's warp layout alone, and the normed form */
static void bench_head(const layer_shape &L, rng &r) {
  const int vocab = 128256, dim = L.dim, n_copies = 2;
  const std::vector<uint16_t> w = random_bf16_uniform(r, (size_t)vocab * dim, 0.03f);
  std::vector<twin_bf16 *> d_w;
  for (int c = 0; c < n_copies; c++) d_w.push_back(dev_upload(w));
  twin_bf16 *d_nw = dev_upload(random_bf16(r, dim, 0.1f, 1.0f)), *d_y = dev_poisoned<twin_bf16>((size_t)8 * dim);
  float *d_res = dev_upload(random_f32(r, (size_t)8 * dim, 1.0f)), *d_logits = dev_poisoned<float>((size_t)8 * vocab);
  uint64_t *d_sum = dev_upload(sums_for_scales(std::vector<float>(8, 1.0f), dim));
  const double bytes = 2.0 * vocab * dim;
  for (int n : {1, 8}) {
    twin_gemv_fused f = {};
    f.x_mode = TWIN_GEMV_X_RMSNORM; f.x = d_res; f.ldx = dim; f.norm_w = d_nw; f.rms_sum = d_sum; f.eps = kEps;
    const double plain = time_seq_ms([&](int i) {
      CK(twin_cuda_rmsnorm(d_y, d_res, d_nw, n, dim, kEps, 0));
      CK(twin_cuda_gemv_bf16(d_logits, 1, vocab, d_y, dim, d_w[i % n_copies], n, vocab, dim, 0.0f, 0));
    });
    const double same = time_seq_ms([&](int i) {
      CK(twin_cuda_gemv_bf16_variant(kFourTiles, d_logits, 1, vocab, d_y, dim, d_w[i % n_copies], n, vocab, dim, 0.0f, 0));
    });
    const double normed = time_seq_ms([&](int i) {
      CK(twin_cuda_gemv_bf16_fused(d_logits, 1, vocab, &f, d_w[i % n_copies], n, vocab, dim, 0.0f, 0));
    });
    printf("TIME|fused|%s|n=%d|lm_head|rmsnorm + gemv %.2f us|gemv in the head's layout %.2f us|normed x %.2f us (%.1f%% of %.0f GB/s)\n",
           L.what, n, plain * 1e3, same * 1e3, normed * 1e3, 100.0 * bytes / (normed * 1e-3) / 1e9 / kCopyGBs, kCopyGBs);
  }
  for (twin_bf16 *p : d_w) cudaFree(p);
  for (void *p : {(void *)d_nw, (void *)d_y, (void *)d_res, (void *)d_logits, (void *)d_sum}) cudaFree(p);
}

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : nullptr;
  print_device();
  harness h;
  rng r(77);
  if (!filter) {
    check_arguments(h);
    /* gate/up: hidden 16 (one block), 48 with cols 72 (a partial chunk), 160 x 576, 1040 x 1544
     * (a partial super-chunk after whole ones; hidden not a multiple of 32: the pair form),
     * 1024 x 2056 (several super-chunks a warp) */
    const int glu[][2] = {{16, 8}, {48, 72}, {160, 576}, {1040, 1544}, {1024, 2056}};
    for (const auto &s : glu) check_glu(h, r, s[0], s[1]);
    /* rows not a multiple of 16, one block and many */
    const int rms[][2] = {{37, 8}, {45, 72}, {300, 576}, {131, 1536}, {2130, 1544}};
    for (const auto &s : rms) check_rms(h, r, s[0], s[1]);
    check_norm_store(h, r, 37, 72);
    check_norm_store(h, r, 1000, 2056);
    check_rope(h, r, 4, 2, 64, false, false);
    check_rope(h, r, 4, 2, 64, true, true);
    check_rope(h, r, 8, 2, 128, true, false);
    check_rope(h, r, 6, 6, 128, false, true);
    /* past 8 super-chunks a warp of the 16-warp form adds fewer of them than one of 8 warps;
     * 32/8 heads of 128: 192 blocks, the 8-warp normed form */
    check_rope(h, r, 4, 2, 64, true, true, 1544);
    check_rope(h, r, 32, 8, 128, false, true, 1544);
    check_graph_replay(h, r);
  }
  const layer_shape layers[] = {{"1B", 2048, 32, 8, 64, 8192}, {"8B", 4096, 32, 8, 128, 14336}};
  for (const layer_shape &L : layers)
    if (!filter || strstr(L.what, filter)) {
      bench_layer(L, r);
      bench_head(L, r);
    }
  return h.exit_code();
}
