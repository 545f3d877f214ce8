/* llm-svc/model/chat_template.h — chat templates of the model families we load, written out in
 * C: a conversation of {role, content} messages becomes the prompt text the model was tuned
 * on. We do not run the Jinja text from tokenizer_config.json; we recognise its family by its
 * markers and render that family's reference template, byte for byte (tests/python checks
 * each against the Jinja original, rendered by jinja2). */

/* The families, the model whose published template is the reference, and their shape:
 *   llama3    Meta-Llama-3-8B-Instruct    <|start_header_id|>role<|end_header_id|>\n\n..<|eot_id|>
 *   llama3.1  Llama-3.1-8B-Instruct       the same, plus a system block that always carries
 *   llama3.2  Llama-3.2-1B-Instruct         "Cutting Knowledge Date" / "Today Date" lines
 *   llama2    Llama-2-7b-chat-hf          <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n.. [/INST] .. </s>
 *   mistral   Mistral-7B-Instruct-v0.2    <s> [INST] system\n\nuser [/INST] reply</s>
 *   chatml    (plain ChatML)              <|im_start|>role\n...<|im_end|>\n
 *   qwen2     Qwen2-7B-Instruct           ChatML + "You are a helpful assistant." by default
 *   qwen2.5   Qwen2.5-7B-Instruct         ChatML + "You are Qwen, created by Alibaba Cloud..."
 *   gemma     gemma-3-*-it (and 1, 2)     <start_of_turn>user\n...<end_of_turn>\n, "model"
 *                                         for assistant, system folded into the first turn
 * Within a family, older or newer layouts (Mistral v0.1's or v0.3's spacing, tool calling)
 * render as the reference above.
 *
 * BOS: the output INCLUDES the BOS text where the family's template writes it (all but
 * chatml/qwen), and Llama-2 / Mistral also write the EOS text after each assistant turn. The
 * caller passes both texts (the tokenizer knows them) and must tokenize the result with
 * special-token parsing ON ("<|eot_id|>" becomes one token id, not characters) and automatic
 * BOS insertion OFF (add_special_tokens=False in Hugging Face terms), or BOS appears twice.
 * Message contents are pasted in as given: a user who types "<|eot_id|>" produces that special
 * token, as with Hugging Face's apply_chat_template. */
#ifndef TWIN_MODEL_CHAT_TEMPLATE_H
#define TWIN_MODEL_CHAT_TEMPLATE_H

#include <stddef.h>

#include "common/error.h"

typedef enum twin_chat_family {
  TWIN_CHAT_LLAMA3 = 1,
  TWIN_CHAT_LLAMA2,
  TWIN_CHAT_MISTRAL,
  TWIN_CHAT_CHATML,
  TWIN_CHAT_GEMMA,
} twin_chat_family;

/* A resolved template: a family and its variant's settings. A plain value; the strings are
 * static (never freed). */
typedef struct twin_chat_template {
  twin_chat_family family;
  const char *name;           /* "llama3", "llama3.1", ... as accepted by _by_name */
  const char *default_system; /* chatml family: system prompt used when none is given; or NULL */
  int dated_system_block;     /* llama3.1/3.2: the system block with the date lines */
  int date_from_clock;        /* llama3.2: "Today Date" is today when the caller gives none */
} twin_chat_template;

typedef struct twin_chat_message {
  const char *role;    /* "system" | "user" | "assistant" */
  const char *content; /* UTF-8 */
} twin_chat_message;

typedef struct twin_chat_options {
  const char *bos_token;     /* BOS text, e.g. "<|begin_of_text|>", "<s>", "<bos>"; NULL = "" */
  const char *eos_token;     /* EOS text (llama2, mistral), e.g. "</s>"; NULL = "" */
  int add_generation_prompt; /* 1: end with the opening of an assistant turn */
  const char *date_string;   /* llama3.1/3.2 "Today Date", e.g. "26 Jul 2024"; NULL = the
                                template's default (llama3.1: "26 Jul 2024"; llama3.2: today,
                                local time, as "%d %b %Y") */
} twin_chat_options;

/* Names accepted by twin_chat_template_by_name, comma-separated (static string). */
const char *twin_chat_template_names(void);

/* By name ("llama3", "llama3.1", "llama3.2", "llama2", "mistral", "chatml", "qwen2",
 * "qwen2.5", "gemma"; "gemma3" is an alias). Unknown -> TWIN_EINVAL listing the known names. */
int twin_chat_template_by_name(const char *name, twin_chat_template *out, twin_err *err);

/* From the Jinja text of a chat_template, by its markers. TWIN_ENOTFOUND when none is known. */
int twin_chat_template_detect(const char *jinja_text, twin_chat_template *out, twin_err *err);

/* From the text of a tokenizer_config.json: its "chat_template" (a string, or a list of
 * {"name", "template"} of which "default" is used). TWIN_EFORMAT for bad JSON,
 * TWIN_ENOTFOUND when there is no template or it is not recognised. */
int twin_chat_template_from_tokenizer_config(const char *json_text, size_t len,
                                             twin_chat_template *out, twin_err *err);

/* Renders messages [n_messages] (borrowed). On success *out_text is a NUL-terminated string
 * the caller frees with free(), and *out_len its length. Errors (TWIN_EINVAL) name the message:
 * no messages, a missing or unknown role, missing content or invalid UTF-8, and orders the
 * template forbids (llama2, mistral, gemma: user/assistant alternating from a user turn, one
 * optional system message first, and a user turn after it). */
int twin_chat_template_apply(const twin_chat_template *tmpl, const twin_chat_message *messages,
                             int n_messages, const twin_chat_options *opts, char **out_text,
                             size_t *out_len, twin_err *err);

#endif
