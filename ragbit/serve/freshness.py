"""Has anything the index is built from changed since the last refresh? One stat per directory and file.

Why: `ragbit serve` and `ragbit mcp` without --watch bring the index up to date before each retrieval. An
incremental re-index that finds nothing to do still walks the tree through the ignore rules and loads the
chunk table and the vector cache: tens of ms on every request. A `TreeStamp` is taken just before a refresh:
the stat of every directory the walk enters (adding, removing or renaming an entry changes its directory's
mtime), of every file it would consider (an edit changes size, mtime or ctime) and of the ignore files it
read; after the refresh it adds the index's CURRENT pointer (another writer committed, the index was
deleted). While every one of them is as recorded, no file the index is built from can have changed, so the
refresh is skipped; anything different, and the next retrieval refreshes first, as before.

A stamp is not trusted when one of its entries changed within `walker.RACY_MARGIN_NS` of taking it (the kernel
stamps files from a coarse clock, so a second write in the same tick can keep the stat): until the tree has
been still for 2 s, every retrieval refreshes, as it did without this check.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from indexes.store import CURRENT_FILE
from ragbit.indexing import walker


def _stat(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class TreeStamp:
    def __init__(self, stamps: dict[str, tuple | None], trusted: bool) -> None:
        self.stamps, self.trusted = stamps, trusted

    @classmethod
    def take(cls, cfg: Any) -> "TreeStamp":
        """The repository as the walk sees it now (no file is read); take it BEFORE refreshing, so a change
        made during the refresh differs from it."""
        started = time.time_ns()
        stats = walker.WalkStats()
        files = [str(p) for p in walker.iter_candidate_paths(cfg.repo, cfg.walk, warn=lambda message: None, stats=stats)]
        stamps = {p: _stat(p) for p in stats.dirs + stats.ignore_files + files}
        recent = started - walker.RACY_MARGIN_NS     # the indexer's own margin: it re-reads such files too
        trusted = all(s is None or max(s[1], s[2]) < recent for s in stamps.values())
        return cls(stamps, trusted)

    def with_index(self, index_dir: Path, refreshed: bool) -> "TreeStamp":
        """Add the index's CURRENT pointer, read after a refresh. `refreshed` False: the refresh did not run
        (another writer held the index) and this stamp says nothing about what that writer saw (not trusted)."""
        path = str(Path(index_dir) / CURRENT_FILE)
        return TreeStamp({**self.stamps, path: _stat(path)}, self.trusted and refreshed)

    def unchanged(self) -> bool:
        """True when every recorded directory, file and pointer still has the stat it had."""
        return self.trusted and all(_stat(p) == s for p, s in self.stamps.items())

