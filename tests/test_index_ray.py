"""`ragbit index --ray`: the index built by Ray workers is the one built locally, even when a worker dies."""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragbit.cli import app, optional_values
from ragbit.config import RagbitConfig
from tests.ray_fixtures import PidRecordingEmbedder
from tests.retrieval_fixtures import FakeEmbedder, make_repo


def test_ray_flag_without_address_means_local():
    assert optional_values(["index", "--ray"]) == ["index", "--ray", "local"]
    assert optional_values(["index", "--ray", "-q"]) == ["index", "--ray", "local", "-q"]
    assert optional_values(["index", "--ray", "ray://head:10001"]) == ["index", "--ray", "ray://head:10001"]
    assert optional_values(["search", "--ray"]) == ["search", "--ray"]


def test_without_ray_installed_the_flag_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)             # `import ray` raises ImportError
    repo = make_repo(tmp_path / "shop")
    r = CliRunner().invoke(app, ["index", str(repo), "--ray", "local"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().splitlines() == [
        "error: ragbit index --ray needs Ray: pip install 'ragbit[ray]'  (or: pip install 'ray[data]==2.60.0')"]
    assert not (repo / ".ragbit" / "CURRENT").exists()


def test_a_path_after_ray_is_not_taken_for_an_address(tmp_path):
    pytest.importorskip("ray")
    repo = make_repo(tmp_path / "shop")
    r = CliRunner().invoke(app, ["index", "--ray", str(repo)])
    assert r.exit_code == 1 and "not a Ray address" in r.stderr and "before --ray" in r.stderr


# ---------------------------------------------------------------------------------------------- on Ray
def build(repo: Path, index_dir: Path, ray: str = "", factory=None, workers: int = 0):
    from ragbit.indexing.indexer import index_repository
    cfg = RagbitConfig.load(repo, {"index": {"dir": str(index_dir), "ray": ray, "ray_workers": workers}})
    return index_repository(cfg, progress=False, embedder=FakeEmbedder(), embedder_factory=factory)


def index_contents(index_dir: Path):
    from indexes.dense import DenseIndex
    from indexes.store import IndexStore
    from ragbit.chunk_table import ChunkTable
    gen = Path(IndexStore(index_dir).current())
    table = ChunkTable.load(gen)
    ids = np.load(gen / "dense_ids.npy")
    dense = DenseIndex.load(gen / "dense.faiss")
    vectors = dense._index.reconstruct_n(0, len(dense))
    return list(table.content_hash), [(f.path, f.sha256, f.count) for f in table.files], ids, vectors


def many_files(root: Path, n: int) -> Path:
    files = {f"pkg{i % 7}/mod_{i}.py": f"def handler_{i}(request_{i % 13}):\n    '''Handle event {i} "
                                        f"for tenant {i % 5}.'''\n    return request_{i % 13}.reply({i})\n"
             for i in range(n)}
    return make_repo(root, files)


@pytest.mark.slow
def test_ray_index_equals_local_index_even_when_a_worker_is_killed(tmp_path):
    pytest.importorskip("ray")
    repo = many_files(tmp_path / "repo", 600)
    build(repo, tmp_path / "local")
    local = index_contents(tmp_path / "local")

    # three worker processes per stage; the embedding stage is slowed so a worker can be killed mid-run
    pids = tmp_path / "pids"
    pids.mkdir()
    factory = functools.partial(PidRecordingEmbedder, str(pids), 3.0)
    killed = []

    def kill_one_worker():
        deadline = time.time() + 240
        while time.time() < deadline and len(list(pids.glob("*.pid"))) < 4:   # chunk workers + an embed worker
            time.sleep(0.2)
        time.sleep(1.0)
        newest = max(pids.glob("*.pid"), key=lambda p: p.stat().st_mtime)
        pid = int(newest.read_text())
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    report = build(repo, tmp_path / "ray", ray="local", factory=factory, workers=3)
    killer.join(timeout=5)
    assert killed, "no Ray worker was killed: the test did not test recovery"
    assert report.dense_complete and report.chunks_embedded == len(set(local[0]))
    remote = index_contents(tmp_path / "ray")
    assert remote[0] == local[0] and remote[1] == local[1]                 # same chunks, same order
    assert np.array_equal(remote[2], local[2])
    np.testing.assert_allclose(remote[3], local[3], atol=1e-6)             # same vectors (same model)
