"""Retrieval quality on the development sets, every search mode side by side in one run, at three levels.

Runs the flow of ../shared/eval/score.py in-process: each corpus is indexed ONCE with ragbit, then every
query is searched in each mode (hybrid, dense, lexical, and ablations), and scored at file and chunk level,
next to score.py's BM25 baselines. The scoring and the baselines are `ragbit/evaluation/` (score.py's
definitions; `ragbit eval` runs the same code on a user's own questions). Then the
context level (`context_eval.py`): the pipeline's own retriever and packer fill budgets of 500 to 3,000
generator tokens, and the share of gold lines inside the packed context is measured, beside BM25 over
40-line windows packed to the same budgets.

Two sets (`--set`): `issues` (109 SWE-bench Lite issues -> files and changed functions) and `docstring`
(127 short questions -> one function, made by ../shared/eval/make_docstring_queries.py).

Fetch the corpora first (see the eval README):
    python3 /work/shared/eval/fetch_sdists.py --manifest /work/shared/eval/sdists_swebench.json --dest /tmp/ragbit-eval
    python3 /work/shared/eval/make_docstring_queries.py --out /tmp/ragbit-eval/docstring-dev \
        jinja2==3.1.4 werkzeug==3.0.3 attrs==23.2.0 tqdm==4.66.4 packaging==24.0
Then, e.g.:
    python benchmarks/retrieval_eval.py --corpora requests-2.3.0,flask-2.3.0 --max-queries 20
    python benchmarks/retrieval_eval.py --set docstring
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

from context_eval import BUDGETS, BM25WindowsPacked, context_metrics, load_count_tokens

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# mode[-ablation]: "nopath" turns off the boost of files the question names, "nocap" the per-file hit cap
SYSTEMS = ["hybrid", "hybrid-nopath", "hybrid-nocap", "dense", "lexical", "lexical-nocap"]
CONTEXT_SYSTEMS = ["hybrid", "dense", "lexical"]      # packed with the pipeline's own retriever and packer
SETS = {   # query file (in --eval-dir, or absolute), corpus root, index-dir prefix
    "issues": ("swebench_files.jsonl", "/tmp/ragbit-eval/src", ""),
    "docstring": ("/tmp/ragbit-eval/docstring-dev/queries.jsonl", "/tmp/ragbit-eval/docstring-dev", "docstring-dev-"),
}


def seed_vectors_from_siblings(index_root: Path, corpus: str) -> int:
    """Hard-link the cached vector shards of other versions of the same project (django-3.1 -> django-4.0).

    Why: two releases of one project share most of their chunks, and vectors are keyed by chunk content hash
    and model, so a vector embedded for django-3.1 is exactly the vector django-4.0's identical chunk needs.
    Shards are immutable once written (.npy first, .keys last), so a hard link is a safe share: compacting one
    corpus's cache unlinks only its own links. Returns the number of shards linked."""
    project = corpus.rsplit("-", 1)[0]
    mine = index_root / corpus / "vectors"
    linked = 0
    for sibling in sorted(index_root.glob(project + "-*")):
        if sibling.name == corpus or sibling.name.rsplit("-", 1)[0] != project:
            continue
        for keys in sorted((sibling / "vectors").glob("*/*.keys")):
            npy = keys.with_suffix(".npy")
            dest = mine / keys.parent.name
            if not npy.exists() or (dest / keys.name).exists():
                continue
            dest.mkdir(parents=True, exist_ok=True)
            for src in (keys.parent / "space.json", npy, keys):      # keys last: a shard exists once .keys does
                if src.exists() and not (dest / src.name).exists():
                    os.link(src, dest / src.name)
            linked += 1
    return linked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--set", choices=sorted(SETS), default="issues")
    ap.add_argument("--corpus-root", help="default: the set's (see SETS)")
    ap.add_argument("--index-root", default="/tmp/ragbit-eval/index", help="one index per corpus under here")
    ap.add_argument("--corpora", default="", help="comma list (default: all corpora of the query file)")
    ap.add_argument("--max-queries", type=int, default=0, help="score only the first N queries (after --corpora)")
    ap.add_argument("-k", type=int, default=20, help="results asked for (score.py's default)")
    ap.add_argument("--baselines", default="bm25,bm25-chunk")
    ap.add_argument("--embed-backend", default="auto", help="[embed] backend of the chunk vectors (use a fresh "
                    "--index-root per backend: cached vectors are shared by every path)")
    ap.add_argument("--lexical-only", action="store_true",
                    help="no embedding: index chunk table + BM25 only, score lexical with/without path boost")
    ap.add_argument("--no-share-vectors", action="store_true",
                    help="do not reuse cached vectors of other versions of the same project")
    ap.add_argument("--systems", default="", help="comma list of ragbit systems (default: all of SYSTEMS)")
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="context budgets in generator tokens")
    ap.add_argument("--tokenizer-model", default=str(ROOT / "tests/fixtures/reference/tiny-tied-q1_0.gguf"),
                    help="a model file carrying the generator's tokenizer (the tiny reference model has Qwen3's)")
    ap.add_argument("--chunk", default="{}", help='ablation: [chunk] settings as JSON, e.g. \'{"min_lines": 0}\'')
    ap.add_argument("--search", default="{}", help='ablation: [search] settings as JSON, e.g. \'{"max_hits_per_file": 4}\'')
    ap.add_argument("--embed", default="{}", help='ablation: [embed] settings as JSON, e.g. \'{"lexical_only": ["tests/"]}\'')
    ap.add_argument("--out", help="write per-query results + summary JSON here")
    a = ap.parse_args()
    query_file, default_root, index_prefix = SETS[a.set]
    a.corpus_root = a.corpus_root or default_root
    budgets = [int(b) for b in a.budgets.split(",") if b]

    from ragbit.config import RagbitConfig
    from ragbit.indexing.embeddings import Embedder
    from ragbit.indexing.indexer import index_repository
    from ragbit.pipeline.components.context_packer import ContextPacker
    from ragbit.pipeline.components.hybrid_retriever import HybridRetriever
    from ragbit.search.searcher import Searcher

    from ragbit.evaluation import baselines as bm25
    from ragbit.evaluation import metrics as score
    qs = [json.loads(l) for l in open(Path(a.eval_dir) / query_file) if l.strip()]
    if a.corpora:
        order = a.corpora.split(",")                 # corpora run in the order given
        qs = sorted((q for q in qs if q["corpus"] in order), key=lambda q: order.index(q["corpus"]))
    if a.max_queries:
        qs = qs[: a.max_queries]
    by_corpus = collections.OrderedDict()
    for i, q in enumerate(qs):
        by_corpus.setdefault(q["corpus"], []).append(i)

    baselines = [bm25.BM25Files("bm25") if b == "bm25" else bm25.BM25Windows()
                 for b in filter(None, a.baselines.split(","))]
    systems = ["lexical", "lexical-nopath"] if a.lexical_only else SYSTEMS
    if a.systems:
        systems = a.systems.split(",")
    context_systems = [s for s in CONTEXT_SYSTEMS if s in systems]
    names = [b.name for b in baselines] + [f"ragbit-{s}" for s in systems]
    count_tokens = load_count_tokens(a.tokenizer_model) if budgets else None
    per_query = [{"corpus": q["corpus"], "id": q.get("instance_id"), "systems": {}} for q in qs]
    timing = collections.defaultdict(float)
    from ragbit.config import EmbedConfig
    embedder = Embedder(EmbedConfig(backend=a.embed_backend))    # one model for every corpus
    index_log = []

    for corpus, idxs in by_corpus.items():
        cdir = Path(a.corpus_root) / corpus
        if not cdir.is_dir():
            sys.exit(f"missing corpus dir {cdir} (run fetch_sdists.py first)")
        print(f"corpus {corpus}: {len(idxs)} queries", file=sys.stderr, flush=True)
        for b in baselines:
            t = time.time()
            b.index(str(cdir))
            timing[b.name + " index_s"] += time.time() - t
            for i in idxs:
                res = b.search(qs[i]["query"], a.k)
                per_query[i]["systems"][b.name] = score.score_one(qs[i], res, b.returns_chunks)
        if budgets:
            windows = BM25WindowsPacked(cdir, count_tokens)
            for i in idxs:
                m = per_query[i]["systems"].setdefault(windows.name, {})
                for budget in budgets:
                    m.update(context_metrics(qs[i], windows.blocks(qs[i]["query"], budget), budget))

        if not a.no_share_vectors and not a.lexical_only:
            n = seed_vectors_from_siblings(Path(a.index_root), corpus)
            if n:
                print(f"  reusing {n} vector shards of other {corpus.rsplit('-', 1)[0]} versions", file=sys.stderr)
        cfg = RagbitConfig.load(cdir, overrides={"index": {"dir": str(Path(a.index_root) / (index_prefix + corpus))},
                                                 "chunk": json.loads(a.chunk), "search": json.loads(a.search),
                                                 "embed": json.loads(a.embed)})
        t = time.time()
        report = index_repository(cfg, progress=not a.lexical_only, embedder=embedder, embed=not a.lexical_only)
        timing["ragbit index_s"] += time.time() - t
        index_log.append(f"{corpus}: {report.files} files, {report.chunks} chunks, {report.chunks_embedded} embedded, "
                         f"{time.time() - t:.0f}s (model {report.timings.get('model', 0):.0f}s)")
        print("  " + index_log[-1], file=sys.stderr, flush=True)
        searcher = Searcher(cfg, embedder=embedder)
        for system in systems:
            mode, _, ablation = system.partition("-")
            t = time.time()
            for i in idxs:
                hits = searcher.search(qs[i]["query"], k=a.k, mode=mode, path_boost=ablation != "nopath",
                                       max_hits_per_file=0 if ablation == "nocap" else None)
                res = [{"path": score.norm_path(h.path, str(cdir)), "start_line": h.start_line,
                        "end_line": h.end_line} for h in hits]
                m = score.score_one(qs[i], res, True)
                m["top"] = [[r["path"], r["start_line"], r["end_line"]] for r in res[:10]]
                per_query[i]["systems"][f"ragbit-{system}"] = m
            timing[f"ragbit-{system} search_s"] += time.time() - t
        for system in context_systems:        # what the prompt gets: the pipeline's retriever, then its packer
            t = time.time()
            retriever = HybridRetriever(cfg, mode=system, embedder=embedder)
            packers = [ContextPacker(budget=b, tokenizer=tokenizer_of(count_tokens)) for b in budgets]
            for i in idxs:
                hits = retriever.run(query=qs[i]["query"])["hits"]
                m = per_query[i]["systems"][f"ragbit-{system}"]
                for packer in packers:
                    ctx = packer.run(hits=hits)["context"]
                    m.update(context_metrics(qs[i], ctx.blocks, packer.budget))
            timing[f"ragbit-{system} context_s"] += time.time() - t
        done = [pq for pq in per_query if pq["systems"]]          # running totals, in case the run is cut
        print(f"  so far ({len(done)} queries) file R@10 / MRR@10: " + "  ".join(
            f"{n} {score.mean([pq['systems'][n]['file_R@10'] for pq in done]):.3f}/"
            f"{score.mean([pq['systems'][n]['file_MRR@10'] for pq in done]):.3f}" for n in names),
            file=sys.stderr, flush=True)
        if a.out:                                              # partial results survive a cut run
            with open(a.out + ".partial", "w") as f:
                json.dump({"per_query": done, "index_log": index_log, "timing_s": timing}, f, indent=1)

    # ------------------------------------------------------------------ table, score.py's format
    keys = [f"file_R@{k}" for k in score.KS] + ["file_MRR@10"]
    n_chunk = sum(1 for q in qs if score.targets(q))
    if n_chunk:
        keys += [f"chunk_R@{k}" for k in score.KS] + ["chunk_MRR@10"]
        keys += [f"ctx_{m}@{b}" for m in ("hit80", "lines") for b in budgets]
    if budgets:
        names.append(BM25WindowsPacked.name)
    summary = {name: {k: score.mean([pq["systems"][name][k] for pq in per_query
                                     if name in pq["systems"] and k in pq["systems"][name]])
                      for k in keys} for name in names}
    fmt = lambda v: "-" if v != v else f"{v:.3f}"
    print(f"\n{a.set} set: {len(qs)} queries over {len(by_corpus)} corpora ({', '.join(by_corpus)}); "
          f"{n_chunk} with line targets; k={a.k}\n")
    print("| system | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name in names:
        print(f"| {name} | " + " | ".join(fmt(summary[name][k]) for k in keys) + " |")
    paired("ragbit-hybrid", "ragbit-lexical", per_query)
    if n_chunk and budgets and "hybrid" in context_systems:
        paired("ragbit-hybrid", BM25WindowsPacked.name, per_query, key=f"ctx_hit80@{budgets[len(budgets) // 2]}")
    print("\nindexing:")
    for line in index_log:
        print("  " + line)
    print("timing (s):", json.dumps({k: round(v, 1) for k, v in timing.items()}))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"summary": summary, "per_query": per_query, "timing_s": timing}, f, indent=1)
        print(f"wrote {a.out}")


class tokenizer_of:
    """The packer wants a tokenizer with `encode`; the eval has a counting function (the real tokenizer's)."""

    def __init__(self, count_tokens):
        self.count_tokens = count_tokens

    def encode(self, text: str, parse_special: bool = False) -> range:
        return range(self.count_tokens(text))


def paired(a: str, b: str, per_query: list[dict], key: str = "file_R@10") -> None:
    """Per-query wins and losses of system a over b: a mean difference of one or two queries is noise."""
    diffs = [pq["systems"][a][key] - pq["systems"][b][key] for pq in per_query
             if key in pq["systems"].get(a, {}) and key in pq["systems"].get(b, {})]   # (no line targets: no ctx)
    if diffs:
        print(f"\n{a} vs {b}, {key} per query: better on {sum(d > 0 for d in diffs)}, worse on "
              f"{sum(d < 0 for d in diffs)}, equal on {sum(d == 0 for d in diffs)} of {len(diffs)}")


if __name__ == "__main__":
    main()
