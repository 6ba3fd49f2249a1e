"""Which of a search's files no longer match the index: deleted, or changed since they were indexed.

Why: a search answers from the committed index, so a file deleted or edited since shows its old text; the
user should be told under the results (as `ragbit status` would), not find out by opening the file. Only
the files of the hits are checked: a stat each, and a read only when the stat differs from the one recorded
at indexing time (a `touch` alone is not a change).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

DELETED, CHANGED = "deleted", "changed"


def stale_files(repo: Path, table, paths) -> dict[str, str]:
    """{path: "deleted" | "changed"} for those of `paths` (repository-relative, as in the chunk table) whose
    file is gone or whose bytes are not the ones indexed; fresh files are left out."""
    stale: dict[str, str] = {}
    for path in dict.fromkeys(paths):
        entry = table.by_path.get(path)
        if entry is None:
            continue
        full = Path(repo) / path
        try:
            st = os.stat(full)
        except FileNotFoundError:
            stale[path] = DELETED
            continue
        except OSError:
            continue
        if entry.stamp is not None and tuple(entry.stamp)[:2] == (st.st_size, st.st_mtime_ns):
            continue
        try:
            sha = hashlib.sha256(full.read_bytes()).hexdigest()
        except OSError:
            continue
        if sha != entry.sha256:
            stale[path] = CHANGED
    return stale


def stale_note(stale: dict[str, str]) -> str:
    """One line for the user (empty when nothing is stale)."""
    if not stale:
        return ""
    listed = ", ".join(f"{p} ({state})" for p, state in list(stale.items())[:5])
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    return (f"note: the index is older than {len(stale)} of these files: {listed}{more}; "
            f"run `ragbit index` to refresh it\n")
