"""The last step of every strategy: pieces -> chunks, each checked against the real token counter.

Why its own module: it merges with the budget's rules and cuts with the windows' rules, so it sits above both
(`budget.py` <- `windows.py` <- here), and neither of them needs to import the other back.
"""
from __future__ import annotations

from ragbit.indexing.chunking.budget import Budget, Piece
from ragbit.indexing.chunking.chunk import Chunk, make_embed_text
from ragbit.indexing.chunking.windows import split_windows


def assemble(budget: Budget, pieces: list[Piece]) -> list[Chunk]:
    """Merge small neighbours, verify every piece with the real counter, turn pieces into chunks."""
    final: list[Piece] = []
    todo = budget.merge(pieces)[::-1]
    checked = _count_batch(budget, [p for p in todo if not p.exact])
    while todo:
        p = todo.pop()
        n = checked.get((p.start, p.end, p.scope))
        if p.exact or (n <= budget.max_tokens if n is not None else budget.fits_exact(p.start, p.end, p.scope)):
            final.append(p)
        elif p.parts:                                      # an optimistic merge: undo it
            todo.extend(reversed(p.parts))
        else:                                              # an optimistic single piece: cut it exactly
            final += split_windows(budget, p.start, p.end, p.scope, budget.split_overlap)
    return [budget.to_chunk(p) for p in final]


def _count_batch(budget: Budget, pieces: list[Piece]) -> dict[tuple[int, int, str], int]:
    """Exact counts of many pieces in one counter call (a batched encode), unless the estimate is exact."""
    if budget.counter.additive or not pieces:
        return {}
    texts = [make_embed_text(budget.path, p.scope, budget.text(p.start, p.end)) for p in pieces]
    return {(p.start, p.end, p.scope): n for p, n in zip(pieces, budget.counter.count_many(texts))}
