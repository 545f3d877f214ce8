/* tests/integration/chat_tool.c — renders a conversation with a chat template, for the parity
 * tests (tests/python/test_chat_template.py). Reads messages as JSON lines
 * ({"role": ..., "content": ...}) from stdin and writes the prompt to stdout, byte for byte,
 * with no trailing newline. On error: the message on stderr, exit status 2.
 *   chat-tool (--template NAME | --config tokenizer_config.json) [--bos TEXT] [--eos TEXT]
 *             [--date TEXT] [--no-generation-prompt] [--detect] */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "llm-svc/model/chat_template.h"

static int usage(void) {
  fprintf(stderr,
          "usage: chat-tool (--template NAME | --config tokenizer_config.json) [--bos TEXT]\n"
          "                 [--eos TEXT] [--date TEXT] [--no-generation-prompt] [--detect]\n"
          "  stdin: one JSON object {\"role\", \"content\"} per line; stdout: the prompt.\n"
          "  --detect prints the recognised template name instead. Templates: %s\n",
          twin_chat_template_names());
  return 2;
}

static char *read_stream(FILE *f, size_t *len_out) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap *= 2;
      char *p = realloc(buf, cap);
      if (!p) {
        free(buf);
        return NULL;
      }
      buf = p;
    }
    size_t n = fread(buf + len, 1, 4096, f);
    len += n;
    if (n < 4096) break;
  }
  buf[len] = 0;
  *len_out = len;
  return buf;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *text = read_stream(f, len);
  fclose(f);
  return text;
}

int main(int argc, char **argv) {
  const char *name = NULL, *config = NULL;
  twin_chat_options opts = {.add_generation_prompt = 1};
  int detect_only = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--template") && next) name = argv[++i];
    else if (!strcmp(a, "--config") && next) config = argv[++i];
    else if (!strcmp(a, "--bos") && next) opts.bos_token = argv[++i];
    else if (!strcmp(a, "--eos") && next) opts.eos_token = argv[++i];
    else if (!strcmp(a, "--date") && next) opts.date_string = argv[++i];
    else if (!strcmp(a, "--no-generation-prompt")) opts.add_generation_prompt = 0;
    else if (!strcmp(a, "--detect")) detect_only = 1;
    else return usage();
  }
  if (!name == !config) return usage();

  twin_err err = {0};
  twin_chat_template tmpl;
  int rc;
  if (name) {
    rc = twin_chat_template_by_name(name, &tmpl, &err);
  } else {
    size_t len = 0;
    char *text = read_file(config, &len);
    if (!text) {
      fprintf(stderr, "chat-tool: cannot read %s\n", config);
      return 2;
    }
    rc = twin_chat_template_from_tokenizer_config(text, len, &tmpl, &err);
    free(text);
  }
  if (rc) {
    fprintf(stderr, "chat-tool: %s\n", err.msg);
    return 2;
  }
  if (detect_only) {
    fputs(tmpl.name, stdout);
    return 0;
  }

  size_t input_len = 0;
  char *input = read_stream(stdin, &input_len);
  if (!input) {
    fprintf(stderr, "chat-tool: out of memory reading stdin\n");
    return 2;
  }
  cJSON *lines[256];
  twin_chat_message msgs[256];
  int n = 0, status = 0;
  for (char *line = input, *nl; line && *line; line = nl ? nl + 1 : NULL) {
    nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (!line[strspn(line, " \t\r")]) continue;
    if (n == 256) {
      fprintf(stderr, "chat-tool: more than 256 messages\n");
      status = 2;
      break;
    }
    cJSON *obj = cJSON_Parse(line);
    if (!obj) {
      fprintf(stderr, "chat-tool: line %d is not JSON\n", n + 1);
      status = 2;
      break;
    }
    lines[n] = obj;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(obj, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(obj, "content");
    msgs[n].role = cJSON_IsString(role) ? role->valuestring : NULL;
    msgs[n].content = cJSON_IsString(content) ? content->valuestring : NULL;
    n++;
  }
  if (!status) {
    char *prompt = NULL;
    size_t prompt_len = 0;
    rc = twin_chat_template_apply(&tmpl, msgs, n, &opts, &prompt, &prompt_len, &err);
    if (rc) {
      fprintf(stderr, "chat-tool: %s\n", err.msg);
      status = 2;
    } else {
      fwrite(prompt, 1, prompt_len, stdout);
      free(prompt);
    }
  }
  for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
  free(input);
  return status;
}
