"""Chunking on a process pool gives exactly the chunks, in exactly the order, of chunking file by file."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ragbit.indexing import chunk_pool
from ragbit.indexing.chunking import chunk_file_with_symbols
from ragbit.config import ChunkConfig

ROOT = Path(__file__).resolve().parents[1]


def _files() -> list[tuple[str, str]]:
    paths = sorted((ROOT / "ragbit").rglob("*.py")) + sorted((ROOT / "tests" / "fixtures" / "chunking").iterdir())
    return [(p.relative_to(ROOT).as_posix(), p.read_text(encoding="utf-8")) for p in paths]


def _words(text: str) -> int:
    return len(text.split())


@pytest.mark.skipif(sys.platform != "linux", reason="the pool is used on Linux only")
@pytest.mark.parametrize("count_tokens", [None, _words], ids=["estimate", "function"])
def test_pool_equals_serial_chunking(monkeypatch, count_tokens):
    monkeypatch.setattr(chunk_pool, "MIN_FILES", 2)
    monkeypatch.setattr(chunk_pool, "BATCH", 3)
    started = []
    get_context = chunk_pool.multiprocessing.get_context
    monkeypatch.setattr(chunk_pool.multiprocessing, "get_context", lambda m: started.append(m) or get_context(m))
    files = _files()
    cfg = ChunkConfig(max_tokens=120)
    pooled = chunk_pool.chunk_files(files, cfg, count_tokens, workers=2)
    assert started == ["fork"]
    assert pooled == [chunk_file_with_symbols(path, text, cfg, count_tokens=count_tokens) for path, text in files]
    assert sum(len(chunks) for chunks, _ in pooled) > len(files)


def test_small_inputs_stay_in_this_process(monkeypatch):
    def no_pool(*a, **k):
        raise AssertionError("a pool was started for a handful of files")
    monkeypatch.setattr(chunk_pool.multiprocessing, "get_context", no_pool)
    files = _files()[:5]
    cfg = ChunkConfig()
    assert chunk_pool.chunk_files(files, cfg, workers=2) == [chunk_file_with_symbols(p, t, cfg) for p, t in files]
    assert chunk_pool.chunk_files(_files(), cfg, workers=1) == [chunk_file_with_symbols(p, t, cfg)
                                                                for p, t in _files()]


def test_negative_worker_count_is_a_config_error(tmp_path):
    from ragbit.config import ConfigError, RagbitConfig

    (tmp_path / "ragbit.toml").write_text("[index]\nworkers = -2\n")
    with pytest.raises(ConfigError, match="index workers"):
        RagbitConfig.load(tmp_path)


def test_a_worker_does_not_keep_the_parents_sigterm_handler():
    """`ragbit serve` / `watch` run under uvicorn, whose SIGTERM handler only sets a flag. A forked worker inherited
    it, and `Pool.terminate` ends workers that have not yet taken their stop signal with SIGTERM: such a worker
    went on waiting on the task queue's lock, which terminate holds, and the pool's exit hung (seen once in the
    test suite, after a test had left a handler installed). Each worker's initializer restores the default."""
    import signal
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        chunk_pool._init(ChunkConfig(), None)                 # what each forked worker runs first
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)
