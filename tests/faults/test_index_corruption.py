"""Damaged index files (issue #20): binary CURRENT, a truncated dense.faiss, an emptied BM25 vocabulary,
flipped bytes in a postings file. Each generation records (size, crc32) of its files; readers verify what they
load (one `error:` line), `ragbit status` names the damage, and plain `ragbit index` repairs it."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from tests.retrieval_fixtures import FakeEmbedder, make_repo

runner = CliRunner()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    repo = make_repo(tmp_path / "shop")
    assert runner.invoke(app, ["index", str(repo), "-q"]).exit_code == 0
    return repo


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(r) -> str:
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def generation(repo):
    return repo / ".ragbit" / (repo / ".ragbit" / "CURRENT").read_text().strip()


def search_json(repo, q="invoice total"):
    r = invoke("search", q, "--repo", repo, "--json")
    assert r.exit_code == 0, r.output
    return [(h["path"], h["start_line"]) for h in json.loads(r.stdout)["hits"]]


@pytest.mark.parametrize("content", [b"gen-\xff\xfe\x00\n", b"\x00" * 64, b"\xef\xbb\xbf\x1b[2J", b""])
@pytest.mark.parametrize("fix", [["index"], ["index", "--rebuild"]])
def test_binary_current_is_one_line_and_index_recovers(repo, content, fix):
    before = search_json(repo)
    (repo / ".ragbit" / "CURRENT").write_bytes(content)
    for cmd in (["search", "q", "--repo", repo], ["status", repo]):
        assert "corrupt" in one_error_line(invoke(*cmd))
    r = invoke(*fix, repo)
    assert r.exit_code == 0, r.output
    assert search_json(repo) == before


DAMAGE = {
    "truncated dense.faiss": lambda g: (g / "dense.faiss").write_bytes((g / "dense.faiss").read_bytes()[:100]),
    "emptied vocabulary": lambda g: next((g / "lexical").glob("seg-*/terms.json")).write_text("[]"),
    "flipped postings": lambda g: _flip(next((g / "lexical").glob("seg-*/docs.npy"))),
    "flipped chunk table": lambda g: _flip(next((g / "table").glob("s-*/text.bin")), at=-5),
    "flipped symbol records": lambda g: _flip(next((g / "table").glob("s-*/symbols.json")), at=-3),
    "missing file order": lambda g: (g / "table" / "order.npy").unlink(),
    "missing dense_ids": lambda g: (g / "dense_ids.npy").unlink(),
}


def _flip(path, at=-3):
    b = bytearray(path.read_bytes())
    b[at] ^= 0x41
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_generation_is_reported_and_repaired(repo, name):
    before = search_json(repo)
    DAMAGE[name](generation(repo))
    r = invoke("status", repo)
    assert r.exit_code == 0 and "damaged:" in r.stdout and "up to date" not in r.stdout, r.output
    assert "run `ragbit index` to repair" in one_error_line(invoke("search", "invoice", "--repo", repo))
    r = invoke("index", repo)
    assert r.exit_code == 0 and "repairing" in r.stderr, r.output
    r = invoke("status", repo)
    assert "up to date" in r.stdout and "damaged:" not in r.stdout, r.output
    assert search_json(repo) == before


def test_query_runs_while_an_index_run_holds_the_lock(repo, tmp_path):
    """Readers never wait for the writer: `ragbit query` uses the last committed generation."""
    from indexes.store import IndexStore
    from tests.conftest import REFERENCE_DIR
    (repo / "src" / "new_module.py").write_text("def fresh():\n    return 1\n")   # would need a refresh
    with IndexStore(repo / ".ragbit").lock():
        r = invoke("query", "invoice total", "--repo", repo, "--model", tmp_path / "missing.gguf", "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["sources"]
        assert invoke("search", "invoice", "--repo", repo).exit_code == 0
        assert invoke("status", repo).exit_code == 0


def test_reader_follows_current_when_its_generation_was_just_removed(tmp_path):
    """The race the long concurrency run found (1 reader failure in 160 runs): a reader reads CURRENT, a writer
    commits the next generation and removes that one, the reader finds its directory gone. It must follow
    CURRENT, not report a corrupt index."""
    from indexes.store import IndexStore
    store = IndexStore(tmp_path / "index")
    for i in range(2):
        with store.write_generation({"n": i}) as staging:
            (staging / "x").write_text(str(i))
    assert not (tmp_path / "index" / "gen-000001").exists()
    reads = iter(["gen-000001"])                               # what the reader saw before the commit
    real = store._current_name
    store._current_name = lambda: next(reads, None) or real()
    assert store.current().name == "gen-000002"
    reads = iter(["gen-000001"])
    assert store.read(lambda gen, manifest: manifest["n"]) == 1


def test_query_repairs_a_garbage_current(repo, tmp_path):
    (repo / ".ragbit" / "CURRENT").write_bytes(b"\xff\xfe garbage \x00")
    r = invoke("query", "invoice total", "--repo", repo, "--model", tmp_path / "missing.gguf", "--json")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert json.loads(r.stdout)["sources"]
