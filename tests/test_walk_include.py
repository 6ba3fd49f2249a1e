"""A subset of a monorepo (`--include`, `[walk] include`) and the question before a large first index."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
import ragbit.indexing.size_estimate
from ragbit.cli import app
from ragbit.config import RagbitConfig, WalkConfig
from ragbit.indexing.walker import NOT_INCLUDED, WalkStats, walk_repository
from tests.retrieval_fixtures import FakeEmbedder, make_repo

runner = CliRunner()

FILES = {"src/a/m.py": "def f():\n    return 1\n", "src/b.py": "def g():\n    return 2\n",
         "vendor/x/v.py": "def vendored():\n    pass\n", "docs/a.md": "# Title\n\ntext\n",
         "docs/b.txt": "plain\n", "README.md": "# readme\n"}


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "mono", FILES)


def walked(repo, include):
    stats = WalkStats()
    return [sf.path for sf in walk_repository(repo, WalkConfig(include=include), stats=stats)], stats


@pytest.mark.parametrize("include, expected", [
    (["src/**"], ["src/a/m.py", "src/b.py"]),
    (["/src"], ["src/a/m.py", "src/b.py"]),
    (["docs/*.md", "src/a/"], ["docs/a.md", "src/a/m.py"]),
    (["*.md"], ["README.md", "docs/a.md"]),
    (["src/**", "!src/a/**"], ["src/b.py"]),
    ([], ["README.md", "docs/a.md", "docs/b.txt", "src/a/m.py", "src/b.py", "vendor/x/v.py"]),
])
def test_include_keeps_only_matching_files(repo, include, expected):
    assert walked(repo, include)[0] == expected


def test_anchored_include_prunes_other_directories_unread(repo):
    paths, stats = walked(repo, ["src/**"])
    assert ("vendor/", NOT_INCLUDED) in stats.paths and ("docs/", NOT_INCLUDED) in stats.paths
    assert not any(p.startswith(("vendor/x", "docs/a")) for p, _ in stats.paths)   # pruned, not listed
    # a name pattern may match anywhere: nothing is pruned, each file is judged
    _, stats = walked(repo, ["*.md"])
    assert ("vendor/x/v.py", NOT_INCLUDED) in stats.paths


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())


def test_cli_include_flag_and_toml(repo, fake_model):
    r = runner.invoke(app, ["index", str(repo), "--include", "src/**", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["files"] == 2
    # ragbit.toml's list is used without the flag; a later run drops what it no longer includes
    (repo / "ragbit.toml").write_text('[walk]\ninclude = ["docs/**"]\n')
    r = runner.invoke(app, ["index", str(repo), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["files"] == 2 and doc["files_removed"] == 2, r.output
    (repo / "ragbit.toml").write_text('[walk]\ninclude = "docs/**"\n')
    r = runner.invoke(app, ["index", str(repo)])
    assert r.exit_code == 1 and "[walk] include" in r.stderr and "Traceback" not in r.output


def test_config_include_flows_from_toml(repo):
    (repo / "ragbit.toml").write_text('[walk]\ninclude = ["src/**"]\n')
    assert RagbitConfig.load(repo).walk.include == ["src/**"]
    assert RagbitConfig.load(repo, {"walk": {"include": ["docs/**"]}}).walk.include == ["docs/**"]


def test_large_repository_asks_first_and_stops_without_a_terminal(repo, fake_model, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.size_estimate, "MIN_FILES", 3)
    monkeypatch.setattr(ragbit.indexing.size_estimate, "ASK_ABOVE_SECONDS", 0.0)
    r = runner.invoke(app, ["index", str(repo)])
    assert r.exit_code == 1, r.output
    assert "6 files, ~" in r.stderr and "--include" in r.stderr and "--yes" in r.stderr
    assert not (repo / ".ragbit" / "CURRENT").exists()               # nothing written
    r = runner.invoke(app, ["index", str(repo), "--yes", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["files"] == 6, r.output
    # an incremental run re-chunks only what changed: no estimate, no question
    (repo / "src/b.py").write_text("def g():\n    return 3\n")
    r = runner.invoke(app, ["index", str(repo), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["files_changed"] == 1, r.output


def test_a_large_repository_that_indexes_in_minutes_is_not_asked_about(repo, fake_model, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.size_estimate, "MIN_FILES", 3)        # 6 files of a few lines: seconds
    r = runner.invoke(app, ["index", str(repo), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["files"] == 6, r.output
    assert "is large" not in r.stderr


def test_estimate_counts_files_and_chunks(repo):
    from ragbit.config import ChunkConfig
    from ragbit.indexing.size_estimate import estimate
    size = estimate(repo, WalkConfig(), ChunkConfig(), FakeEmbedder(), min_files=1)
    assert size.files == 6 and size.sample_files == 6 and size.chunks >= 6
    assert "6 files" in size.describe("mono") and size.seconds > 0
    assert estimate(repo, WalkConfig(), ChunkConfig(), FakeEmbedder(), min_files=7) is None
