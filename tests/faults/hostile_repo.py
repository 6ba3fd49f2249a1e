"""A repository built to break a walker: what `ragbit index` must survive without a traceback or a hang.

`build(root)` returns {relative name: the skip reason expected, or None if the file must be indexed}.
Unreadable files cannot be made with chmod when tests run as root, so they are simulated: the test replaces
`ragbit.indexing.walker.read_bytes` for the names listed in `UNREADABLE`.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

UNREADABLE = ("locked/secret_plans.py", "locked/also_locked.md")
DEPTH = 200


def build(root: Path) -> dict[str, str | None]:
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str | None] = {}

    def write(rel: str, data: bytes | str, reason: str | None) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        expect[rel] = reason

    write("ok.py", "def fine():\n    return 'an ordinary file among hostile ones'\n", None)
    # links: loop to an ancestor, out of the tree, broken, chain, link to a FIFO
    (root / "loop").mkdir()
    os.symlink("..", root / "loop" / "back_to_root")
    os.symlink("/etc", root / "outside_dir")
    os.symlink("/etc/hostname", root / "outside_file")
    os.symlink("does/not/exist", root / "broken")
    os.symlink("ok.py", root / "link_to_ok.py")
    os.symlink("link_to_ok.py", root / "link_chain.py")
    # special files: a FIFO (a reader would block forever), a socket, links to devices
    os.mkfifo(root / "pipe.py")
    os.symlink("pipe.py", root / "link_to_pipe.py")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "server.sock"))
    sock.close()
    os.symlink("/dev/zero", root / "zeros.py")
    os.symlink("/dev/urandom", root / "random.txt")
    # unreadable (simulated, see module doc)
    for rel in UNREADABLE:
        write(rel, "x = 1\n", "unreadable")
    # encodings and bytes
    write("latin1.py", "caf\xe9 = 'cr\xe8me'\n".encode("latin-1"), "undecodable")
    write("utf16.py", "def utf16():\n    return 1\n".encode("utf-16"), "binary")
    write("nul_in_source.py", b"def a():\n    return '\x00'\n", "binary")
    write("late_nul.py", b"x = 1\n" * 3000 + b"y = '\x00'\n", None)                 # NUL after the sniff window
    write("bom.py", "\ufeffdef with_bom():\n    return 2\n".encode(), None)
    write("crlf.py", b"def crlf():\r\n    return 3\r\n", None)
    write("lone_cr.py", b"a = 1\rb = 2\r", None)
    write("surrogate_escape.txt", "\udcff".encode("utf-8", "surrogatepass"), "undecodable")
    write("escapes.md", "# Title \x1b[2J\x1b]0;pwned\x07\n\nbody \x1b[31mred\x1b[0m\n", None)
    write("empty.py", b"", None)
    write("blank_lines.py", b"\n" * 5000, None)
    # sizes: one 10 MB line (too large), a 900 kB line (minified), many short lines just under the limit
    write("huge_line.js", b"a" * 10_000_000, "too large")
    write("long_line.py", b"x = '" + b"b" * 900_000 + b"'\n", "minified/generated")
    write("many_lines.txt", b"word " * 15 + b"\n" * 1 + (b"line of text\n" * 70_000), None)
    # depth: 200 nested directories
    deep = "/".join(f"d{i}" for i in range(DEPTH))
    write(f"{deep}/bottom.py", "def at_the_bottom():\n    return 'deep'\n", None)
    # names: newline, tab, escape sequence, invalid UTF-8 (bytes), very long, leading dash, spaces
    write("new\nline.py", "def newline_name():\n    pass\n", None)
    write("tab\tname.py", "def tab_name():\n    pass\n", None)
    write("esc\x1b[2Jname.py", "def escape_name():\n    pass\n", None)
    write("-rf.py", "def dash():\n    pass\n", None)
    write("spaces in name.py", "def spaces():\n    pass\n", None)
    write("x" * 250 + ".py", "def long_name():\n    pass\n", None)
    bad = os.fsencode(root) + b"/bad_\xff\xfe_name.py"
    with open(bad, "wb") as f:
        f.write(b"def invalid_encoding_name():\n    pass\n")
    expect[os.fsdecode(b"bad_\xff\xfe_name.py")] = None
    # pathological .gitignore: catastrophic-looking globs, invalid patterns, a huge pattern, CRLF, NUL
    write(".gitignore", "\n".join([
        "**/**/**/**/**/**/**/**/**/**/*a*a*a*a*a*a*a*a*a*a*a*a*b", "[", "[z-a]", "\\", "!", "!!", "/",
        "***.tmp", "a/**/b/**/c/**/d/**/e/**/f", "x" * 20_000, "ignored_by_git/", "\x00", "#comment\r",
        "*.log\r", "[[[[[[[[[[[[[[[[[[[[", "{a,b}", "\\!important.txt",
    ]) + "\n", None)
    write("ignored_by_git/file.py", "x = 1\n", "ignored")
    write("debug.log", "log line\n", "ignored")
    return expect
