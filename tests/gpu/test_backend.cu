/* tests/gpu/test_backend.cu — the whole CUDA backend (cuda_backend.c) end to end against
 * ref_model_logits: small random Llama-family models held in memory (bf16 tensors, a few stored
 * as f32 and f16 to exercise the load-time conversion), served through twin_batch steps the
 * way the engine drives them: a long prompt split into chunks (then decoded past 512 keys, so
 * that graph steps take several attention grid sizes), short prompts, decode tokens of
 * several sequences in the same step, a sequence arriving mid-run, blocks handed out from a
 * shuffled free list, all_logits on and off. Each step's logits rows are compared with the
 * reference's logits of the same positions (relative L2 over all rows, 2e-2: bf16 weights and
 * activations). Three models: llama (tied embeddings, llama3 rope scaling, hd 64, GQA 2),
 * qwen2 (q/k/v biases, hd 128, GQA 4, untied), mistral (sliding window 48). Also: the
 * device-sampling step (greedy ids equal the argmax of the same step's logits, through
 * twin_backend_cuda_forward_sample and through ops->forward_sample, the engine's entry; top-k 3
 * ids lie in the top 3; a NaN temperature is refused) and bad batches refused with TWIN_EINVAL. Every model runs twice: with the
 * pure-decode steps as CUDA graphs (captured on a bucket's second step, replayed after) and
 * without (TWIN_CUDA_GRAPHS=0). */
#include <string.h>

#include <deque>
#include <string>

#include "llm-svc/backend/cuda/cuda_backend.h"
#include "tests/gpu/harness.h"

/* ---- an in-memory model ------------------------------------------------------------------------ */

struct memory_model {
  twin_model_config cfg{};
  std::deque<std::vector<uint16_t>> halves; /* bf16 or f16 storage */
  std::deque<std::vector<float>> floats;    /* f32 storage and the reference's copies */
  std::deque<twin_tensor> tensors;
  std::vector<twin_llama_layer_tensors> layers;
  twin_llama_tensors bound{};
  std::vector<ref_layer> ref_layers;
  ref_model ref{};

  /* A tensor of random values stored as dtype; returns the reference's fp32 copy, which is what
   * the backend will hold (bf16 of the stored value). */
  const float *make(rng &r, const twin_tensor **out, const char *name, int64_t rows, int64_t cols,
                    twin_dtype dtype, float scale, float mean = 0.0f) {
    const size_t n = (size_t)rows * (cols ? cols : 1);
    const std::vector<uint16_t> v = random_bf16(r, n, scale, mean);
    std::vector<float> held(n);
    twin_tensor t{};
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = dtype;
    t.ndim = cols ? 2 : 1;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.file = "memory";
    if (dtype == TWIN_DT_F32) {
      floats.emplace_back(n);
      for (size_t i = 0; i < n; i++) held[i] = floats.back()[i] = ref_bf16_to_f32(v[i]);
      t.data = floats.back().data();
      t.nbytes = n * 4;
    } else if (dtype == TWIN_DT_F16) {
      halves.emplace_back(n);
      for (size_t i = 0; i < n; i++) {
        halves.back()[i] = ref_f32_to_f16(ref_bf16_to_f32(v[i]));
        held[i] = ref_bf16_to_f32(ref_f32_to_bf16(ref_f16_to_f32(halves.back()[i])));
      }
      t.data = halves.back().data();
      t.nbytes = n * 2;
    } else {
      halves.push_back(v);
      for (size_t i = 0; i < n; i++) held[i] = ref_bf16_to_f32(v[i]);
      t.data = halves.back().data();
      t.nbytes = n * 2;
    }
    tensors.push_back(t);
    *out = &tensors.back();
    floats.push_back(std::move(held));
    return floats.back().data();
  }

  memory_model(rng &r, const twin_model_config &c) : cfg(c) {
    const int dim = cfg.dim, hidden = cfg.hidden_dim, qd = cfg.n_heads * cfg.head_dim;
    const int kvd = cfg.n_kv_heads * cfg.head_dim;
    const float s_in = 1.0f / sqrtf((float)dim);
    layers.resize(cfg.n_layers);
    ref_layers.resize(cfg.n_layers);
    ref.cfg = cfg;
    ref.embed = make(r, &bound.embed, "model.embed_tokens.weight", cfg.vocab_size, dim, TWIN_DT_F32, 1.0f);
    ref.final_norm = make(r, &bound.final_norm, "model.norm.weight", dim, 0, TWIN_DT_F16, 0.1f, 1.0f);
    if (cfg.tie_embeddings) {
      bound.lm_head = bound.embed;
      ref.lm_head = ref.embed;
    } else {
      ref.lm_head = make(r, &bound.lm_head, "lm_head.weight", cfg.vocab_size, dim, TWIN_DT_BF16, s_in);
    }
    for (int l = 0; l < cfg.n_layers; l++) {
      twin_llama_layer_tensors &T = layers[l];
      ref_layer &R = ref_layers[l];
      char nm[128];
#define MAKE(field, suffix, rows, cols, dtype, scale, mean)                     \
  snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                    \
  R.field = make(r, &T.field, nm, rows, cols, dtype, scale, mean)
      MAKE(attn_norm, "input_layernorm.weight", dim, 0, TWIN_DT_BF16, 0.1f, 1.0f);
      MAKE(wq, "self_attn.q_proj.weight", qd, dim, l == 0 ? TWIN_DT_F16 : TWIN_DT_BF16, s_in, 0.0f);
      MAKE(wk, "self_attn.k_proj.weight", kvd, dim, TWIN_DT_BF16, s_in, 0.0f);
      MAKE(wv, "self_attn.v_proj.weight", kvd, dim, TWIN_DT_BF16, s_in, 0.0f);
      if (cfg.attn_bias) {
        MAKE(bq, "self_attn.q_proj.bias", qd, 0, TWIN_DT_BF16, 0.3f, 0.0f);
        MAKE(bk, "self_attn.k_proj.bias", kvd, 0, TWIN_DT_BF16, 0.3f, 0.0f);
        MAKE(bv, "self_attn.v_proj.bias", kvd, 0, TWIN_DT_BF16, 0.3f, 0.0f);
      }
      MAKE(wo, "self_attn.o_proj.weight", dim, qd, TWIN_DT_BF16, 1.0f / sqrtf((float)qd), 0.0f);
      MAKE(ffn_norm, "post_attention_layernorm.weight", dim, 0, TWIN_DT_BF16, 0.1f, 1.0f);
      MAKE(w_gate, "mlp.gate_proj.weight", hidden, dim, TWIN_DT_BF16, s_in, 0.0f);
      MAKE(w_up, "mlp.up_proj.weight", hidden, dim, TWIN_DT_BF16, s_in, 0.0f);
      MAKE(w_down, "mlp.down_proj.weight", dim, hidden, l == 1 ? TWIN_DT_F32 : TWIN_DT_BF16,
           1.0f / sqrtf((float)hidden), 0.0f);
#undef MAKE
    }
    bound.n_layers = cfg.n_layers;
    bound.layers = layers.data();
    ref.layers = ref_layers.data();
  }
};

static twin_model_config base_config(twin_arch arch, const char *name) {
  twin_model_config c{};
  c.arch = arch;
  snprintf(c.arch_name, sizeof c.arch_name, "%s", name);
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_seq_len = 1024;
  c.bos_id = -1;
  c.dtype = TWIN_DT_BF16;
  return c;
}

/* ---- driving the backend like the engine -------------------------------------------------------------- */

struct sequence {
  std::vector<int32_t> tokens; /* the whole sequence: prompt, then the "generated" tokens */
  int prompt = 0, start_step = 0, done = 0;
  std::vector<int32_t> blocks;
  std::vector<float> ref_logits; /* [tokens][vocab] */
};

struct engine_sim {
  twin_backend *b = nullptr;
  const memory_model *m = nullptr;
  std::vector<sequence> seqs;
  std::vector<int32_t> free_blocks;
  int chunk = 100;
  std::vector<float> got, want; /* rows compared so far */

  int take_block() {
    const int id = free_blocks.back();
    free_blocks.pop_back();
    return id;
  }

  /* Builds the step's batch: each live sequence brings its next prompt chunk or one decode
   * token. Returns false when every sequence is done. */
  bool build(int step, twin_batch &bt, std::vector<int32_t> &tokens, std::vector<int32_t> &pos,
             std::vector<int32_t> &start, std::vector<int32_t> &len, std::vector<int32_t> &tables,
             std::vector<int> &members, int all_logits) {
    tokens.clear(); pos.clear(); start.assign(1, 0); len.clear(); members.clear();
    int max_blocks = 1;
    for (size_t i = 0; i < seqs.size(); i++) {
      sequence &s = seqs[i];
      if (step < s.start_step || s.done >= (int)s.tokens.size()) continue;
      const int n_new = s.done < s.prompt ? std::min(chunk, s.prompt - s.done) : 1;
      const int ctx = s.done + n_new;
      while ((int)s.blocks.size() * 16 < ctx) s.blocks.push_back(take_block());
      for (int k = 0; k < n_new; k++) {
        tokens.push_back(s.tokens[s.done + k]);
        pos.push_back(s.done + k);
      }
      start.push_back((int32_t)tokens.size());
      len.push_back(ctx);
      members.push_back((int)i);
      max_blocks = std::max(max_blocks, (int)s.blocks.size() + 2); /* wider than needed */
    }
    if (members.empty()) return false;
    tables.assign(members.size() * max_blocks, -7); /* entries past a sequence's blocks: junk */
    for (size_t j = 0; j < members.size(); j++)
      std::copy(seqs[members[j]].blocks.begin(), seqs[members[j]].blocks.end(), tables.begin() + j * max_blocks);
    bt = twin_batch{};
    bt.n_tokens = (int)tokens.size();
    bt.n_seqs = (int)members.size();
    bt.tokens = tokens.data();
    bt.positions = pos.data();
    bt.seq_start = start.data();
    bt.seq_len = len.data();
    bt.block_tables = tables.data();
    bt.max_blocks = max_blocks;
    bt.all_logits = all_logits;
    return true;
  }

  /* Appends the compared rows of this step (logits from the backend) and advances. */
  void collect(const twin_batch &bt, const std::vector<int> &members, const std::vector<float> &logits) {
    const int vocab = m->cfg.vocab_size;
    int row = 0;
    for (size_t j = 0; j < members.size(); j++) {
      sequence &s = seqs[members[j]];
      const int n_new = bt.seq_start[j + 1] - bt.seq_start[j];
      for (int k = 0; k < n_new; k++) {
        if (!bt.all_logits && k != n_new - 1) continue;
        const float *g = logits.data() + (size_t)row++ * vocab;
        const float *w = s.ref_logits.data() + (size_t)(s.done + k) * vocab;
        got.insert(got.end(), g, g + vocab);
        want.insert(want.end(), w, w + vocab);
      }
      s.done += n_new;
    }
  }
};

static void run_model(harness &h, rng &r, const char *model_label, const twin_model_config &cfg,
                      bool graphs) {
  const std::string label_text = std::string(model_label) + (graphs ? ", graphs" : ", no graphs");
  const char *label = label_text.c_str();
  setenv("TWIN_CUDA_GRAPHS", graphs ? "1" : "0", 1);
  memory_model m(r, cfg);
  twin_backend_opts opts{};
  opts.max_tokens_per_step = 256;
  opts.max_seqs = 8;
  const size_t per_block = (size_t)cfg.n_layers * 2 * 16 * cfg.n_kv_heads * cfg.head_dim * 2;
  opts.kv_bytes = 96 * per_block;
  twin_backend *b = nullptr;
  twin_err err{};
  int rc = twin_backend_cuda_create_from(&cfg, &m.bound, &opts, &b, &err);
  std::string what = std::string(label) + ": create";
  h.check(what.c_str(), rc == 0 && b && b->num_blocks == 96, err.msg);
  if (rc) return;

  engine_sim e;
  e.b = b;
  e.m = &m;
  for (int i = 0; i < 96; i++) e.free_blocks.push_back(i);
  for (int i = 95; i > 0; i--) std::swap(e.free_blocks[i], e.free_blocks[r.below(i + 1)]);
  /* the first decodes past 512 keys: its graph steps take several attention grids (split classes) */
  const int prompts[4] = {500, 5, 1, 70}, gen[4] = {40, 40, 40, 20}, starts[4] = {0, 0, 0, 5};
  for (int i = 0; i < 4; i++) {
    sequence s;
    s.prompt = prompts[i];
    s.start_step = starts[i];
    for (int k = 0; k < prompts[i] + gen[i]; k++) s.tokens.push_back(r.below(cfg.vocab_size));
    s.ref_logits.resize(s.tokens.size() * (size_t)cfg.vocab_size);
    ref_model_logits(&m.ref, s.tokens.data(), (int)s.tokens.size(), 0, s.ref_logits.data());
    e.seqs.push_back(std::move(s));
  }

  twin_batch bt;
  std::vector<int32_t> tokens, pos, start, len, tables;
  std::vector<int> members;
  int steps = 0, sampled_ok = 1, topk_ok = 1, forward_ok = 1, op_ok = 1;
  for (int step = 0; e.build(step, bt, tokens, pos, start, len, tables, members, step % 3 == 0); step++) {
    const int n_out = bt.all_logits ? bt.n_tokens : bt.n_seqs;
    std::vector<float> logits((size_t)n_out * cfg.vocab_size, NAN);
    rc = twin_backend_forward(b, &bt, logits.data(), &err);
    if (rc) {
      forward_ok = 0;
      printf("  %s step %d: %s\n", label, step, err.msg);
      break;
    }
    if (step % 5 == 4 && !bt.all_logits) {
      /* the same step again, sampled on the device: rewrites the same K/V */
      const int S = bt.n_seqs;
      std::vector<float> t(S, 0.0f), p(S, 1.0f), mp(S, 0.0f);
      std::vector<int32_t> k(S, 0), ids(S, -1);
      std::vector<uint64_t> seed(S, 7), offset(S, (uint64_t)step);
      twin_cuda_sampling sp = {t.data(), k.data(), p.data(), mp.data(), seed.data(), offset.data()};
      rc = twin_backend_cuda_forward_sample(b, &bt, &sp, ids.data(), &err);
      for (int j = 0; j < S && !rc; j++)
        sampled_ok &= ids[j] == ref_argmax(logits.data() + (size_t)j * cfg.vocab_size, cfg.vocab_size);
      /* the engine's entry (ops->forward_sample, per-sequence structs), greedy */
      std::vector<twin_backend_sampling> per_seq(S);
      for (int j = 0; j < S; j++) per_seq[j] = twin_backend_sampling{0.0f, 0, 1.0f, 0.0f, 7, (uint64_t)step};
      std::vector<int32_t> op_ids(S, -1);
      if (!rc) rc = twin_backend_forward_sample(b, &bt, per_seq.data(), op_ids.data(), &err);
      for (int j = 0; j < S && !rc; j++) op_ok &= op_ids[j] == ids[j];
      std::fill(t.begin(), t.end(), 1.0f);
      std::fill(k.begin(), k.end(), 3);
      if (!rc) rc = twin_backend_cuda_forward_sample(b, &bt, &sp, ids.data(), &err);
      for (int j = 0; j < S && !rc; j++) {
        const float *row = logits.data() + (size_t)j * cfg.vocab_size;
        int above = 0;
        for (int v = 0; v < cfg.vocab_size; v++) above += row[v] > row[ids[j]];
        topk_ok &= ids[j] >= 0 && above < 3;
      }
      if (rc) {
        sampled_ok = 0;
        printf("  %s step %d forward_sample: %s\n", label, step, err.msg);
      }
    }
    e.collect(bt, members, logits);
    steps++;
  }
  what = std::string(label) + ": " + std::to_string(steps) + " steps, logits vs reference";
  h.report(what.c_str(), forward_ok ? rel_l2(e.got, e.want) : INFINITY, 2e-2);
  what = std::string(label) + ": device greedy == argmax of logits";
  h.check(what.c_str(), sampled_ok, "forward_sample with temperature 0 disagreed with forward");
  what = std::string(label) + ": ops->forward_sample greedy == the same";
  h.check(what.c_str(), op_ok && sampled_ok, "ops->forward_sample at temperature 0 disagreed");
  what = std::string(label) + ": device top-k 3 within the top 3";
  h.check(what.c_str(), topk_ok, "forward_sample with top_k 3 returned a token outside the top 3");

  /* bad batches: refused, naming the problem */
  int32_t tok[2] = {1, 2}, p2[2] = {0, 1}, st[2] = {0, 2}, ln[1] = {2}, tb[1] = {0};
  twin_batch bad{};
  bad.n_tokens = 2; bad.n_seqs = 1; bad.tokens = tok; bad.positions = p2; bad.seq_start = st;
  bad.seq_len = ln; bad.block_tables = tb; bad.max_blocks = 1;
  std::vector<float> out(2 * (size_t)cfg.vocab_size);
  tok[1] = cfg.vocab_size;
  rc = twin_backend_forward(b, &bad, out.data(), &err);
  what = std::string(label) + ": token outside the vocabulary refused";
  h.check(what.c_str(), rc == TWIN_EINVAL && strstr(err.msg, "vocabulary"), err.msg);
  tok[1] = 2;
  p2[1] = 5;
  rc = twin_backend_forward(b, &bad, out.data(), &err);
  what = std::string(label) + ": wrong position refused";
  h.check(what.c_str(), rc == TWIN_EINVAL && strstr(err.msg, "position"), err.msg);
  p2[1] = 1;
  tb[0] = 96;
  rc = twin_backend_forward(b, &bad, out.data(), &err);
  what = std::string(label) + ": block outside the pool refused";
  h.check(what.c_str(), rc == TWIN_EINVAL && strstr(err.msg, "block"), err.msg);
  tb[0] = 0; /* a good batch, a bad sampling parameter */
  twin_backend_sampling nan_t{NAN, 0, 1.0f, 0.0f, 1, 0};
  int32_t nan_id = -1;
  rc = twin_backend_forward_sample(b, &bad, &nan_t, &nan_id, &err);
  what = std::string(label) + ": forward_sample refuses a NaN temperature";
  h.check(what.c_str(), rc == TWIN_EINVAL && strstr(err.msg, "temperature") && nan_id == -1, err.msg);
  twin_backend_destroy(b);
}

int main() {
  print_device();
  harness h;
  rng r(19);

  twin_model_config llama = base_config(TWIN_ARCH_LLAMA, "llama");
  llama.vocab_size = 512; llama.dim = 256; llama.hidden_dim = 512; llama.n_layers = 2;
  llama.n_heads = 4; llama.n_kv_heads = 2; llama.head_dim = 64; llama.tie_embeddings = 1;
  llama.rope_theta = 500000.0f; llama.rope_llama3 = 1; llama.rope_factor = 8.0f;
  llama.rope_low_freq_factor = 1.0f; llama.rope_high_freq_factor = 4.0f;
  llama.rope_original_max_pos = 64;
  run_model(h, r, "llama hd64 tied llama3-rope", llama, true);
  run_model(h, r, "llama hd64 tied llama3-rope", llama, false);

  twin_model_config qwen = base_config(TWIN_ARCH_QWEN2, "qwen2");
  qwen.vocab_size = 700; qwen.dim = 512; qwen.hidden_dim = 768; qwen.n_layers = 2;
  qwen.n_heads = 4; qwen.n_kv_heads = 1; qwen.head_dim = 128; qwen.attn_bias = 1;
  qwen.rope_theta = 1000000.0f; qwen.norm_eps = 1e-6f;
  run_model(h, r, "qwen2 hd128 bias", qwen, true);
  run_model(h, r, "qwen2 hd128 bias", qwen, false);

  twin_model_config mistral = base_config(TWIN_ARCH_MISTRAL, "mistral");
  mistral.vocab_size = 300; mistral.dim = 512; mistral.hidden_dim = 1024; mistral.n_layers = 1;
  mistral.n_heads = 8; mistral.n_kv_heads = 2; mistral.head_dim = 64; mistral.sliding_window = 48;
  run_model(h, r, "mistral window 48", mistral, true);
  run_model(h, r, "mistral window 48", mistral, false);

  /* an architecture the backend does not run is refused by name */
  twin_model_config gemma = llama;
  gemma.arch = TWIN_ARCH_GEMMA3;
  snprintf(gemma.arch_name, sizeof gemma.arch_name, "gemma3");
  twin_backend *b = nullptr;
  twin_err err{};
  memory_model m(r, llama);
  const int rc = twin_backend_cuda_create_from(&gemma, &m.bound, nullptr, &b, &err);
  h.check("gemma3 refused", rc == TWIN_EUNSUPPORTED && !b && strstr(err.msg, "gemma3"), err.msg);
  return h.exit_code();
}
