"""PromptBuilder: question + packed context (+ earlier turns) -> chat messages for the generator."""
from __future__ import annotations

from typing import Any

from ragbit.pipeline.component import Component, component
from ragbit.pipeline.packing import PackedContext
from ragbit.pipeline.prompting import SYSTEM_PROMPT, build_messages


@component
class PromptBuilder(Component):
    outputs = {"messages": list[dict]}

    def __init__(self, system_prompt: str = SYSTEM_PROMPT) -> None:
        self.system_prompt = system_prompt

    def run(self, query: str, context: PackedContext, history: list[dict] | None = None) -> dict[str, Any]:
        return {"messages": build_messages(query, context.text, history, self.system_prompt)}
