"""`ragbit search`'s background server: the `ragbit serve` app (app.py), run by uvicorn on a Unix socket in
the index directory, so the shell's later searches skip loading the index and the embedding model.

Why the same app: one implementation of search (and of query) for the CLI, Python, editors and agents. The
first `ragbit search` of an index runs in-process and starts this server detached
(`ragbit.search.client.spawn_server`); later searches are one `POST /v1/search` over the socket
(`ragbit/search/client.py`), answered with the hits and, when asked, what `ragbit search` prints for them.
It reads the index as `ragbit search` does and never writes it (no refresh per request: `ragbit index` or a
watcher does that; a newer committed generation is picked up by the Searcher itself). The generator model
is loaded only if a chat or completion request ever comes (the service loads it on first use).

Safety rules:
- one server per index directory: it holds an exclusive flock on `search.lock` for its whole life;
- the socket is bound under a temporary name (mode 0600) and renamed onto `search.sock` once the index and
  the embedding model are loaded and it listens, so a socket that refuses a connection is stale (its server
  died) and is removed by the client;
- each `ragbit search` request names its repository and index dir; the server loads that repository's config
  as the CLI would and answers only when it agrees with its own on everything that changes results (else 409,
  and it retires: the client searches in-process and starts a fresh server);
- it lists itself in `ragbit/search/registry.py` (`ragbit server list` / `stop`), touched after each request;
- it exits after `search.server_idle_timeout` seconds without a request, when the index directory or its
  socket disappears (or is replaced), or on SIGTERM.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

import uvicorn

from ragbit.search import registry
from ragbit.search.client import LOCK_NAME, SOCKET_NAME, socket_path

TICK_SECONDS = 1.0                   # how often the server checks its socket and its idle time


def bind_socket(index_dir: Path) -> tuple[socket.socket, tuple[int, int]]:
    """A listening socket at `index_dir/search.sock` (mode 0600), bound under a temporary name first and
    renamed into place, so a visible socket always answers. Returns it and its (inode, device)."""
    path = socket_path(index_dir)
    tmp = index_dir / f".{SOCKET_NAME}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(tmp))
    finally:
        os.umask(old_umask)
    sock.listen(64)
    os.replace(tmp, path)
    st = os.stat(path)
    return sock, (st.st_ino, st.st_dev)


class Lifetime:
    """Why this server should exit: idle too long (no request running, none for `idle_timeout` seconds), its
    socket gone or replaced (index dir deleted, another server took over), or retired by a request. Its
    `tracked` middleware also touches the registry entry after each request (`ragbit server list` shows the
    last use)."""

    def __init__(self, sock_path: Path, ident: tuple[int, int], idle_timeout: float) -> None:
        self.sock_path, self.ident, self.idle_timeout = sock_path, ident, idle_timeout
        self.entry: Path | None = None
        self.running, self.last, self.retired = 0, time.monotonic(), False

    def retire(self) -> None:
        self.retired = True

    def still_wanted(self) -> bool:
        try:
            st = os.stat(self.sock_path)
        except OSError:
            return False             # index dir deleted, or our socket removed
        return (st.st_ino, st.st_dev) == self.ident

    def over(self) -> bool:
        idle = not self.running and time.monotonic() - self.last > self.idle_timeout
        return self.retired or idle or not self.still_wanted()

    def tracked(self, app: Any) -> Callable:
        """`app` as a pure ASGI app that counts its running requests (streams pass through untouched)."""
        async def tracked_app(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            self.running += 1
            try:
                await app(scope, receive, send)
            finally:
                self.running -= 1
                self.last = time.monotonic()
                registry.touch(self.entry)
        return tracked_app


class SocketServer(uvicorn.Server):
    """uvicorn, asking `lifetime` once a second whether to shut down (gracefully: answers in flight finish)."""

    def __init__(self, config: uvicorn.Config, lifetime: Lifetime) -> None:
        super().__init__(config)
        self.lifetime = lifetime

    async def on_tick(self, counter: int) -> bool:          # uvicorn calls it every 0.1 s
        if self.lifetime.retired or (counter % round(TICK_SECONDS * 10) == 0 and self.lifetime.over()):
            self.should_exit = True
        return await super().on_tick(counter)


def warm_up(service: Any) -> None:
    """Load the index, the embedding model and rich before the socket appears (errors show on first request)."""
    from ragbit.search.render import Terminal, render_search
    try:
        render_search(service.search("warm up", k=1, mode="hybrid"), False, Terminal())
    except Exception as e:  # noqa: BLE001  e.g. no embedding model: lexical searches still work
        print(f"warm-up: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import fcntl
    import signal

    from ragbit.config import RagbitConfig
    from ragbit.serve.app import create_app
    from ragbit.serve.http_server import uvicorn_config
    from ragbit.serve.service import RagbitService

    p = argparse.ArgumentParser(prog="python -m ragbit.serve.socket_server", description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True)
    p.add_argument("--index-dir", required=True)
    p.add_argument("--idle-timeout", type=float, default=None, help="seconds (default: config)")
    a = p.parse_args(argv)
    cfg = RagbitConfig.load(a.repo, overrides={"index": {"dir": a.index_dir}})
    idle = cfg.search.server_idle_timeout if a.idle_timeout is None else a.idle_timeout
    index_dir = Path(cfg.index_dir).resolve()
    lock_fd = os.open(index_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0                     # another server owns this index
    # uvicorn handles SIGTERM by shutting down gracefully, then raises it again with this handler in place
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    service = RagbitService(cfg, refresh_on_request=False)
    warm_up(service)
    sock, ident = bind_socket(index_dir)
    lifetime = Lifetime(socket_path(index_dir), ident, idle)
    app = create_app(service, on_retire=lifetime.retire)
    _log(f"serving {index_dir}")
    try:
        lifetime.entry = registry.register(str(cfg.repo), str(index_dir))
        SocketServer(uvicorn_config(lifetime.tracked(app)), lifetime).run(sockets=[sock])
    finally:
        registry.unregister(lifetime.entry)
        sock.close()
        if lifetime.still_wanted():
            socket_path(index_dir).unlink(missing_ok=True)
        _log("exits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
