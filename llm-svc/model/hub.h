/* llm-svc/model/hub.h — `hf://org/name[@revision]` model references, pulled over HTTP from a
 * Hugging Face Hub compatible registry into a local cache. The file list comes from
 * GET {endpoint}/api/models/{org}/{name}/revision/{rev}; each file from
 * {endpoint}/{org}/{name}/resolve/{rev}/{file}. Downloads resume from a partial file (HTTP
 * Range), are checked against the registry's SHA-256 (the X-Linked-Etag / ETag of LFS files)
 * when it gives one, and land atomically (rename). A model already complete in the cache is
 * used without any request. Endpoint: $HF_ENDPOINT (default https://huggingface.co); token:
 * $HF_TOKEN; cache: $TWIN_MODEL_CACHE, else $HF_HOME/twin, else ~/.cache/twin/models. */
#ifndef TWIN_MODEL_HUB_H
#define TWIN_MODEL_HUB_H

#include <stddef.h>

#include "common/error.h"

/* 1 when ref starts with "hf://". */
int twin_hub_is_ref(const char *ref);

typedef struct twin_hub_opts {
  const char *endpoint;     /* NULL = $HF_ENDPOINT or https://huggingface.co */
  const char *cache_dir;    /* NULL = the default cache above */
  const char *token;        /* NULL = $HF_TOKEN */
  int quiet;                /* 0: progress lines on stderr */
} twin_hub_opts;

/* Resolves ref to a local directory holding the model's files (config, weights, tokenizer),
 * downloading what is missing. dir_out gets the path. Errors name the URL and HTTP status, or
 * the file whose checksum did not match. */
int twin_hub_fetch(const char *ref, const twin_hub_opts *opts, char *dir_out, size_t cap,
                   twin_err *err);

#endif
