/* tests/gpu/ref.c — the plain C references of ref.h: straightforward loops in double where a sum
 * is involved, no tiling, no fusion, no shared code with the kernels. Written from the model's
 * definition (Hugging Face Llama: RMSNorm, rotate_half RoPE, causal softmax attention, SwiGLU)
 * so that a kernel and its reference can disagree. */
#include "tests/gpu/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- scalars -------------------------------------------------------------------------------- */

uint16_t ref_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float ref_bf16_to_f32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float ref_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = ldexpf((float)mant, -24);
    return sign ? -v : v;
  }
  const uint32_t u = exp == 31 ? sign | 0x7f800000u | (mant << 13)
                               : sign | ((exp + 112u) << 23) | (mant << 13);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t ref_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u;            /* NaN */
  if (ax >= 0x477ff000u) return sign | 0x7c00u;           /* rounds to infinity */
  if (ax < 0x38800000u) {                                 /* below 2^-14: subnormal or zero */
    float a;
    memcpy(&a, &ax, sizeof a);
    return sign | (uint16_t)nearbyint((double)a * 16777216.0); /* units of 2^-24 */
  }
  uint32_t h = ((((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13));
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return sign | (uint16_t)h;
}

/* ---- element-wise and per-row ops -------------------------------------------------------------- */

void ref_embed(float *out, const uint16_t *table, const int32_t *ids, int n, int dim) {
  for (int t = 0; t < n; t++)
    for (int i = 0; i < dim; i++)
      out[(size_t)t * dim + i] = ref_bf16_to_f32(table[(size_t)ids[t] * dim + i]);
}

void ref_rmsnorm(float *y, const float *x, const uint16_t *w, int n, int dim, float eps) {
  for (int t = 0; t < n; t++) {
    const float *xr = x + (size_t)t * dim;
    double ss = 0.0;
    for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
    const double inv = 1.0 / sqrt(ss / dim + eps);
    for (int i = 0; i < dim; i++)
      y[(size_t)t * dim + i] = (float)(xr[i] * inv * ref_bf16_to_f32(w[i]));
  }
}

void ref_silu_mul(float *out, const uint16_t *gate_up, int n, int hidden) {
  for (int t = 0; t < n; t++)
    for (int i = 0; i < hidden; i++) {
      const double g = ref_bf16_to_f32(gate_up[(size_t)t * 2 * hidden + i]);
      const double u = ref_bf16_to_f32(gate_up[(size_t)t * 2 * hidden + hidden + i]);
      out[(size_t)t * hidden + i] = (float)(g / (1.0 + exp(-g)) * u);
    }
}

/* ---- rotary embedding ------------------------------------------------------------------------------ */

void ref_rope_frequencies(const twin_model_config *cfg, double *inv_freq) {
  const int half = cfg->head_dim / 2;
  for (int i = 0; i < half; i++) {
    double f = pow((double)cfg->rope_theta, -2.0 * i / cfg->head_dim);
    if (cfg->rope_llama3) {
      /* Llama 3: wavelengths longer than old_len/low are stretched by factor, shorter than
       * old_len/high kept, in between interpolated on old_len/wavelength */
      const double wavelength = 6.283185307179586 / f, old_len = cfg->rope_original_max_pos;
      const double low = cfg->rope_low_freq_factor, high = cfg->rope_high_freq_factor;
      if (wavelength > old_len / low) {
        f /= cfg->rope_factor;
      } else if (wavelength >= old_len / high) {
        const double t = (old_len / wavelength - low) / (high - low);
        f = t * f + (1.0 - t) * f / cfg->rope_factor;
      }
    }
    inv_freq[i] = f;
  }
}

void ref_rope_table(float *cos_sin, const int32_t *positions, const double *inv_freq, int n,
                    int hd) {
  const int half = hd / 2;
  for (int t = 0; t < n; t++)
    for (int i = 0; i < half; i++) {
      const double a = positions[t] * inv_freq[i];
      cos_sin[((size_t)t * half + i) * 2] = (float)cos(a);
      cos_sin[((size_t)t * half + i) * 2 + 1] = (float)sin(a);
    }
}

static size_t cache_index(int slot, int kv_head, int nkv, int hd) {
  return (((size_t)(slot / 16) * nkv + kv_head) * 16 + slot % 16) * hd;
}

void ref_rope_kv_write(uint16_t *qkv, const uint16_t *bias, const float *cos_sin,
                       const int32_t *slot_mapping, uint16_t *k_cache, uint16_t *v_cache, int n,
                       int nh, int nkv, int hd) {
  const int row_len = (nh + 2 * nkv) * hd, half = hd / 2;
  for (int t = 0; t < n; t++) {
    uint16_t *row = qkv + (size_t)t * row_len;
    const float *cs = cos_sin + (size_t)t * hd;
    const int slot = slot_mapping[t];
    for (int head = 0; head < nh + nkv; head++) {
      const int base = head * hd;
      for (int i = 0; i < half; i++) {
        float x0 = ref_bf16_to_f32(row[base + i]), x1 = ref_bf16_to_f32(row[base + i + half]);
        if (bias) {
          x0 += ref_bf16_to_f32(bias[base + i]);
          x1 += ref_bf16_to_f32(bias[base + i + half]);
        }
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const uint16_t lo = ref_f32_to_bf16(x0 * c - x1 * s), hi = ref_f32_to_bf16(x1 * c + x0 * s);
        if (head < nh) {
          row[base + i] = lo;
          row[base + i + half] = hi;
        } else if (slot >= 0) {
          uint16_t *dst = k_cache + cache_index(slot, head - nh, nkv, hd);
          dst[i] = lo;
          dst[i + half] = hi;
        }
      }
    }
    if (slot < 0) continue;
    for (int kh = 0; kh < nkv; kh++)
      for (int d = 0; d < hd; d++) {
        const int src = (nh + nkv) * hd + kh * hd + d;
        uint16_t v = row[src];
        if (bias) v = ref_f32_to_bf16(ref_bf16_to_f32(v) + ref_bf16_to_f32(bias[src]));
        v_cache[cache_index(slot, kh, nkv, hd) + d] = v;
      }
  }
}

/* ---- attention -------------------------------------------------------------------------------- */

void ref_attention(float *out, const uint16_t *q, int q_stride, const uint16_t *k_cache,
                   const uint16_t *v_cache, const int32_t *seqs, int n_list,
                   const int32_t *seq_start, const int32_t *seq_len, const int32_t *block_tables,
                   int max_blocks, int nh, int nkv, int hd, float scale, int window) {
  const int group = nh / nkv;
  for (int li = 0; li < n_list; li++) {
    const int s = seqs[li], start = seq_start[s], n_new = seq_start[s + 1] - start;
    const int ctx = seq_len[s];
    double *w = malloc((size_t)ctx * sizeof *w);
    for (int i = 0; i < n_new; i++) {
      const int pos = ctx - n_new + i, row = start + i;
      const int lo = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
      for (int h = 0; h < nh; h++) {
        const int g = h / group;
        const uint16_t *qv = q + (size_t)row * q_stride + (size_t)h * hd;
        double mx = -INFINITY;
        for (int p = lo; p <= pos; p++) {
          const int slot = block_tables[(size_t)s * max_blocks + p / 16] * 16 + p % 16;
          const uint16_t *kv = k_cache + cache_index(slot, g, nkv, hd);
          double dot = 0.0;
          for (int d = 0; d < hd; d++) dot += (double)ref_bf16_to_f32(qv[d]) * ref_bf16_to_f32(kv[d]);
          w[p] = dot * scale;
          if (w[p] > mx) mx = w[p];
        }
        double sum = 0.0;
        for (int p = lo; p <= pos; p++) {
          w[p] = exp(w[p] - mx);
          sum += w[p];
        }
        for (int d = 0; d < hd; d++) {
          double acc = 0.0;
          for (int p = lo; p <= pos; p++) {
            const int slot = block_tables[(size_t)s * max_blocks + p / 16] * 16 + p % 16;
            acc += w[p] * ref_bf16_to_f32(v_cache[cache_index(slot, g, nkv, hd) + d]);
          }
          out[(size_t)row * nh * hd + (size_t)h * hd + d] = (float)(acc / sum);
        }
      }
    }
    free(w);
  }
}

/* ---- projections ------------------------------------------------------------------------------- */

void ref_gemm(float *y, const uint16_t *x, int ldx, const uint16_t *w, int n, int m, int k) {
  for (int r = 0; r < n; r++)
    for (int c = 0; c < m; c++) {
      double acc = 0.0;
      for (int i = 0; i < k; i++)
        acc += (double)ref_bf16_to_f32(x[(size_t)r * ldx + i]) * ref_bf16_to_f32(w[(size_t)c * k + i]);
      y[(size_t)r * m + c] = (float)acc;
    }
}

/* ---- sampling ------------------------------------------------------------------------------------ */

int ref_argmax(const float *logits, int vocab) {
  int best = 0;
  float bv = isnan(logits[0]) ? -INFINITY : logits[0];
  for (int i = 1; i < vocab; i++) {
    const float v = isnan(logits[i]) ? -INFINITY : logits[i];
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

typedef struct scored {
  double v;
  int i;
} scored;

static int by_value_desc(const void *a, const void *b) {
  const scored *x = a, *y = b;
  if (x->v != y->v) return x->v > y->v ? -1 : 1;
  return x->i - y->i;
}

int ref_sample_distribution(double *probs, const float *logits, int vocab, float t, int top_k,
                            float top_p, float min_p) {
  memset(probs, 0, (size_t)vocab * sizeof *probs);
  if (!(t > 0.0f)) {
    probs[ref_argmax(logits, vocab)] = 1.0;
    return 1;
  }
  scored *s = malloc((size_t)vocab * sizeof *s);
  for (int i = 0; i < vocab; i++) {
    s[i].v = isnan(logits[i]) ? -INFINITY : (double)logits[i] / t;
    s[i].i = i;
  }
  qsort(s, (size_t)vocab, sizeof *s, by_value_desc);
  const double mx = s[0].v;
  /* every filter keeps a prefix of the sorted order (ties kept together) */
  int kept = vocab;
  if (top_k > 0 && top_k < vocab) {
    const double kth = s[top_k - 1].v;
    kept = top_k;
    while (kept < vocab && s[kept].v >= kth) kept++;
  }
  double zk = 0.0;
  for (int j = 0; j < kept; j++) zk += exp(s[j].v - mx);
  if (top_p < 1.0f) {
    const double p = top_p > 1e-7f ? top_p : 1e-7;
    double above = 0.0; /* mass of values strictly greater than s[j] */
    int j = 0;
    while (j < kept) {
      int end = j;
      double group = 0.0;
      while (end < kept && s[end].v == s[j].v) group += exp(s[end++].v - mx);
      if (!(above < p * zk)) break;
      above += group;
      j = end;
    }
    kept = j;
  }
  if (min_p > 0.0f) {
    const double mp = min_p < 1.0f ? min_p : 1.0;
    int j = 0;
    while (j < kept && exp(s[j].v - mx) >= mp) j++;
    kept = j;
  }
  double z = 0.0;
  for (int j = 0; j < kept; j++) z += exp(s[j].v - mx);
  for (int j = 0; j < kept; j++) probs[s[j].i] = exp(s[j].v - mx) / z;
  free(s);
  return kept;
}

/* ---- a whole model --------------------------------------------------------------------------------- */

/* y[n][m] = x[n][k] . w[m][k]^T (+ bias), fp32 weights */
static void matmul(float *y, const float *x, const float *w, const float *bias, int n, int m, int k) {
  for (int r = 0; r < n; r++)
    for (int c = 0; c < m; c++) {
      double acc = bias ? bias[c] : 0.0;
      for (int i = 0; i < k; i++) acc += (double)x[(size_t)r * k + i] * w[(size_t)c * k + i];
      y[(size_t)r * m + c] = (float)acc;
    }
}

static void rmsnorm_f32(float *y, const float *x, const float *w, int n, int dim, float eps) {
  for (int t = 0; t < n; t++) {
    double ss = 0.0;
    for (int i = 0; i < dim; i++) ss += (double)x[(size_t)t * dim + i] * x[(size_t)t * dim + i];
    const double inv = 1.0 / sqrt(ss / dim + eps);
    for (int i = 0; i < dim; i++) y[(size_t)t * dim + i] = (float)(x[(size_t)t * dim + i] * inv * w[i]);
  }
}

/* rotate_half on n_heads heads of each row (row length stride) */
static void rope_rows(float *v, int n, int stride, int n_heads, int hd, const float *cos_sin) {
  const int half = hd / 2;
  for (int t = 0; t < n; t++)
    for (int h = 0; h < n_heads; h++) {
      float *x = v + (size_t)t * stride + (size_t)h * hd;
      for (int i = 0; i < half; i++) {
        const double c = cos_sin[((size_t)t * half + i) * 2], s = cos_sin[((size_t)t * half + i) * 2 + 1];
        const double x0 = x[i], x1 = x[i + half];
        x[i] = (float)(x0 * c - x1 * s);
        x[i + half] = (float)(x1 * c + x0 * s);
      }
    }
}

void ref_model_logits(const ref_model *m, const int32_t *tokens, int len, int from, float *logits) {
  const twin_model_config *cfg = &m->cfg;
  const int dim = cfg->dim, hidden = cfg->hidden_dim, nh = cfg->n_heads, nkv = cfg->n_kv_heads;
  const int hd = cfg->head_dim, qd = nh * hd, kvd = nkv * hd, group = nh / nkv;
  const int window = cfg->sliding_window;
  if (len < 1 || from < 0 || from >= len) return;
  float *x = malloc(sizeof(float) * (size_t)len * dim), *y = malloc(sizeof(float) * (size_t)len * dim);
  float *q = malloc(sizeof(float) * (size_t)len * qd), *k = malloc(sizeof(float) * (size_t)len * kvd);
  float *v = malloc(sizeof(float) * (size_t)len * kvd), *att = malloc(sizeof(float) * (size_t)len * qd);
  float *g = malloc(sizeof(float) * (size_t)len * hidden), *u = malloc(sizeof(float) * (size_t)len * hidden);
  float *tmp = malloc(sizeof(float) * (size_t)len * dim);
  float *cos_sin = malloc(sizeof(float) * (size_t)len * hd);
  double *inv_freq = malloc(sizeof(double) * (size_t)(hd / 2));
  int32_t *pos = calloc((size_t)len, sizeof(int32_t));
  double *w = malloc(sizeof(double) * (size_t)len);
  for (int t = 0; t < len; t++) pos[t] = t;
  ref_rope_frequencies(cfg, inv_freq);
  ref_rope_table(cos_sin, pos, inv_freq, len, hd);

  for (int t = 0; t < len; t++)
    memcpy(x + (size_t)t * dim, m->embed + (size_t)tokens[t] * dim, sizeof(float) * (size_t)dim);
  for (int l = 0; l < cfg->n_layers; l++) {
    const ref_layer *L = &m->layers[l];
    rmsnorm_f32(y, x, L->attn_norm, len, dim, cfg->norm_eps);
    matmul(q, y, L->wq, L->bq, len, qd, dim);
    matmul(k, y, L->wk, L->bk, len, kvd, dim);
    matmul(v, y, L->wv, L->bv, len, kvd, dim);
    rope_rows(q, len, qd, nh, hd, cos_sin);
    rope_rows(k, len, kvd, nkv, hd, cos_sin);
    const double scale = 1.0 / sqrt((double)hd);
    for (int t = 0; t < len; t++) {
      const int lo = window > 0 && t + 1 > window ? t + 1 - window : 0;
      for (int h = 0; h < nh; h++) {
        const float *qv = q + (size_t)t * qd + (size_t)h * hd;
        const int kh = h / group;
        double mx = -INFINITY, sum = 0.0;
        for (int p = lo; p <= t; p++) {
          double dot = 0.0;
          for (int d = 0; d < hd; d++) dot += (double)qv[d] * k[(size_t)p * kvd + (size_t)kh * hd + d];
          w[p] = dot * scale;
          if (w[p] > mx) mx = w[p];
        }
        for (int p = lo; p <= t; p++) sum += (w[p] = exp(w[p] - mx));
        for (int d = 0; d < hd; d++) {
          double acc = 0.0;
          for (int p = lo; p <= t; p++) acc += w[p] * v[(size_t)p * kvd + (size_t)kh * hd + d];
          att[(size_t)t * qd + (size_t)h * hd + d] = (float)(acc / sum);
        }
      }
    }
    matmul(tmp, att, L->wo, NULL, len, dim, qd);
    for (size_t i = 0; i < (size_t)len * dim; i++) x[i] += tmp[i];
    rmsnorm_f32(y, x, L->ffn_norm, len, dim, cfg->norm_eps);
    matmul(g, y, L->w_gate, NULL, len, hidden, dim);
    matmul(u, y, L->w_up, NULL, len, hidden, dim);
    for (size_t i = 0; i < (size_t)len * hidden; i++) g[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
    matmul(tmp, g, L->w_down, NULL, len, dim, hidden);
    for (size_t i = 0; i < (size_t)len * dim; i++) x[i] += tmp[i];
  }
  rmsnorm_f32(y, x + (size_t)from * dim, m->final_norm, len - from, dim, cfg->norm_eps);
  matmul(logits, y, m->lm_head, NULL, len - from, cfg->vocab_size, dim);
  free(x); free(y); free(q); free(k); free(v); free(att); free(g); free(u); free(tmp);
  free(cos_sin); free(inv_freq); free(pos); free(w);
}
