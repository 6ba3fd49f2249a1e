"""The `ragbit` console script: answers `ragbit search` through the index's warm server before importing typer.

Why: the server's own work for a search is ~12 ms, but importing typer, pydantic, rich and the config costs a
shell call ~0.4 s CPU. This module imports only the standard library and `ragbit.search.client`, reads the
plain forms of `ragbit search`'s options itself, and asks the index's server (`POST /v1/search` over its Unix
socket, with `http.client`) for the hits together with the output `ragbit search` prints for them (rendered in the server by `ragbit/search/render.py`, the function the
CLI itself calls, for this process's terminal). Anything unusual (another option form, a bad value, --help,
a ragbit.toml, no server), or any failure, runs the normal CLI instead (`ragbit.cli.main`), so the output is
the same either way. `RAGBIT_FASTPATH=0` turns it off.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

CONFIG_FILE = "ragbit.toml"          # ragbit.config.CONFIG_FILE (not imported: it pulls in the whole config)
MODES = ("hybrid", "dense", "lexical")
# `ragbit search` options that take a value, and the flags without one (see ragbit/cli/index_cmds.py).
VALUE_OPTIONS = {"--repo": "repo", "-k": "k", "--mode": "mode", "--max-per-file": "max_per_file",
                 "--index-dir": "index_dir"}
FLAGS = {"--json": "json"}


def parse_search(argv: list[str]) -> dict | None:
    """`ragbit search` arguments as {"question", "repo", "k", ...}, or None when only the full CLI can tell
    (an option form or value it would reject or read differently, --help, --no-server, `--`)."""
    found: dict = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        name, value = (a.split("=", 1) + [None])[:2] if a.startswith("--") else (a, None)
        if name in VALUE_OPTIONS:
            if value is None:
                if i + 1 >= len(argv):
                    return None
                i += 1
                value = argv[i]
            found[VALUE_OPTIONS[name]] = value          # click keeps the last one
        elif name in FLAGS and value is None:
            found[FLAGS[name]] = True
        elif a.startswith("-"):
            return None                                 # -k5, --no-server, --help, --, unknown options
        else:
            positional.append(a)
        i += 1
    if len(positional) != 1 or positional[0] == "-":        # `-`: the question is on standard input
        return None
    found["question"] = positional[0]
    for name, least in (("k", 1), ("max_per_file", 0)):
        if name in found:
            v = found[name]
            if not (v.isascii() and v.isdigit()) or int(v) < least:
                return None
            found[name] = int(v)
    if found.get("mode", MODES[0]) not in MODES:
        return None
    return found


def fast_search(argv: list[str]) -> dict | None:
    """{"stdout", "stderr", "exit"} of `ragbit search ...` from the index's server, or None (run the CLI)."""
    if argv[:1] != ["search"] or os.environ.get("RAGBIT_FASTPATH", "1") == "0":
        return None
    if os.environ.get("TERM", "").lower() in ("dumb", "unknown"):   # rich then ignores the terminal size
        return None
    for stream in (sys.stdout, sys.stderr):
        if stream is None or (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
            return None
    args = parse_search(argv[1:])
    if args is None:
        return None
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    if "repo" in args:
        repo = Path(cwd, os.path.expanduser(args["repo"]))
    else:                            # the repository around the working directory, as the CLI finds it
        from ragbit.repo_root import find_repository
        repo = find_repository(cwd)
    if (repo / CONFIG_FILE).exists() or not repo.is_dir():
        return None                  # the config may move the index or turn the server off; errors: the CLI
    index_dir = Path(os.path.expanduser(args.get("index_dir", ".ragbit")))
    index_dir = index_dir if index_dir.is_absolute() else repo / index_dir
    from ragbit.search import client
    from ragbit.search.render import Terminal
    render = {"json": bool(args.get("json")), "terminal": Terminal.here().to_json()}
    request = client.search_request(repo, index_dir, args["question"], args.get("k"), args.get("mode"),
                                    args.get("max_per_file"), render=render)
    reply = client.ask(index_dir, request)
    printed = reply.get("printed") if reply is not None else None
    if not isinstance(printed, dict) or not isinstance(printed.get("stdout"), str) \
            or not isinstance(printed.get("stderr"), str):
        return None
    return {"stdout": printed["stdout"], "stderr": printed["stderr"], "exit": 0}


def main() -> None:
    argv, prog = sys.argv[1:], os.path.basename(sys.argv[0]) or "ragbit"
    reply = fast_search(argv)
    if reply is not None:
        sys.stdout.buffer.write(reply["stdout"].encode())
        sys.stdout.flush()
        sys.stderr.buffer.write(reply["stderr"].encode())     # notes come under the results, as in the CLI
        sys.stderr.flush()
        sys.exit(reply["exit"])
    from ragbit.cli import main as cli_main
    cli_main(argv, prog_name=prog)


if __name__ == "__main__":
    main()
