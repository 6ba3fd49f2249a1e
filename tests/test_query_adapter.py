"""The query adapter (ragbit/indexing/query_adapter.py) and the searcher's use of it for short questions."""
from __future__ import annotations

import numpy as np
import pytest

from ragbit.config import EmbedConfig, RagbitConfig
from ragbit.indexing import query_adapter as qa
from ragbit.indexing.embeddings import PACKAGED_MODEL_ID, EmbeddingModelError
from tests.retrieval_fixtures import FakeEmbedder, make_repo

# projects of the development sets and of the eval README's example list: the adapter must not be trained on them
EVAL_PROJECTS = {"jinja2", "werkzeug", "attrs", "tqdm", "packaging", "django", "sympy", "scikit-learn", "sklearn",
                 "matplotlib", "sphinx", "xarray", "pylint", "pytest", "seaborn", "astropy", "flask", "requests",
                 "click", "rich", "httpx"}


def test_the_packaged_model_ships_a_trained_adapter_with_its_provenance():
    W = qa.load_adapter(PACKAGED_MODEL_ID, 384)
    assert W is not None and W.shape == (384, 384) and W.dtype == np.float32
    assert np.isfinite(W).all()
    assert np.linalg.norm(W - np.eye(384)) > 0.5          # trained, not the identity
    info = qa.adapter_info(PACKAGED_MODEL_ID)
    assert info["model"] == PACKAGED_MODEL_ID and info["questions"] >= 1000
    projects = {p.rsplit("-", 1)[0].lower() for p in info["projects"]}
    assert len(projects) >= 10 and not projects & EVAL_PROJECTS


def test_adapt_returns_a_unit_vector_and_the_identity_changes_nothing():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(16).astype(np.float32)
    v /= np.linalg.norm(v)
    assert np.allclose(qa.adapt(np.eye(16, dtype=np.float32), v), v)
    W = rng.standard_normal((16, 16)).astype(np.float32)
    out = qa.adapt(W, v)
    assert out.dtype == np.float32 and abs(np.linalg.norm(out) - 1) < 1e-5
    assert np.allclose(out, (W @ v) / np.linalg.norm(W @ v), atol=1e-6)


def test_a_model_without_an_adapter_gets_none():
    assert qa.load_adapter("someone/unknown-model", 384) is None


def test_a_damaged_adapter_file_is_one_clear_line(tmp_path, monkeypatch):
    from ragbit.indexing.embeddings import Embedder
    monkeypatch.setattr(qa, "ADAPTER_DIR", tmp_path)
    qa.load_adapter.cache_clear()
    try:
        qa.adapter_path(PACKAGED_MODEL_ID).write_bytes(b"not a numpy file")
        with pytest.raises(EmbeddingModelError) as e:
            Embedder().query_adapter
        assert "query adapter" in str(e.value) and "\n" not in str(e.value)
        np.save(qa.adapter_path(PACKAGED_MODEL_ID), np.eye(8, dtype=np.float32))       # wrong shape
        qa.load_adapter.cache_clear()
        with pytest.raises(EmbeddingModelError, match="384 dimensions"):
            Embedder().query_adapter
    finally:
        qa.load_adapter.cache_clear()


def test_the_setting_turns_it_off(tmp_path):
    from ragbit.indexing.embeddings import Embedder
    (tmp_path / "ragbit.toml").write_text("[embed]\nquery_adapter = false\n")
    cfg = RagbitConfig.load(tmp_path)
    assert cfg.embed.query_adapter is False and Embedder(cfg.embed).query_adapter is None
    assert Embedder(EmbedConfig()).query_adapter is not None


class _AdaptedFake(FakeEmbedder):
    """Bag-of-words vectors with a known 'adapter' (a permutation), recording what dense search is asked."""

    def __init__(self):
        super().__init__()
        self.query_adapter = np.eye(self.dim, dtype=np.float32)[::-1].copy()


def _searched_vectors(searcher, monkeypatch) -> list[np.ndarray]:
    seen = []
    searcher._load(lexical=True, dense=True)
    real = searcher.dense.search
    monkeypatch.setattr(searcher.dense, "search", lambda q, n, *a: seen.append(np.array(q)) or real(q, n, *a))
    return seen


def test_short_questions_are_mapped_and_long_reports_are_not(tmp_path, monkeypatch):
    from ragbit.indexing.indexer import index_repository
    from ragbit.search.question import PLAIN_MAX_WORDS
    from ragbit.search.searcher import Searcher
    root = make_repo(tmp_path / "r")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder())
    emb = _AdaptedFake()
    s = Searcher(RagbitConfig.load(root), embedder=emb)
    seen = _searched_vectors(s, monkeypatch)
    short = "compute the invoice total with tax"
    long = " ".join(["the invoice total is wrong when tax applies"] * (PLAIN_MAX_WORDS // 8 + 1))
    s.search(short, mode="dense")
    s.search(long, mode="dense")
    assert np.allclose(seen[0], qa.adapt(emb.query_adapter, emb.embed_query(short)))
    assert not np.allclose(seen[0], emb.embed_query(short))
    assert np.allclose(seen[1], emb.embed_query(long))                  # a long report: the raw vector
    emb.query_adapter = None                                            # a model without one
    s.search(short, mode="dense")
    assert np.allclose(seen[2], emb.embed_query(short))


def test_a_list_is_the_best_hits_then_files_not_yet_listed(tmp_path):
    from ragbit.indexing.indexer import index_repository
    from ragbit.search.question import list_cap, list_head
    from ragbit.search.searcher import Searcher
    funcs = "\n\n".join(f"def invoice_step_{i}(invoice):\n    return invoice.total * {i}\n" for i in range(8))
    others = {f"other{i}.py": f"def invoice_total_{i}(x):\n    return x\n" for i in range(4)}
    root = make_repo(tmp_path / "r", {"billing.py": funcs, **others})
    (root / "ragbit.toml").write_text("[chunk]\nmax_tokens = 24\n")
    cfg = RagbitConfig.load(root)
    index_repository(cfg, progress=False, embedder=FakeEmbedder())
    s = Searcher(cfg, embedder=FakeEmbedder())
    short, long = "invoice step", " ".join(["invoice step"] * 30)
    assert list_cap(short, cfg.search) == list_cap(long, cfg.search) == 0 and list_head(10, cfg.search) == 5
    for question in (short, long):
        ranked = s.search(question, k=40, mode="lexical", max_hits_per_file=0)      # an explicit cap: by score
        hits = s.search(question, k=10, mode="lexical")
        head, tail = hits[:5], hits[5:]
        assert [h.path for h in head] == [h.path for h in ranked[:5]]                # the head: the best, wherever
        assert sum(h.path == "billing.py" for h in head) >= 3
        listed = {h.path for h in head}
        new = [h.path for h in tail if h.path not in listed]
        assert len(new) == len(set(new)) >= 4                                        # the tail: one hit per new file
        assert [h.path for h in ranked if h.path not in listed][0] == new[0]         # in their fused order
    capped = s.search(short, k=10, mode="lexical", max_hits_per_file=1)             # an explicit cap wins
    assert len({h.path for h in capped}) == len(capped)
    off = Searcher(RagbitConfig.load(root, overrides={"search": {"new_files_share": 0}}), embedder=FakeEmbedder())
    by_score = s.search(short, k=10, mode="lexical", max_hits_per_file=0)
    assert [(h.path, h.start_line) for h in off.search(short, k=10, mode="lexical")] == \
        [(h.path, h.start_line) for h in by_score]


def test_status_says_whether_questions_are_mapped(tmp_path):
    from ragbit.indexing.indexer import index_repository
    from ragbit.search.status import index_status
    root = make_repo(tmp_path / "r")
    index_repository(RagbitConfig.load(root), progress=False, embedder=FakeEmbedder(model_id=PACKAGED_MODEL_ID))
    line = index_status(RagbitConfig.load(root)).query_adapter
    info = qa.adapter_info(PACKAGED_MODEL_ID)
    assert "mapped towards code" in line and f"{info['questions']:,} questions from {len(info['projects'])} projects" in line
    (root / "ragbit.toml").write_text("[embed]\nquery_adapter = false\n")
    assert index_status(RagbitConfig.load(root)).query_adapter == ""
    other = make_repo(tmp_path / "o")
    index_repository(RagbitConfig.load(other), progress=False, embedder=FakeEmbedder())     # a model without one
    assert index_status(RagbitConfig.load(other)).query_adapter == ""
