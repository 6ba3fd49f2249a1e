"""What `ragbit search` prints, as a pure function of hits and a described terminal (ragbit/search/render.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ragbit.search.render import INCOMPLETE_NOTE, Terminal, render_search
from ragbit.search.searcher import Hit, Hits

ROOT = Path(__file__).resolve().parents[1]


def _hits(dense_complete: bool = True) -> Hits:
    hits = Hits([Hit("src/a.py", 3, 4, "def total", "python", 0.5, "def total(xs):\n    return sum(xs)\n", 1)])
    hits.dense_complete = dense_complete
    return hits


def test_json_is_the_hits_and_the_incomplete_note_goes_to_stderr():
    out, err = render_search(_hits(dense_complete=False), True, Terminal())
    assert json.loads(out)["hits"] == [{"rank": h.rank, **h.to_json()} for h in _hits()] and out.endswith("\n")
    assert err == INCOMPLETE_NOTE
    assert render_search(_hits(), True, Terminal())[1] == ""


def test_text_for_a_pipe_is_whole_plain_and_ignores_the_width():
    long_line = "    return sum(xs)  # " + "x" * 120
    hits = Hits([Hit("src/a.py", 3, 4, "def total", "python", 0.5, "def total(xs):\n" + long_line + "\n", 1)])
    narrow, _ = render_search(hits, False, Terminal(environ={"COLUMNS": "40"}))
    assert narrow.startswith("1. src/a.py:3-4  def total  score 0.5000\n") and "\x1b[" not in narrow
    assert f"4  {long_line}\n" in narrow                       # whole, not cut at 40 (or 80) columns
    assert all(line == line.rstrip() for line in narrow.splitlines())
    assert render_search(Hits(), False, Terminal())[0] == "no results\n"


def test_a_terminal_wraps_long_lines_and_pads_nothing():
    import re
    long_line = "    return sum(xs)  # " + " ".join(["word"] * 30)
    hits = Hits([Hit("src/a.py", 3, 4, "def total", "python", 0.5, "def total(xs):\n" + long_line + "\n", 1)])
    out, _ = render_search(hits, False, Terminal(True, "utf-8", {"COLUMNS": "40", "TERM": "xterm-256color"}))
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    lines = plain.splitlines()
    assert "\x1b[" in out and max(len(line) for line in lines) <= 40
    assert all(line == line.rstrip() for line in lines)
    assert " ".join(plain.split()).count("word") == 30           # wrapped onto more lines, nothing cut


def test_a_terminal_description_round_trips_through_json_without_foreign_variables():
    t = Terminal(True, "utf-8", {"COLUMNS": "99", "TERM": "xterm-256color", "HOME": "/root"})
    back = Terminal.from_json(json.loads(json.dumps(t.to_json())))
    assert (back.is_tty, back.encoding, back.environ) == (True, "utf-8", {"COLUMNS": "99", "TERM": "xterm-256color"})


def test_one_process_renders_escape_codes_for_one_colour_system_only():
    # rich caches a style's escape codes for the first colour system: a second one must be refused, not garbled.
    code = ("from ragbit.search.render import ColorSystemConflict, Terminal, render_search\n"
            "from tests.test_search_render import _hits\n"
            "t256 = Terminal(True, 'utf-8', {'TERM': 'xterm-256color'})\n"
            "true = Terminal(True, 'utf-8', {'TERM': 'xterm-256color', 'COLORTERM': 'truecolor'})\n"
            "first = render_search(_hits(), False, t256)[0]\n"
            "assert '\\x1b[38;5;' in first and render_search(_hits(), False, t256)[0] == first\n"
            "render_search(_hits(), False, Terminal())\n"             # no colours: always fine
            "try:\n    render_search(_hits(), False, true)\nexcept ColorSystemConflict:\n    print('refused')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "refused\n", r.stderr
