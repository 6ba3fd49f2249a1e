"""An approximate dense index reports its recall against exact search, and `ragbit status` shows it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from indexes.dense import DenseIndex
from ragbit.cli import app
from tests.retrieval_fixtures import FakeEmbedder, make_repo


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_recall_matches_a_brute_force_count():
    x = unit_vectors(3000)
    ivf = DenseIndex.build(x, kind="ivf")
    recall = ivf.recall_at(x, k=10, queries=50, seed=3)
    rows = np.random.default_rng(3).choice(len(x), size=50, replace=False)
    expected = []
    for r in rows:
        exact = set(np.argsort(-(x @ x[r]), kind="stable")[:10].tolist())
        got = {i for i, _ in ivf.search(x[r], 10)}
        expected.append(len(exact & got) / 10)
    assert recall == pytest.approx(np.mean(expected), abs=0.021)     # ties at the 10th place may differ
    assert recall < 1.0                                  # uniform random data is hard for IVF: it does miss
    assert DenseIndex.build(x, kind="flat").recall_at(x) == 1.0


def test_status_reports_the_kind_and_recall(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    repo = make_repo(tmp_path / "shop")
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(repo), "--quiet", "--dense", "hnsw"]).exit_code == 0
    r = runner.invoke(app, ["status", str(repo)])
    assert r.exit_code == 0 and "dense index: hnsw (approximate) over 14 vectors, recall@10 " in r.stdout
    doc = json.loads(runner.invoke(app, ["status", str(repo), "--json"]).stdout)
    assert doc["dense_kind"] == "hnsw" and 0.9 <= doc["dense_recall"] <= 1.0   # ties between equal vectors
    assert runner.invoke(app, ["index", str(repo), "--quiet", "--dense", "flat"]).exit_code == 0
    r = runner.invoke(app, ["status", str(repo)])
    assert "dense index: flat (exact search)" in r.stdout


# ---------------------------------------------------------------------------------------------- in-place update
def _dense_hits(repo, index_dir, queries):
    from ragbit.config import RagbitConfig
    from ragbit.search.searcher import Searcher
    cfg = RagbitConfig.load(repo, {"index": {"dir": str(index_dir)}})
    s = Searcher(cfg, embedder=FakeEmbedder())
    return [[(h.path, h.start_line, round(h.score, 5)) for h in s.search(q, k=8, mode="dense", max_hits_per_file=0)]
            for q in queries]


def _manifest(index_dir):
    from indexes.store import IndexStore
    return IndexStore(index_dir).manifest()


def _dense_file(index_dir):
    from indexes.store import IndexStore
    return Path(IndexStore(index_dir).current()) / "dense.faiss"


@pytest.mark.parametrize("layers", [True, False], ids=["layers", "folded"])
def test_a_one_file_change_carries_the_ivf_index_over(tmp_path, monkeypatch, layers):
    """Small commits keep the IVF base file (hard-linked) and add layers, or fold them into the base; either way
    dense search answers as a rebuilt index does, also after a second edit that removes a layered vector."""
    from ragbit.config import RagbitConfig
    from ragbit.indexing import dense_update
    from ragbit.indexing.indexer import index_repository
    monkeypatch.setattr(dense_update, "DELTA_SHARE", 1.0 if layers else 0.0)
    files = {f"pkg/m{i}.py": f"def handler_{i}(event):\n    '''Route {i} for tenant {i % 4}.'''\n"
                             f"    return event.reply_{i % 6}()\n" for i in range(60)}
    repo = make_repo(tmp_path / "repo", files)

    def index(index_dir, rebuild=False):
        cfg = RagbitConfig.load(repo, {"index": {"dir": str(index_dir), "dense": "ivf"}})
        return index_repository(cfg, progress=False, rebuild=rebuild, embedder=FakeEmbedder())

    queries = ["audit ledger entry", "route tenant", "handler event reply", "ledger totals book", "ledger sums"]

    def same_as_rebuilt():
        index(tmp_path / "fresh", rebuild=True)
        # every list is probed at this size, so IVF is exact: the carried index answers as a rebuilt one does
        # (the fake embedder's orthogonal vectors tie at score 0: those come in either order)
        live, fresh = _dense_hits(repo, tmp_path / "live", queries), _dense_hits(repo, tmp_path / "fresh", queries)
        assert [[h for h in q if h[2] > 0] for q in live] == [[h for h in q if h[2] > 0] for q in fresh]
        assert [[h[2] for h in q] for q in live] == [[h[2] for h in q] for q in fresh]
        assert any(h[2] > 0 for q in live for h in q)

    index(tmp_path / "live")
    assert "updated_in_place" not in _manifest(tmp_path / "live")["dense_index"]
    first_base = _dense_file(tmp_path / "live").stat().st_ino
    (repo / "pkg/m7.py").write_text("def audit_ledger(entry):\n    '''Write the ledger entry.'''\n    return entry\n")
    (repo / "pkg/m8.py").unlink()
    (repo / "pkg/new.py").write_text("def ledger_totals(book):\n    return sum(book)\n")
    index(tmp_path / "live")
    info = _manifest(tmp_path / "live")["dense_index"]
    assert info["updated_in_place"] and info["kind"] == "ivf" and info["vectors"] == 60
    assert (_dense_file(tmp_path / "live").stat().st_ino == first_base) == layers
    assert (_dense_file(tmp_path / "live").parent / "dense_delta.npy").exists() == layers
    same_as_rebuilt()

    (repo / "pkg/new.py").write_text("def ledger_sums(book):\n    return sum(book) + 1\n")   # a layered vector goes
    index(tmp_path / "live")
    assert (_dense_file(tmp_path / "live").stat().st_ino == first_base) == layers
    same_as_rebuilt()

    for i in range(20, 40):                                  # a third of the files: rebuilt, not carried over
        (repo / f"pkg/m{i}.py").write_text(f"def other_{i}():\n    return {i}\n")
    index(tmp_path / "live")
    assert "updated_in_place" not in _manifest(tmp_path / "live")["dense_index"]
