"""`ragbit index --ray [ADDRESS]`: chunking and embedding as Ray Data stages, on a cluster or a local Ray.

Why Ray Data and not a pool of our own: it already schedules batches over the machines of a cluster, streams
them back as they finish, restarts a worker process that dies and retries the batches it held. The pattern is
the one the Ray docs and LlamaIndex's Ray ingestion use: `map_batches` with a callable class, so each worker
process loads its tokenizer or embedding model once (in `__init__`) and then serves many batches.

What stays on the driver (this process), so a cluster run produces exactly the index a local run produces:
the walk, the content-hash vector cache (only chunks whose vector is not cached are sent out), the chunk
table (built from the chunks in walk order, whatever order the batches return in) and the atomic commit.
Batches are keyed (file position, chunk content hash), so a batch retried after a worker died overwrites
nothing and duplicates nothing: a repeated key is dropped, and a missing one stops the run with an error
instead of committing a partial index.

`ray` is an optional extra (`pip install 'ragbit[ray]'`); nothing here imports it at module level.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ragbit.errors import RagbitError

INSTALL_HINT = "ragbit index --ray needs Ray: pip install 'ragbit[ray]'  (or: pip install 'ray[data]==2.60.0')"
CHUNK_BATCH = 32          # files per chunking batch
EMBED_BATCH = 256         # chunks per embedding batch (what a killed worker can cost, once)
LOCAL = "local"           # --ray without an address: a Ray instance on this machine, stopped afterwards


class RayUnavailable(RagbitError, RuntimeError):
    """Ray is not installed or the cluster cannot be reached; one line for the user."""


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


def check_address(address: str) -> None:
    """A Ray address is `local`, `auto`, `host:port` or `ray://host:port`; anything else (a path given after
    --ray by mistake) is one line, before Ray starts."""
    if address in (LOCAL, "auto") or ":" in address:
        return
    raise RayUnavailable(f"--ray {address!r}: not a Ray address (local, auto, host:port or ray://host:port); "
                         "give the repository path before --ray")


# ---------------------------------------------------------------------------------------------- workers
class ChunkWorker:
    """A Ray Data worker that chunks files: loads the token counter once, then chunks batches of files."""

    def __init__(self, chunk_cfg, make_embedder: Callable):
        embedder = make_embedder()
        self.cfg = chunk_cfg
        self.counter = getattr(embedder, "token_counter", None) or embedder.count_tokens

    def __call__(self, batch: dict) -> dict:
        from ragbit.indexing.chunking import chunk_file_with_symbols
        chunks = [pickle.dumps(chunk_file_with_symbols(str(p), str(t), self.cfg, count_tokens=self.counter))
                  for p, t in zip(batch["path"], batch["text"])]
        return {"i": np.asarray(batch["i"]), "chunks": np.array(chunks, dtype=object)}


class EmbedWorker:
    """A Ray Data worker that embeds chunk texts: loads the model once per worker process."""

    def __init__(self, make_embedder: Callable, total: int):
        self.embedder = make_embedder()
        if hasattr(self.embedder, "plan"):       # the path a local run of `total` chunks takes (same vectors)
            self.embedder.plan(total)

    def __call__(self, batch: dict) -> dict:
        vectors = self.embedder.embed([str(t) for t in batch["text"]], progress=False)
        return {"key": np.asarray(batch["key"]), "vector": np.asarray(vectors, dtype=np.float32)}


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class RayRun:
    """One Ray session for one `ragbit index` run: `with RayRun(address, workers) as run: ...`."""

    address: str = LOCAL
    workers: int = 0             # worker processes per stage; 0: the cluster's CPUs (local: this machine's)
    make_embedder: Callable | None = None   # picklable; builds the embedder inside a worker

    _started: bool | None = None    # None: not started yet (Ray starts on first use: a no-op run never pays)

    def __enter__(self) -> "RayRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if self._started is not None:
            return
        check_address(self.address)
        import logging
        # Ray's own chatter (deprecations, "execution finished", C++ log lines) is not for ragbit's user
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(deprecated|concurrent actors).*")
        ray = require_ray()
        self._started = not ray.is_initialized()
        if self._started:
            kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                          configure_logging=False)
            if self.address == LOCAL:
                kwargs["num_cpus"] = self.workers or os.cpu_count() or 1
                # Ray renices its workers by +15 by default: on a shared laptop they would then wait behind
                # every other program, while the plain indexer runs at the user's priority. Same priority here.
                os.environ.setdefault("RAY_worker_niceness", "0")
                # the workers import ragbit as this process does (an editable checkout, tests' PYTHONPATH)
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(
                    p for p in (os.environ.get("PYTHONPATH", ""), _ragbit_root()) if p)}}
            else:
                kwargs["address"] = self.address
            try:
                with _stderr_silenced():             # the C++ core prints a log-level line as it starts
                    ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise RayUnavailable(f"cannot reach the Ray cluster at {self.address}: "
                                     f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") \
                    from None
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        if not self.workers:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        """Shut down the Ray instance this run started (a local one ends with it; a cluster stays up)."""
        if self._started:
            import ray
            ray.shutdown()
        self._started = None

    def _actors(self) -> dict:
        # a worker that dies is restarted, and the batches it held are run again (max_task_retries)
        import ray.data
        return dict(compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=1, max_restarts=-1,
                    max_task_retries=-1)

    def chunk(self, files: Sequence[tuple[str, str]], chunk_cfg) -> list[tuple[list, dict | None]]:
        """`chunk_file_with_symbols` for each (path, text) on the workers: (chunks, symbol record), in input
        order (the same as `chunk_pool.chunk_files` returns)."""
        if not files:
            return []
        self.start()
        import ray.data
        items = [{"i": i, "path": p, "text": t} for i, (p, t) in enumerate(files)]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // CHUNK_BATCH, 4 * self.workers)))
        out = ds.map_batches(ChunkWorker, fn_constructor_args=(chunk_cfg, self.make_embedder),
                             batch_size=CHUNK_BATCH, batch_format="numpy", **self._actors())
        result: list = [None] * len(files)
        for batch in _batches(out, CHUNK_BATCH, "chunking"):
            for i, blob in zip(batch["i"], batch["chunks"]):
                if result[int(i)] is None:                 # a retried batch may repeat a file: first one wins
                    result[int(i)] = pickle.loads(blob)
        if any(r is None for r in result):
            raise RayUnavailable("the Ray cluster lost files while chunking; nothing was committed, run again")
        return result

    def embed(self, todo: Sequence[tuple[str, str]]) -> Iterator[tuple[list[str], np.ndarray]]:
        """(keys, vectors) as batches finish, for (content hash, text) pairs; each key once."""
        if not todo:
            return
        self.start()
        import ray.data
        items = [{"key": k, "text": t} for k, t in todo]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // EMBED_BATCH, 4 * self.workers)))
        out = ds.map_batches(EmbedWorker, fn_constructor_args=(self.make_embedder, len(todo)),
                             batch_size=EMBED_BATCH,
                             batch_format="numpy", **self._actors())
        seen: set[str] = set()
        for batch in _batches(out, EMBED_BATCH, "embedding"):
            keep = [j for j, k in enumerate(batch["key"]) if str(k) not in seen]
            keys = [str(batch["key"][j]) for j in keep]
            seen.update(keys)
            if keys:
                yield keys, np.asarray(batch["vector"][keep], dtype=np.float32)
        if len(seen) != len({k for k, _ in todo}):
            raise RayUnavailable("the Ray cluster lost chunks while embedding; the vectors it did return are "
                                 "cached, run again to finish")


def _batches(dataset, size: int, stage: str):
    """The dataset's output batches; a failure Ray could not recover from (a worker that cannot even start,
    a lost cluster) becomes one line, and the run commits nothing."""
    from ray.exceptions import RayError
    try:
        yield from dataset.iter_batches(batch_size=size, batch_format="numpy")
    except RayError as e:
        lines = [l.strip() for l in str(e).splitlines() if l.strip() and not l.startswith(" ")]
        cause = next((l for l in reversed(lines) if "Error" in l), lines[-1] if lines else type(e).__name__)
        raise RayUnavailable(f"Ray failed while {stage}: {cause[:200]}") from None


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null for the duration (C++ code writes there directly, past sys.stderr)."""
    import sys
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):                   # no real stderr (e.g. captured by a test runner)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _ragbit_root() -> str:
    import ragbit
    return os.path.dirname(os.path.dirname(os.path.abspath(ragbit.__file__)))


def default_embedder_factory(embed_cfg):
    """A picklable factory for the configured embedder (what each Ray worker builds once)."""
    import functools

    from ragbit.indexing.embeddings import Embedder
    return functools.partial(Embedder, embed_cfg)
