/* tests/gpu/test_attention.cu — paged attention, decode (attention_decode.cu, split-K + reduce,
 * a 4-warp and a wide thread block) and prefill (attention_prefill.cu v2: mma.sync flash tiles,
 * K/V shared by the heads of a KV head), against ref_attention (double).
 * Each scenario is one batch mixing decode tokens (n_new = 1) and prefill chunks with cached
 * prefixes, block tables a random permutation of the pool, table entries past a sequence's
 * blocks set far out of range (a read there faults), and every cache slot past a sequence's
 * context (and every spare block) filled with NaN, which must never reach an output. Shapes:
 * Llama-3-8B (hd 128, 32/8 heads), Llama-3.2-1B (hd 64), GQA groups 1..8 (every heads-per-block
 * choice of the prefill kernel), sliding windows (1 key, tile-sized, wider than the context),
 * splits forced small and large. Decode's wide form (16 warps at hd 64, 8 at hd 128): batch 1
 * at contexts 1 .. 300 with the backend's partition (16 * warps) and one split, the same bits
 * as the 4-warp form where both have one KV block per warp, batches of 8 with splits and
 * windows; the launcher's choice of form (wide iff (sequence, KV group) pairs <= SMs / 2) and
 * batches of 64 on the 4-warp form. Outputs are poisoned first. Tolerance 1e-2 relative L2
 * (bf16 output, bf16 softmax weights in the prefill tiles).
 * Prefill-only checks: chunks whose cached prefix is not a multiple of the 64-key tile, table
 * entries wholly outside every window set far out of range (must not be read), rows of other
 * tokens left untouched, the same bits from two runs and from an output that is not 16-byte
 * aligned.
 * Timed: decode at batch 64 x 1024 context and batch 1 x 8192 (rotating over 4 copies so the KV
 * does not sit in L2), batch 1 x 256 (hd 64 and 128) in the wide form's one split against the
 * 4-warp form's 4 splits (rotating over 128-256 copies), prefill of 2048 tokens (8B heads; also
 * hd 64 and one KV head per query head), of 8192 tokens, of a 512-token chunk after 3584
 * cached, and of 16 prompts of 128 (checked on sampled rows). Decode bytes = the K and V read;
 * prefill flops = 4 hd per (query, visible key) per head. Usage: test_attention
 * [--prefill-timing]  (only the prefill timings). */
#include <string.h>

#include "llm-svc/backend/cuda/kernels.h"
#include "tests/gpu/harness.h"

#define FAR_BLOCK 0x3fffffff /* table entries nobody may read */

struct attn_batch {
  int hd, nh, nkv, window;
  int S = 0, T = 0, max_blocks = 1, num_blocks = 0, q_stride = 0;
  std::vector<int32_t> seq_start, seq_len, tables, decode, tile_seq, tile_q0;
  std::vector<uint16_t> q, kc, vc;
  int32_t *d_seq_start = nullptr, *d_seq_len = nullptr, *d_tables = nullptr, *d_decode = nullptr;
  int32_t *d_tile_seq = nullptr, *d_tile_q0 = nullptr;
  twin_bf16 *d_q = nullptr, *d_kc = nullptr, *d_vc = nullptr, *d_out = nullptr;
  float *d_part_acc = nullptr, *d_part_ml = nullptr;
  int32_t *d_partition = nullptr;
  unsigned *d_counters = nullptr; /* [decode][nh] split counters, zero */
  bool split_counters = true;     /* the last split combines; false: the reduce kernel */
  int warps = 0;                  /* decode thread block: 0 = the launcher's choice, 4, or wide */
  int partition = 0, max_splits = 1;

  attn_batch(rng &r, int hd_, int nh_, int nkv_, int window_, const std::vector<int> &n_new,
             const std::vector<int> &ctx, int partition_)
      : hd(hd_), nh(nh_), nkv(nkv_), window(window_) {
    S = (int)n_new.size();
    seq_start.push_back(0);
    for (int s = 0; s < S; s++) seq_start.push_back(seq_start.back() + n_new[s]);
    T = seq_start.back();
    seq_len = ctx;
    for (int s = 0; s < S; s++) max_blocks = std::max(max_blocks, (ctx[s] + 15) / 16);
    for (int s = 0; s < S; s++) num_blocks += (ctx[s] + 15) / 16;
    num_blocks += 3; /* spare blocks nobody owns */
    std::vector<int32_t> perm(num_blocks);
    for (int i = 0; i < num_blocks; i++) perm[i] = i;
    for (int i = num_blocks - 1; i > 0; i--) std::swap(perm[i], perm[r.below(i + 1)]);
    tables.assign((size_t)S * max_blocks, FAR_BLOCK);
    int next = 0;
    for (int s = 0; s < S; s++)
      for (int b = 0; b < (ctx[s] + 15) / 16; b++) tables[(size_t)s * max_blocks + b] = perm[next++];

    q_stride = (nh + 2 * nkv) * hd;
    q = random_bf16(r, (size_t)T * q_stride, 1.0f);
    const size_t block_elems = (size_t)nkv * 16 * hd;
    kc = random_bf16(r, (size_t)num_blocks * block_elems, 1.5f);
    vc = random_bf16(r, (size_t)num_blocks * block_elems, 1.0f);
    /* NaN in every slot no context covers */
    std::vector<char> owned((size_t)num_blocks * 16, 0);
    for (int s = 0; s < S; s++)
      for (int p = 0; p < ctx[s]; p++) owned[(size_t)tables[(size_t)s * max_blocks + p / 16] * 16 + p % 16] = 1;
    for (int b = 0; b < num_blocks; b++)
      for (int slot = 0; slot < 16; slot++)
        if (!owned[(size_t)b * 16 + slot])
          for (int g = 0; g < nkv; g++)
            for (int d = 0; d < hd; d++) {
              const size_t i = ((size_t)b * nkv + g) * 16 * hd + (size_t)slot * hd + d;
              kc[i] = vc[i] = 0xFFFF;
            }

    int span_max = 1;
    for (int s = 0; s < S; s++) {
      if (n_new[s] == 1) {
        decode.push_back(s);
        const int first = window > 0 && ctx[s] > window ? ctx[s] - window : 0;
        span_max = std::max(span_max, ctx[s] - first / 16 * 16);
      } else {
        for (int q0 = 0; q0 < n_new[s]; q0 += TWIN_CUDA_PREFILL_TILE) {
          tile_seq.push_back(s);
          tile_q0.push_back(q0);
        }
      }
    }
    partition = partition_ > 0 ? partition_ : (span_max + 15) / 16 * 16;
    max_splits = (span_max + partition - 1) / partition;
    d_partition = dev_upload(std::vector<int32_t>{partition});

    d_seq_start = dev_upload(seq_start);
    d_seq_len = dev_upload(seq_len);
    d_tables = dev_upload(tables);
    d_decode = dev_upload(decode.empty() ? std::vector<int32_t>{0} : decode);
    d_tile_seq = dev_upload(tile_seq.empty() ? std::vector<int32_t>{0} : tile_seq);
    d_tile_q0 = dev_upload(tile_q0.empty() ? std::vector<int32_t>{0} : tile_q0);
    d_q = dev_upload(q);
    d_kc = dev_upload(kc);
    d_vc = dev_upload(vc);
    d_out = dev_poisoned<twin_bf16>((size_t)T * nh * hd);
    const size_t parts = std::max<size_t>(1, decode.size()) * nh * max_splits;
    d_part_acc = dev_poisoned<float>(parts * hd);
    d_part_ml = dev_poisoned<float>(parts * 2);
    CK(cudaMalloc(&d_counters, std::max<size_t>(1, decode.size()) * nh * sizeof(unsigned)));
    CK(cudaMemset(d_counters, 0, std::max<size_t>(1, decode.size()) * nh * sizeof(unsigned)));
  }
  ~attn_batch() {
    cudaFree(d_seq_start); cudaFree(d_seq_len); cudaFree(d_tables); cudaFree(d_decode);
    cudaFree(d_tile_seq); cudaFree(d_tile_q0); cudaFree(d_q); cudaFree(d_kc); cudaFree(d_vc);
    cudaFree(d_out); cudaFree(d_part_acc); cudaFree(d_part_ml); cudaFree(d_partition);
    cudaFree(d_counters);
  }
  attn_batch(const attn_batch &) = delete;
  attn_batch &operator=(const attn_batch &) = delete;

  float scale() const { return 1.0f / sqrtf((float)hd); }
  /* decode of list entries [first, first + n) */
  cudaError_t run_decode(int first, int n) const {
    if (warps == 0) /* the plain launcher */
      return twin_cuda_attention_decode(d_out, d_q, q_stride, d_kc, d_vc, d_decode + first,
                                        d_seq_start, d_seq_len, d_tables, max_blocks, n, nh, nkv,
                                        hd, scale(), window, d_partition, max_splits, d_part_acc,
                                        d_part_ml, split_counters ? d_counters : nullptr, 0);
    return twin_cuda_attention_decode_ex(d_out, d_q, q_stride, d_kc, d_vc, d_decode + first,
                                         d_seq_start, d_seq_len, d_tables, max_blocks, n, nh, nkv,
                                         hd, scale(), window, d_partition, max_splits, d_part_acc,
                                         d_part_ml, split_counters ? d_counters : nullptr, warps,
                                         0);
  }
  cudaError_t run_prefill(twin_bf16 *out = nullptr) const {
    return twin_cuda_attention_prefill(out ? out : d_out, d_q, q_stride, d_kc, d_vc, d_tile_seq,
                                       d_tile_q0, (int)tile_seq.size(), d_seq_start, d_seq_len,
                                       d_tables, max_blocks, nh, nkv, hd, scale(), window, 0);
  }
  /* With a window: point the table entries of blocks that no new token of a sequence can see
   * (all keys before its first new token's window) far out of range, as a cache that frees
   * them would. Returns how many entries were changed. */
  int hide_outside_window() {
    int hidden = 0;
    for (int s = 0; s < S; s++) {
      /* position of the sequence's first new token */
      const int first = seq_len[s] - (seq_start[s + 1] - seq_start[s]);
      const int lo = first + 1 - window;
      for (int b = 0; window > 0 && b * 16 + 15 < lo; b++, hidden++)
        tables[(size_t)s * max_blocks + b] = FAR_BLOCK;
    }
    CK(cudaMemcpy(d_tables, tables.data(), tables.size() * sizeof(int32_t),
                  cudaMemcpyHostToDevice));
    return hidden;
  }
  /* the reference for one new token (a one-token view of its sequence) */
  void ref_row(int s, int i, float *out_row) const {
    const int pos = seq_len[s] - (seq_start[s + 1] - seq_start[s]) + i;
    const int32_t start[2] = {0, 1}, len[1] = {pos + 1}, list[1] = {0};
    ref_attention(out_row, q.data() + (size_t)(seq_start[s] + i) * q_stride, q_stride, kc.data(),
                  vc.data(), list, 1, start, len, tables.data() + (size_t)s * max_blocks,
                  max_blocks, nh, nkv, hd, scale(), window);
  }
  /* flops of the listed sequences' new tokens: 4*hd per visible key per head */
  double flops(const std::vector<int32_t> &seqs) const {
    double f = 0;
    for (int s : seqs) {
      const int n_new = seq_start[s + 1] - seq_start[s];
      for (int i = 0; i < n_new; i++) {
        const int pos = seq_len[s] - n_new + i;
        const int lo = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
        f += 4.0 * hd * nh * (pos + 1 - lo);
      }
    }
    return f;
  }
};

/* Relative L2 error of the rows of the listed sequences (all rows, or `sample` random rows). */
static double check_rows(rng &r, const attn_batch &b, const std::vector<int32_t> &seqs,
                         const std::vector<float> &out, int sample) {
  const int width = b.nh * b.hd;
  std::vector<float> got, want, row(width);
  for (int s : seqs) {
    const int n_new = b.seq_start[s + 1] - b.seq_start[s];
    const int picks = sample > 0 ? std::min(sample, n_new) : n_new;
    for (int k = 0; k < picks; k++) {
      const int i = sample > 0 ? (k == 0 ? n_new - 1 : r.below(n_new)) : k;
      b.ref_row(s, i, row.data());
      want.insert(want.end(), row.begin(), row.end());
      const float *o = out.data() + (size_t)(b.seq_start[s] + i) * width;
      got.insert(got.end(), o, o + width);
    }
  }
  return rel_l2(got, want);
}

struct scenario {
  const char *name;
  int hd, nh, nkv, window, partition;
  std::vector<int> n_new, ctx;
  int warps = 0; /* decode thread block: 0 = the launcher's choice */
};

static void run_scenario(harness &h, rng &r, const scenario &sc) {
  attn_batch b(r, sc.hd, sc.nh, sc.nkv, sc.window, sc.n_new, sc.ctx, sc.partition);
  b.warps = sc.warps;
  if (!b.decode.empty()) CK(b.run_decode(0, (int)b.decode.size()));
  if (!b.tile_seq.empty()) CK(b.run_prefill());
  const std::vector<float> out = bf16_to_f32(dev_download(b.d_out, (size_t)b.T * b.nh * b.hd));
  std::vector<int32_t> prefill;
  for (int s = 0; s < b.S; s++)
    if (b.seq_start[s + 1] - b.seq_start[s] > 1) prefill.push_back(s);
  char name[192];
  if (!b.decode.empty()) {
    const int warps = sc.warps ? sc.warps
                               : twin_cuda_attention_decode_warps((int)b.decode.size(), sc.nh,
                                                                  sc.nkv, sc.hd);
    snprintf(name, sizeof name, "attn_decode %s (splits<=%d, %d warps)", sc.name, b.max_splits,
             warps);
    h.report(name, check_rows(r, b, b.decode, out, 0), 1e-2);
    if (b.max_splits > 1) { /* the reduce kernel instead of the last split: the same bits */
      b.split_counters = false;
      CK(b.run_decode(0, (int)b.decode.size()));
      b.split_counters = true;
      const std::vector<float> again = bf16_to_f32(dev_download(b.d_out, (size_t)b.T * b.nh * b.hd));
      const std::vector<unsigned> counters = dev_download(b.d_counters, b.decode.size() * b.nh);
      bool zero = true;
      for (unsigned c : counters) zero &= c == 0;
      snprintf(name, sizeof name, "attn_decode %s: last split combines = reduce kernel, bit for bit; counters back to 0", sc.name);
      h.check(name, zero && memcmp(again.data(), out.data(), out.size() * sizeof(float)) == 0,
              "the in-kernel combine differs from the reduce kernel, or a counter was left set");
    }
  }
  if (!prefill.empty()) {
    snprintf(name, sizeof name, "attn_prefill %s", sc.name);
    h.report(name, check_rows(r, b, prefill, out, 0), 1e-2);
  }
}

/* ---- the decode kernel's forms: 4 warps, and the wide one (few (sequence, KV-head group)
 * pairs: a split of 16 * warps keys gives every warp one KV block to read before the wait) ---- */

struct decode_shape {
  const char *name;
  int hd, nh, nkv;
  int wide; /* the wide form's warps (kernels.h) */
};
/* G = 4, so one thread block serves a whole group (GH = 4): pairs = n_decode * n_kv_heads */
static const decode_shape wide_shapes[] = {{"1B hd64 32/8", 64, 32, 8, 16},
                                           {"8B hd128 32/8", 128, 32, 8, 8}};

/* The launcher's choice as kernels.h states it: the wide form when n_decode * n_kv * G/GH is at
 * most half the SMs, else 4 warps; 0 for shapes the launcher rejects; other warps refused. */
static void check_form_choice(harness &h, rng &r) {
  int dev = 0, sms = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  bool ok = true;
  char why[256] = "";
  for (const decode_shape &sh : wide_shapes) {
    const int last_wide = sms / 2 / sh.nkv; /* the largest n_decode of the wide form */
    const int counts[] = {1, 2, last_wide, last_wide + 1, 64, 256};
    for (int n : counts) {
      const int want = n * sh.nkv <= sms / 2 ? sh.wide : 4;
      const int got = twin_cuda_attention_decode_warps(n, sh.nh, sh.nkv, sh.hd);
      if (got != want) {
        ok = false;
        snprintf(why, sizeof why, "%s n_decode %d: %d warps, want %d (%d SMs)", sh.name, n, got,
                 want, sms);
      }
    }
  }
  /* G = 8 at hd 64: 8 query heads a block, the wide form has 8 warps; 64/8 (G8) at n = 1 */
  if (twin_cuda_attention_decode_warps(1, 64, 8, 64) != (8 <= sms / 2 ? 8 : 4)) {
    ok = false;
    snprintf(why, sizeof why, "hd64 64/8 (G8) n_decode 1: %d warps, want 8",
             twin_cuda_attention_decode_warps(1, 64, 8, 64));
  }
  if (twin_cuda_attention_decode_warps(1, 32, 8, 96) != 0 ||
      twin_cuda_attention_decode_warps(1, 32, 7, 64) != 0 ||
      twin_cuda_attention_decode_warps(-1, 32, 8, 64) != 0) {
    ok = false;
    snprintf(why, sizeof why, "a shape the launcher rejects (hd 96, 32/7 heads, n -1) got warps");
  }
  h.check("attn_decode form choice: wide iff (seq, KV group) pairs <= SMs/2", ok, why);

  /* warps the launcher has no form for */
  attn_batch b(r, 128, 32, 8, 0, {1}, {40}, 0);
  const int bad[] = {1, 2, 3, 5, 12, 16, 32};
  bool refused = true;
  for (int w : bad) {
    b.warps = w;
    refused &= b.run_decode(0, 1) == cudaErrorInvalidValue;
  }
  CK(cudaGetLastError());
  h.check("attn_decode_ex refuses warps other than 0, 4 and the wide count (hd128: 8)", refused,
          "a warp count without a kernel form was accepted");
}

/* Batch 1 at the contexts around the block and wide-split edges, with the partition the
 * backend uses for the wide form (16 * warps) and with one split over the whole context; then
 * the wide form against the 4-warp form at 64 keys a split (one KV block per warp in both,
 * the wide form's other warps empty): the same bits. Then batches past the wide form's reach
 * (4 warps) and mixed batches within it (several splits, a window). */
static void run_wide_scenarios(harness &h, rng &r) {
  const int contexts[] = {1, 15, 16, 17, 100, 256, 300};
  char name[160];
  for (const decode_shape &sh : wide_shapes) {
    for (int ctx : contexts) {
      snprintf(name, sizeof name, "wide %s b=1 ctx=%d P%d", sh.name, ctx, 16 * sh.wide);
      run_scenario(h, r, {name, sh.hd, sh.nh, sh.nkv, 0, 16 * sh.wide, {1}, {ctx}, sh.wide});
      snprintf(name, sizeof name, "wide %s b=1 ctx=%d one split", sh.name, ctx);
      run_scenario(h, r, {name, sh.hd, sh.nh, sh.nkv, 0, 0, {1}, {ctx}, sh.wide});

      attn_batch b(r, sh.hd, sh.nh, sh.nkv, 0, {1}, {ctx}, 64);
      const size_t elems = (size_t)b.T * b.nh * b.hd;
      b.warps = 4;
      CK(b.run_decode(0, 1));
      const std::vector<uint16_t> four = dev_download(b.d_out, elems);
      CK(cudaMemset(b.d_out, 0xFF, elems * sizeof(twin_bf16)));
      b.warps = sh.wide;
      CK(b.run_decode(0, 1));
      const std::vector<uint16_t> wide = dev_download(b.d_out, elems);
      snprintf(name, sizeof name, "wide %s b=1 ctx=%d P64: %d warps = 4 warps, bit for bit",
               sh.name, ctx, sh.wide);
      h.check(name, memcmp(four.data(), wide.data(), elems * sizeof(uint16_t)) == 0,
              "the warps past a split's KV blocks changed the result");
    }
  }

  /* n_decode beyond the wide form: the launcher picks 4 warps (named in the result line) */
  std::vector<int> ctx64(64);
  for (int &c : ctx64) c = 1 + r.below(400);
  for (const decode_shape &sh : wide_shapes) {
    snprintf(name, sizeof name, "auto %s b=64 ctx 1..400 P64", sh.name);
    run_scenario(h, r, {name, sh.hd, sh.nh, sh.nkv, 0, 64, std::vector<int>(64, 1), ctx64});
  }

  /* the wide form with several splits per sequence, combined in the kernel and by the reduce
   * kernel, and with a sliding window */
  const std::vector<int> ctx8 = {1, 17, 255, 256, 257, 700, 1000, 64};
  const scenario mixed[] = {
      {"wide 1B hd64 32/8 b=8 P256", 64, 32, 8, 0, 256, std::vector<int>(8, 1), ctx8, 16},
      {"wide 8B hd128 32/8 b=8 P128", 128, 32, 8, 0, 128, std::vector<int>(8, 1), ctx8, 8},
      {"wide 8B hd128 32/8 b=8 window 100 P128", 128, 32, 8, 100, 128, std::vector<int>(8, 1),
       ctx8, 8},
      {"wide hd64 64/8 (G8) b=8 P128", 64, 64, 8, 0, 128, std::vector<int>(8, 1), ctx8, 8},
      {"wide hd64 16/4 (G4) b=8 window 33 P256", 64, 16, 4, 33, 256, std::vector<int>(8, 1),
       ctx8, 16},
  };
  for (const scenario &sc : mixed) run_scenario(h, r, sc);
}

/* Batch 1 at 256 keys: the wide form in one split (no combine; at hd 128 also in the backend's
 * 2 splits of 16 * 8 keys) against the 4-warp form in 4 splits of 64 whose last one combines
 * (the backend's choice before the wide form). Copies of the sequence, one decoded per launch,
 * rotating over more K/V than the L2 holds. */
static void time_wide(harness &h, rng &r) {
  for (const decode_shape &sh : wide_shapes) {
    const int copies = sh.hd == 64 ? 256 : 128; /* 134 MB of K+V */
    attn_batch b(r, sh.hd, sh.nh, sh.nkv, 0, std::vector<int>(copies, 1),
                 std::vector<int>(copies, 256), 64);
    const double bytes = 256.0 * sh.nkv * sh.hd * 2 * 2;
    const size_t elems = (size_t)b.T * b.nh * b.hd;
    char name[160];
    struct form {
      int warps, partition, max_splits;
    };
    /* one wide split; the backend's wide split (16 * warps keys) where that is shorter; the
     * 4-warp form's 4 splits */
    std::vector<form> forms = {{sh.wide, 256, 1}};
    if (16 * sh.wide < 256) forms.push_back({sh.wide, 16 * sh.wide, 256 / (16 * sh.wide)});
    forms.push_back({4, 64, 4});
    for (const form &f : forms) {
      b.warps = f.warps;
      b.max_splits = f.max_splits;
      CK(cudaMemcpy(b.d_partition, &f.partition, sizeof(int32_t), cudaMemcpyHostToDevice));
      CK(cudaMemset(b.d_out, 0xFF, elems * sizeof(twin_bf16)));
      CK(b.run_decode(0, copies)); /* every copy checked, and the L2 filled with the last ones */
      const double err =
          check_rows(r, b, b.decode, bf16_to_f32(dev_download(b.d_out, elems)), 0);
      const double ms = time_ms([&](int it) { b.run_decode(it % copies, 1); });
      snprintf(name, sizeof name, "attn_decode %s b=1 ctx=256 (%d split%s of %d, %d warps%s)",
               sh.name, f.max_splits, f.max_splits > 1 ? "s" : "", f.partition, f.warps,
               f.max_splits > 1 ? ", last split combines" : "");
      h.report(name, err, 1e-2, ms, bytes, b.flops({0}));
    }
  }
}

/* ---- prefill-only checks ---- */

static std::vector<int32_t> prefill_seqs(const attn_batch &b) {
  std::vector<int32_t> list;
  for (int s = 0; s < b.S; s++)
    if (b.seq_start[s + 1] - b.seq_start[s] > 1) list.push_back(s);
  return list;
}

/* One prefill launch over a batch of chunks, every row checked; with a window, the table
 * entries nobody can see point far out of range. */
static void run_prefill_scenario(harness &h, rng &r, const scenario &sc) {
  attn_batch b(r, sc.hd, sc.nh, sc.nkv, sc.window, sc.n_new, sc.ctx, 0);
  int hidden = 0;
  if (sc.window > 0) hidden = b.hide_outside_window();
  CK(b.run_prefill());
  const std::vector<float> out = bf16_to_f32(dev_download(b.d_out, (size_t)b.T * b.nh * b.hd));
  char name[160];
  snprintf(name, sizeof name, "attn_prefill %s%s", sc.name,
           hidden > 0 ? " (unseen blocks unmapped)" : "");
  h.report(name, check_rows(r, b, prefill_seqs(b), out, 0), 1e-2);
}

/* Rows that are not the listed tiles' stay poisoned; two runs give the same bits; an output
 * that is not 16-byte aligned gets the same bits too. */
static void run_prefill_contract_checks(harness &h, rng &r) {
  const std::vector<int> n_new = {1, 200, 1, 77, 1}, ctx = {40, 1000, 7, 77, 300};
  attn_batch b(r, 128, 32, 8, 0, n_new, ctx, 0);
  const size_t width = (size_t)b.nh * b.hd, elems = (size_t)b.T * width;
  CK(b.run_prefill());
  const std::vector<uint16_t> first = dev_download(b.d_out, elems);
  bool untouched = true;
  for (int s = 0; s < b.S; s++)
    if (n_new[s] == 1)
      for (size_t i = 0; i < width; i++)
        untouched &= first[(size_t)b.seq_start[s] * width + i] == 0xFFFF;
  h.check("attn_prefill leaves decode rows alone", untouched,
          "a row outside every listed tile was written");

  twin_bf16 *again = dev_poisoned<twin_bf16>(elems);
  CK(b.run_prefill(again));
  const std::vector<uint16_t> second = dev_download(again, elems);
  h.check("attn_prefill deterministic (two runs, same bits)",
          memcmp(first.data(), second.data(), elems * sizeof(uint16_t)) == 0,
          "two runs over the same inputs differ");
  CK(cudaFree(again));

  twin_bf16 *shifted = dev_poisoned<twin_bf16>(elems + 8);
  CK(b.run_prefill(shifted + 1));
  const std::vector<uint16_t> third = dev_download(shifted + 1, elems);
  h.check("attn_prefill output 2 bytes off 16-byte alignment: same bits",
          memcmp(first.data(), third.data(), elems * sizeof(uint16_t)) == 0,
          "a misaligned output gets different values");
  CK(cudaFree(shifted));
}

/* Prefill timing: the first `sample` rows' check (the last row and random ones) and the median
 * of 20 runs. */
static void time_prefill(harness &h, rng &r, const char *name, int hd, int nh, int nkv,
                         const std::vector<int> &n_new, const std::vector<int> &ctx, int sample) {
  attn_batch b(r, hd, nh, nkv, 0, n_new, ctx, 0);
  CK(b.run_prefill());
  const std::vector<int32_t> seqs = prefill_seqs(b);
  const double err = check_rows(
      r, b, seqs, bf16_to_f32(dev_download(b.d_out, (size_t)b.T * b.nh * b.hd)), sample);
  const double ms = time_ms([&](int) { b.run_prefill(); }, 3, 20);
  /* bytes: Q and O once, K and V of every context once (the floor, not the L2 traffic) */
  double bytes = 0;
  for (int s : seqs)
    bytes += (double)n_new[s] * 2 * nh * hd * 2 + (double)ctx[s] * 2 * nkv * hd * 2;
  h.report(name, err, 1e-2, ms, bytes, b.flops(seqs));
}

/* The prefill timings (also alone: `test_attention --prefill-timing`, e.g. under a profiler). */
static void time_prefill_cases(harness &h, rng &r) {
  time_prefill(h, r, "attn_prefill 8B n=2048 (12 rows checked)", 128, 32, 8, {2048}, {2048}, 12);
  time_prefill(h, r, "attn_prefill 8B 512 after 3584 (12 rows)", 128, 32, 8, {512}, {4096}, 12);
  time_prefill(h, r, "attn_prefill 1B hd64 32/8 n=2048 (12 rows)", 64, 32, 8, {2048}, {2048}, 12);
  time_prefill(h, r, "attn_prefill hd128 32/32 (G1) n=2048 (12 rows)", 128, 32, 32, {2048},
               {2048}, 12);
  time_prefill(h, r, "attn_prefill 8B 16 prompts x 128 (4 rows each)", 128, 32, 8,
               std::vector<int>(16, 128), std::vector<int>(16, 128), 4);
  time_prefill(h, r, "attn_prefill 8B n=8192 (8 rows)", 128, 32, 8, {8192}, {8192}, 8);
}

int main(int argc, char **argv) {
  print_device();
  harness h;
  rng r(17);
  if (argc > 1 && strcmp(argv[1], "--prefill-timing") == 0) {
    time_prefill_cases(h, r);
    return h.exit_code();
  }
  const std::vector<int> mix_new = {1, 1, 1, 1, 37, 1, 64, 130, 1, 1, 2};
  const std::vector<int> mix_ctx = {1, 17, 300, 5000, 37, 2000, 100, 700, 64, 65, 2};
  const scenario scenarios[] = {
      {"8B hd128 32/8 P256", 128, 32, 8, 0, 256, mix_new, mix_ctx},
      {"8B hd128 32/8 one split", 128, 32, 8, 0, 0, mix_new, mix_ctx},
      {"1B hd64 32/8 P64", 64, 32, 8, 0, 64, mix_new, mix_ctx},
      {"hd128 28/4 (G7) P512", 128, 28, 4, 0, 512, mix_new, mix_ctx},
      {"hd64 14/2 (G7) P128", 64, 14, 2, 0, 128, mix_new, mix_ctx},
      {"hd128 32/4 (G8) P1024", 128, 32, 4, 0, 1024, mix_new, mix_ctx},
      {"hd64 64/8 (G8) P256", 64, 64, 8, 0, 256, mix_new, mix_ctx},
      {"hd128 8/8 (G1) P16", 128, 8, 8, 0, 16, mix_new, mix_ctx},
      {"hd128 32/8 window 100 P64", 128, 32, 8, 100, 64, mix_new, mix_ctx},
      {"hd64 16/4 window 33 P32", 64, 16, 4, 33, 32, mix_new, mix_ctx},
  };
  for (const scenario &sc : scenarios) { /* the launcher's form (wide for the smaller batches) */
    run_scenario(h, r, sc);
    char name[128];
    snprintf(name, sizeof name, "%s, forced 4 warps", sc.name);
    scenario four = sc; /* and the 4-warp form */
    four.name = name;
    four.warps = 4;
    run_scenario(h, r, four);
  }
  check_form_choice(h, r);
  run_wide_scenarios(h, r);

  /* prefill alone: prefixes off the 64-key grid, every heads-per-block choice, windows */
  const std::vector<int> long_new = {200, 64, 2, 65, 97, 63};
  const std::vector<int> long_ctx = {600, 64, 50, 1000, 1029, 63};
  const scenario prefill_scenarios[] = {
      {"8B hd128 32/8 prefixes 400/0/48/935/932/0", 128, 32, 8, 0, 0, long_new, long_ctx},
      {"1B hd64 32/8 same", 64, 32, 8, 0, 0, long_new, long_ctx},
      {"hd128 16/8 (G2)", 128, 16, 8, 0, 0, long_new, long_ctx},
      {"hd64 16/8 (G2)", 64, 16, 8, 0, 0, long_new, long_ctx},
      {"hd128 24/4 (G6)", 128, 24, 4, 0, 0, long_new, long_ctx},
      {"hd64 12/4 (G3)", 64, 12, 4, 0, 0, long_new, long_ctx},
      {"hd128 10/2 (G5)", 128, 10, 2, 0, 0, long_new, long_ctx},
      {"hd64 8/1 (G8)", 64, 8, 1, 0, 0, long_new, long_ctx},
      {"hd128 32/8 window 1", 128, 32, 8, 1, 0, long_new, long_ctx},
      {"hd128 32/8 window 64", 128, 32, 8, 64, 0, long_new, long_ctx},
      {"hd128 32/8 window 700", 128, 32, 8, 700, 0, long_new, long_ctx},
      {"hd64 32/8 window 200", 64, 32, 8, 200, 0, long_new, long_ctx},
      {"hd128 16/8 window 5000 (wider than every context)", 128, 16, 8, 5000, 0, long_new,
       long_ctx},
  };
  for (const scenario &sc : prefill_scenarios) run_prefill_scenario(h, r, sc);
  run_prefill_contract_checks(h, r);

  /* ---- timing, Llama-3-8B heads ---- */
  {
    attn_batch b(r, 128, 32, 8, 0, std::vector<int>(64, 1), std::vector<int>(64, 1024), 0);
    CK(b.run_decode(0, 64));
    const double err = check_rows(r, b, b.decode, bf16_to_f32(dev_download(b.d_out, (size_t)b.T * 32 * 128)), 0);
    const double ms = time_ms([&](int) { b.run_decode(0, 64); });
    h.report("attn_decode 8B b=64 ctx=1024", err, 1e-2, ms, 64.0 * 1024 * 8 * 128 * 2 * 2, b.flops(b.decode));
  }
  {
    /* 4 sequences of 8192, one decoded per launch, rotating: 4 x 33.5 MB of KV > L2 */
    attn_batch b(r, 128, 32, 8, 0, std::vector<int>(4, 1), std::vector<int>(4, 8192), 256);
    CK(b.run_decode(0, 4));
    const double err = check_rows(r, b, b.decode, bf16_to_f32(dev_download(b.d_out, (size_t)b.T * 32 * 128)), 0);
    const double ms = time_ms([&](int it) { b.run_decode(it % 4, 1); });
    char name[96];
    snprintf(name, sizeof name, "attn_decode 8B b=1 ctx=8192 (%d splits, last split combines)", b.max_splits);
    h.report(name, err, 1e-2, ms, 8192.0 * 8 * 128 * 2 * 2, b.flops({0}));
    b.split_counters = false;
    const double ms2 = time_ms([&](int it) { b.run_decode(it % 4, 1); });
    snprintf(name, sizeof name, "attn_decode 8B b=1 ctx=8192 (%d splits, reduce kernel)", b.max_splits);
    h.report(name, err, 1e-2, ms2, 8192.0 * 8 * 128 * 2 * 2, b.flops({0}));
  }
  time_wide(h, r);
  time_prefill_cases(h, r);
  return h.exit_code();
}
