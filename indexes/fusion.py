"""Combining ranked lists: reciprocal rank fusion, and a per-key cap (e.g. at most N chunks per file).

Why RRF: BM25 scores and cosine similarities live on unrelated scales; fusing by rank needs no calibration
and is robust (Cormack, Clarke & Buettcher 2009). score(d) = sum_i w_i / (k + rank_i(d)), rank from 1.
"""
from __future__ import annotations

from typing import Callable, Hashable, Sequence


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]],
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[tuple[int, float]]:
    """Fuse best-first lists of document positions into one best-first (position, rrf score) list.

    A document repeated within one ranking counts only at its best rank. A tie goes to the document the
    earliest ranking puts higher (then the next ranking, then position): callers list their most exact
    ranking first (BM25 before dense), so an exact identifier match that BM25 ranks first is never
    outranked by a dense hit with the same fused score (e.g. lexical 1st + dense 50th vs dense 1st + lexical
    50th). Scores equal to 12 decimals count as tied: a sum in another order may differ in the last bit.
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    if weights is None:
        weights = [1.0] * len(rankings)
    elif len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[int, float] = {}
    absent = float("inf")
    ranks: dict[int, list[float]] = {}                 # doc -> its rank in each ranking (inf: not in it)
    for i, (ranking, weight) in enumerate(zip(rankings, weights)):
        for rank, doc in enumerate(ranking, start=1):
            doc_ranks = ranks.setdefault(doc, [absent] * len(rankings))
            if doc_ranks[i] != absent:
                continue
            doc_ranks[i] = rank
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
    order = sorted(scores, key=lambda d: (-round(scores[d], 12), ranks[d], d))
    return [(d, scores[d]) for d in order]


def cap_per_key(
    hits: Sequence[tuple[int, float]],
    key: Callable[[int], Hashable],
    cap: int,
    new_keys_after: int | None = None,
) -> list[tuple[int, float]]:
    """Keep hits in order, dropping a hit once `cap` earlier hits share its key. cap <= 0 means no cap.

    `new_keys_after=n`: once n hits are kept, the list goes on with hits of keys not yet in it (the best hit of
    each new key, in order), and the hits passed over follow at the end in their order, so a list cut at any
    length holds as many hits as the candidates allow. Why: a list's head should be the best hits wherever they
    are (the answer's file often holds several of them), its tail the other files worth a look."""
    counts: dict[Hashable, int] = {}
    kept: list[tuple[int, float]] = []
    passed: list[tuple[int, float]] = []
    for doc, score in hits:
        group = key(doc)
        n = counts.get(group, 0)
        if 0 < cap <= n:
            continue
        counts[group] = n + 1
        if new_keys_after is not None and n and len(kept) >= new_keys_after:
            passed.append((doc, score))
        else:
            kept.append((doc, score))
    return kept + passed
