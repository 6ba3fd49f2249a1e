"""The command line that starts one of ragbit's own modules in a child process (search server, background indexer).

WHY: `python -m MODULE` puts the working directory first on the child's import path, and these children run in
the user's repository. A repository with a top-level package named `ragbit`, `indexes` or `generator` (the last
two are common names) then had its `__init__.py` imported, that is run, by `ragbit search` and `ragbit query`,
and the child ran the wrong code or failed. The command here starts the module through `runpy` after dropping
that entry, so the child imports exactly what the parent's interpreter path and PYTHONPATH name (they keep the
repository as their working directory). Standard library only: the search client imports it on every cold search.
The kernel warm-up, which needs no working directory, simply runs in its package's parent (generator/warmup.py).
"""
from __future__ import annotations

import sys

BOOTSTRAP = ("import runpy, sys\n"
             "if sys.path and sys.path[0] == '':\n"          # what -c puts first: the working directory
             "    del sys.path[0]\n"
             "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")


def module_command(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module args` without importing anything from the working directory."""
    return [sys.executable, "-c", BOOTSTRAP.format(module=module), *args]
