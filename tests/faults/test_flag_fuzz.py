"""CLI flag fuzzing (issue #20): random and invalid flag values across the commands (index, search, status,
query, chat, generate, serve, mcp, watch, models, pull, server stop). Each run ends in exit 0 (accepted), or
one `error:` line and exit 1 or 2: a usage error (exit 2) names the flag, a bad value the config rejects names
the flag the user typed and what it expected (`--top-p 5.0: [generator] top_p must be between 0 and 1`).
Never a traceback.

In process (`ragbit.cli.main`, the console script's CLI), with the fake embedder as in tests/faults/driver.py;
the long-running ends (HTTP/MCP server, watcher) are replaced by a stub that records that the flags got through,
and the server registry is a temporary directory (`server stop --all` must not stop anybody's server).
Short form: 400 seeded cases in the default suite; `-m faults_long`: 5,000. A few cases also run through the real
console script in a process of its own.
"""
from __future__ import annotations

import contextlib
import io
import os
import random
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from ragbit.cli import _command, main
from tests.faults.test_crashes import WORKTREE, index_in_process
from tests.retrieval_fixtures import FakeEmbedder, make_repo

VALUES = ["", " ", "0", "1", "-1", "3", "1.5", "-0.5", "nan", "inf", "-inf", "1e309", "99999999999999999999999",
          "9223372036854775808", "0x10", "1_000", "abc", "é", "名前", "a" * 3000, "\x1b[2J\x1b]0;owned\x07", "a\nb",
          "a\tb", "--json", "-k", "-", "--", "true", "no", "None", "null", "hybrid", "lexical", "auto", "flat",
          "int8", "'\"", "%s%n", "${HOME}", "0.0.0.0", "::1", "127.0.0.1", "65536", "80", "missing.gguf",
          "/nonexistent/ragbit/x", "a/b/../c", "*", "[]", "{}"]


class Reached(Exception):
    """A long-running command got past its flags (raised by the stubs in place of serving)."""


def _stub(*_a, **_kw):
    raise Reached()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small indexed repository (server off), an empty working directory, and the commands' base arguments:
    enough for each command to run to its end quickly (a missing model file: query/chat/generate stop there)."""
    base = tmp_path_factory.mktemp("flagfuzz")
    repo = make_repo(base / "shop")
    (repo / "ragbit.toml").write_text("[search]\nserver = false\n")
    index_in_process(repo, repo / ".ragbit")
    cwd = base / "cwd"
    cwd.mkdir()
    missing = str(base / "no-such-model.gguf")
    commands = {
        "index": [str(repo), "-q"], "search": ["retry", "--repo", str(repo)], "status": [str(repo)],
        "query": ["how are retries done?", "--repo", str(repo), "--model", missing],
        "chat": ["--repo", str(repo), "--model", missing], "generate": ["hi", "--model", missing],
        "serve": ["--repo", str(repo), "--model", missing], "mcp": ["--repo", str(repo), "--model", missing],
        "watch": [str(repo)], "models": ["--repo", str(repo)], "pull": ["abc"], "server stop": ["--repo", str(repo)],
    }
    return {"repo": repo, "cwd": cwd, "commands": commands, "base": base}


@pytest.fixture
def sandbox(world, monkeypatch):
    import ragbit.indexing.embeddings
    import ragbit.serve.http_server
    import ragbit.serve.mcp_server
    import ragbit.serve.watch
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())   # as driver.py
    monkeypatch.setattr(ragbit.serve.http_server, "serve", _stub)
    monkeypatch.setattr(ragbit.serve.mcp_server, "run_stdio", _stub)
    monkeypatch.setattr(ragbit.serve.watch, "watch_forever", _stub)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(world["base"] / "runtime"))
    monkeypatch.delenv("RAGBIT_API_KEY", raising=False)
    monkeypatch.chdir(world["cwd"])
    return world


def options_of(command: str) -> list:
    cmd = _command()
    for part in command.split():
        cmd = cmd.commands[part]
    return [p for p in cmd.params if p.param_type_name == "option"]


def safe_value(world, value: str) -> bool:
    """False for values that would name a real directory outside the test's own (`.`, `~`, `..`): an index or
    a watcher there would touch the machine, not the fixture."""
    v = os.path.expanduser(value.strip()) if value.strip() else "."
    for root in (world["cwd"], world["repo"]):
        try:
            if Path(root, v).resolve().is_dir():
                return False
        except OSError:              # a name too long: no such directory
            pass
    return True


def make_case(world, rng: random.Random) -> tuple[str, list[str], list[str]]:
    """(command, argv, the option strings mutated): the command's base arguments plus 1-2 mutations."""
    command = rng.choice(sorted(world["commands"]))
    argv, named = list(world["commands"][command]), []
    options = options_of(command)
    for _ in range(rng.choice([1, 1, 2])):
        kind = rng.random()
        opt = rng.choice(options) if options else None
        if opt is None or kind < 0.06:
            flag = rng.choice(["--bogus", "-z", "--json=", "--k", "--repo=", "---x"])
            argv.append(flag)
            named.append(flag.rstrip("="))
        elif getattr(opt, "is_flag", False):
            flag = rng.choice(opt.opts + opt.secondary_opts)
            argv.append(f"{flag}={rng.choice(VALUES)}" if flag.startswith("--") and kind < 0.5 else flag)
            named.append(flag)
        else:
            flag = rng.choice(opt.opts)
            value = rng.choice(VALUES)
            while not safe_value(world, value):
                value = rng.choice(VALUES)
            if kind < 0.12:                               # the option without its value, at the end
                argv.append(flag)
            elif kind < 0.3 and flag.startswith("--"):
                argv.append(f"{flag}={value}")
            else:
                argv += [flag, value]
            named.append(flag)
            if value.startswith("-"):                     # click reads `-k` as the next option, not a value
                named.append(value)
    return command, command.split() + argv, named


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `ragbit ARGV`; an exception escaping the CLI is a traceback on stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        real_stdin, sys.stdin = sys.stdin, io.StringIO("")
        try:
            main(argv, prog_name="ragbit")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Reached:
            code = 0
        except BaseException:  # noqa: BLE001  what the user would see: a traceback
            err.write(traceback.format_exc())
            code = -1
        finally:
            sys.stdin = real_stdin
    return code, out.getvalue(), err.getvalue()


PROGRESS = re.compile(r"indexing .*: \d+ files, \d+ chunks$|lexical search is ready")


def check(command: str, argv: list[str], named: list[str], code: int, err: str) -> str:
    """Why this outcome is wrong ("" when it is right)."""
    lines = [l for l in err.splitlines() if l.strip()]
    if "Traceback" in err or code not in (0, 1, 2):
        return f"exit {code}: {err[-1500:]}"
    if code == 0:
        return ""
    progress = [l for l in lines[:-1] if PROGRESS.match(l)]           # query and chat index first
    if lines[-1:] != [l for l in lines if l.startswith("error: ")] or len(progress) != len(lines) - 1:
        return f"exit {code}, not one error line: {lines[:4]}"
    lines = lines[-1:]
    if code == 2 and not any(n in lines[0] for n in named) and "two different repositories" not in lines[0] \
            and "Missing argument" not in lines[0] and "Got unexpected extra argument" not in lines[0]:
        return f"usage error not naming {named}: {lines[0]}"
    if code == 1 and lines[0].startswith("error: command line:"):
        return f"a flag's bad value reported as a config key: {lines[0]}"
    return ""


def run_fuzz(world, n: int, seed: int) -> dict:
    rng = random.Random(seed)
    outcomes = {"accepted": 0, "rejected: usage (exit 2)": 0, "rejected: value or state (exit 1)": 0}
    failures = []
    for i in range(n):
        command, argv, named = make_case(world, rng)
        code, _out, err = run_in_process(argv)
        why = check(command, argv, named, code, err)
        if why:
            failures.append(f"case {i} (seed {seed}) ragbit {argv!r:.300}: {why[-800:]}")
        outcomes["accepted" if code == 0 else "rejected: usage (exit 2)" if code == 2
                 else "rejected: value or state (exit 1)"] += 1
    assert not failures, "\n".join(failures[:10])
    return outcomes


def test_flag_fuzz_short(sandbox):
    outcomes = run_fuzz(sandbox, 400, seed=20)
    print(f"\n400 flag cases: {outcomes}")
    assert outcomes["accepted"] and outcomes["rejected: usage (exit 2)"] and outcomes["rejected: value or state (exit 1)"]


@pytest.mark.faults_long
@pytest.mark.timeout(7200)
def test_flag_fuzz_long(sandbox):
    outcomes = run_fuzz(sandbox, 5_000, seed=2020)
    print(f"\n5,000 flag cases: {outcomes}")


@pytest.mark.parametrize("argv, fragment", [
    (["generate", "hi", "--top-p", "5"], "error: --top-p 5.0: [generator] top_p must be between 0 and 1, got 5.0"),
    (["generate", "hi", "-t", "nan"], "error: --temperature nan: [generator] temperature = nan: expected a number"),
    (["serve", "--model", ""], "error: --model '': [generator] model must not be empty"),
    (["watch", "--index-dir", " "], "error: --index-dir ' ': [index] dir must not be empty"),
    (["search", "x", "-k", "abc"], "error: Invalid value for '-k': Input should be a valid integer"),
    (["index", "--max-file-bytes", "-5"], "error: --max-file-bytes -5: max_file_bytes must be positive, got -5"),
    (["models", "--repo", "a\nb"], "error: a\\x0ab: no such directory"),
    (["mcp", "--repo", "a" * 300], "error: " + "a" * 300 + ": File name too long"),
    (["serve", "--host", "a" * 300], "error: refusing to serve on " + "a" * 300 + " without --api-key"),
])
def test_real_console_script(sandbox, argv, fragment):
    """The same through `python -m ragbit.launcher` in a process of its own. Found by the fuzzer: serve, mcp
    and watch printed a traceback for a bad config value, a name too long for the file system or a host name
    IDNA refuses; generate named the key, not the flag; a newline in a path split the error line in two."""
    repo = str(sandbox["repo"])
    if "--repo" not in argv:
        argv = argv + (["--repo", repo] if argv[0] in ("serve", "search") else [repo] if argv[0] in ("watch", "index")
                       else [])
    env = dict(os.environ, PYTHONPATH=str(WORKTREE))
    r = subprocess.run([sys.executable, "-m", "ragbit.launcher", *argv], cwd=sandbox["cwd"], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.splitlines() == [l for l in r.stderr.splitlines() if l.strip()] and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(fragment), r.stderr
