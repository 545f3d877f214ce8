/* tests/gpu/test_sampling.cu — token selection on the device (sampling.cu).
 * argmax: exact against ref_argmax (ties go to the lowest index, NaN never wins).
 * sampling: 16384 rows of the same logits (vocab 1000) with one seed and offsets 0..16383, so
 * one launch draws 16384 independent samples. Checked against ref_sample_distribution (sort
 * based, Hugging Face order temperature -> top-k -> top-p -> min-p): no sample outside the kept
 * set (exact), and the total-variation distance between the sample frequencies and the
 * reference distribution within 6 standard deviations of its expected value under correct
 * sampling (+0.002); the same (seed, offset) must give the same ids twice. Timed on 64 rows of a 128256 vocabulary
 * (bytes = one read of the logits; the kernel makes several passes, mostly from L2).
 * With argmax keys (twin_cuda_sample_keyed): greedy rows take their key's index, the others
 * sample as without keys, every key is zero afterwards. */
#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/harness.h"

struct params_dev {
  float *t, *p, *mp;
  int32_t *k;
  uint64_t *seed, *offset;
  params_dev(int n, float t_, int k_, float p_, float mp_, uint64_t seed_, uint64_t offset0) {
    std::vector<uint64_t> seeds(n, seed_), offsets(n);
    for (int i = 0; i < n; i++) offsets[i] = offset0 + i;
    t = dev_upload(std::vector<float>(n, t_));
    p = dev_upload(std::vector<float>(n, p_));
    mp = dev_upload(std::vector<float>(n, mp_));
    k = dev_upload(std::vector<int32_t>(n, k_));
    seed = dev_upload(seeds);
    offset = dev_upload(offsets);
  }
  ~params_dev() {
    cudaFree(t); cudaFree(p); cudaFree(mp); cudaFree(k); cudaFree(seed); cudaFree(offset);
  }
  params_dev(const params_dev &) = delete;
  params_dev &operator=(const params_dev &) = delete;
};

static void check_argmax(harness &h, rng &r) {
  const int n = 64, vocab = 128256;
  std::vector<float> logits = random_f32(r, (size_t)n * vocab, 3.0f);
  logits[(size_t)1 * vocab + 500] = 100.0f; /* a tie: the lower index wins */
  logits[(size_t)1 * vocab + 7] = 100.0f;
  logits[(size_t)2 * vocab + 3] = NAN;      /* NaN never wins */
  logits[(size_t)2 * vocab + 9] = 50.0f;
  for (int i = 0; i < vocab; i++) logits[(size_t)3 * vocab + i] = -INFINITY; /* all -inf: index 0 */
  float *d_logits = dev_upload(logits);
  int32_t *d_ids = dev_poisoned<int32_t>(n);
  CK(twin_cuda_argmax(d_ids, d_logits, n, vocab, 0));
  const std::vector<int32_t> ids = dev_download(d_ids, n);
  int bad = 0;
  for (int i = 0; i < n; i++) bad += ids[i] != ref_argmax(logits.data() + (size_t)i * vocab, vocab);
  const double ms = time_ms([&](int) { twin_cuda_argmax(d_ids, d_logits, n, vocab, 0); });
  h.report("argmax 64x128256", (double)bad / n, 0.0, ms, (double)n * vocab * 4);

  /* temperature 0 takes the same path */
  params_dev greedy(n, 0.0f, 50, 0.9f, 0.0f, 1, 0);
  CK(cudaMemset(d_ids, 0xFF, n * 4));
  CK(twin_cuda_sample(d_ids, d_logits, n, vocab, greedy.t, greedy.k, greedy.p, greedy.mp,
                      greedy.seed, greedy.offset, 0));
  const std::vector<int32_t> ids0 = dev_download(d_ids, n);
  bad = 0;
  for (int i = 0; i < n; i++) bad += ids0[i] != ids[i];
  h.report("sample temperature 0 == argmax", (double)bad / n, 0.0);
  cudaFree(d_logits);
  cudaFree(d_ids);
}

/* greedy rows read their id from the key (an index the scan would not pick, to see which path
 * ran); sampled rows ignore it; every key is put back to zero */
static void check_keyed(harness &h, rng &r) {
  const int n = 8, vocab = 1000;
  const std::vector<float> logits = random_f32(r, (size_t)n * vocab, 3.0f);
  float *d_logits = dev_upload(logits);
  std::vector<float> temps(n);
  std::vector<uint64_t> keys(n);
  for (int i = 0; i < n; i++) {
    temps[i] = i % 2 ? 0.8f : 0.0f;
    const int pick = (ref_argmax(logits.data() + (size_t)i * vocab, vocab) + 1 + i) % vocab;
    keys[i] = (1ull << 32) | (uint32_t)~(uint32_t)pick;
  }
  params_dev par(n, 0.8f, 50, 0.9f, 0.0f, 99, 0);
  CK(cudaMemcpy(par.t, temps.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  uint64_t *d_keys = dev_upload(keys);
  int32_t *d_ids = dev_poisoned<int32_t>(n), *d_plain = dev_poisoned<int32_t>(n);
  bool ok = twin_cuda_sample_keyed(d_ids, d_logits, n, vocab, par.t, par.k, par.p, par.mp, par.seed, par.offset,
                                   d_keys, 0) == cudaSuccess;
  ok &= twin_cuda_sample(d_plain, d_logits, n, vocab, par.t, par.k, par.p, par.mp, par.seed, par.offset, 0) == cudaSuccess;
  const std::vector<int32_t> ids = dev_download(d_ids, n), plain = dev_download(d_plain, n);
  bool greedy_ok = true, sampled_ok = true, zero = true;
  for (int i = 0; i < n; i++) {
    if (temps[i] == 0.0f) greedy_ok &= ids[i] == (int32_t)~(uint32_t)keys[i];
    else sampled_ok &= ids[i] == plain[i];
  }
  for (uint64_t k : dev_download(d_keys, n)) zero &= k == 0;
  h.check("sample with keys: greedy rows take the key's index, sampled rows as without keys, keys back to zero",
          ok && greedy_ok && sampled_ok && zero,
          !ok ? "a launch failed" : !greedy_ok ? "a greedy row did not take its key" : !sampled_ok ? "a sampled row changed"
                                                                                    : "a key was not reset");
  h.check("sample with keys refuses NULL keys",
          twin_cuda_sample_keyed(d_ids, d_logits, n, vocab, par.t, par.k, par.p, par.mp, par.seed, par.offset, nullptr,
                                 0) == cudaErrorInvalidValue,
          "accepted");
  cudaFree(d_logits); cudaFree(d_keys); cudaFree(d_ids); cudaFree(d_plain);
}

static void check_distribution(harness &h, rng &r, const std::vector<float> &base, float t, int k,
                               float p, float mp) {
  const int vocab = (int)base.size(), rows = 16384;
  std::vector<float> logits((size_t)rows * vocab);
  for (int i = 0; i < rows; i++) std::copy(base.begin(), base.end(), logits.begin() + (size_t)i * vocab);
  float *d_logits = dev_upload(logits);
  int32_t *d_ids = dev_poisoned<int32_t>(rows);
  params_dev par(rows, t, k, p, mp, 0x5eedull + r.below(1000), 0);
  CK(twin_cuda_sample(d_ids, d_logits, rows, vocab, par.t, par.k, par.p, par.mp, par.seed, par.offset, 0));
  const std::vector<int32_t> ids = dev_download(d_ids, rows);
  CK(twin_cuda_sample(d_ids, d_logits, rows, vocab, par.t, par.k, par.p, par.mp, par.seed, par.offset, 0));
  const std::vector<int32_t> again = dev_download(d_ids, rows);

  std::vector<double> probs(vocab), freq(vocab, 0.0);
  const int kept = ref_sample_distribution(probs.data(), base.data(), vocab, t, k, p, mp);
  int outside = 0;
  for (int id : ids) {
    if (id < 0 || id >= vocab || probs[id] == 0.0) outside++;
    else freq[id] += 1.0 / rows;
  }
  /* under correct sampling, |freq - p| ~ |N(0, p(1-p)/rows)|: E = sqrt(2 var / pi), and the
   * sum's spread sigma = sqrt(sum (1 - 2/pi) var) */
  double tv = 0.0, expected = 0.0, var_sum = 0.0;
  for (int i = 0; i < vocab; i++) {
    const double var = probs[i] * (1.0 - probs[i]) / rows;
    tv += 0.5 * fabs(freq[i] - probs[i]);
    expected += 0.5 * sqrt(2.0 * var / M_PI);
    var_sum += (1.0 - 2.0 / M_PI) * var;
  }
  const double tolerance = expected + 6.0 * 0.5 * sqrt(var_sum) + 0.002;
  char name[128];
  snprintf(name, sizeof name, "sample T=%.1f k=%d p=%.2f minp=%.2f: none outside %d kept", t, k, p, mp, kept);
  h.report(name, (double)outside / rows, 0.0);
  snprintf(name, sizeof name, "sample T=%.1f k=%d p=%.2f minp=%.2f: TV distance", t, k, p, mp);
  h.report(name, tv, tolerance);
  bool same = ids == again;
  snprintf(name, sizeof name, "sample T=%.1f k=%d p=%.2f minp=%.2f: repeatable", t, k, p, mp);
  h.check(name, same, "the same seed and offset gave different ids");
  cudaFree(d_logits);
  cudaFree(d_ids);
}

static void time_sampling(harness &h, rng &r, float t, int k, float p) {
  const int n = 64, vocab = 128256;
  const std::vector<float> logits = random_f32(r, (size_t)n * vocab, 3.0f);
  float *d_logits = dev_upload(logits);
  int32_t *d_ids = dev_poisoned<int32_t>(n);
  params_dev par(n, t, k, p, 0.0f, 99, 0);
  CK(twin_cuda_sample(d_ids, d_logits, n, vocab, par.t, par.k, par.p, par.mp, par.seed, par.offset, 0));
  const std::vector<int32_t> ids = dev_download(d_ids, n);
  /* every id must be in its row's kept set */
  std::vector<double> probs(vocab);
  int outside = 0;
  for (int i = 0; i < n; i++) {
    ref_sample_distribution(probs.data(), logits.data() + (size_t)i * vocab, vocab, t, k, p, 0.0f);
    outside += ids[i] < 0 || ids[i] >= vocab || probs[ids[i]] == 0.0;
  }
  const double ms = time_ms([&](int) {
    twin_cuda_sample(d_ids, d_logits, n, vocab, par.t, par.k, par.p, par.mp, par.seed, par.offset, 0);
  });
  char name[96];
  snprintf(name, sizeof name, "sample 64x128256 T=%.1f k=%d p=%.2f", t, k, p);
  h.report(name, (double)outside / n, 0.0, ms, (double)n * vocab * 4);
  cudaFree(d_logits);
  cudaFree(d_ids);
}

int main() {
  print_device();
  harness h;
  rng r(18);
  check_argmax(h, r);
  check_keyed(h, r);
  const std::vector<float> base = random_f32(r, 1000, 2.0f);
  check_distribution(h, r, base, 1.0f, 0, 1.0f, 0.0f);   /* plain softmax */
  check_distribution(h, r, base, 0.7f, 50, 0.9f, 0.0f);
  check_distribution(h, r, base, 1.0f, 0, 0.8f, 0.0f);
  check_distribution(h, r, base, 1.3f, 20, 1.0f, 0.0f);
  check_distribution(h, r, base, 1.0f, 0, 1.0f, 0.05f);
  check_distribution(h, r, base, 0.8f, 100, 0.5f, 0.02f);
  check_distribution(h, r, base, 1.0f, 1, 1.0f, 0.0f);   /* top-1 */
  check_distribution(h, r, base, 1.0f, 0, 0.0f, 0.0f);   /* top_p 0: the top token */
  time_sampling(h, r, 0.8f, 50, 0.95f);
  time_sampling(h, r, 1.0f, 0, 0.9f);
  time_sampling(h, r, 1.0f, 0, 1.0f);
  return h.exit_code();
}
