/* tests/gpu/gemv_harness.h — what the two GEMV harnesses (test_gemv_bf16.cu, test_gemv_quant.cu)
 * share beyond harness.h: reading back an output written with a row stride, checking the stride's
 * gaps were left alone, and the decode-step timings (launches back to back, and the time a
 * projection adds after a small PDL kernel standing for the RMSNorm before it). Header-only,
 * CUDA C++. */
#ifndef TWIN_TESTS_GPU_GEMV_HARNESS_H
#define TWIN_TESTS_GPU_GEMV_HARNESS_H

#include <string.h>

#include "llm-svc/backend/cuda/cuda_util.cuh"
#include "tests/gpu/harness.h"

static const double kCopyGBs = 4262.0; /* H200 device-to-device copy (NOTES, run 2) */

/* the result as floats: n rows of `rows` values, ldy apart, fp32 or bf16 */
static inline std::vector<float> download_y(const void *d_y, int y_f32, int n, int rows, int ldy) {
  std::vector<float> out((size_t)n * rows);
  if (y_f32) {
    const std::vector<float> h = dev_download((const float *)d_y, (size_t)n * ldy);
    for (int t = 0; t < n; t++) memcpy(&out[(size_t)t * rows], &h[(size_t)t * ldy], rows * sizeof(float));
  } else {
    const std::vector<uint16_t> h = dev_download((const uint16_t *)d_y, (size_t)n * ldy);
    for (int t = 0; t < n; t++)
      for (int r = 0; r < rows; r++) out[(size_t)t * rows + r] = ref_bf16_to_f32(h[(size_t)t * ldy + r]);
  }
  return out;
}

/* true when every byte of y outside its n x rows values (the ldy gaps and 64 bytes past the
 * end) still holds the poison 0xFF */
static inline bool gaps_untouched(const void *d_y, int y_f32, int n, int rows, int ldy) {
  const size_t es = y_f32 ? 4 : 2, total = (size_t)n * ldy * es + 64;
  std::vector<uint8_t> h(total);
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(h.data(), d_y, total, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < total; i++) {
    const size_t e = i / es, t = e / ldy, r = e % ldy;
    const bool inside = t < (size_t)n && r < (size_t)rows;
    if (!inside && h[i] != 0xFF) return false;
  }
  return true;
}

/* Per-launch time of `per` launches back to back between one pair of events (as in a decode
 * step, where the next kernel's launch overlaps this one; with programmatic dependent launch
 * the next GEMV also starts streaming its weights early): median over `reps` sequences. */
static inline double time_seq_ms(const std::function<void(int)> &fn, int per = 20, int reps = 9) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < per; i++) fn(i);
  CK(cudaDeviceSynchronize());
  std::vector<float> t(reps);
  for (int rep = 0; rep < reps; rep++) {
    CK(cudaEventRecord(a));
    for (int i = 0; i < per; i++) fn(per * (rep + 1) + i);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[rep], a, b));
  }
  CK(cudaGetLastError());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[reps / 2] / per;
}

/* A stand-in for the kernel before a projection in a decode step (an RMSNorm, say): one block
 * that waits for its predecessor, lets its successor be scheduled (programmatic dependent
 * launch, as the backend's kernels do), then spins for `cycles`. */
static __global__ void predecessor_kernel(long long cycles) {
  pdl_enter();
  if (threadIdx.x == 0) {
    const long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
  }
}

/* Time a projection adds to a decode step: per-pair time of 20 (predecessor, projection) pairs
 * back to back, minus the predecessor alone. The projection may start streaming its weights
 * while the predecessor runs, as it does in the backend's CUDA graph. */
static inline double time_after_predecessor_ms(const std::function<void(int)> &fn) {
  const long long cycles = 4000; /* ~2 us */
  const double both = time_seq_ms([&](int i) {
    CK(twin_launch(predecessor_kernel, 1, 32, 0, (cudaStream_t)0, cycles));
    fn(i);
  });
  const double alone = time_seq_ms([&](int) { CK(twin_launch(predecessor_kernel, 1, 32, 0, (cudaStream_t)0, cycles)); });
  return both - alone;
}

#endif
