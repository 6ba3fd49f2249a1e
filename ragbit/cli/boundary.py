"""Where the CLI meets the rest of ragbit: a repository's config and the question in, errors out as one line.

Every error a user can cause derives from one of three roots (`ragbit.errors.RagbitError`,
`indexes.errors.IndexesError`, `generator.errors.GeneratorError`); `guarded` turns any of them, an OSError
(no permission, disk full) or Ctrl-C into one `error: ...` line on stderr and an exit code, never a traceback.
Anything else is a bug and keeps its traceback. The three roots import nothing heavy.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, TypeVar

import typer

from generator.errors import GeneratorError
from indexes.errors import IndexesError
from ragbit.errors import RagbitError

USER_ERRORS = (RagbitError, IndexesError, GeneratorError)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """One `error:` line: a newline or escape sequence inside the message (a path, a flag's value) is shown
    escaped, so it neither splits the line nor acts on the terminal."""
    from ragbit.terminal_text import for_terminal
    typer.echo(f"error: {for_terminal(message, keep_newlines=False)}", err=True)
    raise typer.Exit(code)


def one_line(e: BaseException) -> str:
    """The first line of an error's message (or its class name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def guarded(fn: Callable[[], T], interrupted: str = "", keep_ctrl_c: bool = False) -> T:
    """fn(), with user errors as one `error:` line and exit code 1; Ctrl-C / SIGTERM print one `interrupted`
    line (with `interrupted` after it, e.g. what is intact) and exit 130 / 143 (`ragbit/cli/interrupts.py`).
    keep_ctrl_c: a Ctrl-C (not SIGTERM) is raised to the caller instead (`ragbit chat` stops only the answer)."""
    from ragbit.cli.interrupts import Terminated, stop
    try:
        return fn()
    except typer.Exit:
        raise
    except KeyboardInterrupt as e:            # Ctrl-C or SIGTERM: cleanup (finally blocks) has already run
        if keep_ctrl_c and not isinstance(e, Terminated):
            raise
        stop(e, interrupted)
    except USER_ERRORS as e:
        fail(one_line(e))
    except OSError as e:         # e.g. no permission to write the index directory, disk full
        if e.errno is None and "requested and" in str(e):          # numpy's short write on a full disk
            fail(f"No space left on device? a write was cut short ({e}); the last committed index is intact")
        fail(f"{e.strerror or type(e).__name__}: {e.filename}" if e.filename else str(e))


def question_text(given: str) -> str:
    """The question as typed, or, when it is `-`, what standard input holds (`gh issue view 12 | ragbit query -`).

    Why: the questions ragbit answers best at length are bug reports (a title, a traceback, a snippet), which a
    shell argument holds badly. Bytes that are not UTF-8 are replaced, not fatal; nothing but blanks is one
    error line."""
    if given != "-":
        return given
    text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    if not text.strip():
        fail("no question on standard input (`-` reads the question from it)")
    return text


def repository(*named: Path | None) -> Path:
    """The repository a command is about: the path the user named (positionally or with --repo; naming two
    different ones is an error), else the nearest enclosing repository (ragbit/repo_root.py)."""
    given = {p.expanduser().resolve(): p for p in named if p is not None}
    if len(given) > 1:
        fail("two different repositories named: " + " and ".join(sorted(map(str, given.values()))), code=2)
    if given:
        return next(iter(given.values()))
    from ragbit.repo_root import find_repository
    return find_repository()


def repo_config(repo: Path | None, overrides: dict[str, dict[str, Any]]):
    """The config for `repo` (defaults, its ragbit.toml, then the command's flags); a bad path is one line.
    `repo` None: the repository enclosing the working directory."""
    repo = repository(repo)
    try:
        is_dir = repo.is_dir()
    except OSError as e:         # e.g. a name too long (serve, mcp, watch call this outside `guarded`)
        fail(f"{repo}: {e.strerror or type(e).__name__}")
    if not is_dir:
        fail(f"{repo}: {'not a directory' if repo.exists() else 'no such directory'}")
    return load_config(repo, overrides)


def load_config(repo: Path | None, overrides: dict[str, dict[str, Any]]):
    """RagbitConfig.load, with a bad value as one `error:` line that names the flag when a flag caused it (also
    outside `guarded`: serve, mcp and watch load their config before it). `repo` None: the working directory."""
    from ragbit.config import ConfigError, RagbitConfig
    try:
        return RagbitConfig.load(repo, overrides=overrides)
    except ConfigError as e:
        fail(_naming_the_flag(repo, overrides, e))


def _naming_the_flag(repo: Path | None, overrides: dict[str, dict[str, Any]], error: Exception) -> str:
    """The config error, led by the flag and value the user typed when one flag alone causes it
    (`--temperature -1: [generator] temperature must be >= 0, got -1.0`); the user typed a flag, not a key."""
    from ragbit.config import ConfigError, RagbitConfig
    message = one_line(error)
    given = [(s, k, v) for s, kv in overrides.items() for k, v in kv.items() if v is not None]
    try:
        RagbitConfig.load(repo)
    except ConfigError:
        return message           # the config files are at fault, not the flags
    for section, key, value in given:
        try:
            RagbitConfig.load(repo, overrides={section: {key: value}})
        except ConfigError:
            flag = _flag_of(key, value)
            return f"{flag} {value!r}: {message.removeprefix('command line: ')}" if flag else message
    return message


def _flag_of(key: str, value: Any) -> str | None:
    """The long form of the command-line option of the running command that gave `value` (for config `key`)."""
    try:                         # typer >= 0.20 vendors click; older releases use click itself
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    found = [p for p in ctx.command.params if p.param_type_name == "option" and p.name in ctx.params
             and type(ctx.params[p.name]) is type(value)
             and (ctx.params[p.name] == value or value != value and ctx.params[p.name] != ctx.params[p.name])]   # nan
    found.sort(key=lambda p: (key not in p.name and p.name not in key))     # `think` for `thinking`
    return max(found[0].opts, key=len) if found else None
