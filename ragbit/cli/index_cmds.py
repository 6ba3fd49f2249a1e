"""`ragbit index`, `ragbit search`, `ragbit status`: the retrieval half of ragbit as a user meets it.

Every failure a user can cause (bad path, no index, locked or corrupt index, bad flag) ends as one
`error: ...` line on stderr and exit code 1. Heavy libraries load inside the commands.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ragbit.cli import app


# Choices are checked in the command (not by click) so a bad value is one `error:` line with exit code 1,
# like every other bad input, instead of click's usage box with exit code 2.
MODES = ("hybrid", "dense", "lexical")
DENSE_KINDS = ("auto", "flat", "hnsw", "ivf")


def _choice(flag: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        _fail(f"{flag} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Every domain error a command may raise, as a tuple for `except`."""
    from indexes.dense import DenseIndexError
    from indexes.store import IndexFormatError, IndexLockedError
    from ragbit.chunk_table import ChunkTableError
    from ragbit.config import ConfigError
    from ragbit.embeddings import EmbeddingModelError
    from ragbit.indexer import IndexingError
    from ragbit.searcher import IndexMissingError, SearchError
    from ragbit.walker import WalkError
    return (ConfigError, IndexingError, IndexMissingError, SearchError, EmbeddingModelError, WalkError,
            IndexLockedError, IndexFormatError, ChunkTableError, DenseIndexError)


def _config(repo: Path, overrides: dict):
    from ragbit.config import RagbitConfig
    if not repo.exists():
        _fail(f"{repo}: no such directory")
    if not repo.is_dir():
        _fail(f"{repo}: not a directory")
    return RagbitConfig.load(repo, overrides=overrides)


def _run(fn):
    """Call fn(); turn domain errors (and Ctrl-C) into one line + exit 1.

    The error classes are imported only once something failed: importing them pulls in faiss and numpy,
    which a search answered by the background server never needs."""
    try:
        return fn()
    except KeyboardInterrupt:
        _fail("interrupted (the last committed index is intact)")
    except typer.Exit:
        raise
    except Exception as e:
        try:
            errors = _user_errors()
        except ImportError as ie:   # a broken install is also one line
            _fail(f"cannot load ragbit's indexing modules: {ie}")
        if isinstance(e, errors):
            _fail(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        if isinstance(e, OSError):  # e.g. no permission to write the index directory, disk full
            _fail(f"{e.strerror or type(e).__name__}: {e.filename}" if e.filename else str(e))
        raise


# ---------------------------------------------------------------------------------------------- index
@app.command()
def index(
    path: Path = typer.Argument(Path("."), help="repository to index"),
    rebuild: bool = typer.Option(False, "--rebuild", help="ignore the previous index and re-chunk every file (vectors cached for the same model are reused)"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives (default REPO/.ragbit)"),
    embed_model: Optional[str] = typer.Option(None, "--embed-model", help="sentence-transformers name or path"),
    embed_backend: Optional[str] = typer.Option(None, "--embed-backend", metavar="[auto|torch|torch-bf16|onnx|onnx-int8]",
                                                help="how chunks are embedded (config embed.backend, default auto: by CPU)"),
    dense: Optional[str] = typer.Option(None, "--dense", metavar="[auto|flat|hnsw|ivf]", help="FAISS index kind"),
    max_file_bytes: Optional[int] = typer.Option(None, "--max-file-bytes", help="skip larger files"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar, one summary line"),
) -> None:
    """Index a repository (incremental: only new and changed files are re-chunked and re-embedded)."""
    _choice("--dense", dense, DENSE_KINDS)

    def go():
        from ragbit.indexer import index_repository
        cfg = _config(path, {"index": {"dir": index_dir, "dense": dense},
                             "embed": {"model": embed_model, "backend": embed_backend},
                             "walk": {"max_file_bytes": max_file_bytes}})
        return index_repository(cfg, progress=not quiet, rebuild=rebuild)
    r = _run(go)
    t = r.timings
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(r.skipped.items()) if n) or "none"
    typer.echo(f"indexed {r.repo}: {r.files} files (+{r.files_added} added, ~{r.files_changed} changed, "
               f"-{r.files_removed} removed, {r.files_unchanged} unchanged), {r.chunks} chunks "
               f"({r.chunks_embedded} embedded, {r.chunks_reused} reused) in {t.get('total', 0):.1f}s")
    if not quiet:
        if r.chunks_embedded:
            typer.echo(f"  embedding path: {r.embed_backend} ({r.embed_backend_reason})")
        typer.echo(f"  skipped: {skipped}")
        typer.echo("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "total"))
        if r.rechunked_all:
            typer.echo("  chunk settings changed since the last run: every file was re-chunked")
        typer.echo(f"  index: {r.index_dir}")


# ---------------------------------------------------------------------------------------------- search
@app.command()
def search(
    question: str = typer.Argument(..., help="what you are looking for"),
    repo: Path = typer.Option(Path("."), "--repo", help="indexed repository"),
    k: Optional[int] = typer.Option(None, "-k", min=1, help="number of results (config search.k, default 10)"),
    mode: Optional[str] = typer.Option(None, "--mode", metavar="[hybrid|dense|lexical]",
                                       help="how to rank (config search.mode, default hybrid)"),
    max_per_file: Optional[int] = typer.Option(None, "--max-per-file", min=0, help="at most N chunks per file, "
                                               "0 = no cap (config search.max_hits_per_file, default 2)"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list"),
    no_server: bool = typer.Option(False, "--no-server", help="search in this process only: neither use nor "
                                   "start the background search server (config: search.server = false)"),
) -> None:
    """Search the index of a repository (answered by a background server per index once one is running)."""
    _choice("--mode", mode, MODES)

    def go():
        from ragbit import search_server
        cfg = _config(repo, {"index": {"dir": index_dir},
                             "search": {"k": k, "mode": mode, "max_hits_per_file": max_per_file}})
        s = cfg.search
        return search_server.search(cfg, question, k=s.k, mode=s.mode, max_hits_per_file=s.max_hits_per_file,
                                    use_server=s.server and not no_server)
    hits = _run(go)
    if not hits.dense_complete:
        typer.echo("note: the dense index is incomplete (embedding still running or interrupted); "
                   "results cover the chunks embedded so far", err=True)
    if as_json:
        json.dump([h.to_json() for h in hits], sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    _print_hits(hits)


def _print_hits(hits) -> None:
    from rich.console import Console
    from rich.syntax import Syntax
    console = Console()
    if not hits:
        console.print("no results")
        return
    for h in hits:
        scope = f"  [cyan]{h.scope}[/cyan]" if h.scope else ""
        console.print(f"[bold]{h.rank}. {h.path}:{h.start_line}-{h.end_line}[/bold]{scope}  "
                      f"[dim]score {h.score:.4f}[/dim]", highlight=False)
        lines = h.text.splitlines()
        snippet = "\n".join(lines[:12]) + ("\n..." if len(lines) > 12 else "")
        console.print(Syntax(snippet, h.language or "text", line_numbers=True, start_line=h.start_line,
                             word_wrap=False))


# ---------------------------------------------------------------------------------------------- status
@app.command()
def status(
    path: Path = typer.Argument(Path("."), help="indexed repository"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives"),
) -> None:
    """What is indexed, with which model, and how many files changed since."""
    def go():
        from ragbit.status import index_status
        return index_status(_config(path, {"index": {"dir": index_dir}}))
    s = _run(go)
    typer.echo(f"index: {s.index_dir}")
    typer.echo(f"indexed: {s.created}  ({s.files} files, {s.chunks} chunks)")
    typer.echo(f"embedding model: {s.model_id} (dim {s.dim})"
               + (f", embedded with {s.embed_backend}" if s.embed_backend else ""))
    typer.echo(f"embedding path now: {s.backend_now}")
    typer.echo(f"dense vectors: {'complete' if s.dense_complete else f'incomplete ({s.dense_vectors}/{s.chunks})'}")
    if s.changed or s.added or s.removed:
        typer.echo(f"since then: {s.added} added, {s.changed} changed, {s.removed} removed "
                   f"-> run `ragbit index {s.repo}`")
    else:
        typer.echo("up to date")
