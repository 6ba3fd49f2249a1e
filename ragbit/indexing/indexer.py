"""`ragbit index`: walk -> chunk -> BM25 -> embed -> FAISS, incrementally, in two committed generations.

Why two generations: embedding is the slow step (~20 chunks/s per core with MiniLM). The chunk table and
BM25 are ready in seconds, so they are committed first (dense marked incomplete; a flat index over the
vectors already in the cache comes along); then missing vectors are embedded into the VectorCache, flushed
batch by batch, and a second generation adds the full dense index. A run killed at any point leaves the
last committed generation intact, and the next run finds every vector already computed in the cache.
When every missing vector fits one flush batch (a small edit: seconds of model time), the first generation
would protect nothing, so the run embeds first and commits once: that saves writing the dense index twice.

Why incremental: the previous generation's chunk table (path -> sha256 -> chunks) is reused for unchanged
files, so only new and changed files are chunked; vectors are looked up by chunk content hash, so only
chunks whose embedded text is new go through the model.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragbit.chunk_table import ChunkTable, ChunkTableError
from ragbit.config import RagbitConfig
from ragbit.errors import RagbitError
from ragbit.index_layout import (APP_FILES, DENSE_DELTA, DENSE_FILE, DENSE_IDS, LEXICAL_DIR, SYMBOLS_FILE_V1,
                                 TABLE_DIR, TABLE_FILE_V1, VECTOR_CACHE_DIR, check_model, index_dir_ignore,
                                 open_index_store, stamp_lookup)

EMBED_FLUSH = 256            # vectors per VectorCache.put: what a killed run can lose at most
CHUNK_BATCH = 2048           # files read before they are chunked (and their texts dropped): bounds memory
RAY_CHUNK_BATCH = 50_000     # the same with --ray: one Ray dataset per batch costs ~1 s to set up
BATCHED_DENSE = 200_000      # vectors above which a fresh dense index is built from the cache in batches


class IndexingError(RagbitError, RuntimeError):
    """Indexing cannot proceed; the message is one line for the user."""


class IndexingDeclined(IndexingError):
    """The user did not confirm indexing a large repository."""


@dataclass
class IndexReport:
    repo: str
    index_dir: str
    files_added: int = 0
    files_changed: int = 0
    files_removed: int = 0
    files_unchanged: int = 0
    chunks: int = 0
    chunks_embedded: int = 0          # vectors computed by the model in this run
    chunks_lexical_only: int = 0      # chunks of `[embed] lexical_only` files: BM25 only, no vector
    chunks_reused: int = 0            # vectors found in the cache
    embedding_deferred: int = 0       # chunks left unembedded because more than `embed_at_most` were missing
    skipped: dict = field(default_factory=dict)   # walker's skip counts by reason
    secrets_masked: int = 0           # secrets masked in the files read by this run (files read, not reused)
    dense_complete: bool = False
    rechunked_all: bool = False       # chunk settings changed since the last run
    embed_backend: str = ""           # the path that embeds chunks (ragbit/indexing/embedding_backends.py), e.g. torch-bf16
    embed_backend_reason: str = ""    # "configured", or the "auto" table row that chose it
    timings: dict = field(default_factory=dict)   # seconds: walk_chunk, lexical, embed, model, dense, total

    @property
    def files(self) -> int:
        return self.files_added + self.files_changed + self.files_unchanged


# ---------------------------------------------------------------------------------------------- helpers
def _chunk_settings(cfg: RagbitConfig, max_text_tokens: int) -> dict:
    """What decides how a file is chunked: if it differs from the last run, every file is re-chunked."""
    from ragbit.indexing import chunking
    from ragbit.indexing.secret_masking import MASKING_VERSION
    # masking rules are part of it: chunks stored under older rules may hold a secret the new ones mask
    return {"chunk": dataclasses.asdict(cfg.chunk), "max_text_tokens": max_text_tokens,
            "chunker_version": chunking.CHUNKER_VERSION, "masking_version": MASKING_VERSION,
            "symbols_version": chunking.SYMBOLS_VERSION}


def check_repo(repo: Path) -> None:
    if not repo.exists():
        raise IndexingError(f"{repo}: no such directory")
    if not repo.is_dir():
        raise IndexingError(f"{repo}: not a directory")


def previous_generation(store):
    """(manifest, generation dir) of the committed index, or (None, None)."""
    gen = store.current()
    if gen is None:
        return None, None
    return store.manifest(), Path(gen)


def _say(message: str) -> None:
    """A progress line for the user (stderr, like the bar), only when progress was asked for."""
    print(message, file=sys.stderr, flush=True)


class _Progress:
    """A rich progress bar on stderr over vectors to embed (or nothing when progress=False)."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("embedding chunks"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("embed", total=total)
            self.bar.start()

    def advance(self, n: int) -> None:
        if self.bar:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


# ---------------------------------------------------------------------------------------------- main
def skipped_files(cfg: RagbitConfig, warn=None) -> list[tuple[str, str]]:
    """(path, reason) for everything the index leaves out, in walk order; a pruned directory is one "dir/"
    entry. A full walk of the current tree (each kept file is read, as the index would), nothing is written:
    `ragbit index --list-skipped` answers "why is my file not found?" without re-indexing."""
    from ragbit.indexing.walker import WalkStats, walk_repository
    repo = Path(cfg.repo)
    check_repo(repo)
    stats = WalkStats()
    walk_cfg = dataclasses.replace(cfg.walk, ignore=list(cfg.walk.ignore) + index_dir_ignore(cfg))
    for _ in walk_repository(repo, walk_cfg, warn or (lambda msg: None), stats):
        pass
    return stats.paths


def index_repository(cfg: RagbitConfig, progress: bool = True, rebuild: bool = False,
                     embedder=None, warn=None, embed: bool = True, confirm_large=None,
                     embedder_factory=None, embed_at_most: int | None = None) -> IndexReport:
    """Bring the index at `cfg.index_dir` up to date with `cfg.repo`. See the module docstring.

    embed=False stops after the first generation (chunk table + BM25 + whatever vectors are cached): lexical
    search is complete, dense search covers only cached vectors (the manifest says so).
    embed_at_most=N does the same when more than N chunks would go through the model, and says how many in
    `report.embedding_deferred`: the caller answers from what is committed and embeds the rest elsewhere
    (`ragbit.indexing.background`); a small edit is still embedded and committed at once.
    confirm_large(SizeEstimate) -> bool is asked before every file is (re-)chunked on a large repository
    (`ragbit.indexing.size_estimate`); False ends the run with IndexingDeclined, nothing written.
    With `cfg.index.ray` set, chunking and embedding run on Ray (`ragbit.indexing.ray_runner`); each worker
    builds its embedder with `embedder_factory()` (picklable; default: the configured Embedder)."""
    ray_run = None
    if cfg.index.ray:
        from ragbit.indexing.ray_runner import RayRun, check_address, default_embedder_factory, require_ray
        check_address(cfg.index.ray)
        require_ray()                                          # not installed: one line, before any work
        ray_run = RayRun(cfg.index.ray, cfg.index.ray_workers,
                         embedder_factory or default_embedder_factory(cfg.embed))
        if embedder is None and embedder_factory is not None:
            embedder = embedder_factory()
    try:
        return _index(cfg, progress, rebuild, embedder, warn, embed, confirm_large, ray_run, embed_at_most)
    finally:
        gc.unfreeze()                                  # see _index: the tables may be collected again
        if ray_run is not None:
            ray_run.close()


def _index(cfg, progress, rebuild, embedder, warn, embed, confirm_large, ray_run, embed_at_most) -> IndexReport:
    from indexes.store import IndexFormatError, verify_generation
    from indexes.vector_cache import VectorCache
    from ragbit.indexing.chunk_pool import chunk_files
    from ragbit.indexing.dense_scope import embedded_rows
    from ragbit.indexing.walker import WalkStats, content_rules, settled, walk_repository

    t_start = time.perf_counter()
    repo = Path(cfg.repo)
    check_repo(repo)
    if embedder is None:
        from ragbit.indexing.embeddings import Embedder
        embedder = Embedder(cfg.embed)
    if warn is None:
        from ragbit.terminal_text import for_terminal        # warnings name files: a name may hold escapes
        warn = (lambda msg: print(f"warning: {for_terminal(msg, False)}", file=sys.stderr)) if progress \
            else (lambda msg: None)
    report = IndexReport(repo=str(repo), index_dir=str(cfg.index_dir),
                         embed_backend=getattr(embedder, "backend", ""),
                         embed_backend_reason=getattr(embedder, "backend_reason", ""))
    store = open_index_store(cfg, also_ours=APP_FILES)
    _check_no_background(cfg.index_dir)

    with store.lock(timeout=0):
        manifest, prev_dir = None, None
        if not rebuild:
            try:
                manifest, prev_dir = previous_generation(store)
            except IndexFormatError as e:                 # corrupt pointer or manifest: this run repairs it
                warn(f"{e}; rebuilding the index")
        check_model(manifest, embedder.model_id, cfg.index_dir)
        settings = _chunk_settings(cfg, embedder.max_text_tokens)
        prev = None
        # a damaged generation is repaired: its damaged parts are rebuilt, not reused (the dense index always is)
        damaged = verify_generation(prev_dir, manifest, remember=True) if manifest else []
        if damaged:
            warn(f"the index is damaged ({'; '.join(damaged[:3])}): repairing it")
        lexical_from = None if any(d.startswith(LEXICAL_DIR + "/") for d in damaged) else prev_dir
        if manifest and not any(d.startswith((TABLE_DIR + "/", TABLE_FILE_V1)) for d in damaged):
            try:
                prev = ChunkTable.load(prev_dir)
            except ChunkTableError as e:
                warn(f"previous index unreadable, re-chunking everything ({e})")
        symbols_ok = prev is not None and not any(d.startswith(SYMBOLS_FILE_V1) for d in damaged) \
            and prev.symbols_readable()
        if prev is not None and not symbols_ok:
            warn("previous symbol table unreadable, re-parsing everything")
        # same chunk settings -> unchanged files keep their chunks and symbols; otherwise every file is re-chunked
        reuse = symbols_ok and manifest.get("chunk_settings") == settings
        # The previous tables are millions of long-lived objects: every full collection of the cyclic GC would
        # walk them all (at 905k chunks, half the CPU of matching dense slots). Frozen, they are left alone
        # until the run ends (index_repository unfreezes).
        gc.freeze()
        report.rechunked_all = prev is not None and not reuse

        # ---- 1. walk + chunk (reusing unchanged files' chunks)
        t = time.perf_counter()
        walk_cfg = dataclasses.replace(cfg.walk, ignore=list(cfg.walk.ignore) + index_dir_ignore(cfg))
        chunk_cfg = dataclasses.replace(cfg.chunk, max_tokens=min(cfg.chunk.max_tokens, embedder.max_text_tokens))
        if confirm_large is not None and not reuse:
            from ragbit.indexing.size_estimate import estimate
            size = estimate(repo, walk_cfg, chunk_cfg, embedder)
            if size is not None and not confirm_large(size):
                raise IndexingDeclined(f"nothing indexed: {size.files:,} files, ~{size.chunks:,} chunks; "
                                       "narrow it with --include PATTERN, or go on with --yes")
        stats = WalkStats()
        walk_started = time.time_ns()
        known = stamp_lookup(manifest, prev, walk_cfg) if reuse else None    # unchanged stamp: file not read
        walk = walk_repository(repo, walk_cfg, warn, stats, known)
        per_file, seen, to_chunk, reused = [], set(), [], {}
        new_symbols: dict[str, dict | None] = {}           # symbol records of the files chunked in this run
        restamped = 0                                  # unchanged files whose settled stamp is new to the table
        # the model's token counter (fast path) if it has one, else its plain count function
        counter = getattr(embedder, "token_counter", None) or embedder.count_tokens
        batch_files = RAY_CHUNK_BATCH if ray_run is not None else CHUNK_BATCH

        def chunk_pending() -> None:
            """Chunk the files read so far and let their texts go: the walk streams, memory holds chunks only."""
            files = [(path, text) for _, path, text in to_chunk]
            chunked = ray_run.chunk(files, chunk_cfg) if ray_run is not None \
                else chunk_files(files, chunk_cfg, counter, workers=cfg.index.workers)
            for (i, path, _), (chunks, symbols) in zip(to_chunk, chunked):
                per_file[i] = (path, per_file[i][1], chunks, per_file[i][3])
                new_symbols[path] = symbols
            to_chunk.clear()

        for sf in walk:
            seen.add(sf.path)
            old = prev.by_path.get(sf.path) if prev is not None else None
            stamp = sf.stamp if settled(sf.stamp, walk_started) else None    # only settled stamps are recorded
            if reuse and old is not None and old.sha256 == sf.sha256:
                reused[sf.path] = old.first                        # its chunks' position in the previous table
                per_file.append((sf.path, sf.sha256, None, stamp))  # None: copied from `prev` by from_files
                report.files_unchanged += 1
                restamped += stamp is not None and stamp != old.stamp
                continue
            to_chunk.append((len(per_file), sf.path, sf.text))
            per_file.append((sf.path, sf.sha256, None, stamp))   # chunks filled in below
            if old is None:
                report.files_added += 1
            elif old.sha256 != sf.sha256:
                report.files_changed += 1
            else:
                report.files_unchanged += 1                # unchanged, re-chunked with new settings
            if len(to_chunk) >= batch_files:
                chunk_pending()
        if to_chunk:
            chunk_pending()
        report.skipped = dict(stats.skipped)
        report.secrets_masked = stats.secrets_masked
        if prev is not None:
            report.files_removed = len(set(prev.by_path) - seen)
        table = ChunkTable.from_files(per_file, previous=prev, symbols=new_symbols)
        per_file.clear()                                   # the Chunk objects: the table holds their columns
        same_as = _same_as(table, reused)                  # chunk position -> previous position, -1: new
        report.chunks = len(table)
        gc.freeze()                                    # the new tables, likewise
        report.timings["walk_chunk"] = time.perf_counter() - t
        if not table.files:
            raise IndexingError(f"no indexable files in {repo}")
        if report.chunks == 0:
            raise IndexingError(f"no indexable text in {repo}")

        # ---- 2. vectors we already have
        dim = int(manifest["embed_dim"]) if manifest and manifest.get("embed_dim") else embedder.dim
        cache = VectorCache(Path(cfg.index_dir) / VECTOR_CACHE_DIR,
                            getattr(embedder, "vector_cache_id", embedder.model_id), dim)
        keys = table.content_hash
        vectors = _CachedRows(cache, keys)                 # read from the cache only where a commit needs them
        # the chunks a complete IVF generation embedded are in the cache: only the others are looked up (an IVF
        # index is updated in place, without the old vectors; flat and hnsw indexes are small or rebuilt)
        known = same_as >= 0 if manifest and manifest.get("dense_complete") and not damaged \
            and (manifest.get("dense_index") or {}).get("kind") == "ivf" \
            and manifest.get("embed_views", 0) == getattr(embedder, "view_tokens", 0) \
            and not manifest.get("lexical_only_chunks") else None
        # chunks of `[embed] lexical_only` files get no vector (dense_scope.py): they count as embedded
        wanted = embedded_rows(table.files, len(table), cfg.embed.lexical_only)
        found = _cached(cache, keys, known) | ~wanted
        report.chunks_lexical_only = int((~wanted).sum())
        report.chunks_reused = int(found.sum()) - report.chunks_lexical_only

        base_manifest = {
            "repo": str(repo), "embed_model": cfg.embed.model, "embed_model_id": embedder.model_id,
            "embed_dim": dim, "embed_views": getattr(embedder, "view_tokens", 0),   # what a vector means (0: whole chunk)
            "files": len(table.files), "chunks": len(table), "chunk_settings": settings,
            "dense_kind": cfg.index.dense, "content_rules": content_rules(walk_cfg),
            "lexical_only": list(cfg.embed.lexical_only), "lexical_only_chunks": report.chunks_lexical_only,
            # the path that embedded the newest vectors (all paths share one vector space)
            "embed_backend": (manifest.get("embed_backend") if manifest and found.all() else None)
            or report.embed_backend,
        }

        # vectors of another view size are another cache space: the committed dense index is not reused
        same_vectors = bool(manifest) and manifest.get("embed_views", 0) == base_manifest["embed_views"] \
            and manifest.get("lexical_only", []) == base_manifest["lexical_only"]
        # (a file touched but not changed gets its new stamp recorded: otherwise it would be read on every run)
        unchanged = (reuse and not damaged and report.files_unchanged == len(table.files) and not report.files_removed
                     and not restamped and manifest.get("content_rules") == base_manifest["content_rules"]
                     and manifest.get("dense_complete") and manifest.get("dense_kind") == cfg.index.dense
                     and same_vectors and bool(found.all()))
        if unchanged:                                  # nothing to write: the committed index is current
            report.dense_complete = True
            report.timings["total"] = time.perf_counter() - t_start
            return report

        # the committed dense index an in-place update may start from (its parts verified above)
        # (an in-place IVF update pairs every chunk with a slot: with lexical-only chunks the index is rebuilt)
        previous = (prev_dir, manifest, prev) if reuse and not damaged and same_vectors and wanted.all() else None

        # ---- 3. generation A: chunk table + BM25 (+ flat dense over cached vectors) -> searchable now
        if progress:
            _say(f"indexing {repo}: {len(table.files)} files, {len(table)} chunks")
        t = time.perf_counter()
        lexical = _build_lexical(table, same_as, lexical_from)
        report.timings["lexical"] = time.perf_counter() - t
        complete = bool(found.all())
        if embed and embed_at_most is not None and int((~found).sum()) > embed_at_most:
            unique = len({keys[i] for i in np.flatnonzero(~found)})     # what the model would embed
            if unique > embed_at_most:                 # too many for the caller to wait for: deferred
                embed, report.embedding_deferred = False, unique
        one_commit = embed and 0 < int((~found).sum()) <= EMBED_FLUSH      # a small edit: embed, then commit once
        if not one_commit:
            _commit(store, base_manifest, table, lexical, vectors, found & wanted, complete,
                    kind=cfg.index.dense if complete else "flat", previous=previous, same_as=same_as)
            if progress and not complete and embed:
                unique = len({keys[i] for i in np.flatnonzero(~found)})     # what the bar below counts
                _say(f"lexical search is ready (`ragbit search` works now); embedding "
                     f"{unique} chunks for semantic search (Ctrl-C keeps what is done)")

        # ---- 4. embed what is missing, flushing to the cache as we go
        if not complete and not embed:
            report.dense_complete = False
            report.timings["total"] = time.perf_counter() - t_start
            return report
        if not complete:
            t = time.perf_counter()
            model_before = embedder.seconds_in_model
            missing = {}                                   # content hash -> first chunk position
            for i in np.flatnonzero(~found):
                missing.setdefault(keys[i], int(i))
            todo = list(missing.items())
            if hasattr(embedder, "plan"):                  # small jobs may skip loading a torch path
                report.embed_backend = embedder.plan(len(todo))
                report.embed_backend_reason = getattr(embedder, "backend_reason", "")
            bar = _Progress(progress, len(todo))
            try:
                for hashes, vecs in _embedded_batches(todo, table, embedder, ray_run):
                    cache.put(hashes, vecs)
                    bar.advance(len(hashes))
                    report.chunks_embedded += len(hashes)
            finally:
                bar.close()
            report.timings["model"] = embedder.seconds_in_model - model_before
            used = getattr(embedder, "backend_used", None)                           # after any fallback
            report.embed_backend = used or report.embed_backend
            base_manifest["embed_backend"] = report.embed_backend
            report.chunks_reused = report.chunks - report.chunks_lexical_only - report.chunks_embedded
            found = _cached(cache, keys, known) | ~wanted
            report.timings["embed"] = time.perf_counter() - t
            if not found.all():
                raise IndexingError("vector cache lost vectors it had just stored")

            # ---- 5. generation B: same chunk table + BM25, full dense index
            t = time.perf_counter()
            _commit(store, base_manifest, table, lexical, vectors, found & wanted, True, kind=cfg.index.dense,
                    copy_from=None if one_commit else Path(store.current()), previous=previous, same_as=same_as)
            report.timings["dense"] = time.perf_counter() - t
        report.dense_complete = True
        _maybe_compact(cache, keys, len(table))
    report.timings["total"] = time.perf_counter() - t_start
    return report


def _check_no_background(index_dir) -> None:
    """A background indexer (started by a question, `ragbit/indexing/background.py`) holds the writer lock: say so
    in words a user can act on, rather than the store's bare lock message."""
    from indexes.store import IndexLockedError
    from ragbit.index_layout import BACKGROUND_LOG, background_indexer
    pid = background_indexer(index_dir)
    if pid and pid != os.getpid():
        raise IndexLockedError(f"a background indexer (pid {pid}, started by a question) is embedding {index_dir}; "
                               f"it commits the full index by itself (`ragbit status`, log "
                               f"{Path(index_dir) / BACKGROUND_LOG}); `kill {pid}` stops it, keeping its vectors")


def _embedded_batches(todo: list[tuple[str, int]], table: ChunkTable, embedder, ray_run):
    """(content hashes, vectors) for `todo` [(hash, chunk position)], EMBED_FLUSH at a time: by `embedder` in
    this process, or by the Ray workers (which send back batches as they finish, in any order)."""
    if ray_run is not None:
        yield from ray_run.embed([(h, table.embed_text(i)) for h, i in todo])
        return
    batches = [todo[s:s + EMBED_FLUSH] for s in range(0, len(todo), EMBED_FLUSH)]
    texts = ([table.embed_text(i) for _, i in batch] for batch in batches)
    # an embedder that can keeps its model busy while the caller writes the vectors of the batch before
    stream = getattr(embedder, "embed_batches", None) or (lambda texts: (embedder.embed(t, progress=False)
                                                                          for t in texts))
    for batch, vectors in zip(batches, stream(texts)):
        yield [h for h, _ in batch], vectors


def _same_as(table: ChunkTable, reused: dict[str, int]) -> np.ndarray:
    """(chunks,) int64: each chunk's position in the previous table when its file is unchanged, else -1."""
    same_as = np.full(len(table), -1, dtype=np.int64)
    rows = np.array([(f.first, reused[f.path], f.count) for f in table.files if f.count and f.path in reused],
                    dtype=np.int64).reshape(-1, 3)                  # (files, 3): new first, old first, count
    counts = rows[:, 2]
    ramp = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)   # 0..count-1 per file
    same_as[np.repeat(rows[:, 0], counts) + ramp] = np.repeat(rows[:, 1], counts) + ramp
    return same_as


def _cached(cache, keys, known: np.ndarray | None) -> np.ndarray:
    """(chunks,) bool: which chunks' vectors are in the cache. `known`: the chunks already known to be there
    (not looked up, so a one-file commit does not read the keys of every cache shard)."""
    if known is None:
        return cache.has(keys)
    found = known.copy()
    ask = np.flatnonzero(~known)
    found[ask] = cache.has([keys[i] for i in ask.tolist()])
    return found


def _build_lexical(table: ChunkTable, same_as: np.ndarray, prev_dir: Path | None):
    """BM25 over the chunks; chunks of unchanged files reuse their tokens from the previous generation."""
    from indexes.lexical import LexicalIndex
    texts = table.embed_texts                               # lazy: only new chunks' texts are made
    previous = None
    if (same_as >= 0).any() and prev_dir is not None:
        try:
            previous = LexicalIndex.load(prev_dir / LEXICAL_DIR)
        except ValueError:                                  # unreadable: tokenize everything
            previous = None
    if previous is None:
        return LexicalIndex.build(texts)
    try:
        return LexicalIndex.build(texts, previous, same_as)
    except ValueError:                                      # previous index inconsistent with its chunk table
        return LexicalIndex.build(texts)


class _CachedRows:
    """Every chunk's vector, as `rows[positions]`, read from the vector cache on demand: a one-file commit of a
    large index asks for its few new vectors only, not for all of them (1.5 GB at 1M x 384)."""

    def __init__(self, cache, keys):
        self.cache, self.keys = cache, keys
        self.shape = (len(keys), cache.dim)

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.arange(len(self.keys))[rows]
        vectors, found = self.cache.get([self.keys[i] for i in rows.tolist()])
        if not all(found):
            raise IndexingError(f"the vector cache lost vectors ({found.count(False)} missing; was its directory "
                                "removed?): run `ragbit index --rebuild`")
        return vectors


def _updated_dense(previous, table, vectors, kind, same_as):
    """The previous generation's IVF index carried over with this table's changes, or None (build afresh)."""
    from indexes.dense import FLAT_MAX
    from ragbit.indexing.dense_update import updated_ivf
    if previous is None or previous[2] is None or kind not in ("auto", "ivf") \
            or (kind == "auto" and len(table) < FLAT_MAX):
        return None
    prev_dir, prev_manifest, prev_table = previous
    return updated_ivf(prev_dir, prev_manifest, prev_table.content_hash, table.content_hash, same_as, vectors,
                       DENSE_FILE, DENSE_IDS, DENSE_DELTA)


def _commit(store, base_manifest, table, lexical, vectors, found, complete, kind, copy_from=None,
            previous=None, same_as=None):
    """Write one generation: chunk table with symbol records + BM25 (built, or hard-linked from `copy_from`) + dense
    index (updated in place from `previous` = (generation dir, manifest, chunk table) when that is cheaper)."""
    from indexes.dense import DenseIndex
    from indexes.store import FORMAT_VERSION
    manifest = dict(base_manifest, format_version=FORMAT_VERSION, created=time.time(),
                    dense_complete=complete, dense_vectors=int(found.sum()))
    with store.write_generation(manifest) as staging:
        staging = Path(staging)
        if copy_from is None:
            table.save(staging)
            lexical.save(staging / LEXICAL_DIR)
        else:
            _link_tree(copy_from, staging, names=[TABLE_DIR, LEXICAL_DIR])
        ids = np.flatnonzero(found).astype(np.int64)
        update = _updated_dense(previous, table, vectors, kind, same_as) if complete else None
        if update is not None:                       # few chunks changed: the IVF index is carried over
            if update.index is None:                 # as the same base file plus layers
                _link_or_copy(previous[0] / DENSE_FILE, staging / DENSE_FILE)
            else:                                    # layers folded into the base
                update.index.save(staging / DENSE_FILE)
            if len(update.delta):
                np.save(staging / DENSE_DELTA, update.delta)
            np.save(staging / DENSE_IDS, update.slots)
            manifest["dense_index"] = {"kind": "ivf", "vectors": update.live, "recall_at_10": update.recall,
                                       "updated_in_place": True, "base_slots": update.base_slots,
                                       "base_dead": update.base_dead}
        elif len(ids) >= BATCHED_DENSE:              # read from the cache batch by batch: never all vectors at once
            dense, recall = DenseIndex.build_in_batches(lambda pos: vectors[ids[pos]], len(ids), vectors.shape[1],
                                                        kind=kind)
            dense.save(staging / DENSE_FILE)
            np.save(staging / DENSE_IDS, ids)
            manifest["dense_index"] = {"kind": dense.kind, "vectors": len(dense), "recall_at_10": round(recall, 4)}
        elif len(ids):
            rows = np.ascontiguousarray(vectors[ids], dtype=np.float32)
            dense = DenseIndex.build(rows, kind=kind)
            dense.save(staging / DENSE_FILE)
            np.save(staging / DENSE_IDS, ids)
            # what `ragbit status` reports: an approximate index's recall against exact search on this corpus
            manifest["dense_index"] = {"kind": dense.kind, "vectors": len(dense),
                                       "recall_at_10": round(dense.recall_at(rows, k=10), 4)}


def _link_tree(src: Path, dst: Path, names: list[str]) -> None:
    """Hard-link (or copy when links are impossible) files/dirs from the previous generation."""
    for name in names:
        s, d = src / name, dst / name
        if s.is_dir():
            shutil.copytree(s, d, copy_function=_link_or_copy, dirs_exist_ok=True)
        else:
            _link_or_copy(s, d)


def _link_or_copy(s, d) -> None:
    try:
        os.link(s, d)
    except OSError:
        shutil.copy2(s, d)


def _maybe_compact(cache, keys, chunks: int) -> None:
    """Drop vectors of chunks that no longer exist once they are the majority of the cache (its size read from
    the shards' file sizes: the keys are loaded only when it compacts)."""
    size = cache.approximate_size() if hasattr(cache, "approximate_size") else len(cache)
    if size > 2 * chunks + 1000 and len(cache) > 2 * len(set(keys)) + 1000:
        cache.compact(set(keys))
