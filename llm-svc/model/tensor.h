/* llm-svc/model/tensor.h — a named tensor inside a memory-mapped weights file, and the weight
 * types we read. Shapes are row-major, outermost first, in Hugging Face order: a linear
 * layer's weight is [out_features][in_features]. The data pointer borrows the mapping; so does
 * the file name, which is kept so that later errors (a wrong shape, an unsupported dtype) can
 * name the file and the offset of the tensor. */
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
  TWIN_DT_Q4_1,
  TWIN_DT_Q5_0,
  TWIN_DT_COUNT
} twin_dtype;

#define TWIN_TENSOR_MAX_DIMS 4

typedef struct twin_tensor {
  char name[128];
  twin_dtype dtype;
  int ndim;
  int64_t shape[TWIN_TENSOR_MAX_DIMS]; /* row-major, outermost first */
  const void *data;   /* borrowed: points into the file mapping; no alignment promised */
  size_t nbytes;
  const char *file;   /* borrowed: path of the file holding it (for messages) */
  uint64_t file_offset; /* byte offset of data within that file */
} twin_tensor;

/* "f32", "f16", "bf16", "q8_0" ...; "?" for a value out of range. */
const char *twin_dtype_name(twin_dtype t);
/* Bytes per element of an unquantized dtype; 0 for block-quantized ones. */
size_t twin_dtype_size(twin_dtype t);
/* Block-quantized dtypes (the ggml block formats of quant.h) store a row as blocks of
 * twin_dtype_block_elems elements, twin_dtype_block_bytes bytes each, along the innermost
 * dimension. Unquantized dtypes count as blocks of one element. 0 for a value out of range. */
int twin_dtype_block_elems(twin_dtype t);
size_t twin_dtype_block_bytes(twin_dtype t);
int twin_dtype_is_quantized(twin_dtype t);
/* Bytes of n consecutive elements (n a multiple of the block length); 0 otherwise. */
size_t twin_dtype_bytes_for(twin_dtype t, int64_t n);
int64_t twin_tensor_numel(const twin_tensor *t);

/* Converts n elements starting at element `first` of t (row-major) to float32.
 * Supported: f32, f16, bf16 and the block formats of quant.h (any range: a block cut by the
 * range is decoded whole into a scratch block). Returns 0, TWIN_EINVAL when [first, first+n) is
 * outside the tensor, or TWIN_EUNSUPPORTED for other dtypes (i32, i64). */
int twin_tensor_to_f32(const twin_tensor *t, int64_t first, int64_t n, float *out);

/* Scalar conversions used across backends. */
float twin_bf16_to_f32(uint16_t h);
uint16_t twin_f32_to_bf16(float f);   /* round to nearest even; NaN stays NaN */
float twin_f16_to_f32(uint16_t h);
uint16_t twin_f32_to_f16(float f);    /* round to nearest even; overflow gives +-inf */

#endif
