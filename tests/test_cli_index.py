"""`ragbit index / search / status` as a user runs them: output, and one-line errors with exit code 1."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from tests.retrieval_fixtures import FakeEmbedder, make_repo

runner = CliRunner()


@pytest.fixture(autouse=True)
def fake_model(monkeypatch):
    """The CLI builds its own Embedder: swap in the fake one (the real model is tested in test_search.py)."""
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "shop")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_index_search_status(repo):
    r = invoke("index", repo, "--quiet")
    assert r.exit_code == 0, r.output
    assert "6 files (+6 added" in r.stdout and "embedded" in r.stdout

    r = invoke("search", "exponential backoff after connection errors", "--repo", repo, "--json", "-k", "3")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["hits"]
    assert hits[0]["path"] == "src/net/retry.py"
    assert set(hits[0]) == {"rank", "path", "start_line", "end_line", "scope", "language", "score", "text"}
    assert len(hits) <= 3

    r = invoke("search", "exponential backoff", "--repo", repo, "--mode", "lexical")
    assert r.exit_code == 0 and "src/net/retry.py:" in r.stdout and "retry_with_backoff" in r.stdout

    r = invoke("status", repo)
    assert r.exit_code == 0 and "up to date" in r.stdout and "fake-bag-of-words" in r.stdout
    (repo / "src/net/retry.py").write_text("def retry():\n    pass\n")
    (repo / "NEW.md").write_text("# new\n")
    (repo / "README.md").unlink()
    r = invoke("status", repo)
    assert "1 added, 1 changed, 1 removed" in r.stdout

    r = invoke("index", repo)
    assert r.exit_code == 0, r.output
    assert "(+1 added, ~1 changed, -1 removed, 4 unchanged)" in r.stdout


def test_missing_path(tmp_path):
    assert_one_line_error(invoke("index", tmp_path / "nope"), "no such directory")
    assert_one_line_error(invoke("search", "q", "--repo", tmp_path / "nope"), "no such directory")
    assert_one_line_error(invoke("status", tmp_path / "nope"), "no such directory")


def test_not_a_directory(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    assert_one_line_error(invoke("index", tmp_path / "f.txt"), "not a directory")


def test_empty_repo(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("index", tmp_path / "empty"), "no indexable files in")


def test_no_index_yet(repo):
    assert_one_line_error(invoke("search", "q", "--repo", repo), "no index at", "ragbit index")
    assert_one_line_error(invoke("status", repo), "no index at")


def test_bad_mode(repo):
    assert_one_line_error(invoke("search", "q", "--repo", repo, "--mode", "fuzzy"), "--mode", "fuzzy")
    assert_one_line_error(invoke("index", repo, "--dense", "kdtree"), "--dense", "kdtree")


def test_search_flags_default_to_ragbit_toml(repo):
    """-k, --mode and --max-per-file left out take ragbit.toml's [search] values; given, they win over it."""
    # one file with many matching definitions, so that a cap has something to cut
    (repo / "src" / "billing.py").write_text("".join(
        f"def invoice_step_{i}(invoice):\n    \"\"\"Invoice step {i}: total, tax.\"\"\"\n"
        + "".join(f"    invoice.total_{j} = invoice.tax * {j}\n" for j in range(30)) + "\n\n" for i in range(6)))
    assert invoke("index", repo, "--quiet").exit_code == 0

    def files(*flags):
        r = invoke("search", "invoice total tax", "--repo", repo, "--json", *flags)
        assert r.exit_code == 0, r.output
        return [h["path"] for h in json.loads(r.stdout)["hits"]]

    uncapped = files("--max-per-file", "0", "-k", "20")
    assert max(uncapped.count(p) for p in uncapped) > 2        # the repo has files with 3+ matching chunks
    default = files("-k", "20")
    assert max(default.count(p) for p in default) <= 6         # a short question's default cap is 6 hits per file
    (repo / "ragbit.toml").write_text("[search]\nk = 3\nshort_max_hits_per_file = 1\n")
    from_toml = files()
    assert len(from_toml) == 3 and len(set(from_toml)) == 3
    assert len(files("-k", "5")) == 5
    (repo / "ragbit.toml").write_text("[search]\nmax_hits_per_file = -1\n")
    assert_one_line_error(invoke("search", "invoice", "--repo", repo), "max_hits_per_file")


def test_corrupt_index(repo):
    assert invoke("index", repo, "--quiet").exit_code == 0
    (repo / ".ragbit" / "CURRENT").write_text("garbage\n")
    assert_one_line_error(invoke("search", "q", "--repo", repo), "corrupt")
    repaired = invoke("index", repo)                       # `ragbit index` repairs it (issue #20)
    assert repaired.exit_code == 0 and "rebuilding the index" in repaired.stderr, repaired.output
    assert invoke("search", "invoice", "--repo", repo).exit_code == 0


def test_truncated_chunk_table(repo):
    assert invoke("index", repo, "--quiet").exit_code == 0
    gen = next(p for p in (repo / ".ragbit").iterdir() if p.name.startswith("gen-"))
    [table] = (gen / "table").glob("s-*/text.bin")
    table.write_bytes(table.read_bytes()[: len(table.read_bytes()) // 2])
    assert_one_line_error(invoke("search", "invoice", "--repo", repo), "text.bin")


def test_locked_index(repo):
    from indexes.store import IndexStore
    with IndexStore(repo / ".ragbit").lock():
        assert_one_line_error(invoke("index", repo), "lock")


def test_bad_config(repo):
    (repo / "ragbit.toml").write_text("[search]\nmode = 'psychic'\n")
    assert_one_line_error(invoke("index", repo), "psychic")


def test_model_mismatch(repo, monkeypatch):
    assert invoke("index", repo, "--quiet").exit_code == 0
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder(model_id="other"))
    assert_one_line_error(invoke("index", repo), "--rebuild")


def test_unwritable_index_dir(repo, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    assert_one_line_error(invoke("index", repo, "--index-dir", blocker / "idx"))
