"""Carry the previous generation's IVF dense index into the next one instead of rebuilding it, when few chunks
changed: as layers (the base file hard-linked, new vectors beside it) or folded into a new base.

Why: every commit used to rebuild the whole dense index. Above 100k vectors that index is IVF, and a rebuild
(k-means training, then assigning every vector) takes minutes at 1M vectors on a laptop. Updating the IVF index
in place (FAISS `remove_ids` / `add_with_ids`) keeps its centroids but still reads and rewrites the whole file
(1.5 GB at 1M x 384) at every commit. So a small commit leaves the base file as it is (hard-linked into the new
generation) and writes only the vectors added since the base (`dense_delta.npy`, searched exactly) and the ids
removed since (-1 in `dense_ids.npy`); `indexes.dense.LayeredDense` searches both. When the layers pass
DELTA_SHARE of the index they are folded into the base in place; above MAX_CHANGED of the index changed in one
commit, or when the ids grow past twice the live vectors, the index is rebuilt (fresh centroids, compact ids).

Ids: a vector's FAISS id is its "slot", stable across generations; `dense_ids.npy` maps slot -> chunk position in
this generation's chunk table, -1 for a slot whose vector was removed. Slots below the manifest's `base_slots`
are in the FAISS file; slot base_slots + j is row j of the delta. A fresh build has slots 0..n-1 (the rows).

A chunk keeps its slot when its file is unchanged, or when a chunk with the same content hash left a slot (the
changed files' chunks are matched by hash, in order, so duplicated texts pair up one to one).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_CHANGED = 0.2            # share of vectors removed + added above which a rebuild is cheaper and keeps quality
DELTA_SHARE = 0.05           # layers (vectors added + removed since the base) kept before folding into the base


@dataclass
class DenseUpdate:
    index: object | None      # a new base (DenseIndex) to save, or None: the previous base file is kept as is
    delta: np.ndarray         # (m, dim) vectors added since the base: slot base_slots + j is row j
    base_slots: int
    slots: np.ndarray         # slot -> chunk position, -1 for a removed vector
    recall: float | None      # recall@10 recorded when the base was built
    base_dead: int            # removed slots below base_slots that the base file no longer holds

    @property
    def live(self) -> int:
        return int(np.count_nonzero(self.slots >= 0))


def _slot_matching(prev_slots: np.ndarray, prev_hashes, hashes, same_as: np.ndarray
                   ) -> tuple[np.ndarray, list[int], list[int]]:
    """(slot -> new position or -1, slots whose vector is gone, new positions without a slot).

    Chunks of unchanged files keep their slot by position (`same_as`: new position -> previous position or -1),
    in numpy; only the rest (the changed files' chunks, and the slots they leave) are matched by content hash."""
    prev_to_new = np.full(len(prev_hashes), -1, dtype=np.int64)
    moved = np.flatnonzero(same_as >= 0)
    prev_to_new[same_as[moved]] = moved
    live = prev_slots >= 0
    slots = np.where(live, prev_to_new[np.where(live, prev_slots, 0)], -1)       # (n_slots,)
    placed = np.zeros(len(hashes), dtype=bool)
    placed[slots[slots >= 0]] = True
    free: dict[str, list[int]] = {}                                           # hash -> new positions not yet placed
    for pos in np.flatnonzero(~placed)[::-1].tolist():
        free.setdefault(hashes[pos], []).append(pos)
    removed = []
    for slot in np.flatnonzero(live & (slots < 0)).tolist():
        waiting = free.get(prev_hashes[int(prev_slots[slot])])
        if waiting:
            slots[slot] = waiting.pop()
        else:
            removed.append(slot)
    return slots, removed, sorted(p for waiting in free.values() for p in waiting)


def updated_ivf(prev_dir: Path | None, prev_manifest: dict | None, prev_hashes, hashes, same_as, vectors,
                dense_file: str, ids_file: str, delta_file: str) -> DenseUpdate | None:
    """What the new generation's dense index is made of, or None (build afresh).

    `prev_hashes` / `hashes`: content hash per chunk position of the previous / new chunk table; `same_as`: the
    previous position of each new chunk of an unchanged file, else -1; `vectors[rows]`
    gives the vectors of new chunk positions (only the added ones are asked for, unless layers are folded)."""
    from indexes.dense import DenseIndex, DenseIndexError
    info = (prev_manifest or {}).get("dense_index") or {}
    if prev_dir is None or info.get("kind") != "ivf" or not prev_manifest.get("dense_complete"):
        return None
    try:
        prev_slots = np.load(Path(prev_dir) / ids_file)                      # (n_slots,) previous chunk positions
        base_slots = int(info.get("base_slots", len(prev_slots)))
        delta = (np.load(Path(prev_dir) / delta_file) if base_slots < len(prev_slots)
                 else np.zeros((0, vectors.shape[1]), dtype=np.float32))       # (n_slots - base_slots, dim)
    except (OSError, ValueError, TypeError):
        return None
    if delta.ndim != 2 or delta.shape != (len(prev_slots) - base_slots, vectors.shape[1]) \
            or (len(prev_slots) and int(prev_slots.max()) >= len(prev_hashes)):
        return None

    slots, removed, added = _slot_matching(prev_slots, prev_hashes, hashes, same_as)
    n = len(hashes)
    if len(removed) + len(added) > MAX_CHANGED * n or len(slots) + len(added) > 2 * n:
        return None
    new_slots = np.arange(len(slots), len(slots) + len(added), dtype=np.int64)
    all_slots = np.concatenate([slots, np.asarray(added, dtype=np.int64)])
    new_vectors = np.asarray(vectors[np.asarray(added, dtype=np.int64)], dtype=np.float32).reshape(-1, delta.shape[1])
    layered = len(all_slots) - base_slots + int(np.count_nonzero(all_slots[:base_slots] < 0)) \
        - int(info.get("base_dead", 0))
    if layered <= DELTA_SHARE * n:                     # the base file stays: only the layers are written
        return DenseUpdate(None, np.concatenate([delta, new_vectors]), base_slots, all_slots, info.get("recall_at_10"),
                           int(info.get("base_dead", 0)))

    # fold the layers into the base: drop every removed slot, add the delta's live rows and the new vectors
    try:
        index = DenseIndex.load(Path(prev_dir) / dense_file)
    except (OSError, DenseIndexError):
        return None
    if index.kind != "ivf" or index.dim != delta.shape[1]:
        return None
    gone = np.flatnonzero(all_slots[:base_slots] < 0)
    delta_rows = np.flatnonzero(slots[base_slots:] >= 0)
    index.update(gone, np.concatenate([delta[delta_rows], new_vectors]),
                 np.concatenate([base_slots + delta_rows, new_slots]))
    return DenseUpdate(index, np.zeros((0, delta.shape[1]), dtype=np.float32), len(all_slots), all_slots,
                       info.get("recall_at_10"), int(np.count_nonzero(all_slots < 0)))
