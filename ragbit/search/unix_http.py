"""One HTTP/1.1 POST over a Unix-domain socket: how `ragbit search` talks to the index's warm server (the
`ragbit serve` app, run by uvicorn on `REPO/.ragbit/search.sock`).

Why not `http.client` (or an HTTP library): a warm `ragbit search` is a fresh process whose own work is mostly
imports; `http.client` pulls in `email.parser` and `ssl`, ~16 ms of CPU per search (measured: `python -c
"import http.client"` 58 ms vs `import json, socket` 42 ms, p50 of 15, Zen4), a sixth of the 100 ms a warm
search may take. Both ends are ours, so the exchange is the smallest one HTTP allows: one request with
`Connection: close`, read to the end, a status line, headers, and a body of `Content-Length` bytes. Anything
else in the reply (chunked encoding, a short body, no status line) raises `ProtocolError`, which callers treat
like any failed exchange (the search then runs in-process).
"""
from __future__ import annotations

import socket

MAX_REPLY = 256 << 20            # a search reply is kilobytes; this only bounds a misbehaving peer


class ProtocolError(OSError):
    """The reply is not the plain HTTP/1.1 answer this client reads."""


def post(path: str, route: str, body: bytes, timeout: float,
         content_type: str = "application/json") -> tuple[int, bytes]:
    """(status, body) of `POST route` with `body` to the server listening on the Unix socket at `path`.

    Raises ConnectionRefusedError / FileNotFoundError when nobody listens there (a stale socket), another
    OSError on a timeout or broken connection, ProtocolError on a reply it cannot read."""
    head = (f"POST {route} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(head + body)
        parts, size = [], 0
        while block := sock.recv(1 << 16):
            parts.append(block)
            size += len(block)
            if size > MAX_REPLY:
                raise ProtocolError("reply too large")
    return parse_reply(b"".join(parts))


def parse_reply(raw: bytes) -> tuple[int, bytes]:
    """(status, body) of a whole HTTP/1.1 reply with a Content-Length body."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if not sep or len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        raise ProtocolError("no HTTP status line")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError("malformed header line")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ProtocolError("chunked reply")
    length = headers.get("content-length", "")
    if not length.isdigit() or len(rest) < int(length):
        raise ProtocolError("reply without a complete Content-Length body")
    return int(status[1]), rest[:int(length)]
