"""Read-only repository and read-only index directory (issue #20), through the real CLI (tests/faults/driver.py,
fake embedder).

The tests run as root, which chmod does not stop, so "read-only" is a read-only bind mount (`mount --bind`, then
`mount -o remount,ro,bind`): every write fails with EROFS, as on a read-only volume, a CD or a container's
read-only layer. Skipped where mounting is not permitted. Expected:
- `ragbit index` into a read-only index directory: one line naming the directory and the way out, exit 1;
- `ragbit search`, `status` and `query` on a read-only index still answer (query from the committed index);
- a read-only repository with the index elsewhere (`--index-dir` or `[index] dir`) indexes and searches.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.test_crashes import WORKTREE
from tests.retrieval_fixtures import make_repo


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(WORKTREE), RAGBIT_FAULTS_EMBED_DELAY="0")
    return subprocess.run([sys.executable, "-m", "tests.faults.driver", *args], cwd=WORKTREE, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(lines) == 1, (r.returncode, r.stderr)
    assert lines[0].startswith("error: ")
    return lines[0]


def hits(*args: str) -> list:
    r = ok(cli("search", "exponential backoff retry", "--json", "-k", "5", "--no-server", *args))
    return [(h["path"], h["start_line"], h["score"]) for h in json.loads(r.stdout)["hits"]]


@pytest.fixture
def read_only(tmp_path):
    """read_only(src) -> a read-only view of directory `src` (bind mount); unmounted at teardown."""
    mounts = []

    def mount(src: Path) -> Path:
        dst = tmp_path / f"ro-{len(mounts)}" / src.name
        dst.mkdir(parents=True)
        r = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {r.stderr.strip()[:100]}")
        mounts.append(dst)
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        probe = dst / ".probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        return dst

    yield mount
    for dst in reversed(mounts):
        subprocess.run(["umount", str(dst)], check=False)


@pytest.fixture
def indexed(tmp_path) -> Path:
    root = make_repo(tmp_path / "shop")
    ok(cli("index", str(root), "-q"))
    return root


def test_read_only_index_directory(indexed, read_only):
    """The whole repository, index included, on a read-only mount."""
    before = hits("--repo", str(indexed))
    ro = read_only(indexed)
    for extra in ([], ["--rebuild"]):
        line = one_error_line(cli("index", str(ro), *extra))
        assert line == (f"error: cannot write the index directory {ro / '.ragbit'} (read-only file system); "
                        "put the index elsewhere with --index-dir or [index] dir in ragbit.toml")
    assert hits("--repo", str(ro)) == before                                     # search still answers
    r = ok(cli("search", "exponential backoff retry", "--repo", str(ro), "--json", "-k", "5"))  # may not start a server
    assert [(h["path"], h["start_line"], h["score"]) for h in json.loads(r.stdout)["hits"]] == before
    status = json.loads(ok(cli("status", str(ro), "--json")).stdout)
    assert status["files"] == 6 and status["up_to_date"] and status["damaged"] == []
    query = json.loads(ok(cli("query", "how are retries done?", "--repo", str(ro), "--json", "--model",
                              str(ro / "no-such-model.gguf"))).stdout)         # answers from the committed index
    assert query["sources"] and query["sources"][0]["path"] == "src/net/retry.py"
    assert "model file not found" in query["error"]


def test_read_only_index_directory_with_no_index_yet(tmp_path, read_only):
    root = make_repo(tmp_path / "shop")
    (tmp_path / "empty-index").mkdir()
    ro_index = read_only(tmp_path / "empty-index")
    line = one_error_line(cli("index", str(root), "--index-dir", str(ro_index)))
    assert line.startswith(f"error: cannot write the index directory {ro_index} (read-only file system)")
    line = one_error_line(cli("search", "retry", "--repo", str(root), "--index-dir", str(ro_index)))
    assert line == f"error: no index at {root}: run `ragbit index {root}` first"
    ro_repo = read_only(root)                            # a read-only repository without an index: one line too
    line = one_error_line(cli("index", str(ro_repo)))
    assert line.startswith(f"error: cannot write the index directory {ro_repo / '.ragbit'} (read-only")


@pytest.mark.parametrize("how", ["--index-dir", "ragbit.toml"])
def test_read_only_repository_with_the_index_elsewhere(tmp_path, read_only, how):
    root = make_repo(tmp_path / "shop")
    elsewhere = tmp_path / "writable" / "index"
    if how == "ragbit.toml":
        (root / "ragbit.toml").write_text(f'[index]\ndir = "{elsewhere}"\n')
    ro = read_only(root)
    flag = ["--index-dir", str(elsewhere)] if how == "--index-dir" else []
    n = 6 + (how == "ragbit.toml")                       # the config file is indexed too
    report = json.loads(ok(cli("index", str(ro), "--json", *flag)).stdout)
    assert report["files_added"] == n and report["dense_complete"] and report["index_dir"] == str(elsewhere)
    assert (elsewhere / "CURRENT").is_file() and not (root / ".ragbit").exists()
    found = hits("--repo", str(ro), *flag)
    assert found and found[0][0] == "src/net/retry.py"
    again = json.loads(ok(cli("index", str(ro), "--json", *flag)).stdout)
    assert (again["files_unchanged"], again["chunks_embedded"]) == (n, 0)
    status = json.loads(ok(cli("status", str(ro), "--json", *flag)).stdout)
    assert status["up_to_date"] and status["files"] == n
    shutil.rmtree(elsewhere)
