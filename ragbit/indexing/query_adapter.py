"""A learned linear map from a question's vector to the code it asks about, applied before dense search.

Why: all-MiniLM-L6-v2 was trained on sentence pairs, not on questions paired with code. A short question ("Load a
template by name and return it") lands nearer to prose that repeats its words (docs, other docstrings, comments)
than to the function that does it. A 384 x 384 matrix `W`, trained on (first docstring sentence -> the same
function with its docstring removed) pairs from Python packages that are not in the development sets, moves the
question towards code. Only questions are mapped (`normalise(W @ q)`): chunk vectors, the vector cache and every
existing index stay as they are, and the map costs one 384 x 384 product per search.

How it was made: `benchmarks/train_query_adapter.py` (the packages, the objective and the figures are recorded in
the `.json` file beside each matrix). An adapter belongs to one vector space (one embedding model); a model
without one is searched with its raw question vectors. `[embed] query_adapter = false` turns it off.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

ADAPTER_DIR = Path(__file__).resolve().parent / "query_adapters"


class QueryAdapterError(ValueError):
    """An adapter file that exists but cannot be used; the message is one line for the user."""


def adapter_path(model_id: str) -> Path:
    """Where the adapter of a vector space's base model lives ("org/name" -> "org--name.npy")."""
    return ADAPTER_DIR / (model_id.replace("/", "--") + ".npy")


@lru_cache(maxsize=4)
def load_adapter(model_id: str, dim: int) -> np.ndarray | None:
    """float32 (dim, dim) map of `model_id`'s question vectors, or None when the model has none."""
    path = adapter_path(model_id)
    if not path.is_file():
        return None
    try:
        W = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise QueryAdapterError(f"unreadable query adapter {path}: {e}; reinstall ragbit or set "
                                "[embed] query_adapter = false") from None
    if W.shape != (dim, dim) or not np.isfinite(W).all():
        raise QueryAdapterError(f"query adapter {path} has shape {W.shape}, the model's vectors have {dim} "
                                "dimensions; reinstall ragbit or set [embed] query_adapter = false")
    return np.ascontiguousarray(W, dtype=np.float32)


def adapt(W: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`W @ vector`, back to unit length (dense search compares by inner product)."""
    v = W @ vector
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else vector).astype(np.float32)


def adapter_info(model_id: str) -> dict:
    """What the adapter's `.json` records about how it was trained (empty without one)."""
    meta = adapter_path(model_id).with_suffix(".json")
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
