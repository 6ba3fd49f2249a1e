"""Context packing with the real Qwen3 tokenizer: budget, merging, whole lines, duplicates, omissions."""
from __future__ import annotations

import pytest

from ragbit.pipeline.components.context_packer import pack
from ragbit.pipeline.components.citation_extractor import cited_numbers, sources_for, strip_thinking
from ragbit.search.searcher import Hit

FILE_A = [f"def a{i}(x):  # line {i}" for i in range(1, 201)]      # a.py, line i is FILE_A[i-1]
FILE_B = [f"    value_{i} = compute({i}, 'b')" for i in range(1, 101)]


def hit(path: str, start: int, end: int, score: float, rank: int = 1) -> Hit:
    lines = FILE_A if path == "a.py" else FILE_B
    return Hit(path=path, start_line=start, end_line=end, scope="", language="python", score=score,
               text="\n".join(lines[start - 1:end]), rank=rank)


@pytest.fixture
def count(bonsai_tokenizer):
    return lambda text: len(bonsai_tokenizer.encode(text, parse_special=False))


def test_blocks_are_numbered_headed_and_most_relevant_first(count):
    ctx = pack([hit("b.py", 1, 5, 0.9), hit("a.py", 50, 60, 0.5)], count, budget=1500)
    assert [b.header for b in ctx.blocks] == ["[1] b.py:1-5", "[2] a.py:50-60"]
    assert ctx.text.startswith("[1] b.py:1-5\n```python\n" + FILE_B[0] + "\n")
    assert ctx.tokens == count(ctx.text)
    assert not ctx.omitted and ctx.duplicates == 0


def test_overlapping_and_adjacent_chunks_of_a_file_merge_into_whole_lines(count):
    hits = [hit("a.py", 10, 20, 0.9), hit("b.py", 1, 3, 0.8), hit("a.py", 15, 30, 0.7), hit("a.py", 31, 35, 0.6)]
    ctx = pack(hits, count, budget=1500)
    assert [(b.path, b.start_line, b.end_line) for b in ctx.blocks] == [("a.py", 10, 35), ("b.py", 1, 3)]
    merged = ctx.blocks[0]
    assert merged.text.split("\n") == FILE_A[9:35]          # every line once, whole, in order
    assert merged.hits == 3 and merged.score == pytest.approx(0.9)


def test_a_gap_between_chunks_is_not_bridged(count):
    ctx = pack([hit("a.py", 10, 20, 0.9), hit("a.py", 22, 30, 0.8)], count, budget=1500)
    assert [(b.start_line, b.end_line) for b in ctx.blocks] == [(10, 20), (22, 30)]


def test_chunk_bridging_two_blocks_joins_them(count):
    ctx = pack([hit("a.py", 1, 10, 0.9), hit("a.py", 21, 30, 0.8), hit("a.py", 11, 20, 0.7)], count, budget=1500)
    assert [(b.start_line, b.end_line, b.hits) for b in ctx.blocks] == [(1, 30, 3)]
    assert ctx.blocks[0].text.split("\n") == FILE_A[0:30]


def test_duplicates_are_dropped(count):
    ctx = pack([hit("a.py", 10, 40, 0.9), hit("a.py", 10, 40, 0.8), hit("a.py", 12, 20, 0.7)], count, budget=1500)
    assert len(ctx.blocks) == 1 and ctx.duplicates == 2
    assert ctx.text.count(FILE_A[14]) == 1


@pytest.mark.parametrize("budget", [60, 150, 400, 900])
def test_budget_is_respected_and_what_did_not_fit_is_reported(count, budget):
    hits = [hit("a.py", s, s + 19, 1.0 - s / 1000, rank=r) for r, s in enumerate(range(1, 200, 25), start=1)]
    hits += [hit("b.py", 1, 60, 0.1, rank=99)]
    ctx = pack(hits, count, budget=budget)
    assert ctx.tokens == count(ctx.text) <= budget
    packed = {(b.path, b.start_line) for b in ctx.blocks}
    omitted = {(o.path, o.start_line) for o in ctx.omitted}
    assert packed.isdisjoint(omitted)
    assert len(packed) + len(omitted) == len(hits)          # nothing silently lost (no overlaps here)
    # Whole lines only: every line of the context body is a line of the source files (or markup).
    body = [ln for ln in ctx.text.split("\n") if not ln.startswith(("[", "```")) and ln]
    assert set(body) <= set(FILE_A) | set(FILE_B)
    if ctx.omitted:
        summary = ctx.omitted_summary()
        assert f"{len(ctx.omitted)} chunk" in summary and all(o.path in summary for o in ctx.omitted)


def test_a_big_chunk_that_does_not_fit_leaves_room_for_smaller_ones(count):
    ctx = pack([hit("b.py", 1, 100, 0.9), hit("a.py", 1, 3, 0.5)], count, budget=120)
    assert [(b.path, b.start_line) for b in ctx.blocks] == [("a.py", 1)]
    assert [(o.path, o.start_line, o.end_line) for o in ctx.omitted] == [("b.py", 1, 100)]
    assert ctx.blocks[0].n == 1                             # numbering has no holes


def test_nothing_retrieved_gives_empty_context(count):
    ctx = pack([], count, budget=100)
    assert ctx.blocks == [] and ctx.text == "" and ctx.tokens == 0


def test_citations_are_read_from_the_answer_not_the_thinking():
    answer = "<think>maybe [4]?</think>The total is computed in Invoice.total [2], see also [1, 3] and [2][3]."
    assert strip_thinking(answer).startswith("The total")
    assert cited_numbers(answer) == [2, 1, 3]


def test_sources_fall_back_to_all_blocks_when_nothing_is_cited(count):
    ctx = pack([hit("a.py", 1, 5, 0.9), hit("b.py", 1, 5, 0.8)], count, budget=500)
    cited = sources_for("It is in [2]. Block [7] does not exist.", ctx.blocks)
    assert [(s.n, s.path, s.cited) for s in cited] == [(2, "b.py", True)]
    fallback = sources_for("No idea.", ctx.blocks)
    assert [(s.n, s.cited) for s in fallback] == [(1, False), (2, False)]
    assert str(fallback[0]) == "[1] a.py:1-5"


def with_unit(h: Hit, start: int, end: int) -> Hit:
    h.unit = hit(h.path, start, end, h.score, h.rank)
    return h


def test_a_hit_is_packed_as_its_whole_definition_when_that_fits(count):
    ctx = pack([with_unit(hit("a.py", 40, 45, 0.9), 30, 60), hit("b.py", 1, 3, 0.5)], count, budget=1500)
    assert [(b.path, b.start_line, b.end_line) for b in ctx.blocks] == [("a.py", 30, 60), ("b.py", 1, 3)]
    assert ctx.blocks[0].text.split("\n") == FILE_A[29:60]


def test_a_definition_over_its_share_of_the_budget_falls_back_to_the_hit(count):
    one_line = count(FILE_A[0]) + 1
    budget = 40 * one_line
    # the unit (120 lines) is far over the budget: the hit alone is packed
    ctx = pack([with_unit(hit("a.py", 40, 45, 0.9), 1, 120)], count, budget=budget)
    assert [(b.start_line, b.end_line) for b in ctx.blocks] == [(40, 45)]
    # a unit that fits is taken whole
    ctx = pack([with_unit(hit("a.py", 40, 45, 0.9), 38, 50)], count, budget=budget)
    assert [(b.start_line, b.end_line) for b in ctx.blocks] == [(38, 50)]


def test_a_unit_that_no_longer_fits_leaves_room_for_the_hit(count):
    first = hit("b.py", 1, 60, 0.9)
    budget = count(pack([first], count, budget=10_000).text) + 12 * (count(FILE_A[0]) + 1)
    ctx = pack([first, with_unit(hit("a.py", 40, 41, 0.8), 20, 60)], count, budget=budget, unit_share=1.0)
    assert [(b.path, b.start_line, b.end_line) for b in ctx.blocks] == [("b.py", 1, 60), ("a.py", 40, 41)]


def test_a_block_from_inside_a_definition_names_it_in_its_header(count):
    body = Hit(path="q.py", start_line=40, end_line=42, scope="class QuerySet > def filter", language="python",
               score=0.9, text="        clone = self._chain()\n        clone.query.add_q(q)\n        return clone", rank=1)
    whole = Hit(path="q.py", start_line=10, end_line=11, scope="class QuerySet > def count", language="python",
                score=0.8, text="    def count(self):\n        return self.query.get_count()", rank=2)
    ctx = pack([body, whole], count, budget=1500)
    assert [b.header for b in ctx.blocks] == ["[1] q.py:40-42 (in QuerySet.filter)", "[2] q.py:10-11"]
    assert ctx.tokens == count(ctx.text) and "(in QuerySet.filter)" in ctx.text


def shared(h: Hit, share: float) -> Hit:
    h.share = h.score = share
    return h


def test_hits_with_reranker_shares_spend_the_budget_by_share_per_token(count):
    """After the best hit, a small likely definition goes before a big one that is barely more likely; without
    shares (a long report, a fused order) relevance order stays."""
    def hits(with_shares: bool) -> list[Hit]:
        out = [hit("b.py", 1, 2, 0.5), with_unit(hit("a.py", 100, 101, 0.2), 60, 140),    # 81 lines
               hit("a.py", 10, 12, 0.15), hit("b.py", 50, 51, 0.01)]
        return [shared(h, h.score) for h in out] if with_shares else out

    budget = count(pack(hits(False)[:2], count, budget=10_000).text) + 5     # the best hit + the big unit
    by_relevance = pack(hits(False), count, budget=budget)
    assert [(b.path, b.start_line) for b in by_relevance.blocks][:2] == [("b.py", 1), ("a.py", 60)]
    by_value = pack(hits(True), count, budget=budget)
    starts = [(b.path, b.start_line) for b in by_value.blocks]
    assert starts[:2] == [("b.py", 1), ("a.py", 10)] and ("a.py", 60) not in starts
    assert ("a.py", 100) in starts                  # the big one's hit alone still fits what is left
    everything = pack(hits(True), count, budget=10_000)
    assert {(b.path, b.start_line) for b in everything.blocks} == {("b.py", 1), ("a.py", 60), ("a.py", 10), ("b.py", 50)}
