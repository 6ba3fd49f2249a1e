"""A hostile repository (tests/faults/hostile_repo.py): symlink loops and links out of the tree, a FIFO, a
socket, links to devices, unreadable files, invalid UTF-8 and UTF-16, NUL bytes, a 10 MB one-line file, 200
nested directories, names with newlines, escapes and invalid encodings, a pathological .gitignore.
`ragbit index`, `search` and `status` finish with no traceback, in bounded time, and count every skipped file
with its reason."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ragbit.indexing.embeddings
import ragbit.indexing.walker
from ragbit.cli import app
from tests.faults.hostile_repo import UNREADABLE, build
from tests.retrieval_fixtures import FakeEmbedder

runner = CliRunner()

# what the walk must report; every hostile entry of hostile_repo.build accounts for one count
EXPECTED_SKIPS = {
    "binary": 2,                    # UTF-16 (NUL bytes), NUL in source
    "broken symlink": 1,
    "excluded dir": 1,              # .ragbit
    "ignored": 2,                   # ignored_by_git/, debug.log (the .gitignore's valid patterns still work)
    "minified/generated": 2,        # the 900 kB line, the .gitignore with a 20,000-character pattern
    "not a regular file": 3,        # FIFO, socket, link to the FIFO
    "symlink loop": 1,
    "symlink outside repo": 4,      # /etc, /etc/hostname, /dev/zero, /dev/urandom
    "too large": 1,                 # 10 MB single line
    "undecodable": 2,               # Latin-1, a lone surrogate byte sequence
    "undecodable name": 1,          # file name that is not UTF-8
    "unreadable": 2,                # permission denied (simulated: tests run as root)
}


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    read = ragbit.indexing.walker.read_bytes

    def unreadable(path):
        if any(str(path).endswith(rel) for rel in UNREADABLE):
            raise PermissionError(13, "Permission denied", str(path))
        return read(path)
    monkeypatch.setattr(ragbit.indexing.walker, "read_bytes", unreadable)
    root = tmp_path / "hostile"
    return root, build(root)


def no_traceback(r):
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


@pytest.mark.timeout(180)
def test_hostile_repository(hostile):
    root, expect = hostile
    r = runner.invoke(app, ["index", str(root)])
    no_traceback(r)
    assert r.exit_code == 0, r.output
    skipped_line = next(l for l in r.stdout.splitlines() if l.strip().startswith("skipped:"))
    got = dict((part.split(" ", 1)[1], int(part.split(" ", 1)[0]))
               for part in skipped_line.split(":", 1)[1].strip().split(", "))
    assert got == EXPECTED_SKIPS
    progress = ("indexing ", "lexical search is ready")     # the progress lines of `ragbit index` (issue #21)
    for line in filter(str.strip, r.stderr.splitlines()):   # warnings: one line each, no raw control characters
        assert line.startswith(("warning: ",) + progress) and "\x1b" not in line, line

    from indexes.store import IndexStore
    from ragbit.chunk_table import ChunkTable
    table = ChunkTable.load(IndexStore(root / ".ragbit").current())
    indexed = {f.path for f in table.files}
    must_index = {rel for rel, reason in expect.items() if reason is None and not rel.startswith("bad_")}
    must_index -= {".gitignore"}
    assert must_index <= indexed, must_index - indexed
    assert {"link_to_ok.py", "link_chain.py"} <= indexed

    for q, path in (("at_the_bottom deep", [p for p in indexed if p.endswith("/bottom.py")][0]),
                    ("newline_name", "new\nline.py"), ("escape_name", "esc\x1b[2Jname.py")):
        r = runner.invoke(app, ["search", q, "--repo", str(root), "--json", "--mode", "lexical"])
        no_traceback(r)
        assert json.loads(r.stdout)["hits"][0]["path"] == path
        r = runner.invoke(app, ["search", q, "--repo", str(root)])
        no_traceback(r)
        assert r.exit_code == 0 and "\x1b" not in r.stdout
    r = runner.invoke(app, ["status", str(root)])
    no_traceback(r)
    assert "up to date" in r.stdout, r.output
    r = runner.invoke(app, ["index", str(root), "-q"])      # again: nothing changed, nothing re-read wrongly
    no_traceback(r)
    assert r.exit_code == 0 and "+0 added, ~0 changed, -0 removed" in r.stdout
