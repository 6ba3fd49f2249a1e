"""Why the changed function misses the prompt: each report's gold, at each budget, in one of five places.

For every query of a development set that has line targets, the pipeline's own retriever (`HybridRetriever`, the
hits a prompt is packed from) and packer (`ContextPacker.pack`, the generator's tokenizer) run as in
`retrieval_eval.py`, and the query is put in the first place that holds for it:

- packed:      a gold range is >= 80% inside the packed context (what `retrieval_eval.py` counts as a hit);
- too big:     80% of the smallest gold range does not fit the budget however it is packed (a ceiling);
- not packed:  a gold range is among the prompt's hits (or their whole definitions) but the budget ran out first;
- deeper:      the first gold chunk is ranked 21-50 by the same search (k = 50): a better reorder could reach it;
- absent:      no gold chunk among the 50 best: retrieval itself does not find it.

"packed + not packed + deeper" is what a perfect reordering of the 50 best could put in the prompt, the
ceiling of reranking work; "absent" needs another signal. Usage (corpora and indexes as retrieval_eval.py):

    python benchmarks/prompt_misses.py --index-root /tmp/ragbit-eval/index-issues [--list]
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from functools import lru_cache
from pathlib import Path

from context_eval import BUDGETS, context_metrics, load_count_tokens, targets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PLACES = ("packed", "too big", "not packed", "deeper", "absent")
DEEP = 50


def covers(hit, ranges) -> bool:
    return any(hit.path == f and hit.start_line <= e and hit.end_line >= b for f, b, e in ranges)


def smallest_need(root: Path, ranges, count_tokens) -> int:
    """Tokens of the cheapest block holding 80% of one gold range (its first 80% of lines, with a header)."""
    best = 1 << 30
    for f, b, e in ranges:
        try:
            lines = (root / f).read_text(encoding="utf-8", errors="replace").split("\n")
        except OSError:
            continue
        k = -(-4 * (e - b + 1) // 5)
        body = "\n".join(lines[b - 1:b - 1 + k])
        best = min(best, count_tokens(f"[1] {f}:{b}-{b + k - 1}\n```\n{body}\n```"))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", default="/work/shared/eval/swebench_files.jsonl")
    ap.add_argument("--corpus-root", default="/tmp/ragbit-eval/src")
    ap.add_argument("--index-root", required=True, help="one index directory per corpus, as retrieval_eval.py makes")
    ap.add_argument("--list", action="store_true", help="print each query's place at each budget")
    args = ap.parse_args()

    from ragbit.config import RagbitConfig
    from ragbit.indexing.embeddings import Embedder
    from ragbit.pipeline.components.context_packer import pack
    from ragbit.pipeline.components.hybrid_retriever import HybridRetriever

    count_tokens = lru_cache(maxsize=None)(load_count_tokens(str(ROOT / "tests/fixtures/reference/tiny-tied-q1_0.gguf")))
    queries = [q for q in map(json.loads, open(args.queries, encoding="utf-8")) if targets(q)]
    embedder, retrievers = Embedder(), {}
    counts = {b: collections.Counter() for b in BUDGETS}
    for q in queries:
        corpus = q["corpus"]
        if corpus not in retrievers:
            cfg = RagbitConfig.load(Path(args.corpus_root) / corpus,
                                    overrides={"index": {"dir": str(Path(args.index_root) / corpus)}})
            retrievers[corpus] = HybridRetriever(cfg, embedder=embedder)
            retrievers[corpus].warm_up()
        retriever, ranges = retrievers[corpus], targets(q)
        hits = retriever.run(query=q["query"])["hits"]
        in_hits = any(covers(h, ranges) or (h.unit is not None and covers(h.unit, ranges)) for h in hits)
        deep = retriever._searcher.search(q["query"], k=DEEP, max_hits_per_file=0)
        in_deep = any(covers(h, ranges) for h in deep)
        need = smallest_need(Path(args.corpus_root) / corpus, ranges, count_tokens)
        places = []
        for b in BUDGETS:
            if context_metrics(q, pack(hits, count_tokens, b).blocks, b)[f"ctx_hit80@{b}"]:
                place = "packed"
            elif need > b:
                place = "too big"
            else:
                place = "not packed" if in_hits else "deeper" if in_deep else "absent"
            counts[b][place] += 1
            places.append(place)
        if args.list:
            print(f"{q['instance_id']:40} " + " | ".join(f"{b}: {p}" for b, p in zip(BUDGETS, places)), flush=True)
    n = len(queries)
    print(f"\n{n} queries with line targets; share of them in each place, per budget (tokens)")
    print(f"{'place':<12}" + "".join(f"{b:>8}" for b in BUDGETS))
    for place in PLACES:
        print(f"{place:<12}" + "".join(f"{counts[b][place] / n:8.3f}" for b in BUDGETS))
    ceiling = {b: (counts[b]["packed"] + counts[b]["not packed"] + counts[b]["deeper"]) / n for b in BUDGETS}
    print(f"{'reorder cap':<12}" + "".join(f"{ceiling[b]:8.3f}" for b in BUDGETS)
          + "   (packed + not packed + deeper: a perfect reorder of the 50 best)")


if __name__ == "__main__":
    main()
