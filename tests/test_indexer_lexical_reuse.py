"""An incremental `index_repository` reuses the previous generation's lexical tokens for unchanged files, and
the lexical index it commits ranks exactly like one built from scratch."""
from __future__ import annotations

import pytest

from ragbit.config import RagbitConfig
from ragbit.indexing.indexer import index_repository
from ragbit.search.searcher import Searcher
from tests.retrieval_fixtures import FakeEmbedder, make_repo

QUERIES = ["retry with backoff", "resolve hostname ip address", "carousel slide", "jitter delay", "cart total"]


def _index(repo, index_dir, **kw):
    cfg = RagbitConfig.load(repo, overrides={"index": {"dir": str(index_dir)}})
    return index_repository(cfg, progress=False, embedder=FakeEmbedder(), embed=False, **kw), cfg


def _lexical(cfg, query):
    return [(h.path, h.start_line, round(h.score, 5))
            for h in Searcher(cfg, embedder=FakeEmbedder()).search(query, k=20, mode="lexical")]


def test_incremental_lexical_index_ranks_like_a_rebuild(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "shop")
    _index(repo, tmp_path / "incremental")
    retry = repo / "src/net/retry.py"
    retry.write_text(retry.read_text() + "\n\ndef jitter(delay):\n    return delay * 0.5\n")
    (repo / "src/net/dns.py").write_text("def resolve_hostname(name):\n    return socket.gethostbyname(name)\n")
    (repo / "web/static/carousel.js").unlink()

    from indexes import lexical
    tokenized = []
    real = lexical.corpus_token_ids
    monkeypatch.setattr(lexical, "corpus_token_ids", lambda texts, *a: tokenized.extend(texts) or real(texts, *a))
    report, incremental = _index(repo, tmp_path / "incremental")
    assert report.files_unchanged == 4
    # only the chunks of the two touched files were tokenized again
    assert tokenized and all(t.startswith(("src/net/retry.py", "src/net/dns.py")) for t in tokenized)

    _, scratch = _index(repo, tmp_path / "scratch")
    for q in QUERIES:
        assert _lexical(incremental, q) == _lexical(scratch, q), q
        assert _lexical(scratch, q), q                       # the queries do find something
