"""ragbit does not load an index that came with the repository.

An index is read with FAISS's and numpy's loaders and a chunk table, none of which is meant for hostile input.
ragbit writes `*` into every index's .gitignore, so an index tracked by git was not built by ragbit on this
machine: a cloned repository could ship a crafted `.ragbit/` (or a `.ragbit` link to a committed directory)
that `ragbit search` would load and `ragbit index` would extend. Now every command stops with one line and
leaves the directory as it is; an index git does not track (the usual case) works as before.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit import index_layout
from ragbit.cli import app
from tests.faults.test_foreign_index_dir import one_line_error
from tests.retrieval_fixtures import FakeEmbedder, make_repo
from tests.test_indexes_store import _snapshot

runner = CliRunner()
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A git repository with an index ragbit built (untracked, as ragbit leaves it)."""
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    monkeypatch.setattr(index_layout, "_TRUSTED", set())
    repo = make_repo(tmp_path / "shop")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "code")
    r = runner.invoke(app, ["index", str(repo)])
    assert r.exit_code == 0, r.output
    return repo


def commands(repo: Path, tmp_path: Path) -> list[list[str]]:
    return [["search", "retry with backoff", "--repo", str(repo), "--no-server"],
            ["status", str(repo)],
            ["index", str(repo)],
            ["query", "how does retry work?", "--repo", str(repo), "--model", str(tmp_path / "none.gguf")]]


def test_an_untracked_index_is_read_as_before(repo, tmp_path):
    r = runner.invoke(app, commands(repo, tmp_path)[0])
    assert r.exit_code == 0 and "src/net/retry.py" in r.stdout, r.output


def test_a_committed_index_is_neither_read_nor_written(repo, tmp_path):
    git(repo, "add", "-f", ".ragbit")
    git(repo, "commit", "-qm", "ship an index")
    before = _snapshot(repo / ".ragbit")
    for args in commands(repo, tmp_path):
        line = one_line_error(runner.invoke(app, args))
        assert "is tracked by git" in line and ".ragbit" in line, (args, line)
    assert _snapshot(repo / ".ragbit") == before


def test_a_link_to_a_committed_directory_is_refused(repo, tmp_path):
    """The link and its target are both in the repository: the target's files are what would be read."""
    (repo / "vendor").mkdir()
    (repo / ".ragbit").rename(repo / "vendor" / "idx")
    (repo / ".ragbit").symlink_to(Path("vendor") / "idx")
    git(repo, "add", "-f", "vendor/idx", ".ragbit")
    git(repo, "commit", "-qm", "ship an index behind a link")
    line = one_line_error(runner.invoke(app, commands(repo, tmp_path)[0]))
    assert "is tracked by git" in line, line
    # the link alone untracked, its committed target still refused
    git(repo, "rm", "-q", "--cached", ".ragbit")
    index_layout._TRUSTED.clear()
    line = one_line_error(runner.invoke(app, commands(repo, tmp_path)[0]))
    assert "vendor/idx" in line, line
