"""Chunk many files on every core: a process pool over files, for big (first or re-chunk-all) index runs.

Why processes: chunking is Python plus tree-sitter under the GIL, and files are independent. Why `fork` and
a size threshold: forked workers inherit the loaded parsers and the token counter as they are (nothing to
import or pickle, ~50 ms to start), and below `MIN_FILES` the pool costs more than it saves. Where fork is not
the safe default (macOS, Windows) files are chunked in this process. The chunks are identical either way and
come back in input order.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from typing import Sequence

from ragbit.indexing.chunking import Chunk, chunk_file_with_symbols
from ragbit.config import ChunkConfig

MIN_FILES = 200          # fewer files to chunk: one process
BATCH = 16               # files per task: amortises pickling, still balances the two halves of a repository

_worker: dict = {}       # per worker process: ChunkConfig and token counter (inherited through fork)


def usable_workers(requested: int) -> int:
    """`requested` processes, or one per core this process may run on when 0."""
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


def _init(cfg: ChunkConfig, count_tokens) -> None:
    """Runs first in each forked worker. SIGTERM goes back to its default: a fork inherits the parent's Python
    handlers (uvicorn's in `ragbit serve` / `watch` only set a flag), and `Pool.terminate` ends a worker that has not
    yet taken its stop signal with SIGTERM while it holds the task queue's lock; a worker that kept such a handler
    went on waiting for that lock, and the pool's exit hung."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker["cfg"], _worker["counter"] = cfg, count_tokens


def _chunk_batch(files: list[tuple[str, str]]) -> list[tuple[list[Chunk], dict | None]]:
    return [chunk_file_with_symbols(path, text, _worker["cfg"], count_tokens=_worker["counter"])
            for path, text in files]


def chunk_files(files: Sequence[tuple[str, str]], cfg: ChunkConfig, count_tokens=None,
                workers: int = 0) -> list[tuple[list[Chunk], dict | None]]:
    """`chunk_file_with_symbols` for each (path, text): (chunks, symbol record), in order, on `workers`
    processes (0: one per core)."""
    n = min(usable_workers(workers), max(1, len(files) // BATCH))
    if n < 2 or len(files) < MIN_FILES or sys.platform != "linux":
        return [chunk_file_with_symbols(path, text, cfg, count_tokens=count_tokens) for path, text in files]
    batches = [list(files[i:i + BATCH]) for i in range(0, len(files), BATCH)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(n, initializer=_init, initargs=(cfg, count_tokens)) as pool:
        return [chunks for batch in pool.imap(_chunk_batch, batches) for chunks in batch]
