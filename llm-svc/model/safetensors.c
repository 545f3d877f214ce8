/* llm-svc/model/safetensors.c — memory-mapped safetensors files: one model.safetensors, or the
 * shards named by model.safetensors.index.json. A file is an 8-byte little-endian header length
 * N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...}), then the
 * data; offsets are relative to the data. Everything in the header is checked before a tensor
 * is handed out: the length against the file, the JSON, each dtype, shape and offset pair (in
 * range, sized shape*dtype, not overlapping another tensor). Errors name file, tensor, offset. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "llm-svc/model/weights.h"

#define SAFETENSORS_MAX_HEADER (100u << 20)   /* the format's own limit on the JSON header */
#define INDEX_MAX_BYTES (64u << 20)
#define JSON_MAX_EXACT_INT 9007199254740992.0 /* 2^53: larger offsets lose precision in JSON */

typedef struct mapped_file {
  char *path;          /* owned */
  const unsigned char *base; /* the whole file, read-only; NULL when empty */
  size_t size;
} mapped_file;

struct twin_weights {
  char *source;            /* owned: the dir or file opened */
  mapped_file *files;      /* [n_files] */
  int n_files, cap_files;
  twin_tensor *tensors;    /* [n_tensors], sorted by name once opening is done */
  size_t n_tensors, cap_tensors;
  void *owner;             /* a view's (twin_weights_create_view) holder of the tensor data */
  void (*owner_release)(void *owner);
};

/* ---- small helpers ------------------------------------------------------------------------- */

static int join_path(char *out, size_t cap, const char *dir, const char *name, twin_err *err) {
  int n = snprintf(out, cap, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= cap)
    return twin_err_set(err, TWIN_EINVAL, "%s/%s: path too long", dir, name);
  return 0;
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_to_u64(const cJSON *item, uint64_t *out) {
  if (!cJSON_IsNumber(item)) return -1;
  double d = item->valuedouble;
  if (!(d >= 0.0) || d > JSON_MAX_EXACT_INT || d != floor(d)) return -1;
  *out = (uint64_t)d;
  return 0;
}

/* dtype strings of the format. Some are well-formed but not weights we convert. */
static int parse_dtype(const char *s, twin_dtype *out) {
  static const struct { const char *name; twin_dtype dt; } known[] = {
      {"F32", TWIN_DT_F32}, {"F16", TWIN_DT_F16}, {"BF16", TWIN_DT_BF16},
      {"I32", TWIN_DT_I32}, {"I64", TWIN_DT_I64},
  };
  static const char *unsupported[] = {"F64", "I8", "U8", "I16", "U16", "U32", "U64", "BOOL",
                                      "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3",
                                      "F6_E3M2", "C64"};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(s, known[i].name) == 0) {
      *out = known[i].dt;
      return 0;
    }
  for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
    if (strcmp(s, unsupported[i]) == 0) return TWIN_EUNSUPPORTED;
  return TWIN_EFORMAT;
}

static void format_shape(char *out, size_t cap, const int64_t *shape, int ndim) {
  size_t used = 0;
  out[0] = 0;
  used += (size_t)snprintf(out + used, cap - used, "[");
  for (int i = 0; i < ndim && used < cap; i++)
    used += (size_t)snprintf(out + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (used < cap) snprintf(out + used, cap - used, "]");
}

/* ---- the set ------------------------------------------------------------------------------- */

static int weights_new(twin_weights **out, const char *source, twin_err *err) {
  twin_weights *w = calloc(1, sizeof *w);
  if (!w || !(w->source = strdup(source))) {
    free(w);
    return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", source);
  }
  *out = w;
  return 0;
}

void twin_weights_destroy(twin_weights *w) {
  if (!w) return;
  for (int i = 0; i < w->n_files; i++) {
    if (w->files[i].base) munmap((void *)w->files[i].base, w->files[i].size);
    free(w->files[i].path);
  }
  free(w->files);
  free(w->tensors);
  free(w->source);
  if (w->owner_release) w->owner_release(w->owner);
  free(w);
}

static twin_tensor *weights_add_tensor(twin_weights *w) {
  if (w->n_tensors == w->cap_tensors) {
    size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
    twin_tensor *grown = realloc(w->tensors, cap * sizeof *grown);
    if (!grown) return NULL;
    w->tensors = grown;
    w->cap_tensors = cap;
  }
  twin_tensor *t = &w->tensors[w->n_tensors++];
  memset(t, 0, sizeof *t);
  return t;
}

/* Maps path read-only and appends it to w->files. */
static int weights_map_file(twin_weights *w, const char *path, mapped_file **out, twin_err *err) {
  if (w->n_files == w->cap_files) {
    int cap = w->cap_files ? 2 * w->cap_files : 4;
    mapped_file *grown = realloc(w->files, (size_t)cap * sizeof *grown);
    if (!grown) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path);
    w->files = grown;
    w->cap_files = cap;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return twin_err_set(err, errno == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: cannot open: %s",
                        path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return twin_err_set(err, TWIN_EIO, "%s: not a regular file", path);
  }
  mapped_file mf = {.path = strdup(path), .base = NULL, .size = (size_t)st.st_size};
  if (!mf.path) {
    close(fd);
    return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path);
  }
  if (mf.size > 0) {
    void *base = mmap(NULL, mf.size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
      int saved = errno;
      close(fd);
      free(mf.path);
      return twin_err_set(err, TWIN_EIO, "%s: mmap of %zu bytes failed: %s", path, mf.size,
                          strerror(saved));
    }
    mf.base = base;
  }
  close(fd);
  w->files[w->n_files] = mf;
  *out = &w->files[w->n_files++];
  return 0;
}

/* ---- one safetensors file ------------------------------------------------------------------ */

typedef struct tensor_span {
  uint64_t begin, end;   /* relative to the data section */
  size_t tensor;         /* index into w->tensors */
} tensor_span;

static int compare_span(const void *a, const void *b) {
  const tensor_span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Parses the header entry `entry` (named entry->string) of file mf into a new tensor of w. */
static int parse_tensor_entry(twin_weights *w, const mapped_file *mf, const cJSON *entry,
                              uint64_t data_start, uint64_t data_size, twin_err *err) {
  const char *name = entry->string;
  const char *path = mf->path;
  if (!cJSON_IsObject(entry))
    return twin_err_set(err, TWIN_EFORMAT, "%s: tensor '%s': header entry is not an object",
                        path, name);
  if (strlen(name) >= sizeof(((twin_tensor *)0)->name))
    return twin_err_set(err, TWIN_EFORMAT, "%s: tensor name '%.60s...' is too long (%zu bytes)",
                        path, name, strlen(name));

  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
  if (!cJSON_IsString(dtype))
    return twin_err_set(err, TWIN_EFORMAT, "%s: tensor '%s': 'dtype' missing or not a string",
                        path, name);
  twin_dtype dt;
  int rc = parse_dtype(dtype->valuestring, &dt);
  if (rc == TWIN_EUNSUPPORTED)
    return twin_err_set(err, rc, "%s: tensor '%s': dtype '%s' is not supported "
                        "(F32, F16, BF16, I32, I64 are)", path, name, dtype->valuestring);
  if (rc != 0)
    return twin_err_set(err, TWIN_EFORMAT, "%s: tensor '%s': unknown dtype '%.40s'", path, name,
                        dtype->valuestring);

  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
  if (!cJSON_IsArray(shape))
    return twin_err_set(err, TWIN_EFORMAT, "%s: tensor '%s': 'shape' missing or not an array",
                        path, name);
  int ndim = cJSON_GetArraySize(shape);
  if (ndim > TWIN_TENSOR_MAX_DIMS)
    return twin_err_set(err, TWIN_EUNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d)",
                        path, name, ndim, TWIN_TENSOR_MAX_DIMS);
  int64_t dims[TWIN_TENSOR_MAX_DIMS] = {0};
  uint64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    uint64_t d;
    if (json_to_u64(cJSON_GetArrayItem(shape, i), &d) != 0)
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name,
                          i);
    if (__builtin_mul_overflow(numel, d, &numel) || numel > (uint64_t)INT64_MAX / 8)
      return twin_err_set(err, TWIN_EFORMAT, "%s: tensor '%s': shape is impossibly large", path,
                          name);
    dims[i] = (int64_t)d;
  }
  uint64_t need_bytes = numel * twin_dtype_size(dt);

  const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
  uint64_t begin, end;
  if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
      json_to_u64(cJSON_GetArrayItem(offsets, 0), &begin) != 0 ||
      json_to_u64(cJSON_GetArrayItem(offsets, 1), &end) != 0)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s': 'data_offsets' must be two non-negative integers", path,
                        name);
  if (begin > end)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path,
                        name, (unsigned long long)begin, (unsigned long long)end);
  if (end > data_size)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] (file offset %llu) run past "
                        "the end of the data section (%llu bytes; file is %zu bytes)",
                        path, name, (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)(data_start + begin), (unsigned long long)data_size,
                        mf->size);
  if (end - begin != need_bytes) {
    char shape_text[96];
    format_shape(shape_text, sizeof shape_text, dims, ndim);
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s' at file offset %llu: data_offsets [%llu, %llu] hold %llu "
                        "bytes but shape %s of %s needs %llu",
                        path, name, (unsigned long long)(data_start + begin),
                        (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)(end - begin), shape_text, dtype->valuestring,
                        (unsigned long long)need_bytes);
  }

  twin_tensor *t = weights_add_tensor(w);
  if (!t) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->dtype = dt;
  t->ndim = ndim;
  memcpy(t->shape, dims, sizeof dims);
  t->data = mf->base + data_start + begin;
  t->nbytes = (size_t)need_bytes;
  t->file = mf->path;
  t->file_offset = data_start + begin;
  return 0;
}

/* No two tensors of one file may share bytes. */
static int check_overlaps(const twin_weights *w, const mapped_file *mf, size_t first,
                          uint64_t data_start, twin_err *err) {
  size_t n = w->n_tensors - first;
  if (n < 2) return 0;
  tensor_span *spans = malloc(n * sizeof *spans);
  if (!spans) return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", mf->path);
  for (size_t i = 0; i < n; i++) {
    const twin_tensor *t = &w->tensors[first + i];
    spans[i].begin = t->file_offset - data_start;
    spans[i].end = spans[i].begin + t->nbytes;
    spans[i].tensor = first + i;
  }
  qsort(spans, n, sizeof *spans, compare_span);
  int rc = 0;
  size_t last = 0; /* the span reaching furthest so far */
  for (size_t i = 1; i < n && rc == 0; i++) {
    if (spans[i].begin == spans[i].end) continue; /* empty tensors hold no bytes */
    if (spans[i].begin < spans[last].end) {
      rc = twin_err_set(err, TWIN_EFORMAT,
                        "%s: tensor '%s' at data_offsets [%llu, %llu] (file offset %llu) overlaps "
                        "tensor '%s' at [%llu, %llu]",
                        mf->path, w->tensors[spans[i].tensor].name,
                        (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end,
                        (unsigned long long)(data_start + spans[i].begin),
                        w->tensors[spans[last].tensor].name,
                        (unsigned long long)spans[last].begin, (unsigned long long)spans[last].end);
    }
    if (spans[i].end > spans[last].end) last = i;
  }
  free(spans);
  return rc;
}

static int weights_load_file(twin_weights *w, const char *path, twin_err *err) {
  mapped_file *mf = NULL;
  int rc = weights_map_file(w, path, &mf, err);
  if (rc) return rc;
  if (mf->size < 8)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: file is %zu bytes, too short for the 8-byte header length", path,
                        mf->size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; i--) header_len = header_len << 8 | mf->base[i];
  if (header_len > mf->size - 8)
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: header length %llu (at offset 0) runs past the end of the file "
                        "(%zu bytes): truncated or not a safetensors file",
                        path, (unsigned long long)header_len, mf->size);
  if (header_len > SAFETENSORS_MAX_HEADER)
    return twin_err_set(err, TWIN_EFORMAT, "%s: header length %llu exceeds the %u-byte limit",
                        path, (unsigned long long)header_len, SAFETENSORS_MAX_HEADER);

  const char *json = (const char *)mf->base + 8;
  const char *parse_end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)header_len, &parse_end, 0);
  if (!root) {
    size_t at = parse_end ? (size_t)(parse_end - json) : 0;
    return twin_err_set(err, TWIN_EFORMAT,
                        "%s: header JSON is malformed near file offset %zu", path, 8 + at);
  }
  for (const char *p = parse_end; p && p < json + header_len; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != 0) {
      cJSON_Delete(root);
      return twin_err_set(err, TWIN_EFORMAT,
                          "%s: unexpected bytes after the header JSON at file offset %zu", path,
                          (size_t)(8 + (p - json)));
    }
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return twin_err_set(err, TWIN_EFORMAT, "%s: header JSON is not an object", path);
  }

  uint64_t data_start = 8 + header_len;
  uint64_t data_size = mf->size - data_start;
  size_t first = w->n_tensors;
  rc = 0;
  for (const cJSON *entry = root->child; entry && rc == 0; entry = entry->next) {
    if (strcmp(entry->string, "__metadata__") == 0) {
      if (!cJSON_IsObject(entry))
        rc = twin_err_set(err, TWIN_EFORMAT, "%s: '__metadata__' is not an object", path);
      continue;
    }
    rc = parse_tensor_entry(w, mf, entry, data_start, data_size, err);
  }
  cJSON_Delete(root);
  if (rc == 0) rc = check_overlaps(w, mf, first, data_start, err);
  return rc;
}

/* ---- the whole set ------------------------------------------------------------------------- */

static int compare_tensor_name(const void *a, const void *b) {
  return strcmp(((const twin_tensor *)a)->name, ((const twin_tensor *)b)->name);
}

static int weights_finish(twin_weights *w, twin_err *err) {
  if (w->n_tensors == 0)
    return twin_err_set(err, TWIN_EFORMAT, "%s: holds no tensors", w->source);
  qsort(w->tensors, w->n_tensors, sizeof *w->tensors, compare_tensor_name);
  for (size_t i = 1; i < w->n_tensors; i++) {
    const twin_tensor *a = &w->tensors[i - 1], *b = &w->tensors[i];
    if (strcmp(a->name, b->name) == 0)
      return twin_err_set(err, TWIN_EFORMAT,
                          "tensor '%s' appears twice: %s (offset %llu) and %s (offset %llu)",
                          a->name, a->file, (unsigned long long)a->file_offset, b->file,
                          (unsigned long long)b->file_offset);
  }
  return 0;
}

/* A set over tensors another reader parsed (gguf_weights.c): copied, sorted, duplicates
 * refused; owner is released with the set. */
int twin_weights_create_view(twin_weights **out, const char *source, const twin_tensor *tensors,
                             size_t n, void *owner, void (*owner_release)(void *owner),
                             twin_err *err) {
  *out = NULL;
  twin_weights *w = NULL;
  int rc = weights_new(&w, source, err);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    twin_tensor *t = weights_add_tensor(w);
    if (!t) rc = twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", source);
    else *t = tensors[i];
  }
  if (rc == 0) rc = weights_finish(w, err);
  if (rc) {
    if (owner_release) owner_release(owner);
    twin_weights_destroy(w);
    return rc;
  }
  w->owner = owner;
  w->owner_release = owner_release;
  *out = w;
  return 0;
}

int twin_weights_open_safetensors_file(twin_weights **out, const char *path, twin_err *err) {
  *out = NULL;
  twin_weights *w;
  int rc = weights_new(&w, path, err);
  if (rc) return rc;
  rc = weights_load_file(w, path, err);
  if (rc == 0) rc = weights_finish(w, err);
  if (rc) {
    twin_weights_destroy(w);
    return rc;
  }
  *out = w;
  return 0;
}

static int read_small_file(const char *path, size_t limit, char **out, size_t *len,
                           twin_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return twin_err_set(err, errno == ENOENT ? TWIN_ENOTFOUND : TWIN_EIO, "%s: cannot open: %s",
                        path, strerror(errno));
  char *buf = malloc(limit + 1);
  if (!buf) {
    fclose(f);
    return twin_err_set(err, TWIN_ENOMEM, "%s: out of memory", path);
  }
  size_t n = fread(buf, 1, limit + 1, f);
  int failed = ferror(f);
  fclose(f);
  if (failed || n > limit) {
    free(buf);
    return twin_err_set(err, failed ? TWIN_EIO : TWIN_EFORMAT,
                        failed ? "%s: read failed" : "%s: larger than the %zu-byte limit", path,
                        limit);
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return 0;
}

/* A shard name from the index must be a plain file name inside the model directory. */
static int shard_name_ok(const char *name) {
  return name[0] && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
         strcmp(name, "..") != 0;
}

static int weights_load_index(twin_weights *w, const char *dir, const char *index_path,
                              twin_err *err) {
  char *text = NULL;
  size_t len = 0;
  int rc = read_small_file(index_path, INDEX_MAX_BYTES, &text, &len, err);
  if (rc) return rc;
  const char *parse_end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &parse_end, 0);
  if (!root) {
    rc = twin_err_set(err, TWIN_EFORMAT, "%s: malformed JSON near byte offset %zu", index_path,
                      parse_end ? (size_t)(parse_end - text) : (size_t)0);
    free(text);
    return rc;
  }
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(map) || !map->child) {
    rc = twin_err_set(err, TWIN_EFORMAT, "%s: 'weight_map' missing, empty or not an object",
                      index_path);
    goto done;
  }
  char path[PATH_MAX];
  /* open each shard the first time the map names it */
  for (const cJSON *entry = map->child; entry && rc == 0; entry = entry->next) {
    if (!cJSON_IsString(entry) || !shard_name_ok(entry->valuestring)) {
      rc = twin_err_set(err, TWIN_EFORMAT,
                        "%s: weight_map entry '%s' must name a file in the model directory",
                        index_path, entry->string);
      break;
    }
    if ((rc = join_path(path, sizeof path, dir, entry->valuestring, err))) break;
    int seen = 0;
    for (int i = 0; i < w->n_files && !seen; i++) seen = strcmp(w->files[i].path, path) == 0;
    if (seen) continue;
    rc = weights_load_file(w, path, err);
    if (rc == TWIN_ENOTFOUND)
      twin_err_wrap(err, "%s names shard '%s' for tensor '%s'", index_path, entry->valuestring,
                    entry->string);
  }
  if (rc == 0) rc = weights_finish(w, err);
  /* every tensor the map promises is in the shard it names */
  for (const cJSON *entry = map->child; entry && rc == 0; entry = entry->next) {
    const twin_tensor *t = twin_weights_get(w, entry->string);
    if ((rc = join_path(path, sizeof path, dir, entry->valuestring, err))) break;
    if (!t || strcmp(t->file, path) != 0)
      rc = twin_err_set(err, TWIN_EFORMAT, "%s: tensor '%s' is mapped to '%s', which %s",
                        index_path, entry->string, entry->valuestring,
                        t ? "does not hold it" : "does not hold it (no shard does)");
  }
done:
  cJSON_Delete(root);
  free(text);
  return rc;
}

int twin_weights_open_safetensors_dir(twin_weights **out, const char *dir, twin_err *err) {
  *out = NULL;
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return twin_err_set(err, TWIN_ENOTFOUND, "%s: not a directory", dir);
  char single[PATH_MAX], index[PATH_MAX];
  int rc;
  if ((rc = join_path(single, sizeof single, dir, "model.safetensors", err)) ||
      (rc = join_path(index, sizeof index, dir, "model.safetensors.index.json", err)))
    return rc;
  int have_single = access(single, F_OK) == 0, have_index = access(index, F_OK) == 0;
  if (!have_single && !have_index)
    return twin_err_set(err, TWIN_ENOTFOUND,
                        "%s: no model.safetensors or model.safetensors.index.json", dir);
  if (have_single) return twin_weights_open_safetensors_file(out, single, err);

  twin_weights *w;
  if ((rc = weights_new(&w, dir, err))) return rc;
  rc = weights_load_index(w, dir, index, err);
  if (rc) {
    twin_weights_destroy(w);
    return rc;
  }
  *out = w;
  return 0;
}

/* ---- lookups ------------------------------------------------------------------------------- */

const twin_tensor *twin_weights_get(const twin_weights *w, const char *name) {
  size_t lo = 0, hi = w->n_tensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, w->tensors[mid].name);
    if (c == 0) return &w->tensors[mid];
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

size_t twin_weights_count(const twin_weights *w) { return w->n_tensors; }

const twin_tensor *twin_weights_at(const twin_weights *w, size_t i) {
  return i < w->n_tensors ? &w->tensors[i] : NULL;
}

const char *twin_weights_source(const twin_weights *w) { return w->source; }
