/* llm-svc/model/tensor.h — a named tensor inside a memory-mapped weights file, and the weight
 * types we read. Shapes are row-major, outermost first, in Hugging Face order: a linear
 * layer's weight is [out_features][in_features]. The data pointer borrows the mapping. */
#ifndef TWIN_MODEL_TENSOR_H
#define TWIN_MODEL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  TWIN_DT_F32 = 0,
  TWIN_DT_F16,
  TWIN_DT_BF16,
  TWIN_DT_Q8_0,
  TWIN_DT_Q4_K,
  TWIN_DT_Q6_K,
  TWIN_DT_Q5_K,
  TWIN_DT_Q4_0,
  TWIN_DT_I32,
  TWIN_DT_I64,
  TWIN_DT_COUNT
} twin_dtype;

typedef struct twin_tensor {
  char name[128];
  twin_dtype dtype;
  int ndim;
  int64_t shape[4];   /* row-major, outermost first */
  const void *data;   /* borrowed: points into the file mapping */
  size_t nbytes;
} twin_tensor;

const char *twin_dtype_name(twin_dtype t);
int64_t twin_tensor_numel(const twin_tensor *t);

/* Converts n elements of a row starting at element `first` of t (any dtype, quantized blocks
 * included when `first` is block-aligned) to float32. Returns 0 or TWIN_EUNSUPPORTED. */
int twin_tensor_to_f32(const twin_tensor *t, int64_t first, int64_t n, float *out);

/* Scalar conversions used across backends. */
float twin_bf16_to_f32(uint16_t h);
uint16_t twin_f32_to_bf16(float f);   /* round to nearest even */
float twin_f16_to_f32(uint16_t h);
uint16_t twin_f32_to_f16(float f);

#endif
