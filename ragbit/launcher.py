"""The `ragbit` console script: answers `ragbit search` through the index's warm server before importing typer.

Why: the server's own work for a search is ~12 ms, but importing typer, pydantic, rich and the config costs a
shell call ~0.4 s CPU. This module imports only the standard library and `ragbit.search.server`, finds the
index's socket from the command line, and lets the server run the real `search` command (same typer code,
same options, output captured at the client's terminal width). Anything unusual, or any failure, runs the
normal CLI instead (`ragbit.cli.main`), so the output is the same either way. `RAGBIT_FASTPATH=0` turns it off.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

CONFIG_FILE = "ragbit.toml"          # ragbit.config.CONFIG_FILE (not imported: it pulls in the whole config)


def _option(argv: list[str], name: str) -> str | None:
    """The last value of `--name VALUE` / `--name=VALUE` (click takes the last), or None."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a[len(name) + 1:]
    return value


def index_dir_for(argv: list[str], cwd: str) -> Path | None:
    """Where `ragbit search ARGV` would look for its index, or None when only the full CLI can tell.

    A guess is safe: the server rebuilds the config from argv the way the CLI does and refuses another one."""
    if "--" in argv or "--no-server" in argv or "--help" in argv:
        return None
    repo = Path(cwd, os.path.expanduser(_option(argv, "--repo") or "."))
    if (repo / CONFIG_FILE).exists():
        return None                  # it may move the index or turn the server off
    d = Path(os.path.expanduser(_option(argv, "--index-dir") or ".ragbit"))
    return d if d.is_absolute() else repo / d


def fast_search(argv: list[str], prog: str) -> dict | None:
    """The server's {"stdout", "stderr", "exit"} for `ragbit search ...`, or None (then run the normal CLI)."""
    if argv[:1] != ["search"] or os.environ.get("RAGBIT_FASTPATH", "1") == "0":
        return None
    if os.environ.get("TERM", "").lower() in ("dumb", "unknown"):   # rich then ignores the terminal size
        return None
    for stream in (sys.stdout, sys.stderr):
        if stream is None or (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
            return None
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    index_dir = index_dir_for(argv[1:], cwd)
    if index_dir is None:
        return None
    from ragbit.search import server as search_server
    return search_server.forward(index_dir, argv, prog, cwd)


def main() -> None:
    argv, prog = sys.argv[1:], os.path.basename(sys.argv[0]) or "ragbit"
    reply = fast_search(argv, prog)
    if reply is not None:
        sys.stderr.buffer.write(reply["stderr"].encode())
        sys.stderr.flush()
        sys.stdout.buffer.write(reply["stdout"].encode())
        sys.stdout.flush()
        sys.exit(reply["exit"])
    from ragbit.cli import main as cli_main
    cli_main(argv, prog_name=prog)


if __name__ == "__main__":
    main()
