"""A repository is only read, never run, even when its top-level packages share ragbit's names.

ragbit starts children in the user's repository: the search server (`ragbit search`), the background indexer (a
first `ragbit query` on a large repository) and the kernel warm-up (a first question on a fresh install). Started
as `python -m ...` there, each imported the repository's own `ragbit`, `indexes` or `generator` package first,
so that package's `__init__.py` ran (and the child failed or ran the wrong code). Here each of the three packages
writes a marker file and exits when imported; every child must do its work and no marker may appear.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ragbit.config import RagbitConfig
from ragbit.index_layout import BACKGROUND_LOG, background_indexer
from ragbit.indexing import background
from ragbit.search import client
from tests.retrieval_fixtures import make_repo
from tests.test_search_server import _wait

PACKAGES = ("ragbit", "indexes", "generator")


def shadowing_repo(root: Path, markers: Path) -> Path:
    """tests/retrieval_fixtures' repository plus top-level packages named like ragbit's that must never run."""
    make_repo(root)
    markers.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(
            "import pathlib, sys\n"
            f"pathlib.Path({str(markers / name)!r}).write_text('ran')\n"
            f"sys.exit('the repository package {name} was imported')\n", encoding="utf-8")
    return root


def ran(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


@pytest.mark.search_server
def test_the_search_server_imports_ragbit_not_the_repository(tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    repo = shadowing_repo(tmp_path / "shop", markers)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.chdir(repo)                                   # the user's shell is in the repository
    from ragbit.indexing.indexer import index_repository
    cfg = RagbitConfig.load(repo)
    index_repository(cfg, progress=False)
    server = client.spawn_server(cfg)
    assert server is not None
    try:
        _wait(lambda: client.socket_path(cfg.index_dir).exists() or server.poll() is not None, 120, "the socket")
        log = (cfg.index_dir / client.LOG_NAME).read_text()
        assert server.poll() is None, log
        assert ran(markers) == [], log
    finally:
        server.kill()
        server.wait(timeout=30)


def test_the_background_indexer_imports_ragbit_not_the_repository(tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    repo = shadowing_repo(tmp_path / "shop", markers)
    monkeypatch.chdir(repo)
    cfg = RagbitConfig.load(repo)
    from ragbit.indexing.indexer import index_repository
    index_repository(cfg, progress=False, embed_at_most=1)      # the lexical half; the rest is left to the child
    pid = background.start(cfg)
    _wait(lambda: background_indexer(cfg.index_dir) is None, 240, f"background indexer {pid}")
    log = (cfg.index_dir / BACKGROUND_LOG).read_text()
    assert "done:" in log and "error" not in log.lower(), log
    assert ran(markers) == [], log


def test_the_kernel_warm_up_imports_the_generator_not_the_repository(tmp_path, monkeypatch):
    """A setting the warm-up refuses makes its processes end at once, with the generator's own error: proof that
    they imported ragbit's generator (the repository's would have written its marker and exited)."""
    from generator.warmup import EngineSettings, start, wait
    markers = tmp_path / "markers"
    repo = shadowing_repo(tmp_path / "shop", markers)
    monkeypatch.chdir(repo)
    failures = wait(start(EngineSettings(decode_kernel="nonsense")))
    assert len(failures) == 2 and all("unknown decode kernel 'nonsense'" in f for f in failures), failures
    assert ran(markers) == []
