"""How the lexical index is built: token ids against code_tokens, its scores against bm25s' own, and incremental
builds (segments, dead documents, merges) against a build from scratch."""
from __future__ import annotations

import json
from pathlib import Path

import bm25s
import numpy as np
import pytest

from indexes import lexical
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


def _bm25s_scores(docs: list[str], query: str) -> np.ndarray | None:
    """bm25s' own scores (default "lucene" BM25) over the same tokens: the reference for ours (None: no query
    token is in the corpus)."""
    ids, vocab = corpus_token_ids(docs)
    stock = bm25s.BM25()
    stock.index((ids, dict(vocab)), show_progress=False)
    known = [vocab[t] for t in code_tokens(query) if t in vocab]
    return stock.get_scores(known) if known else None


def test_scores_equal_bm25s():
    docs = _corpus()
    index = LexicalIndex.build(docs)
    for q in QUERIES:
        np.testing.assert_allclose(index.scores(q), _bm25s_scores(docs, q), rtol=1e-5, atol=1e-6)


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


def _assert_same_index(a: LexicalIndex, b: LexicalIndex, texts: list[str] | None = None) -> None:
    """Same ranking and scores for every query; with `texts`, also the same scores as bm25s over them."""
    assert len(a) == len(b)
    for q in QUERIES + ["brand_new_identifier", "zebra_stripes renamed_build"]:
        ha, hb = a.search(q, 20), b.search(q, 20)
        assert [p for p, _ in ha] == [p for p, _ in hb], q
        np.testing.assert_allclose([s for _, s in ha], [s for _, s in hb], rtol=1e-5)
        if texts is not None and (want := _bm25s_scores(texts, q)) is not None:
            np.testing.assert_allclose(a.scores(q), want, rtol=1e-5, atol=1e-6)


@pytest.fixture(params=["segments", "merged"])
def merge_share(request, monkeypatch):
    """Run a test with merges off (every edit stays a segment + dead documents) and with every edit merged."""
    monkeypatch.setattr(lexical, "MERGE_SHARE", 1e9 if request.param == "segments" else 0.0)
    return request.param


def test_incremental_build_equals_a_build_from_scratch(tmp_path, merge_share):
    docs = _corpus()
    LexicalIndex.build(docs).save(tmp_path / "v1")
    previous = LexicalIndex.load(tmp_path / "v1")
    new, same_as = _edited(docs)
    tokenized = []
    real = lexical.corpus_token_ids
    with pytest.MonkeyPatch.context() as m:
        m.setattr(lexical, "corpus_token_ids", lambda texts, *a: tokenized.extend(texts) or real(texts, *a))
        incremental = LexicalIndex.build(new, previous, same_as)
    assert sorted(tokenized) == sorted(t for t, s in zip(new, same_as) if s < 0)    # only new documents
    assert len(incremental.segment_sizes) == (2 if merge_share == "segments" else 1)
    _assert_same_index(incremental, LexicalIndex.build(new), new)
    # and again on top of the incremental one, after a save/load round trip (segments shared by hard links)
    incremental.save(tmp_path / "v2")
    if merge_share == "segments":
        base = [p for p in (tmp_path / "v1").iterdir() if p.is_dir()][0]
        assert (tmp_path / "v2" / base.name / "docs.npy").stat().st_ino == (base / "docs.npy").stat().st_ino
    newer, same_as2 = _edited(new)
    _assert_same_index(LexicalIndex.build(newer, LexicalIndex.load(tmp_path / "v2"), same_as2),
                       LexicalIndex.build(newer), newer)


def test_one_changed_document_adds_a_small_segment(monkeypatch):
    """The one-file re-index case: the base stays, one document is dead, the changed text is a segment of 1."""
    monkeypatch.setattr(lexical, "MERGE_SHARE", 0.10)
    docs = _corpus()
    previous = LexicalIndex.build(docs)
    new = list(docs)
    new[7] = docs[7] + "\nzebra_stripes = brand_new_identifier(renamed_build)"
    same_as = list(range(len(docs)))
    same_as[7] = -1
    incremental = LexicalIndex.build(new, previous, same_as)
    assert incremental.segment_sizes == [len(docs), 1]
    _assert_same_index(incremental, LexicalIndex.build(new), new)
    assert incremental.search("zebra_stripes", 3)[0][0] == 7


def test_merges_keep_scores(monkeypatch):
    """Many small edits: past MAX_SEGMENTS the small segments merge into one, past MERGE_SHARE everything does;
    scores equal a build from scratch all along."""
    monkeypatch.setattr(lexical, "MAX_SEGMENTS", 3)
    monkeypatch.setattr(lexical, "MERGE_SHARE", 0.4)
    docs = _corpus()
    index = LexicalIndex.build(docs)
    counts = []
    for step in range(20):
        i = (step * 5) % len(docs)
        new = list(docs)
        new[i] = docs[i] + f"\nstep_{step} zebra_stripes"
        same_as = list(range(len(docs)))
        same_as[i] = -1
        index, docs = LexicalIndex.build(new, index, same_as), new
        counts.append(len(index.segment_sizes))
        _assert_same_index(index, LexicalIndex.build(docs), docs)
    tail_merges = [i for i in range(1, len(counts)) if counts[i - 1] == 3 and counts[i] == 2]
    full_merges = [i for i in range(1, len(counts)) if counts[i] == 1]
    assert max(counts) == 3 and tail_merges and full_merges, counts


def test_index_saved_before_segments_is_read_from_its_token_ids(tmp_path):
    """Format 1 (one bm25s index + doc_tokens.npy): searchable and reusable, as a build from scratch."""
    docs = _corpus()
    ids, vocab = corpus_token_ids(docs)
    old = bm25s.BM25()
    old.index((ids, dict(vocab)), show_progress=False)
    old.save(tmp_path / "old", show_progress=False)
    flat = np.concatenate([np.asarray(d, dtype=np.int32) for d in ids])
    np.save(tmp_path / "old" / "doc_tokens.npy", flat)
    np.save(tmp_path / "old" / "doc_offsets.npy", np.concatenate([[0], np.cumsum([len(d) for d in ids])]))
    (tmp_path / "old" / "lexical.json").write_text(json.dumps({"n_docs": len(docs)}))
    loaded = LexicalIndex.load(tmp_path / "old")
    _assert_same_index(loaded, LexicalIndex.build(docs), docs)
    (tmp_path / "old" / "doc_tokens.npy").unlink()
    with pytest.raises(ValueError, match="--rebuild"):
        LexicalIndex.load(tmp_path / "old")


def test_incremental_build_rejects_positions_outside_the_previous_index(tmp_path):
    docs = _corpus()
    previous = LexicalIndex.build(docs)
    with pytest.raises(ValueError, match="same_as"):
        LexicalIndex.build(docs, previous, [len(docs)] * len(docs))
    with pytest.raises(ValueError, match="same_as"):
        LexicalIndex.build(docs, previous, [0])
    with pytest.raises(ValueError, match="same_as"):
        LexicalIndex.build(docs, previous, [0] * len(docs))            # one old document in two places


def test_tokenizing_in_batches_builds_the_same_index(monkeypatch):
    """A corpus tokenized in batches (shared vocabulary and word cache) scores every query as one pass does."""
    from indexes import lexical
    docs = [f"def fetch_{i % 7}(session, token_{i % 3}):\n    return session.retry(backoff={i})" for i in range(40)]
    whole = LexicalIndex.build(docs)
    monkeypatch.setattr(lexical, "TOKENIZE_BATCH", 3)
    batched = LexicalIndex.build(docs)
    for q in ("fetch session", "token_2 retry", "backoff 17", "fetch_3"):
        assert batched.search(q, 10) == whole.search(q, 10)
