"""`[embed] lexical_only`: files whose chunks get BM25 only, no vector.

WHY: embedding is nearly all of a cold index, and in a large project much of what is embedded is rarely what a
semantic question is after. Django 5.1.15 (59,020 chunks, model MACs per chunk from its real token counts):
tests/ hold 53.8% of the chunks and 47% of the embedding work, docs/ 19.2% / 29%, the package itself 23.5% / 19%,
static assets and locale files 3% / 4%. With `lexical_only = ["tests/"]` a Django index embeds about half as much,
and a word-for-word search still finds every test (BM25 covers every chunk). The default is empty: the
development sets ask no question whose answer is a test, so what a semantic search for tests loses is unmeasured.

Patterns are gitignore-style, matched on repository-relative paths, as `[walk] include` / `ignore` are.
"""
from __future__ import annotations

import numpy as np
from pathspec import GitIgnoreSpec


def embedded_rows(files, chunks: int, patterns: list[str]) -> np.ndarray:
    """(chunks,) bool: True for a chunk that gets a vector, False for one of a file matching `patterns`.

    `files`: the chunk table's files in order (each with `.path`, `.first`, `.count`)."""
    wanted = np.ones(chunks, dtype=bool)
    if not patterns:
        return wanted
    spec = GitIgnoreSpec.from_lines(patterns)
    for f in files:
        if f.count and spec.match_file(f.path):
            wanted[f.first:f.first + f.count] = False
    return wanted
