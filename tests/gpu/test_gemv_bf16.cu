/* tests/gpu/test_gemv_bf16.cu — the bf16 decode GEMV (gemv_bf16.cu): y = x . w^T (+ beta y) for
 * 1..8 tokens against ref_gemm (double accumulation):
 *  - argument checks;
 *  - every compiled variant and the launcher's choice on odd shapes (rows not a multiple of a
 *    block's rows, cols = 8, 72, 576, 1536, 4104), n = 1, 2, 3, 8, fp32 and bf16 y, beta 0 and 1,
 *    x rows ldx > cols apart, y rows ldy > rows apart (the gaps and the bytes past y watched);
 *  - the same inputs give the same bits twice, and through a captured CUDA graph;
 *  - timing on the Llama-3.1-8B and 3.2-1B projection shapes (n = 1, 2, 4, 8), weight copies
 *    rotated so that L2 does not serve them, against cuBLAS (twin_cuda_gemm) on the same copies,
 *    then every variant at n = 1 and 8; each timed alone (an event pair around one launch), in
 *    sequence (20 launches between two events) and after a predecessor (the time it adds to a
 *    decode-like chain, see time_after_predecessor_ms); GB/s count weights + x + y, against the 4262 GB/s
 *    device copy measured on the H200 (NOTES run 2) and the copy measured here.
 * Usage: test_gemv_bf16 [filter]: with a filter, only the timed shapes whose name contains it,
 * no checks (to point a profiler at one case). */
#include "llm-svc/backend/cuda/gemm.h"
#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/gemv_harness.h"
#include "tests/gpu/harness.h"

#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------------ */

/* ---- checks --------------------------------------------------------------------------------------- */

static void check_arguments(harness &h) {
  twin_bf16 *d_w = nullptr, *d_x = nullptr;
  float *d_y = nullptr;
  CK(cudaMalloc(&d_w, 1 << 20));
  CK(cudaMalloc(&d_x, 1 << 16));
  CK(cudaMalloc(&d_y, 1 << 16));
  const cudaError_t inv = cudaErrorInvalidValue;
  bool ok = true;
  ok &= twin_cuda_gemv_bf16(d_y, 1, 16, d_x, 64, d_w, 0, 16, 64, 0.0f, 0) == inv;  /* n = 0 */
  ok &= twin_cuda_gemv_bf16(d_y, 1, 16, d_x, 64, d_w, 9, 16, 64, 0.0f, 0) == inv;  /* n = 9 */
  ok &= twin_cuda_gemv_bf16(d_y, 1, 16, d_x, 64, d_w, 1, 0, 64, 0.0f, 0) == inv;   /* rows 0 */
  ok &= twin_cuda_gemv_bf16(d_y, 1, 16, d_x, 68, d_w, 1, 16, 60, 0.0f, 0) == inv;  /* cols % 8 */
  ok &= twin_cuda_gemv_bf16(d_y, 1, 16, d_x, 60, d_w, 1, 16, 64, 0.0f, 0) == inv;  /* ldx < cols */
  ok &= twin_cuda_gemv_bf16(d_y, 1, 16, d_x, 68, d_w, 1, 16, 64, 0.0f, 0) == inv;  /* ldx % 8 */
  ok &= twin_cuda_gemv_bf16(d_y, 1, 15, d_x, 64, d_w, 1, 16, 64, 0.0f, 0) == inv;  /* ldy < rows */
  ok &= twin_cuda_gemv_bf16(d_y, 1, 16, d_x + 4, 64, d_w, 1, 16, 64, 0.0f, 0) == inv; /* x align */
  ok &= twin_cuda_gemv_bf16(d_y, 1, 16, d_x, 64, d_w + 4, 1, 16, 64, 0.0f, 0) == inv; /* w align */
  ok &= twin_cuda_gemv_bf16(nullptr, 1, 16, d_x, 64, d_w, 1, 16, 64, 0.0f, 0) == inv;
  ok &= twin_cuda_gemv_bf16_variant(twin_cuda_gemv_bf16_variant_count(), d_y, 1, 16, d_x, 64, d_w, 1,
                                    16, 64, 0.0f, 0) == inv;
  CK(cudaDeviceSynchronize());
  h.check("gemv bf16 refuses bad arguments", ok, "a bad argument was not refused");
  cudaFree(d_w);
  cudaFree(d_x);
  cudaFree(d_y);
}

/* Every variant (and -1, the launcher's choice) on one small shape: worst error per output type
 * over n = 1, 2, 3, 8 and beta 0 / 1. */
static void check_shape(harness &h, rng &r, int rows, int cols) {
  const int ldx = cols + 8, ldy = rows + 3, nmax = 8;
  const std::vector<uint16_t> w = random_bf16(r, (size_t)rows * cols, 1.0f);
  const std::vector<uint16_t> x = random_bf16(r, (size_t)nmax * ldx, 1.0f);
  const std::vector<float> y0 = random_f32(r, (size_t)nmax * ldy, 4.0f);
  std::vector<uint16_t> y0_16(y0.size());
  for (size_t i = 0; i < y0.size(); i++) y0_16[i] = ref_f32_to_bf16(y0[i]);
  std::vector<float> ref((size_t)nmax * rows);
  ref_gemm(ref.data(), x.data(), ldx, w.data(), nmax, rows, cols);
  twin_bf16 *d_w = dev_upload(w), *d_x = dev_upload(x);
  const int variants = twin_cuda_gemv_bf16_variant_count();
  char name[160];
  for (int v = -1; v < variants; v++) {
    double worst[2][2] = {{0, 0}, {0, 0}}; /* [y_f32][beta] */
    bool gaps = true, launched = true;
    for (int n : {1, 2, 3, 8})
      for (int y_f32 = 0; y_f32 < 2; y_f32++)
        for (int beta = 0; beta < 2; beta++) {
          void *d_y;
          if (beta) { /* y holds y0 (fp32 or bf16) in its rows, poison in the gaps */
            d_y = dev_poisoned<uint8_t>((size_t)n * ldy * 4 + 64);
            for (int t = 0; t < n; t++) {
              if (y_f32) CK(cudaMemcpy((float *)d_y + (size_t)t * ldy, &y0[(size_t)t * ldy], rows * 4, cudaMemcpyHostToDevice));
              else CK(cudaMemcpy((uint16_t *)d_y + (size_t)t * ldy, &y0_16[(size_t)t * ldy], rows * 2, cudaMemcpyHostToDevice));
            }
          } else {
            d_y = dev_poisoned<uint8_t>((size_t)n * ldy * 4 + 64);
          }
          const cudaError_t e = twin_cuda_gemv_bf16_variant(v, d_y, y_f32, ldy, d_x, ldx, d_w, n, rows,
                                                            cols, beta ? 1.0f : 0.0f, 0);
          if (e != cudaSuccess) {
            printf("  variant %d n=%d: %s\n", v, n, cudaGetErrorString(e));
            launched = false;
            cudaFree(d_y);
            continue;
          }
          const std::vector<float> got = download_y(d_y, y_f32, n, rows, ldy);
          std::vector<float> want(ref.begin(), ref.begin() + (size_t)n * rows);
          if (beta)
            for (int t = 0; t < n; t++)
              for (int i = 0; i < rows; i++)
                want[(size_t)t * rows + i] += y_f32 ? y0[(size_t)t * ldy + i] : ref_bf16_to_f32(y0_16[(size_t)t * ldy + i]);
          const double err = rel_l2(got, want);
          double &wst = worst[y_f32][beta];
          if (!(err <= wst)) wst = err;
          if (!beta) gaps &= gaps_untouched(d_y, y_f32, n, rows, ldy);
          cudaFree(d_y);
        }
    const char *vn = twin_cuda_gemv_bf16_variant_name(v);
    snprintf(name, sizeof name, "gemv bf16 %dx%d [%s] n=1,2,3,8 y f32", rows, cols, vn);
    h.report(name, launched ? std::max(worst[1][0], worst[1][1]) : INFINITY, 1e-5);
    snprintf(name, sizeof name, "gemv bf16 %dx%d [%s] n=1,2,3,8 y bf16", rows, cols, vn);
    h.report(name, launched ? std::max(worst[0][0], worst[0][1]) : INFINITY, 4e-3);
    snprintf(name, sizeof name, "gemv bf16 %dx%d [%s] writes only y's n x rows", rows, cols, vn);
    h.check(name, gaps, "a value was written in the ldy gap or past the end of y");
  }
  cudaFree(d_w);
  cudaFree(d_x);
}

/* same bits twice, and through a CUDA graph on a stream of its own */
static void check_determinism_and_graph(harness &h, rng &r) {
  const int rows = 1000, cols = 1536, n = 5;
  const std::vector<uint16_t> w = random_bf16(r, (size_t)rows * cols, 1.0f), x = random_bf16(r, (size_t)n * cols, 1.0f);
  twin_bf16 *d_w = dev_upload(w), *d_x = dev_upload(x);
  float *d_a = dev_poisoned<float>((size_t)n * rows), *d_b = dev_poisoned<float>((size_t)n * rows),
        *d_c = dev_poisoned<float>((size_t)n * rows);
  bool ok = twin_cuda_gemv_bf16(d_a, 1, rows, d_x, cols, d_w, n, rows, cols, 0.0f, 0) == cudaSuccess &&
            twin_cuda_gemv_bf16(d_b, 1, rows, d_x, cols, d_w, n, rows, cols, 0.0f, 0) == cudaSuccess;
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  ok &= twin_cuda_gemv_bf16(d_c, 1, rows, d_x, cols, d_w, n, rows, cols, 0.0f, s) == cudaSuccess;
  ok &= twin_cuda_gemv_bf16(d_c, 1, rows, d_x, cols, d_w, n, rows, cols, 1.0f, s) == cudaSuccess;
  CK(cudaStreamEndCapture(s, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  CK(cudaGraphLaunch(exec, s));
  CK(cudaStreamSynchronize(s));
  const std::vector<float> a = dev_download(d_a, (size_t)n * rows), b = dev_download(d_b, (size_t)n * rows),
                           c = dev_download(d_c, (size_t)n * rows);
  ok &= memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  for (size_t i = 0; i < a.size(); i++) ok &= c[i] == a[i] + a[i]; /* y = xw, then y += xw: exact */
  h.check("gemv bf16 deterministic; a captured graph (beta 0 then 1) gives 2y", ok,
          "two runs differ, or the graph's result is not twice the direct one");
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaStreamDestroy(s));
  cudaFree(d_w); cudaFree(d_x); cudaFree(d_a); cudaFree(d_b); cudaFree(d_c);
}

/* ---- timing ------------------------------------------------------------------------------------------ */

/* device-to-device copy of 1 GiB, bytes read + written per second */
static double measure_copy_gbs() {
  const size_t bytes = (size_t)1 << 30;
  void *a = nullptr, *b = nullptr;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 1, bytes));
  const double ms = time_ms([&](int) { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0)); }, 2, 10);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

struct shape {
  const char *what;
  int rows, cols, y_f32;
};

static void bench_shape(harness &h, rng &r, cublasHandle_t cb, const shape &s, double copy_gbs) {
  const double w_bytes = 2.0 * s.rows * s.cols;
  const int copies = std::max(2, (int)ceil(300e6 / w_bytes)); /* rotation well past the L2 */
  const std::vector<uint16_t> w = random_bf16_uniform(r, (size_t)s.rows * s.cols, 0.03f);
  std::vector<twin_bf16 *> d_w(copies);
  d_w[0] = dev_upload(w);
  for (int c = 1; c < copies; c++) {
    CK(cudaMalloc(&d_w[c], (size_t)w_bytes));
    CK(cudaMemcpy(d_w[c], d_w[0], (size_t)w_bytes, cudaMemcpyDeviceToDevice));
  }
  const int nmax = 8;
  const std::vector<uint16_t> x = random_bf16(r, (size_t)nmax * s.cols, 1.0f);
  twin_bf16 *d_x = dev_upload(x);
  void *d_y = dev_poisoned<float>((size_t)nmax * s.rows);
  char name[160];
  /* sampled check of one launch: 64 outputs against ref_gemm */
  auto sampled_err = [&](int n) {
    const std::vector<float> y = download_y(d_y, s.y_f32, n, s.rows, s.rows);
    std::vector<float> got(64), want(64);
    for (int k = 0; k < 64; k++) {
      const int t = r.below(n), i = r.below(s.rows);
      ref_gemm(&want[k], x.data() + (size_t)t * s.cols, s.cols, w.data() + (size_t)i * s.cols, 1, 1, s.cols);
      got[k] = y[(size_t)t * s.rows + i];
    }
    return rel_l2(got, want);
  };
  const double tol = s.y_f32 ? 1e-5 : 4e-3;
  printf("== %s %dx%d (%s y), %d weight copies\n", s.what, s.rows, s.cols, s.y_f32 ? "fp32" : "bf16", copies);
  for (int n : {1, 2, 4, 8}) {
    const double bytes = w_bytes + 2.0 * n * s.cols + (s.y_f32 ? 4.0 : 2.0) * n * s.rows;
    const cudaError_t e = twin_cuda_gemv_bf16(d_y, s.y_f32, s.rows, d_x, s.cols, d_w[0], n, s.rows, s.cols, 0.0f, 0);
    const double err = e == cudaSuccess ? sampled_err(n) : INFINITY;
    const double ms = time_ms([&](int it) {
      twin_cuda_gemv_bf16(d_y, s.y_f32, s.rows, d_x, s.cols, d_w[it % copies], n, s.rows, s.cols, 0.0f, 0);
    });
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    snprintf(name, sizeof name, "gemv bf16 %s %dx%d n=%d", s.what, s.rows, s.cols, n);
    h.report(name, err, tol, ms, bytes, 2.0 * n * s.rows * s.cols);
    const double sms = time_seq_ms([&](int it) {
      twin_cuda_gemv_bf16(d_y, s.y_f32, s.rows, d_x, s.cols, d_w[it % copies], n, s.rows, s.cols, 0.0f, 0);
    });
    const double sgbs = bytes / (sms * 1e-3) / 1e9;
    const double pms = time_after_predecessor_ms([&](int it) {
      twin_cuda_gemv_bf16(d_y, s.y_f32, s.rows, d_x, s.cols, d_w[it % copies], n, s.rows, s.cols, 0.0f, 0);
    });
    printf("TIME|gemv|%s|%dx%d|n=%d|%.2f us|%.0f GB/s|%.1f%% of %.0f|%.1f%% of copy measured here|in sequence %.2f us %.0f GB/s %.1f%%|after a predecessor %.2f us %.1f%%|[%s]\n",
           s.what, s.rows, s.cols, n, ms * 1e3, gbs, 100.0 * gbs / kCopyGBs, kCopyGBs, 100.0 * gbs / copy_gbs,
           sms * 1e3, sgbs, 100.0 * sgbs / kCopyGBs, pms * 1e3, 100.0 * bytes / (pms * 1e-3) / 1e9 / kCopyGBs,
           twin_cuda_gemv_bf16_variant_name(twin_cuda_gemv_bf16_auto_variant(s.rows, s.cols)));
    if (n == 1 || n == 8) { /* cuBLAS on the same rotated copies */
      const cublasStatus_t st = twin_cuda_gemm(cb, d_x, s.cols, d_w[0], d_y, s.y_f32, s.rows, n, s.rows, s.cols, 0.0f);
      const double cerr = st == CUBLAS_STATUS_SUCCESS ? sampled_err(n) : INFINITY;
      const double cms = time_ms([&](int it) {
        twin_cuda_gemm(cb, d_x, s.cols, d_w[it % copies], d_y, s.y_f32, s.rows, n, s.rows, s.cols, 0.0f);
      });
      const double cgbs = bytes / (cms * 1e-3) / 1e9;
      snprintf(name, sizeof name, "cublas %s %dx%d n=%d (same rotation)", s.what, s.rows, s.cols, n);
      h.report(name, cerr, tol, cms, bytes, 2.0 * n * s.rows * s.cols);
      const double csms = time_seq_ms([&](int it) {
        twin_cuda_gemm(cb, d_x, s.cols, d_w[it % copies], d_y, s.y_f32, s.rows, n, s.rows, s.cols, 0.0f);
      });
      const double csgbs = bytes / (csms * 1e-3) / 1e9;
      const double cpms = time_after_predecessor_ms([&](int it) {
        twin_cuda_gemm(cb, d_x, s.cols, d_w[it % copies], d_y, s.y_f32, s.rows, n, s.rows, s.cols, 0.0f);
      });
      printf("TIME|cublas|%s|%dx%d|n=%d|%.2f us|%.0f GB/s|%.1f%% of %.0f|%.1f%% of copy measured here|in sequence %.2f us %.0f GB/s %.1f%%|after a predecessor %.2f us %.1f%%|\n",
             s.what, s.rows, s.cols, n, cms * 1e3, cgbs, 100.0 * cgbs / kCopyGBs, kCopyGBs, 100.0 * cgbs / copy_gbs,
             csms * 1e3, csgbs, 100.0 * csgbs / kCopyGBs, cpms * 1e3, 100.0 * bytes / (cpms * 1e-3) / 1e9 / kCopyGBs);
    }
  }
  /* every variant at n = 1 and 8 (the launcher's choice is one of them) */
  for (int v = 0; v < twin_cuda_gemv_bf16_variant_count(); v++)
    for (int n : {1, 8}) {
      const double bytes = w_bytes + 2.0 * n * s.cols + (s.y_f32 ? 4.0 : 2.0) * n * s.rows;
      const cudaError_t e = twin_cuda_gemv_bf16_variant(v, d_y, s.y_f32, s.rows, d_x, s.cols, d_w[0], n, s.rows, s.cols, 0.0f, 0);
      const double err = e == cudaSuccess ? sampled_err(n) : INFINITY;
      const double ms = time_ms([&](int it) {
        twin_cuda_gemv_bf16_variant(v, d_y, s.y_f32, s.rows, d_x, s.cols, d_w[it % copies], n, s.rows, s.cols, 0.0f, 0);
      });
      snprintf(name, sizeof name, "gemv bf16 %s n=%d [%s]", s.what, n, twin_cuda_gemv_bf16_variant_name(v));
      h.report(name, err, tol, ms, bytes);
      const double sms = time_seq_ms([&](int it) {
        twin_cuda_gemv_bf16_variant(v, d_y, s.y_f32, s.rows, d_x, s.cols, d_w[it % copies], n, s.rows, s.cols, 0.0f, 0);
      });
      printf("SWEEP|%s|%dx%d|n=%d|%s|%.2f us|%.1f%%|in sequence %.2f us %.1f%%\n", s.what, s.rows, s.cols, n,
             twin_cuda_gemv_bf16_variant_name(v), ms * 1e3, 100.0 * bytes / (ms * 1e-3) / 1e9 / kCopyGBs, sms * 1e3,
             100.0 * bytes / (sms * 1e-3) / 1e9 / kCopyGBs);
    }
  for (twin_bf16 *p : d_w) cudaFree(p);
  cudaFree(d_x);
  cudaFree(d_y);
}

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : nullptr;
  print_device();
  harness h;
  rng r(2024);
  if (!filter) {
    check_arguments(h);
    /* rows not a multiple of 16 or of a block's rows; cols 8 (one partial chunk), 72, 576,
     * 1536, 4104 (a partial super-chunk after whole ones) */
    const int small[][2] = {{37, 8}, {45, 72}, {100, 576}, {131, 1536}, {300, 4104}};
    for (const auto &s : small) check_shape(h, r, s[0], s[1]);
    check_determinism_and_graph(h, r);
  }

  const double copy_gbs = measure_copy_gbs();
  printf("device-to-device copy here: %.0f GB/s (read + written)\n", copy_gbs);
  cublasHandle_t cb;
  if (cublasCreate(&cb) != CUBLAS_STATUS_SUCCESS) return 2;
  const shape shapes[] = {
      {"8B qkv", 6144, 4096, 0},     {"8B o_proj", 4096, 4096, 1}, {"8B gate_up", 28672, 4096, 0},
      {"8B down", 4096, 14336, 1},   {"1B qkv", 3072, 2048, 0},    {"1B o_proj", 2048, 2048, 1},
      {"1B gate_up", 16384, 2048, 0}, {"1B down", 2048, 8192, 1}};
  for (const shape &s : shapes)
    if (!filter || strstr(s.what, filter)) bench_shape(h, r, cb, s, copy_gbs);
  cublasDestroy(cb);
  return h.exit_code();
}
