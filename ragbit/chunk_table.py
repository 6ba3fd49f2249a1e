"""The chunk table of one index generation: which files were indexed (with their sha256 and symbol records) and
their chunks, in index order: position i in the BM25 and dense indexes is chunk i.

Why segments: the indexer reuses the previous generation's chunks for every unchanged file, and the searcher
maps index positions back to chunks. At 900k chunks, loading and rewriting the whole table was half of a
one-file re-index. So the table is made of segments (`ragbit/table_segments.py`): the previous generation's,
memory-mapped and hard-linked into the next one, plus one in memory for the files chunked by this run; a
`Chunk` object is only made when someone asks for one. The file order (walk order) is the generation's own, so
an incremental table has the positions a rebuilt one has.

The content hash (the vector cache key) is stored, not recomputed: it is a function of path, scope and text
(`make_embed_text`), and the chunker's version is part of the index's chunk settings.

Format 1 (one file, `TABLE_FILE_V1`, beside `SYMBOLS_FILE_V1`) is still read, into an in-memory segment; the
next commit writes it as segments.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np

from ragbit import table_segments as seg
from ragbit.errors import RagbitError
from ragbit.index_layout import LEGACY_TABLE_FILE, SYMBOLS_FILE_V1, TABLE_DIR, TABLE_FILE_V1
from ragbit.indexing.chunking import Chunk, make_embed_text

TABLE_VERSION = 2           # of format 1's single file
_COLUMNS = ("language", "scope", "start_line", "end_line", "content_hash")   # format 1: stored in the header
MERGE_SHARE = 0.10          # rewrite every segment as one when small segments + dead chunks exceed this share
MAX_SEGMENTS = 8            # rewrite the small segments as one when there are more

T = TypeVar("T")


class ChunkTableError(RagbitError, ValueError):
    """The chunk table of an index is missing or unreadable."""


@dataclass
class FileEntry:
    path: str            # relative to the repository, "/"-separated
    sha256: str
    first: int           # position of its first chunk in the table
    count: int           # number of chunks
    stamp: tuple | None = None   # walker.Stamp when it was settled at indexing time: the next walk need not read
    origin: tuple = field(default=(None, 0), compare=False, repr=False)   # (segment, file number in it)


class LazyColumn(Sequence[T]):
    """A read-only sequence whose item i is `get(i)`, computed when asked (no list of n objects up front)."""

    def __init__(self, n: int, get: Callable[[int], T]):
        self._n, self._get = n, get

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._get(i)

    def __iter__(self) -> Iterator[T]:
        return map(self._get, range(self._n))


class MemorySegment:
    """The files chunked by this run (or a format-1 table read whole): columns as lists, not yet on disk."""

    name = None

    def __init__(self):
        self.paths, self.sha256, self.counts, self.records = [], [], [], []
        self.firsts = [0]
        self.cols: dict[str, list] = {name: [] for name in _COLUMNS + ("text",)}
        self.symbol_source: Callable[[], list] | None = None     # format 1: the records, read when first asked

    def __len__(self) -> int:
        return self.firsts[-1]

    def add(self, path: str, sha: str, columns: dict[str, list], count: int, record: dict | None) -> int:
        for name, col in self.cols.items():
            col.extend(columns[name])
        self.paths.append(path)
        self.sha256.append(sha)
        self.counts.append(count)
        self.records.append(record)
        self.firsts.append(self.firsts[-1] + count)
        return len(self.paths) - 1

    def symbols(self, j: int) -> dict:
        if self.symbol_source is not None:
            self.records, self.symbol_source = self.symbol_source(), None
        return self.records[j] or {}

    def columns_of(self, j: int) -> dict[str, list]:
        """File j's chunks, column by column."""
        a, b = self.firsts[j], self.firsts[j + 1]
        return {name: col[a:b] for name, col in self.cols.items()}


def _columns_of(chunks) -> dict[str, list]:
    return {name: [getattr(c, name) for c in chunks] for name in _COLUMNS + ("text",)}


class ChunkTable:
    """Files (path -> FileEntry, in index order) and one lazy column per chunk field, over segments."""

    def __init__(self, segments: list, order: list[tuple[int, int]], stamps: list):
        self.segments = segments                         # DiskSegment / MemorySegment
        order_arr = np.asarray(order, dtype=np.int64).reshape(-1, 2)
        counts = np.zeros(len(order_arr), dtype=np.int64)               # chunks per file, in index order
        local_first = np.zeros(len(order_arr), dtype=np.int64)          # each file's first chunk in its segment
        for s, part in enumerate(segments):
            mine = order_arr[:, 0] == s
            if mine.any():
                firsts = np.asarray(part.firsts, dtype=np.int64)
                local_first[mine] = firsts[order_arr[mine, 1]]
                counts[mine] = firsts[order_arr[mine, 1] + 1] - local_first[mine]
        first = int(counts.sum())
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
        paths = [p.paths for p in segments]
        shas = [p.sha256 for p in segments]
        self.files: list[FileEntry] = [FileEntry(paths[s][j], shas[s][j], a, n, stamp, (s, j)) for (s, j), a, n, stamp
                                       in zip(order_arr.tolist(), starts.tolist(), counts.tolist(), stamps)]
        self.by_path = {f.path: f for f in self.files}
        self._n = first
        # chunk position -> file number, segment, position inside the segment
        self._file_of = np.repeat(np.arange(len(self.files), dtype=np.int32), counts)
        self._seg_of = np.repeat(order_arr[:, 0].astype(np.int32), counts)
        self._local = np.repeat(local_first - starts, counts) + np.arange(first)
        self.path = LazyColumn(first, lambda i: self.files[self._file_of[i]].path)
        self.language = LazyColumn(first, self._getter("language"))
        self.scope = LazyColumn(first, self._getter("scope"))
        self.text = LazyColumn(first, self._getter("text"))
        self.start_line = LazyColumn(first, self._getter("start_line"))
        self.end_line = LazyColumn(first, self._getter("end_line"))
        self.content_hash = LazyColumn(first, self._getter("content_hash"))

    def _getter(self, name: str) -> Callable[[int], object]:
        segs, seg_of, local = self.segments, self._seg_of, self._local

        def get(i: int):
            part, j = segs[seg_of[i]], int(local[i])
            if isinstance(part, MemorySegment):
                return part.cols[name][j]
            if name in seg.BLOB_COLUMNS:
                return part.blob(name, j)
            if name == "language":
                return part.languages[int(part.language[j])]
            if name == "content_hash":
                return part.hashes[j].decode("ascii")
            return int(part.lines[j, 0 if name == "start_line" else 1])
        return get

    # ------------------------------------------------------------------ building
    @classmethod
    def from_files(cls, per_file: list[tuple], previous: "ChunkTable | None" = None,
                   symbols: dict | None = None) -> "ChunkTable":
        """Build from (path, sha256, chunks[, stamp]) in index order. `chunks` None means: this file's chunks (and
        symbol record) as they are in `previous` (an unchanged file), kept in its segment. `symbols`: path ->
        symbol record of the files with chunks given."""
        fresh = MemorySegment()
        segments = list(previous.segments) if previous is not None else []
        order, stamps = [], []
        for path, sha, chunks, *stamp in per_file:
            if chunks is None:
                order.append(previous.by_path[path].origin)
            else:
                j = fresh.add(path, sha, _columns_of(chunks), len(chunks), (symbols or {}).get(path))
                order.append((len(segments), j))
            stamps.append(tuple(stamp[0]) if stamp and stamp[0] else None)
        return cls(segments + [fresh], order, stamps)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self._n

    def chunk(self, i: int) -> Chunk:
        return Chunk(self.path[i], self.language[i], self.start_line[i], self.end_line[i], self.scope[i],
                     self.text[i])

    @property
    def chunks(self) -> LazyColumn[Chunk]:
        """Every chunk as a `Chunk`, made on access."""
        return LazyColumn(len(self), self.chunk)

    def embed_text(self, i: int) -> str:
        """`Chunk.embed_text` of chunk i, without making the `Chunk`."""
        return make_embed_text(self.path[i], self.scope[i], self.text[i])

    def sha_if_stamped(self, path: str, stamp: tuple) -> str | None:
        """The recorded sha256 of `path` if `stamp` is the settled stamp recorded with it, else None (the
        `known` callback of `walker.walk_repository`: the file need not be read)."""
        f = self.by_path.get(path)
        return f.sha256 if f is not None and f.stamp is not None and f.stamp == tuple(stamp) else None

    @property
    def embed_texts(self) -> LazyColumn[str]:
        return LazyColumn(len(self), self.embed_text)

    def symbol_record(self, f: FileEntry) -> dict:
        """The symbol record of an indexed file ({} when its language is not parsed)."""
        s, j = f.origin
        return self.segments[s].symbols(j)

    def symbols_readable(self) -> bool:
        """Can the symbol records of a table read from format 1 be read (it may have none, or a damaged file)?
        Segments' records are covered by their checksums and read only when a merge copies them."""
        try:
            for part in self.segments:
                if isinstance(part, MemorySegment) and part.symbol_source is not None and part.paths:
                    part.symbols(0)
        except ChunkTableError:
            return False
        return True

    # ------------------------------------------------------------------ persistence
    def _kept_segments(self) -> set[int]:
        """Which disk segments the next generation links as they are; the others' live files are rewritten into
        the new segment: all of them when small segments and dead chunks outweigh MERGE_SHARE of the largest,
        the small ones when there are more than MAX_SEGMENTS."""
        live: dict[int, int] = {}
        for f in self.files:
            live[f.origin[0]] = live.get(f.origin[0], 0) + f.count
        disk = {s: n for s, n in live.items() if isinstance(self.segments[s], seg.DiskSegment)}
        if not disk:
            return set()
        base = max(disk, key=lambda s: (disk[s], -s))
        fresh = sum(n for s, n in live.items() if s not in disk)
        small = sum(n for s, n in disk.items() if s != base) + fresh
        dead = sum(len(self.segments[s]) - n for s, n in disk.items())
        if small + dead > MERGE_SHARE * max(disk[base], 1):
            return set()
        if len(disk) + any(s not in disk for s in live) > MAX_SEGMENTS:
            return {base}
        return set(disk)

    def save(self, directory: Path) -> None:
        """Write table/ below `directory`: kept segments hard-linked, every other file into one new segment."""
        out = Path(directory) / TABLE_DIR
        out.mkdir()
        kept = self._kept_segments()
        writer = seg.SegmentWriter()
        names = [self.segments[s].name for s in sorted(kept)]
        number = {s: k for k, s in enumerate(sorted(kept))}
        order = []
        for f in self.files:
            s, j = f.origin
            part = self.segments[s]
            if s in kept:
                order.append((number[s], j))
                continue
            order.append((len(names), len(writer)))
            if isinstance(part, MemorySegment):
                writer.add_columns(f.path, f.sha256, part.columns_of(j), part.symbols(j))
            else:
                writer.add_copy(part, j)
        if len(writer) or not names:
            names.append(writer.write(out))
        for s in sorted(kept):
            shutil.copytree(self.segments[s].directory, out / self.segments[s].name, copy_function=_link_or_copy)
        seg.write_layout(out, names, np.asarray(order, dtype=np.int32).reshape(-1, 2),
                         seg.stamp_rows([f.stamp for f in self.files]))

    @classmethod
    def load(cls, directory: Path) -> "ChunkTable":
        directory = Path(directory)
        table_dir = directory / TABLE_DIR
        if not table_dir.is_dir():
            return cls._load_format_1(directory)
        try:
            names, order, stamps = seg.read_layout(table_dir)
            segments = [seg.DiskSegment(table_dir / name) for name in names]
            if any(j < 0 or j >= len(segments[s].paths) for s, j in order.tolist()):
                raise seg.SegmentFormatError("file order names a file no segment has")
        except seg.SegmentFormatError as e:
            raise ChunkTableError(f"{table_dir}: unreadable chunk table ({e})") from None
        return cls(segments, [tuple(o) for o in order.tolist()], seg.stamp_tuples(stamps))

    @classmethod
    def _load_format_1(cls, directory: Path) -> "ChunkTable":
        """A format-1 table (one file), read whole into a memory segment; its symbols file is read on demand."""
        path = directory / TABLE_FILE_V1
        if not path.exists() and (directory / LEGACY_TABLE_FILE).exists():
            raise ChunkTableError(f"{directory.parent}: chunk table written by an older ragbit; "
                                  "`ragbit index` rewrites it (without re-embedding)")
        try:
            with open(path, encoding="utf-8", newline="") as f:
                header = json.loads(f.readline())
                blob = f.read()
            if header.get("version") != TABLE_VERSION:
                raise ValueError(f"table version {header.get('version')}, this ragbit reads {TABLE_VERSION}")
            rows = header["files"]
            columns = {name: header[name] for name in _COLUMNS}
            lengths = header["text_length"]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise ChunkTableError(f"{path}: unreadable chunk table ({type(e).__name__}: {e})") from None
        n = sum(row[3] for row in rows)
        if any(len(col) != n for col in (*columns.values(), lengths)) or sum(lengths) != len(blob):
            raise ChunkTableError(f"{path}: file list, columns and texts disagree (truncated file?)")
        ends = list(accumulate(lengths))
        columns["text"] = [blob[e - k:e] for e, k in zip(ends, lengths)]
        part = MemorySegment()
        part.paths = [row[0] for row in rows]
        part.sha256 = [row[1] for row in rows]
        part.counts = [row[3] for row in rows]
        part.firsts = [0] + list(accumulate(part.counts))
        part.cols = columns
        part.symbol_source = lambda: _format_1_symbols(directory, part.paths)
        stamps = [tuple(row[4]) if len(row) > 4 else None for row in rows]
        return cls([part], [(0, j) for j in range(len(rows))], stamps)


def _format_1_symbols(directory: Path, paths: list[str]) -> list:
    """Format 1's symbols.json as records aligned with `paths`."""
    try:
        data = json.loads((directory / SYMBOLS_FILE_V1).read_text(encoding="utf-8"))
        files = data["files"] if data.get("version") == 1 else None
        if not isinstance(files, dict):
            raise ValueError("no file records")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise ChunkTableError(f"{directory / SYMBOLS_FILE_V1}: unreadable symbol table ({e})") from None
    return [files.get(p) or {} for p in paths]


def _link_or_copy(s, d) -> None:
    try:
        os.link(s, d)
    except OSError:
        shutil.copy2(s, d)
