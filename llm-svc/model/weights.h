/* llm-svc/model/weights.h — a set of named tensors memory-mapped from safetensors files
 * (model.safetensors, or shards listed by model.safetensors.index.json) or from a GGUF file.
 * Every header field is validated on open; errors name the file, the tensor and the offset.
 * The set owns its mappings; tensors borrow them until twin_weights_destroy. */
#ifndef TWIN_MODEL_WEIGHTS_H
#define TWIN_MODEL_WEIGHTS_H

#include "common/error.h"
#include "llm-svc/model/tensor.h"

typedef struct twin_weights twin_weights;

/* dir holds model.safetensors or model.safetensors.index.json + shards. */
int twin_weights_open_safetensors_dir(twin_weights **out, const char *dir, twin_err *err);
/* One .safetensors file. */
int twin_weights_open_safetensors_file(twin_weights **out, const char *path, twin_err *err);

/* NULL when absent. Names are the Hugging Face names ("model.layers.0.self_attn.q_proj.weight"). */
const twin_tensor *twin_weights_get(const twin_weights *w, const char *name);
size_t twin_weights_count(const twin_weights *w);
const twin_tensor *twin_weights_at(const twin_weights *w, size_t i);
void twin_weights_destroy(twin_weights *w);

#endif
