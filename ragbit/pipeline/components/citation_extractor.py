"""CitationExtractor: which packed blocks the answer cites as [n] -> the sources to show."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ragbit.pipeline.contract import Component, component
from ragbit.pipeline.components.context_packer import PackedContext


_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_CITATION = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")


def strip_thinking(answer: str) -> str:
    """The answer without a `<think>...</think>` section (what the model reasoned is not what it cites)."""
    return _THINK.sub("", answer).strip()


def cited_numbers(answer: str) -> list[int]:
    """Block numbers cited as [n], [n, m] or [n][m], in order of first mention, without repeats."""
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(strip_thinking(answer)):
        for number in re.split(r"[,;]", match.group(1)):
            seen.setdefault(int(number), None)
    return list(seen)


@dataclass
class Source:
    n: int
    path: str
    start_line: int
    end_line: int
    score: float
    cited: bool                  # False: the answer cited nothing, so every packed block is listed

    def __str__(self) -> str:
        return f"[{self.n}] {self.path}:{self.start_line}-{self.end_line}"

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "path": self.path, "start_line": self.start_line, "end_line": self.end_line,
                "score": self.score, "cited": self.cited}


def sources_for(answer: str, blocks: list[Any]) -> list[Source]:
    """The blocks the answer cites; if it cites none that exist, all blocks, marked `cited=False`."""
    by_n = {b.n: b for b in blocks}
    cited = [by_n[n] for n in cited_numbers(answer) if n in by_n]
    chosen, was_cited = (cited, True) if cited else (list(blocks), False)
    return [Source(b.n, b.path, b.start_line, b.end_line, float(b.score), was_cited) for b in chosen]


@component
class CitationExtractor(Component):
    outputs = {"sources": list[Source]}

    def run(self, answer: str, context: PackedContext) -> dict[str, Any]:
        return {"sources": sources_for(answer, context.blocks)}
