/* tests/gpu/test_convert.cu — weight conversion to bf16 (convert.cu) against the reference
 * round-to-nearest-even: f32 inputs from random bit patterns (every exponent, subnormals, inf,
 * NaN) and from N(0, 1); f16 inputs from every one of the 65536 patterns. Bit-exact except NaN,
 * which must stay NaN. Timed on 64M f32 values (read 4 bytes, write 2). */
#include <string.h>

#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/harness.h"

static size_t mismatches(const std::vector<uint16_t> &got, const std::vector<uint16_t> &want) {
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); i++) {
    const bool got_nan = (got[i] & 0x7fff) > 0x7f80, want_nan = (want[i] & 0x7fff) > 0x7f80;
    if (got_nan != want_nan || (!want_nan && got[i] != want[i])) bad++;
  }
  return bad;
}

int main() {
  print_device();
  harness h;
  rng r(14);
  const size_t n = (size_t)1 << 26;
  std::vector<float> f(n);
  for (size_t i = 0; i < n; i++) {
    if (i % 2) {
      f[i] = r.normal();
    } else {
      const uint32_t bits = (uint32_t)r.next();
      memcpy(&f[i], &bits, 4);
    }
  }
  std::vector<uint16_t> want(n);
  for (size_t i = 0; i < n; i++) want[i] = ref_f32_to_bf16(f[i]);
  float *d_f = dev_upload(f);
  twin_bf16 *d_out = dev_poisoned<twin_bf16>(n);
  CK(twin_cuda_convert_to_bf16(d_out, d_f, TWIN_CUDA_SRC_F32, n, 0));
  const size_t bad32 = mismatches(dev_download(d_out, n), want);
  const double ms = time_ms([&](int) { twin_cuda_convert_to_bf16(d_out, d_f, TWIN_CUDA_SRC_F32, n, 0); });
  h.report("convert f32->bf16 64M", (double)bad32 / n, 0.0, ms, (double)n * 6);

  std::vector<uint16_t> halves(65536), want16(65536);
  for (int i = 0; i < 65536; i++) {
    halves[i] = (uint16_t)i;
    want16[i] = ref_f32_to_bf16(ref_f16_to_f32((uint16_t)i));
  }
  uint16_t *d_h = dev_upload(halves);
  twin_bf16 *d_out16 = dev_poisoned<twin_bf16>(65536);
  CK(twin_cuda_convert_to_bf16(d_out16, d_h, TWIN_CUDA_SRC_F16, 65536, 0));
  h.report("convert f16->bf16 all 65536", (double)mismatches(dev_download(d_out16, 65536), want16) / 65536, 0.0);
  cudaFree(d_f);
  cudaFree(d_out);
  cudaFree(d_h);
  cudaFree(d_out16);
  return h.exit_code();
}
