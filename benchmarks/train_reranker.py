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


def report_candidates(issues: Path, corpus_root: Path, index_root: Path, embedder, corpora=None) -> list[dict]:
    """The same for the long reports of the issue set (../shared/eval/swebench_files.jsonl): the candidates of the
    prompt (`fused(for_prompt=True)`), gold = overlapping a line range of a function the accepted fix changed.
    Reports without line targets are left out. The corpora must be indexed already (retrieval_eval.py does it)."""
    from ragbit.config import RagbitConfig
    from ragbit.search.rerank import RERANK_DEPTH
    from ragbit.search.searcher import Searcher
    out, searchers = [], {}
    for line in issues.open():
        q = json.loads(line)
        corpus, ranges = q["corpus"], q.get("gold_ranges") or []
        if not ranges or (corpora and corpus not in corpora) or not (index_root / corpus).is_dir():
            continue
        if corpus not in searchers:
            cfg = RagbitConfig.load(corpus_root / corpus, overrides={"index": {"dir": str(index_root / corpus)}})
            searchers[corpus] = Searcher(cfg, embedder=embedder)
            searchers[corpus]._load()
        s = searchers[corpus]
        fused = s.fused(q["query"], "hybrid", RERANK_DEPTH, for_prompt=True)[:RERANK_DEPTH]
        t = s.table
        gold = np.array([any(t.path[pos] == g["file"] and t.start_line[pos] <= g["end_line"]
                             and t.end_line[pos] >= g["start_line"] for g in ranges) for pos, _ in fused])
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
    r1, r5, r10, mrr = [], [], [], []
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
        r5.append(first is not None and first < 5)
        r10.append(first is not None)
        mrr.append(0.0 if first is None else 1 / (first + 1))
    return {"R@1": round(float(np.mean(r1)), 3), "R@5": round(float(np.mean(r5)), 3), "R@10": round(float(np.mean(r10)), 3),
            "MRR@10": round(float(np.mean(mrr)), 3)}


def main() -> None:
    if "--reports" in sys.argv:
        return main_reports()
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


REPORT_FOLDS = "django;sympy;matplotlib,seaborn,astropy;scikit-learn,xarray,requests;sphinx,pylint,pytest,flask"


def main_reports() -> None:
    """--reports: the long-report reranker, trained on the issue set's reports, leave-projects-out per fold."""
    import argparse
    from ragbit.config import EmbedConfig
    from ragbit.indexing.embeddings import Embedder
    from ragbit.search.rerank import ALL_FEATURES, FEATURES, REPORT_FEATURES, reranker_path
    ap = argparse.ArgumentParser(description=main_reports.__doc__)
    ap.add_argument("--reports", action="store_true")
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--corpus-root", default="/tmp/ragbit-eval/src")
    ap.add_argument("--index-root", default="/tmp/ragbit-eval/index", help="retrieval_eval.py's, all corpora indexed")
    ap.add_argument("--corpora", default="", help="comma list (default: every indexed corpus of the set)")
    ap.add_argument("--features", default="all", help="'base' (FEATURES), 'all', or a comma list")
    ap.add_argument("--holdout", default=REPORT_FOLDS, help="';'-separated groups of projects held out in turn")
    ap.add_argument("--lambda", dest="lam", type=float, default=LAMBDA)
    ap.add_argument("--cap", type=int, default=0, help="hits per file when scoring (a prompt has none)")
    ap.add_argument("--save", action="store_true")
    a = ap.parse_args()
    names = list(FEATURES) if a.features == "base" else list(ALL_FEATURES) if a.features == "all" \
        else a.features.split(",")
    cols = [ALL_FEATURES.index(n) for n in names]
    embedder = Embedder(EmbedConfig())
    data = report_candidates(Path(a.eval_dir) / "swebench_files.jsonl", Path(a.corpus_root), Path(a.index_root),
                             embedder, set(filter(None, a.corpora.split(","))))
    from ragbit.search.rerank import load_reranker
    short = load_reranker(embedder._base_id)          # what a report's prompt is reranked with without this one
    for d in data:
        d["X_short"], d["X"] = d["X"][:, :len(FEATURES)], d["X"][:, cols]
    global LIST_CAP
    LIST_CAP = a.cap or 10 ** 9
    print(f"{len(data)} reports, {sum(d['gold'].any() for d in data)} with a gold function among the candidates",
          file=sys.stderr)
    figures, before_all, after_all, short_all = {}, [], [], []
    for group in filter(None, a.holdout.split(";")):
        held = set(group.split(","))
        val = [d for d in data if d["corpus"].rsplit("-", 1)[0] in held]
        rest = [d for d in data if d["corpus"].rsplit("-", 1)[0] not in held]
        if not val or not rest:
            continue
        model = fit(rest, a.lam)
        before, after = scores(val), scores(val, model)
        before["short reranker"] = scores([{**d, "X": d["X_short"]} for d in val], (short.mean, short.scale, short.weights))
        before_all += [scores([d]) for d in val]
        after_all += [scores([d], model) for d in val]
        short_all += [scores([{**d, "X": d["X_short"]}], (short.mean, short.scale, short.weights)) for d in val]
        figures[group] = {"reports": len(val), "before": before, "after": after}
        print(f"held out {group} ({len(val)} reports): chunk {before} -> {after}")
    mean = lambda rows, k: round(float(np.mean([r[k] for r in rows])), 3)   # noqa: E731
    print("all folds (fused / short-question reranker -> this one): " + ", ".join(
        f"{k} {mean(before_all, k)} / {mean(short_all, k)} -> {mean(after_all, k)}" for k in ("R@1", "R@5", "R@10", "MRR@10")))
    if a.save:
        mean_, scale, w = fit(data, a.lam)
        path = reranker_path(embedder._base_id, "reports")
        meta = {"model": embedder._base_id, "command": "python benchmarks/train_reranker.py --reports --save",
                "features": names, "mean": mean_.round(6).tolist(), "scale": scale.round(6).tolist(),
                "weights": w.round(6).tolist(), "projects": sorted({d["corpus"] for d in data}),
                "questions": len(data), "lambda": a.lam, "held_out_chunk_figures_before_after": figures}
        path.write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
