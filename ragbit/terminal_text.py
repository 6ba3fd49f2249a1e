"""Text from a repository made safe to print on a terminal.

Why: file contents and file names reach the user's terminal through `ragbit search`, `query` and warnings.
An ESC sequence in a file (clear screen, set the window title, colours, OSC 8 links) or a newline in a file
name would act on the terminal instead of being shown. Control characters are shown as escapes instead
(`\\x1b`), and so are the bidirectional overrides that make code read differently than it runs ("Trojan
Source", CVE-2021-42574). JSON output is left alone: json.dump escapes control characters itself.
"""
from __future__ import annotations

import re

_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f" + _BIDI + "]")
_UNSAFE_OR_NEWLINE = re.compile("[\x00-\x1f\x7f\x80-\x9f" + _BIDI + "]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def for_terminal(text: str, keep_newlines: bool = True) -> str:
    """`text` with every control character except newline and tab (and newline too when `keep_newlines` is
    False: for one-line things like paths) replaced by its escape."""
    return (_UNSAFE if keep_newlines else _UNSAFE_OR_NEWLINE).sub(_escape, text)
