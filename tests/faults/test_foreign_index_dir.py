"""A repository cannot make ragbit write into someone else's directory.

The index directory can come from the repository itself: a `.ragbit` symbolic link, or `[index] dir` in its
ragbit.toml. Pointed at a directory of other files, `ragbit index` and `ragbit query` used to make it private
(0700), replace its `gen-000001` and write `CURRENT` and `lock` beside its files. Now they stop with one line and
change nothing there; pointed at an empty directory (an index on another disk), they index as before.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from tests.retrieval_fixtures import FakeEmbedder, make_repo
from tests.test_indexes_store import _snapshot

runner = CliRunner()


@pytest.fixture
def foreign(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    d = tmp_path / "someone-elses"
    (d / "gen-000001").mkdir(parents=True)
    (d / "gen-000001" / "keep.txt").write_text("mine")
    (d / "notes.txt").write_text("precious")
    d.chmod(0o755)
    return d


def one_line_error(r) -> str:
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("how", ["symlink", "ragbit.toml"])
def test_index_and_query_refuse_a_directory_of_other_files(tmp_path, foreign, how):
    repo = make_repo(tmp_path / "shop")
    if how == "symlink":
        (repo / ".ragbit").symlink_to(foreign)
    else:
        (repo / "ragbit.toml").write_text(f'[index]\ndir = "{foreign}"\n', encoding="utf-8")
    before = _snapshot(foreign)
    for args in (["index", str(repo)], ["query", "how does retry work?", "--repo", str(repo), "--model",
                                        str(tmp_path / "none.gguf")]):
        line = one_line_error(runner.invoke(app, args))
        assert "is not a ragbit index" in line and "notes.txt" in line, line
    assert _snapshot(foreign) == before


def test_a_link_to_an_empty_directory_holds_the_index(tmp_path, foreign):
    repo = make_repo(tmp_path / "shop")
    disk = tmp_path / "other-disk" / "shop-index"
    disk.mkdir(parents=True)
    (repo / ".ragbit").symlink_to(disk)
    for _ in range(2):                                        # the second run finds its own index there
        r = runner.invoke(app, ["index", str(repo)])
        assert r.exit_code == 0, r.output
    assert (disk / "CURRENT").is_file()
    r = runner.invoke(app, ["search", "retry with backoff", "--repo", str(repo), "--no-server"])
    assert r.exit_code == 0 and "src/net/retry.py" in r.stdout, r.output
