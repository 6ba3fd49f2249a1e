"""Indexer: full and incremental runs, the two-generation commit, kill-and-resume, locking, model mismatch."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ragbit.chunk_table import ChunkTable
from ragbit.config import RagbitConfig
from ragbit.index_layout import ModelMismatchError
from ragbit.indexing.indexer import IndexingError, index_repository
from ragbit.search.searcher import Searcher
from tests.retrieval_fixtures import FakeEmbedder, as_format_1, make_repo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "shop")


def run(repo, embedder=None, **kw):
    cfg = RagbitConfig.load(repo)
    emb = embedder or FakeEmbedder()
    return index_repository(cfg, progress=False, embedder=emb, **kw), emb


def test_first_run_indexes_every_file_and_embeds_every_distinct_chunk(repo):
    report, emb = run(repo)
    assert report.files_added == 6 and report.files_changed == report.files_removed == report.files_unchanged == 0
    assert report.chunks >= 6
    assert report.chunks_embedded == len(set(emb.embedded)) == len(emb.embedded)
    assert report.chunks_embedded + report.chunks_reused == report.chunks
    assert report.dense_complete
    assert report.timings["total"] >= report.timings["walk_chunk"] > 0
    # the index directory inside the repository is not indexed itself
    report2, _ = run(repo)
    assert report2.files_unchanged == 6 and report2.files_added == 0


def test_unchanged_run_embeds_nothing_and_writes_nothing(repo):
    from indexes.store import IndexStore
    run(repo)
    generation = IndexStore(RagbitConfig.load(repo).index_dir).manifest()["generation"]
    report, emb = run(repo)
    assert emb.embedded == []
    assert IndexStore(RagbitConfig.load(repo).index_dir).manifest()["generation"] == generation
    assert report.files_unchanged == 6 and report.chunks_reused == report.chunks and report.chunks_embedded == 0


def test_small_edit_embeds_first_and_commits_one_generation(repo, monkeypatch):
    """Missing vectors that fit one flush batch: one generation; more than that: the lexical one comes first."""
    import ragbit.indexing.indexer as ix
    from indexes.store import IndexStore
    run(repo)
    store = IndexStore(RagbitConfig.load(repo).index_dir)
    generation = store.manifest()["generation"]
    retry = repo / "src/net/retry.py"
    retry.write_text(retry.read_text() + "\n\ndef jitter(delay):\n    return delay * 0.5\n")
    report, emb = run(repo)
    assert 0 < report.chunks_embedded <= ix.EMBED_FLUSH and report.dense_complete
    assert store.manifest()["generation"] == generation + 1
    hits = Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder()).search("jitter delay", k=3, mode="dense")
    assert hits.dense_complete and any(h.path == "src/net/retry.py" for h in hits)

    monkeypatch.setattr(ix, "EMBED_FLUSH", 1)          # two new chunks no longer fit a batch: two generations
    for p in sorted(repo.rglob("*.py"))[:2]:
        p.write_text(p.read_text() + "\n# again\n")
    report, _ = run(repo)
    assert report.chunks_embedded >= 2 and report.dense_complete
    assert store.manifest()["generation"] == generation + 3


def test_incremental_modify_add_delete(repo):
    first, _ = run(repo)
    retry = repo / "src/net/retry.py"
    retry.write_text(retry.read_text() + "\n\ndef jitter(delay):\n    \"\"\"Random jitter for backoff delays.\"\"\"\n"
                     "    return delay * 0.5\n")
    (repo / "src/net/dns.py").write_text("def resolve_hostname(name):\n    \"\"\"Look up the IP address.\"\"\"\n"
                                         "    return socket.gethostbyname(name)\n")
    (repo / "web/static/carousel.js").unlink()
    report, emb = run(repo)
    assert (report.files_added, report.files_changed, report.files_removed, report.files_unchanged) == (1, 1, 1, 4)
    # only chunks of the two touched files went through the model
    assert emb.embedded and all(t.startswith(("src/net/retry.py", "src/net/dns.py")) for t in emb.embedded)
    assert report.chunks_embedded == len(emb.embedded)
    hits = Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder()).search("resolve hostname ip address", k=3)
    assert hits[0].path == "src/net/dns.py"
    all_paths = {h.path for h in Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder())
                 .search("carousel slide", k=50, mode="lexical")}
    assert "web/static/carousel.js" not in all_paths


def test_rebuild_reports_everything_added(repo):
    run(repo)
    report, _ = run(repo, rebuild=True)
    assert report.files_added == 6 and report.files_unchanged == 0


def test_model_mismatch_is_a_clear_error_and_rebuild_fixes_it(repo):
    run(repo)
    other = FakeEmbedder(model_id="another-model")
    with pytest.raises(ModelMismatchError, match="--rebuild"):
        run(repo, embedder=other)
    report, _ = run(repo, embedder=FakeEmbedder(model_id="another-model"), rebuild=True)
    assert report.dense_complete


def test_empty_repository(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexingError, match="no indexable files in"):
        run(tmp_path / "empty")


def test_concurrent_run_fails_at_once(repo):
    from indexes.store import IndexLockedError, IndexStore
    cfg = RagbitConfig.load(repo)
    with IndexStore(cfg.index_dir).lock(timeout=0):
        t = time.monotonic()
        with pytest.raises(IndexLockedError):
            run(repo)
        assert time.monotonic() - t < 5


# ------------------------------------------------------------------ kill -9 while embedding, then resume
_KILL_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import ragbit.indexing.indexer as ix
    from ragbit.config import RagbitConfig
    from tests.retrieval_fixtures import FakeEmbedder
    ix.EMBED_FLUSH = 1
    emb = FakeEmbedder(delay_per_call=0.4, calls_file=Path(sys.argv[2]))
    ix.index_repository(RagbitConfig.load(sys.argv[1]), progress=False, embedder=emb)
""")


def test_killed_run_keeps_previous_index_and_resume_reuses_cached_vectors(repo, tmp_path):
    run(repo)
    # change every file's text so every chunk needs a new vector
    for p in sorted(repo.rglob("*")):
        if p.is_file() and ".ragbit" not in p.parts:
            p.write_text(p.read_text() + "\n// edited\n" if p.suffix in (".js", ".go") else
                         p.read_text() + "\n# edited\n")
    calls = tmp_path / "calls.txt"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(repo), str(calls)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not calls.exists() or len(calls.read_text().split()) < 3):
        assert proc.poll() is None, "indexing finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    flushed = sum(int(n) for n in calls.read_text().split()[:-1])   # the last batch may not be flushed yet
    assert flushed >= 2

    # the index is loadable: the chunk table + BM25 generation was committed, dense is incomplete
    searcher = Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder())
    hits = searcher.search("exponential backoff", k=3, mode="lexical")
    assert hits and hits[0].path == "src/net/retry.py"
    dense = Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder()).search("exponential backoff", k=3,
                                                                               mode="dense")
    assert dense.dense_complete is False

    # the next run takes the flushed vectors from the cache
    report, emb = run(repo)
    assert report.files_unchanged == 6          # the killed run already committed the new chunk table
    assert report.chunks_reused >= flushed
    assert report.chunks_embedded == report.chunks - report.chunks_reused == len(emb.embedded)
    assert report.dense_complete
    assert Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder()).search("x backoff", k=1,
                                                                              mode="dense").dense_complete


def test_changed_chunk_settings_rechunk_every_file(repo):
    run(repo)
    (repo / "ragbit.toml").write_text("[chunk]\nwindow_lines = 3\noverlap_lines = 1\n")
    report, emb = run(repo)
    assert report.rechunked_all
    # ragbit.toml is a new file; the six others were re-chunked, not counted as added
    assert (report.files_added, report.files_changed, report.files_unchanged) == (1, 0, 6)
    assert report.chunks_reused > 0        # chunks whose text did not change keep their cached vectors
    assert report.chunks_embedded == len(emb.embedded) > 0


def test_embed_false_commits_lexical_only(repo):
    report, emb = run(repo, embed=False)
    assert emb.embedded == [] and not report.dense_complete
    hits = Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder()).search("exponential backoff", k=2,
                                                                              mode="lexical")
    assert hits[0].path == "src/net/retry.py"
    report, emb = run(repo)                    # a normal run completes the dense index
    assert report.chunks_embedded == report.chunks == len(emb.embedded) and report.dense_complete


def test_index_of_an_older_ragbit_is_rechunked_without_re_embedding(repo):
    """A generation holding the pre-columnar `chunks.jsonl`: one warning, every file re-chunked, no vector
    recomputed (vectors live in the cache, keyed by content), and the new generation is searchable."""
    from indexes.store import IndexStore
    from ragbit.chunk_table import LEGACY_TABLE_FILE, TABLE_DIR
    first, _ = run(repo)
    gen = IndexStore(RagbitConfig.load(repo).index_dir).current()
    shutil.rmtree(gen / TABLE_DIR)
    (gen / LEGACY_TABLE_FILE).write_text('{"files": []}\n')
    manifest = json.loads((gen / "manifest.json").read_text())
    del manifest["checksums"]                      # an older ragbit wrote no checksums
    manifest["format_version"] = 1
    (gen / "manifest.json").write_text(json.dumps(manifest))
    warnings = []
    cfg = RagbitConfig.load(repo)
    emb = FakeEmbedder()
    report = index_repository(cfg, progress=False, embedder=emb, warn=warnings.append)
    assert len(warnings) == 1 and "older ragbit" in warnings[0]
    assert report.files_added == 6 and emb.embedded == [] and report.chunks == first.chunks
    assert Searcher(cfg, embedder=emb).search("invoice", k=3)


def test_an_index_of_format_1_is_read_and_converted_without_re_chunking(repo, tmp_path):
    """An index written by the previous format (one table file, one symbols file) is searched as it is, and the
    next run converts it: no file re-chunked, nothing embedded, the same index a rebuild gives."""
    from indexes.store import IndexStore
    from ragbit.symbols.table import SymbolTable
    run(repo)
    cfg = RagbitConfig.load(repo)
    store = IndexStore(cfg.index_dir)
    before_hits = [(h.path, h.start_line) for h in Searcher(cfg, embedder=FakeEmbedder()).search("invoice", k=5)]
    before_symbols = SymbolTable.load(store.current()).files
    as_format_1(store.current())
    assert store.manifest()["format_version"] == 1
    assert [(h.path, h.start_line) for h in Searcher(cfg, embedder=FakeEmbedder()).search("invoice", k=5)] == before_hits
    (repo / "extra.py").write_text("def invoice_total(items):\n    return sum(items)\n")
    emb = FakeEmbedder()
    report = index_repository(cfg, progress=False, embedder=emb)
    assert report.files_added == 1 and report.files_changed == 0 and not report.rechunked_all
    assert store.manifest()["format_version"] == 2 and (store.current() / "table").is_dir()
    assert SymbolTable.load(store.current()).files == {**before_symbols,
                                                       **{"extra.py": SymbolTable.load(store.current()).files["extra.py"]}}
    fresh = RagbitConfig.load(repo, {"index": {"dir": str(tmp_path / "fresh")}})
    index_repository(fresh, progress=False, embedder=FakeEmbedder())
    assert list(ChunkTable.load(store.current()).content_hash) == \
        list(ChunkTable.load(IndexStore(fresh.index_dir).current()).content_hash)
    assert [(h.path, h.start_line, round(h.score, 4)) for h in Searcher(cfg, embedder=emb).search("invoice", k=5)] == \
        [(h.path, h.start_line, round(h.score, 4)) for h in Searcher(fresh, embedder=emb).search("invoice", k=5)]


def test_lexical_only_files_get_bm25_but_no_vectors(repo):
    """[embed] lexical_only: matching files are searchable by words only; the dense index counts as complete;
    dropping the pattern embeds them on the next run."""
    from ragbit.search.status import index_status
    (repo / "ragbit.toml").write_text('[embed]\nlexical_only = ["src/net/"]\n')
    report, emb = run(repo)
    assert report.chunks_lexical_only > 0 and report.dense_complete
    assert report.chunks_embedded + report.chunks_reused + report.chunks_lexical_only == report.chunks
    assert emb.embedded and not any("backoff" in t for t in emb.embedded)
    searcher = Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder())
    dense = searcher.search("retry with exponential backoff", k=10, mode="dense")
    assert dense.dense_complete and all(h.path != "src/net/retry.py" for h in dense)
    assert any(h.path == "src/net/retry.py" for h in searcher.search("retry backoff", k=10, mode="lexical"))
    status = index_status(RagbitConfig.load(repo))
    assert status.dense_complete and status.lexical_only_chunks == report.chunks_lexical_only

    (repo / "ragbit.toml").write_text("")
    report2, emb2 = run(repo)
    assert report2.chunks_lexical_only == 0 and report2.chunks_embedded == report.chunks_lexical_only
    assert any("backoff" in t for t in emb2.embedded)
    dense = Searcher(RagbitConfig.load(repo), embedder=FakeEmbedder()).search("retry backoff", k=10, mode="dense")
    assert any(h.path == "src/net/retry.py" for h in dense)


@pytest.mark.parametrize("value, message", [(["[z-a]"], "invalid pattern"), ([3], "list of strings")])
def test_lexical_only_patterns_are_checked_when_the_config_loads(value, message):
    from ragbit.config import ConfigError
    with pytest.raises(ConfigError, match=rf"\[embed\] lexical_only .*{message}"):
        RagbitConfig.load(overrides={"embed": {"lexical_only": value}})
