"""Finish an index in the background: the embedding half of `ragbit index`, in a detached process.

Why: a first `ragbit query` on a large repository would otherwise wait for every chunk to go through the
embedding model before it answers anything (Django 5.1: 59k chunks, about 7 minutes on 2 cores). The chunk table
and BM25 are committed in seconds, so the question is answered from them at once (hybrid search over the vectors
that exist, keyword search for the rest), while a detached process embeds the rest and commits the full dense
index. Later questions use it as soon as it is committed: readers always open the newest generation.

The process is `python -m ragbit.indexing.background CONFIG.json` (started through ragbit/child_process.py, so that
it never imports the repository's own packages), with the caller's whole configuration saved beside the index
(`RagbitConfig.to_dict`), so it indexes with exactly the settings of the question that started it.
It keeps out of the way of the questions asked meanwhile: while one is being answered (`answering()`: a marker
file named after the answering process) it waits between pieces of PIECE chunks, and otherwise it runs only on
idle cores (SCHED_IDLE). Both matter: at idle priority alone, the model's caches and memory traffic still slowed a
1,600-token prompt from 7.4 to 11.3 s (Django, Emerald Rapids, 2 cores); paused, the prompt runs as fast as without
it. A marker whose process is gone is removed and ignored, so a killed question never stalls the index. It holds the
index's writer lock while it works; a second start while it runs finds the lock taken and ends at
once. What it does goes to BACKGROUND_LOG in the index directory: one line when it starts, one when it ends
(or the error that stopped it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from indexes.store import write_atomic
from ragbit.child_process import module_command
from ragbit.config import RagbitConfig
from ragbit.index_layout import ANSWERING_PREFIX, BACKGROUND_CONFIG, BACKGROUND_LOG, BACKGROUND_PID

NICENESS = 10            # where SCHED_IDLE is not available: below the foreground's priority
PIECE = 64               # chunks embedded between two looks for a question being answered (~0.4 s on 2 cores)
POLL_S = 0.1             # how often a paused indexer looks again


def start(cfg: RagbitConfig) -> int:
    """Start the detached indexer for `cfg`; its pid. It outlives the caller (its own session, no terminal)."""
    index_dir = Path(cfg.index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    config_path = index_dir / BACKGROUND_CONFIG
    write_atomic(config_path, json.dumps(cfg.to_dict()).encode("utf-8"))      # private, like the rest of the index
    # the child imports this very ragbit, whatever put it on our path (an editable install, a checkout, tests)
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    with open(index_dir / BACKGROUND_LOG, "a", encoding="utf-8") as log:
        child = subprocess.Popen(module_command("ragbit.indexing.background", str(config_path)),
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 cwd=str(cfg.repo), start_new_session=True)
    write_atomic(index_dir / BACKGROUND_PID, str(child.pid).encode("ascii"))
    return child.pid


@contextmanager
def answering(index_dir: str | Path) -> Iterator[None]:
    """While this block runs, a background indexer of `index_dir` waits (see the module docstring)."""
    marker = Path(index_dir) / f"{ANSWERING_PREFIX}{os.getpid()}"
    try:
        marker.touch()
    except OSError:                                # a read-only index: nothing runs there to pause
        yield
        return
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def wait_while_answering(index_dir: Path) -> float:
    """Sleep while a live process holds an answering marker in `index_dir`; seconds waited."""
    waited = 0.0
    while True:
        live = False
        for marker in index_dir.glob(ANSWERING_PREFIX + "*"):
            try:
                os.kill(int(marker.name[len(ANSWERING_PREFIX):]), 0)
                live = True
            except ProcessLookupError:
                marker.unlink(missing_ok=True)     # its question was killed: nothing to wait for
            except (ValueError, PermissionError):
                continue
        if not live:
            return waited
        time.sleep(POLL_S)
        waited += POLL_S


class _Yielding:
    """The embedder, fed PIECE chunks at a time, each after `wait_while_answering`. (No `embed_batches`: the
    indexer then calls `embed` once per flush, and the pieces are cut here.)"""

    embed_batches = None

    def __init__(self, inner, index_dir: Path) -> None:
        self.inner, self.index_dir, self.waited = inner, index_dir, 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, texts, progress: bool = False):
        import numpy as np
        pieces = []
        for start in range(0, len(texts), PIECE):
            self.waited += wait_while_answering(self.index_dir)
            pieces.append(self.inner.embed(texts[start:start + PIECE], progress=False))
        return np.concatenate(pieces) if pieces else self.inner.embed(texts, progress=False)


def _step_aside() -> str:
    """Run only on cores nothing else wants (Linux SCHED_IDLE, inherited by the model's threads), else at nice
    NICENESS: the answer being generated meanwhile keeps the cores. Set before any thread starts."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "idle cores only"
    except (AttributeError, OSError):
        pass
    try:
        os.nice(NICENESS)
        return f"nice {NICENESS}"
    except OSError:
        return "normal priority"


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def main(argv: list[str]) -> int:
    from indexes.errors import IndexesError
    from indexes.store import IndexLockedError
    from ragbit.errors import RagbitError
    from ragbit.indexing.indexer import index_repository

    try:
        cfg = RagbitConfig.from_dict(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, RagbitError) as e:
        _log(f"error: cannot read the saved configuration {argv[0]}: {e}")
        return 1
    priority = _step_aside()
    _log(f"embedding the rest of the index of {cfg.repo} (pid {os.getpid()}, {priority})")
    from ragbit.indexing.embeddings import Embedder
    embedder = _Yielding(Embedder(cfg.embed), Path(cfg.index_dir))
    try:
        report = index_repository(cfg, progress=False, embedder=embedder)
    except IndexLockedError:
        _log("another process is writing this index; it will finish the job")
        return 0
    except (RagbitError, IndexesError, OSError) as e:
        _log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        _log("interrupted; the vectors embedded so far are kept for the next run")
        return 1
    _log(f"done: {report.chunks_embedded} chunks embedded in {report.timings.get('total', 0.0):.1f} s "
         f"({embedder.waited:.1f} s of it waiting for answers); the full index is committed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
