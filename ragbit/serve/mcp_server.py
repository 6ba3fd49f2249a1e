"""`ragbit mcp`: the repository's search, reading and answers as Model Context Protocol tools over stdio
(or, with `--http`, the SDK's streamable HTTP transport on loopback).

Built with the official `mcp` SDK (`MCPServer`, FastMCP's successor) over the same `RagbitService` as
`ragbit serve`. The tool descriptions are written for the agent that picks among them: what each returns,
when to use it instead of grep or reading whole files, and what it refuses.

stdout belongs to the protocol: anything ragbit prints while preparing (indexing progress) goes to stderr.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any, Callable, Literal

from ragbit.config import RagbitConfig

INSTRUCTIONS = (
    "ragbit indexes one code repository (tree-sitter chunks, BM25 over split identifiers + embeddings). "
    "Use search_code to find where something is implemented or discussed, read_span to read the exact lines "
    "around a hit, index_status to see what is indexed, and ask for a cited answer from the local model."
)

SEARCH_DOC = """Search the repository's code and docs for a question, identifier or phrase; returns the best chunks.

Use it before reading files: it finds where something is defined, used or explained even when you do not
know the file or the exact name ("where are retries with backoff?", "InvoiceRenderer", "how is auth checked").
Each hit has path, start_line, end_line, scope (enclosing class/function, if any), language, score and the
chunk's code. Modes: "hybrid" (default, best for most queries), "lexical" (exact identifiers, error
messages), "dense" (paraphrased questions). k is the number of hits (1-50). The index is refreshed
incrementally before searching, so recent edits are found."""

READ_DOC = """Read lines start_line..end_line (1-based, inclusive) of a file in the repository.

Use it after search_code to see the context around a hit, or to read a file you know by path. path is
relative to the repository root (as search_code returns it). Absolute paths, '..', symlinks leading out of
the repository, .git/, the index directory and secret files (.env, keys, credentials) are refused. At most
2000 lines per call; end_line <= 0 means to the end of the file. The reply says how many lines the file has."""

STATUS_DOC = """What the index holds: repository, number of files and chunks, embedding model, whether every chunk has
its vector, and how many files were added, changed or removed since the last index run."""

ASK_DOC = """Answer a question about the repository with the local model (retrieve, pack, generate), citing its
sources as [n]; returns the answer and the sources (path, start_line, end_line). Slower than search_code
(seconds to minutes on a CPU): prefer search_code + read_span when you can read code yourself. Fails with a
clear message when no model is available; the sources it would have used are still listed."""


def build_server(service: Any) -> Any:
    """An MCPServer whose tools call `service` (a prepared RagbitService) on worker threads."""
    import anyio.to_thread
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    from generator.errors import GeneratorError
    from indexes.errors import IndexesError
    from ragbit.errors import RagbitError
    from ragbit.serve.spans import read_span as read_lines

    server = MCPServer("ragbit", instructions=INSTRUCTIONS)
    generation_lock = threading.Lock()          # one generation at a time (one engine, one KV cache)

    async def call(fn: Callable[[], Any]) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn)
        except (RagbitError, IndexesError, GeneratorError, OSError) as e:
            line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ToolError(line) from None

    @server.tool(description=SEARCH_DOC)
    async def search_code(query: str, k: int = 8,
                          mode: Literal["hybrid", "lexical", "dense"] = "hybrid") -> dict[str, Any]:
        if not query.strip():
            raise ToolError("query is empty")
        k = max(1, min(int(k), 50))
        hits = await call(lambda: service.search(query, k=k, mode=mode))
        return {"query": query, "hits": [{"path": h.path, "start_line": h.start_line, "end_line": h.end_line,
                                          "scope": h.scope, "language": h.language, "score": round(h.score, 6),
                                          "code": h.text} for h in hits]}

    @server.tool(description=READ_DOC)
    async def read_span(path: str, start_line: int = 1, end_line: int = 0) -> dict[str, Any]:
        span = await call(lambda: read_lines(service.cfg.repo, path, start_line, end_line,
                                             index_dir=service.cfg.index_dir))
        return span.to_json()

    @server.tool(description=STATUS_DOC)
    async def index_status() -> dict[str, Any]:
        return await call(service.status)

    @server.tool(description=ASK_DOC)
    async def ask(question: str) -> dict[str, Any]:
        if not question.strip():
            raise ToolError("question is empty")

        def answer() -> dict[str, Any]:
            from ragbit.pipeline.standard import ask as ask_pipeline
            from ragbit.serve.service import source_json
            with generation_lock:
                service.refresh()
                a = ask_pipeline(service.cfg, question, pipeline=service.pipeline, refresh=False)
            sources = [source_json(s) for s in a.sources]
            if a.error:
                raise ToolError(f"{a.error}; sources that would have been used: "
                                + ", ".join(f"{s['path']}:{s['start_line']}-{s['end_line']}" for s in sources))
            return {"answer": a.text, "sources": sources}
        return await call(answer)

    return server


def run_stdio(cfg: RagbitConfig, watch: bool = False, http_port: int | None = None,
              on_note: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> None:
    """Index or refresh the repository (progress on stderr), then serve MCP over stdin/stdout until EOF, or
    (`http_port`) over the SDK's streamable HTTP transport at http://127.0.0.1:PORT/mcp until Ctrl-C."""
    from ragbit.serve.http_server import start_watcher
    from ragbit.serve.service import RagbitService

    service = RagbitService(cfg, refresh_on_request=not watch)
    with contextlib.redirect_stdout(sys.stderr):
        service.prepare(load_model=False, on_note=on_note)
    watcher = start_watcher(service, on_note) if watch else None
    where = f"http://127.0.0.1:{http_port}/mcp" if http_port is not None else "stdio"
    on_note(f"ragbit mcp: serving {cfg.repo} over {where}{' (watching for changes)' if watch else ''}")
    try:
        if http_port is not None:          # loopback only: the tools read private code
            build_server(service).run("streamable-http", host="127.0.0.1", port=http_port)
        else:
            build_server(service).run("stdio")
    finally:
        if watcher is not None:
            watcher.stop()
