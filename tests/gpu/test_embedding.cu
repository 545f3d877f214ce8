/* tests/gpu/test_embedding.cu — embedding gather (embedding.cu) against ref_embed: random bf16
 * table, random ids (first and last row included), fp32 and bf16 outputs poisoned first; the
 * gather is exact, so the tolerance is 0. Timed at a Llama-3-8B-like size (4096 tokens of a
 * 32000 x 4096 table): bytes = rows read (bf16) + rows written. */
#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/harness.h"

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

int main() {
  print_device();
  harness h;
  rng r(11);
  run_case(h, r, 32000, 4096, 4096, true);
  run_case(h, r, 1000, 1002, 37, false); /* dim % 8 != 0: the scalar kernel */
  run_case(h, r, 50, 64, 5, false);
  return h.exit_code();
}
