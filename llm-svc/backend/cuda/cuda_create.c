/* llm-svc/backend/cuda/cuda_create.c — twin_backend_cuda_create: binds the checkpoint's
 * tensors by their Hugging Face names (shapes and dtypes, block formats included, checked
 * against the config by the model layer) and builds the backend from them. Kept apart from
 * cuda_backend.c so the GPU harnesses can build the backend from in-memory tensors without the
 * weights reader. */
#include "llm-svc/backend/cuda/cuda_backend.h"

int twin_backend_cuda_create(const twin_model_config *cfg, const twin_weights *w,
                             const twin_backend_opts *opts, twin_backend **out, twin_err *err) {
  *out = NULL;
  twin_llama_tensors tensors;
  int rc = twin_model_tensors_bind(&tensors, w, cfg, err);
  if (rc) return rc;
  rc = twin_backend_cuda_create_from(cfg, &tensors, opts, out, err);
  twin_llama_tensors_free(&tensors);
  return rc;
}
