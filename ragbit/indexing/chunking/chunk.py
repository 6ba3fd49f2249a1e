"""The `Chunk` record: one retrievable span of one file, and the exact text that gets embedded for it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass


def make_embed_text(path: str, scope: str, text: str) -> str:
    """What the embedder and the lexical index see: the path and scope give the model context the lines lack.

    One function serves both `Chunk.embed_text` and the chunker's budget checks, so a chunk that was measured
    to fit `max_tokens` is exactly the string that is later embedded. Changing it changes every content hash:
    bump `CHUNKER_VERSION` with it.

    Path and scope are capped (their last `MAX_HEADER_CHARS`): a 400-character path used to take the whole
    token budget, and the file was cut into one chunk per character.
    """
    path, scope = _tail(path), _tail(scope)
    return f"{path}\n{scope}\n{text}" if scope else f"{path}\n{text}"


MAX_HEADER_CHARS = 160


def _tail(header: str) -> str:
    """`header` if short, else "..." and its last MAX_HEADER_CHARS characters (the file name and the innermost
    scope are what a question names)."""
    return header if len(header) <= MAX_HEADER_CHARS else "..." + header[-MAX_HEADER_CHARS:]


@dataclass(frozen=True)
class Chunk:
    """A contiguous run of source lines.

    `start_line`/`end_line` are 1-based and inclusive; `text` is exactly those lines joined with "\\n" (newlines
    normalised). The single exception: a line too long to fit `max_tokens` on its own is cut into several chunks
    with the same start/end line, each holding a consecutive slice of that line.
    """

    path: str
    language: str
    start_line: int
    end_line: int
    scope: str          # "class Indexer > def add"; "" at module level; markdown "# Title > ## Section"
    text: str

    @property
    def embed_text(self) -> str:
        return make_embed_text(self.path, self.scope, self.text)

    @property
    def content_hash(self) -> str:
        """sha256 of `embed_text`: the embedding cache key (same text + same model -> same vector)."""
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()

    @property
    def n_lines(self) -> int:
        return self.end_line - self.start_line + 1
