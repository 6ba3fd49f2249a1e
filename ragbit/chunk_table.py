"""The chunk table of one index generation: which files were indexed (with their sha256) and their chunks.

Why columnar: the indexer reuses the previous generation's chunks for every unchanged file, and the searcher
maps index positions back to chunks, so the table is loaded on every `ragbit index` and every cold search,
and written on every index run. On Django (49k chunks) one JSON line and one `Chunk` object per chunk cost
~0.65 s to load and ~0.6 s to write, a quarter of a one-file re-index. Here each field is one list (a column),
copied a file's range at a time, and a `Chunk` object is only made when someone asks for one.

On disk it is one UTF-8 file: a JSON header line holding the file list and every column except the texts,
then all chunk texts concatenated (the header gives their lengths in characters). Position i in the BM25 and
dense indexes is chunk i. The content hash (the vector cache key) is stored, not recomputed: it is a function
of path, scope and text (`make_embed_text`), and the chunker's version is part of the index's chunk settings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from ragbit.errors import RagbitError
from ragbit.index_layout import LEGACY_TABLE_FILE, TABLE_FILE
from ragbit.indexing.chunking import Chunk, make_embed_text

TABLE_VERSION = 2
_COLUMNS = ("language", "scope", "start_line", "end_line", "content_hash")   # stored in the header

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


class ChunkTable:
    """Files (path -> FileEntry) and, in index order, one list per chunk field."""

    def __init__(self, files: list[FileEntry], language: list[str], scope: list[str], start_line: list[int],
                 end_line: list[int], content_hash: list[str], text: list[str]):
        self.files = files
        self.by_path = {f.path: f for f in files}
        self.path = list(chain.from_iterable(repeat(f.path, f.count) for f in files))   # (n,)
        self.language, self.scope, self.text = language, scope, text                    # (n,) each
        self.start_line, self.end_line, self.content_hash = start_line, end_line, content_hash

    # ------------------------------------------------------------------ building
    @classmethod
    def from_files(cls, per_file: list[tuple], previous: "ChunkTable | None" = None) -> "ChunkTable":
        """Build from (path, sha256, chunks[, stamp]) in index order. `chunks` None means: this file's chunks as
        they are in `previous` (an unchanged file), copied column by column without making `Chunk` objects."""
        files: list[FileEntry] = []
        cols: dict[str, list] = {name: [] for name in _COLUMNS + ("text",)}
        n = 0
        for path, sha, chunks, *stamp in per_file:
            if chunks is None:
                old = previous.by_path[path]
                for name, col in cols.items():
                    col.extend(getattr(previous, name)[old.first:old.first + old.count])
                count = old.count
            else:
                for name, col in cols.items():
                    col.extend(getattr(c, name) for c in chunks)
                count = len(chunks)
            files.append(FileEntry(path, sha, n, count, tuple(stamp[0]) if stamp and stamp[0] else None))
            n += count
        return cls(files, **cols)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.text)

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

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        header = {"version": TABLE_VERSION,
                  "files": [[f.path, f.sha256, f.first, f.count] + ([list(f.stamp)] if f.stamp else [])
                            for f in self.files],
                  **{name: getattr(self, name) for name in _COLUMNS},
                  "text_length": list(map(len, self.text))}
        # newline="": texts are written and read back character for character (no newline translation)
        with open(Path(directory) / TABLE_FILE, "w", encoding="utf-8", newline="") as out:
            out.write(json.dumps(header, ensure_ascii=False, separators=(",", ":")))   # one line: JSON escapes \n
            out.write("\n")
            out.write("".join(self.text))

    @classmethod
    def load(cls, directory: Path) -> "ChunkTable":
        path = Path(directory) / TABLE_FILE
        if not path.exists() and (Path(directory) / LEGACY_TABLE_FILE).exists():
            raise ChunkTableError(f"{Path(directory).parent}: chunk table written by an older ragbit; "
                                  "`ragbit index` rewrites it (without re-embedding)")
        try:
            with open(path, encoding="utf-8", newline="") as f:
                header = json.loads(f.readline())
                blob = f.read()
            if header.get("version") != TABLE_VERSION:
                raise ValueError(f"table version {header.get('version')}, this ragbit reads {TABLE_VERSION}")
            files = [FileEntry(*row[:4], tuple(row[4]) if len(row) > 4 else None) for row in header["files"]]
            columns = {name: header[name] for name in _COLUMNS}
            lengths = header["text_length"]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise ChunkTableError(f"{path}: unreadable chunk table ({type(e).__name__}: {e})") from None
        n = sum(f.count for f in files)
        if any(len(col) != n for col in (*columns.values(), lengths)) or sum(lengths) != len(blob):
            raise ChunkTableError(f"{path}: file list, columns and texts disagree (truncated file?)")
        ends = list(accumulate(lengths))
        text = [blob[e - k:e] for e, k in zip(ends, lengths)]
        return cls(files, text=text, **columns)
