"""Train the short-question reranker (ragbit/search/rerank.py): one weight per feature, listwise.

The questions are made the query adapter's way (benchmarks/train_query_adapter.py: first docstring sentence -> the
function, every docstring blanked) from installed projects that are in neither development set, in the eval
README's example list, nor in the adapter's own training projects. Why not the adapter's projects: on those the
adapted dense list is better than it will be on a user's repository, and the reranker would learn to trust it
too much. For
each question, ragbit's own hybrid search gives the first RERANK_DEPTH fused candidates and their features, exactly
as a search computes them (Searcher.fused + Searcher.rerank_features, with the shipped query adapter). The model is
a softmax over each question's candidates of `((x - mean) / scale) @ w`, fitted to put the chunks that overlap the
question's function first, with LAMBDA * |w|^2; questions whose function is not among the candidates teach nothing
and are left out. Leave-projects-out (--holdout) reports chunk R@1 / R@10 (with the list's per-file cap) and MRR
before and after on projects the weights never saw; --save trains on every project and writes the `.json`.

    python benchmarks/train_reranker.py --work /tmp/rr-train            # ~15 min of 2 cores the first time (embedding)
    python benchmarks/train_reranker.py --work /tmp/rr-train --save     # writes ragbit/search/rerankers/
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_query_adapter import PACKAGES as ADAPTER_PACKAGES  # noqa: E402
from train_query_adapter import prepare_projects, training_arguments  # noqa: E402

# import name -> distribution name: none of the development sets' projects, the eval README's example list
# (click, rich, httpx) or the adapter's training projects (ADAPTER_PACKAGES). Not jedi: it bundles typeshed (5,534
# stub files of other libraries), which would take most of the indexing time and teach about stubs, not code.
PACKAGES = {"sentence_transformers": "sentence-transformers", "mcp": "mcp", "urllib3": "urllib3",
            "tomlkit": "tomlkit", "yaml": "PyYAML", "joblib": "joblib", "prompt_toolkit": "prompt_toolkit",
            "parso": "parso", "traitlets": "traitlets", "hypothesis": "hypothesis"}
assert not PACKAGES.keys() & ADAPTER_PACKAGES.keys()

LAMBDA = 0.01
LIST_CAP = 6          # hits per file when scoring a list (the short-question cap)


def candidates(pairs: Path, index_root: Path, embedder) -> list[dict]:
    """Per question: its project, the candidates' paths, features and gold flags, in fused order."""
    from ragbit.config import RagbitConfig
    from ragbit.search.rerank import RERANK_DEPTH, candidate_window
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
        fused = candidate_window(s.fused(q["query"], "hybrid", RERANK_DEPTH), s._lists)[:RERANK_DEPTH]
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
    ap = training_arguments(__doc__, "/tmp/rr-train", "sentence_transformers,mcp,urllib3,tomlkit;yaml,joblib,"
                            "prompt_toolkit;parso,traitlets,hypothesis", "reranker")
    ap.add_argument("--lambda", dest="lam", type=float, default=LAMBDA)
    ap.add_argument("--adapter-work", default="/tmp/qa-train", help="the query adapter's work dir: its questions are "
                    "trained on too ('' = only this script's projects; held-out groups are always this script's)")
    a = ap.parse_args()
    from ragbit.search.rerank import FEATURES, reranker_path
    work = Path(a.work)
    pairs, embedder = prepare_projects(work, PACKAGES, Path(a.eval_dir))
    data = candidates(pairs, work / "index", embedder)
    if a.adapter_work:                        # the adapter's questions too (made and indexed there if missing)
        adapter_work = Path(a.adapter_work)
        adapter_pairs, _ = prepare_projects(adapter_work, ADAPTER_PACKAGES, Path(a.eval_dir))
        data += candidates(adapter_pairs, adapter_work / "index", embedder)
    print(f"{len(data)} questions, {sum(d['gold'].any() for d in data)} with their function among the candidates",
          file=sys.stderr)

    figures = {}
    for group in filter(None, a.holdout.split(";")):
        held = set(group.split(","))
        val = [d for d in data if d["corpus"].rsplit("-", 1)[0] in held]
        rest = [d for d in data if d["corpus"].rsplit("-", 1)[0] not in held]
        before, after = scores(val), scores(val, fit(rest, a.lam))
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
