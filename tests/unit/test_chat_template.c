/* tests/unit/test_chat_template.c — chat templates (llm-svc/model/chat_template.h): the exact
 * prompt of each family for a small conversation, written out here by hand from each model's
 * published prompt format; whitespace trimming where the templates trim; recognition from
 * Jinja markers and tokenizer_config.json; and errors that name the offending message.
 * (tests/python/test_chat_template.py checks the same renderers against the Jinja originals.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm-svc/model/chat_template.h"

/* ==== helpers ============================================================================== */

static const twin_chat_message CONV[] = {
    {"system", "Be kind."},
    {"user", "Hi"},
    {"assistant", "Hello"},
    {"user", "Bye"},
};
#define N_CONV 4

static void expect_render(const char *name, const twin_chat_message *msgs, int n,
                          const char *bos, const char *eos, int gen, const char *want) {
  twin_chat_template t;
  twin_err err = {0};
  if (twin_chat_template_by_name(name, &t, &err)) fail_msg("%s", err.msg);
  twin_chat_options o = {.bos_token = bos, .eos_token = eos, .add_generation_prompt = gen};
  char *text = NULL;
  size_t len = 0;
  if (twin_chat_template_apply(&t, msgs, n, &o, &text, &len, &err))
    fail_msg("%s: %s", name, err.msg);
  if (strcmp(text, want) != 0) fail_msg("%s rendered\n[%s]\nwant\n[%s]", name, text, want);
  assert_int_equal(len, strlen(want));
  free(text);
}

static void expect_error(const char *name, const twin_chat_message *msgs, int n,
                         const char *fragment) {
  twin_chat_template t;
  twin_err err = {0};
  if (twin_chat_template_by_name(name, &t, &err)) fail_msg("%s", err.msg);
  twin_chat_options o = {.bos_token = "<s>", .eos_token = "</s>", .add_generation_prompt = 1};
  char *text = (char *)1;
  assert_int_equal(twin_chat_template_apply(&t, msgs, n, &o, &text, NULL, &err), TWIN_EINVAL);
  assert_null(text);
  if (!strstr(err.msg, fragment)) fail_msg("%s: message '%s' lacks '%s'", name, err.msg, fragment);
}

/* ==== exact prompts ======================================================================== */

static void test_llama3(void **state) {
  (void)state;
  expect_render("llama3", CONV, N_CONV, "<|begin_of_text|>", "<|eot_id|>", 1,
                "<|begin_of_text|>"
                "<|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
  /* contents are trimmed; no generation prompt */
  const twin_chat_message m[] = {{"user", " \n padded\t "}};
  expect_render("llama3", m, 1, "<|begin_of_text|>", NULL, 0,
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>");
}

static void test_llama31_and_32(void **state) {
  (void)state;
  expect_render("llama3.1", CONV + 1, 1, "<|begin_of_text|>", NULL, 1,
                "<|begin_of_text|>"
                "<|start_header_id|>system<|end_header_id|>\n\n"
                "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
  twin_chat_template t;
  assert_int_equal(twin_chat_template_by_name("llama3.2", &t, NULL), 0);
  twin_chat_options o = {.bos_token = "<|begin_of_text|>", .add_generation_prompt = 0,
                         .date_string = "01 Jan 2030"};
  char *text = NULL;
  twin_err err = {0};
  assert_int_equal(twin_chat_template_apply(&t, CONV, 2, &o, &text, NULL, &err), 0);
  assert_string_equal(text,
                      "<|begin_of_text|>"
                      "<|start_header_id|>system<|end_header_id|>\n\n"
                      "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2030\n\n"
                      "Be kind.<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  free(text);
}

static void test_llama2(void **state) {
  (void)state;
  expect_render("llama2", CONV, N_CONV, "<s>", "</s>", 1,
                "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST] Hello </s>"
                "<s>[INST] Bye [/INST]");
  /* without a system prompt; turns are stripped */
  const twin_chat_message m[] = {{"user", "  Hi \n"}, {"assistant", "\tHello "}};
  expect_render("llama2", m, 2, "<s>", "</s>", 1, "<s>[INST] Hi [/INST] Hello </s>");
}

static void test_mistral(void **state) {
  (void)state;
  expect_render("mistral", CONV, N_CONV, "<s>", "</s>", 1,
                "<s> [INST] Be kind.\n\nHi [/INST] Hello</s> [INST] Bye [/INST]");
  /* nothing is stripped */
  const twin_chat_message m[] = {{"user", " Hi "}};
  expect_render("mistral", m, 1, "<s>", "</s>", 1, "<s> [INST]  Hi  [/INST]");
}

static void test_chatml_and_qwen(void **state) {
  (void)state;
  const char *body =
      "<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\nHello<|im_end|>\n"
      "<|im_start|>user\nBye<|im_end|>\n"
      "<|im_start|>assistant\n";
  char want[1024];
  snprintf(want, sizeof want, "<|im_start|>system\nBe kind.<|im_end|>\n%s", body);
  expect_render("chatml", CONV, N_CONV, "<s>", NULL, 1, want); /* ChatML writes no BOS */
  expect_render("qwen2", CONV, N_CONV, NULL, NULL, 1, want);   /* a given system prompt wins */
  expect_render("chatml", CONV + 1, 3, NULL, NULL, 1, body);
  snprintf(want, sizeof want, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n%s",
           body);
  expect_render("qwen2", CONV + 1, 3, NULL, NULL, 1, want);
  snprintf(want, sizeof want,
           "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
           "assistant.<|im_end|>\n%s",
           body);
  expect_render("qwen2.5", CONV + 1, 3, NULL, NULL, 1, want);
  /* no trimming, and roles in any order */
  const twin_chat_message m[] = {{"assistant", " a "}, {"user", "b\n"}};
  expect_render("chatml", m, 2, NULL, NULL, 0,
                "<|im_start|>assistant\n a <|im_end|>\n<|im_start|>user\nb\n<|im_end|>\n");
}

static void test_gemma(void **state) {
  (void)state;
  expect_render("gemma", CONV, N_CONV, "<bos>", "<eos>", 1,
                "<bos><start_of_turn>user\nBe kind.\n\nHi<end_of_turn>\n"
                "<start_of_turn>model\nHello<end_of_turn>\n"
                "<start_of_turn>user\nBye<end_of_turn>\n"
                "<start_of_turn>model\n");
  /* the folded system prompt is kept as given; the turn's own content is trimmed */
  const twin_chat_message m[] = {{"system", "Sys "}, {"user", " Hi\n"}};
  expect_render("gemma3", m, 2, "<bos>", NULL, 0,
                "<bos><start_of_turn>user\nSys \n\nHi<end_of_turn>\n");
}

static void test_unicode_whitespace_trim(void **state) {
  (void)state;
  /* U+00A0, U+3000, U+2003, U+0085 and U+001C are whitespace to Python's str.strip();
   * U+200B (zero width space) and U+FEFF are not. */
  const twin_chat_message m[] = {
      {"user", "\xC2\xA0\xE3\x80\x80x y\xE2\x80\x83\xC2\x85\x1C"},
      {"assistant", "\xE2\x80\x8Bz\xEF\xBB\xBF"}};
  expect_render("gemma", m, 2, "", NULL, 0,
                "<start_of_turn>user\nx y<end_of_turn>\n"
                "<start_of_turn>model\n\xE2\x80\x8Bz\xEF\xBB\xBF<end_of_turn>\n");
}

/* ==== recognition ========================================================================== */

static void expect_detect(const char *jinja, const char *name) {
  twin_chat_template t;
  twin_err err = {0};
  if (twin_chat_template_detect(jinja, &t, &err)) fail_msg("%s", err.msg);
  assert_string_equal(t.name, name);
}

static void test_detect_markers(void **state) {
  (void)state;
  expect_detect("{{ '<|start_header_id|>' + message['role'] }}", "llama3");
  expect_detect("<|start_header_id|> Cutting Knowledge Date: {{ date_string }}", "llama3.1");
  expect_detect("<|start_header_id|> Cutting Knowledge Date: {{ strftime_now('%d') }}",
                "llama3.2");
  expect_detect("{{ '<<SYS>>\\n' + system_message }} [INST]", "llama2");
  expect_detect("{{ ' [INST] ' + message['content'] + ' [/INST]' }}", "mistral");
  expect_detect("{{'<|im_start|>' + message['role'] }}", "chatml");
  expect_detect("<|im_start|>system\nYou are a helpful assistant.<|im_end|>", "qwen2");
  expect_detect("<|im_start|>You are Qwen, created by Alibaba Cloud. You are a helpful "
                "assistant.",
                "qwen2.5");
  expect_detect("{{ '<start_of_turn>' + role }}", "gemma");
  twin_chat_template t;
  twin_err err = {0};
  assert_int_equal(twin_chat_template_detect("### Human: {{ x }}", &t, &err), TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "not recognised"));
}

static void test_tokenizer_config(void **state) {
  (void)state;
  twin_chat_template t;
  twin_err err = {0};
  const char *plain = "{\"bos_token\": \"<bos>\", \"chat_template\": \"<start_of_turn>\"}";
  assert_int_equal(twin_chat_template_from_tokenizer_config(plain, strlen(plain), &t, &err), 0);
  assert_string_equal(t.name, "gemma");
  const char *list =
      "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"<<SYS>>\"},"
      " {\"name\": \"default\", \"template\": \"<|im_start|>\"}]}";
  assert_int_equal(twin_chat_template_from_tokenizer_config(list, strlen(list), &t, &err), 0);
  assert_string_equal(t.name, "chatml");
  const char *none = "{\"bos_token\": \"<s>\"}";
  assert_int_equal(twin_chat_template_from_tokenizer_config(none, strlen(none), &t, &err),
                   TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "no chat_template"));
  const char *bad = "{\"chat_template\": ";
  assert_int_equal(twin_chat_template_from_tokenizer_config(bad, strlen(bad), &t, &err),
                   TWIN_EFORMAT);
  const char *unknown = "{\"chat_template\": \"### Human:\"}";
  assert_int_equal(twin_chat_template_from_tokenizer_config(unknown, strlen(unknown), &t, &err),
                   TWIN_ENOTFOUND);
  assert_non_null(strstr(err.msg, "tokenizer_config.json"));
}

/* ==== errors =============================================================================== */

static void test_errors_name_the_problem(void **state) {
  (void)state;
  twin_chat_template t;
  twin_err err = {0};
  assert_int_equal(twin_chat_template_by_name("vicuna", &t, &err), TWIN_EINVAL);
  assert_non_null(strstr(err.msg, "unknown chat template 'vicuna'"));
  assert_non_null(strstr(err.msg, "llama3"));

  const twin_chat_message tool[] = {{"user", "a"}, {"tool", "b"}};
  expect_error("chatml", tool, 2, "messages[1].role 'tool' is unknown");
  const twin_chat_message no_content[] = {{"user", NULL}};
  expect_error("llama3", no_content, 1, "messages[0].content is missing");
  const twin_chat_message no_role[] = {{NULL, "x"}};
  expect_error("llama3", no_role, 1, "messages[0].role is missing");
  const twin_chat_message bad_utf8[] = {{"user", "ok"}, {"user", "a\xFF"}};
  expect_error("chatml", bad_utf8, 2, "messages[1].content is not valid UTF-8 (byte 1)");
  expect_error("gemma", CONV, 0, "no messages");

  const twin_chat_message two_users[] = {{"user", "a"}, {"user", "b"}};
  const twin_chat_message starts_assistant[] = {{"system", "s"}, {"assistant", "a"}};
  const twin_chat_message late_system[] = {{"user", "a"}, {"assistant", "b"}, {"system", "c"}};
  const twin_chat_message only_system[] = {{"system", "s"}};
  const char *strict[] = {"llama2", "mistral", "gemma"};
  for (int i = 0; i < 3; i++) {
    expect_error(strict[i], two_users, 2, "messages[1]: expected role 'assistant' but got 'user'");
    expect_error(strict[i], starts_assistant, 2,
                 "messages[1]: expected role 'user' but got 'assistant'");
    expect_error(strict[i], late_system, 3,
                 "messages[2]: role 'system' is only allowed as the first");
    expect_error(strict[i], only_system, 1, "needs a user message after the system message");
  }
  /* the same orders are fine where the template allows them */
  char *text = NULL;
  assert_int_equal(twin_chat_template_by_name("llama3", &t, NULL), 0);
  assert_int_equal(twin_chat_template_apply(&t, two_users, 2, NULL, &text, NULL, &err), 0);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_llama3),
      cmocka_unit_test(test_llama31_and_32),
      cmocka_unit_test(test_llama2),
      cmocka_unit_test(test_mistral),
      cmocka_unit_test(test_chatml_and_qwen),
      cmocka_unit_test(test_gemma),
      cmocka_unit_test(test_unicode_whitespace_trim),
      cmocka_unit_test(test_detect_markers),
      cmocka_unit_test(test_tokenizer_config),
      cmocka_unit_test(test_errors_name_the_problem),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
