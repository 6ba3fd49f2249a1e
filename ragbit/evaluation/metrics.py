"""Per-question retrieval scores, as ../shared/eval/score.py defines them (its `score_one`, line for line in
meaning), and the context recall of what a packer put into a prompt.

A question names its gold as files (`gold_files`, or `files` in `ragbit eval`'s format) and optionally line
ranges (`file`/`start_line`/`end_line` for one target, `gold_ranges` for several).

    file R@k      share of gold files among the top-k distinct files of the results
    file MRR@10   1/rank of the first gold file among the top-10 distinct files
    chunk R@k     1 if one of the top-k results is in a gold file and overlaps a target range (needs ranges)
    chunk MRR@10  likewise, 1/rank of the first such result
    ctx_lines@B   share of all gold lines inside the blocks packed into a budget of B tokens
    ctx_hit80@B   1 if at least one gold range is >= 80% inside them (a definition the model can read whole)
"""
from __future__ import annotations

import os

KS = (1, 5, 10)


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def norm_path(p, corpus_dir) -> str:
    """A result's path relative to the corpus, "/"-separated (absolute paths are made relative)."""
    p = str(p)
    if os.path.isabs(p):
        p = os.path.relpath(os.path.realpath(p), os.path.realpath(corpus_dir))
    p = os.path.normpath(p).replace(os.sep, "/")
    return p[2:] if p.startswith("./") else p


def gold_files(q: dict) -> list[str]:
    if "gold_files" in q:
        return list(q["gold_files"])
    if "files" in q:
        return list(q["files"])
    return [q["file"]]


def targets(q: dict) -> list[tuple[str, int, int]]:
    """Gold line ranges: the target symbol, or gold_ranges."""
    if "start_line" in q:
        return [(q["file"], q["start_line"], q["end_line"])]
    return [(g["file"], g["start_line"], g["end_line"]) for g in q.get("gold_ranges") or []]


def score_one(q: dict, results: list[dict], chunks: bool) -> dict[str, float]:
    """File- (and with `chunks`, chunk-) level scores of ranked results ({"path", "start_line", "end_line"})."""
    gold = set(gold_files(q))
    files: list[str] = []
    for r in results:
        if r["path"] not in files:
            files.append(r["path"])
    m: dict = {f"file_R@{k}": len(gold & set(files[:k])) / len(gold) for k in KS}
    m["file_MRR@10"] = next((1.0 / (i + 1) for i, f in enumerate(files[:10]) if f in gold), 0.0)
    tg = targets(q)
    if chunks and tg:
        def hit(r) -> bool:
            if r["start_line"] is None:
                return False
            e = r["end_line"] or r["start_line"]
            return any(r["path"] == f and r["start_line"] <= te and e >= ts for f, ts, te in tg)
        hits = [hit(r) for r in results]
        for k in KS:
            m[f"chunk_R@{k}"] = 1.0 if any(hits[:k]) else 0.0
        m["chunk_MRR@10"] = next((1.0 / (i + 1) for i, h in enumerate(hits[:10]) if h), 0.0)
    m["first_gold_file_rank"] = next((i + 1 for i, f in enumerate(files) if f in gold), None)
    return m


def context_metrics(q: dict, blocks, budget: int) -> dict[str, float]:
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
