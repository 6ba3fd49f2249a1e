"""Fitting spans of lines into the token budget: measure, merge small neighbours, emit `Chunk`s.

Every strategy (syntax, markup, windows) first cuts a file into `Piece`s - line ranges with a scope - and then
hands them to `assembly.assemble`, which merges them with `Budget.merge` and checks each, so merging and the
`max_tokens` guarantee live in exactly one place.

Token counts (see tokens.py for the counters): planning and merging use the sum of per-line costs plus the
exact count of the path/scope header. When the counter is `additive` (BERT-style WordPiece, the default model)
that sum IS the exact count of the chunk's embed_text, and nothing is counted twice. Otherwise it is an estimate
(byte-level BPE can merge across a newline), and every final chunk is checked once more with the exact counter,
in one batch; the rare one that is over is re-cut into exactly-checked windows. Either way the guarantee
`count(chunk.embed_text) <= max_tokens` holds.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

from ragbit.index_layout import SCOPE_SEP
from ragbit.indexing.chunking.chunk import Chunk, make_embed_text
from ragbit.indexing.chunking.tokens import as_counter



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
    `exact` marks pieces already measured with the real counter (windows), so `assemble` need not recount.
    """

    start: int
    end: int
    scope: str
    mergeable: bool = True
    text: str | None = None
    exact: bool = False
    parts: tuple["Piece", ...] = ()          # what a merged piece was merged from (to undo an optimistic merge)


class Budget:
    """One file's lines plus the token budget; answers "does this span fit?" and builds the final chunks."""

    def __init__(self, path: str, language: str, lines: list[str], max_tokens: int, min_lines: int,
                 count_tokens=None, merge_under: float = 0.5,
                 split_overlap: int = 2):
        self.path, self.language, self.lines = path, language, lines
        self.max_tokens, self.min_lines, self.merge_under = max_tokens, min_lines, merge_under
        self.split_overlap = split_overlap
        self.counter = as_counter(count_tokens)                      # a function or a tokens.py counter
        self.count = self.counter.count
        self.overhead = self.counter.overhead                       # special tokens added to every call
        self._prefix: list[int] | None = None                       # prefix sums of per-line costs
        self._header_cost: dict[str, int] = {}

    # ---------------------------------------------------------------------------------------------- measuring
    def text(self, start: int, end: int) -> str:
        return "\n".join(self.lines[start:end + 1])

    def is_blank(self, row: int) -> bool:
        return not self.lines[row].strip()

    def tokens(self, start: int, end: int, scope: str) -> int:
        """Exact count of the embed_text of lines start..end."""
        if self.counter.additive:
            return self.estimate(start, end, scope)
        return self.count(make_embed_text(self.path, scope, self.text(start, end)))

    def fits_exact(self, start: int, end: int, scope: str) -> bool:
        return self.tokens(start, end, scope) <= self.max_tokens

    def fits(self, start: int, end: int, scope: str) -> bool:
        """Planning check, by estimate (the final chunks are verified exactly in `assemble`)."""
        return self.estimate(start, end, scope) <= self.max_tokens

    def _line_prefix(self) -> list[int]:
        if self._prefix is None:
            self._prefix = list(accumulate(self.counter.line_costs(self.lines), initial=0))
        return self._prefix

    def grow(self, start: int, last: int, scope: str, max_lines: int) -> int:
        """The last row j in start..last (at most `max_lines` rows) such that start..j fits by estimate;
        `start` itself even when that one line does not fit. A binary search on the prefix sums."""
        prefix = self._line_prefix()
        bound = self.max_tokens - self.header_cost(scope) + prefix[start]
        j = bisect_right(prefix, bound, start + 1, last + 2) - 2
        return max(start, min(j, start + max_lines - 1))

    def header_cost(self, scope: str) -> int:
        if scope not in self._header_cost:
            self._header_cost[scope] = self.count(make_embed_text(self.path, scope, ""))
        return self._header_cost[scope]

    def estimate(self, start: int, end: int, scope: str) -> int:
        prefix = self._line_prefix()
        return self.header_cost(scope) + prefix[end + 1] - prefix[start]

    def trim(self, start: int, end: int) -> tuple[int, int] | None:
        """Shrink a range to its first..last non-blank line; None if it is all blank."""
        while start <= end and self.is_blank(start):
            start += 1
        while end >= start and self.is_blank(end):
            end -= 1
        return (start, end) if start <= end else None

    # ---------------------------------------------------------------------------------------------- merging
    def merge(self, pieces: list[Piece]) -> list[Piece]:
        """Merge neighbouring small pieces (left to right) while the merged piece still fits.

        Two neighbours merge when both are mergeable, the union fits `max_tokens`, and one of them is shorter
        than `min_lines` or together they are estimated at no more than `merge_under` x the budget. The merged
        piece's scope is the common prefix of both scopes.
        """
        merged: list[Piece] = []
        for piece in pieces:
            if merged and self._should_merge(merged[-1], piece):
                prev = merged[-1]
                candidate = Piece(prev.start, piece.end, common_scope(prev.scope, piece.scope),
                                  parts=(prev.parts or (prev,)) + (piece,))
                if self.fits(candidate.start, candidate.end, candidate.scope):
                    merged[-1] = candidate
                    continue
            merged.append(piece)
        return merged

    def _should_merge(self, a: Piece, b: Piece) -> bool:
        if not (a.mergeable and b.mergeable) or a.text is not None or b.text is not None or b.start <= a.end:
            return False
        if a.end - a.start + 1 < self.min_lines or b.end - b.start + 1 < self.min_lines:
            return True
        return self.estimate(a.start, b.end, common_scope(a.scope, b.scope)) <= self.max_tokens * self.merge_under

    def to_chunk(self, p: Piece) -> Chunk:
        text = p.text if p.text is not None else self.text(p.start, p.end)
        return Chunk(path=self.path, language=self.language, start_line=p.start + 1, end_line=p.end + 1,
                     scope=p.scope, text=text)
