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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the scoring and the baseline live in ragbit/evaluation/ (`ragbit eval` uses the same code)
from ragbit.evaluation.baselines import BM25WindowsPacked  # noqa: E402,F401
from ragbit.evaluation.metrics import context_metrics, targets  # noqa: E402,F401
from ragbit.evaluation.runner import BUDGETS  # noqa: E402,F401


def load_count_tokens(gguf_path: str):
    """Token counter with the generator's real tokenizer, taken from a (tiny) model file that carries it."""
    from generator.gguf_file import GGUFFile
    from generator.tokenizer import BonsaiTokenizer
    tok = BonsaiTokenizer.from_metadata(GGUFFile(gguf_path).metadata)
    return tok.count
