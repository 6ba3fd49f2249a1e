"""The search server's one protocol: a JSON search request in, JSON hits out, one line each way.

Request (client -> server), UTF-8 JSON ending in a newline:

    {"v": 2, "repo": "/abs/repo", "index_dir": "/abs/repo/.ragbit", "query": "...",
     "k": 10 | null, "mode": "hybrid" | "dense" | "lexical" | null, "max_hits_per_file": 2 | null,
     "config": {...} (optional: the client's `fingerprint(cfg)`),
     "render": {"json": false, "terminal": {...}} (optional: also return the output `ragbit search` prints)}

null k / mode / max_hits_per_file mean the repository's configured values. The server loads the repository's
config the way the CLI does (defaults, ragbit.toml, these values) and answers only when that config, and the
client's own when it sent one, agree with the config it was started with on everything that changes results.

Reply (server -> client):

    {"ok": true, "hits": [{Hit fields}, ...], "dense_complete": true, "mode": "hybrid",
     "stale": {"path": "deleted" | "changed"},     # hit files that no longer match the index
     "stdout": "...", "stderr": "..."}            # the last two only when "render" was asked for
    {"ok": false, "error": "one line", "retired": false}

Standard library only: the console script imports this before anything else (see `ragbit/launcher.py`).
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

VERSION = 2
SOCKET_NAME = "search.sock"
LOCK_NAME = "search.lock"
LOG_NAME = "search-server.log"
MAX_REQUEST_BYTES = 64 * 1024        # a question plus a few small fields
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
MAX_K = 10_000          # results per search, and chunks per query ([search] k, [query] k)


def socket_path(index_dir: Path) -> Path:
    return Path(index_dir) / SOCKET_NAME


def encode(message: dict) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode() + b"\n"


def read_message(conn: socket.socket, limit: int) -> bytes:
    """One newline-terminated message (or up to EOF); ValueError past `limit` bytes."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"message longer than {limit} bytes")
    return bytes(buf)


def fingerprint(cfg) -> dict:
    """What a server must agree on with a client to give the same answer as an in-process search."""
    import dataclasses               # here, not at the top: the console script's fast path imports this module
    return {"repo": str(cfg.repo), "index_dir": str(Path(cfg.index_dir).resolve()),
            "embed": dataclasses.asdict(cfg.embed), "rrf_k": cfg.search.rrf_k}
