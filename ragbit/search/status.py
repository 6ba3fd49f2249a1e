"""`ragbit status`: what the committed index holds and how far the repository has moved since.

Compares a fresh walk (sha256 per file; files whose stat stamp is the recorded one are not read) with the chunk
table's file list; nothing is chunked or embedded.
"""
from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from pathlib import Path

from ragbit.config import RagbitConfig


@dataclass
class IndexStatus:
    repo: str
    index_dir: str
    created: str
    files: int
    chunks: int
    model_id: str
    dim: int
    embed_backend: str                # the path that embedded the newest vectors ("" in older indexes)
    backend_now: str                  # the path `ragbit index` would use now, with why
    dense_complete: bool
    dense_vectors: int
    added: int
    changed: int
    removed: int
    damaged: list                 # files of the generation that fail their checksum ([] = intact)
    dense_kind: str = ""              # the FAISS index built: flat (exact), hnsw or ivf; "" in older indexes
    dense_recall: float | None = None  # recall@10 of that index against exact search, measured when it was built
    view_tokens: int = 0              # the vectors' view size ([embed] view_tokens when indexed; 0 = whole chunks)
    view_tokens_now: int = 0          # what the configuration asks for now (a change re-embeds every chunk)
    query_adapter: str = ""           # how short questions are mapped towards code before dense search ("" = not)
    learned_rerank: str = ""          # how hybrid search reorders its best candidates ("" = not)
    lexical_only_chunks: int = 0      # chunks of `[embed] lexical_only` files (BM25 only, no vector)
    embedding_pid: int | None = None  # a background indexer embedding the rest (ragbit/indexing/background.py)


def _backend_now(cfg: RagbitConfig) -> str:
    """What path `ragbit index` would embed with on this machine (reads CPU flags; loads no model)."""
    from ragbit.indexing.embedding_backends import BackendError, backend_reason, resolve_backend
    try:
        backend = resolve_backend(cfg.embed.backend)
    except BackendError as e:
        return str(e)
    return f"{backend} ({backend_reason(cfg.embed.backend)})"      # the figures behind the choice: AUTO_TABLE


def index_status(cfg: RagbitConfig) -> IndexStatus:
    from indexes.store import IndexMissingError, verify_generation
    from ragbit.chunk_table import ChunkTable
    from ragbit.index_layout import background_indexer, index_dir_ignore, open_index_store, stamp_lookup
    from ragbit.indexing.walker import walk_repository

    store = open_index_store(cfg)
    if store.current() is None:
        raise IndexMissingError(f"no index at {cfg.repo}: run `ragbit index {cfg.repo}` first")
    def load(gen, manifest):
        damaged = verify_generation(Path(gen), manifest)
        try:
            table = ChunkTable.load(Path(gen))
        except ValueError:                   # ChunkTableError: reported with the other damage
            if not damaged:
                raise
            table = ChunkTable.from_files([])
        return manifest, table, damaged
    manifest, table, damaged = store.read(load)
    indexed = {f.path: f.sha256 for f in table.files}
    walk_cfg = dataclasses.replace(cfg.walk, ignore=list(cfg.walk.ignore) + index_dir_ignore(cfg))
    known = stamp_lookup(manifest, table, walk_cfg)          # files whose stamp is unchanged are not read
    now = {sf.path: sf.sha256 for sf in walk_repository(cfg.repo, walk_cfg, lambda msg: None, known=known)}
    created = manifest.get("created")
    when = (datetime.datetime.fromtimestamp(created).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
            if isinstance(created, (int, float)) else str(created))
    return IndexStatus(
        repo=str(cfg.repo), index_dir=str(cfg.index_dir), created=when, files=len(table.files),
        chunks=len(table), model_id=manifest.get("embed_model_id", "?"), dim=int(manifest.get("embed_dim", 0)),
        embed_backend=manifest.get("embed_backend", ""), backend_now=_backend_now(cfg),
        dense_complete=bool(manifest.get("dense_complete")), dense_vectors=int(manifest.get("dense_vectors", 0)),
        lexical_only_chunks=int(manifest.get("lexical_only_chunks", 0)),
        added=len(now.keys() - indexed.keys()), removed=len(indexed.keys() - now.keys()),
        changed=sum(1 for p, sha in now.items() if p in indexed and indexed[p] != sha), damaged=damaged,
        dense_kind=str((manifest.get("dense_index") or {}).get("kind", "")),
        dense_recall=(manifest.get("dense_index") or {}).get("recall_at_10"),
        view_tokens=int(manifest.get("embed_views", 0) or 0), view_tokens_now=_view_tokens_now(cfg),
        query_adapter=_query_adapter(cfg, manifest.get("embed_model_id", "")),
        learned_rerank=_learned_rerank(cfg, manifest.get("embed_model_id", "")),
        embedding_pid=background_indexer(cfg.index_dir))


def _query_adapter(cfg: RagbitConfig, vector_space: str) -> str:
    """One line on the query adapter dense search uses for this index's model (ragbit/indexing/query_adapter.py)."""
    from ragbit.indexing.query_adapter import adapter_info, adapter_path
    from ragbit.search.question import PLAIN_MAX_WORDS
    if not cfg.embed.query_adapter or not adapter_path(vector_space).is_file():    # the space id is the model's
        return ""
    info = adapter_info(vector_space)
    trained = f" (trained on {info['questions']:,} questions from {len(info.get('projects', []))} projects)" \
        if isinstance(info.get("questions"), int) else ""
    return f"questions of up to {PLAIN_MAX_WORDS} words are mapped towards code{trained}"


def _learned_rerank(cfg: RagbitConfig, vector_space: str) -> str:
    """One line on the learned reranker hybrid search uses for this index's model (ragbit/search/rerank.py)."""
    from ragbit.search.rerank import RERANK_DEPTH, reranker_info, reranker_path
    from ragbit.search.question import RERANK_MAX_WORDS
    if not cfg.search.learned_rerank or not reranker_path(vector_space).is_file():
        return ""
    info = reranker_info(vector_space)
    trained = f" (trained on {info['questions']:,} questions from {len(info.get('projects', []))} projects)" \
        if isinstance(info.get("questions"), int) else ""
    return (f"the {RERANK_DEPTH} best candidates of a question of up to {RERANK_MAX_WORDS} words, and of every "
            f"prompt, are reordered{trained}")


def _view_tokens_now(cfg: RagbitConfig) -> int:
    """The view size `ragbit index` would embed with (0 when views are off or no shorter than the model reads),
    read from the model's files without loading it."""
    from ragbit.indexing.embeddings import Embedder
    try:
        return Embedder(cfg.embed).view_tokens if cfg.embed.view_tokens else 0
    except Exception:  # noqa: BLE001 - an unloadable model is reported by `ragbit index`, not here
        return cfg.embed.view_tokens
