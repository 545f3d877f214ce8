"""Parity of our C chat templates (llm-svc/model/chat_template.c) with the models' own Jinja
templates, rendered by jinja2 the way Hugging Face's apply_chat_template renders them (a
sandboxed environment with trim_blocks and lstrip_blocks, raise_exception and strftime_now).

Each template below is written from the chat_template format published in the named model's
tokenizer_config.json; the tool-calling branches of the Llama 3.1/3.2 and Qwen2.5 templates are
left out (we do not render tools). The C side is driven through build/bin/chat-tool, which reads
messages as JSON lines; it is given the template as a tokenizer_config.json, so recognising the
family from the Jinja text is tested on the way.
"""
import datetime
import json
import subprocess
import sys

import pytest
from jinja2.ext import loopcontrols  # pip install jinja2 (deploy/install-deps.sh)
from jinja2.sandbox import ImmutableSandboxedEnvironment

import twin_testlib

# ---- the published templates ---------------------------------------------------------------

# meta-llama/Meta-Llama-3-8B-Instruct
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

# meta-llama/Llama-3.1-8B-Instruct (without the tool-calling branches)
LLAMA31 = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# meta-llama/Llama-3.2-1B-Instruct (without the tool-calling branches): today's date by default
LLAMA32 = LLAMA31.replace(
    """{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}""",
    """{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}""",
)

# meta-llama/Llama-2-7b-chat-hf
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

# mistralai/Mistral-7B-Instruct-v0.2 (the revision with system-prompt support)
MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

# teknium/OpenHermes-2.5-Mistral-7B (plain ChatML)
CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen/Qwen2-7B-Instruct
QWEN2 = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen/Qwen2.5-7B-Instruct (without the tool-calling branches)
QWEN25 = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# google/gemma-3-4b-it
GEMMA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

# name -> (Jinja text, bos text, eos text, may roles come in any order)
FAMILIES = {
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>", True),
    "llama3.1": (LLAMA31, "<|begin_of_text|>", "<|eot_id|>", True),
    "llama3.2": (LLAMA32, "<|begin_of_text|>", "<|eot_id|>", True),
    "llama2": (LLAMA2, "<s>", "</s>", False),
    "mistral": (MISTRAL, "<s>", "</s>", False),
    "chatml": (CHATML, "<s>", "<|im_end|>", True),
    "qwen2": (QWEN2, "", "<|im_end|>", True),
    "qwen2.5": (QWEN25, "", "<|im_end|>", True),
    "gemma": (GEMMA, "<bos>", "<eos>", False),
}

# ---- conversations ---------------------------------------------------------------------------

PY_SPACES = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def msg(role, content):
    return {"role": role, "content": content}


ALTERNATING = [
    [msg("user", "Hello")],
    [msg("system", "You are terse."), msg("user", "What is 2+2?")],
    [msg("system", "Answer in French."), msg("user", "Hi"), msg("assistant", "Bonjour !"),
     msg("user", "How are you?")],
    [msg("user", "one"), msg("assistant", "two"), msg("user", "three"), msg("assistant", "four")],
    [msg("system", "  spaced system \n"), msg("user", "\n\t padded user  \u00a0"),
     msg("assistant", " \u3000answer\u2003 "), msg("user", "\r\nlast\x1c\x1f")],
    [msg("user", PY_SPACES + "every Python space around me" + PY_SPACES)],
    [msg("user", "\u200bzero-width space is not whitespace\ufeff")],
    [msg("system", "Émoji 🦙 and 中文 and {{ braces }} {% raw %} 'quotes' \"dq\" \\back"),
     msg("user", "Ünïcödé ✓ — <|not_special|> [INST] inside"), msg("assistant", "🙂"),
     msg("user", "end")],
    [msg("user", "")],
    [msg("system", ""), msg("user", "   ")],
    [msg("system", "sys"), msg("user", "q"), msg("assistant", "")],
    [msg("user", "multi\nline\n\ncontent\n")],
]

ANY_ORDER = [
    [msg("user", "a"), msg("user", "b")],
    [msg("assistant", "I speak first."), msg("user", "ok")],
    [msg("user", "a"), msg("system", "late system"), msg("assistant", "b")],
    [msg("system", "only a system message")],
]

# Conversations each strict template refuses (Jinja raises; we fail naming the message).
BAD_ORDER = [
    [msg("user", "a"), msg("user", "b")],
    [msg("assistant", "first"), msg("user", "second")],
    [msg("system", "s"), msg("assistant", "a")],
    [msg("user", "a"), msg("assistant", "b"), msg("assistant", "c")],
]

# ---- helpers ---------------------------------------------------------------------------------


def chat_tool():
    return twin_testlib.binary("chat-tool")


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def jinja_render(template, messages, bos, eos, add_generation_prompt, **extra):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(template).render(
        messages=messages, bos_token=bos, eos_token=eos,
        add_generation_prompt=add_generation_prompt, **extra)


def run_tool(args, messages):
    stdin = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages)
    proc = subprocess.run([chat_tool(), *args], input=stdin.encode("utf-8"),
                          capture_output=True, timeout=30)
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """A tokenizer_config.json per family, holding its Jinja template."""
    out = {}
    base = tmp_path_factory.mktemp("configs")
    for name, (template, bos, eos, _) in FAMILIES.items():
        path = base / f"{name}.json"
        path.write_text(json.dumps({"bos_token": bos, "eos_token": eos,
                                    "chat_template": template}), encoding="utf-8")
        out[name] = str(path)
    return out


def tool_args(config, bos, eos, add_generation_prompt, date=None):
    args = ["--config", config, "--bos", bos, "--eos", eos]
    if not add_generation_prompt:
        args.append("--no-generation-prompt")
    if date is not None:
        args += ["--date", date]
    return args


# ---- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_detects_family_from_jinja(family, configs):
    rc, out, err = run_tool(["--config", configs[family], "--detect"], [])
    assert rc == 0, err
    assert out == family


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_matches_jinja(family, add_generation_prompt, configs):
    template, bos, eos, any_order = FAMILIES[family]
    conversations = ALTERNATING + (ANY_ORDER if any_order else [])
    date = "02 Mar 2025" if family.startswith("llama3.") else None
    extra = {"date_string": date} if date else {}
    for i, conv in enumerate(conversations):
        expected = jinja_render(template, conv, bos, eos, add_generation_prompt, **extra)
        rc, out, err = run_tool(tool_args(configs[family], bos, eos, add_generation_prompt, date),
                                conv)
        assert rc == 0, f"conversation {i}: {err}"
        assert out == expected, f"{family}, conversation {i}"


def test_llama31_default_date_and_llama32_today(configs):
    conv = ALTERNATING[2]
    for family in ("llama3.1", "llama3.2"):
        template, bos, eos, _ = FAMILIES[family]
        before = jinja_render(template, conv, bos, eos, True)
        rc, out, err = run_tool(tool_args(configs[family], bos, eos, True), conv)
        after = jinja_render(template, conv, bos, eos, True)
        assert rc == 0, err
        assert out in (before, after), family  # the clock may pass midnight in between
        if family == "llama3.1":
            assert "Today Date: 26 Jul 2024\n" in out


def test_by_name_equals_detected(configs):
    conv = ALTERNATING[2]
    for family, (template, bos, eos, _) in FAMILIES.items():
        by_name = run_tool(["--template", family, "--bos", bos, "--eos", eos, "--date", "x"], conv)
        detected = run_tool(tool_args(configs[family], bos, eos, True, "x"), conv)
        assert by_name[0] == 0 and by_name == detected, family


@pytest.mark.parametrize("family", ["llama2", "mistral", "gemma"])
def test_refuses_orders_jinja_refuses(family, configs):
    template, bos, eos, _ = FAMILIES[family]
    for i, conv in enumerate(BAD_ORDER):
        with pytest.raises(TemplateError):
            jinja_render(template, conv, bos, eos, True)
        rc, out, err = run_tool(tool_args(configs[family], bos, eos, True), conv)
        assert rc == 2 and out == "", f"conversation {i} was rendered: {out!r}"
        assert "messages[" in err and family in err, err


@pytest.mark.parametrize("family", ["llama2", "mistral", "gemma"])
def test_refuses_what_jinja_would_silently_drop(family, configs):
    # A lone system message would vanish (llama2, mistral) or lose its place (gemma); a
    # system message in the middle is dropped by the llama2 template. We refuse both.
    _, bos, eos, _ = FAMILIES[family]
    rc, _, err = run_tool(tool_args(configs[family], bos, eos, True), [msg("system", "s")])
    assert rc == 2 and "needs a user message after the system message" in err, err
    conv = [msg("user", "a"), msg("system", "s"), msg("user", "b")]
    rc, _, err = run_tool(tool_args(configs[family], bos, eos, True), conv)
    assert rc == 2 and "messages[1]: role 'system' is only allowed as the first" in err, err


def test_list_form_chat_template(tmp_path):
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"chat_template": [
        {"name": "tool_use", "template": "{{ '<|im_start|>' }}"},
        {"name": "default", "template": GEMMA}]}))
    rc, out, err = run_tool(["--config", str(path), "--detect"], [])
    assert (rc, out) == (0, "gemma"), err
    path.write_text(json.dumps({"chat_template": [{"name": "tool_use", "template": GEMMA}]}))
    rc, out, err = run_tool(["--config", str(path), "--detect"], [])
    assert rc == 2 and '"default"' in err


def test_errors_name_the_problem(tmp_path):
    rc, _, err = run_tool(["--template", "vicuna"], [msg("user", "a")])
    assert rc == 2 and "unknown chat template 'vicuna'" in err
    rc, _, err = run_tool(["--template", "chatml"], [msg("tool", "a")])
    assert rc == 2 and "messages[0].role 'tool' is unknown" in err
    rc, _, err = run_tool(["--template", "chatml"], [{"role": "user"}])
    assert rc == 2 and "messages[0].content is missing" in err
    rc, _, err = run_tool(["--template", "chatml"], [])
    assert rc == 2 and "no messages" in err
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"chat_template": "{{ messages }} ### Human:"}))
    rc, _, err = run_tool(["--config", str(path), "--detect"], [])
    assert rc == 2 and "not recognised" in err
    path.write_text("{ not json")
    rc, _, err = run_tool(["--config", str(path), "--detect"], [])
    assert rc == 2 and "not valid JSON" in err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
