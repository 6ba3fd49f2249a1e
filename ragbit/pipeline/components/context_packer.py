"""ContextPacker: retrieved hits -> numbered context blocks within a token budget.

Fit retrieved chunks into the budget: most relevant first, whole lines, neighbours merged.

Why these rules: a 1.7B model reading 1,500 tokens of context gains most from the few best chunks, shown
intact (a chunk cut mid-line reads as broken code) and without repeats (overlapping chunks of the same
function would spend the budget twice). So, taking hits in relevance order:

1. a hit whose lines are all already in the context is a duplicate: dropped;
2. a hit that overlaps or touches (next line) a block of the same file is merged into that block; the
   merged text is re-assembled line by line from the hits' own texts, so nothing is re-read from disk
   and no line is cut;
3. a hit (or the growth of a block by merging it) that does not fit the remaining budget is left out
   and reported, and smaller later hits still get their chance.

Tokens are counted with the GENERATOR's tokenizer (the budget is about the model's context window),
on the rendered block: header `[n] path:start-end`, a fenced code body. Works on anything hit-like
(`path`, `start_line`, `end_line`, `text`, `score`, optional `language`), so it has no index dependency.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ragbit.config import RagbitConfig
from ragbit.pipeline.contract import Component, component
from ragbit.pipeline.model_loader import engine_settings, load_generator
from ragbit.index_layout import SCOPE_SEP
from ragbit.search.searcher import Hit

SEPARATOR = "\n\n"
UNIT_SHARE = 1.0             # a hit's whole definition is packed instead of the hit if it costs <= this x budget
                             # (and still fits what is left). Session 8 (lexical, older chunks): 0.3 .228, 0.5
                             # .297, 0.7 .337, 1.0 .347 on the issue set, docstring .512 / .528 / .551 / .535 ->
                             # 0.7. Session 11 (hybrid, today's retrieval), gold function in 1,000 / 1,500 tokens:
                             # issue set 0.5 .337 / .416, 0.7 .366 / .475, 0.85 .406 / .485, 1.0 .396 / .485;
                             # docstring set 0.7 and 0.85 .685 / .724, 1.0 .685 / .732; at 500 and 3,000 tokens
                             # the docstring set is the same for 0.7 and 1.0 -> 1.0, the simpler rule


@dataclass
class Block:
    """One numbered piece of context: a contiguous line range of one file."""
    n: int
    path: str
    start_line: int
    end_line: int
    text: str
    score: float                 # best score among the hits merged into it
    language: str = ""
    hits: int = 1                # how many retrieved chunks it covers
    scope: str = ""              # the definitions around it ("QuerySet.filter"), when the block starts inside one

    @property
    def header(self) -> str:
        where = f" (in {self.scope})" if self.scope else ""
        return f"[{self.n}] {self.path}:{self.start_line}-{self.end_line}{where}"

    def render(self) -> str:
        return f"{self.header}\n```{self.language}\n{self.text}\n```"


@dataclass
class Omitted:
    path: str
    start_line: int
    end_line: int
    tokens: int                  # what it would have cost


@dataclass
class PackedContext:
    blocks: list[Block]
    text: str                    # what goes into the prompt
    tokens: int                  # len(tokenizer(text))
    budget: int
    omitted: list[Omitted] = field(default_factory=list)  # left out for lack of budget
    duplicates: int = 0          # hits dropped because their lines were already packed

    def block(self, n: int) -> Block | None:
        return next((b for b in self.blocks if b.n == n), None)

    def omitted_summary(self) -> str:
        """One line for the user: 'left out for lack of budget: 3 chunks (a.py, b.py)', or ''."""
        if not self.omitted:
            return ""
        paths = list(dict.fromkeys(o.path for o in self.omitted))
        return (f"left out for lack of budget ({self.budget} tokens): {len(self.omitted)} chunk"
                f"{'s' if len(self.omitted) != 1 else ''} ({', '.join(paths)})")


# ======================================================================================================
# Line bookkeeping: each file's known lines, from the hits' texts
# ======================================================================================================

@dataclass
class _Span:
    """A block under construction: a file's line range and the text of every line in it."""
    path: str
    lines: dict[int, str]        # line number -> text
    score: float
    language: str
    order: int                   # relevance rank of its best hit (blocks are numbered by this)
    hits: int = 1
    scope: str = ""              # scope path of its best hit ("class A > def f")

    @property
    def start(self) -> int:
        return min(self.lines)

    @property
    def end(self) -> int:
        return max(self.lines)

    def to_block(self, n: int) -> Block:
        text = "\n".join(self.lines[i] for i in range(self.start, self.end + 1))
        return Block(n, self.path, self.start, self.end, text, self.score, self.language, self.hits,
                     _fragment_scope(self.scope, self.lines[self.start]))


def _fragment_scope(scope: str, first_line: str) -> str:
    """`scope` when a block starts inside its innermost definition (its first line does not name it), else "".

    Why: a chunk from the middle of a long method reads as orphan code; "(in class QuerySet > def filter)" in
    its header ("(in QuerySet.filter)") tells the model whose body it is for a few tokens. A block that starts
    at its definition's own line already says so."""
    if not scope:
        return ""
    names = [label.split(" ", 1)[-1] for label in scope.split(SCOPE_SEP)]
    return "" if names[-1] and names[-1] in first_line else ".".join(names)


def _hit_lines(hit: Any) -> dict[int, str]:
    """Line number -> text for a hit. Its text is taken as lines start_line, start_line+1, ...
    (a trailing newline does not make an extra empty line)."""
    text = hit.text[:-1] if hit.text.endswith("\n") else hit.text
    return {hit.start_line + i: line for i, line in enumerate(text.split("\n"))}


# ======================================================================================================
# Packing
# ======================================================================================================

def pack(hits: Sequence[Any], count_tokens: Callable[[str], int], budget: int,
         unit_share: float = UNIT_SHARE) -> PackedContext:
    """Greedy packing of `hits` (most relevant first) into at most `budget` tokens of rendered context.

    A hit that carries a `unit` (the whole definition it is part of, see `Searcher.search(units=True)`) is
    packed as that unit when the unit alone costs at most `unit_share` x budget and still fits; otherwise as
    itself. Why: a function split over several chunks is only useful to the model whole; a definition that
    does not fit what is left is better shown by its hit than dropped."""
    hits = by_value(hits, count_tokens, budget, unit_share)
    spans: list[_Span] = []
    omitted: list[Omitted] = []
    duplicates = 0
    used = 0                                        # tokens of the blocks accepted so far (+ separators)
    sep_tokens = count_tokens(SEPARATOR)

    def cost(span: _Span) -> int:
        return count_tokens(span.to_block(len(spans) + 1).render())

    for order, hit in enumerate(hits):
        unit = getattr(hit, "unit", None)
        candidates = [hit]
        if unit is not None and (unit.start_line, unit.end_line) != (hit.start_line, hit.end_line):
            alone = _Span(unit.path, _hit_lines(unit), 0.0, "", order)
            if cost(alone) <= unit_share * budget:
                candidates.insert(0, unit)
        for i, candidate in enumerate(candidates):
            lines = _hit_lines(candidate)
            first, last = min(lines), max(lines)
            # Blocks of the same file this hit overlaps or touches merge into one. Blocks never touch each
            # other (they would have merged), so the hit's own range finds every block the merge reaches.
            touching = [s for s in spans if s.path == hit.path and first <= s.end + 1 and last >= s.start - 1]
            if any(set(lines) <= set(s.lines) for s in touching):
                duplicates += 1
                break
            merged = _Span(hit.path, dict(lines), float(hit.score), getattr(hit, "language", "") or "", order,
                           scope=getattr(candidate, "scope", "") or "")
            for s in touching:
                merged.lines = {**merged.lines, **s.lines}  # keep the earlier (more relevant) hit's text on overlap
                if s.order < merged.order:
                    merged.scope = s.scope
                merged.score, merged.order = max(merged.score, s.score), min(merged.order, s.order)
                merged.hits += s.hits
            before = sum(cost(s) for s in touching) + sep_tokens * len(touching)
            extra = cost(merged) + sep_tokens - before
            if used + extra > budget:
                if i == len(candidates) - 1:
                    omitted.append(Omitted(hit.path, hit.start_line, hit.end_line, extra))
                continue
            spans = [s for s in spans if all(s is not t for t in touching)] + [merged]
            used += extra
            break

    context = _render(spans, count_tokens)
    while context.tokens > budget and spans:            # BPE across boundaries can differ from the sum
        dropped = max(spans, key=lambda s: s.order)
        omitted.append(Omitted(dropped.path, dropped.start, dropped.end, count_tokens(dropped.to_block(0).render())))
        spans.remove(dropped)
        context = _render(spans, count_tokens)
    context.budget, context.omitted, context.duplicates = budget, omitted, duplicates
    return context


def by_value(hits: Sequence[Any], count_tokens: Callable[[str], int], budget: int,
             unit_share: float = UNIT_SHARE) -> list[Any]:
    """Hits that carry the reranker's `share` (the model's belief that the hit answers a short question; see
    ragbit/search/rerank.py): after the best one, taken in order of share per token of what packing them costs
    (the whole definition when it would be packed, else the hit). Other hits (pinned files, or when the
    question had no calibrated shares) keep their place before them.

    Why: greedy by relevance lets a large, less likely definition take half the budget before a small, nearly as
    likely one gets its turn; by share per token the budget buys the most expected answer. Docstring set (127
    short questions), gold function >= 80% inside the context at 500 / 1,000 / 1,500 / 3,000 tokens: .614 / .772 /
    .835 / .921 in relevance order, .646 / .795 / .835 / .937 by share per token (session 13). On the issue set's
    long reports (shares not calibrated: the reranker was trained on short questions) it lost (.495 -> .446 at
    1,500), so they carry no share."""
    scored = [i for i, h in enumerate(hits) if getattr(h, "share", None) is not None]
    if len(scored) < 3:
        return list(hits)

    def tokens(hit) -> int:
        unit = getattr(hit, "unit", None)
        if unit is not None:
            cost = count_tokens(unit.text)
            if cost <= unit_share * budget:
                return cost
        return count_tokens(hit.text)

    rest = sorted((hits[i] for i in scored[1:]), key=lambda h: -h.share / max(1, tokens(h)))
    return [h for i, h in enumerate(hits) if i not in scored[1:]] + rest


def _render(spans: list[_Span], count_tokens: Callable[[str], int]) -> PackedContext:
    blocks = [s.to_block(n) for n, s in enumerate(sorted(spans, key=lambda s: s.order), start=1)]
    text = SEPARATOR.join(b.render() for b in blocks)
    return PackedContext(blocks, text, count_tokens(text) if text else 0, budget=0)


# ======================================================================================================
# The component
# ======================================================================================================

@component
class ContextPacker(Component):
    """Counts tokens with the generator's tokenizer: pass `tokenizer`, or `model` and it is loaded on
    first run through the same cache the BonsaiGenerator uses (one load for both)."""

    outputs = {"context": PackedContext}

    def __init__(self, budget: int = 1500, tokenizer: Any = None, model: str | None = None,
                 n_ctx: int = 4096, threads: int = 0, decode_kernel: str = "int11", kv_cache: str = "f16") -> None:
        if budget <= 0:
            raise ValueError(f"context budget must be positive, got {budget}")
        if tokenizer is None and model is None:
            raise ValueError("ContextPacker needs a tokenizer or a model name to take it from")
        self.budget = budget
        self.tokenizer = tokenizer
        self.model = model
        self.engine = {"n_ctx": n_ctx, "threads": threads, "decode_kernel": decode_kernel, "kv_cache": kv_cache}

    @classmethod
    def from_config(cls, cfg: RagbitConfig, **params: Any) -> "ContextPacker":
        defaults = {"budget": cfg.query.budget, "model": cfg.generator.model, **engine_settings(cfg)}
        return cls(**{**defaults, **params})

    def warm_up(self) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_generator(self.model, **self.engine).tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, parse_special=False))

    def run(self, hits: list[Hit]) -> dict[str, Any]:
        return {"context": pack(hits, self.count_tokens, self.budget)}
