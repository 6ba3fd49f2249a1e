"""`[embed] lexical_only`: files whose chunks get BM25 only, no vector.

WHY: embedding is nearly all of a cold index, and in a large project much of what is embedded is rarely what a
semantic question is after. Django 5.1.15 (59,020 chunks, model MACs per chunk from its real token counts):
tests/ hold 53.8% of the chunks and 47% of the embedding work, docs/ 19.2% / 29%, the package itself 23.5% / 19%,
static assets and locale files 3% / 4% (so a rule for data/translation files alone would save little). With
`lexical_only = ["tests/"]` a Django index embeds 27,377 of 59,302 chunks: 357 vs 649 CPU-s for the full index
(Emerald Rapids, openvino bf16), and a word-for-word search still finds every test (BM25 covers every chunk).
Recall with it (retrieval_eval.py, cached vectors, same path): docstring set (127 q, tests 35% of the chunks)
hybrid file R@1/R@10 .756/1.000 and chunk R@10 .898 unchanged, context@1500 .850 -> .858, dense unchanged;
issue set, Django 3.1 + 4.0 (40 q) hybrid file R@1 .675 -> .700, R@10 .900 = .900, chunk R@10 .737 -> .763,
context@1500 .579 = .579, dense context@1500 .632 -> .605 (one question). The default is still empty: neither set
asks a question whose answer is a test, so what a semantic search for tests loses is unmeasured, and a user
asking "where is X tested" would silently get words-only matches. Those chunks also lack every dense signal in a
hybrid list, so the learned reranker puts them below chunks that have both: in a two-file repository the query
`test_add` ranks `def add` above `def test_add` with the setting, and `def test_add` first without it.

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
