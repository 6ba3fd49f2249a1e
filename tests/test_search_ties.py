"""Issue #21 item 13 through the real Searcher: an exact identifier match that BM25 ranks first is not
outranked by a look-alike that dense search ranks first, when their fused scores tie."""
from __future__ import annotations

from ragbit.config import RagbitConfig
from ragbit.indexing.indexer import index_repository
from ragbit.search.searcher import Searcher
from tests.retrieval_fixtures import FakeEmbedder


class LooksAlikeEmbedder(FakeEmbedder):
    """Dense search that prefers the look-alike: the query embeds like the look-alike's docstring."""

    def embed_query(self, text: str):
        return self._vector("lookalike helper returns shifted values")


def test_exact_identifier_wins_a_fused_tie(tmp_path, monkeypatch):
    import ragbit.search.searcher as searcher_module
    repo = tmp_path / "tiny"
    repo.mkdir()
    # the look-alike sorts first (lower position), which is what used to win the tie
    (repo / "a_lookalike.py").write_text(
        'def tiny_func_2998(x):\n    """lookalike helper returns shifted values"""\n    return x + 2998\n')
    (repo / "z_exact.py").write_text('def tiny_func_2999(x):\n    return x + 2999\n')
    cfg = RagbitConfig.load(repo, overrides={"search": {"max_hits_per_file": 0}})
    index_repository(cfg, progress=False, embedder=LooksAlikeEmbedder())
    searcher = Searcher(cfg, embedder=LooksAlikeEmbedder())
    lexical = searcher.search("tiny_func_2999", k=2, mode="lexical")
    dense = searcher.search("tiny_func_2999", k=2, mode="dense")
    assert [h.path for h in lexical] == ["z_exact.py", "a_lookalike.py"]
    assert [h.path for h in dense] == ["a_lookalike.py", "z_exact.py"]
    hybrid = searcher.search("tiny_func_2999", k=2, mode="hybrid")
    # BM25 over the question's code names alone (a third list) already puts the exact match first
    assert [h.path for h in hybrid] == ["z_exact.py", "a_lookalike.py"] and hybrid[0].score > hybrid[1].score
    monkeypatch.setattr(searcher_module, "IDENTIFIER_WEIGHT", 0.0)   # without it: a tie, broken for BM25's first
    hybrid = searcher.search("tiny_func_2999", k=2, mode="hybrid")
    assert hybrid[0].score == hybrid[1].score                      # a real tie: 1/61 + 1/62 each
    assert [h.path for h in hybrid] == ["z_exact.py", "a_lookalike.py"]
