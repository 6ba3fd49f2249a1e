"""Retrieval quality on labelled questions: `ragbit eval` and `benchmarks/retrieval_eval.py` share it.

    metrics.py    per-question scores: file R@k / MRR@10, chunk R@k / MRR@10 (the flow of ../shared/eval/score.py),
                  context recall of packed blocks
    baselines.py  BM25 over whole files and BM25 over 40-line windows packed to a budget (the reference points)
    runner.py     one repository, its questions, every mode and budget in one process (`ragbit eval`)
"""
