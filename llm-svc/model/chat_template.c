/* llm-svc/model/chat_template.c — the chat templates of chat_template.h, rendered in C.
 * Each family's renderer follows its reference Jinja template statement by statement,
 * including which contents are whitespace-trimmed: Jinja's trim and Python's str.strip()
 * remove Unicode whitespace (category Zs, or bidirectional class WS, B or S), which we test
 * through utf8proc's character properties. */
#include "llm-svc/model/chat_template.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ==== the variants we know ================================================================ */

static const char QWEN2_DEFAULT_SYSTEM[] = "You are a helpful assistant.";
static const char QWEN25_DEFAULT_SYSTEM[] =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
static const char LLAMA31_DEFAULT_DATE[] = "26 Jul 2024";

static const twin_chat_template KNOWN_TEMPLATES[] = {
    {TWIN_CHAT_LLAMA3, "llama3", NULL, 0, 0},
    {TWIN_CHAT_LLAMA3, "llama3.1", NULL, 1, 0},
    {TWIN_CHAT_LLAMA3, "llama3.2", NULL, 1, 1},
    {TWIN_CHAT_LLAMA2, "llama2", NULL, 0, 0},
    {TWIN_CHAT_MISTRAL, "mistral", NULL, 0, 0},
    {TWIN_CHAT_CHATML, "chatml", NULL, 0, 0},
    {TWIN_CHAT_CHATML, "qwen2", QWEN2_DEFAULT_SYSTEM, 0, 0},
    {TWIN_CHAT_CHATML, "qwen2.5", QWEN25_DEFAULT_SYSTEM, 0, 0},
    {TWIN_CHAT_GEMMA, "gemma", NULL, 0, 0},
};
#define N_KNOWN_TEMPLATES (int)(sizeof KNOWN_TEMPLATES / sizeof KNOWN_TEMPLATES[0])

static const char KNOWN_NAMES[] =
    "llama3, llama3.1, llama3.2, llama2, mistral, chatml, qwen2, qwen2.5, gemma";

const char *twin_chat_template_names(void) { return KNOWN_NAMES; }

static const twin_chat_template *known_by_name(const char *name) {
  for (int i = 0; i < N_KNOWN_TEMPLATES; i++)
    if (strcmp(KNOWN_TEMPLATES[i].name, name) == 0) return &KNOWN_TEMPLATES[i];
  return NULL;
}

int twin_chat_template_by_name(const char *name, twin_chat_template *out, twin_err *err) {
  if (!name || !name[0])
    return twin_err_set(err, TWIN_EINVAL, "chat template name is empty (known: %s)", KNOWN_NAMES);
  const twin_chat_template *t = known_by_name(strcmp(name, "gemma3") == 0 ? "gemma" : name);
  if (!t)
    return twin_err_set(err, TWIN_EINVAL, "unknown chat template '%s' (known: %s)", name,
                        KNOWN_NAMES);
  *out = *t;
  return TWIN_OK;
}

/* ==== recognising a Jinja template ========================================================= */

int twin_chat_template_detect(const char *jinja_text, twin_chat_template *out, twin_err *err) {
  if (!jinja_text) return twin_err_set(err, TWIN_EINVAL, "chat_template text is missing");
  const char *name = NULL;
  if (strstr(jinja_text, "<|start_header_id|>")) {
    if (!strstr(jinja_text, "Cutting Knowledge Date")) name = "llama3";
    else name = strstr(jinja_text, "strftime_now") ? "llama3.2" : "llama3.1";
  } else if (strstr(jinja_text, "<start_of_turn>")) {
    name = "gemma";
  } else if (strstr(jinja_text, "<|im_start|>")) {
    if (strstr(jinja_text, QWEN25_DEFAULT_SYSTEM)) name = "qwen2.5";
    else if (strstr(jinja_text, QWEN2_DEFAULT_SYSTEM)) name = "qwen2";
    else name = "chatml";
  } else if (strstr(jinja_text, "<<SYS>>")) {
    name = "llama2";
  } else if (strstr(jinja_text, "[INST]")) {
    name = "mistral";
  }
  if (!name)
    return twin_err_set(err, TWIN_ENOTFOUND,
                        "chat_template not recognised: none of the markers <|start_header_id|>, "
                        "<start_of_turn>, <|im_start|>, <<SYS>>, [INST]; choose one by name (%s)",
                        KNOWN_NAMES);
  *out = *known_by_name(name);
  return TWIN_OK;
}

int twin_chat_template_from_tokenizer_config(const char *json_text, size_t len,
                                             twin_chat_template *out, twin_err *err) {
  cJSON *root = cJSON_ParseWithLength(json_text, len);
  if (!root) {
    const char *at = cJSON_GetErrorPtr();
    return twin_err_set(err, TWIN_EFORMAT, "tokenizer_config.json: not valid JSON (near byte %ld)",
                        at && at >= json_text ? (long)(at - json_text) : -1L);
  }
  int rc;
  const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
  const char *text = NULL;
  if (cJSON_IsString(tmpl)) {
    text = tmpl->valuestring;
  } else if (cJSON_IsArray(tmpl)) {
    const cJSON *item;
    cJSON_ArrayForEach(item, tmpl) {
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
      const cJSON *body = cJSON_GetObjectItemCaseSensitive(item, "template");
      if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0 &&
          cJSON_IsString(body))
        text = body->valuestring;
    }
    if (!text) {
      rc = twin_err_set(err, TWIN_ENOTFOUND,
                        "tokenizer_config.json: chat_template is a list without a \"default\" "
                        "entry");
      goto done;
    }
  } else {
    rc = twin_err_set(err, TWIN_ENOTFOUND,
                      "tokenizer_config.json: no chat_template (a string or a list of "
                      "{name, template})");
    goto done;
  }
  rc = twin_chat_template_detect(text, out, err);
  if (rc) twin_err_wrap(err, "tokenizer_config.json");
done:
  cJSON_Delete(root);
  return rc;
}

/* ==== text helpers ========================================================================= */

typedef struct text_buf {
  char *data;
  size_t len, cap;
  int out_of_memory;
} text_buf;

static void buf_add(text_buf *b, const char *s, size_t n) {
  if (b->out_of_memory) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
      b->out_of_memory = 1;
      return;
    }
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

static void buf_str(text_buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* Python's str.isspace() for one code point. */
static int is_python_space(utf8proc_int32_t cp) {
  const utf8proc_property_t *prop = utf8proc_get_property(cp);
  return prop->category == UTF8PROC_CATEGORY_ZS || prop->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         prop->bidi_class == UTF8PROC_BIDI_CLASS_B || prop->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

/* Appends s[0..n) (valid UTF-8) without leading and trailing whitespace, as str.strip(). */
static void buf_add_stripped(text_buf *b, const char *s, size_t n) {
  const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
  size_t start = 0, end = n;
  while (start < end) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(u + start, (utf8proc_ssize_t)(end - start), &cp);
    if (k <= 0 || !is_python_space(cp)) break;
    start += (size_t)k;
  }
  while (end > start) {
    size_t at = end - 1;
    while (at > start && (u[at] & 0xC0) == 0x80) at--;
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(u + at, (utf8proc_ssize_t)(end - at), &cp);
    if (k <= 0 || !is_python_space(cp)) break;
    end = at;
  }
  buf_add(b, s + start, end - start);
}

static int utf8_valid(const char *s, size_t *bad_at) {
  const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
  size_t i = 0;
  while (u[i]) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(u + i, -1, &cp);
    if (k <= 0) {
      *bad_at = i;
      return 0;
    }
    i += (size_t)k;
  }
  return 1;
}

/* ==== checks =============================================================================== */

static int is_role(const twin_chat_message *m, const char *role) {
  return strcmp(m->role, role) == 0;
}

static int check_messages(const twin_chat_message *msgs, int n, twin_err *err) {
  if (!msgs || n <= 0) return twin_err_set(err, TWIN_EINVAL, "chat: no messages");
  for (int i = 0; i < n; i++) {
    if (!msgs[i].role) return twin_err_set(err, TWIN_EINVAL, "messages[%d].role is missing", i);
    if (!is_role(&msgs[i], "system") && !is_role(&msgs[i], "user") &&
        !is_role(&msgs[i], "assistant"))
      return twin_err_set(err, TWIN_EINVAL,
                          "messages[%d].role '%.64s' is unknown (expected system, user or "
                          "assistant)",
                          i, msgs[i].role);
    if (!msgs[i].content)
      return twin_err_set(err, TWIN_EINVAL, "messages[%d].content is missing", i);
    size_t bad_at = 0;
    if (!utf8_valid(msgs[i].content, &bad_at))
      return twin_err_set(err, TWIN_EINVAL, "messages[%d].content is not valid UTF-8 (byte %zu)",
                          i, bad_at);
  }
  return TWIN_OK;
}

/* llama2, mistral, gemma: [system] user (assistant user)* [assistant]. */
static int check_alternating(const twin_chat_template *t, const twin_chat_message *msgs, int n,
                             twin_err *err) {
  int first = is_role(&msgs[0], "system") ? 1 : 0;
  if (first == n)
    return twin_err_set(err, TWIN_EINVAL,
                        "messages: the %s template needs a user message after the system "
                        "message",
                        t->name);
  for (int i = first; i < n; i++) {
    const char *want = (i - first) % 2 == 0 ? "user" : "assistant";
    if (is_role(&msgs[i], want)) continue;
    if (is_role(&msgs[i], "system"))
      return twin_err_set(err, TWIN_EINVAL,
                          "messages[%d]: role 'system' is only allowed as the first message with "
                          "the %s template",
                          i, t->name);
    return twin_err_set(err, TWIN_EINVAL,
                        "messages[%d]: expected role '%s' but got '%s' (the %s template needs "
                        "user and assistant turns alternating, starting with user, after one "
                        "optional system message)",
                        i, want, msgs[i].role, t->name);
  }
  return TWIN_OK;
}

/* ==== renderers, one per family ============================================================ */

static void render_llama3(const twin_chat_template *t, const twin_chat_message *msgs, int n,
                          const twin_chat_options *o, text_buf *b) {
  int start = 0;
  if (t->dated_system_block) {
    /* Llama 3.1 / 3.2: BOS, then a system block that always exists and carries the dates. */
    char today[64];
    const char *date = o->date_string;
    if (!date && t->date_from_clock) {
      time_t now = time(NULL);
      struct tm tm_now;
      if (localtime_r(&now, &tm_now) && strftime(today, sizeof today, "%d %b %Y", &tm_now))
        date = today;
    }
    if (!date) date = LLAMA31_DEFAULT_DATE;
    buf_str(b, o->bos_token);
    buf_str(b, "<|start_header_id|>system<|end_header_id|>\n\n"
               "Cutting Knowledge Date: December 2023\nToday Date: ");
    buf_str(b, date);
    buf_str(b, "\n\n");
    if (is_role(&msgs[0], "system")) {
      buf_add_stripped(b, msgs[0].content, strlen(msgs[0].content));
      start = 1;
    }
    buf_str(b, "<|eot_id|>");
  }
  for (int i = start; i < n; i++) {
    if (i == 0 && !t->dated_system_block)
      buf_str(b, o->bos_token); /* Llama 3: BOS goes with the first message */
    buf_str(b, "<|start_header_id|>");
    buf_str(b, msgs[i].role);
    buf_str(b, "<|end_header_id|>\n\n");
    buf_add_stripped(b, msgs[i].content, strlen(msgs[i].content));
    buf_str(b, "<|eot_id|>");
  }
  if (o->add_generation_prompt) buf_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_llama2(const twin_chat_message *msgs, int n, const twin_chat_options *o,
                          text_buf *b) {
  /* Each user turn opens with BOS; the system prompt goes inside the first one, and the whole
   * turn (system block included) is stripped. No generation prompt: "[/INST]" is one. */
  int first = is_role(&msgs[0], "system") ? 1 : 0;
  text_buf turn = {0};
  for (int i = first; i < n; i++) {
    turn.len = 0;
    if (i == first && first) {
      buf_str(&turn, "<<SYS>>\n");
      buf_str(&turn, msgs[0].content);
      buf_str(&turn, "\n<</SYS>>\n\n");
    }
    buf_str(&turn, msgs[i].content);
    if (turn.out_of_memory) {
      b->out_of_memory = 1;
      break;
    }
    if (is_role(&msgs[i], "user")) {
      buf_str(b, o->bos_token);
      buf_str(b, "[INST] ");
      buf_add_stripped(b, turn.data, turn.len);
      buf_str(b, " [/INST]");
    } else {
      buf_str(b, " ");
      buf_add_stripped(b, turn.data, turn.len);
      buf_str(b, " ");
      buf_str(b, o->eos_token);
    }
  }
  free(turn.data);
}

static void render_mistral(const twin_chat_message *msgs, int n, const twin_chat_options *o,
                           text_buf *b) {
  /* One BOS; the system prompt is prepended to the first user message; nothing stripped. */
  int first = is_role(&msgs[0], "system") ? 1 : 0;
  buf_str(b, o->bos_token);
  for (int i = first; i < n; i++) {
    if (is_role(&msgs[i], "user")) {
      buf_str(b, " [INST] ");
      if (i == first && first) {
        buf_str(b, msgs[0].content);
        buf_str(b, "\n\n");
      }
      buf_str(b, msgs[i].content);
      buf_str(b, " [/INST]");
    } else {
      buf_str(b, " ");
      buf_str(b, msgs[i].content);
      buf_str(b, o->eos_token);
    }
  }
}

static void render_chatml(const twin_chat_template *t, const twin_chat_message *msgs, int n,
                          const twin_chat_options *o, text_buf *b) {
  if (t->default_system && !is_role(&msgs[0], "system")) {
    buf_str(b, "<|im_start|>system\n");
    buf_str(b, t->default_system);
    buf_str(b, "<|im_end|>\n");
  }
  for (int i = 0; i < n; i++) {
    buf_str(b, "<|im_start|>");
    buf_str(b, msgs[i].role);
    buf_str(b, "\n");
    buf_str(b, msgs[i].content);
    buf_str(b, "<|im_end|>\n");
  }
  if (o->add_generation_prompt) buf_str(b, "<|im_start|>assistant\n");
}

static void render_gemma(const twin_chat_message *msgs, int n, const twin_chat_options *o,
                         text_buf *b) {
  /* Gemma 3: the system prompt and a blank line open the first user turn (unstripped); each
   * turn's own content is stripped; the assistant is called "model". */
  int first = is_role(&msgs[0], "system") ? 1 : 0;
  buf_str(b, o->bos_token);
  for (int i = first; i < n; i++) {
    buf_str(b, "<start_of_turn>");
    buf_str(b, is_role(&msgs[i], "assistant") ? "model" : msgs[i].role);
    buf_str(b, "\n");
    if (i == first && first) {
      buf_str(b, msgs[0].content);
      buf_str(b, "\n\n");
    }
    buf_add_stripped(b, msgs[i].content, strlen(msgs[i].content));
    buf_str(b, "<end_of_turn>\n");
  }
  if (o->add_generation_prompt) buf_str(b, "<start_of_turn>model\n");
}

/* ==== apply ================================================================================ */

int twin_chat_template_apply(const twin_chat_template *tmpl, const twin_chat_message *messages,
                             int n_messages, const twin_chat_options *opts, char **out_text,
                             size_t *out_len, twin_err *err) {
  *out_text = NULL;
  if (out_len) *out_len = 0;
  if (!tmpl) return twin_err_set(err, TWIN_EINVAL, "chat: no template");
  int rc = check_messages(messages, n_messages, err);
  if (rc) return rc;
  twin_chat_options o = {0};
  if (opts) o = *opts;
  if (!o.bos_token) o.bos_token = "";
  if (!o.eos_token) o.eos_token = "";

  text_buf b = {0};
  switch (tmpl->family) {
    case TWIN_CHAT_LLAMA3:
      render_llama3(tmpl, messages, n_messages, &o, &b);
      break;
    case TWIN_CHAT_LLAMA2:
      if ((rc = check_alternating(tmpl, messages, n_messages, err))) return rc;
      render_llama2(messages, n_messages, &o, &b);
      break;
    case TWIN_CHAT_MISTRAL:
      if ((rc = check_alternating(tmpl, messages, n_messages, err))) return rc;
      render_mistral(messages, n_messages, &o, &b);
      break;
    case TWIN_CHAT_CHATML:
      render_chatml(tmpl, messages, n_messages, &o, &b);
      break;
    case TWIN_CHAT_GEMMA:
      if ((rc = check_alternating(tmpl, messages, n_messages, err))) return rc;
      render_gemma(messages, n_messages, &o, &b);
      break;
    default:
      return twin_err_set(err, TWIN_EINVAL, "chat: template '%s' has an unknown family %d",
                          tmpl->name ? tmpl->name : "?", (int)tmpl->family);
  }
  if (!b.out_of_memory && !b.data) buf_add(&b, "", 0); /* an empty render is still a string */
  if (b.out_of_memory) {
    free(b.data);
    return twin_err_set(err, TWIN_ENOMEM, "chat: out of memory rendering %d messages",
                        n_messages);
  }
  *out_text = b.data;
  if (out_len) *out_len = b.len;
  return TWIN_OK;
}
