/* llm-svc/model/model.c — opening a model: a directory (config.json, safetensors weights,
 * tokenizer.json, the chat template of tokenizer_config.json) or a .gguf file (config,
 * tokenizer and chat template from its metadata, weights under Hugging Face names), and the
 * merged end-of-sequence ids. */
#include "llm-svc/model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"
#include "llm-svc/model/gguf.h"
#include "llm-svc/model/hub.h"

static int file_exists(const char *dir, const char *name) {
  char p[2048];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static void add_eos(twin_model *m, int32_t id) {
  if (id < 0) return;
  for (int i = 0; i < m->n_eos; i++)
    if (m->eos_ids[i] == id) return;
  if (m->n_eos < TWIN_MAX_EOS) m->eos_ids[m->n_eos++] = id;
}

static void token_text(const twin_tokenizer *tok, int32_t id, char *out, size_t cap) {
  out[0] = 0;
  const char *t = id >= 0 ? twin_tokenizer_id_to_token(tok, id) : NULL;
  if (t) snprintf(out, cap, "%s", t);
}

static int load_chat_template(twin_model *m, const twin_model_open_opts *o, twin_err *err) {
  if (o && o->chat_template && *o->chat_template) {
    int rc = twin_chat_template_by_name(o->chat_template, &m->chat, err);
    if (rc) return rc;
    m->has_chat_template = 1;
    return 0;
  }
  if (!file_exists(m->path, "tokenizer_config.json")) return 0;
  char p[2048];
  snprintf(p, sizeof p, "%s/tokenizer_config.json", m->path);
  char *text = NULL;
  size_t len = 0;
  int rc = twin_read_file(p, 64u << 20, &text, &len, err);
  if (rc) return rc;
  twin_err terr;
  if (twin_chat_template_from_tokenizer_config(text, len, &m->chat, &terr) == 0) {
    m->has_chat_template = 1;
  } else {
    LOG_WARN("%s: no usable chat template (%s); chat requests need --chat-template", p, terr.msg);
  }
  free(text);
  return 0;
}

/* A directory: config.json, safetensors, tokenizer.json, tokenizer_config.json. */
static int open_dir(twin_model *m, const twin_model_open_opts *opts, twin_err *err) {
  int rc = twin_config_load_hf(&m->cfg, m->path, err);
  if (!rc) rc = twin_weights_open_safetensors_dir(&m->weights, m->path, err);
  if (!rc) {
    if (file_exists(m->path, "tokenizer.json")) {
      rc = twin_tokenizer_load_dir(&m->tok, m->path, err);
    } else if (opts && opts->require_tokenizer) {
      rc = twin_err_set(err, TWIN_ENOTFOUND, "model: %s/tokenizer.json is missing", m->path);
    }
  }
  if (!rc) rc = load_chat_template(m, opts, err);
  return rc;
}

/* A ChatML template that writes a system turn of its own when the first message is not a
 * system one ("{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n
 * You are ...<|im_end|>\n' }}", SmolLM2's): that text, or "" when there is none. The family
 * renderer writes it as the chatml default system prompt. */
static void chatml_default_system(const char *jinja, char *out, size_t cap) {
  static const char open[] = "'<|im_start|>system\n", end[] = "<|im_end|>";
  out[0] = 0;
  if (!strstr(jinja, "!= 'system'") && !strstr(jinja, "!= \"system\"")) return;
  const char *start = strstr(jinja, open);
  if (!start) return;
  start += strlen(open);
  const char *stop = strstr(start, end);
  if (!stop || (size_t)(stop - start) >= cap) return;
  for (const char *p = start; p < stop; p++)
    if (*p == '\'' || *p == '{' || *p == '}' || *p == '\\') return; /* not a plain literal */
  memcpy(out, start, (size_t)(stop - start));
  out[stop - start] = 0;
}

/* The chat template of a GGUF file: tokenizer.chat_template when it is one we know; files
 * without one get their architecture's family when it has a single one (gemma3). */
static int gguf_chat_template(twin_model *m, const twin_gguf *g, const twin_model_open_opts *o,
                              twin_err *err) {
  if (o && o->chat_template && *o->chat_template) {
    int rc = twin_chat_template_by_name(o->chat_template, &m->chat, err);
    if (rc == 0) m->has_chat_template = 1;
    return rc;
  }
  char *text = NULL;
  int rc = twin_gguf_get_string_dup(g, "tokenizer.chat_template", &text, err);
  if (rc == TWIN_ENOTFOUND) {
    twin_err_clear(err);
    if (m->cfg.arch == TWIN_ARCH_GEMMA3 && twin_chat_template_by_name("gemma", &m->chat, NULL) == 0)
      m->has_chat_template = 1;
    else
      LOG_WARN("%s: no tokenizer.chat_template; chat requests need --chat-template", m->path);
    return 0;
  }
  if (rc) return rc;
  twin_err terr;
  if (twin_chat_template_detect(text, &m->chat, &terr) == 0) {
    m->has_chat_template = 1;
    if (m->chat.family == TWIN_CHAT_CHATML && !m->chat.default_system) {
      chatml_default_system(text, m->default_system, sizeof m->default_system);
      if (m->default_system[0]) m->chat.default_system = m->default_system;
    }
  } else
    LOG_WARN("%s: tokenizer.chat_template not recognised (%s); chat requests need "
             "--chat-template", m->path, terr.msg);
  free(text);
  return 0;
}

/* A .gguf file: everything from the one file. */
static int open_gguf(twin_model *m, const twin_model_open_opts *opts, twin_err *err) {
  twin_gguf *g = NULL;
  int rc = twin_gguf_open(&g, m->path, err);
  if (!rc) rc = twin_gguf_read_config(g, &m->cfg, err);
  if (!rc) {
    rc = twin_gguf_tokenizer_create(g, &m->tok, err);
    if (rc == TWIN_ENOTFOUND && !(opts && opts->require_tokenizer)) {
      twin_err_clear(err);
      rc = 0;
    }
  }
  if (!rc) rc = gguf_chat_template(m, g, opts, err);
  if (rc) {
    twin_gguf_close(g);
    return rc;
  }
  return twin_gguf_to_weights(g, &m->weights, err); /* g now belongs to the weights */
}

static int is_gguf_file(const char *path) {
  size_t n = strlen(path);
  if (n >= 5 && strcmp(path + n - 5, ".gguf") == 0) return 1;
  FILE *f = fopen(path, "rb");
  char magic[4] = {0};
  int yes = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
  if (f) fclose(f);
  return yes;
}

int twin_model_open(const char *path, const twin_model_open_opts *opts, twin_model **out,
                    twin_err *err) {
  *out = NULL;
  char fetched[2048];
  if (twin_hub_is_ref(path)) {
    int rc = twin_hub_fetch(path, NULL, fetched, sizeof fetched, err);
    if (rc) return rc;
    path = fetched;
  }
  struct stat st;
  if (!path || stat(path, &st) != 0)
    return twin_err_set(err, TWIN_ENOTFOUND, "model: '%s' does not exist", path ? path : "");
  const int gguf = S_ISREG(st.st_mode) && is_gguf_file(path);
  if (!S_ISDIR(st.st_mode) && !gguf)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "model: '%s' is neither a model directory (config.json + *.safetensors) "
                        "nor a GGUF file", path);
  twin_model *m = calloc(1, sizeof *m);
  if (!m) return twin_err_set(err, TWIN_ENOMEM, "model: out of memory");
  snprintf(m->path, sizeof m->path, "%s", path);
  size_t n = strlen(m->path);
  while (n > 1 && m->path[n - 1] == '/') m->path[--n] = 0;
  const char *base = strrchr(m->path, '/');
  snprintf(m->name, sizeof m->name, "%s", base ? base + 1 : m->path);

  int rc = gguf ? open_gguf(m, opts, err) : open_dir(m, opts, err);
  if (rc == 0) {
    /* every tensor the config calls for, with the right shape and a dtype we run: checked
     * now, so a broken file fails at open and not when a backend is built */
    twin_llama_tensors bound;
    rc = twin_model_tensors_bind(&bound, m->weights, &m->cfg, err);
    twin_llama_tensors_free(&bound);
  }
  if (rc) {
    twin_model_destroy(m);
    return rc;
  }
  for (int i = 0; i < m->cfg.n_eos; i++) add_eos(m, m->cfg.eos_ids[i]);
  if (m->tok) {
    add_eos(m, twin_tokenizer_eos_id(m->tok));
    token_text(m->tok, twin_tokenizer_bos_id(m->tok), m->bos_text, sizeof m->bos_text);
    token_text(m->tok, twin_tokenizer_eos_id(m->tok), m->eos_text, sizeof m->eos_text);
    /* The end-of-turn token of the chat format ends generation too. */
    static const char *turn_ends[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>"};
    for (size_t i = 0; i < sizeof turn_ends / sizeof turn_ends[0]; i++)
      add_eos(m, twin_tokenizer_token_to_id(m->tok, turn_ends[i]));
    if (twin_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size)
      LOG_WARN("model %s: tokenizer has %d ids but the model %d; ids beyond are refused",
               m->name, twin_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
  }
  *out = m;
  return 0;
}

void twin_model_destroy(twin_model *m) {
  if (!m) return;
  twin_weights_destroy(m->weights);
  twin_tokenizer_destroy(m->tok);
  free(m);
}

int twin_model_encode_chat(const twin_model *m, const twin_chat_message *msgs, int n_msgs,
                           int32_t **ids, size_t *n_ids, twin_err *err) {
  *ids = NULL;
  *n_ids = 0;
  if (!m->tok) return twin_err_set(err, TWIN_EUNSUPPORTED, "model %s has no tokenizer", m->name);
  if (!m->has_chat_template)
    return twin_err_set(err, TWIN_EUNSUPPORTED,
                        "model %s has no recognised chat template (set one by name: %s)", m->name,
                        twin_chat_template_names());
  twin_chat_options o = {.bos_token = m->bos_text, .eos_token = m->eos_text, .add_generation_prompt = 1};
  char *text = NULL;
  size_t len = 0;
  int rc = twin_chat_template_apply(&m->chat, msgs, n_msgs, &o, &text, &len, err);
  if (rc) return rc;
  rc = twin_tokenizer_encode(m->tok, text, len, 0, ids, n_ids, err);
  free(text);
  return rc;
}
