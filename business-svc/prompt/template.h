/* business-svc/prompt/template.h — versioned prompt templates loaded from files
 * (templates/<name>.v<version>.tmpl): a header of `name:` and `version:` lines, then a [system]
 * and a [user] section whose text may use {question} and {context}. A registry holds every
 * version; "name" picks the highest version and "name@3" a given one. Rendering fills the
 * variables and fits the context into a token budget: chunks are numbered and attributed
 * ("[1] (Title, by Author)"), and the last chunks that do not fit are cut at a sentence
 * boundary, or dropped. */
#ifndef TWIN_PROMPT_TEMPLATE_H
#define TWIN_PROMPT_TEMPLATE_H

#include <stddef.h>

#include "common/error.h"

typedef struct twin_prompt_template {
  char name[64];
  int version;
  char *system;   /* owned */
  char *user;     /* owned */
  char path[512];
} twin_prompt_template;

typedef struct twin_prompt_registry twin_prompt_registry;

/* Loads every *.tmpl file of dir. Errors name the file and line. */
int twin_prompt_registry_load(const char *dir, twin_prompt_registry **out, twin_err *err);
void twin_prompt_registry_destroy(twin_prompt_registry *r);
/* "default" (highest version) or "default@2"; NULL with TWIN_ENOTFOUND naming what exists. */
const twin_prompt_template *twin_prompt_registry_get(const twin_prompt_registry *r, const char *ref,
                                                     twin_err *err);

typedef struct twin_prompt_chunk {
  const char *text;
  const char *title;   /* may be "" */
  const char *author;  /* may be "" */
} twin_prompt_chunk;

/* Counts tokens of text for the budget (the LLM's tokenizer, or an estimate). */
typedef int (*twin_prompt_token_fn)(void *user, const char *text, size_t len);

typedef struct twin_prompt_render {
  char *system;          /* owned: free with twin_prompt_render_free */
  char *user;
  char *context;         /* the {context} text as rendered */
  int chunks_used;       /* chunks that made it into the context, whole or cut */
  int chunks_cut;        /* 1 when the last used chunk was cut at a sentence */
  int prompt_tokens;     /* counted, system + user */
} twin_prompt_render;

/* budget_tokens: the most tokens system + user may take (0 = no limit). count may be NULL
 * (then tokens are estimated as bytes / 4, rounded up). */
int twin_prompt_render_fill(const twin_prompt_template *t, const char *question,
                            const twin_prompt_chunk *chunks, int n_chunks, int budget_tokens,
                            twin_prompt_token_fn count, void *count_user, twin_prompt_render *out,
                            twin_err *err);
void twin_prompt_render_free(twin_prompt_render *r);

#endif
