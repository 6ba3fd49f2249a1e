"""`ragbit serve` (OpenAI-compatible HTTP API), `ragbit mcp` (MCP server over stdio), `ragbit watch`: parse, call."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ragbit.cli import app, examples
from ragbit.cli.boundary import guarded, repo_config


def _note(text: str) -> None:
    typer.echo(text, err=True)


@app.command(short_help="Serve the OpenAI HTTP API (editors, chat UIs).", epilog=examples(
    "ragbit serve                          # http://127.0.0.1:8080/v1, model `ragbit` answers from this repo",
    "ragbit serve --repo ~/src/app --watch --port 8081",
    "ragbit serve --host 0.0.0.0 --api-key $KEY"))
def serve(
    repo: Path = typer.Option(Path("."), "--repo", help="repository to serve (indexed first if needed)"),
    model: Optional[str] = typer.Option(None, "--model", help="bonsai-1.7b|4b|8b, ternary-bonsai-1.7b|4b|8b, or a path to .gguf"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (non-loopback needs --api-key)"),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="TCP port"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="RAGBIT_API_KEY",
                                          help="require 'Authorization: Bearer KEY' on every route but /health"),
    max_queue: int = typer.Option(8, "--max-queue", min=0, help="requests that may wait for the engine (then 429)"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives (default REPO/.ragbit)"),
    watch: bool = typer.Option(False, "--watch", help="re-index on file changes (else before each retrieval)"),
) -> None:
    """Serve the OpenAI HTTP API: model `ragbit` answers from the repository with sources, the plain model
    name chats without retrieval; /v1/embeddings uses the index's embedding model."""
    from ragbit.serve.http_server import check_bind, serve as run
    guarded(lambda: check_bind(host, api_key))
    cfg = repo_config(repo, {"generator": {"model": model}, "index": {"dir": index_dir}})
    guarded(lambda: run(cfg, host, port, api_key, max_waiting=max_queue, watch=watch, on_note=_note),
            interrupted="ragbit serve stopped")


@app.command(short_help="Serve MCP tools for coding agents (stdio).", epilog=examples(
    "ragbit mcp --repo ~/src/app           # what an MCP host starts",
    "claude mcp add ragbit -- ragbit mcp --repo ~/src/app"))
def mcp(
    repo: Path = typer.Option(Path("."), "--repo", help="repository the tools search and read"),
    model: Optional[str] = typer.Option(None, "--model", help="model for the `ask` tool (loaded on first use)"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives (default REPO/.ragbit)"),
    watch: bool = typer.Option(False, "--watch", help="re-index on file changes (else before each search)"),
    http: bool = typer.Option(False, "--http", help="streamable HTTP on 127.0.0.1:--port/mcp instead of stdio"),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port for --http"),
) -> None:
    """Serve MCP tools over stdio for coding agents: search_code, read_span, index_status, ask."""
    from ragbit.serve.mcp_server import run_stdio
    cfg = repo_config(repo, {"generator": {"model": model}, "index": {"dir": index_dir}})
    guarded(lambda: run_stdio(cfg, watch=watch, http_port=port if http else None,
                              on_note=lambda m: print(m, file=sys.stderr)),
            interrupted="ragbit mcp stopped")


@app.command(short_help="Keep the index fresh as files change.", epilog=examples(
    "ragbit watch                          # this repository, until Ctrl-C"))
def watch(
    path: Path = typer.Argument(Path("."), help="repository to keep indexed"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives (default PATH/.ragbit)"),
) -> None:
    """Keep the index fresh: re-index incrementally after each burst of file changes, until Ctrl-C."""
    from ragbit.serve.watch import watch_forever
    cfg = repo_config(path, {"index": {"dir": index_dir}})
    guarded(lambda: watch_forever(cfg, on_note=_note), interrupted="ragbit watch stopped")
