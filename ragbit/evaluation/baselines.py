"""The reference points every ragbit figure is read against, computed in the same run on the same files.

- `BM25Files` / `BM25Windows`: ../shared/eval/score.py's baselines (package bm25s, its default tokenizer,
  English stop words; no stemming, no identifier splitting): whole files, or 40-line windows with a 20-line
  stride, each document prefixed with its path.
- `BM25WindowsPacked`: ../shared/eval/context_recall.py's context baseline: BM25 over 40-line windows, most
  relevant first, whole windows (tokens of the window + 12 for a header) packed greedily into a budget.
"""
from __future__ import annotations

import os

TEXT_EXTS = {".py", ".pyi", ".pyx", ".pxd", ".c", ".h", ".cpp", ".cc", ".hpp", ".js", ".rst", ".md",
             ".txt", ".toml", ".cfg", ".ini", ".yaml", ".yml"}
SKIP_DIRS = {".git", "__pycache__", ".ragbit", "node_modules", ".tox", ".venv", "venv"}
WINDOW, STRIDE, HEADER_TOKENS = 40, 20, 12


def corpus_files(corpus_dir, max_bytes: int = 1_000_000) -> list[tuple[str, str]]:
    """(relative path, text) of the text files a baseline indexes, in walk order."""
    from ragbit.evaluation.metrics import norm_path
    out = []
    for dp, dns, fns in os.walk(corpus_dir):
        dns[:] = sorted(d for d in dns if d not in SKIP_DIRS and not d.startswith(".")
                        and not d.endswith(".egg-info"))
        for fn in sorted(fns):
            if os.path.splitext(fn)[1].lower() not in TEXT_EXTS:
                continue
            p = os.path.join(dp, fn)
            try:
                if os.path.getsize(p) > max_bytes:
                    continue
                with open(p, "rb") as f:
                    b = f.read()
            except OSError:
                continue
            if b"\0" in b:
                continue
            out.append((norm_path(os.path.relpath(p, corpus_dir), corpus_dir), b.decode("utf-8", "replace")))
    return out


class BM25Files:
    """BM25 over whole files (`chunk_lines` None) or over windows of `chunk_lines` with `stride`."""

    def __init__(self, name: str = "bm25", chunk_lines: int | None = None, stride: int | None = None):
        self.name, self.chunk_lines, self.stride = name, chunk_lines, stride
        self.returns_chunks = chunk_lines is not None

    def index(self, corpus_dir) -> None:
        import bm25s
        docs, meta = [], []
        for path, text in corpus_files(corpus_dir):
            if self.chunk_lines is None:
                docs.append(path.replace("/", " ") + "\n" + text)
                meta.append((path, 1, text.count("\n") + 1))
            else:
                lines = text.splitlines()
                for s in range(0, max(1, len(lines)), self.stride):
                    e = min(len(lines), s + self.chunk_lines)
                    docs.append(path.replace("/", " ") + "\n" + "\n".join(lines[s:e]))
                    meta.append((path, s + 1, max(e, s + 1)))
                    if e >= len(lines):
                        break
        tok = bm25s.tokenize(docs, stopwords="en", show_progress=False)
        self.retriever = bm25s.BM25()
        self.retriever.index(tok, show_progress=False)
        self.meta, self.vocab = meta, tok.vocab

    def search(self, query: str, k: int) -> list[dict]:
        import bm25s
        q = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        q = [t for t in q if t in self.vocab]
        if not q or not self.meta:
            return []
        res, scores = self.retriever.retrieve([q], k=min(k, len(self.meta)), show_progress=False)
        return [{"path": self.meta[i][0], "start_line": self.meta[i][1], "end_line": self.meta[i][2],
                 "score": float(s)} for i, s in zip(res[0], scores[0])]


def BM25Windows() -> BM25Files:
    return BM25Files("bm25-chunk", WINDOW, STRIDE)


class _Window:
    __slots__ = ("path", "start_line", "end_line", "tokens")

    def __init__(self, path, start_line, end_line, tokens):
        self.path, self.start_line, self.end_line, self.tokens = path, start_line, end_line, tokens


class BM25WindowsPacked:
    """context_recall.py's baseline, in process: BM25 over 40-line windows, packed greedily."""

    name = "bm25-windows-packed"

    def __init__(self, corpus_dir, count_tokens, files=corpus_files):
        import bm25s
        self.count = count_tokens
        docs, self.meta = [], []
        for path, text in files(str(corpus_dir)):
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
        if not self.docs:
            return []
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
