"""Embedded views: a chunk longer than the view size is embedded as several shorter views, one vector back.

WHY: chunks hold up to `max_text_tokens` (254) of the embedder's tokens, but a MiniLM-style model is cheapest
and was trained at shorter lengths: on Zen4 in bf16, attention at 256 tokens took ~26% of encoder time
(torch profiler, Django chunks), far above its share of the FLOPs, and all-MiniLM-L6-v2 was trained on
128-token inputs. A view is at most `view_tokens` model tokens ([CLS] and [SEP] included), so a long chunk
becomes two or three views of nearly equal length (little padding once batches are length-sorted) and
nothing is cut.

How a view looks: the chunk's first line (its path, see `chunking.make_embed_text`) is repeated at the head
of every view after the first, so each view still says where it comes from; the body's tokens are split into
consecutive runs of nearly equal size, each cut where a line starts when one is within SNAP_TOKENS, else where
a word starts, else at a token boundary.

Back to one chunk: the chunk's vector is the normalised mean of its views' unit vectors. Its dot product with a
query is the mean of the views' scores divided by the length of that mean, so dense search ranks a chunk
by its views' mean score (scaled up a little when its views point apart). Mean, not max: one vector per chunk
keeps the dense index, the vector cache and FAISS as they are.

Measured (benchmarks/retrieval_eval.py --set docstring, 127 questions, views of 128 vs whole chunks, torch-bf16):
hybrid chunk R@10 .630 -> .661, file R@10 .984 -> .992, context@1500 .709 -> .709; dense chunk R@10
.638 -> .606, context@1500 .732 -> .709. Speed (bench_embed.py, Zen4 bf16, one thread): 1.19x per chunk. As
recall does not hold on every path, views are opt-in (`[embed] view_tokens = 128`).

The cache key changes with the view size (`vector_cache_id`): vectors of whole chunks and of views never
mix in a cache; both live in the same query space (same model), so an index's queries are unchanged.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

SPECIAL_TOKENS = 2          # [CLS] and [SEP]: part of every view's model tokens
MAX_HEADER_TOKENS = 40      # a longer first line is not repeated (it would crowd the view)
SNAP_TOKENS = 12            # a cut may move this far to land where a line starts


def vector_cache_id(model_id: str, view_tokens: int) -> str:
    """The vector cache's key for vectors of `model_id` made with `view_tokens` views (0 = whole chunks)."""
    return model_id if view_tokens <= 0 else f"{model_id}|views={view_tokens}"


def split_views(text: str, offsets: Sequence[tuple[int, int]], view_tokens: int) -> list[str]:
    """The views of one text, given its tokens' character offsets (no special tokens, no truncation).

    Every view holds at most `view_tokens - 2` of the text's tokens (a word piece cut off at a view's start can
    re-tokenize into one or two more; the model's own limit of 256 is far away). A text that fits is its own
    single view."""
    budget = view_tokens - SPECIAL_TOKENS
    n = len(offsets)
    if n <= budget:
        return [text]
    newline = text.find("\n")
    h = sum(1 for a, _ in offsets if a < newline) if newline > 0 else 0     # tokens of the first line
    if h > MAX_HEADER_TOKENS or h >= n or 2 * h > budget:
        h = 0
    header = text[:newline + 1] if h else ""
    room = budget - h                                  # body tokens per view
    parts = -(-(n - h) // room)
    cuts, prev = [], h
    for left in range(parts, 1, -1):                   # `left` views still to make, this one included
        lo, hi = max(prev + 1, n - room * (left - 1)), min(prev + room, n - 1)
        ideal = prev + round((n - prev) / left)        # equal shares of what is left: little padding
        near = range(max(lo, ideal - SNAP_TOKENS), min(hi, ideal + SNAP_TOKENS) + 1)
        starts = [c for c in near if _starts_line(text, offsets, c)] or [c for c in near if _starts_word(offsets, c)]
        prev = min(starts, key=lambda c: abs(c - ideal)) if starts else min(max(ideal, lo), hi)
        cuts.append(prev)
    edges = [offsets[c][0] for c in cuts]
    views = [text[:edges[0]].rstrip()]
    for k, lo in enumerate(edges):
        hi = edges[k + 1] if k + 1 < len(edges) else len(text)
        views.append(header + text[lo:hi].rstrip())
    return views


def _starts_line(text: str, offsets: Sequence[tuple[int, int]], i: int) -> bool:
    """Token i is the first token of a line."""
    return "\n" in text[offsets[i - 1][1]:offsets[i][0]]


def _starts_word(offsets: Sequence[tuple[int, int]], i: int) -> bool:
    """Token i follows a gap (whitespace): cutting there splits no word into pieces."""
    return offsets[i - 1][1] < offsets[i][0]


def plan_views(texts: Sequence[str], tokenizer, view_tokens: int) -> tuple[list[str], np.ndarray]:
    """(views of every text, owner index per view) using a `tokenizers.Tokenizer` without truncation."""
    views: list[str] = []
    owner: list[int] = []
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    for i, (text, enc) in enumerate(zip(texts, encodings)):
        vs = split_views(text, enc.offsets, view_tokens)
        views += vs
        owner += [i] * len(vs)
    return views, np.asarray(owner, dtype=np.int64)


def pool_views(view_vectors: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
    """One unit vector per text: the normalised mean of its views' vectors."""
    out = np.zeros((n_texts, view_vectors.shape[1]), dtype=np.float64)
    np.add.at(out, owner, view_vectors)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)
