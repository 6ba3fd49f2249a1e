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
# packages whose Python-level machinery must not be broken off halfway: numba's compiler and its registries (the
# compiled kernels themselves run without Python frames, so this is only compiling and loading from numba's cache)
DELICATE_PACKAGES = ["numba", "llvmlite"]


def _package_roots() -> tuple[str, ...]:
    """Directories of the DELICATE_PACKAGES imported so far (one not yet imported has no frame to protect)."""
    roots = []
    for name in DELICATE_PACKAGES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) if module is not None else None
        if path:
            roots.append(os.path.dirname(path) + os.sep)
    return tuple(roots)


def _delicate(frame) -> bool:
    """True when the interrupted code is inside a module's first import (importlib on the stack) or inside numba's
    compiler (a frame of DELICATE_PACKAGES on the stack)."""
    roots = _package_roots()
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or (roots and name.startswith(roots)):
            return True
        frame = frame.f_back
    return False


class _CtrlCAfterImports:
    """SIGINT handler for a process that lives on after a Ctrl-C (`ragbit chat`): KeyboardInterrupt at once, except
    while a module is being imported for the first time or numba is compiling; then it is held and delivered as soon
    as the main thread is out of that code.

    Why: a KeyboardInterrupt raised inside an import leaves that module's side effects behind without the module.
    numba's first compilation imports `numba.cpython.unicode`, which registers boxing functions; interrupted and
    imported again, it fails with "duplicate registration", and every later answer of the chat failed. Raised inside
    numba's compiler, it broke a generator of its target registry ("generator raised StopIteration") with the same
    result. The first answer imports hundreds of modules and may compile kernels, so where a Ctrl-C lands is luck.
    A second Ctrl-C during the same stretch is obeyed at once (an import that hangs must not trap the user)."""

    POLL_S = 0.001        # short: between two kernels' compiles the main thread is out of numba only briefly

    def __init__(self):
        self.held = False
        self.resent = False           # the next SIGINT is the watcher's, not the user's second Ctrl-C

    def __call__(self, signum, frame) -> None:
        resent, self.resent = self.resent, False
        if (self.held and not resent) or not _delicate(frame):
            self.held = False
            raise KeyboardInterrupt
        self.held = True              # first Ctrl-C, or the watcher's that found the main thread back in that code
        threading.Thread(target=self._deliver_after, daemon=True, name="ctrl-c-after-import").start()

    def _deliver_after(self) -> None:
        main = threading.main_thread().ident
        while self.held and _delicate(sys._current_frames().get(main)):
            time.sleep(self.POLL_S)
        if self.held:
            self.resent = True
            os.kill(os.getpid(), signal.SIGINT)       # runs __call__ again, in the main thread, outside that code


def hold_ctrl_c_during_imports() -> None:
    """Install `_CtrlCAfterImports` for SIGINT (main thread only, like every signal handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _CtrlCAfterImports())
