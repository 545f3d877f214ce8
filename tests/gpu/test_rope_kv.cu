/* tests/gpu/test_rope_kv.cu — the rope cos/sin table and RoPE fused with the KV-cache write
 * (rope_kv.cu) against ref_rope_table / ref_rope_kv_write. Positions up to 131072, llama3-scaled
 * frequencies, cache slots a random permutation with every 17th token a padding slot (-1), the
 * caches pre-filled with random values so a stray or missing write shows. Every element must be
 * within a bf16 rounding step of the reference (max relative error 1e-2 with a 1e-2 floor; the
 * only expected differences are last-bit roundings). Timed at 2048 tokens, Llama-3-8B heads. */
#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/harness.h"

static void run_case(harness &h, rng &r, int n, int nh, int nkv, int hd, bool bias, bool timed) {
  twin_model_config cfg = {};
  cfg.head_dim = hd;
  cfg.rope_theta = 500000.0f;
  cfg.rope_llama3 = 1;
  cfg.rope_factor = 8.0f;
  cfg.rope_low_freq_factor = 1.0f;
  cfg.rope_high_freq_factor = 4.0f;
  cfg.rope_original_max_pos = 8192;
  std::vector<double> inv_freq(hd / 2);
  ref_rope_frequencies(&cfg, inv_freq.data());

  const int row = (nh + 2 * nkv) * hd, num_blocks = (n + 15) / 16 * 2;
  const size_t cache_elems = (size_t)num_blocks * nkv * 16 * hd;
  std::vector<int32_t> pos(n), slots(n), perm(num_blocks * 16);
  for (int i = 0; i < num_blocks * 16; i++) perm[i] = i;
  for (int i = num_blocks * 16 - 1; i > 0; i--) std::swap(perm[i], perm[r.below(i + 1)]);
  for (int t = 0; t < n; t++) {
    pos[t] = r.below(131072);
    slots[t] = t % 17 == 16 ? -1 : perm[t];
  }
  pos[0] = 0;
  std::vector<uint16_t> qkv = random_bf16(r, (size_t)n * row, 1.0f);
  const std::vector<uint16_t> b = random_bf16(r, row, 0.5f);
  std::vector<uint16_t> kc = random_bf16(r, cache_elems, 1.0f), vc = random_bf16(r, cache_elems, 1.0f);

  std::vector<float> cs_ref((size_t)n * hd);
  ref_rope_table(cs_ref.data(), pos.data(), inv_freq.data(), n, hd);
  int32_t *d_pos = dev_upload(pos), *d_slots = dev_upload(slots);
  double *d_inv = dev_upload(inv_freq);
  float *d_cs = dev_poisoned<float>((size_t)n * hd);
  CK(twin_cuda_rope_table(d_cs, d_pos, d_inv, n, hd, 0));
  const std::vector<float> cs = dev_download(d_cs, (size_t)n * hd);
  double table_err = 0.0;
  for (size_t i = 0; i < cs.size(); i++)
    table_err = std::max(table_err, isfinite(cs[i]) ? fabs((double)cs[i] - cs_ref[i]) : INFINITY);

  twin_bf16 *d_qkv = dev_upload(qkv), *d_b = bias ? dev_upload(b) : nullptr;
  twin_bf16 *d_kc = dev_upload(kc), *d_vc = dev_upload(vc);
  CK(twin_cuda_rope_kv_write(d_qkv, d_b, d_cs, d_slots, d_kc, d_vc, n, nh, nkv, hd, 0));
  const std::vector<float> got_qkv = bf16_to_f32(dev_download(d_qkv, qkv.size()));
  const std::vector<float> got_k = bf16_to_f32(dev_download(d_kc, cache_elems));
  const std::vector<float> got_v = bf16_to_f32(dev_download(d_vc, cache_elems));
  ref_rope_kv_write(qkv.data(), bias ? b.data() : nullptr, cs_ref.data(), slots.data(), kc.data(),
                    vc.data(), n, nh, nkv, hd);
  const std::vector<float> want_qkv = bf16_to_f32(qkv), want_k = bf16_to_f32(kc), want_v = bf16_to_f32(vc);
  const double err = std::max({max_rel(got_qkv.data(), want_qkv.data(), want_qkv.size(), 1e-2),
                               max_rel(got_k.data(), want_k.data(), want_k.size(), 1e-2),
                               max_rel(got_v.data(), want_v.data(), want_v.size(), 1e-2)});
  double ms = -1, ms_table = -1;
  if (timed) {
    ms_table = time_ms([&](int) { twin_cuda_rope_table(d_cs, d_pos, d_inv, n, hd, 0); });
    ms = time_ms([&](int) {
      twin_cuda_rope_kv_write(d_qkv, d_b, d_cs, d_slots, d_kc, d_vc, n, nh, nkv, hd, 0);
    });
  }
  char name[96];
  snprintf(name, sizeof name, "rope_table n=%d hd=%d", n, hd);
  h.report(name, table_err, 1e-6, ms_table, (double)n * (hd * 4 + 4));
  snprintf(name, sizeof name, "rope_kv_write n=%d %d/%d/%d%s", n, nh, nkv, hd, bias ? " bias" : "");
  const double bytes = (double)n * (row * 2 + nh * hd * 2 + 2 * nkv * hd * 2 + hd * 4);
  h.report(name, err, 1e-2, ms, bytes);
  cudaFree(d_pos); cudaFree(d_slots); cudaFree(d_inv); cudaFree(d_cs); cudaFree(d_qkv);
  cudaFree(d_b); cudaFree(d_kc); cudaFree(d_vc);
}

int main() {
  print_device();
  harness h;
  rng r(15);
  run_case(h, r, 2048, 32, 8, 128, false, true);
  run_case(h, r, 300, 32, 8, 128, true, false);
  run_case(h, r, 77, 32, 8, 64, false, false);
  run_case(h, r, 50, 28, 4, 128, true, false);
  return h.exit_code();
}
