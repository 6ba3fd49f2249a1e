"""Ctrl-C and SIGTERM end a command the same way: cleanup runs, one line, exit code 130 / 143.

Why SIGTERM is turned into an exception: by default it kills the process on the spot, leaving a half-written
staging directory and temporary files beside the index (removed only by the next run). Raised as a
KeyboardInterrupt subclass, it unwinds through the same `finally`/`except BaseException` blocks as Ctrl-C.
Exit codes follow the shell convention 128 + signal number (SIGINT 2, SIGTERM 15).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

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


# ------------------------------------------------------------------------------ Ctrl-C that spares imports
def _importing(frame) -> bool:
    """True when the interrupted code is running a module's first import (importlib is on the stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


class _CtrlCAfterImports:
    """SIGINT handler for a process that lives on after a Ctrl-C (`ragbit chat`): KeyboardInterrupt at once, except
    while a module is being imported for the first time; then it is held and delivered as soon as the import is done.

    Why: a KeyboardInterrupt raised inside an import leaves that module's side effects behind without the module.
    numba's first compilation imports `numba.cpython.unicode`, which registers boxing functions; interrupted and
    imported again, it fails with "duplicate registration", and every later answer of the chat failed. The first
    answer imports hundreds of modules (numba's target, faiss, scipy), so which import a Ctrl-C lands in is luck.
    A second Ctrl-C during the same import is obeyed at once (an import that hangs must not trap the user)."""

    POLL_S = 0.01

    def __init__(self):
        self.held = False

    def __call__(self, signum, frame) -> None:
        if self.held or not _importing(frame):
            self.held = False
            raise KeyboardInterrupt
        self.held = True
        threading.Thread(target=self._deliver_after_import, daemon=True, name="ctrl-c-after-import").start()

    def _deliver_after_import(self) -> None:
        main = threading.main_thread().ident
        while self.held and _importing(sys._current_frames().get(main)):
            time.sleep(self.POLL_S)
        if self.held:
            os.kill(os.getpid(), signal.SIGINT)       # runs __call__ again, in the main thread, outside the import


def hold_ctrl_c_during_imports() -> None:
    """Install `_CtrlCAfterImports` for SIGINT (main thread only, like every signal handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _CtrlCAfterImports())
