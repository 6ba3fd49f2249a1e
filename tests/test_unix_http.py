"""ragbit/search/unix_http.py: the one POST the console script sends, against a hand-run peer."""
from __future__ import annotations

import socket
import threading

import pytest

from ragbit.search.unix_http import ProtocolError, parse_reply, post


def test_parse_reply_reads_status_and_exactly_content_length_bytes():
    raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}trailing"
    assert parse_reply(raw) == (200, b'{"a":1}')
    assert parse_reply(b"HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n") == (409, b"")


@pytest.mark.parametrize("raw", [
    b"",                                                                   # the peer closed without answering
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",                  # cut off
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n{}",                                           # no length
    b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 2\r\n\r\n{}",
])
def test_a_reply_it_cannot_read_is_a_protocol_error(raw):
    with pytest.raises(ProtocolError):
        parse_reply(raw)


def test_post_sends_one_closed_request_and_reads_the_reply(tmp_path):
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    seen = {}

    def serve():
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 11:
                data += conn.recv(4096)
            seen["request"] = data
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npong")

    t = threading.Thread(target=serve)
    t.start()
    try:
        assert post(path, "/v1/search", b'{"q": "\xc3\xa9"}', timeout=10) == (200, b"pong")
    finally:
        t.join(10)
        listener.close()
    head, _, body = seen["request"].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/search HTTP/1.1" and body == b'{"q": "\xc3\xa9"}'
    assert {"Content-Length: 11", "Connection: close", "Host: localhost"} <= set(lines)


def test_nobody_listening_is_a_refused_connection(tmp_path):
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()                                             # the file stays, nobody listens: a stale socket
    with pytest.raises(ConnectionRefusedError):
        post(str(path), "/v1/search", b"{}", timeout=5)
