/* llm-svc/model/gguf_weights.c — a GGUF file's tensors as a twin_weights set under Hugging Face
 * names (token_embd -> model.embed_tokens, blk.N.* -> model.layers.N.*, output -> lm_head...),
 * so the model binding and the backends see one naming whatever the file format. The set
 * shares the file's mapping, with one exception: GGUF files of the llama architecture store the
 * rows of each q and k head interleaved (pairs (i, i + head_dim/2) of the Hugging Face order
 * moved next to each other, for GGML's adjacent-pair rope); those rows are put back in the
 * Hugging Face order, whole rows at a time, so quantized rows move untouched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm-svc/model/gguf.h"

/* ---- names --------------------------------------------------------------------------------- */

static const struct {
  const char *gguf, *hf;
} global_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

/* blk.N.<gguf>.{weight,bias} -> model.layers.N.<hf>.{weight,bias} */
static const struct {
  const char *gguf, *hf;
} layer_names[] = {
    {"attn_norm", "input_layernorm"},
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"},
    {"post_attention_norm", "post_attention_layernorm"},
    {"post_ffw_norm", "post_feedforward_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

int twin_gguf_hf_name(const char *arch, const char *name, char *out, size_t cap) {
  const char *hf = NULL;
  for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
    if (strcmp(name, global_names[i].gguf) == 0) hf = global_names[i].hf;
  if (hf) return (size_t)snprintf(out, cap, "%s", hf) < cap ? 0 : TWIN_EINVAL;

  /* blk.<layer>.<base>.<suffix> */
  unsigned layer;
  int prefix = 0;
  if (sscanf(name, "blk.%u.%n", &layer, &prefix) == 1 && prefix > 0) {
    const char *base = name + prefix, *dot = strrchr(base, '.');
    if (dot && dot > base) {
      const size_t base_len = (size_t)(dot - base);
      if (base_len == 8 && strncmp(base, "ffn_norm", 8) == 0) {
        /* the norm before the MLP: Gemma 3 has one after attention too */
        hf = arch && strcmp(arch, "gemma3") == 0 ? "pre_feedforward_layernorm"
                                                 : "post_attention_layernorm";
      }
      for (size_t i = 0; !hf && i < sizeof layer_names / sizeof layer_names[0]; i++)
        if (strlen(layer_names[i].gguf) == base_len && strncmp(base, layer_names[i].gguf, base_len) == 0)
          hf = layer_names[i].hf;
      if (hf)
        return (size_t)snprintf(out, cap, "model.layers.%u.%s%s", layer, hf, dot) < cap ? 0
                                                                                        : TWIN_EINVAL;
    }
  }
  return (size_t)snprintf(out, cap, "%s", name) < cap ? 0 : TWIN_EINVAL;
}

/* ---- the set ------------------------------------------------------------------------------- */

typedef struct gguf_weights_owner {
  twin_gguf *gguf;
  uint8_t *reordered;  /* q and k tensors in Hugging Face row order, or NULL */
} gguf_weights_owner;

static void release_owner(void *p) {
  gguf_weights_owner *o = p;
  if (!o) return;
  twin_gguf_close(o->gguf);
  free(o->reordered);
  free(o);
}

/* 1 when name is blk.N.attn_q.* or blk.N.attn_k.*; *heads is the head count it splits into. */
static int interleaved_tensor(const char *name, int64_t q_heads, int64_t kv_heads,
                              int64_t *heads) {
  unsigned layer;
  int at = 0;
  if (sscanf(name, "blk.%u.%n", &layer, &at) != 1 || at == 0) return 0;
  if (!strcmp(name + at, "attn_q.weight") || !strcmp(name + at, "attn_q.bias")) {
    *heads = q_heads;
    return 1;
  }
  if (!strcmp(name + at, "attn_k.weight") || !strcmp(name + at, "attn_k.bias")) {
    *heads = kv_heads;
    return 1;
  }
  return 0;
}

/* Writes t's rows to dst in Hugging Face order: HF row h*hd + s*hd/2 + i is file row
 * h*hd + 2i + s. */
static int reorder_rows(const twin_tensor *t, int64_t heads, uint8_t *dst, twin_err *err) {
  const int64_t rows = t->shape[0];
  if (heads < 1 || rows % heads != 0 || (rows / heads) % 2 != 0)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s' at offset %llu: %lld rows do not split into %lld heads of "
                        "an even size", t->file, t->name, (unsigned long long)t->file_offset,
                        (long long)rows, (long long)heads);
  const int64_t head_dim = rows / heads, half = head_dim / 2;
  const size_t row_bytes = t->nbytes / (size_t)rows;
  const uint8_t *src = t->data;
  for (int64_t h = 0; h < heads; h++)
    for (int64_t s = 0; s < 2; s++)
      for (int64_t i = 0; i < half; i++)
        memcpy(dst + (size_t)(h * head_dim + s * half + i) * row_bytes,
               src + (size_t)(h * head_dim + 2 * i + s) * row_bytes, row_bytes);
  return 0;
}

int twin_gguf_to_weights(twin_gguf *g, twin_weights **out, twin_err *err) {
  *out = NULL;
  gguf_weights_owner *owner = calloc(1, sizeof *owner);
  const size_t n = twin_gguf_tensor_count(g);
  twin_tensor *renamed = calloc(n ? n : 1, sizeof *renamed);
  if (!owner || !renamed) {
    free(owner);
    free(renamed);
    twin_gguf_close(g);
    return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  }
  owner->gguf = g;
  const char *path = twin_gguf_path(g);
  char *arch = NULL;
  int rc = twin_gguf_get_string_dup(g, "general.architecture", &arch, err);
  if (rc == TWIN_ENOTFOUND) twin_err_wrap(err, "a model file names its architecture");

  /* llama files: q/k heads to put back in order */
  int64_t q_heads = 0, kv_heads = 0;
  const int interleaved = rc == 0 && strcmp(arch, "llama") == 0;
  if (interleaved) {
    char key[64];
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    rc = twin_gguf_get_int(g, key, 1, 1 << 16, &q_heads, err);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    int kv_rc = rc ? 0 : twin_gguf_get_int(g, key, 1, 1 << 16, &kv_heads, err);
    if (kv_rc == TWIN_ENOTFOUND) {
      twin_err_clear(err);
      kv_heads = q_heads;
    } else if (kv_rc) {
      rc = kv_rc;
    }
  }
  size_t reordered_bytes = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    int64_t heads;
    if (interleaved && interleaved_tensor(twin_gguf_tensor_at(g, i)->name, q_heads, kv_heads, &heads))
      reordered_bytes += (twin_gguf_tensor_at(g, i)->nbytes + 63) & ~(size_t)63;
  }
  if (rc == 0 && reordered_bytes && !(owner->reordered = malloc(reordered_bytes)))
    rc = twin_err_set(err, TWIN_ENOMEM, "%s: out of memory for %zu bytes of q/k rows", path,
                      reordered_bytes);
  size_t used = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const twin_tensor *t = twin_gguf_tensor_at(g, i);
    renamed[i] = *t;
    if (twin_gguf_hf_name(arch, t->name, renamed[i].name, sizeof renamed[i].name) != 0)
      rc = twin_err_set(err, TWIN_EFORMAT, "%s: tensor '%s': its Hugging Face name is too long",
                        path, t->name);
    int64_t heads;
    if (rc == 0 && interleaved && interleaved_tensor(t->name, q_heads, kv_heads, &heads)) {
      uint8_t *dst = owner->reordered + used;
      used += (t->nbytes + 63) & ~(size_t)63;
      rc = reorder_rows(t, heads, dst, err);
      renamed[i].data = dst;
    }
  }
  free(arch);
  if (rc) {
    free(renamed);
    release_owner(owner);
    return rc;
  }
  rc = twin_weights_create_view(out, path, renamed, n, owner, release_owner, err);
  free(renamed);
  return rc;
}

int twin_weights_open_gguf(twin_weights **out, const char *path, twin_err *err) {
  *out = NULL;
  twin_gguf *g;
  int rc = twin_gguf_open(&g, path, err);
  if (rc) return rc;
  return twin_gguf_to_weights(g, out, err);
}
