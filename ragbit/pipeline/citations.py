"""CitationExtractor: which packed blocks the answer cites as [n] -> the sources to show."""
from __future__ import annotations

from typing import Any

from ragbit.pipeline.component import Component, component
from ragbit.pipeline.packing import PackedContext
from ragbit.pipeline.prompting import Source, sources_for


@component
class CitationExtractor(Component):
    outputs = {"sources": list[Source]}

    def run(self, answer: str, context: PackedContext) -> dict[str, Any]:
        return {"sources": sources_for(answer, context.blocks)}
