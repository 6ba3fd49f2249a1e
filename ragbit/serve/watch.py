"""Keeping an index fresh while files change: `ragbit watch`, `ragbit serve --watch`, `ragbit mcp --watch`.

watchfiles (inotify / FSEvents / ReadDirectoryChangesW, in Rust) reports changed paths; a burst of changes
(a branch switch, a formatter run) is collected until the tree has been quiet for `quiet_ms`, then ONE
incremental `index_repository` run picks up whatever changed (it reads only files whose stat stamps moved).
Changes inside the index directory and .git are ignored, so the index's own writes do not wake it.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

QUIET_MS = 300          # re-index once the tree has been quiet this long...
MAX_WAIT_MS = 2000      # ...or at the latest this long after the first change of a burst


def _filter(cfg: Any) -> Any:
    from watchfiles import DefaultFilter
    ignore = [Path(cfg.index_dir).resolve()]
    return DefaultFilter(ignore_paths=[str(p) for p in ignore])


def watch_changes(cfg: Any, stop: threading.Event | None = None) -> Any:
    """Yields once per settled burst of changes (a set of (change, path)) until `stop` is set."""
    from watchfiles import watch
    yield from watch(Path(cfg.repo), watch_filter=_filter(cfg), debounce=MAX_WAIT_MS, step=QUIET_MS,
                     stop_event=stop, raise_interrupt=False)


class IndexWatcher:
    """Runs `refresh()` in a background thread after each settled burst of file changes."""

    def __init__(self, cfg: Any, refresh: Callable[[], Any], on_note: Callable[[str], None] = lambda m: None):
        self.cfg, self.refresh, self.on_note = cfg, refresh, on_note
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragbit-watch", daemon=True)
        self.refreshes = 0

    def start(self) -> "IndexWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        for _changes in watch_changes(self.cfg, self._stop):
            try:
                self.refresh()
                self.refreshes += 1
            except Exception as e:  # noqa: BLE001 - a failed re-index must not kill the watcher; the next change retries
                line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                self.on_note(f"watch: re-index failed: {line}")


def describe(report: Any, seconds: float) -> str:
    return (f"re-indexed in {seconds:.1f}s: {report.files_added} added, {report.files_changed} changed, "
            f"{report.files_removed} removed ({report.chunks_embedded} chunks embedded)")


def watch_forever(cfg: Any, on_note: Callable[[str], None]) -> None:
    """`ragbit watch`: index now (with progress), then re-index after every settled burst until Ctrl-C."""
    from ragbit.indexing.indexer import index_repository
    index_repository(cfg, progress=True)
    on_note(f"watching {cfg.repo} (Ctrl-C to stop)")
    for _changes in watch_changes(cfg):
        t0 = time.perf_counter()
        report = index_repository(cfg, progress=False)
        if report.files_added or report.files_changed or report.files_removed:
            on_note(describe(report, time.perf_counter() - t0))
