"""The vectorised BM25 build (indexes/bm25_build.py) against bm25s' own build, and token ids against code_tokens."""
from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest

from indexes.bm25_build import VectorizedBM25
from indexes.lexical import code_tokens, corpus_token_ids

ROOT = Path(__file__).resolve().parents[1]


def _corpus() -> list[str]:
    """Real documents of very different lengths: 30-line slices of this repository's sources, plus edge cases."""
    docs = []
    for path in sorted((ROOT / "indexes").glob("*.py")) + sorted((ROOT / "ragbit" / "chunking").glob("*.py")):
        lines = path.read_text(encoding="utf-8").split("\n")
        docs += ["\n".join(lines[i:i + 30]) for i in range(0, len(lines), 30)]
    return docs + ["", "the a of", "x", "Ünïcödé naïve_café 日本語 filter_by filter_by filter_by"]


def test_token_ids_are_code_tokens_through_the_vocabulary():
    docs = _corpus()
    ids, vocab = corpus_token_ids(docs)
    token = {i: t for t, i in vocab.items()}
    assert len(token) == len(vocab)                          # ids are distinct
    assert [[token[i] for i in d] for d in ids] == [code_tokens(t) for t in docs]


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l"])
def test_vectorised_build_equals_bm25s_build(method):
    ids, vocab = corpus_token_ids(_corpus())
    ours, stock = VectorizedBM25(method=method), bm25s.BM25(method=method)
    ours.index((ids, dict(vocab)), show_progress=False)
    stock.index((ids, dict(vocab)), show_progress=False)
    assert ours.vocab_dict == stock.vocab_dict
    np.testing.assert_array_equal(ours.scores["indptr"], stock.scores["indptr"])
    np.testing.assert_array_equal(ours.scores["indices"], stock.scores["indices"])
    np.testing.assert_allclose(ours.scores["data"], stock.scores["data"], rtol=1e-6)   # float32 rounding only
    query = [vocab[t] for t in code_tokens("filter_by the chunk budget tokenizer") if t in vocab]
    np.testing.assert_allclose(ours.get_scores(query), stock.get_scores(query), rtol=1e-6)
