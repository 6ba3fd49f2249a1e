"""How the lexical index is built: token ids against code_tokens, the vectorised BM25 build (indexes/bm25_build.py)
against bm25s' own, and an incremental build (tokens reused from the previous index) against a build from scratch."""
from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest

from indexes.bm25_build import FlatCorpus, VectorizedBM25
from indexes.lexical import LexicalIndex, code_tokens, corpus_token_ids

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
    # the same corpus as one flat array + offsets (what LexicalIndex.build passes) builds the same index
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in ids])])
    flat = VectorizedBM25(method=method)
    flat.index(FlatCorpus(np.concatenate([np.asarray(d, dtype=np.int32) for d in ids]), offsets, dict(vocab)),
               show_progress=False)
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(flat.scores[name], ours.scores[name])
    assert ours.vocab_dict == stock.vocab_dict
    np.testing.assert_array_equal(ours.scores["indptr"], stock.scores["indptr"])
    np.testing.assert_array_equal(ours.scores["indices"], stock.scores["indices"])
    np.testing.assert_allclose(ours.scores["data"], stock.scores["data"], rtol=1e-6)   # float32 rounding only
    query = [vocab[t] for t in code_tokens("filter_by the chunk budget tokenizer") if t in vocab]
    np.testing.assert_allclose(ours.get_scores(query), stock.get_scores(query), rtol=1e-6)


QUERIES = ["filter_by the chunk budget tokenizer", "BM25 scores from token ids", "Ünïcödé café", "windows overlap",
           "def build(cls, texts)", "numpy bincount searchsorted"]


def _edited(docs: list[str]) -> tuple[list[str], list[int]]:
    """A new corpus from `docs` (drop some, change some, add some, move a block) and, per new document, its
    position in `docs` when unchanged (-1 otherwise)."""
    kept = [(i, d) for i, d in enumerate(docs) if i % 7 != 3]                         # deleted documents
    kept = kept[len(kept) // 2:] + kept[:len(kept) // 2]                               # moved
    new, same_as = [], []
    for n, (i, d) in enumerate(kept):
        if n % 11 == 5:
            new.append(d.replace("def ", "def renamed_") + "\nbrand_new_identifier")   # changed
            same_as.append(-1)
        else:
            new.append(d)
            same_as.append(i)
    new += ["an added document about zebra_stripes", ""]
    return new, same_as + [-1, -1]


def _assert_same_index(a: LexicalIndex, b: LexicalIndex) -> None:
    assert len(a) == len(b)
    assert set(a._bm25.vocab_dict) == set(b._bm25.vocab_dict)                          # nothing stale kept
    for q in QUERIES:
        ha, hb = a.search(q, 20), b.search(q, 20)
        assert [p for p, _ in ha] == [p for p, _ in hb], q
        np.testing.assert_allclose([s for _, s in ha], [s for _, s in hb], rtol=1e-6)


def test_incremental_build_equals_a_build_from_scratch(tmp_path):
    docs = _corpus()
    LexicalIndex.build(docs).save(tmp_path / "v1")
    previous = LexicalIndex.load(tmp_path / "v1")
    assert previous.doc_tokens() is not None
    new, same_as = _edited(docs)
    incremental = LexicalIndex.build(new, previous, same_as)
    _assert_same_index(incremental, LexicalIndex.build(new))
    assert "brand_new_identifier" in incremental._bm25.vocab_dict
    # and again on top of the incremental one, after a save/load round trip
    incremental.save(tmp_path / "v2")
    newer, same_as2 = _edited(new)
    _assert_same_index(LexicalIndex.build(newer, LexicalIndex.load(tmp_path / "v2"), same_as2),
                       LexicalIndex.build(newer))


def test_incremental_build_without_saved_tokens_tokenizes_everything(tmp_path):
    docs = _corpus()
    LexicalIndex.build(docs).save(tmp_path / "v1")
    (tmp_path / "v1" / "doc_tokens.npy").unlink()                                      # an index from before
    previous = LexicalIndex.load(tmp_path / "v1")
    assert previous.doc_tokens() is None
    new, same_as = _edited(docs)
    _assert_same_index(LexicalIndex.build(new, previous, same_as), LexicalIndex.build(new))


def test_incremental_build_rejects_positions_outside_the_previous_index(tmp_path):
    docs = _corpus()
    previous = LexicalIndex.build(docs)
    with pytest.raises(ValueError, match="same_as"):
        LexicalIndex.build(docs, previous, [len(docs)] * len(docs))
    with pytest.raises(ValueError, match="same_as"):
        LexicalIndex.build(docs, previous, [0])
