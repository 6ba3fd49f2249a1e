"""Chat rendering: the file's Qwen3 template must reproduce llama.cpp's chat prompts exactly."""
from __future__ import annotations

import re

import pytest

from conftest import read_jsonl
from generator.chat import BUILTIN_TEMPLATE, ChatTemplate, ChatTemplateError

CHAT_RUNS = [r for r in read_jsonl("greedy.jsonl") if r["prompt_name"].startswith("chat_")]
GENERATION_SUFFIX = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


def messages_from_prompt(prompt: str) -> list[dict]:
    """Recover the conversation from a rendered ChatML prompt (test helper)."""
    assert prompt.endswith(GENERATION_SUFFIX)
    body = prompt[: -len(GENERATION_SUFFIX)]
    turns = re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", body, flags=re.S)
    assert "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in turns) == body
    return [{"role": r, "content": c} for r, c in turns]


@pytest.fixture(scope="module")
def file_template(tied_metadata) -> ChatTemplate:
    return ChatTemplate.from_metadata(tied_metadata)


def test_file_template_is_used(file_template, tied_metadata):
    assert not file_template.is_builtin
    assert file_template.source == tied_metadata["tokenizer.chat_template"]
    assert file_template.eos_token == "<|im_end|>"


@pytest.mark.parametrize("run", CHAT_RUNS[:3], ids=[r["prompt_name"] for r in CHAT_RUNS[:3]])
def test_reproduces_reference_chat_prompts(file_template, run):
    messages = messages_from_prompt(run["prompt"])
    assert len(messages) >= 1
    assert file_template.render(messages, add_generation_prompt=True, enable_thinking=False) == run["prompt"]


@pytest.mark.parametrize("run", CHAT_RUNS[:3], ids=[r["prompt_name"] for r in CHAT_RUNS[:3]])
def test_builtin_template_matches_qwen3_for_plain_turns(run):
    builtin = ChatTemplate(None)
    assert builtin.is_builtin and builtin.source == BUILTIN_TEMPLATE
    assert builtin.render(messages_from_prompt(run["prompt"]), enable_thinking=False) == run["prompt"]


@pytest.mark.parametrize("template", ["file", "builtin"])
def test_thinking_and_generation_prompt_switches(file_template, template):
    tpl = file_template if template == "file" else ChatTemplate(None)
    msgs = [{"role": "user", "content": "hi"}]
    assert tpl.render(msgs, enable_thinking=True) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tpl.render(msgs, enable_thinking=False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert tpl.render(msgs, add_generation_prompt=False) == "<|im_start|>user\nhi<|im_end|>\n"


def test_file_template_strips_old_reasoning(file_template):
    # Qwen3's template drops the think block of earlier assistant turns: a sign it really runs the file's logic.
    msgs = [{"role": "user", "content": "a"},
            {"role": "assistant", "content": "<think>\nsecret\n</think>\n\nanswer"},
            {"role": "user", "content": "b"}]
    out = file_template.render(msgs)
    assert "secret" not in out and "<|im_start|>assistant\nanswer<|im_end|>\n" in out


def test_tojson_keeps_unicode_and_tools_render(file_template):
    tools = [{"type": "function", "function": {"name": "grep", "description": "suche für Wörter"}}]
    out = file_template.render([{"role": "user", "content": "x"}], tools=tools)
    assert '"description": "suche für Wörter"' in out and "<tools>" in out


def test_template_errors_are_domain_errors():
    with pytest.raises(ChatTemplateError, match="refused"):
        ChatTemplate("{{ raise_exception('only user turns') }}").render([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="compile"):
        ChatTemplate("{% for %}")
    with pytest.raises(ChatTemplateError):  # the sandbox blocks attribute escapes
        ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}").render([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="role"):
        ChatTemplate(None).render([{"content": "x"}])
