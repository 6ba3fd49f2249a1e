"""Crash and interruption (issue #20): `ragbit index` SIGKILLed at random moments, SIGINT / SIGTERM, concurrent
writers and readers, on a real small repository (a copy of ragbit's own `ragbit/` and `indexes/` sources).

After every kill: the index loads, search answers, and a following `ragbit index` produces what a clean
rebuild produces (same chunks, same vectors, same search results in every mode). Runs go through the real
CLI in a process of its own (tests/faults/driver.py) with the fake embedder, slowed down so that kills land
in every phase: start-up, walk and chunk, the first commit, embedding, the second commit.

Short form: 12 kills (default suite). Long form (`-m faults_long`): 200 kills and 40 concurrent rounds.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ragbit.config import RagbitConfig
from tests.retrieval_fixtures import FakeEmbedder

WORKTREE = Path(__file__).resolve().parents[2]
EMBED_DELAY = 0.25               # seconds per embed call of 256 chunks: ~1 s of embedding per run
QUERIES = ["atomic generation commit rename", "walk repository gitignore", "bm25 lexical tokens",
           "vector cache shard", "search server socket", "chunk table columns"]


def driver(*args: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(WORKTREE), "RAGBIT_FAULTS_EMBED_DELAY": str(EMBED_DELAY),
           **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "tests.faults.driver", *args], cwd=WORKTREE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def config(repo: Path, index_dir: Path) -> RagbitConfig:
    return RagbitConfig.load(repo, overrides={"index": {"dir": str(index_dir)}})


def index_in_process(repo: Path, index_dir: Path, rebuild: bool = False):
    from ragbit.indexing.indexer import index_repository
    return index_repository(config(repo, index_dir), progress=False, rebuild=rebuild, embedder=FakeEmbedder())


def snapshot(repo: Path, index_dir: Path) -> dict:
    """What must equal a clean rebuild: chunk table columns, dense vectors by chunk, search results."""
    from indexes.store import IndexStore
    from ragbit.chunk_table import ChunkTable
    from ragbit.search.searcher import Searcher
    gen, manifest = IndexStore(index_dir).require()
    table = ChunkTable.load(gen)
    assert manifest["dense_complete"]
    searcher = Searcher(config(repo, index_dir), embedder=FakeEmbedder())
    results = {(q, mode): [(h.path, h.start_line, h.end_line, round(h.score, 5)) for h in
                           searcher.search(q, k=8, mode=mode)]
               for q in QUERIES for mode in ("hybrid", "lexical", "dense")}
    ids = np.load(gen / "dense_ids.npy")
    from indexes.dense import DenseIndex
    dense = DenseIndex.load(gen / "dense.faiss")
    return {"files": [(f.path, f.sha256, f.first, f.count) for f in table.files],
            "chunks": list(zip(table.path, table.start_line, table.end_line, table.scope, table.content_hash,
                               table.text)),
            "dense_ids": ids.tolist(), "n_dense": len(dense), "results": results}


def generation_number(index_dir: Path) -> int:
    from indexes.store import IndexStore
    manifest = IndexStore(index_dir).manifest() if (index_dir / "CURRENT").exists() else None
    return manifest["generation"] if manifest else 0


def phase_after_kill(index_dir: Path, generation_before: int) -> str:
    """Where the killed run was, judged from what it left."""
    from indexes.store import IndexStore
    staging = any(p.name.startswith(".staging-") for p in index_dir.iterdir()) if index_dir.is_dir() else False
    now = generation_number(index_dir)
    if now == generation_before:
        return "writing its first generation" if staging else "start-up, walk or chunking"
    if not IndexStore(index_dir).manifest()["dense_complete"]:
        return "writing the full generation" if staging else "embedding"
    return "after its last commit"


def check_readable(repo: Path, index_dir: Path) -> None:
    """The committed generation (if any) loads and answers in every mode."""
    from indexes.store import IndexStore
    from ragbit.search.searcher import Searcher
    if IndexStore(index_dir).current() is None:
        return
    searcher = Searcher(config(repo, index_dir), embedder=FakeEmbedder())
    for mode in ("lexical", "hybrid", "dense"):
        hits = searcher.search(QUERIES[0], k=5, mode=mode)
        assert mode == "dense" or hits, mode


@pytest.fixture(scope="module")
def real_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real") / "repo"
    for part in ("ragbit", "indexes"):
        shutil.copytree(WORKTREE / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def clean(real_repo, tmp_path_factory) -> dict:
    index_dir = tmp_path_factory.mktemp("clean") / "index"
    index_in_process(real_repo, index_dir)
    return snapshot(real_repo, index_dir)


@pytest.fixture(scope="module")
def run_seconds(real_repo, tmp_path_factory) -> float:
    """Wall time of one uninterrupted CLI run from nothing (start-up included)."""
    index_dir = tmp_path_factory.mktemp("timing") / "index"
    t0 = time.monotonic()
    p = driver("index", str(real_repo), "--index-dir", str(index_dir), "-q")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return time.monotonic() - t0


def run_kills(real_repo, clean, run_seconds, tmp_path, n: int, seed: int) -> Counter:
    """Runs until `n` of them were killed (a run may finish before its kill moment; at most 2n runs)."""
    rng = random.Random(seed)
    index_dir = tmp_path / "index"
    phases: Counter = Counter()
    horizon = run_seconds            # kill moments are drawn from [0.05, horizon]; adapts to the machine's speed
    for i in range(2 * n):
        if i - phases["finished before the kill"] >= n:
            break
        scenario = rng.choice(["fresh", "rebuild-no-cache", "rebuild", "incremental", "at-commit"])
        if scenario == "fresh":
            shutil.rmtree(index_dir, ignore_errors=True)
        elif scenario == "rebuild-no-cache":
            shutil.rmtree(index_dir / "vectors", ignore_errors=True)
        args = ["index", str(real_repo), "--index-dir", str(index_dir), "-q"]
        if scenario.startswith("rebuild") or scenario == "at-commit":
            args.append("--rebuild")
        before = generation_number(index_dir)
        p = driver(*args)
        if scenario == "at-commit":   # while the 1st (lexical) or 2nd (full) generation is written, fsynced, renamed
            target, seen = rng.choice([1, 2]), set()
            deadline = time.monotonic() + 60
            while p.poll() is None and time.monotonic() < deadline and len(seen) < target:
                if index_dir.is_dir():
                    seen |= {q.name for q in index_dir.iterdir() if q.name.startswith(".staging-")}
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.05))
        else:
            time.sleep(rng.uniform(0.05, max(0.1, horizon)))
            # most runs should be killed, not finish first: shrink the window when one finished, widen it slowly
            horizon = horizon * 0.8 if p.poll() is not None else min(run_seconds * 2, horizon * 1.03)
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        phases[phase_after_kill(index_dir, before) if p.returncode == -signal.SIGKILL
               else "finished before the kill"] += 1
        check_readable(real_repo, index_dir)
        index_in_process(real_repo, index_dir)                                   # the following run
        got = snapshot(real_repo, index_dir)
        assert got == clean, f"kill {i} (seed {seed}, {scenario}): index differs from a clean rebuild"
    return phases


def killed(phases: Counter) -> int:
    return sum(phases.values()) - phases["finished before the kill"]


def test_sigkill_index_short(real_repo, clean, run_seconds, tmp_path):
    phases = run_kills(real_repo, clean, run_seconds, tmp_path, n=12, seed=20)   # 200 in the long form
    print(f"\n{sum(phases.values())} runs, {killed(phases)} killed, all recovered; landing: {dict(phases)}")
    assert killed(phases) == 12


@pytest.mark.faults_long
@pytest.mark.timeout(7200)
def test_sigkill_index_long(real_repo, clean, run_seconds, tmp_path):
    phases = run_kills(real_repo, clean, run_seconds, tmp_path, n=200, seed=200)
    print(f"\n{sum(phases.values())} runs, {killed(phases)} killed, all recovered; landing: {dict(phases)}")
    assert killed(phases) == 200


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_sigterm_clean_exit(real_repo, clean, tmp_path, sig, code):
    """Interrupted mid-embedding: one `interrupted` line, exit 130/143, nothing half-written beside the index."""
    index_dir = tmp_path / "index"
    # the signal goes in once the first embed call has finished, while the next one (1 s) runs
    calls = tmp_path / "embed_calls"
    p = driver("index", str(real_repo), "--index-dir", str(index_dir), "-q",
               env_extra={"RAGBIT_FAULTS_EMBED_DELAY": "1.0", "RAGBIT_FAULTS_EMBED_CALLS": str(calls)})
    deadline = time.monotonic() + 60
    while not (calls.exists() and calls.read_text()):
        assert time.monotonic() < deadline and p.poll() is None, p.poll()
        time.sleep(0.02)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == code, (p.returncode, err)
    assert "Traceback" not in err
    assert [l for l in err.splitlines() if l.strip()] == ["interrupted: the last committed index is intact"]
    leftovers = [str(q.relative_to(index_dir)) for q in index_dir.rglob("*")
                 if q.name.startswith(".staging-") or q.name.endswith(".tmp")]
    assert leftovers == []
    check_readable(real_repo, index_dir)
    index_in_process(real_repo, index_dir)
    assert snapshot(real_repo, index_dir) == clean


def run_concurrent(real_repo, clean, tmp_path, writers: int, rounds: int) -> tuple[int, int, int]:
    """`writers` concurrent `ragbit index --rebuild` runs, with searches and a `ragbit query` reading the index
    meanwhile. Returns (runs, runs that finished or failed with the one-line lock error, readers' failures)."""
    from ragbit.search.searcher import Searcher
    index_dir = tmp_path / "index"
    index_in_process(real_repo, index_dir)                              # readers always have a generation
    runs = ok = reader_failures = 0
    failures: list[str] = []
    for r in range(rounds):
        shutil.rmtree(index_dir / "vectors", ignore_errors=True)        # give the writers real work
        procs = [driver("index", str(real_repo), "--index-dir", str(index_dir), "-q", "--rebuild")
                 for _ in range(writers)]
        query = driver("query", "how is a generation committed?", "--repo", str(real_repo), "--index-dir",
                       str(index_dir), "--model", str(tmp_path / "no-model.gguf"), "--json")
        while any(p.poll() is None for p in procs):
            try:
                hits = Searcher(config(real_repo, index_dir), embedder=FakeEmbedder()).search(QUERIES[1], k=5)
                if not hits:
                    failures.append("search: no hits")
            except Exception as e:
                failures.append(f"search: {type(e).__name__}: {e}")
            time.sleep(0.05)
        for p in procs:
            out, err = p.communicate(timeout=60)
            runs += 1
            lines = [l for l in err.splitlines() if l.strip()]
            if p.returncode == 0 or (p.returncode == 1 and len(lines) == 1 and "holds the lock" in lines[0]):
                ok += 1
            else:
                failures.append(f"writer exit {p.returncode}: {err.strip()[-300:]}")
        out, err = query.communicate(timeout=120)
        if query.returncode != 0 or '"sources": []' in out:
            failures.append(f"query exit {query.returncode}: {err.strip()[-300:]}")
        index_in_process(real_repo, index_dir)
        assert snapshot(real_repo, index_dir) == clean
    reader_failures = sum(not f.startswith("writer") for f in failures)
    assert not failures, failures[:5]
    return runs, ok, reader_failures


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_writers_and_readers(real_repo, clean, tmp_path, writers):
    runs, ok, reader_failures = run_concurrent(real_repo, clean, tmp_path, writers, rounds=1)
    assert (ok, reader_failures) == (runs, 0)


@pytest.mark.faults_long
@pytest.mark.timeout(7200)
def test_concurrent_writers_and_readers_long(real_repo, clean, tmp_path):
    runs, ok, reader_failures = run_concurrent(real_repo, clean, tmp_path, 4, rounds=40)
    print(f"\n{runs} concurrent runs, {ok} finished or refused with one line, {reader_failures} reader failures")
    assert (ok, reader_failures) == (runs, 0)
