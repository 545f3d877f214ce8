/* llm-svc/model/rope.c — RoPE inverse frequencies from a model's config, shared by every
 * backend: plain theta^(-2i/d), Llama 3's scaling (high frequencies kept, low ones divided by
 * the factor, a smooth blend between) and linear scaling. Double precision. */
#include <math.h>

#include "llm-svc/model/config.h"

void twin_rope_inv_freq(const twin_model_config *cfg, double theta, int scaled, double *inv_freq) {
  const int half = cfg->head_dim / 2;
  const double two_pi = 6.283185307179586;
  for (int i = 0; i < half; i++) {
    double inv = 1.0 / pow(theta, (2.0 * i) / cfg->head_dim);
    if (scaled && cfg->rope_llama3) {
      const double factor = cfg->rope_factor, low = cfg->rope_low_freq_factor,
                   high = cfg->rope_high_freq_factor, old_len = cfg->rope_original_max_pos;
      const double wavelen = two_pi / inv;
      if (wavelen > old_len / low) {
        inv = inv / factor;
      } else if (wavelen >= old_len / high) {
        const double smooth = (old_len / wavelen - low) / (high - low);
        inv = (1.0 - smooth) * inv / factor + smooth * inv;
      }
    }
    if (scaled && cfg->rope_linear_factor > 0) inv /= cfg->rope_linear_factor;
    inv_freq[i] = inv;
  }
}
