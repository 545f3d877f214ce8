/* tests/gpu/test_gemm.cu — the row-major cuBLAS projection wrapper (gemm.c): y = x . w^T with
 * bf16 inputs, fp32 accumulation, bf16 or fp32 output and beta = 1 accumulation, against
 * ref_gemm (double): a small full check (with an x row stride > k), then the Llama-3-8B
 * projection shapes at 1, 64 and 2048 tokens, each checked on 256 random outputs and timed
 * (bytes = weights + activations; flops = 2 n m k). Decode GEMMs are weight-bandwidth-bound. */
#include "llm-svc/backend/cuda/gemm.h"
#include "tests/gpu/harness.h"

/* ref_gemm on chosen outputs only */
static double sampled_err(rng &r, const std::vector<uint16_t> &x, const std::vector<uint16_t> &w,
                          const std::vector<float> &y, int n, int m, int k) {
  std::vector<float> got(256), want(256);
  for (int s = 0; s < 256; s++) {
    const int i = r.below(n), j = r.below(m);
    ref_gemm(&want[s], x.data() + (size_t)i * k, k, w.data() + (size_t)j * k, 1, 1, k);
    got[s] = y[(size_t)i * m + j];
  }
  return rel_l2(got, want);
}

int main() {
  print_device();
  harness h;
  rng r(16);
  cublasHandle_t cb;
  if (cublasCreate(&cb) != CUBLAS_STATUS_SUCCESS) return 2;

  { /* full check, small */
    const int n = 5, m = 300, k = 264, ldx = 272;
    const std::vector<uint16_t> x = random_bf16(r, (size_t)n * ldx, 1.0f), w = random_bf16(r, (size_t)m * k, 1.0f);
    const std::vector<float> y0 = random_f32(r, (size_t)n * m, 1.0f);
    std::vector<float> ref((size_t)n * m), ref_acc((size_t)n * m);
    ref_gemm(ref.data(), x.data(), ldx, w.data(), n, m, k);
    for (size_t i = 0; i < ref.size(); i++) ref_acc[i] = ref[i] + y0[i];
    twin_bf16 *d_x = dev_upload(x), *d_w = dev_upload(w), *d_y16 = dev_poisoned<twin_bf16>((size_t)n * m);
    float *d_y = dev_poisoned<float>((size_t)n * m), *d_acc = dev_upload(y0);
    const bool ok = twin_cuda_gemm(cb, d_x, ldx, d_w, d_y, 1, m, n, m, k, 0.0f) == CUBLAS_STATUS_SUCCESS &&
                    twin_cuda_gemm(cb, d_x, ldx, d_w, d_y16, 0, m, n, m, k, 0.0f) == CUBLAS_STATUS_SUCCESS &&
                    twin_cuda_gemm(cb, d_x, ldx, d_w, d_acc, 1, m, n, m, k, 1.0f) == CUBLAS_STATUS_SUCCESS;
    h.check("gemm calls succeed", ok, "cublasGemmEx failed");
    h.report("gemm f32 out 5x300x264 ldx=272", rel_l2(dev_download(d_y, (size_t)n * m), ref), 1e-4);
    h.report("gemm bf16 out 5x300x264", rel_l2(bf16_to_f32(dev_download(d_y16, (size_t)n * m)), ref), 4e-3);
    h.report("gemm beta=1 accumulate", rel_l2(dev_download(d_acc, (size_t)n * m), ref_acc), 1e-4);
    cudaFree(d_x); cudaFree(d_w); cudaFree(d_y16); cudaFree(d_y); cudaFree(d_acc);
  }

  struct shape { const char *what; int m, k; bool f32_out; };
  const shape shapes[] = {{"qkv", 6144, 4096, false},     {"o_proj", 4096, 4096, true},
                          {"gate_up", 28672, 4096, false}, {"down", 4096, 14336, true},
                          {"lm_head", 128256, 4096, true}};
  const int token_counts[] = {1, 64, 2048};
  for (const shape &s : shapes) {
    const std::vector<uint16_t> w = random_bf16_uniform(r, (size_t)s.m * s.k, 0.03f);
    twin_bf16 *d_w = dev_upload(w);
    for (int n : token_counts) {
      if (n == 2048 && s.m == 128256) continue; /* prefill computes logits of last tokens only */
      const std::vector<uint16_t> x = random_bf16(r, (size_t)n * s.k, 1.0f);
      twin_bf16 *d_x = dev_upload(x);
      void *d_y = s.f32_out ? (void *)dev_poisoned<float>((size_t)n * s.m)
                            : (void *)dev_poisoned<twin_bf16>((size_t)n * s.m);
      const cublasStatus_t st = twin_cuda_gemm(cb, d_x, s.k, d_w, d_y, s.f32_out, s.m, n, s.m, s.k, 0.0f);
      std::vector<float> y;
      if (s.f32_out) y = dev_download((float *)d_y, (size_t)n * s.m);
      else y = bf16_to_f32(dev_download((twin_bf16 *)d_y, (size_t)n * s.m));
      const double err = st == CUBLAS_STATUS_SUCCESS ? sampled_err(r, x, w, y, n, s.m, s.k) : INFINITY;
      const double ms = time_ms([&](int) { twin_cuda_gemm(cb, d_x, s.k, d_w, d_y, s.f32_out, s.m, n, s.m, s.k, 0.0f); });
      char name[96];
      snprintf(name, sizeof name, "gemm %s n=%d %dx%d", s.what, n, s.m, s.k);
      const double bytes = (double)s.m * s.k * 2 + (double)n * s.k * 2 + (double)n * s.m * (s.f32_out ? 4 : 2);
      h.report(name, err, s.f32_out ? 1e-4 : 4e-3, ms, bytes, 2.0 * n * s.m * s.k);
      cudaFree(d_x);
      cudaFree(d_y);
    }
    cudaFree(d_w);
  }
  cublasDestroy(cb);
  return h.exit_code();
}
