"""Update the previous generation's IVF dense index in place of rebuilding it, when few chunks changed.

Why: every commit used to rebuild the whole dense index. Above 100k vectors that index is IVF, and a rebuild
(k-means training, then assigning every vector) takes minutes at 1M vectors on a laptop: a one-file re-index of
a monorepo cost minutes. The IVF index keeps its trained centroids; this removes the vectors of chunks that are
gone and adds those of new chunks (FAISS `remove_ids` / `add_with_ids`).

Ids: a vector's FAISS id is its "slot", stable across generations; `dense_ids.npy` maps slot -> chunk position in
this generation's chunk table, -1 for a slot whose vector was removed. A fresh build has slots 0..n-1 (the
rows), so readers need no special case: a search returns slots, and `dense_ids[slot]` is the chunk.

A chunk keeps its slot when a chunk with the same content hash existed before (chunks are matched by hash, in
order, so duplicated texts pair up one to one). Above MAX_CHANGED of the index changed, or when the slots
grow past twice the live vectors, the index is rebuilt (fresh centroids, compact slots).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_CHANGED = 0.2            # share of vectors removed + added above which a rebuild is cheaper and keeps quality


def updated_ivf(prev_dir: Path | None, prev_manifest: dict | None, prev_hashes, hashes, vectors: np.ndarray,
                dense_file: str, ids_file: str):
    """(DenseIndex, slot -> chunk position array, recall recorded at the last build) or None (rebuild).

    `prev_hashes` / `hashes`: content hash per chunk position of the previous / new chunk table; `vectors`:
    (len(hashes), dim), every chunk's vector."""
    from indexes.dense import DenseIndex, DenseIndexError
    info = (prev_manifest or {}).get("dense_index") or {}
    if prev_dir is None or info.get("kind") != "ivf" or not prev_manifest.get("dense_complete"):
        return None
    try:
        prev_slots = np.load(Path(prev_dir) / ids_file)                      # (n_slots,) previous chunk positions
        index = DenseIndex.load(Path(prev_dir) / dense_file)
    except (OSError, ValueError, DenseIndexError):
        return None
    if index.kind != "ivf" or index.dim != vectors.shape[1]:
        return None

    free: dict[str, list[int]] = {}                                           # hash -> new positions not yet placed
    for pos in range(len(hashes) - 1, -1, -1):
        free.setdefault(hashes[pos], []).append(pos)
    slots = np.full(len(prev_slots), -1, dtype=np.int64)
    removed = []
    for slot, old_pos in enumerate(prev_slots.tolist()):
        if old_pos < 0:
            continue
        waiting = free.get(prev_hashes[old_pos])
        if waiting:
            slots[slot] = waiting.pop()
        else:
            removed.append(slot)
    added = sorted(p for waiting in free.values() for p in waiting)
    n = len(hashes)
    if len(removed) + len(added) > MAX_CHANGED * n or len(slots) + len(added) > 2 * n:
        return None
    new_slots = np.arange(len(slots), len(slots) + len(added), dtype=np.int64)
    index.update(np.asarray(removed, dtype=np.int64), vectors[added], new_slots)
    return index, np.concatenate([slots, np.asarray(added, dtype=np.int64)]), info.get("recall_at_10")
