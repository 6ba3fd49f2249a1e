"""Ctrl-C and SIGTERM end a command the same way: cleanup runs, one line, exit code 130 / 143.

Why SIGTERM is turned into an exception: by default it kills the process on the spot, leaving a half-written
staging directory and temporary files beside the index (removed only by the next run). Raised as a
KeyboardInterrupt subclass, it unwinds through the same `finally`/`except BaseException` blocks as Ctrl-C.
Exit codes follow the shell convention 128 + signal number (SIGINT 2, SIGTERM 15).
"""
from __future__ import annotations

import signal
import threading

import typer


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was (like Ctrl-C's KeyboardInterrupt)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def install() -> None:
    """Make SIGTERM raise `Terminated` (only the main thread may set handlers; elsewhere nothing changes)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code(exc: BaseException) -> int:
    return 143 if isinstance(exc, Terminated) else 130


def stop(exc: BaseException, what: str = "") -> None:
    """One `interrupted` line on stderr, then exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    typer.echo(f"interrupted{': ' + what if what else ''}", err=True)
    raise typer.Exit(exit_code(exc))
