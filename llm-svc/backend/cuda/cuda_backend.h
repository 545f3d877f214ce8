/* llm-svc/backend/cuda/cuda_backend.h — the CUDA backend's entry points beyond the common
 * interface (engine/backend.h): creation from already bound tensors (what
 * twin_backend_cuda_create does after binding the checkpoint's names, and what the GPU harness
 * uses with in-memory weights), and a forward step that samples on the device and returns token
 * ids instead of logits. */
#ifndef TWIN_BACKEND_CUDA_BACKEND_H
#define TWIN_BACKEND_CUDA_BACKEND_H

#include <stdint.h>

#include "llm-svc/engine/backend.h"
#include "llm-svc/model/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates the backend from tensors bound by twin_model_tensors_bind (or built in memory by a
 * test; tensor data may also be device memory), borrowed only during the call: f32, f16 and
 * bf16 are converted to bf16 on the device, GGUF block formats (quant.h) are kept as stored
 * (the embedding table is decoded to bf16); q/k/v are stacked into one QKV matrix and gate/up
 * into one gate/up matrix per layer when they share a storage type. Architectures: llama,
 * mistral, qwen2 (gemma3 is refused with TWIN_EUNSUPPORTED).
 * opts may be NULL (defaults: 2048 tokens a step, 256 sequences, 90% of the device memory left
 * after weights and scratch for the KV pool). Steps that bring one token per sequence run as
 * CUDA graphs (one per batch-size bucket, captured on the bucket's second step) unless the
 * environment has TWIN_CUDA_GRAPHS=0 at create. On success *out owns the CUDA stream, the cuBLAS
 * handle, the graphs, the weights, the KV pool and the scratch; release with
 * twin_backend_destroy. The backend is used by one thread at a time. */
int twin_backend_cuda_create_from(const twin_model_config *cfg, const twin_llama_tensors *tensors,
                                  const twin_backend_opts *opts, twin_backend **out,
                                  twin_err *err);

/* Per-sequence sampling parameters, host arrays of batch->n_seqs entries (see
 * twin_cuda_sample in kernels.h for their meaning). */
typedef struct twin_cuda_sampling {
  const float *temperature;
  const int32_t *top_k;
  const float *top_p;
  const float *min_p;
  const uint64_t *seed;
  const uint64_t *offset;
} twin_cuda_sampling;

/* One forward step like ops->forward with all_logits = 0, then one token per sequence sampled on
 * the device (logits never leave it): ids[n_seqs]. b must be a CUDA backend. The harnesses' form
 * (parameter arrays); the engine calls the same step through ops->forward_sample (backend.h). */
int twin_backend_cuda_forward_sample(twin_backend *b, const twin_batch *batch,
                                     const twin_cuda_sampling *sampling, int32_t *ids,
                                     twin_err *err);

#ifdef __cplusplus
}
#endif

#endif
