"""`ragbit index`, `ragbit search`, `ragbit status`: the retrieval half of ragbit as a user meets it.

Every failure a user can cause (bad path, no index, locked or corrupt index, bad flag) ends as one
`error: ...` line on stderr and exit code 1. Heavy libraries load inside the commands.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ragbit.cli import app, examples
from ragbit.cli.boundary import fail, guarded, question_text, repo_config, repository


# Choices are checked in the command (not by click) so a bad value is one `error:` line with exit code 1,
# like every other bad input, instead of click's usage box with exit code 2.
MODES = ("hybrid", "dense", "lexical")
DENSE_KINDS = ("auto", "flat", "hnsw", "ivf")
INTERRUPTED = "the last committed index is intact"


def _choice(flag: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        fail(f"{flag} must be one of {', '.join(choices)}, not {value!r}")
    return value


# ---------------------------------------------------------------------------------------------- index
@app.command(short_help="Index a repository (incremental).", epilog=examples(
    "ragbit index                      # the repository around the working directory",
    "ragbit index ~/src/project --rebuild",
    "ragbit index --list-skipped | grep secret     # which files are left out, and why",
    "ragbit index --include 'src/**' --include 'docs/*.md'   # a subset of a monorepo",
    "ragbit index --ray                # chunk and embed on a Ray started on this machine",
    "ragbit index ~/src/mono --ray ray://head:10001 --yes     # ... or on a Ray cluster"))
def index(
    path: Optional[Path] = typer.Argument(None, help="repository to index (default: the one around the "
                                          "working directory)", show_default=False),
    repo: Optional[Path] = typer.Option(None, "--repo", help="same as PATH"),
    rebuild: bool = typer.Option(False, "--rebuild", help="ignore the previous index and re-chunk every file (vectors cached for the same model are reused)"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives (default REPO/.ragbit)"),
    embed_model: Optional[str] = typer.Option(None, "--embed-model", help="sentence-transformers name or path"),
    embed_backend: Optional[str] = typer.Option(None, "--embed-backend", metavar="[auto|torch|torch-bf16|openvino|openvino-int8|onnx|onnx-int8]",
                                                help="how chunks are embedded (config embed.backend, default auto: by CPU)"),
    dense: Optional[str] = typer.Option(None, "--dense", metavar="[auto|flat|hnsw|ivf]", help="FAISS index kind"),
    max_file_bytes: Optional[int] = typer.Option(None, "--max-file-bytes", help="skip larger files"),
    include: Optional[List[str]] = typer.Option(None, "--include", metavar="PATTERN",
                                                help="index only files matching this gitignore-style pattern "
                                                "(repeatable; replaces [walk] include), e.g. 'src/**'"),
    yes: bool = typer.Option(False, "--yes", "-y", help="index a large repository without asking (otherwise a "
                             "first index of 5,000+ files estimates its time and asks on a terminal; "
                             "elsewhere it stops and says so)"),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]",
                                      help="chunk and embed on Ray: a cluster's ADDRESS (host:port, ray://host:port, "
                                      "auto), or none for a Ray started on this machine; needs pip install "
                                      "'ragbit[ray]'"),
    ray_workers: Optional[int] = typer.Option(None, "--ray-workers", min=0,
                                              help="worker processes per Ray stage (default: the cluster's CPUs)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar, one summary line"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document (schema ragbit.index/1, "
                                 "docs/json.md) instead of the summary"),
    list_skipped: bool = typer.Option(False, "--list-skipped", help="only list the files the index leaves out "
                                      "and why (reason, then path; a directory ends in /), without indexing"),
) -> None:
    """Index a repository (incremental: only new and changed files are re-chunked and re-embedded)."""
    _choice("--dense", dense, DENSE_KINDS)
    if list_skipped:
        def walk():
            from ragbit.indexing.indexer import skipped_files
            return skipped_files(repo_config(repository(path, repo), {"index": {"dir": index_dir},
                                                                       "walk": {"max_file_bytes": max_file_bytes,
                                                                                "include": include or None}}))
        for skipped_path, reason in guarded(walk):
            typer.echo(f"{reason}\t{skipped_path}")
        return

    def go():
        from ragbit.indexing.indexer import index_repository
        cfg = repo_config(repository(path, repo), {"index": {"dir": index_dir, "dense": dense, "ray": ray,
                                                             "ray_workers": ray_workers},
                                                   "embed": {"model": embed_model, "backend": embed_backend},
                                                   "walk": {"max_file_bytes": max_file_bytes,
                                                            "include": include or None}})
        return index_repository(cfg, progress=not (quiet or as_json), rebuild=rebuild,
                                confirm_large=None if yes else _confirm_large(str(cfg.repo)))
    r = guarded(go, INTERRUPTED)
    if as_json:
        from ragbit.json_forms import index_document
        typer.echo(json.dumps(index_document(r), ensure_ascii=False))
        return
    t = r.timings
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(r.skipped.items()) if n) or "none"
    typer.echo(f"indexed {r.repo}: {r.files} files (+{r.files_added} added, ~{r.files_changed} changed, "
               f"-{r.files_removed} removed, {r.files_unchanged} unchanged), {r.chunks} chunks "
               f"({r.chunks_embedded} embedded, {r.chunks_reused} reused"
               + (f", {r.chunks_lexical_only} lexical only" if r.chunks_lexical_only else "")
               + f") in {t.get('total', 0):.1f}s")
    if not quiet:
        if r.chunks_embedded:
            typer.echo(f"  embedding path: {r.embed_backend} ({r.embed_backend_reason})")
        typer.echo(f"  skipped: {skipped}")
        if any(r.skipped.values()):
            typer.echo("  (`ragbit index --list-skipped` lists the skipped files and why)")
        if r.secrets_masked:
            typer.echo(f"  masked: {r.secrets_masked} secrets in the files read (replaced by [REDACTED:...])")
        typer.echo("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "total"))
        if r.rechunked_all:
            typer.echo("  chunk settings changed since the last run: every file was re-chunked")
        typer.echo(f"  index: {r.index_dir}")


def _confirm_large(repo: str):
    """The question `ragbit index` asks before hours of work: on a terminal y/N, elsewhere no (and the error
    line says to pass --yes), so a script never starts an unplanned day of embedding."""
    def confirm(size) -> bool:
        from ragbit.terminal_text import for_terminal
        if not size.worth_asking:
            return True
        typer.echo("warning: " + for_terminal(size.describe(repo)), err=True)
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return False
        return typer.confirm("index all of it?", default=False, err=True)
    return confirm


# ---------------------------------------------------------------------------------------------- search
@app.command(short_help="Search the index (code and docs, ranked).", epilog=examples(
    'ragbit search "where are retries configured?"',
    'ragbit search "parse_config" --mode lexical -k 3',
    'ragbit search "token budget" --json | jq -r ".hits[].path"',
    'gh issue view 12 | ragbit search -'))
def search(
    question: str = typer.Argument(..., help="what you are looking for (- reads it from standard input)"),
    repo: Optional[Path] = typer.Option(None, "--repo", help="indexed repository (default: the one around "
                                        "the working directory)"),
    k: Optional[int] = typer.Option(None, "-k", min=1, help="number of results (config search.k, default 10)"),
    mode: Optional[str] = typer.Option(None, "--mode", metavar="[hybrid|dense|lexical]",
                                       help="how to rank (config search.mode, default hybrid)"),
    max_per_file: Optional[int] = typer.Option(None, "--max-per-file", min=0, help="at most N chunks per file, "
                                               "0 = no cap, the whole list by score (default: the best hits "
                                               "first, then one per file not yet listed; search.new_files_share)"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document (schema ragbit.search/1, "
                                 "docs/json.md)"),
    no_server: bool = typer.Option(False, "--no-server", help="search in this process only: neither use nor "
                                   "start the background search server (config: search.server = false)"),
) -> None:
    """Search the index of a repository (answered by a background server per index once one is running)."""
    _choice("--mode", mode, MODES)
    question = question_text(question)

    def go():
        from ragbit.search import client
        cfg = repo_config(repo, {"index": {"dir": index_dir},
                                 "search": {"k": k, "mode": mode, "max_hits_per_file": max_per_file}})
        s = cfg.search
        return client.search(cfg, question, k=s.k, mode=s.mode, max_hits_per_file=max_per_file,    # None: by question
                             use_server=s.server and not no_server)
    hits = guarded(go, INTERRUPTED)
    from ragbit.search.render import Terminal, render_search
    out, err = render_search(hits, as_json, Terminal.here())
    sys.stdout.write(out)            # the notes (incomplete or stale index) come under the results
    sys.stdout.flush()
    sys.stderr.write(err)


# ---------------------------------------------------------------------------------------------- status
@app.command(short_help="What is indexed and what changed since.", epilog=examples(
    "ragbit status", "ragbit status ~/src/project"))
def status(
    path: Optional[Path] = typer.Argument(None, help="indexed repository (default: the one around the "
                                          "working directory)", show_default=False),
    repo: Optional[Path] = typer.Option(None, "--repo", help="same as PATH"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document (schema ragbit.status/1, "
                                 "docs/json.md)"),
) -> None:
    """What is indexed, with which model, and how many files changed since."""
    def go():
        from ragbit.search.status import index_status
        return index_status(repo_config(repository(path, repo), {"index": {"dir": index_dir}}))
    s = guarded(go, INTERRUPTED)
    if as_json:
        from ragbit.json_forms import status_document
        typer.echo(json.dumps(status_document(s), ensure_ascii=False))
        return
    from ragbit.index_layout import BACKGROUND_LOG
    typer.echo(f"index: {s.index_dir}")
    typer.echo(f"indexed: {s.created}  ({s.files} files, {s.chunks} chunks)")
    views = lambda n: f"views of {n} tokens" if n else "whole chunks"    # noqa: E731
    typer.echo(f"embedding model: {s.model_id} (dim {s.dim})"
               + (f", embedded with {s.embed_backend}" if s.embed_backend else "") + f", {views(s.view_tokens)}")
    typer.echo(f"embedding path now: {s.backend_now}" + (
        f"; [embed] view_tokens now asks for {views(s.view_tokens_now)} (the next index re-embeds every chunk)"
        if s.view_tokens_now != s.view_tokens else ""))
    typer.echo(f"query adapter: {s.query_adapter or 'off'}")
    typer.echo(f"learned reranker: {s.learned_rerank or 'off'}")
    typer.echo(f"dense vectors: {'complete' if s.dense_complete else f'incomplete ({s.dense_vectors}/{s.chunks})'}"
               + (f" ({s.lexical_only_chunks} chunks lexical only: [embed] lexical_only)" if s.lexical_only_chunks
                  else "")
               + (f"; being embedded in the background (pid {s.embedding_pid}, log {Path(s.index_dir) / BACKGROUND_LOG})"
                  if s.embedding_pid else ""))
    if s.dense_kind == "flat":
        typer.echo(f"dense index: flat (exact search) over {s.dense_vectors} vectors")
    elif s.dense_kind:
        typer.echo(f"dense index: {s.dense_kind} (approximate) over {s.dense_vectors} vectors, recall@10 "
                   f"{s.dense_recall:.3f} against exact search (sampled when built)")
    if s.damaged:
        typer.echo(f"damaged: {'; '.join(s.damaged[:5])} -> run `ragbit index {s.repo}` to repair")
    elif s.changed or s.added or s.removed:
        typer.echo(f"since then: {s.added} added, {s.changed} changed, {s.removed} removed "
                   f"-> run `ragbit index {s.repo}`")
    else:
        typer.echo("up to date")
