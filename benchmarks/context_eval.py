"""What reaches the prompt: context-level recall of ragbit's real packer against BM25 windows packed the same way.

Used by `retrieval_eval.py`. A query's gold is one or more line ranges (`gold_ranges` of the issue set, or
`file`/`start_line`/`end_line` of the docstring set). For each token budget, the hits that the pipeline's
retriever returns are packed by the pipeline's own `ContextPacker` (the generator's tokenizer counts the
tokens), and two numbers are kept per query:

- `ctx_lines@B`: the share of all gold lines that lie inside the packed blocks;
- `ctx_hit80@B`: 1 if at least one gold range is >= 80% inside (a definition the model can read whole).

The baseline is the one `../shared/eval/context_recall.py` measures: BM25 (bm25s, its default tokenizer,
English stop words) over 40-line windows with a 20-line stride, most relevant first, whole windows
(tokens of the window + 12 for a header), greedily into the same budget.
"""
from __future__ import annotations

import os
from pathlib import Path

BUDGETS = (500, 1000, 1500, 3000)
WINDOW, STRIDE, HEADER_TOKENS = 40, 20, 12


def load_count_tokens(gguf_path: str):
    """Token counter with the generator's real tokenizer, taken from a (tiny) model file that carries it."""
    from generator.gguf_file import GGUFFile
    from generator.tokenizer import BonsaiTokenizer
    tok = BonsaiTokenizer.from_metadata(GGUFFile(gguf_path).metadata)
    return tok.count


def targets(q: dict) -> list[tuple[str, int, int]]:
    if "start_line" in q:
        return [(q["file"], q["start_line"], q["end_line"])]
    return [(g["file"], g["start_line"], g["end_line"]) for g in q.get("gold_ranges") or []]


def context_metrics(q: dict, blocks: list, budget: int) -> dict[str, float]:
    """`blocks`: anything with path/start_line/end_line (packed blocks, or baseline windows)."""
    tg = targets(q)
    if not tg:
        return {}
    got: dict[str, set[int]] = {}
    for b in blocks:
        got.setdefault(os.path.normpath(b.path), set()).update(range(b.start_line, b.end_line + 1))
    total = inside = 0
    best = 0.0
    for f, s, e in tg:
        lines = set(range(s, e + 1))
        n_in = len(lines & got.get(os.path.normpath(f), set()))
        total, inside = total + len(lines), inside + n_in
        best = max(best, n_in / len(lines))
    return {f"ctx_lines@{budget}": inside / total, f"ctx_hit80@{budget}": float(best >= 0.8)}


class _Window:
    __slots__ = ("path", "start_line", "end_line", "tokens")

    def __init__(self, path, start_line, end_line, tokens):
        self.path, self.start_line, self.end_line, self.tokens = path, start_line, end_line, tokens


class BM25WindowsPacked:
    """context_recall.py's baseline, in process: BM25 over 40-line windows, packed greedily."""

    name = "bm25-windows-packed"

    def __init__(self, corpus_dir: Path, count_tokens, corpus_files):
        import bm25s
        self.count = count_tokens
        docs, self.meta = [], []
        for path, text in corpus_files(str(corpus_dir)):
            lines = text.splitlines()
            for s in range(0, max(1, len(lines) - STRIDE), STRIDE):
                chunk = lines[s:s + WINDOW]
                if chunk:
                    docs.append("\n".join(chunk))
                    self.meta.append((path, s + 1, s + len(chunk)))
        self.docs = docs
        self._tokens: dict[int, int] = {}
        self.bm = bm25s.BM25()
        self.bm.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)

    def blocks(self, query: str, budget: int) -> list[_Window]:
        import bm25s
        res, _ = self.bm.retrieve(bm25s.tokenize([query], stopwords="en", show_progress=False),
                                  k=min(50, len(self.docs)), show_progress=False)
        used, out = 0, []
        for i in map(int, res[0]):
            if i not in self._tokens:
                self._tokens[i] = self.count(self.docs[i]) + HEADER_TOKENS
            n = self._tokens[i]
            if used + n > budget:
                continue
            used += n
            out.append(_Window(*self.meta[i], n))
        return out
