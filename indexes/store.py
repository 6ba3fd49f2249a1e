"""An index directory with atomic generations and a writer lock.

Why generations: indexing a codebase takes minutes and can be interrupted (Ctrl-C, a crash, a killed
laptop). A reader must never see half of a new index. Each write goes into a fresh staging directory; only
when it is complete and fsynced is it renamed to a generation directory and the one-line CURRENT pointer
switched with os.replace (atomic on POSIX and Windows). Until that switch the previous generation stays
current and untouched.

Layout of `root`::

    CURRENT                  name of the committed generation, e.g. "gen-000003"
    lock                     filelock file; held by the one writer
    .gitignore               `*`: git never shows (or commits) an index, whatever the repository ignores
    gen-000003/              committed generation: the caller's files + manifest.json
    .staging-<random>/       a write in progress (or left by a killed process; removed by the next write)
    <anything else>          not ours, never touched (e.g. a vector cache directory)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import filelock

from indexes.errors import IndexesError

FORMAT_VERSION = 1              # bump when the files inside a generation change incompatibly

CURRENT_FILE = "CURRENT"
LOCK_FILE = "lock"
GITIGNORE_FILE = ".gitignore"
MANIFEST_FILE = "manifest.json"
_GEN_PREFIX = "gen-"
_STAGING_PREFIX = ".staging-"
_GEN_NAME = re.compile(r"gen-(\d{6,})")

T = TypeVar("T")


class IndexLockedError(IndexesError, RuntimeError):
    """Another process is writing this index."""


class IndexFormatError(IndexesError, ValueError):
    """The index on disk is corrupt or was written by an incompatible ragbit version."""


class IndexMissingError(IndexesError, FileNotFoundError):
    """No committed index at the given root."""


# ----------------------------------------------------------------------------------------------------------
# durability helpers
# ----------------------------------------------------------------------------------------------------------

def fsync_dir(path: Path) -> None:
    """Make a rename/create inside `path` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory below `root` (and root itself)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


# ----------------------------------------------------------------------------------------------------------
# store
# ----------------------------------------------------------------------------------------------------------

class IndexStore:
    """One index directory. Cheap to construct; nothing is created on disk until a lock or a write."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock: filelock.FileLock | None = None

    def __repr__(self) -> str:
        return f"IndexStore({str(self.root)!r})"

    # -- locking ------------------------------------------------------------------------------------------

    def _ignore_in_git(self) -> None:
        """An index holds copies of the repository's text: keep it out of `git status` and commits."""
        path = self.root / GITIGNORE_FILE
        if not path.exists():
            tmp = self.root / f"{GITIGNORE_FILE}.{uuid.uuid4().hex}.tmp"
            tmp.write_text("# written by ragbit: an index is never committed\n*\n", encoding="utf-8")
            os.replace(tmp, path)

    @contextmanager
    def lock(self, timeout: float = 0.0) -> Iterator[None]:
        """Hold the writer lock. Re-entrant within this IndexStore; another holder -> IndexLockedError."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._ignore_in_git()
        if self._lock is None:
            self._lock = filelock.FileLock(str(self.root / LOCK_FILE))
        try:
            self._lock.acquire(timeout=max(0.0, timeout), poll_interval=0.05)
        except filelock.Timeout:
            raise IndexLockedError(f"another ragbit index run holds the lock on {self.root}") from None
        try:
            yield
        finally:
            self._lock.release()

    # -- reading ------------------------------------------------------------------------------------------

    def _current_name(self) -> str | None:
        try:
            name = (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise IndexFormatError(f"index at {self.root}: cannot read {CURRENT_FILE} ({e})") from None
        if not _GEN_NAME.fullmatch(name):
            raise IndexFormatError(f"index at {self.root} is corrupt ({CURRENT_FILE} holds {name[:40]!r}): "
                                   "run ragbit index --rebuild")
        return name

    def current(self) -> Path | None:
        """Directory of the committed generation, or None if nothing was ever committed."""
        name = self._current_name()
        if name is None:
            return None
        path = self.root / name
        if not path.is_dir():
            raise IndexFormatError(f"index at {self.root} is corrupt ({name} is missing): "
                                   "run ragbit index --rebuild")
        return path

    def manifest(self) -> dict | None:
        """The committed manifest (with "format_version" and "generation"), or None if no index exists."""
        path = self.current()
        if path is None:
            return None
        try:
            data = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexFormatError(f"index at {self.root} is corrupt (manifest unreadable: {e}): "
                                   "run ragbit index --rebuild") from None
        if not isinstance(data, dict):
            raise IndexFormatError(f"index at {self.root} is corrupt (manifest is not an object): "
                                   "run ragbit index --rebuild")
        found = data.get("format_version")
        if found != FORMAT_VERSION:
            raise IndexFormatError(f"index at {self.root} has format {found}, this ragbit reads "
                                   f"{FORMAT_VERSION}: run ragbit index --rebuild")
        return data

    def require(self) -> tuple[Path, dict]:
        """(generation directory, manifest) of the committed index; IndexMissingError if there is none."""
        manifest = self.manifest()
        path = self.current()
        if manifest is None or path is None:
            raise IndexMissingError(f"no index at {self.root}: run ragbit index first")
        return path, manifest

    def read(self, loader: Callable[[Path, dict], T], attempts: int = 3) -> T:
        """`loader(generation dir, manifest)` on the committed index, safe against a concurrent writer.

        A writer deletes the old generation right after switching CURRENT; a reader that resolved the old
        directory a moment before may then find files gone. If the loader fails while CURRENT has moved on,
        it is simply run again on the new generation. IndexMissingError if there is no index.
        """
        for attempt in range(attempts):
            path, manifest = self.require()
            try:
                return loader(path, manifest)
            except (OSError, ValueError):
                if attempt == attempts - 1 or self._current_name() == path.name:
                    raise
        raise AssertionError("unreachable")

    # -- writing ------------------------------------------------------------------------------------------

    def _generation_numbers(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _GEN_NAME.fullmatch(p.name)))

    def _remove_leftovers(self, keep: set[str]) -> None:
        """Delete staging dirs, temp files and generations other than `keep` (callers hold the lock)."""
        for p in self.root.iterdir():
            stale = (p.name.startswith(_STAGING_PREFIX)
                     or (_GEN_NAME.fullmatch(p.name) and p.name not in keep)
                     or (p.name.startswith(f".{CURRENT_FILE}.") and p.name.endswith(".tmp")))
            if not stale:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    @contextmanager
    def write_generation(self, manifest: dict) -> Iterator[Path]:
        """Yield an empty staging directory; commit it as the new current generation on normal exit.

        On any exception (KeyboardInterrupt included) the staging directory is removed and the previous
        generation stays current. Takes the writer lock (re-entrant if the caller already holds
        `self.lock()`), so two writers never interleave.
        """
        with self.lock():
            try:
                previous = self._current_name()
            except IndexFormatError:            # a corrupt pointer must not block the rebuild that fixes it
                previous = None
            self._remove_leftovers(keep={previous} if previous else set())
            staging = self.root / f"{_STAGING_PREFIX}{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                yield staging
                number = max(self._generation_numbers(), default=0) + 1
                name = f"{_GEN_PREFIX}{number:06d}"
                full = {**manifest, "format_version": FORMAT_VERSION, "generation": number,
                        "created_unix": time.time()}
                (staging / MANIFEST_FILE).write_text(json.dumps(full, indent=1, sort_keys=True), encoding="utf-8")
                fsync_tree(staging)
                os.rename(staging, self.root / name)
                fsync_dir(self.root)
                write_atomic(self.root / CURRENT_FILE, (name + "\n").encode())   # the commit point
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self._remove_leftovers(keep={name})
