"""Terminal escape sequences in file contents and names are shown escaped, never sent raw (issue #20)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

import ragbit.indexing.embeddings
from ragbit.cli import app
from ragbit.terminal_text import for_terminal
from tests.retrieval_fixtures import FakeEmbedder

HOSTILE = ("def paint_banner():\n    \"\"\"Paint the banner \x1b[2J\x1b[H clear \x1b]0;owned title\x07 and"
           " \x1b[31mred\x1b[0m \x9b6n\u202e reversed\"\"\"\n    return 'banner'\n")
NAME = "banner_\x1b[5mblink[bold]x[i].py"


def test_for_terminal():
    assert for_terminal("a\x1b[2Jb\n\tc") == "a\\x1b[2Jb\n\tc"
    assert for_terminal("a\nb", keep_newlines=False) == "a\\x0ab"
    assert for_terminal("x\u202ey") == "x\\u202ey"


def test_search_output_escapes_file_contents_and_names(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "paint.py").write_text(HOSTILE)
    (repo / NAME).write_text(HOSTILE)
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(repo), "-q"]).exit_code == 0
    r = runner.invoke(app, ["search", "paint banner", "--repo", str(repo), "--max-per-file", "0"])
    assert r.exit_code == 0, r.output
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in r.stdout
    assert "\\x1b[2J" in r.stdout and "blink[bold]x[i].py" in r.stdout      # shown, not obeyed
    r = runner.invoke(app, ["search", "paint banner", "--repo", str(repo), "--json"])
    assert {h["path"] for h in json.loads(r.stdout)["hits"]} == {"paint.py", NAME}       # JSON keeps the exact name
