"""A large first index answers at once and embeds in the background (`[index] background_after`).

What a user relies on: `ragbit query` on a repository with more chunks to embed than `background_after` answers
from the committed chunk table and BM25 without waiting for the model, says so in one line, and a detached
process finishes the dense index, which later questions then use. Small edits still embed inline.
"""
from __future__ import annotations

import json
import os
import time

from typer.testing import CliRunner

from ragbit.cli import app
from ragbit.config import RagbitConfig
from ragbit.index_layout import BACKGROUND_LOG, background_indexer
from ragbit.indexing.indexer import index_repository
from ragbit.search.searcher import Searcher
from tests.retrieval_fixtures import FakeEmbedder, make_repo

runner = CliRunner()


def _manifest(cfg: RagbitConfig) -> dict:
    from indexes.store import IndexStore
    store = IndexStore(cfg.index_dir)
    return json.loads((store.current() / "manifest.json").read_text())


def test_more_chunks_than_embed_at_most_are_left_for_later_and_lexical_search_works(tmp_path):
    root = make_repo(tmp_path / "shop")
    cfg = RagbitConfig.load(root)
    emb = FakeEmbedder()
    report = index_repository(cfg, progress=False, embedder=emb, embed_at_most=2)
    deferred = report.embedding_deferred
    assert 2 < deferred <= report.chunks and report.chunks_embedded == 0 and emb.embedded == []
    assert not report.dense_complete and not _manifest(cfg)["dense_complete"]
    hits = Searcher(cfg, embedder=FakeEmbedder()).search("retry_with_backoff", k=3, mode="lexical")
    assert hits[0].path == "src/net/retry.py"
    # the next run with room for them embeds exactly the deferred chunks, and a small edit stays inline
    report = index_repository(cfg, progress=False, embedder=emb, embed_at_most=10_000)
    assert report.dense_complete and report.embedding_deferred == 0 and report.chunks_embedded == deferred
    (root / "src/net/dns.py").write_text("def resolve_hostname(name):\n    return lookup(name)\n")
    report = index_repository(cfg, progress=False, embedder=emb, embed_at_most=2)
    assert report.dense_complete and report.embedding_deferred == 0 and report.chunks_embedded == 1


def test_the_whole_configuration_survives_the_trip_to_another_process(tmp_path):
    root = make_repo(tmp_path / "shop")
    (root / "ragbit.toml").write_text('[index]\nbackground_after = 7\n[embed]\nlexical_only = ["docs/"]\n'
                                      '[search]\nk = 3\n')
    cfg = RagbitConfig.load(root)
    again = RagbitConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.index.background_after == 7 and again.embed.lexical_only == ["docs/"]


def test_a_first_query_answers_at_once_and_the_dense_index_is_finished_in_the_background(tmp_path):
    """Real processes and the packaged all-MiniLM-L6-v2: the child must load the model the parent would have."""
    root = make_repo(tmp_path / "shop")
    (root / "ragbit.toml").write_text("[index]\nbackground_after = 1\n")
    question = "How does retry_with_backoff sleep between failures?"
    r = runner.invoke(app, ["query", question, "--repo", str(root), "--model", str(tmp_path / "none.gguf")])
    assert r.exit_code == 0, r.output
    note = [line for line in r.stderr.splitlines() if line.startswith("note: ")]
    assert len(note) == 1 and "embedded in the background" in note[0], r.stderr
    assert "src/net/retry.py" in r.stdout                       # sources came from the committed lexical part
    cfg = RagbitConfig.load(root)
    assert not _manifest(cfg)["dense_complete"]
    deadline = time.monotonic() + 240
    while background_indexer(cfg.index_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    log = (cfg.index_dir / BACKGROUND_LOG).read_text()
    assert background_indexer(cfg.index_dir) is None, log
    assert "done:" in log and "error" not in log, log
    if hasattr(os, "SCHED_IDLE"):                                # Linux: it ran only on idle cores
        assert "idle cores only" in log, log
    assert _manifest(cfg)["dense_complete"]
    hits = Searcher(cfg).search("sleep longer after each failed attempt", k=3, mode="dense")
    assert hits.dense_complete and hits[0].path == "src/net/retry.py"
    from tests.test_json_schema import validate
    status = json.loads(runner.invoke(app, ["status", "--repo", str(root), "--json"]).stdout)
    validate(status)
    assert status["embedding_pid"] is None and status["dense_complete"]
    # nothing left to embed: the next question says nothing about the background
    r = runner.invoke(app, ["query", question, "--repo", str(root), "--model", str(tmp_path / "none.gguf")])
    assert r.exit_code == 0 and "note: " not in r.stderr, r.output


def test_without_a_listener_a_question_waits_for_the_whole_index(tmp_path):
    """The Python API's `ask()` keeps its contract: without `on_note` nothing runs behind the caller's back."""
    from ragbit.pipeline.standard import refresh_index
    root = make_repo(tmp_path / "shop")
    (root / "ragbit.toml").write_text("[index]\nbackground_after = 1\n")
    cfg = RagbitConfig.load(root)
    refresh_index(cfg, embedder=FakeEmbedder(), progress=False)
    assert _manifest(cfg)["dense_complete"] and background_indexer(cfg.index_dir) is None
    assert not (cfg.index_dir / BACKGROUND_LOG).exists()


def test_the_background_indexer_waits_while_a_live_process_answers_and_ignores_a_dead_one(tmp_path):
    import subprocess
    import sys
    import threading

    import numpy as np

    from ragbit.index_layout import ANSWERING_PREFIX
    from ragbit.indexing import background
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{ANSWERING_PREFIX}{dead.pid}").touch()       # a question that was killed mid-answer
    assert background.wait_while_answering(tmp_path) == 0.0
    assert not (tmp_path / f"{ANSWERING_PREFIX}{dead.pid}").exists()
    emb = background._Yielding(FakeEmbedder(), tmp_path)
    texts = [f"def f{i}(x):\n    return x + {i}" for i in range(2 * background.PIECE + 5)]
    done = threading.Event()
    with background.answering(tmp_path):
        worker = threading.Thread(target=lambda: (emb.embed(texts), done.set()))
        worker.start()
        time.sleep(0.5)
        assert not done.is_set() and emb.inner.embedded == []      # nothing embedded while answering
    worker.join(10)
    assert done.is_set() and emb.waited >= 0.4
    assert not list(tmp_path.glob(ANSWERING_PREFIX + "*"))
    assert np.array_equal(emb.embed(texts), FakeEmbedder().embed(texts))    # pieces change no vector


def test_ragbit_index_says_a_background_indexer_is_at_work_rather_than_a_bare_lock(tmp_path):
    import subprocess
    import sys

    from ragbit.index_layout import BACKGROUND_PID
    root = make_repo(tmp_path / "shop")
    cfg = RagbitConfig.load(root)
    cfg.index_dir.mkdir(parents=True)
    # a stand-in with the background indexer's command line (the liveness check reads it)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ragbit.indexing.background"])
    try:
        (cfg.index_dir / BACKGROUND_PID).write_text(str(stand_in.pid))
        r = runner.invoke(app, ["index", str(root)])
        assert r.exit_code == 1 and f"a background indexer (pid {stand_in.pid}" in r.stderr, r.output
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        stand_in.kill()
        stand_in.wait()
    r = runner.invoke(app, ["index", str(root), "--quiet"])     # once it is gone, indexing goes ahead
    assert r.exit_code == 0, r.output
