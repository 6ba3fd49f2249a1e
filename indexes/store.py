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
    verified.json            stats of the current generation's files a writer found intact (VERIFIED_FILE)
    <anything else>          not ours, never touched (e.g. a vector cache directory)
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import filelock

from indexes.errors import IndexesError

FORMAT_VERSION = 2              # bump when the files inside a generation change incompatibly
READABLE_FORMATS = (1, 2)       # what this version reads (older formats are converted in memory by the readers)

CURRENT_FILE = "CURRENT"
LOCK_FILE = "lock"
GITIGNORE_FILE = ".gitignore"
_GITIGNORE_TEXT = "# written by ragbit: an index is never committed\n"
MANIFEST_FILE = "manifest.json"
_GEN_PREFIX = "gen-"
_STAGING_PREFIX = ".staging-"
_GEN_NAME = re.compile(r"gen-(\d{6,})")

T = TypeVar("T")


class IndexLockedError(IndexesError, RuntimeError):
    """Another process is writing this index."""


class IndexNotWritableError(IndexesError, PermissionError):
    """The index directory cannot be written (read-only file system, no permission): readers still work."""


class IndexDirForeignError(IndexNotWritableError):
    """The index directory exists and holds something else than a ragbit index: it is never written."""


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
    """fsync every file and directory below `root` (and root itself), making each private to its owner."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                _chmod_fd(fd, PRIVATE_FILE_MODE)
                os.fsync(fd)
            finally:
                os.close(fd)
        make_private(Path(dirpath))
        fsync_dir(Path(dirpath))


# An index holds the text of every file it covers: readable by the owner only (like ~/.ssh), whatever the
# umask and whatever the sources' own modes are.
PRIVATE_DIR_MODE, PRIVATE_FILE_MODE = 0o700, 0o600


def _chmod_fd(fd: int, mode: int) -> None:
    try:
        os.fchmod(fd, mode)
    except (OSError, AttributeError):        # Windows has no fchmod; a foreign-owned file cannot be changed
        pass


def make_private(path: Path) -> None:
    """chmod 0700 a directory (0600 a file) if anyone else may read it; silently keeps it where not allowed."""
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            os.chmod(path, PRIVATE_DIR_MODE if os.path.isdir(path) else PRIVATE_FILE_MODE)
    except OSError:
        pass


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


# ----------------------------------------------------------------------------------------------------------
# checksums: a generation records (size, crc32) of each of its files in its manifest
# ----------------------------------------------------------------------------------------------------------
# Why: a truncated dense.faiss, an emptied vocabulary or flipped bytes in a postings file (a disk error, a
# careless tool, a sync client) used to load as "complete and up to date" and fail later or answer wrongly.
# crc32 runs at ~3 GB/s (zlib), so verifying what a reader loads costs little beside loading it.

CHECKSUMS_KEY = "checksums"
_CHECK_BLOCK = 1 << 20


def file_checksum(path: Path) -> list[int]:
    """[size, crc32] of a file, read in 1 MB blocks."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while block := f.read(_CHECK_BLOCK):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return [size, crc]


def checksum_tree(root: Path, linked_from: Path | None = None, known: dict | None = None) -> dict[str, list[int]]:
    """{relative POSIX path: [size, crc32]} of every file below `root` except the manifest.

    A file that is the very same inode as the file of that name below `linked_from` (a hard link from the
    previous generation) takes its checksum from `known` (that generation's): a commit that links a 1.5 GB
    dense index and a large lexical base segment does not read them again."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if rel == MANIFEST_FILE:
                continue
            out[rel] = _linked_checksum(path, linked_from / rel, known.get(rel)) \
                if linked_from is not None and known else None
            if out[rel] is None:
                out[rel] = file_checksum(path)
    return dict(sorted(out.items()))


def _linked_checksum(path: Path, origin: Path, recorded) -> list[int] | None:
    """`recorded` if `path` is a hard link of `origin` with the recorded size, else None."""
    try:
        a, b = path.stat(), origin.stat()
    except OSError:
        return None
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and isinstance(recorded, list) and len(recorded) == 2 \
            and recorded[0] == a.st_size:
        return list(recorded)
    return None


# A writer checks the previous generation before building on it. Most of its bytes (the dense base file, the
# large table and BM25 segments) are hard links carried from generation to generation, unchanged: reading 2 GB
# at every one-file commit cost seconds. So the writer records, in the index root, the stat of each file it
# found intact ((device, inode, size, mtime_ns) and the checksum) and skips a file whose stat still matches a
# record that was made at least VERIFIED_MARGIN_NS after the file's last modification (a write in the same
# clock tick could keep the mtime). Any write through the file system moves the mtime; damage that does not
# (the disk itself) is still found by the readers (which check what they load) and by `ragbit status`, and
# `ragbit index --rebuild` replaces everything.
VERIFIED_FILE = "verified.json"
VERIFIED_MARGIN_NS = 2_000_000_000


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _load_verified(root: Path) -> dict:
    try:
        data = json.loads((root / VERIFIED_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def verify_generation(gen: Path, manifest: dict, parts: tuple[str, ...] | None = None,
                      remember: bool = False) -> list[str]:
    """Problems of the generation's files, one short phrase each ([] = intact). `parts` limits the check to
    files equal to or below those names (e.g. ("lexical", "table")). A generation written before checksums
    existed has none to check. `remember` (the writer, holding the lock): skip files verified before and
    unchanged since, and record the ones found intact now (see VERIFIED_FILE)."""
    recorded = manifest.get(CHECKSUMS_KEY)
    if not isinstance(recorded, dict):
        return []
    problems = []
    verified = _load_verified(gen.parent) if remember else {}
    now, seen = time.time_ns(), {}
    for rel, want in recorded.items():
        if parts is not None and not any(rel == p or rel.startswith(p + "/") for p in parts):
            continue
        try:
            if remember:
                key = _stat_key(os.stat(gen / rel))
                rec = verified.get(rel)
                if isinstance(rec, list) and len(rec) == 6 and rec[:4] == key and rec[4] == want \
                        and key[3] < rec[5] - VERIFIED_MARGIN_NS:
                    seen[rel] = rec
                    continue
            got = file_checksum(gen / rel)
        except FileNotFoundError:
            problems.append(f"{rel} is missing")
            continue
        except OSError as e:
            problems.append(f"{rel} is unreadable ({e.strerror or e})")
            continue
        if not isinstance(want, list) or got != list(want):
            problems.append(f"{rel} fails its checksum" + (f" ({got[0]} bytes, expected {want[0]})"
                                                            if isinstance(want, list) and got[0] != want[0] else ""))
        elif remember:
            seen[rel] = key + [got, now]
    if remember and seen != verified:
        try:
            write_atomic(gen.parent / VERIFIED_FILE, json.dumps(seen).encode())
        except OSError:
            pass                                   # only a shortcut for the next run
    return problems


def check_generation(gen: Path, manifest: dict, parts: tuple[str, ...] | None = None) -> None:
    """IndexFormatError naming the first damaged file, for readers."""
    problems = verify_generation(gen, manifest, parts)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IndexFormatError(f"index at {gen.parent} is corrupt: {problems[0]}{more}; run `ragbit index` to repair")


# ----------------------------------------------------------------------------------------------------------
# store
# ----------------------------------------------------------------------------------------------------------

class IndexStore:
    """One index directory. Cheap to construct; nothing is created on disk until a lock or a write."""

    def __init__(self, root: Path, also_ours: tuple[str, ...] = ()):
        self.root = Path(root)
        self.also_ours = tuple(also_ours)    # names (or name prefixes) the application keeps beside the index
        self._lock: filelock.FileLock | None = None

    def __repr__(self) -> str:
        return f"IndexStore({str(self.root)!r})"

    # -- locking ------------------------------------------------------------------------------------------

    def _refuse_foreign(self) -> None:
        """Raise IndexDirForeignError when the root exists and holds files but no ragbit index.

        WHY: the root can come from the repository itself (a `.ragbit` symbolic link, `[index] dir` in its
        ragbit.toml). A repository whose `.ragbit` linked to another directory had that directory made private
        (0700), its `gen-000001` replaced by a generation and a `CURRENT` and `lock` written beside its files.
        Ours: empty, or with a CURRENT pointer, or with the .gitignore `_ignore_in_git` writes first, or holding only
        a lock, staging and generation directories (an index whose first commit never came) and `also_ours`."""
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise IndexDirForeignError(f"the index directory {self.root} is a file, not a directory; put the index "
                                       "elsewhere with --index-dir or [index] dir in ragbit.toml") from None
        if not entries or CURRENT_FILE in entries:
            return
        if GITIGNORE_FILE in entries:
            try:
                if (self.root / GITIGNORE_FILE).read_text(encoding="utf-8", errors="replace").startswith(_GITIGNORE_TEXT):
                    return
            except OSError:
                pass
        if all(e == LOCK_FILE or e.startswith((_STAGING_PREFIX, _GEN_PREFIX, *self.also_ours)) for e in entries):
            return
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        where = f"{self.root} (a link to {os.path.realpath(self.root)})" if self.root.is_symlink() else str(self.root)
        raise IndexDirForeignError(f"{where} is not a ragbit index ({len(entries)} other entries: {shown}); ragbit "
                                   "does not write into it: put the index in an empty or new directory with "
                                   "--index-dir or [index] dir in ragbit.toml")

    def _ignore_in_git(self) -> None:
        """An index holds copies of the repository's text: keep it out of `git status` and commits."""
        path = self.root / GITIGNORE_FILE
        if not path.exists():
            tmp = self.root / f"{GITIGNORE_FILE}.{uuid.uuid4().hex}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # private like the rest of the index
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_GITIGNORE_TEXT + "*\n")
            os.replace(tmp, path)

    @contextmanager
    def lock(self, timeout: float = 0.0) -> Iterator[None]:
        """Hold the writer lock. Re-entrant within this IndexStore; another holder -> IndexLockedError; a
        directory that cannot be written (read-only mount, no permission) -> IndexNotWritableError."""
        try:
            self._refuse_foreign()
            self.root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
            make_private(self.root)
            self._ignore_in_git()
            if self._lock is None:
                self._lock = filelock.FileLock(str(self.root / LOCK_FILE))
            self._lock.acquire(timeout=max(0.0, timeout), poll_interval=0.05)
        except filelock.Timeout:
            raise IndexLockedError(f"another ragbit index run holds the lock on {self.root}") from None
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            raise IndexNotWritableError(f"cannot write the index directory {self.root} "
                                        f"({(e.strerror or 'not writable').lower()}); put the index elsewhere "
                                        "with --index-dir or [index] dir in ragbit.toml") from None
        try:
            yield
        finally:
            self._lock.release()

    # -- reading ------------------------------------------------------------------------------------------

    def _current_name(self) -> str | None:
        try:
            raw = (self.root / CURRENT_FILE).read_bytes()[:200]
        except FileNotFoundError:
            return None
        except OSError as e:
            raise IndexFormatError(f"index at {self.root}: cannot read {CURRENT_FILE} ({e})") from None
        name = raw.decode("utf-8", errors="replace").strip()    # binary garbage is corruption, not a crash
        if not _GEN_NAME.fullmatch(name):
            raise IndexFormatError(f"index at {self.root} is corrupt ({CURRENT_FILE} holds {name[:40]!r}): "
                                   "run ragbit index")
        return name

    def current(self) -> Path | None:
        """Directory of the committed generation, or None if nothing was ever committed."""
        for _ in range(20):
            name = self._current_name()
            if name is None:
                return None
            path = self.root / name
            if path.is_dir():
                return path
            # a writer may have committed a newer generation and removed this one since we read CURRENT
            if self._current_name() == name:
                break
        raise IndexFormatError(f"index at {self.root} is corrupt ({name} is missing): run ragbit index")

    def manifest(self) -> dict | None:
        """The committed manifest (with "format_version" and "generation"), or None if no index exists."""
        path = self.current()
        return None if path is None else self._manifest_of(path)

    def _manifest_of(self, path: Path) -> dict:
        """The manifest of generation directory `path` (IndexFormatError if unreadable or of another format)."""
        try:
            data = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexFormatError(f"index at {self.root} is corrupt (manifest unreadable: {e}): "
                                   "run ragbit index --rebuild") from None
        if not isinstance(data, dict):
            raise IndexFormatError(f"index at {self.root} is corrupt (manifest is not an object): "
                                   "run ragbit index --rebuild")
        found = data.get("format_version")
        if isinstance(found, int) and found > FORMAT_VERSION:
            raise IndexFormatError(f"index at {self.root} was written by a newer ragbit (format {found}, this one "
                                   f"reads up to {FORMAT_VERSION}): upgrade ragbit, or run ragbit index --rebuild")
        if found not in READABLE_FORMATS:
            raise IndexFormatError(f"index at {self.root} has format {found}, this ragbit reads "
                                   f"{FORMAT_VERSION}: run ragbit index --rebuild")
        return data

    def require(self) -> tuple[Path, dict]:
        """(generation directory, manifest) of the committed index; IndexMissingError if there is none. The
        manifest is that directory's own: resolving CURRENT twice could pair a generation with the manifest of the
        one a concurrent writer committed in between (a reader then saw its files as missing or damaged)."""
        path = self.current()
        if path is None:
            raise IndexMissingError(f"no index at {self.root}: run ragbit index first")
        return path, self._manifest_of(path)

    def read(self, loader: Callable[[Path, dict], T], attempts: int = 10) -> T:
        """`loader(generation dir, manifest)` on the committed index, safe against a concurrent writer.

        A writer deletes the old generation right after switching CURRENT; a reader that resolved the old
        directory a moment before may then find files gone. If the loader fails while CURRENT has moved on,
        it is simply run again on the new generation. IndexMissingError if there is no index.
        """
        for attempt in range(attempts):
            name = self._current_name()
            try:
                path, manifest = self.require()
            except IndexFormatError:          # its generation was removed under us if CURRENT has moved on
                if attempt == attempts - 1 or self._current_name() == name:
                    raise
                continue
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

    def _recorded_checksums(self, name: str | None) -> tuple[Path | None, dict | None]:
        """(directory, recorded checksums) of generation `name`, or (None, None)."""
        if not name:
            return None, None
        try:
            recorded = json.loads((self.root / name / MANIFEST_FILE).read_text(encoding="utf-8")).get(CHECKSUMS_KEY)
        except (OSError, ValueError, AttributeError):
            return None, None
        return (self.root / name, recorded) if isinstance(recorded, dict) else (None, None)

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
                linked_from, known = self._recorded_checksums(previous)
                full = {**manifest, "format_version": FORMAT_VERSION, "generation": number,
                        "created_unix": time.time(), CHECKSUMS_KEY: checksum_tree(staging, linked_from, known)}
                (staging / MANIFEST_FILE).write_text(json.dumps(full, indent=1, sort_keys=True), encoding="utf-8")
                fsync_tree(staging)
                os.rename(staging, self.root / name)
                fsync_dir(self.root)
                write_atomic(self.root / CURRENT_FILE, (name + "\n").encode())   # the commit point
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self._remove_leftovers(keep={name})
