/* llm-svc/model/model.h — a loaded model: its config, weights (memory-mapped), tokenizer and
 * chat template, from a Hugging Face model directory, a .gguf file (all four from the one file:
 * gguf.h), or hf://org/name@rev (fetched first into the local cache: hub.h). The end-of-sequence set merges
 * config.json, generation_config.json, the tokenizer's EOS and the chat template's end-of-turn
 * token. The model owns everything it points to. */
#ifndef TWIN_MODEL_MODEL_H
#define TWIN_MODEL_MODEL_H

#include "common/error.h"
#include "llm-svc/model/chat_template.h"
#include "llm-svc/model/config.h"
#include "llm-svc/model/tokenizer.h"
#include "llm-svc/model/weights.h"

typedef struct twin_model_open_opts {
  const char *chat_template;   /* a template name overriding detection; NULL = detect */
  int require_tokenizer;       /* 1: a missing tokenizer (tokenizer.json, or a GGUF file's
                                  tokenizer.ggml.*) is an error */
} twin_model_open_opts;

typedef struct twin_model {
  char path[1024];
  char name[256];              /* the directory's (or .gguf file's) base name */
  twin_model_config cfg;
  twin_weights *weights;
  twin_tokenizer *tok;         /* NULL when the directory has none (and none was required) */
  int has_chat_template;
  twin_chat_template chat;
  char default_system[512];    /* the system prompt a GGUF file's ChatML template writes when
                                  the conversation has none (chat.default_system points here) */
  char bos_text[64], eos_text[64];
  int32_t eos_ids[TWIN_MAX_EOS];
  int n_eos;
} twin_model;

int twin_model_open(const char *path, const twin_model_open_opts *opts, twin_model **out,
                    twin_err *err);
void twin_model_destroy(twin_model *m);

/* Renders chat messages with the model's template and tokenizes the result (special tokens
 * parsed, no automatic BOS). *ids is malloc'd (caller frees). */
int twin_model_encode_chat(const twin_model *m, const twin_chat_message *msgs, int n_msgs,
                           int32_t **ids, size_t *n_ids, twin_err *err);

#endif
