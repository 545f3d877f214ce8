/* llm-svc/model/gguf.c — the GGUF reader. A file is: magic "GGUF", u32 version, u64 tensor
 * count, u64 metadata count; the metadata entries (u64-length key, u32 value type, value;
 * strings are u64 length + bytes, arrays u32 element type + u64 count + elements); the tensor
 * infos (name, u32 dimension count, u64 dimensions innermost first, u32 ggml type, u64 offset
 * into the data section); padding to general.alignment (default 32); the data section.
 * Everything is read through a bounds-checked cursor over the mapping, every count is checked
 * against the bytes left before anything is allocated for it, and every tensor's extent against
 * the data section and its neighbours. Errors name the file, the key or tensor, and the offset. */
#include "llm-svc/model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u          /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_KEY 65535               /* the format's limit on key length */
#define GGUF_MAX_ARRAY_DEPTH 3           /* arrays of arrays of arrays at most */

struct twin_gguf {
  char *path;                 /* owned */
  const uint8_t *base;        /* the whole file, read-only */
  size_t size;
  uint32_t version, alignment;
  uint64_t data_offset;
  twin_gguf_kv *kvs;          /* [n_kvs], file order; keys owned */
  size_t n_kvs;
  twin_tensor *tensors;       /* [n_tensors], file order */
  size_t n_tensors;
};

/* ---- type tables --------------------------------------------------------------------------- */

const char *twin_gguf_type_name(twin_gguf_type t) {
  static const char *names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* Size of a fixed-size value type, 0 for string / array / unknown. */
static size_t scalar_size(uint32_t t) {
  switch (t) {
    case TWIN_GGUF_U8: case TWIN_GGUF_I8: case TWIN_GGUF_BOOL: return 1;
    case TWIN_GGUF_U16: case TWIN_GGUF_I16: return 2;
    case TWIN_GGUF_U32: case TWIN_GGUF_I32: case TWIN_GGUF_F32: return 4;
    case TWIN_GGUF_U64: case TWIN_GGUF_I64: case TWIN_GGUF_F64: return 8;
    default: return 0;
  }
}

/* ggml tensor types by their number in the file; dtype < 0: known but not run by this build. */
static const struct {
  uint32_t id;
  const char *name;
  int dtype;
} ggml_types[] = {
    {0, "f32", TWIN_DT_F32},    {1, "f16", TWIN_DT_F16},       {2, "q4_0", TWIN_DT_Q4_0},
    {3, "q4_1", TWIN_DT_Q4_1},  {6, "q5_0", TWIN_DT_Q5_0},     {7, "q5_1", -1},
    {8, "q8_0", TWIN_DT_Q8_0},  {9, "q8_1", -1},               {10, "q2_k", -1},
    {11, "q3_k", -1},           {12, "q4_k", TWIN_DT_Q4_K},    {13, "q5_k", TWIN_DT_Q5_K},
    {14, "q6_k", TWIN_DT_Q6_K}, {15, "q8_k", -1},              {16, "iq2_xxs", -1},
    {17, "iq2_xs", -1},         {18, "iq3_xxs", -1},           {19, "iq1_s", -1},
    {20, "iq4_nl", -1},         {21, "iq3_s", -1},             {22, "iq2_s", -1},
    {23, "iq4_xs", -1},         {24, "i8", -1},                {25, "i16", -1},
    {26, "i32", TWIN_DT_I32},   {27, "i64", TWIN_DT_I64},      {28, "f64", -1},
    {29, "iq1_m", -1},          {30, "bf16", TWIN_DT_BF16},    {34, "tq1_0", -1},
    {35, "tq2_0", -1},          {39, "mxfp4", -1},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *twin_gguf_ggml_type_name(uint32_t id) {
  for (size_t i = 0; i < N_GGML_TYPES; i++)
    if (ggml_types[i].id == id) return ggml_types[i].name;
  return "?";
}

/* ---- the cursor ---------------------------------------------------------------------------- */

typedef struct cursor {
  const uint8_t *base;
  uint64_t size, pos;
  const char *path;
} cursor;

/* n more bytes must be there; `what` says what was being read (for the message). */
static int need(const cursor *c, uint64_t n, const char *what, twin_err *err) {
  if (n <= c->size - c->pos) return 0;
  return twin_err_set(err, TWIN_EFORMAT,
                      "%s: %s at offset %llu needs %llu bytes but the file ends at %llu "
                      "(truncated or corrupt)",
                      c->path, what, (unsigned long long)c->pos, (unsigned long long)n,
                      (unsigned long long)c->size);
}

static uint32_t load_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_u64(const uint8_t *p) { return load_u32(p) | (uint64_t)load_u32(p + 4) << 32; }

static int read_u32(cursor *c, uint32_t *v, const char *what, twin_err *err) {
  int rc = need(c, 4, what, err);
  if (rc) return rc;
  *v = load_u32(c->base + c->pos);
  c->pos += 4;
  return 0;
}

static int read_u64(cursor *c, uint64_t *v, const char *what, twin_err *err) {
  int rc = need(c, 8, what, err);
  if (rc) return rc;
  *v = load_u64(c->base + c->pos);
  c->pos += 8;
  return 0;
}

/* A string: u64 length, bytes. *s points into the mapping. */
static int read_string(cursor *c, const uint8_t **s, uint64_t *len, const char *what,
                       twin_err *err) {
  char length_what[160];
  snprintf(length_what, sizeof length_what, "the length of %s", what);
  int rc = read_u64(c, len, length_what, err);
  if (rc) return rc;
  if (*len > c->size - c->pos)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: %s at offset %llu says %llu bytes but only %llu remain before the "
                        "end of the file (truncated or corrupt)",
                        c->path, what, (unsigned long long)(c->pos - 8), (unsigned long long)*len,
                        (unsigned long long)(c->size - c->pos));
  *s = c->base + c->pos;
  c->pos += *len;
  return 0;
}

/* Steps over a value of type t, checking every length and count against the file. */
static int skip_value(cursor *c, uint32_t t, int depth, const char *what, twin_err *err) {
  size_t fixed = scalar_size(t);
  if (fixed) {
    int rc = need(c, fixed, what, err);
    if (rc == 0) c->pos += fixed;
    return rc;
  }
  if (t == TWIN_GGUF_STRING) {
    const uint8_t *s;
    uint64_t len;
    return read_string(c, &s, &len, what, err);
  }
  if (t != TWIN_GGUF_ARRAY)
    return twin_err_set(err, TWIN_EFORMAT, "%s: %s at offset %llu has unknown value type %u",
                        c->path, what, (unsigned long long)c->pos, t);
  const uint64_t at = c->pos;
  uint32_t elem;
  uint64_t count;
  int rc;
  if ((rc = read_u32(c, &elem, what, err)) || (rc = read_u64(c, &count, what, err))) return rc;
  if (elem == TWIN_GGUF_ARRAY && depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
    return twin_err_set(err, TWIN_EFORMAT, "%s: %s at offset %llu nests arrays deeper than %d",
                        c->path, what, (unsigned long long)at, GGUF_MAX_ARRAY_DEPTH);
  if (elem > TWIN_GGUF_F64)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: %s at offset %llu is an array of unknown element type %u", c->path,
                        what, (unsigned long long)at, elem);
  /* the smallest an element can be: its fixed size, 8 (a string's length), 12 (an array's) */
  size_t smallest = scalar_size(elem) ? scalar_size(elem) : elem == TWIN_GGUF_STRING ? 8 : 12;
  if (count > (c->size - c->pos) / smallest)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: %s at offset %llu says %llu elements of type %s, more than the %llu "
                        "bytes left can hold",
                        c->path, what, (unsigned long long)at, (unsigned long long)count,
                        twin_gguf_type_name((twin_gguf_type)elem),
                        (unsigned long long)(c->size - c->pos));
  if (scalar_size(elem)) {
    c->pos += count * scalar_size(elem);
    return 0;
  }
  for (uint64_t i = 0; i < count; i++)
    if ((rc = skip_value(c, elem, depth + 1, what, err))) return rc;
  return 0;
}

/* ---- header and metadata ------------------------------------------------------------------- */

static int compare_kv_key(const void *a, const void *b) {
  return strcmp((*(const twin_gguf_kv *const *)a)->key, (*(const twin_gguf_kv *const *)b)->key);
}

static int read_metadata(twin_gguf *g, cursor *c, uint64_t n_kv, twin_err *err) {
  /* an entry takes at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) bytes */
  if (n_kv > (c->size - c->pos) / 14)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: the header (offset 16) says %llu metadata entries, more than the %llu "
                        "bytes after it can hold",
                        g->path, (unsigned long long)n_kv, (unsigned long long)(c->size - c->pos));
  g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
  if (!g->kvs) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", g->path);
  for (uint64_t i = 0; i < n_kv; i++) {
    twin_gguf_kv *kv = &g->kvs[i];
    char what[200];
    snprintf(what, sizeof what, "metadata entry %llu (key)", (unsigned long long)i);
    kv->offset = c->pos;
    const uint8_t *key;
    uint64_t key_len;
    int rc = read_string(c, &key, &key_len, what, err);
    if (rc) return rc;
    if (key_len == 0 || key_len > GGUF_MAX_KEY || memchr(key, 0, key_len))
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: metadata entry %llu at offset %llu: key of %llu bytes is empty, "
                          "longer than %d or holds a NUL byte",
                          g->path, (unsigned long long)i, (unsigned long long)kv->offset,
                          (unsigned long long)key_len, GGUF_MAX_KEY);
    char *copy = malloc(key_len + 1);
    if (!copy) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", g->path);
    memcpy(copy, key, key_len);
    copy[key_len] = 0;
    kv->key = copy;
    g->n_kvs = i + 1;
    snprintf(what, sizeof what, "metadata key '%.120s'", copy);
    uint32_t type;
    if ((rc = read_u32(c, &type, what, err))) return rc;
    if (type > TWIN_GGUF_F64)
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: metadata key '%.120s' at offset %llu has unknown value type %u",
                          g->path, copy, (unsigned long long)kv->offset, type);
    kv->type = (twin_gguf_type)type;
    kv->elem_type = kv->type;
    kv->count = 1;
    if (type == TWIN_GGUF_ARRAY) {
      if ((rc = need(c, 12, what, err))) return rc;
      kv->elem_type = (twin_gguf_type)load_u32(c->base + c->pos);
      kv->count = load_u64(c->base + c->pos + 4);
      kv->value = c->base + c->pos + 12;
    } else {
      kv->value = c->base + c->pos;
    }
    if ((rc = skip_value(c, type, 0, what, err))) return rc;
  }
  /* a key twice is a lie about which value holds */
  if (n_kv > 1) {
    twin_gguf_kv **sorted = malloc(n_kv * sizeof *sorted);
    if (!sorted) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_kv; i++) sorted[i] = &g->kvs[i];
    qsort(sorted, n_kv, sizeof *sorted, compare_kv_key);
    int rc = 0;
    for (uint64_t i = 1; i < n_kv && !rc; i++)
      if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0)
        rc = twin_err_set(err, TWIN_EFORMAT,
                          "%s: metadata key '%.120s' appears twice (offsets %llu and %llu)",
                          g->path, sorted[i]->key, (unsigned long long)sorted[i - 1]->offset,
                          (unsigned long long)sorted[i]->offset);
    free(sorted);
    if (rc) return rc;
  }
  return 0;
}

static int read_alignment(twin_gguf *g, twin_err *err) {
  g->alignment = GGUF_DEFAULT_ALIGNMENT;
  int64_t v;
  int rc = twin_gguf_get_int(g, "general.alignment", 1, 1 << 30, &v, err);
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(err);
    return 0;
  }
  if (rc) return rc;
  if ((v & (v - 1)) != 0)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: metadata key 'general.alignment' at offset %llu is %lld, not a power "
                        "of two",
                        g->path, (unsigned long long)twin_gguf_find(g, "general.alignment")->offset,
                        (long long)v);
  g->alignment = (uint32_t)v;
  return 0;
}

/* ---- tensor infos -------------------------------------------------------------------------- */

typedef struct tensor_span {
  uint64_t begin, end;  /* within the data section */
  size_t index;
} tensor_span;

static int compare_span(const void *a, const void *b) {
  const tensor_span *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static int compare_span_name(const void *a, const void *b, void *tensors) {
  const twin_tensor *t = tensors;
  return strcmp(t[((const tensor_span *)a)->index].name, t[((const tensor_span *)b)->index].name);
}

static int read_tensor_info(twin_gguf *g, cursor *c, uint64_t i, uint64_t *offsets,
                            twin_err *err) {
  twin_tensor *t = &g->tensors[i];
  const uint64_t at = c->pos;
  char what[200];
  snprintf(what, sizeof what, "tensor info %llu (name)", (unsigned long long)i);
  const uint8_t *name;
  uint64_t name_len;
  int rc = read_string(c, &name, &name_len, what, err);
  if (rc) return rc;
  if (name_len == 0 || name_len >= sizeof t->name || memchr(name, 0, name_len))
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor info %llu at offset %llu: name of %llu bytes is empty, longer "
                        "than %zu or holds a NUL byte",
                        g->path, (unsigned long long)i, (unsigned long long)at,
                        (unsigned long long)name_len, sizeof t->name - 1);
  memcpy(t->name, name, name_len);
  t->name[name_len] = 0;
  t->file = g->path;
  snprintf(what, sizeof what, "tensor '%s' (info at offset %llu)", t->name, (unsigned long long)at);
  uint32_t n_dims;
  if ((rc = read_u32(c, &n_dims, what, err))) return rc;
  if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
    return twin_err_set(err, TWIN_EFORMAT, "%s: %s has %u dimensions (1 to %d allowed)", g->path,
                        what, n_dims, GGUF_MAX_DIMS);
  uint64_t ne[GGUF_MAX_DIMS], numel = 1;
  for (uint32_t d = 0; d < n_dims; d++) {
    if ((rc = read_u64(c, &ne[d], what, err))) return rc;
    if (ne[d] == 0 || ne[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, ne[d], &numel) ||
        numel > ((uint64_t)1 << 62))
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: %s: dimension %u is %llu (zero, or the element count overflows)",
                          g->path, what, d, (unsigned long long)ne[d]);
  }
  uint32_t type;
  if ((rc = read_u32(c, &type, what, err)) || (rc = read_u64(c, &offsets[i], what, err))) return rc;
  int dtype = -2;
  for (size_t k = 0; k < N_GGML_TYPES; k++)
    if (ggml_types[k].id == type) dtype = ggml_types[k].dtype;
  if (dtype == -2)
    return twin_err_set(err, TWIN_EFORMAT, "%s: %s has unknown tensor type %u", g->path, what,
                        type);
  if (dtype < 0)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "%s: %s has type %s, which this build does not run (f32, f16, bf16, "
                        "q4_0, q4_1, q5_0, q8_0, q4_k, q5_k, q6_k)",
                        g->path, what, twin_gguf_ggml_type_name(type));
  t->dtype = (twin_dtype)dtype;
  const int block = twin_dtype_block_elems(t->dtype);
  if (ne[0] % (uint64_t)block != 0)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: %s: rows of %llu elements are not whole %s blocks of %d", g->path,
                        what, (unsigned long long)ne[0], twin_dtype_name(t->dtype), block);
  if (offsets[i] % g->alignment != 0)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: %s: data offset %llu is not a multiple of the alignment %u", g->path,
                        what, (unsigned long long)offsets[i], g->alignment);
  t->ndim = (int)n_dims;
  for (uint32_t d = 0; d < n_dims; d++) t->shape[d] = (int64_t)ne[n_dims - 1 - d];
  t->nbytes = (size_t)(numel / (uint64_t)block * twin_dtype_block_bytes(t->dtype));
  return 0;
}

static int read_tensors(twin_gguf *g, cursor *c, uint64_t n_tensors, twin_err *err) {
  /* an info takes at least 8 + 1 (name) + 4 + 8 (one dimension) + 4 + 8 bytes */
  if (n_tensors > (c->size - c->pos) / 33)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: the header (offset 8) says %llu tensors, more than the %llu bytes "
                        "after the metadata can describe",
                        g->path, (unsigned long long)n_tensors,
                        (unsigned long long)(c->size - c->pos));
  g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
  uint64_t *offsets = calloc(n_tensors ? n_tensors : 1, sizeof *offsets);
  uint64_t *info_at = calloc(n_tensors ? n_tensors : 1, sizeof *info_at);
  tensor_span *spans = calloc(n_tensors ? n_tensors : 1, sizeof *spans);
  int rc = 0;
  if (!g->tensors || !offsets || !info_at || !spans)
    rc = twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", g->path);
  for (uint64_t i = 0; rc == 0 && i < n_tensors; i++) {
    info_at[i] = c->pos;
    rc = read_tensor_info(g, c, i, offsets, err);
    if (rc == 0) g->n_tensors = i + 1;
  }
  if (rc == 0) {
    uint64_t start = (c->pos + g->alignment - 1) / g->alignment * g->alignment;
    if (start > c->size && n_tensors > 0)
      rc = twin_err_set(err, TWIN_EFORMAT,
                        "%s: the data section would start at offset %llu, past the end of the "
                        "file (%llu bytes)",
                        g->path, (unsigned long long)start, (unsigned long long)c->size);
    g->data_offset = start;
  }
  const uint64_t data_size = g->data_offset <= c->size ? c->size - g->data_offset : 0;
  for (uint64_t i = 0; rc == 0 && i < n_tensors; i++) {
    twin_tensor *t = &g->tensors[i];
    if (offsets[i] > data_size || t->nbytes > data_size - offsets[i])
      rc = twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s' (info at offset %llu): its %zu bytes at data offset %llu "
                        "(file offset %llu) run past the end of the file (%llu bytes)",
                        g->path, t->name, (unsigned long long)info_at[i], t->nbytes,
                        (unsigned long long)offsets[i],
                        (unsigned long long)(g->data_offset + offsets[i]),
                        (unsigned long long)c->size);
    else if (twin_dtype_block_bytes(t->dtype) % 2 == 0 && (g->data_offset + offsets[i]) % 2 != 0)
      rc = twin_err_set(err, TWIN_EFORMAT, "%s: tensor '%s' (info at offset %llu): file offset "
                        "%llu is odd", g->path, t->name, (unsigned long long)info_at[i],
                        (unsigned long long)(g->data_offset + offsets[i]));
    t->file_offset = g->data_offset + offsets[i];
    t->data = g->base + t->file_offset;
    spans[i] = (tensor_span){offsets[i], offsets[i] + t->nbytes, i};
  }
  /* no two tensors share bytes; no name twice */
  if (rc == 0 && n_tensors > 1) {
    qsort(spans, n_tensors, sizeof *spans, compare_span);
    size_t last = 0;
    for (uint64_t i = 1; rc == 0 && i < n_tensors; i++) {
      if (spans[i].begin < spans[last].end)
        rc = twin_err_set(err, TWIN_EFORMAT,
                          "%s: tensor '%s' at data offset %llu overlaps tensor '%s' at [%llu, %llu)",
                          g->path, g->tensors[spans[i].index].name,
                          (unsigned long long)spans[i].begin, g->tensors[spans[last].index].name,
                          (unsigned long long)spans[last].begin,
                          (unsigned long long)spans[last].end);
      if (spans[i].end > spans[last].end) last = i;
    }
  }
  if (rc == 0 && n_tensors > 1) {
    /* names sorted through the spans' index field */
    for (uint64_t i = 0; i < n_tensors; i++) spans[i].index = i;
    qsort_r(spans, n_tensors, sizeof *spans, compare_span_name, g->tensors);
    for (uint64_t i = 1; rc == 0 && i < n_tensors; i++) {
      const size_t a = spans[i - 1].index, b = spans[i].index;
      if (strcmp(g->tensors[a].name, g->tensors[b].name) == 0)
        rc = twin_err_set(err, TWIN_EFORMAT,
                          "%s: tensor '%s' appears twice (infos at offsets %llu and %llu)",
                          g->path, g->tensors[a].name, (unsigned long long)info_at[a],
                          (unsigned long long)info_at[b]);
    }
  }
  free(offsets);
  free(info_at);
  free(spans);
  return rc;
}

/* ---- open / close -------------------------------------------------------------------------- */

static int map_file(twin_gguf *g, twin_err *err) {
  int fd = open(g->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return twin_err_set(err, errno == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: cannot open: %s",
                        g->path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return twin_err_set(err, TWIN_EIO, "%s: not a regular file", g->path);
  }
  g->size = (size_t)st.st_size;
  if (g->size > 0) {
    void *p = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      return twin_err_set(err, TWIN_EIO, "%s: cannot map %zu bytes: %s", g->path, g->size,
                          strerror(e));
    }
    g->base = p;
  }
  close(fd);
  return 0;
}

int twin_gguf_open(twin_gguf **out, const char *path, twin_err *err) {
  *out = NULL;
  twin_gguf *g = calloc(1, sizeof *g);
  if (!g || !(g->path = strdup(path))) {
    free(g);
    return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path);
  }
  int rc = map_file(g, err);
  cursor c = {.base = g->base, .size = g->size, .pos = 0, .path = g->path};
  uint32_t magic = 0;
  uint64_t n_tensors = 0, n_kv = 0;
  if (rc == 0 && g->size < 24)
    rc = twin_err_set(err, TWIN_EFORMAT, "%s: %zu bytes, too short for the 24-byte GGUF header "
                      "at offset 0: truncated or not a GGUF file", path, g->size);
  if (rc == 0) {
    read_u32(&c, &magic, "magic", err);
    if (magic != GGUF_MAGIC)
      rc = twin_err_set(err, TWIN_EFORMAT,
                        "%s: not a GGUF file: the magic at offset 0 is %02x %02x %02x %02x, not "
                        "'GGUF'", path, g->base[0], g->base[1], g->base[2], g->base[3]);
  }
  if (rc == 0) {
    read_u32(&c, &g->version, "version", err);
    if (g->version == 1 || g->version > 3)
      rc = twin_err_set(err, TWIN_EUNSUPPORTED,
                        "%s: GGUF version %u (offset 4) is not supported (2 and 3 are)", path,
                        g->version);
    else if (g->version == 0)
      rc = twin_err_set(err, TWIN_EFORMAT, "%s: GGUF version 0 at offset 4", path);
  }
  if (rc == 0) {
    read_u64(&c, &n_tensors, "tensor count", err);
    read_u64(&c, &n_kv, "metadata count", err);
    rc = read_metadata(g, &c, n_kv, err);
  }
  if (rc == 0) rc = read_alignment(g, err);
  if (rc == 0) rc = read_tensors(g, &c, n_tensors, err);
  if (rc) {
    twin_gguf_close(g);
    return rc;
  }
  *out = g;
  return 0;
}

void twin_gguf_close(twin_gguf *g) {
  if (!g) return;
  if (g->base) munmap((void *)g->base, g->size);
  for (size_t i = 0; i < g->n_kvs; i++) free((void *)g->kvs[i].key);
  free(g->kvs);
  free(g->tensors);
  free(g->path);
  free(g);
}

const char *twin_gguf_path(const twin_gguf *g) { return g->path; }
uint32_t twin_gguf_version(const twin_gguf *g) { return g->version; }
uint32_t twin_gguf_alignment(const twin_gguf *g) { return g->alignment; }
uint64_t twin_gguf_data_offset(const twin_gguf *g) { return g->data_offset; }

/* ---- metadata getters ---------------------------------------------------------------------- */

size_t twin_gguf_kv_count(const twin_gguf *g) { return g->n_kvs; }

const twin_gguf_kv *twin_gguf_kv_at(const twin_gguf *g, size_t i) {
  return i < g->n_kvs ? &g->kvs[i] : NULL;
}

const twin_gguf_kv *twin_gguf_find(const twin_gguf *g, const char *key) {
  for (size_t i = 0; i < g->n_kvs; i++)
    if (strcmp(g->kvs[i].key, key) == 0) return &g->kvs[i];
  return NULL;
}

static int find_typed(const twin_gguf *g, const char *key, const twin_gguf_kv **out,
                      twin_err *err) {
  *out = twin_gguf_find(g, key);
  if (!*out) return twin_err_set(err, TWIN_ENOTFOUND, "%s: no metadata key '%s'", g->path, key);
  return 0;
}

static int wrong_type(const twin_gguf *g, const twin_gguf_kv *kv, const char *want,
                      twin_err *err) {
  return twin_err_set(err, TWIN_EFORMAT, "%s: metadata key '%s' at offset %llu is %s%s%s, not %s",
                      g->path, kv->key, (unsigned long long)kv->offset,
                      twin_gguf_type_name(kv->type), kv->type == TWIN_GGUF_ARRAY ? " of " : "",
                      kv->type == TWIN_GGUF_ARRAY ? twin_gguf_type_name(kv->elem_type) : "",
                      want);
}

/* An integer element of type t at p; 0 when t is not an integer type. */
static int load_integer(twin_gguf_type t, const uint8_t *p, int64_t *v, int *is_unsigned_big) {
  *is_unsigned_big = 0;
  switch (t) {
    case TWIN_GGUF_U8: case TWIN_GGUF_BOOL: *v = p[0]; return 1;
    case TWIN_GGUF_I8: *v = (int8_t)p[0]; return 1;
    case TWIN_GGUF_U16: *v = (uint16_t)(p[0] | p[1] << 8); return 1;
    case TWIN_GGUF_I16: *v = (int16_t)(uint16_t)(p[0] | p[1] << 8); return 1;
    case TWIN_GGUF_U32: *v = load_u32(p); return 1;
    case TWIN_GGUF_I32: *v = (int32_t)load_u32(p); return 1;
    case TWIN_GGUF_U64: {
      uint64_t u = load_u64(p);
      *is_unsigned_big = u > (uint64_t)INT64_MAX;
      *v = (int64_t)(u & (uint64_t)INT64_MAX);
      return 1;
    }
    case TWIN_GGUF_I64: *v = (int64_t)load_u64(p); return 1;
    default: return 0;
  }
}

int twin_gguf_get_int(const twin_gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *out,
                      twin_err *err) {
  const twin_gguf_kv *kv;
  int rc = find_typed(g, key, &kv, err);
  if (rc) return rc;
  int64_t v;
  int big;
  if (kv->type == TWIN_GGUF_ARRAY || !load_integer(kv->type, kv->value, &v, &big))
    return wrong_type(g, kv, "an integer", err);
  if (big || v < lo || v > hi)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: metadata key '%s' at offset %llu is %s%lld, outside [%lld, %lld]",
                        g->path, key, (unsigned long long)kv->offset, big ? "above " : "",
                        (long long)v, (long long)lo, (long long)hi);
  *out = v;
  return 0;
}

static int load_number(twin_gguf_type t, const uint8_t *p, double *v) {
  if (t == TWIN_GGUF_F32) {
    float f;
    memcpy(&f, p, 4);
    *v = f;
    return 1;
  }
  if (t == TWIN_GGUF_F64) {
    memcpy(v, p, 8);
    return 1;
  }
  int64_t i;
  int big;
  if (!load_integer(t, p, &i, &big)) return 0;
  *v = big ? (double)i + 9223372036854775808.0 : (double)i;
  return 1;
}

int twin_gguf_get_float(const twin_gguf *g, const char *key, double *out, twin_err *err) {
  const twin_gguf_kv *kv;
  int rc = find_typed(g, key, &kv, err);
  if (rc) return rc;
  double v;
  if (kv->type == TWIN_GGUF_ARRAY || kv->type == TWIN_GGUF_BOOL || !load_number(kv->type, kv->value, &v))
    return wrong_type(g, kv, "a number", err);
  if (!isfinite(v))
    return twin_err_set(err, TWIN_EFORMAT, "%s: metadata key '%s' at offset %llu is not finite",
                        g->path, key, (unsigned long long)kv->offset);
  *out = v;
  return 0;
}

int twin_gguf_get_bool(const twin_gguf *g, const char *key, int *out, twin_err *err) {
  const twin_gguf_kv *kv;
  int rc = find_typed(g, key, &kv, err);
  if (rc) return rc;
  if (kv->type != TWIN_GGUF_BOOL) return wrong_type(g, kv, "a bool", err);
  if (kv->value[0] > 1)
    return twin_err_set(err, TWIN_EFORMAT, "%s: metadata key '%s' at offset %llu: bool byte %u",
                        g->path, key, (unsigned long long)kv->offset, kv->value[0]);
  *out = kv->value[0];
  return 0;
}

int twin_gguf_get_string(const twin_gguf *g, const char *key, const char **s, size_t *len,
                         twin_err *err) {
  const twin_gguf_kv *kv;
  int rc = find_typed(g, key, &kv, err);
  if (rc) return rc;
  if (kv->type != TWIN_GGUF_STRING) return wrong_type(g, kv, "a string", err);
  *len = (size_t)load_u64(kv->value);
  *s = (const char *)kv->value + 8;
  return 0;
}

int twin_gguf_get_string_dup(const twin_gguf *g, const char *key, char **out, twin_err *err) {
  *out = NULL;
  const char *s;
  size_t len;
  int rc = twin_gguf_get_string(g, key, &s, &len, err);
  if (rc) return rc;
  if (memchr(s, 0, len))
    return twin_err_set(err, TWIN_EFORMAT, "%s: metadata key '%s': the string holds a NUL byte",
                        g->path, key);
  char *copy = malloc(len + 1);
  if (!copy) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", g->path);
  memcpy(copy, s, len);
  copy[len] = 0;
  *out = copy;
  return 0;
}

static int find_array(const twin_gguf *g, const char *key, const twin_gguf_kv **out,
                      twin_err *err) {
  int rc = find_typed(g, key, out, err);
  if (rc) return rc;
  if ((*out)->type != TWIN_GGUF_ARRAY) return wrong_type(g, *out, "an array", err);
  return 0;
}

int twin_gguf_get_string_array(const twin_gguf *g, const char *key, char ***out, size_t *count,
                               twin_err *err) {
  *out = NULL;
  *count = 0;
  const twin_gguf_kv *kv;
  int rc = find_array(g, key, &kv, err);
  if (rc) return rc;
  if (kv->elem_type != TWIN_GGUF_STRING) return wrong_type(g, kv, "an array of strings", err);
  /* the strings were bounds-checked on open; total their bytes, then copy */
  const size_t n = (size_t)kv->count;
  size_t bytes = 0;
  const uint8_t *p = kv->value;
  for (size_t i = 0; i < n; i++) {
    uint64_t len = load_u64(p);
    if (memchr(p + 8, 0, len))
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: metadata key '%s' at offset %llu: element %zu holds a NUL byte",
                          g->path, key, (unsigned long long)kv->offset, i);
    bytes += len + 1;
    p += 8 + len;
  }
  char **block = malloc(n * sizeof(char *) + bytes + 1);
  if (!block) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory for '%s'", g->path, key);
  char *text = (char *)(block + n);
  p = kv->value;
  for (size_t i = 0; i < n; i++) {
    uint64_t len = load_u64(p);
    memcpy(text, p + 8, len);
    text[len] = 0;
    block[i] = text;
    text += len + 1;
    p += 8 + len;
  }
  *out = block;
  *count = n;
  return 0;
}

int twin_gguf_get_i32_array(const twin_gguf *g, const char *key, int32_t **out, size_t *count,
                            twin_err *err) {
  *out = NULL;
  *count = 0;
  const twin_gguf_kv *kv;
  int rc = find_array(g, key, &kv, err);
  if (rc) return rc;
  const size_t size = scalar_size(kv->elem_type);
  int big;
  if (!size || kv->elem_type == TWIN_GGUF_F32 || kv->elem_type == TWIN_GGUF_F64)
    return wrong_type(g, kv, "an array of integers", err);
  int32_t *a = malloc((kv->count ? kv->count : 1) * sizeof *a);
  if (!a) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory for '%s'", g->path, key);
  for (uint64_t i = 0; i < kv->count; i++) {
    int64_t v;
    load_integer(kv->elem_type, kv->value + i * size, &v, &big);
    if (big || v < INT32_MIN || v > INT32_MAX) {
      free(a);
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: metadata key '%s' at offset %llu: element %llu does not fit int32",
                          g->path, key, (unsigned long long)kv->offset, (unsigned long long)i);
    }
    a[i] = (int32_t)v;
  }
  *out = a;
  *count = (size_t)kv->count;
  return 0;
}

int twin_gguf_get_f32_array(const twin_gguf *g, const char *key, float **out, size_t *count,
                            twin_err *err) {
  *out = NULL;
  *count = 0;
  const twin_gguf_kv *kv;
  int rc = find_array(g, key, &kv, err);
  if (rc) return rc;
  if (kv->elem_type != TWIN_GGUF_F32 && kv->elem_type != TWIN_GGUF_F64)
    return wrong_type(g, kv, "an array of f32", err);
  const size_t size = scalar_size(kv->elem_type);
  float *a = malloc((kv->count ? kv->count : 1) * sizeof *a);
  if (!a) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory for '%s'", g->path, key);
  for (uint64_t i = 0; i < kv->count; i++) {
    double v;
    load_number(kv->elem_type, kv->value + i * size, &v);
    a[i] = (float)v;
  }
  *out = a;
  *count = (size_t)kv->count;
  return 0;
}

/* ---- tensors ------------------------------------------------------------------------------- */

size_t twin_gguf_tensor_count(const twin_gguf *g) { return g->n_tensors; }

const twin_tensor *twin_gguf_tensor_at(const twin_gguf *g, size_t i) {
  return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const twin_tensor *twin_gguf_tensor_find(const twin_gguf *g, const char *name) {
  for (size_t i = 0; i < g->n_tensors; i++)
    if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
  return NULL;
}
