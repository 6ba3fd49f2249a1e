"""Reading lines of a repository file for an agent, and nothing outside the repository.

Why so strict: an MCP client is driven by a model that may have read hostile text (a README telling it to
fetch ~/.ssh/id_rsa). A path is accepted only if it is relative, has no `..`, resolves (symlinks followed)
to a regular file inside the repository, is not under `.git/` or the index directory, and is not a file the
indexer treats as a secret (`.env*`, keys, credentials).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ragbit.errors import RagbitError

MAX_SPAN_LINES = 2000


class SpanRefused(RagbitError, ValueError):
    """A path outside the repository (or a secret), or lines that do not exist."""


@dataclass
class Span:
    path: str
    start_line: int
    end_line: int
    total_lines: int
    text: str

    def to_json(self) -> dict:
        return {"path": self.path, "start_line": self.start_line, "end_line": self.end_line,
                "total_lines": self.total_lines, "text": self.text}


def resolve_inside(repo: Path, path: str, index_dir: Path | None = None) -> Path:
    from ragbit.indexing.walker import SECRET_SPEC
    raw = path.replace("\\", "/").strip()
    if not raw:
        raise SpanRefused("empty path")
    pure = PurePosixPath(raw)
    if pure.is_absolute() or raw.startswith("~") or (len(raw) > 1 and raw[1] == ":"):
        raise SpanRefused(f"{path}: absolute paths are refused; give a path relative to the repository")
    if ".." in pure.parts:
        raise SpanRefused(f"{path}: '..' is refused; paths stay inside the repository")
    root = repo.resolve()
    target = (root / pure).resolve()
    if not target.is_relative_to(root):
        raise SpanRefused(f"{path}: resolves outside the repository (symlink)")
    rel = target.relative_to(root)
    if rel.parts and rel.parts[0] == ".git" or (index_dir is not None and target.is_relative_to(index_dir.resolve())):
        raise SpanRefused(f"{path}: inside .git or the index directory")
    if SECRET_SPEC.match_file(target.name):
        raise SpanRefused(f"{path}: looks like a secret (keys, credentials, .env); not readable through ragbit")
    if not target.is_file():
        raise SpanRefused(f"{path}: no such file in the repository")
    return target


def read_span(repo: Path, path: str, start_line: int = 1, end_line: int | None = None,
              index_dir: Path | None = None) -> Span:
    """Lines start_line..end_line (1-based, inclusive; end clipped to the file and to MAX_SPAN_LINES)."""
    target = resolve_inside(repo, path, index_dir)
    lines = target.read_text(encoding="utf-8", errors="replace").splitlines()
    start = max(1, int(start_line))
    if start > max(len(lines), 1):
        raise SpanRefused(f"{path} has {len(lines)} lines; start_line {start} is past the end")
    end = len(lines) if end_line is None or end_line <= 0 else min(int(end_line), len(lines))
    if end < start:
        raise SpanRefused(f"end_line {end_line} is before start_line {start}")
    end = min(end, start + MAX_SPAN_LINES - 1)
    rel = target.relative_to(repo.resolve()).as_posix()
    return Span(rel, start, end, len(lines), "\n".join(lines[start - 1:end]))
