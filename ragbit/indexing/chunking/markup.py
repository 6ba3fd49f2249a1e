"""Markdown and reStructuredText: split at headings; the scope is the heading path ("# Guide > ## Install").

Headings come from tree-sitter (so a `# comment` inside a fenced code block is not a heading); the hierarchy
is rebuilt here from heading levels. Markdown levels are the `#` count (setext `===` is 1, `---` is 2).
reStructuredText has no fixed levels: like docutils, the first adornment style seen is level 1, the next new
one level 2, and so on. Both are rendered with `#` marks so scopes look the same for every markup language.
"""
from __future__ import annotations

from ragbit.indexing.chunking.budget import Budget, Piece, SCOPE_SEP
from ragbit.indexing.chunking.syntax import _parser
from ragbit.indexing.chunking.windows import span_pieces

# Only these containers can hold document-level headings (not quotes or list items).
_MD_CONTAINERS = frozenset({"document", "section"})


def markup_pieces(budget: Budget, language: str, text: str, overlap: int) -> list[Piece]:
    """Pieces for a markup file: the text before the first heading, then one span per heading."""
    source = text.encode("utf-8")
    root = _parser(language).parse(source).root_node
    headings = _markdown_headings(root, source) if language == "markdown" else _rst_headings(root, source)
    last = len(budget.lines) - 1
    pieces: list[Piece] = []
    first_row = headings[0][0] if headings else last + 1
    pieces += span_pieces(budget, 0, first_row - 1, "", overlap)
    path: list[tuple[int, str]] = []            # (level, label) of the enclosing headings
    for i, (row, level, title) in enumerate(headings):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, f"{'#' * level} {title}"))
        end = headings[i + 1][0] - 1 if i + 1 < len(headings) else last
        pieces += span_pieces(budget, row, end, SCOPE_SEP.join(label for _, label in path), overlap)
    return pieces


def _clean(raw: bytes) -> str:
    return " ".join(raw.decode("utf-8", "replace").split())


def _markdown_headings(root, source: bytes) -> list[tuple[int, int, str]]:
    """(row, level, title) for every ATX and setext heading at document level."""
    found: list[tuple[int, int, str]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        for child in node.named_children:
            if child.type == "atx_heading":
                marker = child.named_children[0].type if child.named_children else "atx_h1_marker"
                level = int(marker[5]) if marker.startswith("atx_h") and marker[5].isdigit() else 1
                content = child.child_by_field_name("heading_content")
                title = _clean(source[content.start_byte:content.end_byte]) if content is not None else ""
                found.append((child.start_point[0], level, title))
            elif child.type == "setext_heading":
                underline = next((c for c in child.named_children if c.type.startswith("setext_h")), None)
                level = 2 if underline is not None and underline.type.startswith("setext_h2") else 1
                para = next((c for c in child.named_children if c.type == "paragraph"), None)
                title = _clean(source[para.start_byte:para.end_byte]) if para is not None else ""
                found.append((child.start_point[0], level, title))
            elif child.type in _MD_CONTAINERS:
                stack.append(child)
    return sorted(found)


def _rst_headings(root, source: bytes) -> list[tuple[int, int, str]]:
    """(row, level, title) for every section title; levels by order of first appearance of adornment styles."""
    found: list[tuple[int, int, str]] = []
    styles: dict[tuple[str, bool], int] = {}
    for node in root.named_children:
        if node.type != "section":
            continue
        title = next((c for c in node.named_children if c.type == "title"), None)
        if title is None:
            continue
        lines = source[node.start_byte:node.end_byte].decode("utf-8", "replace").split("\n")
        underline = lines[-1].strip()
        overlined = len(lines) > 2 or (lines[0].strip() and lines[0].strip()[0] * len(lines[0].strip())
                                       == lines[0].strip() and not lines[0].strip()[0].isalnum())
        style = (underline[:1], bool(overlined))
        level = styles.setdefault(style, len(styles) + 1)
        found.append((node.start_point[0], level, _clean(source[title.start_byte:title.end_byte])))
    return found
