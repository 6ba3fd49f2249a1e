"""Stat stamps: a re-index reads only files whose (size, mtime, ctime, inode) moved since the last run.

The racy-file margin (walker.RACY_MARGIN_NS, 2 s) keeps stamps of files written just before a walk from being
recorded; the files a test writes are that fresh, so most tests here set the margin to 0 and the last one checks
the margin itself.
"""
from __future__ import annotations

import os

import pytest

import ragbit.indexing.walker as walker
from ragbit.config import RagbitConfig
from ragbit.indexing.indexer import index_repository
from ragbit.search.searcher import Searcher
from ragbit.search.status import index_status
from tests.retrieval_fixtures import FakeEmbedder, make_repo

N_FILES = 6     # files make_repo writes


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "shop")


@pytest.fixture
def reads(monkeypatch):
    """Paths of the files the walker reads, in order."""
    seen, real = [], walker.read_bytes

    def counting(path):
        seen.append(path)
        return real(path)
    monkeypatch.setattr(walker, "read_bytes", counting)
    return seen


@pytest.fixture
def no_margin(monkeypatch):
    monkeypatch.setattr(walker, "RACY_MARGIN_NS", 0)


def run(repo, **kw):
    return index_repository(RagbitConfig.load(repo), progress=False, embedder=FakeEmbedder(), **kw)


def generation(repo):
    from indexes.store import IndexStore
    return IndexStore(RagbitConfig.load(repo).index_dir).manifest()["generation"]


def names(paths):
    return sorted(os.path.basename(p) for p in paths)


def test_unchanged_files_are_not_read_and_an_edit_is_read(repo, reads, no_margin):
    run(repo)
    assert len(reads) == N_FILES
    reads.clear()
    report = run(repo)
    assert reads == [] and report.files_unchanged == N_FILES

    retry = repo / "src/net/retry.py"
    retry.write_text(retry.read_text() + "\ndef jitter(delay):\n    return delay / 2\n")
    report = run(repo)
    assert names(reads) == ["retry.py"]
    assert (report.files_changed, report.files_unchanged) == (1, N_FILES - 1)
    hits = Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder()).search("jitter", k=1, mode="lexical")
    assert hits[0].path == "src/net/retry.py"


def test_same_size_edit_with_the_old_mtime_put_back_is_still_seen(repo, reads, no_margin):
    """What `cp -p`, `rsync -t` or an editor restoring times do: ctime (set by the kernel) gives it away."""
    run(repo)
    retry = repo / "src/net/retry.py"
    old, st = retry.read_bytes(), retry.stat()
    new = old.replace(b"backoff", b"BACKOFF")
    assert new != old and len(new) == len(old)
    retry.write_bytes(new)
    os.utime(retry, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert retry.stat().st_mtime_ns == st.st_mtime_ns and retry.stat().st_size == st.st_size
    reads.clear()
    assert index_status(RagbitConfig.load(repo)).changed == 1
    assert names(reads) == ["retry.py"]                       # `ragbit status` trusts the same stamps
    report = run(repo)
    assert report.files_changed == 1


def test_touched_but_unchanged_file_gets_its_new_stamp_recorded(repo, reads, no_margin):
    run(repo)
    gen = generation(repo)
    os.utime(repo / "src/net/retry.py")                       # new mtime and ctime, same bytes
    reads.clear()
    report = run(repo)
    assert names(reads) == ["retry.py"] and report.files_unchanged == N_FILES and report.chunks_embedded == 0
    assert generation(repo) == gen + 1                        # committed, so the next run need not read it
    reads.clear()
    run(repo)
    assert reads == [] and generation(repo) == gen + 1


def test_changed_content_rules_read_every_file_again(repo, reads, no_margin):
    run(repo)
    (repo / "ragbit.toml").write_text("[walk]\nmax_line_chars = 30\n")   # retry.py etc. now count as generated
    reads.clear()
    report = run(repo)
    assert len(reads) == N_FILES + 1                          # the six files and ragbit.toml
    assert report.files_removed > 0 and report.skipped.get(walker.GENERATED)


def test_files_written_just_before_the_walk_are_read_again(repo, reads):
    """Default margin: every file was written < 2 s before the first walk, so no stamp is recorded and the
    next walk reads them all; once the margin has passed, their stamps are recorded and trusted."""
    run(repo)
    from ragbit.chunk_table import ChunkTable
    from indexes.store import IndexStore
    table = ChunkTable.load(IndexStore(RagbitConfig.load(repo).index_dir).current())
    assert [f.stamp for f in table.files] == [None] * N_FILES
    reads.clear()
    run(repo)
    assert len(reads) == N_FILES


def test_settled_needs_the_last_change_before_the_walk_minus_the_margin():
    start = 10_000_000_000
    margin = walker.RACY_MARGIN_NS
    assert walker.settled((5, start - margin - 1, start - margin - 1, 7), start)
    assert not walker.settled((5, start - margin - 1, start - margin, 7), start)       # ctime too recent
    assert not walker.settled((5, start - margin, start - margin - 1, 7), start)       # mtime in the future
    assert not walker.settled(None, start)
