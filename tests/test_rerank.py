"""The learned reranker (ragbit/search/rerank.py): its features, its file, and where the searcher uses it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ragbit.config import RagbitConfig
from ragbit.indexing.embeddings import PACKAGED_MODEL_ID
from ragbit.search import rerank as rr
from tests.retrieval_fixtures import FakeEmbedder, make_repo
from tests.test_query_adapter import EVAL_PROJECTS


def test_the_packaged_model_ships_a_trained_reranker_with_its_provenance():
    model = rr.load_reranker(PACKAGED_MODEL_ID)
    assert model is not None and model.weights.shape == (len(rr.FEATURES),)
    assert np.abs(model.weights).max() > 0.1                  # trained, not a constant
    info = rr.reranker_info(PACKAGED_MODEL_ID)
    assert info["features"] == list(rr.FEATURES) and info["questions"] >= 1000
    projects = {p.rsplit("-", 1)[0].lower() for p in info["projects"]}
    assert len(projects) >= 10 and not projects & EVAL_PROJECTS
    for figures in info["held_out_chunk_figures_before_after"].values():   # it helped on projects it never saw
        assert figures["after"]["R@10"] >= figures["before"]["R@10"]


def test_words_split_identifiers_and_fold_plurals():
    assert rr.words("resolve_types") == {"resolv", "type"}                  # snowball stems
    assert rr.words("Resolve any strings in type annotations") >= {"resolv", "string", "type", "annot"}
    assert rr.words("parse_tuple") & rr.words("parsing tuples") == {"pars", "tupl"}
    assert "get" not in rr.words("get the value")


def test_features_describe_each_candidate():
    scope = ["def resolve_types", "", "class Loader > def load", "# Guide"]
    path = ["src/attr/_funcs.py", "src/attr/_funcs.py", "tests/test_loader.py", "docs/types.md"]
    start, end = [10, 1, 5, 1], [20, 1, 8, 30]
    fused = [(3, 0.04), (0, 0.03), (2, 0.02), (1, 0.01)]
    lists = rr.Lists(lexical=[(3, 8.0), (0, 4.0)], dense=[(0, 0.6), (2, 0.5), (3, 0.4)])
    kind = lambda p: "test" if p.startswith("tests/") else "doc" if p.endswith(".md") else "code"   # noqa: E731
    X = rr.features("Resolve forward annotations in type annotations", fused, lists, scope, path, start, end, kind)
    f = {name: X[:, i] for i, name in enumerate(rr.FEATURES)}       # rows in fused order: positions 3, 0, 2, 1
    assert X.shape == (4, len(rr.FEATURES))
    assert f["fused_score"].tolist() == [1.0, 0.75, 0.5, 0.25]
    assert f["fused_rank"].tolist() == [math.log2(2 + i) for i in range(4)]
    assert f["lexical_rank"].tolist() == [1.0, 60 / 61, 0.0, 0.0] and f["lexical_score"].tolist() == [1.0, 0.5, 0, 0]
    assert f["dense_rank"].tolist() == [60 / 62, 1.0, 60 / 61, 0.0]
    assert np.allclose(f["dense_gap"], [-0.2, 0.0, -0.1, -0.2])             # absent: the list's worst cosine
    assert f["name_share"].tolist() == [0.0, 1.0, 0.0, 0.0] and f["name_any"].tolist() == [0, 1, 0, 0]
    assert f["file_share"].tolist() == [1.0, 0, 0, 0]          # "types" in the question names docs/types.md (row 0)
    assert f["module_level"].tolist() == [0, 0, 0, 1] and f["class_chunk"].tolist() == [0, 0, 0, 0]
    assert f["test_file"].tolist() == [0, 0, 1, 0] and f["prose_file"].tolist() == [1, 0, 0, 0]
    assert f["file_support"].tolist() == [0.05, 0.1, 0.05, 0.1]
    assert f["log_lines"][0] == math.log(30) and f["depth"].tolist() == [1, 1, 2, 0]


def test_rerank_orders_by_the_weighted_sum_and_keeps_the_tail():
    n = len(rr.FEATURES)
    weights = np.zeros(n)
    weights[rr.FEATURES.index("name_share")] = 3.0
    model = rr.Reranker(np.zeros(n), np.ones(n), weights)
    X = np.zeros((3, n))
    X[2, rr.FEATURES.index("name_share")] = 1.0
    out = model.rerank([(7, 0.3), (8, 0.2), (9, 0.1), (10, 0.05)], X)
    assert [pos for pos, _ in out] == [9, 7, 8, 10]           # the name match first, ties in fused order, tail last
    assert abs(sum(s for _, s in out[:3]) - 1) < 1e-9 and out[3] == (10, 0.0)


def test_each_lists_best_are_always_among_the_candidates_the_reranker_reorders():
    fused = [(p, 1.0 / (i + 1)) for i, p in enumerate(range(100, 200))]      # chunk 100 first ... 199 last
    lists = rr.Lists(lexical=[(150, 9.0), (101, 8.0)], dense=[(190, 0.9), (100, 0.8), (150, 0.7)])
    out = rr.candidate_window(fused, lists, depth=10, tops=2)
    assert [p for p, _ in out[:10]] == [100, 101, 102, 103, 104, 105, 106, 107, 190, 150]
    assert sorted(p for p, _ in out) == list(range(100, 200))                # nothing lost, nothing twice
    assert [p for p, _ in out[10:13]] == [108, 109, 110]                     # the rest keep their fused order
    assert dict(out)[190] == dict(fused)[190]
    one = rr.candidate_window(fused, lists, depth=10, tops=1)               # dense's best, then BM25's best
    assert [p for p, _ in one[:10]] == [100, 101, 102, 103, 104, 105, 106, 107, 190, 150]
    inside = rr.Lists(lexical=[(101, 8.0)], dense=[(100, 0.8)])
    assert rr.candidate_window(fused, inside, depth=10, tops=5) == fused      # already in the window: unchanged


@pytest.mark.parametrize("content, message", [
    ("not json", "unusable reranker"),
    (json.dumps({"features": ["fused_score"], "mean": [0], "scale": [1], "weights": [1]}), "features"),
    (json.dumps({"features": list(rr.FEATURES), "mean": [0] * len(rr.FEATURES), "scale": [0] * len(rr.FEATURES),
                 "weights": [1] * len(rr.FEATURES)}), "finite"),
])
def test_a_damaged_reranker_file_is_one_clear_line(tmp_path, monkeypatch, content, message):
    from ragbit.indexing.indexer import index_repository
    from ragbit.search.searcher import SearchError, Searcher
    monkeypatch.setattr(rr, "RERANKER_DIR", tmp_path / "rerankers")
    rr.load_reranker.cache_clear()
    try:
        rr.RERANKER_DIR.mkdir()
        rr.reranker_path(PACKAGED_MODEL_ID).write_text(content)
        root = make_repo(tmp_path / "r")
        index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder(model_id=PACKAGED_MODEL_ID))
        s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder(model_id=PACKAGED_MODEL_ID))
        with pytest.raises(SearchError) as e:
            s.search("invoice total")
        assert message in str(e.value) and "learned_rerank = false" in str(e.value) and "\n" not in str(e.value)
    finally:
        rr.load_reranker.cache_clear()


def _smallest_first(monkeypatch):
    """A reranker that puts the shortest chunk first: an order the fusion never gives, easy to recognise."""
    n = len(rr.FEATURES)
    weights = np.zeros(n)
    weights[rr.FEATURES.index("log_lines")] = -50.0
    monkeypatch.setattr(rr, "load_reranker", lambda model_id: rr.Reranker(np.zeros(n), np.ones(n), weights))


def _lines(hits) -> list[int]:
    return [h.end_line - h.start_line for h in hits]


def test_the_searcher_reranks_every_hybrid_search_and_calibrates_short_questions_only(tmp_path, monkeypatch):
    from ragbit.indexing.indexer import index_repository
    from ragbit.search.question import PLAIN_MAX_WORDS
    from ragbit.search.searcher import Searcher
    _smallest_first(monkeypatch)
    root = make_repo(tmp_path / "r")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    s = Searcher(RagbitConfig.load(root), embedder=FakeEmbedder())
    short = "invoice total with tax"
    long = " ".join(["the invoice total is wrong when tax applies"] * (PLAIN_MAX_WORDS // 8 + 1))
    hits = s.search(short, k=6, max_hits_per_file=0)
    assert _lines(hits) == sorted(_lines(hits)) and all(h.share == h.score for h in hits)
    assert abs(sum(h.score for h in hits) - 1) < 1e-6 or len(hits) < 6
    fused = [s.table.end_line[p] - s.table.start_line[p] for p, _ in s.fused(long, "hybrid", 50)[:6]]
    assert fused != sorted(fused)                                # the reranker has something to reorder
    listed = s.search(long, k=6, max_hits_per_file=0)
    assert _lines(listed) == sorted(_lines(listed)) and all(h.share is None for h in listed)   # no calibrated share
    for mode in ("dense", "lexical"):                          # it needs both lists
        assert all(h.share is None for h in s.search(short, k=6, mode=mode))
    off = Searcher(RagbitConfig.load(root, overrides={"search": {"learned_rerank": False}}), embedder=FakeEmbedder())
    assert off.reranker is None and all(h.share is None for h in off.search(short, k=6))


def test_status_says_whether_candidates_are_reranked(tmp_path):
    from ragbit.indexing.indexer import index_repository
    from ragbit.search.status import index_status
    root = make_repo(tmp_path / "r")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder(model_id=PACKAGED_MODEL_ID))
    info = rr.reranker_info(PACKAGED_MODEL_ID)
    line = index_status(RagbitConfig.load(root)).learned_rerank
    assert "reordered" in line and f"{info['questions']:,} questions from {len(info['projects'])} projects" in line
    (root / "ragbit.toml").write_text("[search]\nlearned_rerank = false\n")
    assert index_status(RagbitConfig.load(root)).learned_rerank == ""
