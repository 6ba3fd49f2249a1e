"""Chat messages -> prompt text, with the model file's own `tokenizer.chat_template`.

WHY render the file's template: the model was trained on exactly that layout (ChatML with Qwen3's
`<think>` block). We run it the way Hugging Face transformers runs chat templates so that a template
written for transformers renders identically here: a sandboxed Jinja environment with
`trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension, a `raise_exception()` global and a
`tojson` filter that keeps non-ASCII text as is. Files without a template get a small ChatML template
of our own (`BUILTIN_TEMPLATE`).

`enable_thinking=False` is passed to the template, which for Qwen3 appends the empty
`<think>\\n\\n</think>\\n\\n` block after the assistant header so the model answers directly.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from generator.errors import GeneratorError

Message = Mapping[str, Any]  # {"role": "system" | "user" | "assistant" | "tool", "content": str, ...}


class ChatTemplateError(GeneratorError, ValueError):
    """The chat template could not be compiled or rendered (bad template or unsupported messages)."""


# Our own ChatML layout (used only when the GGUF has no `tokenizer.chat_template`). It knows the
# Qwen3 convention for switching reasoning off: an empty think block right after the assistant header.
BUILTIN_TEMPLATE = (
    "{% for m in messages %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"chat template refused the messages: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's built-in tojson escapes <, >, & and ' for HTML; chat templates want plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"cannot compile chat template: {e}") from None


class ChatTemplate:
    """A compiled chat template plus the special-token strings templates may refer to."""

    def __init__(self, source: str | None = None, bos_token: str = "", eos_token: str = ""):
        self.source = source or BUILTIN_TEMPLATE
        self.is_builtin = source is None or source == BUILTIN_TEMPLATE
        self.bos_token, self.eos_token = bos_token, eos_token
        self._template = _compile(self.source)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> "ChatTemplate":
        """The file's `tokenizer.chat_template`, or our built-in one when the file has none."""
        tokens = meta.get("tokenizer.ggml.tokens") or []

        def token_text(key: str) -> str:
            i = meta.get(key)
            return str(tokens[int(i)]) if i is not None and 0 <= int(i) < len(tokens) else ""

        return cls(meta.get("tokenizer.chat_template") or None,
                   bos_token=token_text("tokenizer.ggml.bos_token_id"),
                   eos_token=token_text("tokenizer.ggml.eos_token_id"))

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True,
               enable_thinking: bool = False, tools: Sequence[Mapping[str, Any]] | None = None,
               **extra: Any) -> str:
        """Prompt text for `messages`. `add_generation_prompt` opens the assistant turn;
        `enable_thinking=False` asks a Qwen3 template for the empty think block."""
        if not messages:
            raise ChatTemplateError("no messages to render")
        for m in messages:
            if not isinstance(m, Mapping) or "role" not in m or not isinstance(m.get("content", ""), str):
                raise ChatTemplateError(f"each message needs a 'role' and a text 'content', got {m!r}")
        try:
            return self._template.render(
                messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
                enable_thinking=enable_thinking, tools=list(tools) if tools else None,
                bos_token=self.bos_token, eos_token=self.eos_token, **extra)
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as e:  # includes sandbox SecurityError
            raise ChatTemplateError(f"chat template failed: {e}") from None
        except (TypeError, AttributeError, KeyError, IndexError) as e:
            raise ChatTemplateError(f"chat template failed on these messages: {e}") from None
