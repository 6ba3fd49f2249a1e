"""Which repository a command means when none is named: the nearest enclosing one, as git finds `.git`.

Why: from `click/src/click`, `ragbit search` should use the index at `click/.ragbit`, not ask for a second
index of the subdirectory. Walking up from the working directory, the first directory holding an index
(`.ragbit/`), a `ragbit.toml` or a `.git` is the repository; with none of them, the working directory is.
Standard library only: the console script (`ragbit/launcher.py`) calls it before importing anything heavy.
"""
from __future__ import annotations

import os
from pathlib import Path

MARKERS = (".ragbit", "ragbit.toml", ".git")   # the default index dir, ragbit.config.CONFIG_FILE, git


def find_repository(start: str | os.PathLike | None = None) -> Path:
    """The nearest directory at or above `start` (default: the working directory) holding a marker."""
    here = Path(start if start is not None else os.getcwd()).absolute()
    for directory in (here, *here.parents):
        if any(os.path.lexists(directory / marker) for marker in MARKERS):
            return directory
    return here
