/* tests/gpu/test_gemm.cu — the row-major cuBLAS projections (gemm.c) against ref_gemm (double):
 *  - twin_cuda_gemm (cublasGemmEx): a small full check (x row stride > k, beta = 1), the
 *    Llama-3-8B projection shapes at 1 and 2048 tokens on 256 sampled outputs, timed hot;
 *  - the tuner (cuBLASLt, per-shape choice) on the 8B and 1B shapes at n = 16, 32, 64, 128, 256:
 *    sampled outputs of the tuning call, the same bits on two later calls, and a timing table
 *    cublasGemmEx vs tuned (weight copies rotated past L2, 20 launches back to back, as in a
 *    decode graph) with the chosen algorithm; every candidate the tuner timed is timed the same
 *    way here too (the same cuBLASLt heuristic query), to show how often the tuner's own
 *    measurement picks the candidate that is fastest back to back ("oracle");
 *    each key's choice also replayed from a CUDA graph (the same bits) and, fp32 outputs, with
 *    beta = 1; weights below the L2 size must be recorded untimed (cublasGemmEx);
 *  - the tuner's other paths: n > 256, beta != 0 (first sight and recorded), inside a graph
 *    capture (a new key is not tuned; a recorded key replays the same bits), bad arguments;
 *  - twin_cuda_linear_forward through the tuner: bf16, and a Q8_0 matrix in dequantized bands
 *    (y bands at offsets aligned to 16 bytes only); TWIN_CUDA_GEMM_TUNE=0 = plain cublasGemmEx.
 * Build alone: nvcc -arch=sm_90 -O3 -std=c++17 --expt-relaxed-constexpr -I. this file,
 * gemm.c, linear.c, cuda_check.c, gemv_bf16.cu, gemv_quant.cu, common/error.c,
 * llm-svc/model/{tensor,quant}.c, tests/gpu/ref.c -lcublasLt -lcublas. */
extern "C" {
#define _Static_assert static_assert /* quant.h is C11 */
#include "llm-svc/model/quant.h"
#undef _Static_assert
}
#include "llm-svc/backend/cuda/gemm.h"
#include "llm-svc/backend/cuda/linear.h"
#include "tests/gpu/harness.h"

#include <cublasLt.h>

#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <string>

/* ---- helpers ------------------------------------------------------------------------------ */

/* ref_gemm on 256 chosen outputs of y (rows ldy apart) */
static double sampled_err(rng &r, const std::vector<uint16_t> &x, int ldx,
                          const std::vector<uint16_t> &w, const std::vector<float> &y, int ldy,
                          int n, int m, int k) {
  std::vector<float> got(256), want(256);
  for (int s = 0; s < 256; s++) {
    const int i = r.below(n), j = r.below(m);
    ref_gemm(&want[s], x.data() + (size_t)i * ldx, k, w.data() + (size_t)j * k, 1, 1, k);
    got[s] = y[(size_t)i * ldy + j];
  }
  return rel_l2(got, want);
}

/* y [n][ldy] (f32 or bf16) as floats */
static std::vector<float> download_y(const void *d_y, int y_f32, size_t elems) {
  if (y_f32) return dev_download((const float *)d_y, elems);
  return bf16_to_f32(dev_download((const twin_bf16 *)d_y, elems));
}

static bool same_bytes(const void *a, const void *b, size_t bytes) {
  std::vector<uint8_t> ha(bytes), hb(bytes);
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(ha.data(), a, bytes, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hb.data(), b, bytes, cudaMemcpyDeviceToHost));
  return memcmp(ha.data(), hb.data(), bytes) == 0;
}

/* Microseconds per launch: median over reps of an event pair around `batch` launches back to
 * back on stream s (fn(i) enqueues launch i), after a warm-up batch. */
static double seq_us(cudaStream_t s, const std::function<void(int)> &fn, int batch = 20,
                     int reps = 9) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  int i = 0;
  for (int j = 0; j < batch; j++) fn(i++);
  std::vector<float> t(reps);
  for (int rep = 0; rep < reps; rep++) {
    CK(cudaEventRecord(a, s));
    for (int j = 0; j < batch; j++) fn(i++);
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[rep], a, b));
  }
  CK(cudaGetLastError());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return 1e3 * t[reps / 2] / batch;
}

static double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

/* ---- the plain product (cublasGemmEx) -------------------------------------------------------- */

static void plain_checks(harness &h, rng &r, cublasHandle_t cb) {
  { /* full check, small */
    const int n = 5, m = 300, k = 264, ldx = 272;
    const std::vector<uint16_t> x = random_bf16(r, (size_t)n * ldx, 1.0f), w = random_bf16(r, (size_t)m * k, 1.0f);
    const std::vector<float> y0 = random_f32(r, (size_t)n * m, 1.0f);
    std::vector<float> ref((size_t)n * m), ref_acc((size_t)n * m);
    ref_gemm(ref.data(), x.data(), ldx, w.data(), n, m, k);
    for (size_t i = 0; i < ref.size(); i++) ref_acc[i] = ref[i] + y0[i];
    twin_bf16 *d_x = dev_upload(x), *d_w = dev_upload(w), *d_y16 = dev_poisoned<twin_bf16>((size_t)n * m);
    float *d_y = dev_poisoned<float>((size_t)n * m), *d_acc = dev_upload(y0);
    const bool ok = twin_cuda_gemm(cb, d_x, ldx, d_w, d_y, 1, m, n, m, k, 0.0f) == CUBLAS_STATUS_SUCCESS &&
                    twin_cuda_gemm(cb, d_x, ldx, d_w, d_y16, 0, m, n, m, k, 0.0f) == CUBLAS_STATUS_SUCCESS &&
                    twin_cuda_gemm(cb, d_x, ldx, d_w, d_acc, 1, m, n, m, k, 1.0f) == CUBLAS_STATUS_SUCCESS;
    h.check("gemm calls succeed", ok, "cublasGemmEx failed");
    h.report("gemm f32 out 5x300x264 ldx=272", rel_l2(dev_download(d_y, (size_t)n * m), ref), 1e-4);
    h.report("gemm bf16 out 5x300x264", rel_l2(bf16_to_f32(dev_download(d_y16, (size_t)n * m)), ref), 4e-3);
    h.report("gemm beta=1 accumulate", rel_l2(dev_download(d_acc, (size_t)n * m), ref_acc), 1e-4);
    cudaFree(d_x); cudaFree(d_w); cudaFree(d_y16); cudaFree(d_y); cudaFree(d_acc);
  }
}

/* ---- shapes ----------------------------------------------------------------------------------- */

struct shape {
  const char *model, *what;
  int m, k;
  int y_f32; /* as the backend writes them: qkv and gate_up bf16, the others fp32 */
};
static const shape kShapes[] = {
    {"8B", "qkv", 6144, 4096, 0},      {"8B", "o_proj", 4096, 4096, 1},
    {"8B", "gate_up", 28672, 4096, 0}, {"8B", "down", 4096, 14336, 1},
    {"8B", "lm_head", 128256, 4096, 1}, {"1B", "qkv", 3072, 2048, 0},
    {"1B", "o_proj", 2048, 2048, 1},   {"1B", "gate_up", 16384, 2048, 0},
    {"1B", "down", 2048, 8192, 1},     {"1B", "lm_head", 128256, 2048, 1}};
static const int kTunedN[] = {16, 32, 64, 128, 256};

struct table_row {
  char name[48];
  int n;
  double default_us, tuned_us, weight_gb_s, tune_ms;
  int oracle;       /* the candidate fastest back to back (0 = cublasGemmEx) */
  double oracle_us; /* its time */
  twin_cuda_gemm_choice c;
};

/* What the test's own cuBLASLt needs: a handle and a workspace of the tuner's size. */
struct lt_bench {
  cublasLtHandle_t lt;
  void *workspace; /* [TWIN_CUDA_GEMM_WORKSPACE] */
};

/* Back-to-back microseconds (seq_us, weight copies rotated) of every candidate the tuner times
 * for this key: [0] cublasGemmEx, [i] the i-th result of the same heuristic query as gemm.c's
 * (operands from cudaMalloc: 256-byte aligned). Their configurations go to cfg. */
static std::vector<double> candidate_seq_us(const lt_bench &b, cublasHandle_t cb, cudaStream_t stream,
                                            const twin_bf16 *x, const std::vector<twin_bf16 *> &d_w,
                                            void *y, int y_f32, int n, int m, int k,
                                            std::vector<std::string> &cfg) {
  const int copies = (int)d_w.size();
  std::vector<double> us;
  cfg.clear();
  us.push_back(seq_us(stream, [&](int i) {
    twin_cuda_gemm(cb, x, k, d_w[i % copies], y, y_f32, m, n, m, k, 0.0f);
  }));
  cfg.push_back("cublasGemmEx default");
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t lw = nullptr, lx = nullptr, ly = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  const cublasOperation_t tw = CUBLAS_OP_T, tx = CUBLAS_OP_N;
  const uint64_t ws = TWIN_CUDA_GEMM_WORKSPACE;
  const uint32_t red = (uint32_t)CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE | (y_f32 ? (uint32_t)CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE : 0u);
  bool ok = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tw, sizeof tw) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tx, sizeof tx) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatrixLayoutCreate(&lw, CUDA_R_16BF, k, m, k) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatrixLayoutCreate(&lx, CUDA_R_16BF, k, n, k) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatrixLayoutCreate(&ly, y_f32 ? CUDA_R_32F : CUDA_R_16BF, m, n, m) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &red, sizeof red) == CUBLAS_STATUS_SUCCESS;
  cublasLtMatmulHeuristicResult_t found[TWIN_CUDA_GEMM_TUNE_CANDIDATES];
  int n_found = 0;
  if (ok && cublasLtMatmulAlgoGetHeuristic(b.lt, op, lw, lx, ly, ly, pref, TWIN_CUDA_GEMM_TUNE_CANDIDATES, found,
                                           &n_found) != CUBLAS_STATUS_SUCCESS)
    n_found = 0;
  for (int i = 0; i < n_found; i++) {
    if (found[i].state != CUBLAS_STATUS_SUCCESS || found[i].workspaceSize > ws) continue;
    const cublasLtMatmulAlgo_t *algo = &found[i].algo;
    const float one = 1.0f, zero = 0.0f;
    us.push_back(seq_us(stream, [&](int j) {
      cublasLtMatmul(b.lt, op, &one, d_w[j % copies], lw, x, lx, &zero, y, ly, y, ly, algo, b.workspace, ws, stream);
    }));
    int32_t id = 0, splitk = 1;
    uint32_t tile = 0, stages = 0, red_s = 0, swz = 0, custom = 0;
    uint16_t cluster = 0;
    size_t wr = 0;
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red_s, sizeof red_s, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof swz, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &custom, sizeof custom, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster, sizeof cluster, &wr);
    char text[160];
    snprintf(text, sizeof text, "algo %d tile %u stages %u splitK %d red %u swizzle %u custom %u cluster %u ws %zu KiB",
             id, tile, stages, splitk, red_s, swz, custom, cluster, found[i].workspaceSize >> 10);
    cfg.push_back(text);
  }
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (ly) cublasLtMatrixLayoutDestroy(ly);
  if (lx) cublasLtMatrixLayoutDestroy(lx);
  if (lw) cublasLtMatrixLayoutDestroy(lw);
  if (op) cublasLtMatmulDescDestroy(op);
  return us;
}

/* One shape: weight copies (rotated past L2 when timing), the plain product at 1 and 2048 rows
 * (8B, hot, as before), then the tuner at every n of kTunedN. */
static void shape_cases(harness &h, rng &r, cublasHandle_t cb, cudaStream_t stream,
                        twin_cuda_gemm_tuner *tuner, const lt_bench &bench, const shape &s,
                        std::vector<table_row> &table) {
  const size_t w_elems = (size_t)s.m * s.k, w_bytes = w_elems * 2;
  const std::vector<uint16_t> w = random_bf16_uniform(r, w_elems, 0.03f);
  const int copies = std::max<int>(2, (int)((size_t(192) << 20) / w_bytes + 1));
  std::vector<twin_bf16 *> d_w(copies);
  d_w[0] = dev_upload(w);
  for (int c = 1; c < copies; c++) {
    CK(cudaMalloc(&d_w[c], w_bytes));
    CK(cudaMemcpy(d_w[c], d_w[0], w_bytes, cudaMemcpyDeviceToDevice));
  }
  const size_t out_esize = s.y_f32 ? 4 : 2;
  char name[128];
  int device = 0, l2 = 0;
  CK(cudaGetDevice(&device));
  CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
  const size_t l2_bytes = (size_t)l2;

  if (strcmp(s.model, "8B") == 0)
    for (int n : {1, 2048}) {
      if (n == 2048 && s.m == 128256) continue; /* prefill computes logits of last tokens only */
      const std::vector<uint16_t> x = random_bf16(r, (size_t)n * s.k, 1.0f);
      twin_bf16 *d_x = dev_upload(x);
      void *d_y = dev_poisoned<uint8_t>((size_t)n * s.m * out_esize);
      const cublasStatus_t st = twin_cuda_gemm(cb, d_x, s.k, d_w[0], d_y, s.y_f32, s.m, n, s.m, s.k, 0.0f);
      const std::vector<float> y = download_y(d_y, s.y_f32, (size_t)n * s.m);
      const double err = st == CUBLAS_STATUS_SUCCESS ? sampled_err(r, x, s.k, w, y, s.m, n, s.m, s.k) : INFINITY;
      const double ms = time_ms([&](int) { twin_cuda_gemm(cb, d_x, s.k, d_w[0], d_y, s.y_f32, s.m, n, s.m, s.k, 0.0f); });
      snprintf(name, sizeof name, "gemm %s n=%d %dx%d", s.what, n, s.m, s.k);
      const double bytes = (double)w_bytes + (double)n * s.k * 2 + (double)n * s.m * out_esize;
      h.report(name, err, s.y_f32 ? 1e-4 : 4e-3, ms, bytes, 2.0 * n * s.m * s.k);
      cudaFree(d_x);
      cudaFree(d_y);
    }

  for (int n : kTunedN) {
    const std::vector<uint16_t> x = random_bf16(r, (size_t)n * s.k, 1.0f);
    twin_bf16 *d_x = dev_upload(x);
    const size_t y_bytes = (size_t)n * s.m * out_esize;
    void *d_y[3];
    for (void *&p : d_y) p = dev_poisoned<uint8_t>(y_bytes);
    twin_err err = {};
    CK(cudaDeviceSynchronize());
    const double t0 = now_ms();
    int rc = twin_cuda_gemm_tuned(tuner, d_x, s.k, d_w[0], d_y[0], s.y_f32, s.m, n, s.m, s.k, 0.0f, &err);
    CK(cudaStreamSynchronize(stream));
    const double tune_ms = now_ms() - t0;
    for (int c = 1; c < 3 && !rc; c++)
      rc = twin_cuda_gemm_tuned(tuner, d_x, s.k, d_w[c % copies], d_y[c], s.y_f32, s.m, n, s.m, s.k, 0.0f, &err);
    snprintf(name, sizeof name, "tuned %s %s n=%d calls succeed", s.model, s.what, n);
    h.check(name, rc == 0, err.msg);
    twin_cuda_gemm_choice choice = {};
    snprintf(name, sizeof name, "tuned %s %s n=%d has a choice", s.model, s.what, n);
    h.check(name, twin_cuda_gemm_tuner_lookup(tuner, d_x, s.k, d_w[1], d_y[0], s.y_f32, s.m, n, s.m, s.k, &choice) == 1,
            "no entry for a key tuned with beta = 0 and n <= 256");
    const std::vector<float> y = download_y(d_y[0], s.y_f32, (size_t)n * s.m);
    const double e = rc == 0 ? sampled_err(r, x, s.k, w, y, s.m, n, s.m, s.k) : INFINITY;
    snprintf(name, sizeof name, "tuned %s %s n=%d %dx%d (the tuning call's output)", s.model, s.what, n, s.m, s.k);
    h.report(name, e, s.y_f32 ? 1e-4 : 4e-3);
    snprintf(name, sizeof name, "tuned %s %s n=%d: the same bits on every call", s.model, s.what, n);
    h.check(name, same_bytes(d_y[0], d_y[1], y_bytes) && same_bytes(d_y[0], d_y[2], y_bytes),
            "two products of one key differ");
    { /* the key's choice captured in a CUDA graph: the replay gives the eager bits */
      void *d_g = dev_poisoned<uint8_t>(y_bytes);
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      const int grc = twin_cuda_gemm_tuned(tuner, d_x, s.k, d_w[0], d_g, s.y_f32, s.m, n, s.m, s.k, 0.0f, &err);
      CK(cudaStreamEndCapture(stream, &graph));
      bool same = false;
      if (grc == 0) {
        CK(cudaGraphInstantiate(&exec, graph, 0));
        CK(cudaGraphLaunch(exec, stream));
        CK(cudaStreamSynchronize(stream));
        same = same_bytes(d_y[0], d_g, y_bytes);
      }
      snprintf(name, sizeof name, "tuned %s %s n=%d: graph replay = eager bits (%s)", s.model, s.what, n,
               choice.lt ? "cuBLASLt" : "cublasGemmEx");
      h.check(name, same, grc ? err.msg : "the replay differs");
      if (exec) cudaGraphExecDestroy(exec);
      if (graph) cudaGraphDestroy(graph);
      cudaFree(d_g);
    }
    if (s.y_f32) { /* beta = 1 through the key's choice: y = y0 + x . w^T */
      const std::vector<float> y0 = random_f32(r, (size_t)n * s.m, 1.0f);
      float *d_acc = dev_upload(y0);
      const int arc = twin_cuda_gemm_tuned(tuner, d_x, s.k, d_w[0], d_acc, 1, s.m, n, s.m, s.k, 1.0f, &err);
      const std::vector<float> acc = dev_download(d_acc, (size_t)n * s.m);
      std::vector<float> got(256), want(256);
      for (int q = 0; q < 256; q++) {
        const int i = r.below(n), j = r.below(s.m);
        ref_gemm(&want[q], x.data() + (size_t)i * s.k, s.k, w.data() + (size_t)j * s.k, 1, 1, s.k);
        want[q] += y0[(size_t)i * s.m + j];
        got[q] = acc[(size_t)i * s.m + j];
      }
      snprintf(name, sizeof name, "tuned %s %s n=%d beta=1 accumulate (%s)", s.model, s.what, n,
               choice.lt ? "cuBLASLt" : "cublasGemmEx");
      h.report(name, arc == 0 ? rel_l2(got, want) : INFINITY, 1e-4);
      cudaFree(d_acc);
    }

    /* timing: cublasGemmEx default vs the tuned choice, reps interleaved */
    double t_default = 0, t_tuned = 0;
    {
      std::vector<double> td, tt;
      for (int rep = 0; rep < 3; rep++) {
        td.push_back(seq_us(stream, [&](int i) {
          twin_cuda_gemm(cb, d_x, s.k, d_w[i % copies], d_y[1], s.y_f32, s.m, n, s.m, s.k, 0.0f);
        }));
        tt.push_back(seq_us(stream, [&](int i) {
          twin_cuda_gemm_tuned(tuner, d_x, s.k, d_w[i % copies], d_y[1], s.y_f32, s.m, n, s.m, s.k, 0.0f, NULL);
        }));
      }
      std::sort(td.begin(), td.end());
      std::sort(tt.begin(), tt.end());
      t_default = td[1];
      t_tuned = tt[1];
    }
    table_row row = {};
    snprintf(row.name, sizeof row.name, "%s %s %dx%d", s.model, s.what, s.m, s.k);
    row.n = n;
    row.default_us = t_default;
    row.tuned_us = t_tuned;
    row.weight_gb_s = (double)w_bytes / (t_tuned * 1e-6) / 1e9;
    row.tune_ms = tune_ms;
    row.c = choice;
    { /* every candidate back to back, next to what the tuner measured */
      std::vector<std::string> cfg;
      const std::vector<double> cand = candidate_seq_us(bench, cb, stream, d_x, d_w, d_y[1], s.y_f32, n, s.m, s.k, cfg);
      row.oracle = 0;
      for (size_t i = 1; i < cand.size(); i++)
        if (cand[i] < cand[row.oracle]) row.oracle = (int)i;
      row.oracle_us = cand[row.oracle];
      if (choice.candidates > 0) {
        snprintf(name, sizeof name, "tuned %s %s n=%d: the test's query finds the tuner's %d candidates", s.model,
                 s.what, n, choice.candidates);
        h.check(name, (int)cand.size() == choice.candidates, "the candidate lists differ");
      }
      const bool small = w_bytes < l2_bytes;
      snprintf(name, sizeof name, "tuned %s %s n=%d: %s", s.model, s.what, n,
               small ? "weights below L2 not timed, cublasGemmEx" : "weights of L2 size or more timed");
      h.check(name, small ? (choice.candidates == 0 && !choice.lt) : choice.candidates >= 1,
              "the tuner's timing rule (gemm.h) was not followed");
      for (size_t i = 0; i < cand.size(); i++)
        printf("CAND|%s|%d|%zu|%s|tuner %.2f us|back to back %.2f us%s%s\n", row.name, n, i, cfg[i].c_str(),
               i < (size_t)choice.candidates ? choice.candidate_us[i] : NAN, cand[i],
               (int)i == choice.chosen ? " <- chosen" : "", (int)i == row.oracle ? " <- fastest back to back" : "");
    }
    table.push_back(row);
    snprintf(name, sizeof name, "tuned %s %s n=%d timed", s.model, s.what, n);
    const double bytes = (double)w_bytes + (double)n * s.k * 2 + (double)y_bytes;
    h.report(name, e, s.y_f32 ? 1e-4 : 4e-3, t_tuned * 1e-3, bytes, 2.0 * n * s.m * s.k);
    cudaFree(d_x);
    for (void *p : d_y) cudaFree(p);
  }
  for (twin_bf16 *p : d_w) cudaFree(p);
}

/* ---- the tuner's other paths ----------------------------------------------------------------- */

static void path_checks(harness &h, rng &r, cudaStream_t stream, twin_cuda_gemm_tuner *tuner) {
  const int m = 3072, k = 2048, ldx = 2056, ldy = 3096, n_max = 300;
  const std::vector<uint16_t> w = random_bf16_uniform(r, (size_t)m * k, 0.05f);
  const std::vector<uint16_t> x = random_bf16(r, (size_t)n_max * ldx, 1.0f);
  const std::vector<float> y0 = random_f32(r, (size_t)n_max * ldy, 1.0f);
  twin_bf16 *d_w = dev_upload(w), *d_x = dev_upload(x);
  float *d_y = dev_poisoned<float>((size_t)n_max * ldy), *d_y2 = dev_poisoned<float>((size_t)n_max * ldy);
  twin_err err = {};
  twin_cuda_gemm_choice c;
  const int keys0 = twin_cuda_gemm_tuner_keys(tuner);

  /* n > 256: cublasGemmEx, not tuned (x rows ldx > k apart, y rows ldy > m apart) */
  int rc = twin_cuda_gemm_tuned(tuner, d_x, ldx, d_w, d_y, 1, ldy, n_max, m, k, 0.0f, &err);
  h.check("tuner n=300 succeeds", rc == 0, err.msg);
  h.report("tuner n=300 (cublasGemmEx) ldx=2056 ldy=3096",
           sampled_err(r, x, ldx, w, dev_download(d_y, (size_t)n_max * ldy), ldy, n_max, m, k), 1e-4);
  h.check("tuner n=300 is not tuned",
          !twin_cuda_gemm_tuner_lookup(tuner, d_x, ldx, d_w, d_y, 1, ldy, n_max, m, k, &c) &&
              twin_cuda_gemm_tuner_keys(tuner) == keys0, "a key with n > 256 was tuned");

  /* beta = 1 on first sight: not tuned, accumulates */
  std::vector<float> ref((size_t)24 * m);
  CK(cudaMemcpy(d_y, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
  rc = twin_cuda_gemm_tuned(tuner, d_x, ldx, d_w, d_y, 1, ldy, 24, m, k, 1.0f, &err);
  h.check("tuner beta=1 first sight succeeds", rc == 0, err.msg);
  ref_gemm(ref.data(), x.data(), ldx, w.data(), 24, m, k);
  {
    const std::vector<float> got = dev_download(d_y, (size_t)24 * ldy);
    std::vector<float> g((size_t)24 * m), want((size_t)24 * m);
    for (int i = 0; i < 24; i++)
      for (int j = 0; j < m; j++) {
        g[(size_t)i * m + j] = got[(size_t)i * ldy + j];
        want[(size_t)i * m + j] = ref[(size_t)i * m + j] + y0[(size_t)i * ldy + j];
      }
    h.report("tuner beta=1 first sight (cublasGemmEx) n=24", rel_l2(g, want), 1e-4);
  }
  h.check("tuner beta=1 first sight is not tuned",
          !twin_cuda_gemm_tuner_lookup(tuner, d_x, ldx, d_w, d_y, 1, ldy, 24, m, k, &c),
          "a key first seen with beta != 0 was tuned");

  /* tune n = 24 with beta = 0, then beta = 1 through the tuned choice */
  rc = twin_cuda_gemm_tuned(tuner, d_x, ldx, d_w, d_y2, 1, ldy, 24, m, k, 0.0f, &err);
  h.check("tuner n=24 tunes", rc == 0 && twin_cuda_gemm_tuner_lookup(tuner, d_x, ldx, d_w, d_y2, 1, ldy, 24, m, k, &c),
          rc ? err.msg : "no entry after a beta = 0 product");
  CK(cudaMemcpy(d_y, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
  rc = twin_cuda_gemm_tuned(tuner, d_x, ldx, d_w, d_y, 1, ldy, 24, m, k, 1.0f, &err);
  {
    const std::vector<float> got = dev_download(d_y, (size_t)24 * ldy);
    std::vector<float> g((size_t)24 * m), want((size_t)24 * m);
    for (int i = 0; i < 24; i++)
      for (int j = 0; j < m; j++) {
        g[(size_t)i * m + j] = got[(size_t)i * ldy + j];
        want[(size_t)i * m + j] = ref[(size_t)i * m + j] + y0[(size_t)i * ldy + j];
      }
    h.report("tuner beta=1 on a tuned key n=24", rc == 0 ? rel_l2(g, want) : INFINITY, 1e-4);
  }

  /* graph capture: a tuned key (n = 24) replays its eager bits; a new key (n = 40) is not tuned */
  float *d_g24 = dev_poisoned<float>((size_t)24 * ldy), *d_g40 = dev_poisoned<float>((size_t)40 * ldy);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  int rc24 = twin_cuda_gemm_tuned(tuner, d_x, ldx, d_w, d_g24, 1, ldy, 24, m, k, 0.0f, &err);
  int rc40 = twin_cuda_gemm_tuned(tuner, d_x, ldx, d_w, d_g40, 1, ldy, 40, m, k, 0.0f, &err);
  CK(cudaStreamEndCapture(stream, &graph));
  h.check("tuner products capture", rc24 == 0 && rc40 == 0, err.msg);
  h.check("tuner: a key first seen in a capture is not tuned",
          !twin_cuda_gemm_tuner_lookup(tuner, d_x, ldx, d_w, d_g40, 1, ldy, 40, m, k, &c),
          "tuned while capturing");
  CK(cudaGraphInstantiate(&exec, graph, 0));
  CK(cudaGraphLaunch(exec, stream));
  CK(cudaStreamSynchronize(stream));
  {
    /* d_y2 rows hold the eager n = 24 product; compare row by row (the gaps hold poison) */
    const std::vector<float> a = dev_download(d_y2, (size_t)24 * ldy), b = dev_download(d_g24, (size_t)24 * ldy);
    bool same = true;
    for (int i = 0; i < 24 && same; i++) same = memcmp(&a[(size_t)i * ldy], &b[(size_t)i * ldy], (size_t)m * 4) == 0;
    h.check("tuner: graph replay of a tuned key = its eager bits", same, "the replay differs");
  }
  h.report("tuner n=40 in a graph (cublasGemmEx)",
           sampled_err(r, x, ldx, w, dev_download(d_g40, (size_t)40 * ldy), ldy, 40, m, k), 1e-4);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);

  /* bad arguments */
  err = {};
  rc = twin_cuda_gemm_tuned(tuner, d_x, k - 1, d_w, d_y, 1, ldy, 16, m, k, 0.0f, &err);
  h.check("tuner rejects ldx < k", rc == TWIN_EINVAL && strstr(err.msg, "ldx") != nullptr, err.msg);
  err = {};
  rc = twin_cuda_gemm_tuned(tuner, d_x, ldx, nullptr, d_y, 1, ldy, 16, m, k, 0.0f, &err);
  h.check("tuner rejects a NULL w", rc == TWIN_EINVAL && strstr(err.msg, "NULL") != nullptr, err.msg);
  err = {};
  rc = twin_cuda_gemm_tuned(nullptr, d_x, ldx, d_w, d_y, 1, ldy, 16, m, k, 0.0f, &err);
  h.check("tuner rejects a NULL tuner", rc == TWIN_EINVAL, err.msg);

  cudaFree(d_g24); cudaFree(d_g40);
  cudaFree(d_w); cudaFree(d_x); cudaFree(d_y); cudaFree(d_y2);
}

/* ---- twin_cuda_linear_forward -------------------------------------------------------------- */

static void linear_checks(harness &h, rng &r, cublasHandle_t cb, cudaStream_t stream) {
  twin_err err = {};
  twin_cuda_linear_ctx ctx = {};
  ctx.cublas = cb;
  ctx.stream = stream;
  ctx.gemv = 1;

  /* the switch */
  setenv("TWIN_CUDA_GEMM_TUNE", "0", 1);
  int rc = twin_cuda_linear_ctx_init(&ctx, &err);
  h.check("TWIN_CUDA_GEMM_TUNE=0: no tuner", rc == 0 && ctx.tuner == nullptr, rc ? err.msg : "a tuner was made");
  const int n = 16, m = 2048, k = 2048;
  const std::vector<uint16_t> w = random_bf16_uniform(r, (size_t)m * k, 0.05f), x = random_bf16(r, (size_t)n * k, 1.0f);
  twin_bf16 *d_w = dev_upload(w), *d_x = dev_upload(x);
  float *d_plain = dev_poisoned<float>((size_t)n * m), *d_lin = dev_poisoned<float>((size_t)n * m);
  const twin_cuda_linear L = {d_w, TWIN_DT_BF16, m, k, (size_t)k * 2};
  rc = twin_cuda_linear_forward(&ctx, &L, d_x, k, d_lin, 1, m, n, 0.0f, &err);
  const bool plain_ok = twin_cuda_gemm(cb, d_x, k, d_w, d_plain, 1, m, n, m, k, 0.0f) == CUBLAS_STATUS_SUCCESS;
  h.check("TWIN_CUDA_GEMM_TUNE=0: linear = twin_cuda_gemm bit for bit",
          rc == 0 && plain_ok && same_bytes(d_plain, d_lin, (size_t)n * m * 4), rc ? err.msg : "differs");
  twin_cuda_linear_ctx_release(&ctx);
  unsetenv("TWIN_CUDA_GEMM_TUNE");

  /* tuned, bf16 */
  rc = twin_cuda_linear_ctx_init(&ctx, &err);
  h.check("linear ctx init makes a tuner", rc == 0 && ctx.tuner != nullptr, rc ? err.msg : "no tuner");
  if (rc) return;
  CK(cudaMemset(d_lin, 0xFF, (size_t)n * m * 4));
  rc = twin_cuda_linear_forward(&ctx, &L, d_x, k, d_lin, 1, m, n, 0.0f, &err);
  h.check("linear bf16 n=16 succeeds", rc == 0, err.msg);
  h.report("linear bf16 n=16 2048x2048 (tuned)",
           sampled_err(r, x, k, w, dev_download(d_lin, (size_t)n * m), m, n, m, k), 1e-4);
  h.check("linear bf16 n=16 tuned its key",
          twin_cuda_gemm_tuner_lookup(ctx.tuner, d_x, k, d_w, d_lin, 1, m, n, m, k, nullptr) == 1,
          "no entry");

  /* Q8_0 in bands of 300 rows (1000 rows: 300, 300, 300, 100; y bands at 1200-byte steps) */
  const int qrows = 1000, qcols = 2048, band = 300;
  const size_t stride = twin_cuda_quant_row_stride(TWIN_DT_Q8_0, qcols);
  if (stride < twin_dtype_bytes_for(TWIN_DT_Q8_0, qcols)) {
    fprintf(stderr, "q8_0 row stride %zu below the row's bytes\n", stride);
    exit(2);
  }
  std::vector<uint8_t> blocks(stride * qrows, 0xFF);
  std::vector<uint16_t> wq((size_t)qrows * qcols); /* the dequantized weights, as bf16 */
  {
    std::vector<float> row(qcols), back(qcols);
    for (int i = 0; i < qrows; i++) {
      for (float &v : row) v = 0.05f * r.normal();
      if (twin_quantize_row(TWIN_DT_Q8_0, row.data(), blocks.data() + (size_t)i * stride, qcols) != 0 ||
          twin_dequantize_row(TWIN_DT_Q8_0, blocks.data() + (size_t)i * stride, back.data(), qcols) != 0) {
        fprintf(stderr, "q8_0 quantize/dequantize failed\n");
        exit(2);
      }
      for (int j = 0; j < qcols; j++) wq[(size_t)i * qcols + j] = ref_f32_to_bf16(back[j]);
    }
  }
  uint8_t *d_q = dev_upload(blocks);
  twin_bf16 *d_scratch = dev_poisoned<twin_bf16>((size_t)band * qcols);
  ctx.dequant = d_scratch;
  ctx.dequant_elems = (size_t)band * qcols;
  const twin_cuda_linear Q = {d_q, TWIN_DT_Q8_0, qrows, qcols, stride};
  const std::vector<uint16_t> xq = random_bf16(r, (size_t)n * qcols, 1.0f);
  twin_bf16 *d_xq = dev_upload(xq);
  for (int y_f32 = 0; y_f32 < 2; y_f32++) {
    const int ldy = qrows + 24;
    void *d_yq = dev_poisoned<uint8_t>((size_t)n * ldy * (y_f32 ? 4 : 2));
    void *d_yq2 = dev_poisoned<uint8_t>((size_t)n * ldy * (y_f32 ? 4 : 2));
    rc = twin_cuda_linear_forward(&ctx, &Q, d_xq, qcols, d_yq, y_f32, ldy, n, 0.0f, &err);
    if (!rc) rc = twin_cuda_linear_forward(&ctx, &Q, d_xq, qcols, d_yq2, y_f32, ldy, n, 0.0f, &err);
    char name[96];
    snprintf(name, sizeof name, "linear q8_0 n=16 in bands, %s out, succeeds", y_f32 ? "f32" : "bf16");
    h.check(name, rc == 0, err.msg);
    const std::vector<float> y = download_y(d_yq, y_f32, (size_t)n * ldy);
    snprintf(name, sizeof name, "linear q8_0 n=16 1000x2048 bands of 300, %s out (tuned)", y_f32 ? "f32" : "bf16");
    h.report(name, rc == 0 ? sampled_err(r, xq, qcols, wq, y, ldy, n, qrows, qcols) : INFINITY, y_f32 ? 1e-4 : 4e-3);
    snprintf(name, sizeof name, "linear q8_0 bands, %s out: the same bits twice", y_f32 ? "f32" : "bf16");
    h.check(name, same_bytes(d_yq, d_yq2, (size_t)n * ldy * (y_f32 ? 4 : 2)), "differs");
    if (y_f32) /* the keys of the first band (y aligned to 256) and the last (y + 900 rows: 16) */
      h.check("linear q8_0 bands: the 300-row and 100-row bands have choices",
              twin_cuda_gemm_tuner_lookup(ctx.tuner, d_xq, qcols, d_scratch, d_yq, 1, ldy, n, band, qcols, nullptr) == 1 &&
                  twin_cuda_gemm_tuner_lookup(ctx.tuner, d_xq, qcols, d_scratch, (const float *)d_yq + 900, 1, ldy, n,
                                              qrows - 900, qcols, nullptr) == 1,
              "a band's key has no entry");
    cudaFree(d_yq);
    cudaFree(d_yq2);
  }
  twin_cuda_linear_ctx_release(&ctx);
  twin_cuda_linear_ctx_release(&ctx); /* twice is safe */
  cudaFree(d_q); cudaFree(d_scratch); cudaFree(d_xq);
  cudaFree(d_w); cudaFree(d_x); cudaFree(d_plain); cudaFree(d_lin);
}

/* ---- main ------------------------------------------------------------------------------------- */

static const char *reduction_name(int scheme) {
  switch (scheme) {
    case 0: return "none";
    case 1: return "inplace";
    case 2: return "compute";
    case 4: return "output";
    default: return "?";
  }
}

int main() {
  print_device();
  harness h;
  rng r(16);
  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));
  cublasHandle_t cb;
  void *cublas_ws = nullptr;
  CK(cudaMalloc(&cublas_ws, (size_t)32 << 20));
  if (cublasCreate(&cb) != CUBLAS_STATUS_SUCCESS || cublasSetStream(cb, stream) != CUBLAS_STATUS_SUCCESS ||
      cublasSetWorkspace(cb, cublas_ws, (size_t)32 << 20) != CUBLAS_STATUS_SUCCESS)
    return 2;
  twin_cuda_gemm_tuner *tuner = nullptr;
  twin_err err = {};
  if (twin_cuda_gemm_tuner_create(cb, stream, &tuner, &err) != 0) {
    fprintf(stderr, "tuner: %s\n", err.msg);
    return 2;
  }

  plain_checks(h, r, cb);
  path_checks(h, r, stream, tuner);
  linear_checks(h, r, cb, stream);

  lt_bench bench = {};
  if (cublasLtCreate(&bench.lt) != CUBLAS_STATUS_SUCCESS) return 2;
  CK(cudaMalloc(&bench.workspace, TWIN_CUDA_GEMM_WORKSPACE));
  std::vector<table_row> table;
  for (const shape &s : kShapes) shape_cases(h, r, cb, stream, tuner, bench, s, table);
  cublasLtDestroy(bench.lt);
  cudaFree(bench.workspace);

  printf("\nTABLE|shape|n|cublasGemmEx us|tuned us|speedup|weights GB/s (tuned)|choice|algo|tile|stages|splitK|reduction|swizzle|custom|cluster|workspace KiB|candidates|tuner: default us / chosen us (after a sweep)|chosen / oracle|oracle us|tune ms\n");
  for (const table_row &t : table)
    printf("TABLE|%s|%d|%.2f|%.2f|%.3f|%.0f|%s|%d|%d|%d|%d|%s|%d|%d|%d|%zu|%d|%.2f / %.2f|%d / %d|%.2f|%.1f\n", t.name,
           t.n, t.default_us, t.tuned_us, t.default_us / t.tuned_us, t.weight_gb_s, t.c.lt ? "cublasLt" : "GemmEx",
           t.c.algo_id, t.c.tile_id, t.c.stages_id, t.c.splitk, reduction_name(t.c.reduction), t.c.swizzle,
           t.c.custom, t.c.cluster_id, t.c.workspace >> 10, t.c.candidates, t.c.default_us, t.c.chosen_us,
           t.c.chosen, t.oracle, t.oracle_us, t.tune_ms);
  printf("tuner keys: %d\n", twin_cuda_gemm_tuner_keys(tuner));
  twin_cuda_gemm_tuner_destroy(tuner);
  cublasDestroy(cb);
  cudaFree(cublas_ws);
  cudaStreamDestroy(stream);
  return h.exit_code();
}
