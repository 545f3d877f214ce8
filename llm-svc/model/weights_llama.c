/* llm-svc/model/weights_llama.c — binds the tensors of a checkpoint (llama, mistral, qwen2 and
 * gemma3: Hugging Face names) and checks each shape and dtype against the config, so a
 * backend converts only tensors known to be right. A missing tensor, a wrong shape or a dtype
 * we cannot convert is refused naming the tensor, its file and its offset. Two entry points:
 * the Llama family with float weights (backends that run only that), and every architecture
 * and dtype, block-quantized ones included (the CPU backend). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm-svc/model/weights.h"

static void shape_text(char *out, size_t cap, const int64_t *shape, int ndim) {
  size_t used = (size_t)snprintf(out, cap, "[");
  for (int i = 0; i < ndim && used < cap; i++)
    used += (size_t)snprintf(out + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (used < cap) snprintf(out + used, cap - used, "]");
}

/* Finds `name` and checks it has shape [rows] (cols == 0) or [rows][cols], and a dtype we
 * convert: f32, f16, bf16, and with allow_blocks the block formats (rows of whole blocks). */
static int bind_tensor(const twin_weights *w, const char *name, int64_t rows, int64_t cols,
                       int allow_blocks, const twin_tensor **out, twin_err *err) {
  const twin_tensor *t = twin_weights_get(w, name);
  if (!t)
    return twin_err_set(err, TWIN_ENOTFOUND, "%s: missing tensor '%s'", twin_weights_source(w),
                        name);
  int64_t want[2] = {rows, cols};
  int want_ndim = cols ? 2 : 1;
  int same = t->ndim == want_ndim;
  for (int i = 0; same && i < want_ndim; i++) same = t->shape[i] == want[i];
  if (!same) {
    char have_text[96], want_text[96];
    shape_text(have_text, sizeof have_text, t->shape, t->ndim);
    shape_text(want_text, sizeof want_text, want, want_ndim);
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s' at offset %llu has shape %s but the config wants %s",
                        t->file, name, (unsigned long long)t->file_offset, have_text, want_text);
  }
  const int is_float = t->dtype == TWIN_DT_F32 || t->dtype == TWIN_DT_F16 || t->dtype == TWIN_DT_BF16;
  if (!is_float && !(allow_blocks && twin_dtype_is_quantized(t->dtype)))
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "%s: tensor '%s' at offset %llu has dtype %s; weights must be f32, f16 "
                        "or bf16%s",
                        t->file, name, (unsigned long long)t->file_offset,
                        twin_dtype_name(t->dtype),
                        allow_blocks ? " or a block format (q4_0, q4_1, q5_0, q8_0, q4_k, q5_k, q6_k)" : "");
  if (!is_float && t->shape[t->ndim - 1] % twin_dtype_block_elems(t->dtype) != 0)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s' at offset %llu: rows of %lld elements are not whole %s "
                        "blocks of %d", t->file, name, (unsigned long long)t->file_offset,
                        (long long)t->shape[t->ndim - 1], twin_dtype_name(t->dtype),
                        twin_dtype_block_elems(t->dtype));
  *out = t;
  return 0;
}

static int bind_layer(const twin_weights *w, const twin_model_config *cfg, int l,
                      int allow_blocks, twin_llama_layer_tensors *L, twin_err *err) {
  const int64_t dim = cfg->dim, q_rows = (int64_t)cfg->n_heads * cfg->head_dim,
                kv_rows = (int64_t)cfg->n_kv_heads * cfg->head_dim, hidden = cfg->hidden_dim;
  char name[128];
  int rc = 0;
#define BIND(field, suffix, rows, cols)                                                      \
  do {                                                                                       \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                            \
    if ((rc = bind_tensor(w, name, rows, cols, allow_blocks, &L->field, err))) return rc;   \
  } while (0)
  BIND(attn_norm, "input_layernorm.weight", dim, 0);
  BIND(wq, "self_attn.q_proj.weight", q_rows, dim);
  BIND(wk, "self_attn.k_proj.weight", kv_rows, dim);
  BIND(wv, "self_attn.v_proj.weight", kv_rows, dim);
  if (cfg->attn_bias) {
    BIND(bq, "self_attn.q_proj.bias", q_rows, 0);
    BIND(bk, "self_attn.k_proj.bias", kv_rows, 0);
    BIND(bv, "self_attn.v_proj.bias", kv_rows, 0);
  }
  BIND(wo, "self_attn.o_proj.weight", dim, q_rows);
  if (cfg->arch == TWIN_ARCH_GEMMA3) {
    BIND(q_norm, "self_attn.q_norm.weight", cfg->head_dim, 0);
    BIND(k_norm, "self_attn.k_norm.weight", cfg->head_dim, 0);
    BIND(post_attn_norm, "post_attention_layernorm.weight", dim, 0);
    BIND(ffn_norm, "pre_feedforward_layernorm.weight", dim, 0);
    BIND(post_ffn_norm, "post_feedforward_layernorm.weight", dim, 0);
  } else {
    BIND(ffn_norm, "post_attention_layernorm.weight", dim, 0);
  }
  BIND(w_gate, "mlp.gate_proj.weight", hidden, dim);
  BIND(w_up, "mlp.up_proj.weight", hidden, dim);
  BIND(w_down, "mlp.down_proj.weight", dim, hidden);
#undef BIND
  return 0;
}

static int bind_all(twin_llama_tensors *out, const twin_weights *w, const twin_model_config *cfg,
                    int allow_blocks, twin_err *err) {
  int rc;
  if ((rc = bind_tensor(w, "model.embed_tokens.weight", cfg->vocab_size, cfg->dim, allow_blocks,
                        &out->embed, err)) ||
      (rc = bind_tensor(w, "model.norm.weight", cfg->dim, 0, allow_blocks, &out->final_norm, err)))
    return rc;
  if (cfg->tie_embeddings) {
    out->lm_head = out->embed;
  } else if ((rc = bind_tensor(w, "lm_head.weight", cfg->vocab_size, cfg->dim, allow_blocks,
                               &out->lm_head, err))) {
    if (rc == TWIN_ENOTFOUND) twin_err_wrap(err, "tie_word_embeddings is false");
    return rc;
  }
  out->layers = calloc((size_t)cfg->n_layers, sizeof *out->layers);
  if (!out->layers) return twin_err_set(err, TWIN_ENOMEM, "out of memory binding tensors");
  out->n_layers = cfg->n_layers;
  for (int l = 0; l < cfg->n_layers; l++) {
    if ((rc = bind_layer(w, cfg, l, allow_blocks, &out->layers[l], err))) {
      twin_llama_tensors_free(out);
      return rc;
    }
  }
  return 0;
}

int twin_llama_tensors_bind(twin_llama_tensors *out, const twin_weights *w,
                            const twin_model_config *cfg, twin_err *err) {
  memset(out, 0, sizeof *out);
  if (cfg->arch != TWIN_ARCH_LLAMA && cfg->arch != TWIN_ARCH_MISTRAL &&
      cfg->arch != TWIN_ARCH_QWEN2)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "architecture '%s' is not a Llama-family model",
                        cfg->arch_name);
  return bind_all(out, w, cfg, 0, err);
}

int twin_model_tensors_bind(twin_llama_tensors *out, const twin_weights *w,
                            const twin_model_config *cfg, twin_err *err) {
  memset(out, 0, sizeof *out);
  if (cfg->arch != TWIN_ARCH_LLAMA && cfg->arch != TWIN_ARCH_MISTRAL &&
      cfg->arch != TWIN_ARCH_QWEN2 && cfg->arch != TWIN_ARCH_GEMMA3)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "architecture '%s' is not supported",
                        cfg->arch_name);
  return bind_all(out, w, cfg, 1, err);
}

void twin_llama_tensors_free(twin_llama_tensors *t) {
  if (!t) return;
  free(t->layers);
  t->layers = NULL;
  t->n_layers = 0;
}
