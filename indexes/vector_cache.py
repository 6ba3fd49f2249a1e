"""Embedding vectors keyed by content hash, kept across index generations and interrupted runs.

Why: embedding is the slow part of indexing (minutes on a CPU). Re-indexing after editing three files should
embed three files' chunks, and a run killed at 90 % should resume at 90 %. So every batch of vectors is made
durable the moment it is computed, as an append-only shard, and looked up by the hash of the chunk text.

Layout of `directory`::

    <space>/                 one per (model_id, dim): sha1 of both, so another model never sees these vectors
      space.json             {"model_id", "dim"} for humans and as a cross-check
      <stamp>-<rand>.npy     vectors of one put(), float32 (rows, dim)
      <stamp>-<rand>.keys    {"model_id", "dim", "rows", "keys": [...]}: written LAST, so a shard exists only
                             once its vectors are complete on disk; a .npy without .keys is garbage

Shard files are written to a temp name, fsynced and renamed (os.replace), never modified afterwards. A
reader therefore sees complete shards only, and a row is always paired with the key written next to it.

Asked about a few keys (at most FEW_KEYS: a one-file re-index) before anything was loaded, the cache does not
build its key map (at 900k vectors: 3,500 shards of JSON, ~4 s); it searches the key files as bytes for the
keys' JSON form and reads only the shards that hold one.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from indexes.store import fsync_dir, write_atomic

FEW_KEYS = 256              # looked up by searching the key files, without loading every key
MAX_SCANS = 8               # searches of the key files before the whole key map is loaded instead
_SPACE_FILE = "space.json"
_VECTORS_EXT = ".npy"
_KEYS_EXT = ".keys"


def _write_npy_atomic(path: Path, array: np.ndarray) -> None:
    """An .npy file written through store.write_atomic (readers see the whole old file or the whole new one)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_atomic(path, buf.getvalue())


class VectorCache:
    """Content-hash -> vector store for one embedding model. Cheap to construct; reads shards on first use."""

    def __init__(self, directory: Path, model_id: str, dim: int):
        if dim <= 0:
            raise ValueError(f"vector dimension must be positive, got {dim}")
        self.model_id = model_id
        self.dim = int(dim)
        space = hashlib.sha1(f"{model_id}\0{self.dim}".encode()).hexdigest()[:16]
        self.directory = Path(directory) / space
        self._shards: list[np.ndarray] | None = None       # each (rows, dim) float32, memory-mapped
        self._where: dict[str, tuple[int, int]] = {}      # key -> (shard number, row)
        self._shard_stems: list[str] = []
        self._shard_numbers: dict[str, int] = {}
        self._complete = False                            # every shard read (else: only those _locate needed)
        self._absent: set[str] = set()                    # keys _locate found in no shard
        self._scans = 0

    # -- reading ------------------------------------------------------------------------------------------

    def _read_shard(self, stem: str) -> tuple[list[str], np.ndarray] | None:
        """(keys, vectors) of one committed shard, or None if it is incomplete, foreign or damaged."""
        try:
            meta = json.loads((self.directory / (stem + _KEYS_EXT)).read_text(encoding="utf-8"))
            keys = meta["keys"]
            if meta.get("model_id") != self.model_id or meta.get("dim") != self.dim:
                return None
            if not isinstance(keys, list) or len(keys) != meta.get("rows"):
                return None
            vectors = np.load(self.directory / (stem + _VECTORS_EXT), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if vectors.dtype != np.float32 or vectors.shape != (len(keys), self.dim):
            return None
        return keys, vectors

    def _load(self) -> None:
        if self._complete:
            return
        self._shards, self._where, self._shard_stems, self._shard_numbers = [], {}, [], {}
        self._absent = set()
        self._complete = True
        for stem in self._stems():
            shard = self._read_shard(stem)
            if shard is not None:
                self._add_shard(stem, *shard)

    def _add_shard(self, stem: str, keys: list[str], vectors: np.ndarray) -> None:
        number = len(self._shards)
        self._shards.append(vectors)
        self._shard_stems.append(stem)
        self._shard_numbers[stem] = number
        for row, key in enumerate(keys):
            self._where[key] = (number, row)

    def __len__(self) -> int:
        self._load()
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        self._load()
        return key in self._where

    def _stems(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name[: -len(_KEYS_EXT)] for p in self.directory.iterdir()
                      if p.name.endswith(_KEYS_EXT) and not p.name.startswith("."))

    def _locate(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(shard number, row) of those of a few `keys` that are cached. Without the full key map: each key file
        is searched as bytes for the keys' JSON form, and only a shard that holds one is read (and kept)."""
        self._scans += 1
        if self._scans > MAX_SCANS:                       # many small lookups: the key map is cheaper now
            self._load()
        if self._complete:
            return {k: self._where[k] for k in keys if k in self._where}
        self._shards = [] if self._shards is None else self._shards
        wanted = {k: json.dumps(k).encode() for k in keys if k not in self._where and k not in self._absent}
        for stem in self._stems():
            if not wanted:
                break
            if stem in self._shard_numbers:
                continue
            try:
                raw = (self.directory / (stem + _KEYS_EXT)).read_bytes()
            except OSError:
                continue
            if not any(needle in raw for needle in wanted.values()):
                continue
            shard = self._read_shard(stem)
            if shard is not None:
                self._add_shard(stem, *shard)
                wanted = {k: n for k, n in wanted.items() if k not in self._where}
        self._absent.update(wanted)
        return {k: self._where[k] for k in keys if k in self._where}

    def _where_of(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """key -> (shard number, row) for the cached ones of `keys`."""
        if len(keys) <= FEW_KEYS and not self._complete:
            return self._locate(keys)
        self._load()
        return self._where

    def has(self, keys: Sequence[str]) -> np.ndarray:
        """(len(keys),) bool: which keys are cached, without reading a vector."""
        where = self._where_of(keys)
        return np.fromiter((k in where for k in keys), dtype=bool, count=len(keys))

    def approximate_size(self) -> int:
        """Vectors in the cache, counted from the shards' file sizes (duplicates and debris included)."""
        row = 4 * self.dim
        return sum(max(0, p.stat().st_size - 128) // row for p in self.directory.glob("*" + _VECTORS_EXT)) \
            if self.directory.is_dir() else 0

    def get(self, keys: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """(vectors (len(keys), dim) float32, found flags). Rows of keys not found are zeros."""
        where = self._where_of(keys)
        out = np.zeros((len(keys), self.dim), dtype=np.float32)      # (n, dim)
        found = [False] * len(keys)
        by_shard: dict[int, tuple[list[int], list[int]]] = {}
        for i, key in enumerate(keys):
            hit = where.get(key)
            if hit is not None:
                dest, rows = by_shard.setdefault(hit[0], ([], []))
                dest.append(i)
                rows.append(hit[1])
                found[i] = True
        for shard, (dest, rows) in by_shard.items():
            source = self._shards[shard]
            if 2 * len(rows) >= len(source) and isinstance(source, np.memmap):
                # most of the shard: read it (and let it go) instead of faulting its pages into this process,
                # where a bulk read of every vector would keep the whole cache resident beside its copy
                source = np.load(self.directory / (self._shard_stems[shard] + _VECTORS_EXT), allow_pickle=False)
            out[dest] = source[rows]
        return out, found

    # -- writing ------------------------------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)   # private, like the index
            fsync_dir(self.directory.parent)
        space = self.directory / _SPACE_FILE
        if not space.exists():
            write_atomic(space, json.dumps({"model_id": self.model_id, "dim": self.dim}).encode())

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> str:
        stem = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        _write_npy_atomic(self.directory / (stem + _VECTORS_EXT), vectors)
        meta = {"model_id": self.model_id, "dim": self.dim, "rows": len(keys), "keys": keys}
        write_atomic(self.directory / (stem + _KEYS_EXT), json.dumps(meta).encode())   # commit point
        return stem

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors for keys; durable when this returns. Keys already cached are skipped."""
        vectors = np.asarray(vectors)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.dim}), got {vectors.shape}")
        if not all(isinstance(k, str) for k in keys):
            raise TypeError("vector cache keys must be strings")
        cached = self._where_of(keys)
        fresh: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in cached:
                fresh[key] = i                                          # last duplicate in the batch wins
        if not fresh:
            return
        new_keys = list(fresh)
        new_vectors = np.ascontiguousarray(vectors[list(fresh.values())], dtype=np.float32)   # (m, dim)
        self._ensure_dir()
        stem = self._write_shard(new_keys, new_vectors)
        self._shards = [] if self._shards is None else self._shards
        self._add_shard(stem, new_keys, new_vectors)
        self._absent.difference_update(new_keys)

    def compact(self, keep: set[str]) -> None:
        """Rewrite the cache as one shard holding only the cached keys in `keep`; drop everything else.

        The new shard is committed before any old file is removed, so a crash at any point leaves a cache
        with every kept vector (possibly duplicated, never lost or mismatched). Also removes debris of killed
        writers (temp files, vectors without keys), so call it while no other process writes this cache
        (the indexer holds the index lock).
        """
        self._load()
        kept = sorted(k for k in keep if k in self._where)
        if not self.directory.is_dir():
            return
        vectors, _ = self.get(kept)
        old = set(self._shard_stems)
        stem = self._write_shard(kept, vectors) if kept else None
        self._shards, self._complete = None, False    # drop the memory maps of the shards about to be removed
        for p in self.directory.iterdir():
            if p.name == _SPACE_FILE or (stem is not None and p.name.startswith(stem)):
                continue
            shard_stem, _, ext = p.name.partition(".")
            orphan = ("." + ext == _VECTORS_EXT and not (self.directory / (shard_stem + _KEYS_EXT)).exists())
            if shard_stem in old or orphan or p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
        fsync_dir(self.directory)
        self._load()
