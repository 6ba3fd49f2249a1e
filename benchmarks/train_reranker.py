"""Train the short-question reranker (ragbit/search/rerank.py): one weight per feature, listwise.

The questions, the project copies (every docstring blanked) and their indexes are the query adapter's
(benchmarks/train_query_adapter.py, same --work directory: what it made is reused, what is missing is made). For
each question, ragbit's own hybrid search gives the first RERANK_DEPTH fused candidates and their features, exactly
as a search computes them (Searcher.fused + Searcher.rerank_features, with the shipped query adapter). The model is
a softmax over each question's candidates of `((x - mean) / scale) @ w`, fitted to put the chunks that overlap the
question's function first, with LAMBDA * |w|^2; questions whose function is not among the candidates teach nothing
and are left out. Leave-projects-out (--holdout) reports chunk R@1 / R@10 (with the list's per-file cap) and MRR
before and after on projects the weights never saw; --save trains on every project and writes the `.json`.

    python benchmarks/train_reranker.py --work /tmp/qa-train            # ~1 min once the adapter's work dir exists
    python benchmarks/train_reranker.py --work /tmp/qa-train --save     # writes ragbit/search/rerankers/
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_query_adapter import blank_docstrings, copy_sources, index_projects, make_pairs  # noqa: E402

LAMBDA = 0.01
LIST_CAP = 6          # hits per file when scoring a list (the short-question cap)


def candidates(pairs: Path, index_root: Path, embedder) -> list[dict]:
    """Per question: its project, the candidates' paths, features and gold flags, in fused order."""
    from ragbit.config import RagbitConfig
    from ragbit.search.rerank import RERANK_DEPTH
    from ragbit.search.searcher import Searcher
    queries = [json.loads(line) for line in (pairs / "queries.jsonl").open()]
    out, searchers = [], {}
    for q in queries:
        corpus = q["corpus"]
        if corpus not in searchers:
            cfg = RagbitConfig.load(pairs / corpus, overrides={"index": {"dir": str(index_root / corpus)}})
            searchers[corpus] = Searcher(cfg, embedder=embedder)
            searchers[corpus]._load()
        s = searchers[corpus]
        fused = s.fused(q["query"], "hybrid", RERANK_DEPTH)[:RERANK_DEPTH]
        t = s.table
        gold = np.array([t.path[pos] == q["file"] and t.start_line[pos] <= q["end_line"]
                         and t.end_line[pos] >= q["start_line"] for pos, _ in fused])
        out.append({"corpus": corpus, "paths": [t.path[pos] for pos, _ in fused], "gold": gold,
                    "X": s.rerank_features(q["query"], fused)})
    return out


def fit(data: list[dict], lam: float = LAMBDA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, weights) minimising the listwise softmax loss over the questions with a gold candidate."""
    from scipy.optimize import minimize
    data = [d for d in data if d["gold"].any()]
    allX = np.concatenate([d["X"] for d in data])
    mean, scale = allX.mean(0), allX.std(0)
    scale[scale == 0] = 1.0
    Z = [((d["X"] - mean) / scale, d["gold"] / d["gold"].sum()) for d in data]

    def loss(w):
        total, grad = 0.0, np.zeros_like(w)
        for z, target in Z:
            s = z @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            total -= float(target @ np.log(p + 1e-12))
            grad -= z.T @ (target - p)
        return total / len(Z) + lam * w @ w, grad / len(Z) + 2 * lam * w
    w0 = np.zeros(allX.shape[1])
    w0[0] = 1.0                                    # start from the fused order
    return mean, scale, minimize(loss, w0, jac=True, method="L-BFGS-B").x


def scores(data: list[dict], model=None) -> dict[str, float]:
    """chunk R@1, R@10 (LIST_CAP hits per file) and MRR@10 of the fused order, or of the model's."""
    r1, r10, mrr = [], [], []
    for d in data:
        order = np.arange(len(d["paths"]))
        if model is not None:
            mean, scale, w = model
            order = np.argsort(-(((d["X"] - mean) / scale) @ w), kind="stable")
        seen: dict[str, int] = {}
        kept = []
        for i in order:
            seen[d["paths"][i]] = seen.get(d["paths"][i], 0) + 1
            if seen[d["paths"][i]] <= LIST_CAP:
                kept.append(bool(d["gold"][i]))
        first = next((r for r, g in enumerate(kept[:10]) if g), None)
        r1.append(first == 0)
        r10.append(first is not None)
        mrr.append(0.0 if first is None else 1 / (first + 1))
    return {"R@1": round(float(np.mean(r1)), 3), "R@10": round(float(np.mean(r10)), 3),
            "MRR@10": round(float(np.mean(mrr)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/qa-train", help="the query adapter's work dir (copies, pairs, indexes)")
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--holdout", default="networkx,anyio,docutils;huggingface_hub,pydantic,setuptools,starlette;"
                    "mpmath,fsspec,markdown_it,typer", help="';'-separated groups of projects held out in turn")
    ap.add_argument("--lambda", dest="lam", type=float, default=LAMBDA)
    ap.add_argument("--save", action="store_true", help="train on every project and write the reranker")
    a = ap.parse_args()

    from ragbit.indexing.embeddings import Embedder
    from ragbit.search.rerank import FEATURES, reranker_path
    work = Path(a.work)
    pairs = make_pairs(work, copy_sources(work), Path(a.eval_dir))
    blank_docstrings(pairs)
    embedder = Embedder()
    index_projects(pairs, work / "index", embedder)
    data = candidates(pairs, work / "index", embedder)
    print(f"{len(data)} questions, {sum(d['gold'].any() for d in data)} with their function among the candidates",
          file=sys.stderr)

    figures = {}
    for group in filter(None, a.holdout.split(";")):
        held = set(group.split(","))
        val = [d for d in data if d["corpus"].rsplit("-", 1)[0] in held]
        before, after = scores(val), scores(val, fit([d for d in data if d not in val], a.lam))
        figures[group] = {"before": before, "after": after}
        print(f"held out {group} ({len(val)} questions): chunk {before} -> {after}")
    if a.save:
        mean, scale, w = fit(data, a.lam)
        path = reranker_path(embedder._base_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"model": embedder._base_id, "command": "python benchmarks/train_reranker.py --save",
                "features": list(FEATURES), "mean": mean.round(6).tolist(), "scale": scale.round(6).tolist(),
                "weights": w.round(6).tolist(), "projects": sorted({d["corpus"] for d in data}),
                "questions": len(data), "lambda": a.lam, "held_out_chunk_figures_before_after": figures}
        path.write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
