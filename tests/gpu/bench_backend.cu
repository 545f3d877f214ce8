/* tests/gpu/bench_backend.cu — speed of the whole CUDA backend on the shapes the design's targets
 * name (Llama-3.1-8B, Llama-3.2-1B), driven the way the engine drives it: prompts prefilled in
 * chunks of up to 2048 tokens, then decode steps that sample on the device (greedy unless the
 * name says otherwise), through the CUDA graphs after each batch size's first two steps.
 * Weights are random bf16 generated on the device, every layer sharing one set (speed does not
 * depend on the values); the KV contents are whatever the prompts wrote. Times are wall-clock
 * around the backend calls (each ends with a stream synchronisation). Prints
 *   BENCH|name|value|unit|target
 * Targets (DESIGN.md, H200): 8B batch 1 >= 230 tokens/s, 64 sequences (128-token prompts, 128
 * new) >= 11000 output tokens/s, 2048-token prompt <= 60 ms to the first token; 1B batch 1 >=
 * 1300 tokens/s, batch 64 >= 40000. An H100 has ~70% of an H200's memory bandwidth. */
#include <cuda_bf16.h>

#include <chrono>
#include <string>

#include "llm-svc/backend/cuda/cuda_backend.h"
#include "tests/gpu/harness.h"

static __global__ void fill_bf16_kernel(__nv_bfloat16 *p, size_t n, uint64_t seed, float scale,
                                        float mean) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint64_t z = seed + i * 0x9e3779b97f4a7c15ull; /* splitmix64 of the index */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float u = (float)(z >> 40) * (1.0f / 16777216.0f);
    p[i] = __float2bfloat16_rn(mean + scale * (2.0f * u - 1.0f));
  }
}

/* ---- a model of random weights in device memory ---------------------------------------------- */

struct device_model {
  std::vector<void *> buffers;
  std::vector<twin_tensor> tensors; /* reserved up front: pointers into it stay valid */
  std::vector<twin_llama_layer_tensors> layers;
  twin_llama_tensors bound{};

  const twin_tensor *make(const char *name, int64_t rows, int64_t cols, float scale, float mean) {
    const size_t n = (size_t)rows * (cols ? cols : 1);
    __nv_bfloat16 *p = nullptr;
    CK(cudaMalloc(&p, n * 2));
    fill_bf16_kernel<<<1024, 256>>>(p, n, 1000 + buffers.size(), scale, mean);
    CK(cudaGetLastError());
    buffers.push_back(p);
    twin_tensor t{};
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = TWIN_DT_BF16;
    t.ndim = cols ? 2 : 1;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.data = p;
    t.nbytes = n * 2;
    t.file = "device";
    tensors.push_back(t);
    return &tensors.back();
  }

  explicit device_model(const twin_model_config &c) {
    tensors.reserve(16);
    const int dim = c.dim, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
    const float s = 1.0f / sqrtf((float)dim);
    bound.embed = make("embed", c.vocab_size, dim, 1.0f, 0.0f);
    bound.final_norm = make("norm", dim, 0, 0.1f, 1.0f);
    bound.lm_head = c.tie_embeddings ? bound.embed : make("lm_head", c.vocab_size, dim, s, 0.0f);
    twin_llama_layer_tensors L{};
    L.attn_norm = make("attn_norm", dim, 0, 0.1f, 1.0f);
    L.wq = make("wq", qd, dim, s, 0.0f);
    L.wk = make("wk", kvd, dim, s, 0.0f);
    L.wv = make("wv", kvd, dim, s, 0.0f);
    L.wo = make("wo", dim, qd, 1.0f / sqrtf((float)qd), 0.0f);
    L.ffn_norm = make("ffn_norm", dim, 0, 0.1f, 1.0f);
    L.w_gate = make("w_gate", c.hidden_dim, dim, s, 0.0f);
    L.w_up = make("w_up", c.hidden_dim, dim, s, 0.0f);
    L.w_down = make("w_down", dim, c.hidden_dim, 1.0f / sqrtf((float)c.hidden_dim), 0.0f);
    layers.assign(c.n_layers, L);
    bound.n_layers = c.n_layers;
    bound.layers = layers.data();
    CK(cudaDeviceSynchronize());
  }
  ~device_model() {
    for (void *p : buffers) cudaFree(p);
  }
  device_model(const device_model &) = delete;
  device_model &operator=(const device_model &) = delete;
};

/* ---- driving the backend ------------------------------------------------------------------------ */

struct live_seq {
  int len = 0;                 /* tokens in the cache */
  std::vector<int32_t> blocks;
};

struct driver {
  twin_backend *b;
  int vocab, next_block = 0, max_blocks;
  rng r{5};
  explicit driver(twin_backend *b_) : b(b_), vocab(b_->cfg.vocab_size) {
    max_blocks = (b_->cfg.max_seq_len + 15) / 16;
  }

  /* One step: sequence i brings n_new[i] tokens. Samples one token per sequence on the device. */
  void step(std::vector<live_seq *> &seqs, const std::vector<int> &n_new, float temperature) {
    const int S = (int)seqs.size();
    std::vector<int32_t> tokens, pos, start(1, 0), len, tables((size_t)S * max_blocks, 0);
    for (int i = 0; i < S; i++) {
      live_seq &s = *seqs[i];
      for (int k = 0; k < n_new[i]; k++) {
        tokens.push_back(r.below(vocab));
        pos.push_back(s.len + k);
      }
      s.len += n_new[i];
      while ((int)s.blocks.size() * 16 < s.len) {
        if (next_block >= b->num_blocks) {
          fprintf(stderr, "bench: the KV pool (%d blocks) is too small\n", b->num_blocks);
          exit(2);
        }
        s.blocks.push_back(next_block++);
      }
      std::copy(s.blocks.begin(), s.blocks.end(), tables.begin() + (size_t)i * max_blocks);
      start.push_back((int32_t)tokens.size());
      len.push_back(s.len);
    }
    twin_batch bt{};
    bt.n_tokens = (int)tokens.size();
    bt.n_seqs = S;
    bt.tokens = tokens.data();
    bt.positions = pos.data();
    bt.seq_start = start.data();
    bt.seq_len = len.data();
    bt.block_tables = tables.data();
    bt.max_blocks = max_blocks;
    std::vector<float> t(S, temperature), p(S, temperature > 0 ? 0.95f : 1.0f), mp(S, 0.0f);
    std::vector<int32_t> k(S, temperature > 0 ? 50 : 0), ids(S);
    std::vector<uint64_t> seed(S, 1), off(S, (uint64_t)seqs[0]->len);
    twin_cuda_sampling sp = {t.data(), k.data(), p.data(), mp.data(), seed.data(), off.data()};
    twin_err err{};
    if (twin_backend_cuda_forward_sample(b, &bt, &sp, ids.data(), &err)) {
      fprintf(stderr, "bench: forward_sample: %s\n", err.msg);
      exit(2);
    }
  }

  /* Prefills `prompt` tokens for each of seqs, up to 2048 tokens a step. */
  void prefill(std::vector<live_seq *> &seqs, int prompt) {
    const int per_step = std::max(1, b->max_tokens_per_step / prompt);
    for (size_t i = 0; i < seqs.size(); i += per_step) {
      std::vector<live_seq *> group(seqs.begin() + i, seqs.begin() + std::min(seqs.size(), i + per_step));
      step(group, std::vector<int>(group.size(), prompt), 0.0f);
    }
  }
};

static double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static void bench(const char *label, const twin_model_config &cfg, double target_b1,
                  double target_b64, double target_ttft_ms) {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  twin_backend *b = nullptr;
  {
    device_model m(cfg);
    twin_backend_opts opts{};
    opts.max_tokens_per_step = 2048;
    opts.max_seqs = 64;
    opts.kv_bytes = (size_t)cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * 2 * 16 * 2400;
    twin_err err{};
    if (twin_backend_cuda_create_from(&cfg, &m.bound, &opts, &b, &err)) {
      fprintf(stderr, "bench: create %s: %s\n", label, err.msg);
      exit(2);
    }
  }
  printf("BENCH|%s create (weights on device)|%.2f|s|-\n", label, seconds_since(t0));
  driver d(b);
  char name[128];

  for (float temperature : {0.0f, 0.8f}) { /* batch 1: 512-token prompt, 128 new tokens */
    live_seq s;
    std::vector<live_seq *> one = {&s};
    d.prefill(one, 512);
    for (int i = 0; i < 3; i++) d.step(one, {1}, temperature); /* eager, capture, replay */
    const int steps = 128;
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; i++) d.step(one, {1}, temperature);
    const double tps = steps / seconds_since(t0);
    snprintf(name, sizeof name, "%s decode batch 1%s", label, temperature > 0 ? " (T 0.8, top-k 50, top-p 0.95)" : "");
    printf("BENCH|%s|%.0f|tokens/s|%s\n", name, tps,
           temperature > 0 ? "-" : (std::to_string((int)target_b1) + "+").c_str());
  }
  { /* 64 sequences: 128-token prompts, then 128 new tokens each */
    std::vector<live_seq> seqs(64);
    std::vector<live_seq *> all;
    for (live_seq &s : seqs) all.push_back(&s);
    t0 = std::chrono::steady_clock::now();
    d.prefill(all, 128);
    const double prefill_s = seconds_since(t0);
    snprintf(name, sizeof name, "%s prefill 64 x 128 tokens", label);
    printf("BENCH|%s|%.0f|tokens/s|-\n", name, 64 * 128 / prefill_s);
    for (int i = 0; i < 3; i++) d.step(all, std::vector<int>(64, 1), 0.0f);
    const int steps = 125;
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; i++) d.step(all, std::vector<int>(64, 1), 0.0f);
    snprintf(name, sizeof name, "%s decode batch 64", label);
    printf("BENCH|%s|%.0f|tokens/s|%d+\n", name, 64.0 * steps / seconds_since(t0), (int)target_b64);
  }
  if (target_ttft_ms > 0) { /* one 2048-token prompt, median of 3 */
    std::vector<double> ms;
    for (int i = 0; i < 3; i++) {
      live_seq s;
      std::vector<live_seq *> one = {&s};
      t0 = std::chrono::steady_clock::now();
      d.step(one, {2048}, 0.0f);
      ms.push_back(1e3 * seconds_since(t0));
    }
    std::sort(ms.begin(), ms.end());
    snprintf(name, sizeof name, "%s 2048-token prompt to first token", label);
    printf("BENCH|%s|%.1f|ms|%.0f-\n", name, ms[1], target_ttft_ms);
  }
  twin_backend_destroy(b);
}

static twin_model_config llama_config(int dim, int hidden, int layers, int hd, int tied) {
  twin_model_config c{};
  c.arch = TWIN_ARCH_LLAMA;
  snprintf(c.arch_name, sizeof c.arch_name, "llama");
  c.vocab_size = 128256;
  c.dim = dim;
  c.hidden_dim = hidden;
  c.n_layers = layers;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = hd;
  c.max_seq_len = 8192;
  c.rope_theta = 500000.0f;
  c.rope_llama3 = 1;
  c.rope_factor = tied ? 32.0f : 8.0f;
  c.rope_low_freq_factor = 1.0f;
  c.rope_high_freq_factor = 4.0f;
  c.rope_original_max_pos = 8192;
  c.norm_eps = 1e-5f;
  c.tie_embeddings = tied;
  c.bos_id = -1;
  c.dtype = TWIN_DT_BF16;
  return c;
}

int main() {
  print_device();
  bench("8B", llama_config(4096, 14336, 32, 128, 0), 230, 11000, 60);
  bench("1B", llama_config(2048, 8192, 16, 64, 1), 1300, 40000, 0);
  return 0;
}
