/* tests/gpu/test_gemv_quant.cu — the block-quantized weight kernels (gemv_quant.cu): random
 * weights quantized on the host by the model layer's quantizers (quant.c), then
 *  - twin_cuda_dequantize_bf16 against bf16(twin_dequantize_row) bit for bit;
 *  - twin_cuda_gemv_quant (n = 1, 3, 8; x fp32 and bf16; y fp32 and bf16) against a double
 *    matvec over the reference dequantized weights, on small shapes whose rows are not 16-byte
 *    aligned and span several staging chunks, outputs poisoned and the bytes past them watched;
 *    and y += x . w^T (beta = 1);
 *  - argument checks;
 *  - timing on the Llama-3.1-8B projection shapes (n = 1 and 8), with weight copies rotated so
 *    that L2 does not serve them, GB/s of weight bytes against the 4.3 TB/s copy ceiling. */
extern "C" {
#define _Static_assert static_assert /* quant.h is C11 */
#include "llm-svc/model/quant.h"
#undef _Static_assert
}
#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/harness.h"

#include <string.h>

static const double kCopyCeilingGBs = 4300.0; /* H200 device-to-device copy, GB/s */

struct qtype {
  twin_dtype t;
  const char *name;
};
static const qtype kTypes[] = {{TWIN_DT_Q4_0, "q4_0"}, {TWIN_DT_Q4_1, "q4_1"}, {TWIN_DT_Q5_0, "q5_0"},
                               {TWIN_DT_Q8_0, "q8_0"}, {TWIN_DT_Q4_K, "q4_k"}, {TWIN_DT_Q5_K, "q5_k"},
                               {TWIN_DT_Q6_K, "q6_k"}};

/* A weight matrix in a block format on the host. */
struct qmat {
  twin_dtype t;
  int rows, cols;
  size_t row_bytes;
  std::vector<uint8_t> blocks; /* [rows][row_bytes] */
};

static qmat quantize(twin_dtype t, const float *w /* [rows][cols] */, int rows, int cols) {
  qmat q{t, rows, cols, twin_dtype_bytes_for(t, cols), {}};
  q.blocks.resize(q.row_bytes * rows);
  for (int r = 0; r < rows; r++)
    if (twin_quantize_row(t, w + (size_t)r * cols, q.blocks.data() + r * q.row_bytes, cols) != 0) {
      fprintf(stderr, "twin_quantize_row failed for %s\n", twin_dtype_name(t));
      exit(2);
    }
  return q;
}

static std::vector<float> dequantize_row(const qmat &q, int r) {
  std::vector<float> out(q.cols);
  twin_dequantize_row(q.t, q.blocks.data() + (size_t)r * q.row_bytes, out.data(), q.cols);
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
  char name[128];

  { /* dequantize to bf16: bit-equal to the rounded reference */
    twin_bf16 *d_out = dev_poisoned<twin_bf16>((size_t)rows * cols + 32);
    const cudaError_t e = twin_cuda_dequantize_bf16(d_out, d_w, qt.t, rows, cols, 0);
    const std::vector<uint16_t> got = dev_download(d_out, (size_t)rows * cols);
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); i++) bad += got[i] != ref_f32_to_bf16(wd[i]);
    const bool tail = tail_untouched(d_out, (size_t)rows * cols * 2, 64);
    snprintf(name, sizeof name, "dequant bf16 %s %dx%d (mismatch fraction)", qt.name, rows, cols);
    h.report(name, e == cudaSuccess && tail ? (double)bad / got.size() : INFINITY, 0.0);
    cudaFree(d_out);
  }

  /* gemv: worst error over n and the x type, per output type */
  const int ns[] = {1, 3, 8};
  double worst_f32 = 0.0, worst_bf16 = 0.0;
  for (int n : ns) {
    const std::vector<float> xf = random_f32(r, (size_t)n * cols, 1.0f);
    std::vector<uint16_t> x16(xf.size());
    for (size_t i = 0; i < xf.size(); i++) x16[i] = ref_f32_to_bf16(xf[i]);
    const std::vector<float> xr = bf16_to_f32(x16); /* what the bf16 x holds */
    float *d_xf = dev_upload(xf);
    twin_bf16 *d_x16 = dev_upload(x16);
    for (int x_bf16 = 0; x_bf16 < 2; x_bf16++) {
      const float *xs = x_bf16 ? xr.data() : xf.data();
      std::vector<float> ref((size_t)n * rows);
      for (int t = 0; t < n; t++)
        for (int i = 0; i < rows; i++)
          ref[(size_t)t * rows + i] = (float)dot(xs + (size_t)t * cols, &wd[(size_t)i * cols], cols);
      const void *d_x = x_bf16 ? (const void *)d_x16 : (const void *)d_xf;
      for (int y_f32 = 0; y_f32 < 2; y_f32++) {
        const size_t out_bytes = (size_t)n * rows * (y_f32 ? 4 : 2);
        uint8_t *d_y = dev_poisoned<uint8_t>(out_bytes + 64);
        const cudaError_t e = twin_cuda_gemv_quant(d_y, y_f32, d_x, x_bf16, d_w, qt.t, n, rows, cols, 0.0f, 0);
        double err = INFINITY;
        if (e == cudaSuccess && tail_untouched(d_y, out_bytes, 64)) {
          std::vector<float> got;
          if (y_f32) got = dev_download((const float *)d_y, (size_t)n * rows);
          else got = bf16_to_f32(dev_download((const twin_bf16 *)d_y, (size_t)n * rows));
          err = rel_l2(got, ref);
        } else if (e != cudaSuccess) {
          printf("  %s n=%d: %s\n", qt.name, n, cudaGetErrorString(e));
        } else {
          printf("  %s n=%d: wrote past y\n", qt.name, n);
        }
        double &worst = y_f32 ? worst_f32 : worst_bf16;
        if (!(err <= worst)) worst = err; /* NaN / inf stick */
        cudaFree(d_y);
      }
    }
    cudaFree(d_xf);
    cudaFree(d_x16);
  }
  { /* beta = 1: y += x . w^T (the residual-stream projections), fp32 y */
    const int n = 2;
    const std::vector<float> xf = random_f32(r, (size_t)n * cols, 1.0f), y0 = random_f32(r, (size_t)n * rows, 4.0f);
    std::vector<float> ref((size_t)n * rows);
    for (int t = 0; t < n; t++)
      for (int i = 0; i < rows; i++)
        ref[(size_t)t * rows + i] =
            (float)(dot(&xf[(size_t)t * cols], &wd[(size_t)i * cols], cols) + y0[(size_t)t * rows + i]);
    float *d_x = dev_upload(xf), *d_y = dev_upload(y0);
    const cudaError_t e = twin_cuda_gemv_quant(d_y, 1, d_x, 0, d_w, qt.t, n, rows, cols, 1.0f, 0);
    snprintf(name, sizeof name, "gemv %s %dx%d n=2 beta=1 accumulate", qt.name, rows, cols);
    h.report(name, e == cudaSuccess ? rel_l2(dev_download(d_y, (size_t)n * rows), ref) : INFINITY, 1e-5);
    cudaFree(d_x);
    cudaFree(d_y);
  }
  snprintf(name, sizeof name, "gemv %s %dx%d n=1,3,8 x f32/bf16, y f32", qt.name, rows, cols);
  h.report(name, worst_f32, 1e-5);
  snprintf(name, sizeof name, "gemv %s %dx%d n=1,3,8 x f32/bf16, y bf16", qt.name, rows, cols);
  h.report(name, worst_bf16, 1e-2);
  cudaFree(d_w);
}

static void check_arguments(harness &h) {
  void *d_w = nullptr, *d_y = nullptr, *d_x = nullptr;
  CK(cudaMalloc(&d_w, 1 << 20));
  CK(cudaMalloc(&d_y, 1 << 16));
  CK(cudaMalloc(&d_x, 1 << 16));
  const cudaError_t inv = cudaErrorInvalidValue;
  bool ok = true;
  ok &= twin_cuda_gemv_quant(d_y, 1, d_x, 0, d_w, TWIN_DT_Q4_K, 0, 16, 256, 0.0f, 0) == inv; /* n = 0 */
  ok &= twin_cuda_gemv_quant(d_y, 1, d_x, 0, d_w, TWIN_DT_Q4_K, 9, 16, 256, 0.0f, 0) == inv; /* n = 9 */
  ok &= twin_cuda_gemv_quant(d_y, 1, d_x, 0, d_w, TWIN_DT_Q4_K, 1, 16, 288, 0.0f, 0) == inv; /* cols % 256 */
  ok &= twin_cuda_gemv_quant(d_y, 1, d_x, 0, d_w, TWIN_DT_Q8_0, 1, 16, 48, 0.0f, 0) == inv;  /* cols % 32 */
  ok &= twin_cuda_gemv_quant(d_y, 1, d_x, 0, d_w, TWIN_DT_BF16, 1, 16, 256, 0.0f, 0) == inv; /* not blocks */
  ok &= twin_cuda_gemv_quant(d_y, 1, d_x, 0, (char *)d_w + 2, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv;
  ok &= twin_cuda_gemv_quant(d_y, 1, (char *)d_x + 4, 0, d_w, TWIN_DT_Q8_0, 1, 16, 256, 0.0f, 0) == inv;
  ok &= twin_cuda_gemv_quant(d_y, 1, d_x, 0, d_w, TWIN_DT_Q8_0, 1, 0, 256, 0.0f, 0) == inv;  /* rows = 0 */
  ok &= twin_cuda_dequantize_bf16((twin_bf16 *)d_y, d_w, TWIN_DT_F32, 4, 256, 0) == inv;
  ok &= twin_cuda_dequantize_bf16((twin_bf16 *)d_y, d_w, TWIN_DT_Q6_K, 4, 128, 0) == inv;
  ok &= twin_cuda_dequantize_bf16((twin_bf16 *)d_y + 1, d_w, TWIN_DT_Q6_K, 4, 256, 0) == inv;
  CK(cudaDeviceSynchronize());
  h.check("gemv/dequant refuse bad arguments", ok, "a bad argument was not refused");
  cudaFree(d_w);
  cudaFree(d_y);
  cudaFree(d_x);
}

/* ---- the Llama-3.1-8B shapes: sampled check, then timing ------------------------------------------ */

static void bench_shape(harness &h, rng &r, const float *wf, int rows, int cols) {
  char name[128];
  for (const qtype &qt : kTypes) {
    const qmat q = quantize(qt.t, wf, rows, cols);
    const double w_bytes = (double)q.blocks.size();
    /* enough copies that the rotation outgrows L2 (50 MiB on H100/H200) */
    const int copies = std::max(1, (int)ceil(160e6 / w_bytes));
    std::vector<void *> d_w(copies);
    for (int c = 0; c < copies; c++) d_w[c] = dev_upload_bytes(q.blocks);
    for (int n : {1, 8}) {
      const std::vector<float> xf = random_f32(r, (size_t)n * cols, 1.0f);
      float *d_x = dev_upload(xf);
      twin_bf16 *d_y = dev_poisoned<twin_bf16>((size_t)n * rows);
      const cudaError_t e = twin_cuda_gemv_quant(d_y, 0, d_x, 0, d_w[0], qt.t, n, rows, cols, 0.0f, 0);
      double err = INFINITY;
      if (e == cudaSuccess) {
        const std::vector<float> y = bf16_to_f32(dev_download(d_y, (size_t)n * rows));
        std::vector<float> got(128), want(128);
        for (int s = 0; s < 128; s++) {
          const int t = r.below(n), i = r.below(rows);
          const std::vector<float> row = dequantize_row(q, i);
          want[s] = (float)dot(xf.data() + (size_t)t * cols, row.data(), cols);
          got[s] = y[(size_t)t * rows + i];
        }
        err = rel_l2(got, want);
      }
      const double ms = time_ms([&](int it) {
        twin_cuda_gemv_quant(d_y, 0, d_x, 0, d_w[it % copies], qt.t, n, rows, cols, 0.0f, 0);
      });
      snprintf(name, sizeof name, "gemv %s n=%d %dx%d (sampled)", qt.name, n, rows, cols);
      h.report(name, err, 1e-2, ms, w_bytes, 2.0 * n * rows * cols);
      printf("  %s: %.1f us, %.0f GB/s of weights = %.0f%% of the %.1f TB/s copy ceiling\n", name,
             ms * 1e3, w_bytes / (ms * 1e-3) / 1e9, 100.0 * w_bytes / (ms * 1e-3) / 1e9 / kCopyCeilingGBs,
             kCopyCeilingGBs / 1e3);
      cudaFree(d_x);
      cudaFree(d_y);
    }
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
  }
}

int main() {
  print_device();
  harness h;
  rng r(66);
  check_arguments(h);
  for (const qtype &qt : kTypes) {
    const bool k_quant = twin_dtype_block_elems(qt.t) == 256;
    /* 32-element formats: 25 and 125 blocks a row, so rows start at odd byte offsets and the
     * longer rows span several staging chunks; k-quants: 2 and 18 super-blocks */
    check_small(h, r, qt, 37, k_quant ? 512 : 800);
    check_small(h, r, qt, 131, k_quant ? 4608 : 4000);
  }
  struct shape { const char *what; int rows, cols; };
  const shape shapes[] = {{"o_proj", 4096, 4096}, {"gate/up", 14336, 4096}, {"down", 4096, 14336}};
  for (const shape &s : shapes) {
    printf("== %s %dx%d\n", s.what, s.rows, s.cols);
    const std::vector<float> wf = random_f32(r, (size_t)s.rows * s.cols, 0.02f);
    bench_shape(h, r, wf.data(), s.rows, s.cols);
  }
  return h.exit_code();
}
