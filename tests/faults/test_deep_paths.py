"""A file at a very long path is chunked like any other (issue #20: past ~400 characters the path took the
whole token budget and the file was cut into one chunk per character) and is found by search."""
from __future__ import annotations

import json

from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.indexing.chunking import chunk_file
from ragbit.config import ChunkConfig
from tests.retrieval_fixtures import FakeEmbedder

SOURCE = "def settle_ledger(entries):\n    \"\"\"Sum the ledger entries.\"\"\"\n    return sum(entries)\n"


def deep_path(n_chars: int) -> str:
    parts, total = [], 0
    while total < n_chars:
        parts.append(f"level_{len(parts):03d}_" + "x" * 40)
        total += len(parts[-1]) + 1
    return "/".join(parts) + "/ledger.py"


def test_long_path_keeps_whole_lines():
    for n in (400, 1000, 4000):
        chunks = chunk_file(deep_path(n), SOURCE, ChunkConfig())
        assert len(chunks) == 1 and chunks[0].text == SOURCE.rstrip("\n"), (n, len(chunks))


def test_long_path_is_indexed_and_found(tmp_path, monkeypatch):
    from ragbit.cli import app
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    rel = deep_path(450)
    target = tmp_path / "repo" / rel
    target.parent.mkdir(parents=True)
    target.write_text(SOURCE)
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(tmp_path / "repo"), "-q"]).exit_code == 0
    r = runner.invoke(app, ["search", "settle ledger entries", "--repo", str(tmp_path / "repo"), "--json"])
    hits = json.loads(r.stdout)["hits"]
    assert hits and hits[0]["path"] == rel and hits[0]["start_line"] == 1 and hits[0]["end_line"] == 3
