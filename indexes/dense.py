"""Dense (embedding) search backed by FAISS.

Vectors are L2-normalised by the caller, so inner product is cosine similarity. Three kinds:

- "flat": exact brute force (IndexFlatIP). A chunk index of a codebase is usually tens of thousands of
  vectors; brute force over 50k x 384 float32 is ~75 MB of memory traffic, a few ms: exact and simplest.
- "hnsw": graph search (IndexHNSWFlat, inner product). No training; high recall; for large corpora.
- "ivf": inverted lists (IndexIVFFlat, nlist ~ sqrt(n)), trained on the vectors themselves; cheap to build.

"auto" picks flat below FLAT_MAX vectors and ivf above, by measurement (benchmarks/bench_scale.py dense, real
MiniLM vectors of 15 code corpora resampled with noise, 200 queries, one thread per query; AMD EPYC Zen4, 2
shared cores). Query p50: flat 16 ms at 50k, 20 ms at 100k, 200 ms at 1M (linear: at 100k the exact scan is
the most a 50 ms search can afford); ivf 1.2 ms at 100k and 38 ms at 1M, hnsw 0.4 ms at 100k. Recall@10
against exact: ivf 0.999 / 1.000, hnsw 0.998. Build: ivf 19 s at 100k and 152 s at 1M, hnsw 61 s at 100k
(the index is rebuilt at every commit, so build time is re-index time): ivf. Search parameters (efSearch, nprobe) are set from
the index size both at build and at load time, so a loaded index searches exactly like the one built.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
from pathlib import Path

import faiss
import numpy as np

from indexes.errors import IndexesError

KINDS = ("auto", "flat", "hnsw", "ivf")
FLAT_MAX = 100_000          # auto: exact search below this many vectors
BUILD_BATCH = 65_536        # vectors read and added at a time by build_in_batches
HNSW_M = 32                 # graph degree: recall/memory trade-off, FAISS' usual choice for ~384-d vectors
HNSW_EF_CONSTRUCTION = 40    # FAISS' default: build time matters on a laptop; recall comes from efSearch
HNSW_EF_SEARCH = 96         # >= k for every k we ask; recall >= 0.95 at k=10 on random 64-d data


class DenseIndexError(IndexesError, ValueError):
    """Bad vectors or an unreadable index file; the message is one line for the user."""


def _empty_index(kind: str, n: int, dim: int, training) -> tuple[faiss.Index, str]:
    """(index with search parameters set, resolved kind) for n vectors, vectors not added yet; IVF is trained on
    `training(sample_size)`: at most that many of the vectors (FAISS samples the rest away itself)."""
    if kind == "auto":
        kind = "flat" if n < FLAT_MAX else "ivf"
    if kind == "ivf" and n == 0:
        kind = "flat"       # nothing to train on; an empty flat index answers the same (nothing)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    else:
        nlist = max(1, int(round(math.sqrt(n))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.min_points_per_centroid = 1        # small corpora: no warning spam, still trains
        index.train(training(index.cp.max_points_per_centroid * nlist))   # the wrapper keeps `quantizer` alive
    _set_search_params(index, kind)
    return index, kind


def _checked(vectors: np.ndarray, dim: int) -> np.ndarray:
    """(n, dim) float32, C-contiguous and finite, or DenseIndexError."""
    xb = np.ascontiguousarray(vectors, dtype=np.float32)
    if xb.ndim != 2 or xb.shape[1] != dim:
        raise DenseIndexError(f"vectors must be a 2-d array (n, {dim}), got shape {xb.shape}")
    if not np.isfinite(xb).all():
        raise DenseIndexError("vectors contain NaN or infinity")
    return xb


def _ivf_nprobe(nlist: int) -> int:
    # Probe ~1/8 of the lists (at least 8): high recall even on unclustered data, still ~8x less work than flat.
    return min(nlist, max(8, nlist // 8))


def _kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(index, faiss.IndexFlatIP):
        return "flat"
    raise DenseIndexError(f"unsupported FAISS index type {type(index).__name__}")


@contextlib.contextmanager
def _one_thread():
    """One query runs on one OpenMP thread. FAISS parallelises even a single query's scan; on a busy 2-core
    machine the threads wait on each other: flat search over 100k x 384 took p50 120 ms with 2 threads and
    19 ms with 1 (AMD EPYC Zen4, shared, benchmarks/bench_scale.py). Builds keep every thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _query_row(query: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))   # (1, dim)
    if q.shape[1] != dim:
        raise DenseIndexError(f"query has dimension {q.shape[1]}, index has {dim}")
    return q


def _set_search_params(index: faiss.Index, kind: str) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivf":
        index.nprobe = _ivf_nprobe(index.nlist)


class DenseIndex:
    """Top-k inner-product search over a fixed set of vectors; positions are row numbers of the build input."""

    def __init__(self, index: faiss.Index, kind: str):
        self._index = index
        self.kind = kind
        self.dim: int = index.d

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "auto") -> "DenseIndex":
        if kind not in KINDS:
            raise DenseIndexError(f"dense index kind must be one of {', '.join(KINDS)}, not {kind!r}")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] == 0:
            raise DenseIndexError(f"vectors must be a 2-d array (n, dim) with dim > 0, got shape {vectors.shape}")
        xb = np.ascontiguousarray(vectors, dtype=np.float32)     # (n, dim)
        if not np.isfinite(xb).all():
            raise DenseIndexError("vectors contain NaN or infinity")
        n, dim = xb.shape
        index, kind = _empty_index(kind, n, dim, lambda sample_size: xb)
        if n:
            index.add(xb)
        return cls(index, kind)

    @classmethod
    def build_in_batches(cls, rows, n: int, dim: int, kind: str = "auto", batch: int | None = None,
                         k: int = 10, queries: int = 200) -> tuple["DenseIndex", float]:
        """(index, recall@k) as `build` + `recall_at` give for the vectors `rows(positions)` (sorted int64 array ->
        (len, dim) float32), without ever holding all n of them: at 1M x 384 the input alone is 1.5 GB beside
        the index's own copy. IVF trains on a sample of FAISS' own size (max_points_per_centroid per list); the
        exact neighbours behind the recall figure are merged batch by batch."""
        if kind not in KINDS:
            raise DenseIndexError(f"dense index kind must be one of {', '.join(KINDS)}, not {kind!r}")
        batch = batch or BUILD_BATCH
        rng = np.random.default_rng(0)
        index, kind = _empty_index(kind, n, dim, lambda size: _checked(
            rows(np.sort(rng.choice(n, size=min(n, size), replace=False))), dim))
        for a in range(0, n, batch):
            index.add(_checked(rows(np.arange(a, min(n, a + batch), dtype=np.int64)), dim))
        built = cls(index, kind)
        if kind == "flat" or n == 0:
            return built, 1.0
        k = min(k, n)
        picked = np.random.default_rng(0).choice(n, size=min(queries, n), replace=False)     # recall_at's queries
        xq = _checked(rows(np.sort(picked)), dim)                                             # (q, dim)
        best_d = np.full((len(xq), k), -np.inf, dtype=np.float32)
        best_i = np.full((len(xq), k), -1, dtype=np.int64)
        for a in range(0, n, batch):                       # exact top-k, merged batch by batch
            d, i = faiss.knn(xq, _checked(rows(np.arange(a, min(n, a + batch), dtype=np.int64)), dim), k,
                             metric=faiss.METRIC_INNER_PRODUCT)
            d_all, i_all = np.concatenate([best_d, d], axis=1), np.concatenate([best_i, np.where(i >= 0, i + a, -1)], 1)
            top = np.argsort(-d_all, axis=1, kind="stable")[:, :k]
            best_d, best_i = np.take_along_axis(d_all, top, 1), np.take_along_axis(i_all, top, 1)
        _, approx = index.search(xq, k)
        return built, float(np.mean([len(set(a[a >= 0]) & set(e)) / k for a, e in zip(approx, best_i)]))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, query: np.ndarray, k: int, only: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Best-first (position, inner product) of the k nearest vectors to `query` (dim,); with `only` (a
        bitmap of ids, uint8, bit i of byte i >> 3 = id i, as np.packbits(..., bitorder="little")), among those
        ids alone: FAISS filters during the scan, so k are still found.

        Fewer than k results when the index is smaller, or for "ivf" when the probed lists hold fewer than k
        vectors (IVF only looks at nprobe of its nlist lists)."""
        q = _query_row(query, self.dim)
        k = min(k, len(self))
        if k <= 0:
            return []
        params = None
        if only is not None:
            sel = faiss.IDSelectorBitmap(len(only) * 8, faiss.swig_ptr(only))     # `only` outlives the search
            params = (faiss.SearchParametersIVF(sel=sel, nprobe=self._index.nprobe) if self.kind == "ivf"
                      else faiss.SearchParametersHNSW(sel=sel, efSearch=HNSW_EF_SEARCH) if self.kind == "hnsw"
                      else faiss.SearchParameters(sel=sel))
        with _one_thread():
            scores, ids = self._index.search(q, k, params=params)      # (1, k) each; id -1 = fewer found
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def update(self, remove_ids: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> None:
        """IVF only: remove the vectors with ids `remove_ids`, add `vectors` (n, dim) under `ids` (n,). A search
        returns these ids as positions; the trained centroids stay, so this costs the changed vectors only."""
        if self.kind != "ivf":
            raise DenseIndexError(f"only an ivf index can be updated in place, not {self.kind}")
        if len(remove_ids):
            self._index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(remove_ids, dtype=np.int64)))
        xb = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(xb):
            if not np.isfinite(xb).all():
                raise DenseIndexError("vectors contain NaN or infinity")
            self._index.add_with_ids(xb, np.ascontiguousarray(ids, dtype=np.int64))

    def recall_at(self, vectors: np.ndarray, k: int = 10, queries: int = 200, seed: int = 0) -> float:
        """Mean share of the exact top-k that this index returns, over `queries` of the indexed `vectors`
        (the build input, in row order) used as queries: 1.0 for "flat". What `ragbit status` reports, so an
        approximate index says what it costs in recall on this very corpus."""
        n = len(self)
        if self.kind == "flat" or n == 0:
            return 1.0
        k = min(k, n)
        rows = np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False)
        xq = np.ascontiguousarray(vectors[rows], dtype=np.float32)                     # (q, dim)
        _, exact = faiss.knn(xq, np.ascontiguousarray(vectors, dtype=np.float32), k,
                             metric=faiss.METRIC_INNER_PRODUCT)                        # (q, k) row ids
        _, approx = self._index.search(xq, k)                                          # (q, k)
        return float(np.mean([len(set(a[a >= 0]) & set(e)) / k for a, e in zip(approx, exact)]))

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            faiss.write_index(self._index, str(path))
        except RuntimeError as e:           # faiss reports a failed write (e.g. disk full) as a RuntimeError
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else "write failed"
            code = errno.ENOSPC if "No space left" in reason else errno.EIO
            raise OSError(code, os.strerror(code), str(path)) from None

    @classmethod
    def load(cls, path: Path, mmap: bool = False) -> "DenseIndex":
        """The saved index. mmap=True maps its vectors (flat codes, IVF lists, HNSW storage) from the file
        instead of reading them (FAISS IO_FLAG_MMAP_IFC): a searcher over 1M vectors (1.5 GB at dim 384)
        starts without reading them and shares the page cache with every other reader. Read-only: an index
        to be updated is loaded without it."""
        path = Path(path)
        if not path.is_file():
            raise DenseIndexError(f"{path}: dense index file not found")
        try:
            # returned already downcast to its concrete type
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
            raise DenseIndexError(f"{path}: cannot read dense index ({first})") from None
        kind = _kind_of(index)
        _set_search_params(index, kind)
        return cls(index, kind)


class LayeredDense:
    """A saved index (the base, never rewritten by a small commit) plus the vectors added since, searched
    exactly, minus the ids removed since.

    Why: an in-place IVF update still rewrites the whole index file at every commit (1.5 GB at 1M vectors of
    dim 384) and reads it first. With layers a one-file commit hard-links the base and writes only its few
    new vectors; the layers are folded into the base when they grow (ragbit/indexing/dense_update.py).
    Ids: base ids as the base returns them; delta row j has id first_id + j."""

    def __init__(self, base: DenseIndex, delta: np.ndarray, first_id: int, live: np.ndarray):
        """`live`: (first_id + len(delta),) bool, False for an id removed since the base was written."""
        self.base, self.kind, self.dim = base, base.kind, base.dim
        self._delta = np.asarray(delta, dtype=np.float32).reshape(-1, base.dim)          # (m, dim)
        self._first = int(first_id)
        live = np.asarray(live, dtype=bool)
        if live.shape != (self._first + len(self._delta),):
            raise DenseIndexError(f"{len(live)} live flags for {self._first} + {len(self._delta)} ids")
        base_live = live[:self._first]
        self._only = None if base_live.all() else np.packbits(base_live, bitorder="little")
        self._live_delta = np.flatnonzero(live[self._first:])
        self._n = len(base) - int((~base_live).sum()) + len(self._live_delta)

    def __len__(self) -> int:
        return self._n

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Best-first (id, inner product) over the base and the delta: the base's approximate top k, the
        delta's exact top k, merged."""
        q = _query_row(query, self.dim)
        hits = self.base.search(q[0], k, only=self._only)
        if len(self._live_delta):
            scores = self._delta[self._live_delta] @ q[0]                                # (live m,)
            best = np.argsort(-scores, kind="stable")[:k]
            hits += [(self._first + int(self._live_delta[r]), float(scores[r])) for r in best]
        return sorted(hits, key=lambda h: -h[1])[:k]
