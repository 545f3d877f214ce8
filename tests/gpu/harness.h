/* tests/gpu/harness.h — what every GPU harness (tests/gpu/test_*.cu) shares: a CUDA check that
 * stops the harness, a seeded random source (never zeros), device buffers poisoned with NaN
 * before a kernel writes them, the relative L2 error, event timing (warm-up, median), and the
 * RESULT lines run_all.sh turns into its table:
 *   RESULT|name|error|tolerance|PASS or FAIL|median ms|GB/s|TFLOP/s   ("-" where not measured)
 * A harness exits 1 when any check failed, 2 on a CUDA error. Header-only, CUDA C++. */
#ifndef TWIN_TESTS_GPU_HARNESS_H
#define TWIN_TESTS_GPU_HARNESS_H

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "tests/gpu/ref.h"

#define CK(call)                                                                        \
  do {                                                                                  \
    cudaError_t ck_e_ = (call);                                                         \
    if (ck_e_ != cudaSuccess) {                                                         \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                    \
              cudaGetErrorString(ck_e_));                                               \
      exit(2);                                                                          \
    }                                                                                   \
  } while (0)

/* ---- random inputs ---------------------------------------------------------------------------- */

struct rng {
  uint64_t s;
  explicit rng(uint64_t seed) : s(seed) {}
  uint64_t next() { /* splitmix64 */
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); } /* [0, 1) */
  int below(int n) { return (int)(next() % (uint64_t)n); }
  float normal() {
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
  }
};

static inline std::vector<uint16_t> random_bf16(rng &r, size_t n, float scale, float mean = 0.0f) {
  std::vector<uint16_t> v(n);
  for (auto &x : v) x = ref_f32_to_bf16(mean + scale * r.normal());
  return v;
}

/* uniform in [-scale, scale): cheaper than normal for large weight matrices */
static inline std::vector<uint16_t> random_bf16_uniform(rng &r, size_t n, float scale) {
  std::vector<uint16_t> v(n);
  for (auto &x : v) x = ref_f32_to_bf16((float)((2.0 * r.uniform() - 1.0) * scale));
  return v;
}

static inline std::vector<float> random_f32(rng &r, size_t n, float scale, float mean = 0.0f) {
  std::vector<float> v(n);
  for (auto &x : v) x = mean + scale * r.normal();
  return v;
}

static inline std::vector<float> bf16_to_f32(const std::vector<uint16_t> &h) {
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); i++) f[i] = ref_bf16_to_f32(h[i]);
  return f;
}

/* ---- device buffers ------------------------------------------------------------------------------ */

/* n elements, every byte 0xFF: NaN as fp32 and bf16, -1 as an integer */
template <typename T>
static T *dev_poisoned(size_t n) {
  T *p = nullptr;
  CK(cudaMalloc(&p, n * sizeof(T) + 16));
  CK(cudaMemset(p, 0xFF, n * sizeof(T) + 16));
  return p;
}

template <typename T>
static T *dev_upload(const std::vector<T> &h) {
  T *p = nullptr;
  CK(cudaMalloc(&p, h.size() * sizeof(T) + 16));
  CK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

template <typename T>
static std::vector<T> dev_download(const T *d, size_t n) {
  std::vector<T> h(n);
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

/* ---- errors ----------------------------------------------------------------------------------------- */

/* ||out - ref|| / ||ref||; any NaN or inf in out gives +inf. */
static inline double rel_l2(const float *out, const float *ref, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i])) return INFINITY;
    const double d = (double)out[i] - ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double rel_l2(const std::vector<float> &out, const std::vector<float> &ref) {
  return rel_l2(out.data(), ref.data(), std::min(out.size(), ref.size()));
}

/* max_i |out - ref| / max(|ref|, floor): for checks where every element must be close */
static inline double max_rel(const float *out, const float *ref, size_t n, double floor_) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(out[i]) != isnan(ref[i])) return INFINITY;
    if (isnan(ref[i])) continue;
    const double e = fabs((double)out[i] - ref[i]) / std::max(fabs((double)ref[i]), floor_);
    worst = std::max(worst, e);
  }
  return worst;
}

/* ---- timing ------------------------------------------------------------------------------------------ */

/* Median device time of fn (which enqueues work on the default stream), after warm-up runs. */
static inline double time_ms(const std::function<void(int)> &fn, int warmup = 5, int iters = 40) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < warmup; i++) fn(i);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  std::vector<float> t(iters);
  for (int i = 0; i < iters; i++) {
    CK(cudaEventRecord(a));
    fn(warmup + i);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[i], a, b));
  }
  CK(cudaGetLastError());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[iters / 2];
}

/* ---- results ------------------------------------------------------------------------------------------ */

struct harness {
  int failures = 0;
  /* ms < 0: not timed; bytes / flops <= 0: not counted */
  void report(const char *name, double err, double tol, double ms = -1, double bytes = 0,
              double flops = 0) {
    const bool pass = err <= tol; /* NaN fails */
    if (!pass) failures++;
    char t[32] = "-", bw[32] = "-", fl[32] = "-";
    if (ms >= 0) snprintf(t, sizeof t, "%.4f", ms);
    if (ms > 0 && bytes > 0) snprintf(bw, sizeof bw, "%.0f", bytes / (ms * 1e-3) / 1e9);
    if (ms > 0 && flops > 0) snprintf(fl, sizeof fl, "%.1f", flops / (ms * 1e-3) / 1e12);
    printf("RESULT|%s|%.3e|%.0e|%s|%s|%s|%s\n", name, err, tol, pass ? "PASS" : "FAIL", t, bw, fl);
    fflush(stdout);
  }
  void check(const char *name, bool ok, const char *why) {
    if (!ok) {
      failures++;
      printf("RESULT|%s|-|-|FAIL|-|-|-\n  %s\n", name, why);
    } else {
      printf("RESULT|%s|-|-|PASS|-|-|-\n", name);
    }
    fflush(stdout);
  }
  int exit_code() const { return failures ? 1 : 0; }
};

static inline void print_device() {
  int dev = 0;
  cudaDeviceProp p;
  CK(cudaGetDevice(&dev));
  CK(cudaGetDeviceProperties(&p, dev));
  printf("device: %s, %d SMs, %.0f MiB, L2 %d MiB\n", p.name, p.multiProcessorCount,
         p.totalGlobalMem / 1048576.0, p.l2CacheSize >> 20);
}

#endif
