"""What `ragbit search` prints for a list of hits: a pure function of the hits and the terminal it prints to.

Why a description of the terminal instead of the terminal itself: the same function renders in the CLI's own
process and, for the console script's fast path, inside the warm search server (which has rich loaded; the
console script would pay ~0.1 s to import it). `Terminal.here()` describes this process's stdout with the
standard library only; rich then decides width, colour and wrapping from that description exactly as it
would from the real stdout, so both places print the same bytes.
"""
from __future__ import annotations

import io
import json
import os
import re
import sys

SNIPPET_LINES = 12
# The environment rich reads when it builds a console (size, colour, tty handling).
RICH_ENV = ("COLUMNS", "LINES", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
            "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")
_COLORS_IN_USE: dict[str, str] = {}    # "system": the colour system this process has rendered escape codes for
INCOMPLETE_NOTE = ("note: the dense index is incomplete (embedding still running or interrupted); "
                   "results cover the chunks embedded so far\n")


class Terminal:
    """Where the output goes: whether it is a tty, its encoding, and rich's environment (size included).

    A plain class, not a dataclass: the console script builds one, and importing dataclasses costs it ~5 ms."""

    def __init__(self, is_tty: bool = False, encoding: str = "utf-8", environ: dict[str, str] | None = None):
        self.is_tty, self.encoding, self.environ = is_tty, encoding, dict(environ or {})

    @classmethod
    def here(cls) -> "Terminal":
        """This process's stdout. The size goes in as COLUMNS/LINES (unless set) as rich would measure it: the
        first of fds 0-2 that reports one; a zero size means unknown (rich then uses 80x25, as the server will)."""
        env = {n: os.environ[n] for n in RICH_ENV if n in os.environ}
        for fd in (0, 1, 2):                         # the descriptors rich asks, in its order
            try:
                columns, lines = os.get_terminal_size(fd)
            except (OSError, ValueError):
                continue
            if columns > 0:
                env.setdefault("COLUMNS", str(columns))
            if lines > 0:
                env.setdefault("LINES", str(lines))
            break
        out = sys.stdout
        tty = bool(out is not None and out.isatty())
        return cls(is_tty=tty, encoding=(getattr(out, "encoding", None) or "utf-8"), environ=env)

    def to_json(self) -> dict:
        return {"is_tty": self.is_tty, "encoding": self.encoding, "environ": self.environ}

    @classmethod
    def from_json(cls, data: dict) -> "Terminal":
        env = data.get("environ")
        if not isinstance(data.get("is_tty"), bool) or not isinstance(data.get("encoding"), str) \
                or not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ValueError("terminal needs is_tty, encoding and environ")
        return cls(data["is_tty"], data["encoding"], {k: v for k, v in env.items() if k in RICH_ENV})


def render_search(hits, as_json: bool, terminal: Terminal) -> tuple[str, str]:
    """(stdout, stderr) of `ragbit search` for these hits: a JSON document (ragbit/json_forms.py), or numbered,
    highlighted snippets."""
    from ragbit.search.staleness import stale_note
    err = ("" if hits.dense_complete else INCOMPLETE_NOTE) + stale_note(getattr(hits, "stale", {}))
    if as_json:
        from ragbit.json_forms import search_document
        return json.dumps(search_document(hits), ensure_ascii=False) + "\n", err
    if not terminal.is_tty and not terminal.environ.get("FORCE_COLOR") and not terminal.environ.get("TTY_COMPATIBLE"):
        return _plain_hits(hits), err
    return _without_trailing_spaces(_rich_hits(hits, terminal)), err


def _plain_hits(hits) -> str:
    """Output for a pipe or a file: every line whole (no width, no padding, no escape codes), so `grep`,
    `less` and editors see the code as it is."""
    if not hits:
        return "no results\n"
    from ragbit.terminal_text import for_terminal      # a pipe often ends in a terminal (less -R, cat)
    out: list[str] = []
    for h in hits:
        scope = f"  {for_terminal(h.scope, False)}" if h.scope else ""
        out.append(f"{h.rank}. {for_terminal(h.path, False)}:{h.start_line}-{h.end_line}{scope}  score {h.score:.4f}")
        lines = for_terminal(h.text).splitlines()
        shown = lines[:SNIPPET_LINES]
        width = len(str(h.start_line + len(shown)))
        out.extend(f"{n:>{width}}  {line}".rstrip() for n, line in enumerate(shown, start=h.start_line))
        if len(lines) > len(shown):
            out.append(" " * width + "  ...")
        out.append("")
    return "\n".join(out) + "\n"


_ESCAPE = re.compile(r"(\x1b\[[0-9;]*m)")


def _without_trailing_spaces(text: str) -> str:
    """rich pads the lines of a code block (spaces inside colour codes); the padding is noise when copied."""
    lines = []
    for line in text.split("\n"):
        parts = _ESCAPE.split(line)              # text, escape, text, escape, ..., text
        for i in range(len(parts) - 1, -1, -2):  # the text parts, last first
            parts[i] = parts[i].rstrip(" \t")
            if parts[i]:
                break
        lines.append("".join(parts))
    return "\n".join(lines)


class ColorSystemConflict(Exception):
    """This process already rendered for another colour system: rich caches each style's escape codes for the
    first colour system that renders it, so a second one would get the first one's codes. Render elsewhere."""


class _Sink(io.TextIOWrapper):
    """A text stream that collects what rich writes and answers isatty() as the described terminal would."""

    def __init__(self, terminal: Terminal):
        super().__init__(io.BytesIO(), encoding=terminal.encoding, errors="replace", write_through=True)
        self._tty = terminal.is_tty

    def isatty(self) -> bool:
        return self._tty

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode(self.encoding, errors="replace")


def _rich_hits(hits, terminal: Terminal) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.syntax import Syntax

    from ragbit.terminal_text import for_terminal
    sink = _Sink(terminal)
    console = Console(file=sink, _environ=terminal.environ)
    if console.color_system is not None and \
            _COLORS_IN_USE.setdefault("system", console.color_system) != console.color_system:
        raise ColorSystemConflict(f"rendered for {_COLORS_IN_USE['system']} already, not {console.color_system}")
    if not hits:
        console.print("no results")
    for h in hits:
        # repository text is shown, never obeyed: no terminal escapes, no rich markup from a file name
        path, scope = escape(for_terminal(h.path, keep_newlines=False)), escape(for_terminal(h.scope, False))
        scope = f"  [cyan]{scope}[/cyan]" if scope else ""
        console.print(f"[bold]{h.rank}. {path}:{h.start_line}-{h.end_line}[/bold]{scope}  "
                      f"[dim]score {h.score:.4f}[/dim]", highlight=False)
        lines = for_terminal(h.text).splitlines()
        snippet = "\n".join(lines[:SNIPPET_LINES]) + ("\n..." if len(lines) > SNIPPET_LINES else "")
        console.print(Syntax(snippet, h.language or "text", line_numbers=True, start_line=h.start_line,
                             word_wrap=True))
    return sink.text()
