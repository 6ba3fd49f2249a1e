"""An approximate dense index reports its recall against exact search, and `ragbit status` shows it."""
from __future__ import annotations

import json

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
