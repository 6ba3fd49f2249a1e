"""How ragbit asks Bonsai about code: a system prompt, the numbered context, the question; then which
blocks the answer cited.

Why this layout: small models follow a short, firm system prompt best; the context comes BEFORE the
question so the question is the last thing read, and the block headers `[n] path:start-end` are the
same tokens the model is asked to cite, which makes `[n]` citations easy for it to produce and for us
to find again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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


# ======================================================================================================
# Citations
# ======================================================================================================

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
