/* tests/gpu/test_embedding.cu — embedding gather (embedding.cu) against ref_embed: random bf16
 * table, random ids (first and last row included), fp32 and bf16 outputs poisoned first; the
 * gather is exact, so the tolerance is 0. Timed at a Llama-3-8B-like size (4096 tokens of a
 * 32000 x 4096 table): bytes = rows read (bf16) + rows written.
 * The decode step's input kernel (twin_cuda_embed_step): x the same bits as twin_cuda_embed_f32,
 * the RoPE table the same bits as twin_cuda_rope_table, the fixed-point sums of squares against
 * double, with the same bits on a second run. */
#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/harness.h"

#include <math.h>

static void run_case(harness &h, rng &r, int vocab, int dim, int n, bool timed) {
  const std::vector<uint16_t> table = random_bf16(r, (size_t)vocab * dim, 1.0f);
  std::vector<int32_t> ids(n);
  for (int t = 0; t < n; t++) ids[t] = r.below(vocab);
  ids[0] = 0;
  ids[n - 1] = vocab - 1;
  std::vector<float> ref((size_t)n * dim);
  ref_embed(ref.data(), table.data(), ids.data(), n, dim);

  twin_bf16 *d_table = dev_upload(table);
  int32_t *d_ids = dev_upload(ids);
  float *d_out = dev_poisoned<float>((size_t)n * dim);
  twin_bf16 *d_out16 = dev_poisoned<twin_bf16>((size_t)n * dim);

  CK(twin_cuda_embed_f32(d_out, d_table, d_ids, n, dim, 0));
  const double err = rel_l2(dev_download(d_out, (size_t)n * dim), ref);
  CK(twin_cuda_embed_bf16(d_out16, d_table, d_ids, n, dim, 0));
  const double err16 = rel_l2(bf16_to_f32(dev_download(d_out16, (size_t)n * dim)), ref);

  char name[96];
  double ms = -1, ms16 = -1;
  if (timed) {
    ms = time_ms([&](int) { twin_cuda_embed_f32(d_out, d_table, d_ids, n, dim, 0); });
    ms16 = time_ms([&](int) { twin_cuda_embed_bf16(d_out16, d_table, d_ids, n, dim, 0); });
  }
  snprintf(name, sizeof name, "embed_f32 %dx%d n=%d", vocab, dim, n);
  h.report(name, err, 0.0, ms, (double)n * dim * (2 + 4));
  snprintf(name, sizeof name, "embed_bf16 %dx%d n=%d", vocab, dim, n);
  h.report(name, err16, 0.0, ms16, (double)n * dim * (2 + 2));
  cudaFree(d_table);
  cudaFree(d_ids);
  cudaFree(d_out);
  cudaFree(d_out16);
}

static void check_step(harness &h, rng &r, int vocab, int dim, int hd, int n) {
  const std::vector<uint16_t> table = random_bf16(r, (size_t)vocab * dim, 1.0f);
  std::vector<int32_t> ids(n), pos(n);
  for (int t = 0; t < n; t++) {
    ids[t] = r.below(vocab);
    pos[t] = r.below(100000);
  }
  std::vector<double> inv_freq(hd / 2);
  for (int i = 0; i < hd / 2; i++) inv_freq[i] = pow(500000.0, -2.0 * i / hd);
  twin_bf16 *d_table = dev_upload(table);
  int32_t *d_ids = dev_upload(ids), *d_pos = dev_upload(pos);
  double *d_inv = dev_upload(inv_freq);
  float *d_x = dev_poisoned<float>((size_t)n * dim), *d_x2 = dev_poisoned<float>((size_t)n * dim);
  float *d_cs = dev_poisoned<float>((size_t)n * hd), *d_cs2 = dev_poisoned<float>((size_t)n * hd);
  uint64_t *d_sum = dev_poisoned<uint64_t>(n);
  bool ok = twin_cuda_embed_step(d_x, d_sum, d_cs, d_pos, d_inv, hd, d_table, d_ids, n, dim, 0) == cudaSuccess;
  const std::vector<uint64_t> sums = dev_download(d_sum, n);
  ok &= twin_cuda_embed_step(d_x, d_sum, d_cs, d_pos, d_inv, hd, d_table, d_ids, n, dim, 0) == cudaSuccess;
  const bool again = dev_download(d_sum, n) == sums;
  ok &= twin_cuda_embed_f32(d_x2, d_table, d_ids, n, dim, 0) == cudaSuccess;
  ok &= twin_cuda_rope_table(d_cs2, d_pos, d_inv, n, hd, 0) == cudaSuccess;
  const std::vector<float> x = dev_download(d_x, (size_t)n * dim);
  const bool same_x = x == dev_download(d_x2, (size_t)n * dim);
  const bool same_cs = dev_download(d_cs, (size_t)n * hd) == dev_download(d_cs2, (size_t)n * hd);
  double worst = 0;
  for (int t = 0; t < n; t++) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += (double)x[(size_t)t * dim + i] * x[(size_t)t * dim + i];
    worst = std::max(worst, fabs((double)sums[t] / (1 << TWIN_RMS_FRAC_BITS) - ss) / ss);
  }
  char name[160];
  snprintf(name, sizeof name, "embed_step %dx%d hd %d n=%d: x = embed_f32, cos_sin = rope_table bit for bit, sums the same twice",
           vocab, dim, hd, n);
  h.check(name, ok && same_x && same_cs && again,
          !ok ? "a launch failed" : !same_x ? "x differs" : !same_cs ? "the RoPE table differs" : "the sums differ between runs");
  snprintf(name, sizeof name, "embed_step %dx%d n=%d: sums of squares vs double", vocab, dim, n);
  h.report(name, ok ? worst : INFINITY, 2e-6);
  for (void *p : {(void *)d_table, (void *)d_ids, (void *)d_pos, (void *)d_inv, (void *)d_x, (void *)d_x2,
                  (void *)d_cs, (void *)d_cs2, (void *)d_sum})
    cudaFree(p);
}

int main() {
  print_device();
  harness h;
  rng r(11);
  run_case(h, r, 32000, 4096, 4096, true);
  run_case(h, r, 1000, 1002, 37, false); /* dim % 8 != 0: the scalar kernel */
  run_case(h, r, 50, 64, 5, false);
  check_step(h, r, 1000, 2048, 64, 1);
  check_step(h, r, 1000, 4096, 128, 8);
  check_step(h, r, 300, 520, 32, 3); /* rows not a multiple of the block's 256 x 8 */
  h.check("embed_step refuses dim % 8 != 0",
          twin_cuda_embed_step((float *)16, (uint64_t *)16, (float *)16, (const int32_t *)16, (const double *)16, 64,
                               (const twin_bf16 *)16, (const int32_t *)16, 1, 1002, 0) == cudaErrorInvalidValue,
          "accepted");
  return h.exit_code();
}
