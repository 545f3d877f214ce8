/* tests/gpu/test_gemv_quant.cu — the block-quantized weight kernels (gemv_quant.cu): random
 * weights quantized on the host by the model layer's quantizers (quant.c), laid out at
 * twin_cuda_quant_row_stride (the padding bytes poisoned with 0xFF, so a kernel that used them
 * would produce NaN), then
 *  - twin_cuda_dequantize_bf16 against bf16(twin_dequantize_row) bit for bit;
 *  - twin_cuda_gemv_quant, every compiled variant of the bf16-x path and the launcher's choice,
 *    plus the fp32-x path (n = 1, 2, 3, 8; y fp32 and bf16; x rows ldx > cols apart, y rows
 *    ldy > rows apart, the gaps and the bytes past y watched) against a double matvec over the
 *    reference dequantized weights, on small shapes whose rows need padding and end in a
 *    partial unit of 256; and y += x . w^T (beta = 1);
 *  - the same bits twice and through a captured CUDA graph; argument checks;
 *  - timing on the Llama-3.1-8B projection shapes (n = 1 and 8, bf16 x), weight copies rotated
 *    so that L2 does not serve them, every variant at n = 1, and the fp32-x path (v1's kernel)
 *    at n = 1 for comparison; each alone, in sequence and (n = 1) after a predecessor, as in
 *    test_gemv_bf16; GB/s count weights + x + y against the 4262 GB/s device copy
 *    measured on the H200 (NOTES run 2).
 * Usage: test_gemv_quant [filter]: with a filter, only the timed cases whose "<format> <shape>"
 * contains it, no checks (to point a profiler at one case). */
extern "C" {
#define _Static_assert static_assert /* quant.h is C11 */
#include "llm-svc/model/quant.h"
#undef _Static_assert
}
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/gemv_harness.h"
#include "tests/gpu/harness.h"

#include <string.h>

struct qtype {
  twin_dtype t;
  const char *name;
};
static const qtype kTypes[] = {{TWIN_DT_Q4_0, "q4_0"}, {TWIN_DT_Q4_1, "q4_1"}, {TWIN_DT_Q5_0, "q5_0"},
                               {TWIN_DT_Q8_0, "q8_0"}, {TWIN_DT_Q4_K, "q4_k"}, {TWIN_DT_Q5_K, "q5_k"},
                               {TWIN_DT_Q6_K, "q6_k"}};

/* A weight matrix in a block format on the host, rows `stride` bytes apart. */
struct qmat {
  twin_dtype t;
  int rows, cols;
  size_t row_bytes, stride;
  std::vector<uint8_t> blocks; /* [rows][stride]: row_bytes of blocks, then 0xFF padding */
};

static qmat quantize(twin_dtype t, const float *w /* [rows][cols] */, int rows, int cols) {
  qmat q{t, rows, cols, twin_dtype_bytes_for(t, cols), twin_cuda_quant_row_stride(t, cols), {}};
  if (q.stride < q.row_bytes || q.stride % 16 != 0) {
    fprintf(stderr, "twin_cuda_quant_row_stride(%s, %d) = %zu for rows of %zu bytes\n",
            twin_dtype_name(t), cols, q.stride, q.row_bytes);
    exit(2);
  }
  q.blocks.assign(q.stride * rows, 0xFF);
  for (int r = 0; r < rows; r++)
    if (twin_quantize_row(t, w + (size_t)r * cols, q.blocks.data() + r * q.stride, cols) != 0) {
      fprintf(stderr, "twin_quantize_row failed for %s\n", twin_dtype_name(t));
      exit(2);
    }
  return q;
}

static std::vector<float> dequantize_row(const qmat &q, int r) {
  std::vector<float> out(q.cols);
  twin_dequantize_row(q.t, q.blocks.data() + (size_t)r * q.stride, out.data(), q.cols);
  return out;
}

static double dot(const float *a, const float *b, int n) {
  double s = 0.0;
  for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* true when the n_tail bytes after `used` bytes of a poisoned buffer are still 0xFF */
static bool tail_untouched(const void *d, size_t used, size_t n_tail) {
  std::vector<uint8_t> h(n_tail);
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(h.data(), (const uint8_t *)d + used, n_tail, cudaMemcpyDeviceToHost));
  for (uint8_t b : h)
    if (b != 0xFF) return false;
  return true;
}

static void *dev_upload_bytes(const std::vector<uint8_t> &h) {
  void *p = nullptr;
  CK(cudaMalloc(&p, h.size() + 16));
  CK(cudaMemcpy(p, h.data(), h.size(), cudaMemcpyHostToDevice));
  return p;
}

/* ---- correctness on small shapes ------------------------------------------------------------- */

static void check_small(harness &h, rng &r, const qtype &qt, int rows, int cols) {
  const std::vector<float> wf = random_f32(r, (size_t)rows * cols, 1.0f);
  const qmat q = quantize(qt.t, wf.data(), rows, cols);
  std::vector<float> wd((size_t)rows * cols);
  for (int i = 0; i < rows; i++) {
    const std::vector<float> row = dequantize_row(q, i);
    memcpy(&wd[(size_t)i * cols], row.data(), cols * sizeof(float));
  }
  void *d_w = dev_upload_bytes(q.blocks);
  char name[160];

  { /* dequantize to bf16: bit-equal to the rounded reference */
    twin_bf16 *d_out = dev_poisoned<twin_bf16>((size_t)rows * cols + 32);
    const cudaError_t e = twin_cuda_dequantize_bf16(d_out, d_w, qt.t, rows, cols, 0);
    const std::vector<uint16_t> got = dev_download(d_out, (size_t)rows * cols);
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); i++) bad += got[i] != ref_f32_to_bf16(wd[i]);
    const bool tail = tail_untouched(d_out, (size_t)rows * cols * 2, 64);
    snprintf(name, sizeof name, "dequant bf16 %s %dx%d stride %zu (mismatch fraction)", qt.name, rows,
             cols, q.stride);
    h.report(name, e == cudaSuccess && tail ? (double)bad / got.size() : INFINITY, 0.0);
    cudaFree(d_out);
  }

  /* gemv: x rows ldx apart, y rows ldy apart */
  const int ldx = cols + 8, ldy = rows + 3, nmax = 8;
  const std::vector<float> xf = random_f32(r, (size_t)nmax * ldx, 1.0f);
  std::vector<uint16_t> x16(xf.size());
  for (size_t i = 0; i < xf.size(); i++) x16[i] = ref_f32_to_bf16(xf[i]);
  const std::vector<float> xr = bf16_to_f32(x16); /* what the bf16 x holds */
  std::vector<float> ref[2];                       /* [x_bf16]: [nmax][rows] */
  for (int xb = 0; xb < 2; xb++) {
    const std::vector<float> &xs = xb ? xr : xf;
    ref[xb].resize((size_t)nmax * rows);
    for (int t = 0; t < nmax; t++)
      for (int i = 0; i < rows; i++)
        ref[xb][(size_t)t * rows + i] = (float)dot(&xs[(size_t)t * ldx], &wd[(size_t)i * cols], cols);
  }
  float *d_xf = dev_upload(xf);
  twin_bf16 *d_x16 = dev_upload(x16);
  const int variants = twin_cuda_gemv_quant_variant_count();
  /* v = -2: the fp32-x path (the launcher's only choice); -1: bf16 x, the launcher's choice */
  for (int v = -2; v < variants; v++) {
    const int x_bf16 = v != -2, var = v == -2 ? -1 : v;
    const void *d_x = x_bf16 ? (const void *)d_x16 : (const void *)d_xf;
    { /* does this variant exist for this format? */
      float *d_probe = dev_poisoned<float>(rows);
      const cudaError_t e = twin_cuda_gemv_quant_variant(var, d_probe, 1, rows, d_x, x_bf16, ldx, d_w, qt.t, 1,
                                                         rows, cols, 0.0f, 0);
      CK(cudaDeviceSynchronize());
      cudaFree(d_probe);
      if (e == cudaErrorInvalidValue && v >= 0) {
        printf("  %s: variant [%s] does not exist for this format\n", qt.name, twin_cuda_gemv_quant_variant_name(v));
        continue;
      }
    }
    const char *vn = x_bf16 ? twin_cuda_gemv_quant_variant_name(var) : "x fp32";
    double worst[2] = {0, 0}; /* [y_f32] */
    bool gaps = true;
    for (int n : {1, 2, 3, 8})
      for (int y_f32 = 0; y_f32 < 2; y_f32++) {
        uint8_t *d_y = dev_poisoned<uint8_t>((size_t)n * ldy * 4 + 64);
        const cudaError_t e = twin_cuda_gemv_quant_variant(var, d_y, y_f32, ldy, d_x, x_bf16, ldx, d_w, qt.t, n,
                                                           rows, cols, 0.0f, 0);
        double err = INFINITY;
        if (e == cudaSuccess) {
          const std::vector<float> got = download_y(d_y, y_f32, n, rows, ldy);
          err = rel_l2(got, std::vector<float>(ref[x_bf16].begin(), ref[x_bf16].begin() + (size_t)n * rows));
          gaps &= gaps_untouched(d_y, y_f32, n, rows, ldy);
        } else {
          printf("  %s [%s] n=%d: %s\n", qt.name, vn, n, cudaGetErrorString(e));
        }
        if (!(err <= worst[y_f32])) worst[y_f32] = err; /* NaN / inf stick */
        cudaFree(d_y);
      }
    snprintf(name, sizeof name, "gemv %s %dx%d [%s] n=1,2,3,8 y f32", qt.name, rows, cols, vn);
    h.report(name, worst[1], 1e-5);
    snprintf(name, sizeof name, "gemv %s %dx%d [%s] n=1,2,3,8 y bf16", qt.name, rows, cols, vn);
    h.report(name, worst[0], 1e-2);
    snprintf(name, sizeof name, "gemv %s %dx%d [%s] writes only y's n x rows", qt.name, rows, cols, vn);
    h.check(name, gaps, "a value was written in the ldy gap or past the end of y");
    { /* beta = 1: y += x . w^T (the residual-stream projections), fp32 y, n = 2 */
      const int n = 2;
      const std::vector<float> y0 = random_f32(r, (size_t)n * ldy, 4.0f);
      std::vector<float> want((size_t)n * rows);
      for (int t = 0; t < n; t++)
        for (int i = 0; i < rows; i++) want[(size_t)t * rows + i] = ref[x_bf16][(size_t)t * rows + i] + y0[(size_t)t * ldy + i];
      float *d_y = dev_upload(y0);
      const cudaError_t e = twin_cuda_gemv_quant_variant(var, d_y, 1, ldy, d_x, x_bf16, ldx, d_w, qt.t, n, rows,
                                                         cols, 1.0f, 0);
      snprintf(name, sizeof name, "gemv %s %dx%d [%s] n=2 beta=1 accumulate", qt.name, rows, cols, vn);
      h.report(name, e == cudaSuccess ? rel_l2(download_y(d_y, 1, n, rows, ldy), want) : INFINITY, 1e-5);
      cudaFree(d_y);
    }
  }
  cudaFree(d_xf);
  cudaFree(d_x16);
  cudaFree(d_w);
}

/* same bits twice, and through a CUDA graph on a stream of its own */
static void check_determinism_and_graph(harness &h, rng &r) {
  const int rows = 700, cols = 2048, n = 3;
  const std::vector<float> wf = random_f32(r, (size_t)rows * cols, 1.0f);
  const qmat q = quantize(TWIN_DT_Q4_K, wf.data(), rows, cols);
  const std::vector<uint16_t> x = random_bf16(r, (size_t)n * cols, 1.0f);
  void *d_w = dev_upload_bytes(q.blocks);
  twin_bf16 *d_x = dev_upload(x);
  float *d_a = dev_poisoned<float>((size_t)n * rows), *d_b = dev_poisoned<float>((size_t)n * rows),
        *d_c = dev_poisoned<float>((size_t)n * rows);
  bool ok = twin_cuda_gemv_quant(d_a, 1, rows, d_x, 1, cols, d_w, q.t, n, rows, cols, 0.0f, 0) == cudaSuccess &&
            twin_cuda_gemv_quant(d_b, 1, rows, d_x, 1, cols, d_w, q.t, n, rows, cols, 0.0f, 0) == cudaSuccess;
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  ok &= twin_cuda_gemv_quant(d_c, 1, rows, d_x, 1, cols, d_w, q.t, n, rows, cols, 0.0f, s) == cudaSuccess;
  ok &= twin_cuda_gemv_quant(d_c, 1, rows, d_x, 1, cols, d_w, q.t, n, rows, cols, 1.0f, s) == cudaSuccess;
  CK(cudaStreamEndCapture(s, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  CK(cudaGraphLaunch(exec, s));
  CK(cudaStreamSynchronize(s));
  const std::vector<float> a = dev_download(d_a, (size_t)n * rows), b = dev_download(d_b, (size_t)n * rows),
                           c = dev_download(d_c, (size_t)n * rows);
  ok &= memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  for (size_t i = 0; i < a.size(); i++) ok &= c[i] == a[i] + a[i];
  h.check("gemv q4_k deterministic; a captured graph (beta 0 then 1) gives 2y", ok,
          "two runs differ, or the graph's result is not twice the direct one");
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaStreamDestroy(s));
  cudaFree(d_w); cudaFree(d_x); cudaFree(d_a); cudaFree(d_b); cudaFree(d_c);
}

static void check_arguments(harness &h) {
  void *d_w = nullptr, *d_y = nullptr, *d_x = nullptr;
  CK(cudaMalloc(&d_w, 1 << 20));
  CK(cudaMalloc(&d_y, 1 << 16));
  CK(cudaMalloc(&d_x, 1 << 16));
  const cudaError_t inv = cudaErrorInvalidValue;
  bool ok = true;
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 256, d_w, TWIN_DT_Q4_K, 0, 16, 256, 0.0f, 0) == inv; /* n = 0 */
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 256, d_w, TWIN_DT_Q4_K, 9, 16, 256, 0.0f, 0) == inv; /* n = 9 */
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 288, d_w, TWIN_DT_Q4_K, 1, 16, 288, 0.0f, 0) == inv; /* cols % 256 */
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 48, d_w, TWIN_DT_Q8_0, 1, 16, 48, 0.0f, 0) == inv;   /* cols % 32 */
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 256, d_w, TWIN_DT_BF16, 1, 16, 256, 0.0f, 0) == inv; /* not blocks */
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 256, (char *)d_w + 2, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv;
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, (char *)d_x + 4, 0, 256, d_w, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv;
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 256, d_w, TWIN_DT_Q8_0, 1, 0, 256, 0.0f, 0) == inv;  /* rows = 0 */
  ok &= twin_cuda_gemv_quant(d_y, 1, 15, d_x, 0, 256, d_w, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv; /* ldy < rows */
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 224, d_w, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv; /* ldx < cols */
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 1, 260, d_w, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv; /* bf16 ldx % 8 */
  ok &= twin_cuda_gemv_quant(d_y, 1, 16, d_x, 0, 258, d_w, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv; /* f32 ldx % 4 */
  ok &= twin_cuda_gemv_quant_variant(0, d_y, 1, 16, d_x, 0, 256, d_w, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv;
  ok &= twin_cuda_gemv_quant_variant(twin_cuda_gemv_quant_variant_count(), d_y, 1, 16, d_x, 1, 256, d_w,
                                     TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv;
  ok &= twin_cuda_dequantize_bf16((twin_bf16 *)d_y, d_w, TWIN_DT_F32, 4, 256, 0) == inv;
  ok &= twin_cuda_dequantize_bf16((twin_bf16 *)d_y, d_w, TWIN_DT_Q6_K, 4, 128, 0) == inv;
  ok &= twin_cuda_dequantize_bf16((twin_bf16 *)d_y + 1, d_w, TWIN_DT_Q6_K, 4, 256, 0) == inv;
  ok &= twin_cuda_quant_row_stride(TWIN_DT_BF16, 256) == 0 && twin_cuda_quant_row_stride(TWIN_DT_Q4_K, 200) == 0;
  ok &= twin_cuda_quant_row_stride(TWIN_DT_Q8_0, 800) == 864 && twin_cuda_quant_row_stride(TWIN_DT_Q6_K, 4096) == 3360 &&
        twin_cuda_quant_row_stride(TWIN_DT_Q6_K, 512) == 432 && twin_cuda_quant_row_stride(TWIN_DT_Q4_K, 4096) == 2304;
  CK(cudaDeviceSynchronize());
  h.check("gemv/dequant refuse bad arguments; row strides", ok, "a bad argument was not refused, or a stride is off");
  cudaFree(d_w);
  cudaFree(d_y);
  cudaFree(d_x);
}

/* ---- the Llama-3.1-8B shapes: sampled check, then timing ------------------------------------------ */

static void bench_shape(harness &h, rng &r, const char *what, const float *wf, int rows, int cols,
                        const char *filter) {
  char name[160];
  for (const qtype &qt : kTypes) {
    snprintf(name, sizeof name, "%s %s", qt.name, what);
    if (filter && !strstr(name, filter)) continue;
    const qmat q = quantize(qt.t, wf, rows, cols);
    const double w_bytes = (double)q.blocks.size();
    /* enough copies that the rotation outgrows L2 (50-60 MB on H100/H200) */
    const int copies = std::max(2, (int)ceil(300e6 / w_bytes));
    std::vector<void *> d_w(copies);
    d_w[0] = dev_upload_bytes(q.blocks);
    for (int c = 1; c < copies; c++) {
      CK(cudaMalloc(&d_w[c], q.blocks.size()));
      CK(cudaMemcpy(d_w[c], d_w[0], q.blocks.size(), cudaMemcpyDeviceToDevice));
    }
    const int nmax = 8;
    const std::vector<float> xf = random_f32(r, (size_t)nmax * cols, 1.0f);
    std::vector<uint16_t> x16(xf.size());
    for (size_t i = 0; i < xf.size(); i++) x16[i] = ref_f32_to_bf16(xf[i]);
    const std::vector<float> xr = bf16_to_f32(x16);
    float *d_xf = dev_upload(xf);
    twin_bf16 *d_x16 = dev_upload(x16);
    twin_bf16 *d_y = dev_poisoned<twin_bf16>((size_t)nmax * rows);
    /* 64 sampled outputs of the last launch against the reference */
    auto sampled_err = [&](int n, int x_bf16) {
      const std::vector<float> y = bf16_to_f32(dev_download(d_y, (size_t)n * rows));
      const std::vector<float> &xs = x_bf16 ? xr : xf;
      std::vector<float> got(64), want(64);
      for (int s = 0; s < 64; s++) {
        const int t = r.below(n), i = r.below(rows);
        const std::vector<float> row = dequantize_row(q, i);
        want[s] = (float)dot(xs.data() + (size_t)t * cols, row.data(), cols);
        got[s] = y[(size_t)t * rows + i];
      }
      return rel_l2(got, want);
    };
    auto one = [&](int variant, int x_bf16, int n, const char *label, const char *tag) {
      const void *d_x = x_bf16 ? (const void *)d_x16 : (const void *)d_xf;
      const double bytes = w_bytes + (x_bf16 ? 2.0 : 4.0) * n * cols + 2.0 * n * rows;
      const cudaError_t e = twin_cuda_gemv_quant_variant(variant, d_y, 0, rows, d_x, x_bf16, cols, d_w[0], qt.t, n,
                                                         rows, cols, 0.0f, 0);
      if (e == cudaErrorInvalidValue && variant >= 0) return; /* no such variant for the format */
      const double err = e == cudaSuccess ? sampled_err(n, x_bf16) : INFINITY;
      const double ms = time_ms([&](int it) {
        twin_cuda_gemv_quant_variant(variant, d_y, 0, rows, d_x, x_bf16, cols, d_w[it % copies], qt.t, n, rows,
                                     cols, 0.0f, 0);
      });
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      snprintf(name, sizeof name, "gemv %s %s %dx%d n=%d [%s]", qt.name, what, rows, cols, n, label);
      h.report(name, err, 1e-2, ms, bytes, 2.0 * n * rows * cols);
      const double sms = time_seq_ms([&](int it) {
        twin_cuda_gemv_quant_variant(variant, d_y, 0, rows, d_x, x_bf16, cols, d_w[it % copies], qt.t, n, rows,
                                     cols, 0.0f, 0);
      });
      double pms = 0.0;
      if (n == 1) /* the time it adds to a decode-like chain */
        pms = time_after_predecessor_ms([&](int it) {
          twin_cuda_gemv_quant_variant(variant, d_y, 0, rows, d_x, x_bf16, cols, d_w[it % copies], qt.t, n, rows,
                                       cols, 0.0f, 0);
        });
      printf("%s|%s|%s|%dx%d|n=%d|%s|%.2f us|%.0f GB/s|%.1f%% of %.0f|in sequence %.2f us %.1f%%|after a predecessor %.2f us %.1f%%\n",
             tag, qt.name, what, rows, cols, n, label, ms * 1e3, gbs, 100.0 * gbs / kCopyGBs, kCopyGBs, sms * 1e3,
             100.0 * bytes / (sms * 1e-3) / 1e9 / kCopyGBs, pms * 1e3,
             pms > 0 ? 100.0 * bytes / (pms * 1e-3) / 1e9 / kCopyGBs : 0.0);
    };
    one(-1, 1, 1, "auto", "TIME");
    one(-1, 1, 8, "auto", "TIME");
    one(-1, 0, 1, "x fp32 (v1 kernel)", "TIME");
    for (int v = 0; v < twin_cuda_gemv_quant_variant_count(); v++)
      one(v, 1, 1, twin_cuda_gemv_quant_variant_name(v), "SWEEP");
    { /* prefill path: dequantize the whole matrix to bf16 (bytes: blocks read + bf16 written) */
      twin_bf16 *d_out = dev_poisoned<twin_bf16>((size_t)rows * cols);
      const cudaError_t e = twin_cuda_dequantize_bf16(d_out, d_w[0], qt.t, rows, cols, 0);
      double err = INFINITY;
      if (e == cudaSuccess) {
        size_t bad = 0;
        for (int s = 0; s < 16; s++) {
          const int i = r.below(rows);
          const std::vector<float> row = dequantize_row(q, i);
          const std::vector<uint16_t> got = dev_download(d_out + (size_t)i * cols, cols);
          for (int c = 0; c < cols; c++) bad += got[c] != ref_f32_to_bf16(row[c]);
        }
        err = (double)bad / (16.0 * cols);
      }
      const double ms = time_ms([&](int it) {
        twin_cuda_dequantize_bf16(d_out, d_w[it % copies], qt.t, rows, cols, 0);
      });
      snprintf(name, sizeof name, "dequant bf16 %s %dx%d (16 rows checked)", qt.name, rows, cols);
      h.report(name, err, 0.0, ms, w_bytes + 2.0 * rows * cols);
      cudaFree(d_out);
    }
    for (void *p : d_w) cudaFree(p);
    cudaFree(d_xf);
    cudaFree(d_x16);
    cudaFree(d_y);
  }
}

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : nullptr;
  print_device();
  harness h;
  rng r(66);
  if (!filter) {
    check_arguments(h);
    for (const qtype &qt : kTypes) {
      const bool k_quant = twin_dtype_block_elems(qt.t) == 256;
      /* 32-element formats: 25 and 125 blocks a row (rows padded to 16 bytes, the last unit of
       * 256 partial: 1 and 5 blocks); k-quants: 2 and 18 super-blocks (Q6_K rows padded) */
      check_small(h, r, qt, 37, k_quant ? 512 : 800);
      check_small(h, r, qt, 131, k_quant ? 4608 : 4000);
    }
    check_determinism_and_graph(h, r);
  }
  struct shape { const char *what; int rows, cols; };
  const shape shapes[] = {{"o_proj", 4096, 4096}, {"gate/up", 14336, 4096}, {"down", 4096, 14336}};
  for (const shape &s : shapes) {
    bool any = !filter;
    for (const qtype &qt : kTypes) {
      char name[64];
      snprintf(name, sizeof name, "%s %s", qt.name, s.what);
      any |= filter && strstr(name, filter);
    }
    if (!any) continue;
    printf("== %s %dx%d\n", s.what, s.rows, s.cols);
    const std::vector<float> wf = random_f32(r, (size_t)s.rows * s.cols, 0.02f);
    bench_shape(h, r, s.what, wf.data(), s.rows, s.cols, filter);
  }
  return h.exit_code();
}
