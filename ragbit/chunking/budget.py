"""Fitting spans of lines into the token budget: measure, merge small neighbours, emit `Chunk`s.

Every strategy (syntax, markup, windows) first cuts a file into `Piece`s - line ranges with a scope - and then
hands them to `Budget.assemble`, so merging and the `max_tokens` guarantee live in exactly one place.

Token counts: the caller's `count_tokens` (the embedding model's tokenizer) decides whether a piece fits; it is
called on the real `embed_text`. Per-line counts (tokens(line) minus the per-call overhead such as [CLS]/[SEP])
only serve as a cheap running estimate while growing windows; every window is then verified exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ragbit.chunking.chunk import Chunk, make_embed_text

SCOPE_SEP = " > "


def estimate_tokens(text: str) -> int:
    """Default token counter: ~3.2 characters per token, a fair upper-ish guess for code with BPE/WordPiece."""
    return (len(text) * 5 + 15) // 16


def join_scope(outer: str, label: str) -> str:
    return f"{outer}{SCOPE_SEP}{label}" if outer else label


def common_scope(a: str, b: str) -> str:
    """Longest shared prefix of two scope paths ("class A > def x", "class A > def y" -> "class A")."""
    if a == b:
        return a
    shared = []
    for x, y in zip(a.split(SCOPE_SEP), b.split(SCOPE_SEP)):
        if x != y:
            break
        shared.append(x)
    return SCOPE_SEP.join(shared)


@dataclass(frozen=True)
class Piece:
    """Lines `start..end` (0-based, inclusive) under `scope`. `text` is set only for slices of an over-long line.

    `mergeable` is False for the windows of a split oversized span: they overlap their neighbours on purpose.
    """

    start: int
    end: int
    scope: str
    mergeable: bool = True
    text: str | None = None


class Budget:
    """One file's lines plus the token budget; answers "does this span fit?" and builds the final chunks."""

    def __init__(self, path: str, language: str, lines: list[str], max_tokens: int, min_lines: int,
                 count_tokens: Callable[[str], int] | None = None):
        self.path, self.language, self.lines = path, language, lines
        self.max_tokens, self.min_lines = max_tokens, min_lines
        self.count = count_tokens or estimate_tokens
        self.overhead = self.count("")                              # special tokens added to every call
        self._line_cost: list[int | None] = [None] * len(lines)     # filled lazily: tokens(line) - overhead
        self._header_cost: dict[str, int] = {}

    # ---------------------------------------------------------------------------------------------- measuring
    def text(self, start: int, end: int) -> str:
        return "\n".join(self.lines[start:end + 1])

    def is_blank(self, row: int) -> bool:
        return not self.lines[row].strip()

    def tokens(self, start: int, end: int, scope: str) -> int:
        return self.count(make_embed_text(self.path, scope, self.text(start, end)))

    def fits(self, start: int, end: int, scope: str) -> bool:
        return self.tokens(start, end, scope) <= self.max_tokens

    def line_cost(self, row: int) -> int:
        cost = self._line_cost[row]
        if cost is None:
            cost = max(1, self.count(self.lines[row] + "\n") - self.overhead)
            self._line_cost[row] = cost
        return cost

    def header_cost(self, scope: str) -> int:
        if scope not in self._header_cost:
            self._header_cost[scope] = self.count(make_embed_text(self.path, scope, ""))
        return self._header_cost[scope]

    def estimate(self, start: int, end: int, scope: str) -> int:
        return self.header_cost(scope) + sum(self.line_cost(r) for r in range(start, end + 1))

    def trim(self, start: int, end: int) -> tuple[int, int] | None:
        """Shrink a range to its first..last non-blank line; None if it is all blank."""
        while start <= end and self.is_blank(start):
            start += 1
        while end >= start and self.is_blank(end):
            end -= 1
        return (start, end) if start <= end else None

    # ---------------------------------------------------------------------------------------------- building
    def assemble(self, pieces: list[Piece]) -> list[Chunk]:
        """Merge neighbouring small pieces while the merged piece still fits, then turn pieces into chunks.

        Two neighbours merge when both are mergeable, the union fits `max_tokens`, and one of them is shorter
        than `min_lines` or together they are estimated at no more than half the budget.
        """
        merged: list[Piece] = []
        for piece in pieces:
            if merged and self._should_merge(merged[-1], piece):
                prev = merged[-1]
                candidate = Piece(prev.start, piece.end, common_scope(prev.scope, piece.scope))
                if self.fits(candidate.start, candidate.end, candidate.scope):
                    merged[-1] = candidate
                    continue
            merged.append(piece)
        return [self.to_chunk(p) for p in merged]

    def _should_merge(self, a: Piece, b: Piece) -> bool:
        if not (a.mergeable and b.mergeable) or a.text is not None or b.text is not None or b.start <= a.end:
            return False
        if a.end - a.start + 1 < self.min_lines or b.end - b.start + 1 < self.min_lines:
            return True
        return self.estimate(a.start, b.end, common_scope(a.scope, b.scope)) <= self.max_tokens // 2

    def to_chunk(self, p: Piece) -> Chunk:
        text = p.text if p.text is not None else self.text(p.start, p.end)
        return Chunk(path=self.path, language=self.language, start_line=p.start + 1, end_line=p.end + 1,
                     scope=p.scope, text=text)
