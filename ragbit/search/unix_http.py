"""HTTP over a Unix-domain socket with the standard library's client: how `ragbit search` talks to the index's
warm server (the `ragbit serve` app, run by uvicorn on `REPO/.ragbit/search.sock`).

Why not an HTTP library: the console script's fast path must stay light (httpx/requests cost tens of ms to
import); `http.client` only needs to be told how to open its socket.
"""
from __future__ import annotations

import http.client
import socket


class UnixHTTPConnection(http.client.HTTPConnection):
    """An `http.client.HTTPConnection` whose socket is the Unix-domain socket at `path` (Host: localhost)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
