"""PromptBuilder: question + packed context (+ earlier turns) -> chat messages for the generator.

Why this layout: small models follow a short, firm system prompt best; the context comes BEFORE the
question so the question is the last thing read, and the block headers `[n] path:start-end` are the
same tokens the model is asked to cite, which makes `[n]` citations easy for it to produce and for us
to find again.
"""
from __future__ import annotations

from typing import Any

from ragbit.pipeline.contract import Component, component
from ragbit.pipeline.components.context_packer import PackedContext


SYSTEM_PROMPT = (
    "You are ragbit, an assistant that answers questions about a codebase. "
    "Answer ONLY from the numbered context blocks the user gives you; each block is headed "
    "[n] path:first_line-last_line. After each statement, cite the block(s) it comes from as [n], "
    "for example [2] or [1][3]. If the blocks do not contain the answer, say so in one sentence "
    "instead of guessing. Be concise; quote code only when it helps."
)

NO_CONTEXT = "(no code was retrieved for this question)"


def user_message(question: str, context_text: str) -> str:
    return (f"Context:\n\n{context_text or NO_CONTEXT}\n\n"
            f"Question: {question.strip()}\n"
            "Answer from the context above and cite the blocks you use as [n].")


def build_messages(question: str, context_text: str, history: list[dict[str, str]] | None = None,
                   system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """[system, *history, user(context + question)]: earlier turns first, so a conversation keeps a
    stable prefix and the generator can reuse its KV cache for it."""
    return [{"role": "system", "content": system_prompt}, *(history or []),
            {"role": "user", "content": user_message(question, context_text)}]


@component
class PromptBuilder(Component):
    outputs = {"messages": list[dict]}

    def __init__(self, system_prompt: str = SYSTEM_PROMPT) -> None:
        self.system_prompt = system_prompt

    def run(self, query: str, context: PackedContext, history: list[dict] | None = None) -> dict[str, Any]:
        return {"messages": build_messages(query, context.text, history, self.system_prompt)}
