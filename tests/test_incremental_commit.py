"""A one-file re-index writes only what changed (a lexical segment, dense layers, hard links to the rest); an
interruption at any of those writes leaves the previous generation current and searchable, and the next run
gives what a rebuild gives."""
from __future__ import annotations

import pytest

from ragbit.config import RagbitConfig
from ragbit.indexing import dense_update
from ragbit.indexing.indexer import index_repository
from ragbit.search.searcher import Searcher
from tests.retrieval_fixtures import FakeEmbedder, make_repo

QUERIES = ["audit ledger entry", "route tenant", "handler event reply", "ledger totals book"]


def _cfg(repo, index_dir):
    return RagbitConfig.load(repo, {"index": {"dir": str(index_dir), "dense": "ivf"}})


def _hits(repo, index_dir):
    s = Searcher(_cfg(repo, index_dir), embedder=FakeEmbedder())
    return [[(h.path, h.start_line, round(h.score, 4)) for h in s.search(q, k=6, mode=m) if h.score > 0]
            for q in QUERIES for m in ("lexical", "dense")]


class Boom(KeyboardInterrupt):
    """Stands for Ctrl-C or a kill in the middle of a write."""


def _fail_on(monkeypatch, where: str):
    """Make the next commit fail at `where`: the new lexical segment, or the dense layers."""
    if where == "lexical segment":
        from indexes import bm25_segments
        real = bm25_segments.Segment.save

        def save(self, directory):
            real(self, directory)
            if self.source is None:                          # the new segment, after its files are written
                raise Boom()
        monkeypatch.setattr(bm25_segments.Segment, "save", save)
    else:
        import numpy as np
        real = np.save

        def np_save(path, array, *a, **k):
            real(path, array, *a, **k)
            if str(path).endswith("dense_delta.npy"):
                raise Boom()
        monkeypatch.setattr(np, "save", np_save)


@pytest.mark.parametrize("where", ["lexical segment", "dense layers"])
def test_an_interrupted_one_file_commit_keeps_the_previous_generation(tmp_path, monkeypatch, where):
    monkeypatch.setattr(dense_update, "DELTA_SHARE", 1.0)
    files = {f"pkg/m{i}.py": f"def handler_{i}(event):\n    '''Route {i} for tenant {i % 4}.'''\n"
                             f"    return event.reply_{i % 6}()\n" for i in range(60)}
    repo = make_repo(tmp_path / "repo", files)
    live = tmp_path / "live"
    index_repository(_cfg(repo, live), progress=False, embedder=FakeEmbedder())
    before = _hits(repo, live)
    (repo / "pkg/m7.py").write_text("def audit_ledger(entry):\n    '''Write the ledger entry.'''\n    return entry\n")
    (repo / "pkg/new.py").write_text("def ledger_totals(book):\n    return sum(book)\n")

    with monkeypatch.context() as m:
        _fail_on(m, where)
        with pytest.raises(Boom):
            index_repository(_cfg(repo, live), progress=False, embedder=FakeEmbedder())
    assert _hits(repo, live) == before                         # the previous generation, intact

    report = index_repository(_cfg(repo, live), progress=False, embedder=FakeEmbedder())
    assert report.files_changed == 1 and report.files_added == 1
    from indexes.store import IndexStore
    assert IndexStore(live).manifest()["dense_index"].get("base_slots") is not None     # carried, not rebuilt
    index_repository(_cfg(repo, tmp_path / "fresh"), progress=False, embedder=FakeEmbedder())
    assert _hits(repo, live) == _hits(repo, tmp_path / "fresh")
    assert any(h for h in _hits(repo, live))
