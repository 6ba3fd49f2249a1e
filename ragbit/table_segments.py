"""The chunk table and symbol table on disk (index format 2): immutable segments, ordered by one small file list.

Why segments: at 900k chunks the chunk table (600 MB of text) and the symbol table (90 MB of JSON) were read and
rewritten whole by every commit, half of a one-file re-index. Now each commit writes one new segment holding
the files it (re-)chunked, hard-links the segments it keeps from the previous generation, and writes the
generation's file order and stat stamps (a few MB at 100k files). The chunk columns are numpy files and
UTF-8 blobs that readers memory-map, so a cold search no longer parses the table either.

    table/
        segments.json       {"version", "segments": [segment names]}
        order.npy           (files, 2) int32 in index order: segment number, file number inside that segment
        stamps.npy          STAMP_DTYPE per file in index order (`has` 0: no settled stamp recorded)
        s-<hex>/            one segment, never modified once written
            files.json      {"path", "sha256", "count" (chunks per file), "languages" (the language codes' names)}
            symbols.json    [symbol record per file] (`ragbit/symbols/table.py`)
            lines.npy       (chunks, 2) int32: start_line, end_line
            language.npy    (chunks,) uint16 index into "languages"
            content_hash.npy (chunks,) ASCII bytes: the vector cache key
            scope.bin, scope_offsets.npy, text.bin, text_offsets.npy: UTF-8 blobs, (chunks + 1,) int64 byte offsets

A file's chunks are contiguous in every column of its segment, so a merge copies byte ranges per file.
This module reads and writes that layout only; `ragbit/chunk_table.py` and `ragbit/symbols/table.py` build
their tables from it (readers and the writer alike import it: it imports neither).
"""
from __future__ import annotations

import json
import mmap
import uuid
from pathlib import Path

import numpy as np

SEGMENTS_FILE = "segments.json"
ORDER_FILE = "order.npy"
STAMPS_FILE = "stamps.npy"
SEGMENT_PREFIX = "s-"
FILES_FILE = "files.json"
SYMBOLS_FILE = "symbols.json"
LINES_FILE = "lines.npy"
LANGUAGE_FILE = "language.npy"
HASH_FILE = "content_hash.npy"
BLOB_COLUMNS = ("scope", "text")          # <name>.bin + <name>_offsets.npy
LAYOUT_VERSION = 1
STAMP_DTYPE = np.dtype([("has", "u1"), ("size", "i8"), ("mtime", "i8"), ("ctime", "i8"), ("inode", "u8")])
# surrogatepass: a text decoded with surrogate escapes still round-trips character for character
_UTF8_ERRORS = "surrogatepass"


class SegmentFormatError(ValueError):
    """A segment or the file list of a table directory is missing, truncated or inconsistent."""


def encode(text: str) -> bytes:
    return text.encode("utf-8", _UTF8_ERRORS)


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", _UTF8_ERRORS)


def _map(path: Path) -> bytes | mmap.mmap:
    """The file's bytes, memory-mapped (an empty file cannot be mapped: b"")."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


class DiskSegment:
    """One segment on disk: file lists in memory, chunk columns memory-mapped."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.name = self.directory.name
        try:
            meta = json.loads((self.directory / FILES_FILE).read_text(encoding="utf-8"))
            self.paths, self.sha256 = meta["path"], meta["sha256"]
            self.counts, self.languages = meta["count"], meta["languages"]
            self.lines = np.load(self.directory / LINES_FILE, mmap_mode="r")
            self.language = np.load(self.directory / LANGUAGE_FILE, mmap_mode="r")
            self.hashes = np.load(self.directory / HASH_FILE, mmap_mode="r")
            self.offsets = {c: np.load(self.directory / f"{c}_offsets.npy", mmap_mode="r") for c in BLOB_COLUMNS}
            self.blobs = {c: _map(self.directory / f"{c}.bin") for c in BLOB_COLUMNS}
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise SegmentFormatError(f"segment {self.name}: {type(e).__name__}: {e}") from None
        n = int(sum(self.counts))
        if not (len(self.paths) == len(self.sha256) == len(self.counts)) or len(self.lines) != n \
                or len(self.language) != n or len(self.hashes) != n or self.lines.shape[1:] != (2,) \
                or any(len(self.offsets[c]) != n + 1 or int(self.offsets[c][-1]) != len(self.blobs[c])
                       for c in BLOB_COLUMNS):
            raise SegmentFormatError(f"segment {self.name}: files and columns disagree (truncated file?)")
        self.firsts = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])   # (files + 1,)
        self._symbols: list | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def blob(self, column: str, i: int) -> str:
        off = self.offsets[column]
        return decode(self.blobs[column][int(off[i]):int(off[i + 1])])

    def symbols(self, j: int) -> dict:
        if self._symbols is None:
            self._symbols = read_symbols(self.directory, len(self.paths))
        return self._symbols[j] or {}


def read_symbols(directory: Path, files: int) -> list:
    try:
        records = json.loads((Path(directory) / SYMBOLS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SegmentFormatError(f"segment {Path(directory).name}: symbols unreadable ({e})") from None
    if not isinstance(records, list) or len(records) != files:
        raise SegmentFormatError(f"segment {Path(directory).name}: symbol records and files disagree")
    return records


def read_layout(table_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(segment names, order (files, 2), stamps (files,)) of a table directory."""
    try:
        meta = json.loads((table_dir / SEGMENTS_FILE).read_text(encoding="utf-8"))
        if meta.get("version") != LAYOUT_VERSION:
            raise ValueError(f"table layout {meta.get('version')}, this ragbit reads {LAYOUT_VERSION}")
        names = meta["segments"]
        order = np.load(table_dir / ORDER_FILE)
        stamps = np.load(table_dir / STAMPS_FILE)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise SegmentFormatError(f"{table_dir}: {type(e).__name__}: {e}") from None
    if order.ndim != 2 or order.shape[1:] != (2,) or stamps.dtype != STAMP_DTYPE or len(stamps) != len(order) \
            or (len(order) and (order[:, 0].min() < 0 or order[:, 0].max() >= len(names))):
        raise SegmentFormatError(f"{table_dir}: file order and segments disagree")
    return names, order, stamps


def write_layout(table_dir: Path, names: list[str], order: np.ndarray, stamps: np.ndarray) -> None:
    np.save(table_dir / ORDER_FILE, np.asarray(order, dtype=np.int32).reshape(-1, 2))
    np.save(table_dir / STAMPS_FILE, np.asarray(stamps, dtype=STAMP_DTYPE))
    (table_dir / SEGMENTS_FILE).write_text(json.dumps({"version": LAYOUT_VERSION, "segments": names}),
                                           encoding="utf-8")


def stamp_rows(stamps: list) -> np.ndarray:
    """STAMP_DTYPE rows from stamp tuples (size, mtime_ns, ctime_ns, inode) or None."""
    return np.array([(1, *s) if s else (0, 0, 0, 0, 0) for s in stamps], dtype=STAMP_DTYPE)


def stamp_tuples(rows: np.ndarray) -> list:
    return [(int(s), int(m), int(c), int(i)) if h else None for h, s, m, c, i in rows.tolist()]


class SegmentWriter:
    """Collects files (from chunk lists or copied from another segment) and writes them as one new segment."""

    def __init__(self):
        self.paths, self.sha256, self.counts, self.symbols = [], [], [], []
        self.languages: dict[str, int] = {}
        self.lines, self.language, self.hashes = [], [], []
        self.pieces = {c: [] for c in BLOB_COLUMNS}       # bytes per file
        self.lengths = {c: [] for c in BLOB_COLUMNS}      # byte lengths per chunk (arrays per file)

    def __len__(self) -> int:
        return len(self.paths)

    def _file(self, path, sha, count, symbols) -> None:
        self.paths.append(path)
        self.sha256.append(sha)
        self.counts.append(int(count))
        self.symbols.append(symbols or {})

    def add_columns(self, path: str, sha: str, columns: dict[str, list], symbols: dict | None) -> None:
        """A file's chunks as columns (lists: language, scope, start_line, end_line, content_hash, text)."""
        count = len(columns["text"])
        self._file(path, sha, count, symbols)
        self.lines.append(np.array([columns["start_line"], columns["end_line"]], dtype=np.int32).T.reshape(-1, 2))
        self.language.append(np.array([self.languages.setdefault(x, len(self.languages)) for x in columns["language"]],
                                      dtype=np.uint16))
        self.hashes.append(np.array([h.encode("ascii") for h in columns["content_hash"]], dtype="S64").reshape(-1))
        for column in BLOB_COLUMNS:
            raw = [encode(x) for x in columns[column]]
            self.pieces[column].append(b"".join(raw))
            self.lengths[column].append(np.array(list(map(len, raw)), dtype=np.int64))

    def add_copy(self, segment: DiskSegment, j: int) -> None:
        """File j of `segment`, copied range by range."""
        a, b = int(segment.firsts[j]), int(segment.firsts[j + 1])
        self._file(segment.paths[j], segment.sha256[j], b - a, segment.symbols(j))
        self.lines.append(np.asarray(segment.lines[a:b]))
        codes = np.array([self.languages.setdefault(name, len(self.languages)) for name in segment.languages] or [0],
                         dtype=np.uint16)
        self.language.append(codes[np.asarray(segment.language[a:b], dtype=np.int64)])
        self.hashes.append(np.asarray(segment.hashes[a:b]))
        for column in BLOB_COLUMNS:
            off = segment.offsets[column]
            self.pieces[column].append(segment.blobs[column][int(off[a]):int(off[b])])
            self.lengths[column].append(np.diff(np.asarray(off[a:b + 1])))

    def write(self, table_dir: Path) -> str:
        """Write the segment below `table_dir`; returns its name."""
        name = f"{SEGMENT_PREFIX}{uuid.uuid4().hex[:16]}"
        out = table_dir / name
        out.mkdir()
        (out / FILES_FILE).write_text(json.dumps({"path": self.paths, "sha256": self.sha256, "count": self.counts,
                                                  "languages": list(self.languages)}, ensure_ascii=False),
                                      encoding="utf-8")
        (out / SYMBOLS_FILE).write_text(json.dumps(self.symbols, ensure_ascii=False, separators=(",", ":")),
                                        encoding="utf-8")
        np.save(out / LINES_FILE, np.concatenate(self.lines) if self.lines else np.zeros((0, 2), np.int32))
        np.save(out / LANGUAGE_FILE, np.concatenate(self.language) if self.language else np.zeros(0, np.uint16))
        np.save(out / HASH_FILE, np.concatenate(self.hashes) if self.hashes else np.zeros(0, "S64"))
        for column in BLOB_COLUMNS:
            lengths = np.concatenate(self.lengths[column]) if self.lengths[column] else np.zeros(0, np.int64)
            np.save(out / f"{column}_offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
            with open(out / f"{column}.bin", "wb") as f:
                for piece in self.pieces[column]:
                    f.write(piece)
        return name
