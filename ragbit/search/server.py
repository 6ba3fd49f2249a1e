"""A small background search server per index, so `ragbit search` from the shell answers in milliseconds.

Why: a cold `ragbit search` imports bm25s/numba/scipy/faiss/onnxruntime and loads the BM25 index, the chunk
table and the ONNX session — seconds of CPU on every call. The first search of an index runs in-process and
starts this server (detached, `client.spawn_server`); later searches send one JSON request over a Unix-domain
socket inside the index directory and get the hits back (`ragbit/search/protocol.py`). When asked, the reply
also carries what `ragbit search` prints for those hits, made by the same pure function the CLI uses
(`ragbit/search/render.py`): the console script then prints it without importing rich or typer.

Safety rules:
- one server per index directory: it holds an exclusive flock on `search.lock` for its whole life;
- the socket only appears (atomic rename) once the server is loaded and listening, so a socket that refuses
  a connection is stale (its server died) and is removed by the client;
- each request names the repo and index dir; the server loads that repository's config as the CLI would and
  answers only when it agrees with its own on everything that changes results (else it answers "mismatch"
  and retires: the client searches in-process and starts a fresh server);
- JSON only (no pickle), bounded request size, socket file mode 0600;
- it lists itself in `ragbit/search/registry.py` (`ragbit server list` / `stop`);
- it exits after `search.server_idle_timeout` seconds without a request, when the index directory or its
  socket disappears, or on SIGTERM. A newer committed index generation is picked up by `Searcher` itself.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from ragbit.search import registry
from ragbit.search.protocol import (LOCK_NAME, MAX_K, MAX_REQUEST_BYTES, SOCKET_NAME, VERSION, encode, fingerprint,
                                    read_message, socket_path)

TICK_SECONDS = 1.0                   # how often an idle server checks its index dir, socket and timeout


class SearchServer:
    """Serves one index, one request at a time (a search takes milliseconds; the shell is one user)."""

    def __init__(self, cfg, idle_timeout: float):
        from ragbit.search.searcher import Searcher
        self.cfg, self.idle_timeout = cfg, idle_timeout
        self.index_dir = Path(cfg.index_dir).resolve()
        self.sock_path = socket_path(self.index_dir)
        self.fingerprint = fingerprint(cfg)
        self.searcher = Searcher(cfg)
        self._sock: socket.socket | None = None
        self.entry: Path | None = None       # this server's line in ragbit/search/registry.py
        self._ident: tuple[int, int] | None = None

    def warm_up(self) -> None:
        """Load the index, the embedding model and rich before the socket appears (errors show on first request)."""
        from ragbit.search.render import Terminal, render_search
        try:
            render_search(self.searcher.search("warm up", k=1, mode="hybrid"), False, Terminal())
        except Exception as e:  # noqa: BLE001  e.g. no embedding model: lexical searches still work
            print(f"warm-up: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def bind(self) -> None:
        """Listen on a temporary name, then rename onto the socket path: a visible socket always answers."""
        tmp = self.index_dir / f".{SOCKET_NAME}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(tmp))
        finally:
            os.umask(old_umask)
        sock.listen(16)
        os.replace(tmp, self.sock_path)
        st = os.stat(self.sock_path)
        self._sock, self._ident = sock, (st.st_ino, st.st_dev)
        sock.settimeout(TICK_SECONDS)

    def still_wanted(self) -> bool:
        try:
            st = os.stat(self.sock_path)
        except OSError:
            return False             # index dir deleted, or our socket removed
        return (st.st_ino, st.st_dev) == self._ident

    def serve_forever(self) -> None:
        last = time.monotonic()
        while True:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                if time.monotonic() - last > self.idle_timeout or not self.still_wanted():
                    return
                continue
            with conn:
                retire = self.handle(conn)
            last = time.monotonic()
            registry.touch(self.entry)           # `ragbit server list` shows when it was last used
            if retire or not self.still_wanted():
                return

    def handle(self, conn: socket.socket) -> bool:
        """Answer one request; True when this server should retire (a client with another config)."""
        conn.settimeout(10.0)
        retire = False
        try:
            request = self._validate(json.loads(read_message(conn, MAX_REQUEST_BYTES)))
            reply, retire = self.answer(request)
        except Exception as e:  # noqa: BLE001  a bad request or failing search never kills the server
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        try:
            conn.sendall(encode(reply))
        except OSError:
            pass
        return retire

    def answer(self, r: dict) -> tuple[dict, bool]:
        """(reply, retire) for a valid request: the hits, and what `ragbit search` prints when asked for."""
        import dataclasses
        from ragbit.config import RagbitConfig
        if Path(r["index_dir"]).resolve() != self.index_dir:
            return {"ok": False, "error": f"this server serves {self.index_dir}"}, False
        search = {"k": r["k"], "mode": r["mode"], "max_hits_per_file": r["max_hits_per_file"]}
        cfg = RagbitConfig.load(r["repo"], overrides={"index": {"dir": r["index_dir"]}, "search": search})
        if fingerprint(cfg) != self.fingerprint or r.get("config", self.fingerprint) != self.fingerprint:
            return {"ok": False, "error": "mismatch: this server serves another index or configuration"}, True
        if not cfg.search.server:
            return {"ok": False, "error": "the configuration turns the search server off"}, True
        s = cfg.search
        hits = self.searcher.search(r["query"], k=s.k, mode=s.mode, max_hits_per_file=s.max_hits_per_file)
        from ragbit.search.staleness import stale_files
        hits.stale = stale_files(cfg.repo, self.searcher.table, (h.path for h in hits))
        reply = {"ok": True, "hits": [dataclasses.asdict(h) for h in hits], "dense_complete": hits.dense_complete,
                 "mode": hits.mode, "stale": hits.stale}
        if r.get("render") is not None:
            from ragbit.search.render import ColorSystemConflict, Terminal, render_search
            render = r["render"]
            try:
                reply["stdout"], reply["stderr"] = render_search(hits, render.get("json") is True,
                                                                 Terminal.from_json(render.get("terminal") or {}))
            except ColorSystemConflict:
                pass                 # hits only: the client renders them itself
        return reply, False

    @staticmethod
    def _validate(r) -> dict:
        if not isinstance(r, dict) or r.get("v") != VERSION:
            raise ValueError(f"not a protocol-{VERSION} request")
        for name in ("query", "repo", "index_dir"):
            if not isinstance(r.get(name), str):
                raise ValueError(f"{name} is required (a string)")
        if r.get("mode") is not None and not isinstance(r["mode"], str):
            raise ValueError("mode must be a string")
        for name in ("k", "max_hits_per_file"):
            v = r.get(name)
            if v is not None and (type(v) is not int or not 0 <= v <= MAX_K):
                raise ValueError(f"{name} must be an integer in 0..{MAX_K}")
        for name in ("config", "render"):
            if r.get(name) is not None and not isinstance(r[name], dict):
                raise ValueError(f"{name} must be an object")
        return r

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            if self.still_wanted():
                self.sock_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import fcntl
    import signal
    from ragbit.config import RagbitConfig

    p = argparse.ArgumentParser(prog="python -m ragbit.search.server", description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True)
    p.add_argument("--index-dir", required=True)
    p.add_argument("--idle-timeout", type=float, default=None, help="seconds (default: config)")
    a = p.parse_args(argv)
    cfg = RagbitConfig.load(a.repo, overrides={"index": {"dir": a.index_dir}})
    idle = cfg.search.server_idle_timeout if a.idle_timeout is None else a.idle_timeout
    lock_fd = os.open(Path(cfg.index_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0                     # another server owns this index
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = SearchServer(cfg, idle)
    server.warm_up()
    server.bind()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} serving {server.index_dir}", flush=True)
    try:
        server.entry = registry.register(str(cfg.repo), str(server.index_dir))
        server.serve_forever()
    finally:
        registry.unregister(server.entry)
        server.close()
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} exits", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
