/* llm-svc/backend/cpu/cpu_ops.c — the CPU backend's elementwise and matrix ops, fp32:
 * matmul through OpenBLAS sgemm (weights row-major [out][in], so the product takes w
 * transposed), bias, RMSNorm, rotary embedding (Hugging Face rotate_half pairing), SiLU- and
 * GELU-gated products, soft-capping, and a dot product written with eight partial sums so the
 * compiler vectorizes it. */
#include <cblas.h>
#include <math.h>

#include "llm-svc/backend/cpu/cpu_backend.h"

void cpu_matmul(float *y, const float *x, const float *w, int n, int out_dim, int in_dim,
                float beta) {
  if (n == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, out_dim, in_dim, 1.0f, w, in_dim, x, 1, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out_dim, in_dim, 1.0f, x, in_dim, w,
              in_dim, beta, y, out_dim);
}

void cpu_add_bias(float *y, const float *bias, int n, int dim) {
  for (int r = 0; r < n; r++) {
    float *row = y + (size_t)r * dim;
    for (int i = 0; i < dim; i++) row[i] += bias[i];
  }
}

float cpu_dot(const float *a, const float *b, int n) {
  float partial[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) partial[j] += a[i + j] * b[i + j];
  float sum = ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
              ((partial[2] + partial[6]) + (partial[3] + partial[7]));
  for (; i < n; i++) sum += a[i] * b[i];
  return sum;
}

void cpu_rmsnorm(float *out, const float *x, const float *weight, int n, int dim, float eps) {
  for (int r = 0; r < n; r++) {
    const float *xr = x + (size_t)r * dim;
    float *outr = out + (size_t)r * dim;
    double sum_sq = 0.0;
    for (int i = 0; i < dim; i++) sum_sq += (double)xr[i] * xr[i];
    float inv_rms = (float)(1.0 / sqrt(sum_sq / dim + eps));
    for (int i = 0; i < dim; i++) outr[i] = xr[i] * inv_rms * weight[i];
  }
}

void cpu_rope(float *vec, const float *cos, const float *sin, int n_heads, int head_dim) {
  int half = head_dim / 2;
  for (int h = 0; h < n_heads; h++) {
    float *head = vec + (size_t)h * head_dim;
    for (int i = 0; i < half; i++) {
      float x1 = head[i], x2 = head[i + half];
      head[i] = x1 * cos[i] - x2 * sin[i];
      head[i + half] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

typedef struct silu_mul_job {
  float *out;              /* [n][hidden] */
  const float *gate_up;    /* [n][2*hidden] */
  int hidden;
} silu_mul_job;

static void silu_mul_row(void *ctx, int row, int worker) {
  (void)worker;
  const silu_mul_job *job = ctx;
  const float *gate = job->gate_up + (size_t)row * 2 * job->hidden;
  const float *up = gate + job->hidden;
  float *out = job->out + (size_t)row * job->hidden;
  for (int i = 0; i < job->hidden; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void cpu_silu_mul(cpu_pool *pool, float *out, const float *gate_up, int n, int hidden) {
  silu_mul_job job = {.out = out, .gate_up = gate_up, .hidden = hidden};
  cpu_pool_run(pool, silu_mul_row, &job, n);
}

/* gelu with the tanh approximation (PyTorch's approximate="tanh", gelu_pytorch_tanh):
 * 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), computed as x / (1 + exp(-2u))
 * (the same function: 0.5 (1 + tanh(u)) = sigmoid(2u)), one expf instead of a tanhf */
static inline float gelu_tanh(float x) {
  const float two_sqrt_2_over_pi = 1.5957691216057308f;
  return x / (1.0f + expf(-two_sqrt_2_over_pi * (x + 0.044715f * x * x * x)));
}

static void gelu_tanh_mul_row(void *ctx, int row, int worker) {
  (void)worker;
  const silu_mul_job *job = ctx;
  const float *gate = job->gate_up + (size_t)row * 2 * job->hidden;
  const float *up = gate + job->hidden;
  float *out = job->out + (size_t)row * job->hidden;
  for (int i = 0; i < job->hidden; i++) out[i] = gelu_tanh(gate[i]) * up[i];
}

void cpu_gelu_tanh_mul(cpu_pool *pool, float *out, const float *gate_up, int n, int hidden) {
  silu_mul_job job = {.out = out, .gate_up = gate_up, .hidden = hidden};
  cpu_pool_run(pool, gelu_tanh_mul_row, &job, n);
}

void cpu_softcap(float *x, size_t n, float cap) {
  const float inv = 1.0f / cap;
  for (size_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * inv);
}
